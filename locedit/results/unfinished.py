"""An unfinished run carried to another machine or session: its finished tables and the checkpoints
of the jobs in flight, stashed in a committable folder and restored so the workflow resumes there.

    python -m locedit.results stash results/paper-gemma-g1 docs/results/gemma-3-270m/unfinished/paper-gemma-g1
    # later, on a fresh clone: build what every job reads first (model, key statistics), then restore
    snakemake --cores 2 --until factor_stats --configfile configs/paper-gemma.yaml g1.yaml
    python -m locedit.results restore docs/results/gemma-3-270m/unfinished/paper-gemma-g1 results/paper-gemma-g1
    snakemake --cores 2 --configfile configs/paper-gemma.yaml g1.yaml      # runs only what is missing

A stash holds every file of the run folder except ``analysis/`` (rebuilt in seconds), including
``.partial/`` (the checkpoints of jobs that were killed or not finished), so a job resumes at its
next checkpoint (a traced case; an edited central layer of a batch). Snakemake decides what to rerun
from file times: restored files all get one time, later than the model and statistics built
before, so nothing restored is redone. (The
stash carries no Snakemake metadata, so a changed parameter or script is not noticed for the
restored outputs: restore into the same commit's code and config.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from locedit.plan import model_slug

SKIPPED = ("analysis",)
MANIFEST = "stash.json"


def stash(run_dir: Path, folder: Path, model: str) -> list[Path]:
    """Copy ``run_dir``'s files (not ``analysis/``) into ``folder`` with a manifest; the files copied."""
    run_dir, folder = Path(run_dir), Path(folder)
    if not run_dir.is_dir():
        raise SystemExit(f"{run_dir} is not a run folder (results/<run>)")
    copied = []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(run_dir)
        if relative.parts[0] in SKIPPED:
            continue
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / relative)
        copied.append(relative)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    manifest = {"run": run_dir.name, "model": model, "commit": commit, "stashed": time.strftime("%Y-%m-%d %H:%M"),
                "files": [str(p) for p in copied]}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return copied


def restore(folder: Path, run_dir: Path, models: Path = Path("resources/models")) -> list[Path]:
    """Copy a stash into ``run_dir`` (files already there are kept) and give every restored file one
    modification time, now; refuses while the model folder the run reads is missing."""
    folder, run_dir = Path(folder), Path(run_dir)
    manifest = json.loads((folder / MANIFEST).read_text())
    model_dir = Path(models) / model_slug(manifest["model"])
    if not model_dir.exists():
        raise SystemExit(f"{model_dir} is missing: build the model and key statistics first "
                         "(snakemake --until factor_stats ...), then restore, so they are older than the restored tables")
    restored = []
    for relative in map(Path, manifest["files"]):
        target = run_dir / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / relative, target)
            restored.append(target)
    now = time.time()
    for target in restored:
        os.utime(target, (now, now))
    return restored
