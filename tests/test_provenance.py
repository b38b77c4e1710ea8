"""Tables written inside a job carry the job's provenance; outside a job they carry none."""

import subprocess
from pathlib import Path

import pandas as pd

from locedit import provenance
from locedit.io import write_parquet


def test_a_table_written_in_a_job_says_what_made_it(tmp_path):
    record = {"rule": "edit", "wildcards": {"method": "rome", "problem": "error_injection"},
              "params": {"editing": {"hparams": {"rome": {"v_lr": 0.5}}, "tuned_from": None}},
              "code": provenance.code_version()}
    token = provenance.start(record)
    try:
        provenance.note("model", {"name": "gemma-3-270m", "dtype": "float32"})
        write_parquet(pd.DataFrame({"case_id": [1]}), tmp_path / "t.parquet")
    finally:
        provenance.stop(token)
    stored = provenance.read(tmp_path / "t.parquet")
    assert stored["params"]["editing"]["hparams"]["rome"]["v_lr"] == 0.5
    assert stored["model"]["name"] == "gemma-3-270m" and stored["code"]["locedit"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(provenance.__file__).parent)
    assert stored["code"]["commit"] == (head.stdout.strip() if head.returncode == 0 else None)  # the checkout's commit
    assert pd.read_parquet(tmp_path / "t.parquet").columns.tolist() == ["case_id"]
    write_parquet(pd.DataFrame({"case_id": [1]}), tmp_path / "outside.parquet")
    assert provenance.read(tmp_path / "outside.parquet") == {}


def test_the_summary_lists_code_model_and_each_methods_hyperparameters():
    record = {"params": {"run": "g0"}, "code": {"locedit": "0.1.0", "commit": "a" * 40, "dirty": True,
                                                 "torch": "2.13.0", "transformers": "5.24.0"},
              "tracing": {"model": {"name": "gemma-3-270m", "model_type": "gemma3_text", "revision": "PyPI x==1",
                                    "dtype": "float32", "device": "cpu"}},
              "edits": {f"rome/{p}": {"editing": {"hparams": {"rome": {"v_lr": 0.5}}, "overrides": {}}}
                        for p in ("error_injection", "fact_forcing")}}
    text = "\n".join(provenance.markdown([record]))
    assert "commit `aaaaaaaaaaaa` (uncommitted changes)" in text and "gemma3_text, PyPI x==1" in text
    assert text.count("- rome:") == 1 and '"v_lr": 0.5' in text
    assert "No provenance recorded" in "\n".join(provenance.markdown([{}]))
    without_model = {k: v for k, v in record.items() if k != "tracing"}
    assert "; the model not recorded" in "\n".join(provenance.markdown([without_model]))
