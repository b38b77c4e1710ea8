"""The edit jobs' Snakemake priority (:func:`locedit.plan.edit_priority`), replayed on the committed
groups' job seconds: each group's parallel phase (traces, pre-edit jobs and edit jobs, all ready
at once) scheduled on ``--cores`` cores side by side two ways on the same job seconds:

* ``any order``: equal priorities, jobs picked in a random order (what the scheduler's tie-break
  amounts to), every free core filled with a job that fits; median and worst over ``--shuffles``;
* ``longest edits first``: the same, the ready jobs ordered by their priority first.

Edit jobs take ``editing.threads`` (1) cores, every other model job ``model.threads`` (2), so a
long edit left running alone holds one core while the 2-core jobs wait: the idle core-seconds
this priority is meant to remove.

    .venv/bin/python benchmarks/scheduling.py [docs/results/*/groups/*] [--cores 2] [--shuffles 100]
    .venv/bin/python benchmarks/scheduling.py --logs run.log [...]   # a real run's idle core-seconds

Prints, per group, the phase's makespan each way and its idle core-seconds. A replay, not a run:
recorded seconds of contended or resumed sittings are what they were (see docs/results/README.md).
``--logs`` reads snakemake's own output of real runs instead (job start and finish times, threads)
and prints each run's wall and the core-seconds no job held.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import heapq
import json
import random
import re
import statistics
from pathlib import Path

from locedit.plan import edit_priority

EDIT = re.compile(r"edit_(?P<method>[a-z0-9]+)_(?P<problem>[a-z_]+)_shard\d+")
PARALLEL = ("edit_", "trace_", "pre_edit_")


def parallel_jobs(run_json: Path) -> list[tuple[str, float, int, int]]:
    """(name, seconds, cores, priority) of a group's traces, pre-edit and edit jobs."""
    seconds = json.loads(run_json.read_text())["job_s"]
    jobs = []
    for name, s in sorted(seconds.items()):
        if not name.startswith(PARALLEL) or name.startswith("trace_heatmaps"):
            continue
        edit = EDIT.fullmatch(name)
        priority = edit_priority(edit["method"], edit["problem"]) if edit else 0
        jobs.append((name, s, 1 if edit else 2, priority))
    return jobs


def makespan(jobs: list[tuple[str, float, int, int]], cores: int, by_priority: bool,
             rng: random.Random) -> tuple[float, float]:
    """(makespan, idle core-seconds) of greedy list scheduling: at every finish, start the ready
    jobs in order while they fit the free cores."""
    order = jobs[:]
    rng.shuffle(order)
    if by_priority:
        order.sort(key=lambda job: -job[3])  # stable: ties stay shuffled
    now, free, running, busy = 0.0, cores, [], 0.0
    while order or running:
        for job in list(order):
            if job[2] <= free:
                order.remove(job)
                free -= job[2]
                busy += job[1] * job[2]
                heapq.heappush(running, (now + job[1], job[2]))
        end, held = heapq.heappop(running)
        now, free = end, free + held
    return now, now * cores - busy


STAMP = re.compile(r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]")


def logged_jobs(log: Path) -> list[tuple[float, float, int]]:
    """(start, end, cores) of every job in a snakemake console log, in seconds; a job the run
    stopped in counts until the log's last time stamp."""
    now, started, jobs, threads = 0.0, {}, [], {}
    current = last = None  # the time of the rule block being read; the last job id read
    for line in log.read_text().splitlines():
        if stamp := STAMP.fullmatch(line):
            now = datetime.datetime.strptime(stamp[1], "%a %b %d %H:%M:%S %Y").timestamp()
        elif re.fullmatch(r"(local)?rule \w+:", line):
            current = now
        elif (m := re.fullmatch(r"\s+jobid: (\d+)", line)) and current is not None:
            started[m[1]], threads[m[1]], current = current, 1, None
            last = m[1]
        elif (m := re.fullmatch(r"\s+threads: (\d+)", line)) and last is not None:
            threads[last] = int(m[1])
        elif (m := re.match(r"Finished jobid: (\d+)", line)) and m[1] in started:
            jobs.append((started.pop(m[1]), now, threads[m[1]]))
    return jobs + [(start, now, threads[job]) for job, start in started.items()]


def idle_core_seconds(jobs: list[tuple[float, float, int]], cores: int) -> tuple[float, float]:
    """(wall, core-seconds no job held) from the first start to the last finish."""
    events = sorted({t for start, end, _ in jobs for t in (start, end)})
    idle = sum(max(0, cores - sum(c for s, e, c in jobs if s <= a and e >= b)) * (b - a)
               for a, b in zip(events, events[1:]))
    return events[-1] - events[0], idle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", default=sorted(glob.glob("docs/results/*/groups/*")))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--shuffles", type=int, default=100)
    parser.add_argument("--logs", nargs="+", type=Path, help="snakemake console logs of real runs")
    args = parser.parse_args()
    if args.logs:
        for log in args.logs:
            if not logged_jobs(log):
                print(f"{log}: no snakemake jobs")
                continue
            wall, idle = idle_core_seconds(logged_jobs(log), args.cores)
            print(f"{log}: wall {wall:,.0f} s, idle {idle:,.0f} core-s ({idle / (args.cores * wall):.0%})")
        return
    totals = {"any": 0.0, "first": 0.0}
    print(f"| group | jobs | any order: median / worst s | longest edits first: median / worst s "
          f"| idle core-s (median) any / first |")
    print("|---|---|---|---|---|")
    for group in args.groups:
        jobs = parallel_jobs(Path(group) / "run.json")
        rng = random.Random(Path(group).name)  # per group: a group's figures don't depend on the others
        runs = {way: [makespan(jobs, args.cores, way == "first", rng) for _ in range(args.shuffles)]
                for way in totals}
        med = {way: statistics.median(r[0] for r in runs[way]) for way in runs}
        worst = {way: max(r[0] for r in runs[way]) for way in runs}
        idle = {way: statistics.median(r[1] for r in runs[way]) for way in runs}
        for way in totals:
            totals[way] += med[way]
        print(f"| {Path(group).name} | {len(jobs)} | {med['any']:,.0f} / {worst['any']:,.0f} "
              f"| {med['first']:,.0f} / {worst['first']:,.0f} | {idle['any']:,.0f} / {idle['first']:,.0f} |")
    print(f"\nsum of medians: any order {totals['any']:,.0f} s, longest edits first {totals['first']:,.0f} s "
          f"({totals['any'] / totals['first']:.3f}x)")


if __name__ == "__main__":
    main()
