"""CounterFact and knowns: loading, validation of records, case selection.

The default data is bundled with the package (see ``locedit/bundled/PROVENANCE.md``)::

    >>> records = load_counterfact("bundled")
    >>> len(records), records[0]["case_id"]
    (2191, 13)
    >>> [r["case_id"] for r in select_cases(records, n_cases=3)]
    [13, 18, 37]

The full ``counterfact.json`` (21,919 records) is read from a local path or downloaded once from
an https URL into ``resources/data/`` and checked against its published sha256.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

BUNDLED_COUNTERFACT = "counterfact_hf_test_2191.json.gz"
BUNDLED_KNOWNS = "known_1000.json.gz"
COUNTERFACT_URL = "https://rome.baulab.info/data/dsets/counterfact.json"
COUNTERFACT_SHA256 = "d017056125178a13728594e66a801357a8db9ed7973a7425554bb4271de9fc6f"


class BadRecordsError(ValueError):
    """Raised when records fail validation; the message lists each case_id with its reason."""


@dataclass(frozen=True)
class RecordProblem:
    case_id: object
    reason: str

    def __str__(self) -> str:
        return f"case_id {self.case_id}: {self.reason}"


def bundled_path(name: str) -> Path:
    return Path(str(resources.files("locedit") / "bundled" / name))


def _read_json(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, EOFError) as err:
        raise ValueError(
            f"cannot read CounterFact file {path}: {type(err).__name__}: {err}. "
            "Point data.counterfact at a readable counterfact.json (or .json.gz), or use 'bundled'."
        ) from err


def sha256_of(path: Path) -> str:
    """sha256 of a file's content (of the decompressed content for ``.gz``)."""
    digest = hashlib.sha256()
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_counterfact(url: str, dest: Path, sha256: str | None = COUNTERFACT_SHA256) -> Path:
    """Download ``url`` to ``dest`` once and check its sha256; a download cut off or with another
    sha256 is not left at ``dest`` (the workflow's rule fetch_counterfact)::

        >>> download_counterfact(COUNTERFACT_URL, Path("resources/data/counterfact.json"))  # doctest: +SKIP
    """
    if dest.exists():
        check_sha256(dest, sha256)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except (urllib.error.URLError, OSError) as err:
        tmp.unlink(missing_ok=True)
        raise ConnectionError(
            f"cannot download CounterFact from {url} ({err}). This machine looks offline: on a cluster, "
            "run the rule fetch_counterfact on the login node (README 'Running on an offline cluster'); "
            f"or download the file elsewhere, put it at {dest} (or any path) and set data.counterfact "
            "to that path; or use data.counterfact: bundled."
        ) from err
    tmp.replace(dest)
    try:
        check_sha256(dest, sha256)
    except ValueError:
        dest.unlink()  # not left where the next run would take it for the data
        raise
    return dest


def check_sha256(path: Path, sha256: str | None) -> None:
    if sha256 and (actual := sha256_of(path)) != sha256:
        raise ValueError(
            f"{path} has sha256 {actual}, expected {sha256} (data.counterfact_sha256). "
            "Replace the file with the published counterfact.json, or set data.counterfact_sha256: null "
            "to accept another file."
        )


def load_counterfact(
    source: str = "bundled", download_dir: str | Path = "resources/data", sha256: str | None = COUNTERFACT_SHA256
) -> list[dict]:
    """Records from ``bundled``, a local ``.json``/``.json.gz`` path, or an https URL."""
    if source == "bundled":
        return _read_json(bundled_path(BUNDLED_COUNTERFACT))
    if source.startswith(("https://", "http://")):
        dest = Path(download_dir) / Path(source).name
        return _read_json(download_counterfact(source, dest, sha256))
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"data.counterfact {source!r} is not 'bundled', an https URL, or an existing file"
        )
    check_sha256(path, sha256)
    return _read_json(path)


def load_knowns() -> list[dict]:
    """ROME's known_1000 facts (1,209 records), bundled."""
    return _read_json(bundled_path(BUNDLED_KNOWNS))


REQUIRED = {
    "case_id": (int,),
    "requested_rewrite": (dict,),
    "paraphrase_prompts": (list,),
    "neighborhood_prompts": (list,),
}


def record_problems(record: dict) -> list[RecordProblem]:
    """Everything wrong with one CounterFact record (empty when it is usable)."""
    case_id = record.get("case_id", "<missing>") if isinstance(record, dict) else "<not an object>"
    if not isinstance(record, dict):
        return [RecordProblem(case_id, "record is not a JSON object")]
    problems = []
    for key, types in REQUIRED.items():
        if key not in record:
            problems.append(RecordProblem(case_id, f"missing field {key!r}"))
        elif not isinstance(record[key], types):
            problems.append(RecordProblem(case_id, f"field {key!r} is not a {types[0].__name__}"))
    if problems:
        return problems
    rw = record["requested_rewrite"]
    for key in ("prompt", "subject", "target_true", "target_new"):
        if key not in rw:
            problems.append(RecordProblem(case_id, f"missing field 'requested_rewrite.{key}'"))
    if problems:
        return problems
    for key in ("target_true", "target_new"):
        if not isinstance(rw[key], dict) or not str(rw[key].get("str", "")).strip():
            problems.append(RecordProblem(case_id, f"'requested_rewrite.{key}.str' is missing or empty"))
    subject, prompt = str(rw["subject"]), str(rw["prompt"])
    if not subject.strip():
        problems.append(RecordProblem(case_id, "subject is empty"))
    elif prompt.count("{}") != 1:
        problems.append(
            RecordProblem(case_id, f"subject not in prompt: template {prompt!r} must hold '{{}}' exactly once")
        )
    for i, paraphrase in enumerate(record["paraphrase_prompts"]):
        if subject and subject not in paraphrase:
            problems.append(RecordProblem(case_id, f"subject {subject!r} not in paraphrase_prompts[{i}] {paraphrase!r}"))
    return problems


def check_records(records: list[dict]) -> None:
    """Raise :class:`BadRecordsError` naming every bad record, its case_id and the fix."""
    problems = [p for r in records for p in record_problems(r)]
    seen, duplicates = set(), set()
    for r in records:
        cid = r.get("case_id") if isinstance(r, dict) else None
        if cid in seen:
            duplicates.add(cid)
        seen.add(cid)
    problems += [RecordProblem(cid, "case_id occurs more than once") for cid in sorted(duplicates, key=str)]
    if problems:
        listed = "\n  ".join(str(p) for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise BadRecordsError(
            f"{len(problems)} problem(s) in the selected CounterFact records:\n  {listed}{more}\n"
            "Fix the records in the data file, or leave them out with data.exclude_case_ids: [...]."
        )


def select_cases(
    records: list[dict],
    n_cases: int | None = None,
    case_ids: list[int] | None = None,
    exclude_case_ids: list[int] = (),
    skip_cases: int = 0,
) -> list[dict]:
    """The first ``n_cases`` records by case_id after ``skip_cases`` of them, or exactly
    ``case_ids`` (in that order); validated. ``skip_cases`` runs the records in groups: a run of
    ``n_cases=60, skip_cases=60`` takes the second sixty."""
    excluded = set(exclude_case_ids)
    if case_ids is not None:
        by_id = {r.get("case_id"): r for r in records if isinstance(r, dict)}
        missing = [c for c in case_ids if c not in by_id]
        if missing:
            raise BadRecordsError(
                f"data.case_ids not found in the CounterFact file: {missing[:20]}; "
                "use case_ids present in data.counterfact"
            )
        chosen = [by_id[c] for c in case_ids if c not in excluded]
    else:
        usable = [r for r in records if not (isinstance(r, dict) and r.get("case_id") in excluded)]
        ordered = sorted(usable, key=_case_id_order)
        ordered = ordered[skip_cases:]
        chosen = ordered if n_cases is None else ordered[:n_cases]
    check_records(chosen)
    return chosen


def _case_id_order(record) -> tuple[int, int]:
    """Records with an integer case_id first, by id; the rest (reported by validation) last."""
    cid = record.get("case_id") if isinstance(record, dict) else None
    return (0, cid) if isinstance(cid, int) else (1, 0)


def cases_frame(records: list[dict]) -> pd.DataFrame:
    """One row per case: the fields every later stage needs, prompts as list columns."""
    rows = []
    for r in records:
        rw = r["requested_rewrite"]
        rows.append(
            {
                "case_id": int(r["case_id"]),
                "relation_id": rw.get("relation_id", ""),
                "prompt_template": rw["prompt"],
                "subject": rw["subject"],
                "prompt": rw["prompt"].format(rw["subject"]),
                "target_true": rw["target_true"]["str"],
                "target_new": rw["target_new"]["str"],
                "paraphrase_prompts": list(r["paraphrase_prompts"]),
                "neighborhood_prompts": list(r["neighborhood_prompts"]),
            }
        )
    return pd.DataFrame(rows)
