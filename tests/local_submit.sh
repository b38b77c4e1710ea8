#!/usr/bin/env bash
# Submit command of the cluster-generic executor in tests/test_workflow.py: start each jobscript as
# its own background process in its own session (as a scheduler would) and print its pid as job id.
setsid bash "$1" > "$1.log" 2>&1 < /dev/null &
echo $!
