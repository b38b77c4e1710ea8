"""The trace and trace_merge scripts on a tiny random model: the merged table is the same, bit for
bit, whatever tracing.shards is, and a killed shard resumes from its checkpoint only on the device
that made it."""

import json

import pandas as pd
import pytest
import torch

from locedit import provenance
from locedit.io import CaseCheckpoint, read_json
import locedit.tracing.job as tracing_job

from conftest import tiny_model
from snakemake_job import fake_snakemake, run_script

CASES = pd.DataFrame({
    "case_id": [13, 18, 37, 40, 52],
    "prompt": ["The mother tongue of Danielle Darrieux is", "Toko Yasuda plays the instrument",
               "Michael Jordan plays the sport of", "The Eiffel Tower is located in the city of",
               "Apple A5 was created by"],
    "subject": ["Danielle Darrieux", "Toko Yasuda", "Michael Jordan", "Eiffel Tower", "Apple A5"],
    "target_true": ["French", "guitar", "basketball", "Paris", "Apple"],
})
CORRECT = [True, False, True, True, True]  # case 18 is not traced (tracing.cases: correct)
LOCALIZATION = {"method": "exact", "corruption": "gaussian", "metric": "prob"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, gpt2_tokenizer):
    """A saved tiny GPT-2 and the tables a trace job reads."""
    folder = tmp_path_factory.mktemp("trace_job")
    tiny_model("gpt2").save_pretrained(folder / "model")
    gpt2_tokenizer.save_pretrained(folder / "model")
    CASES.to_parquet(folder / "cases.parquet")
    pd.DataFrame({"case_id": CASES.case_id, "is_correct": CORRECT}).to_parquet(folder / "correctness.parquet")
    (folder / "noise.json").write_text(json.dumps({"sigma": 0.5}))
    return {"model": str(folder / "model"), "cases": str(folder / "cases.parquet"),
            "correctness": str(folder / "correctness.parquet"), "noise": str(folder / "noise.json")}


def params(shards: int) -> dict:
    return {"tracing": {"samples": 2, "seed": 1, "all_tokens": False, "cases": "correct", "min_clean_prob": 0.0,
                        "max_rows": 8, "mixed_precision": False, "shards": shards},
            "localization": LOCALIZATION, "model": {"name": "tiny-gpt2", "dtype": "float32", "device": "auto"},
            "run": "t"}


def trace_shard(inputs, folder, shard: int, shards: int):
    out = folder / "shards" / f"shard{shard}.parquet"
    smk = fake_snakemake("trace", input=inputs, output=[out], log=folder / f"trace_shard{shard}.log",
                         params={**params(shards), "partial": str(folder / ".partial" / f"shard{shard}")},
                         wildcards={"kind": "mlp", "window": "3", "shard": str(shard)})
    run_script("trace", smk)
    return out


def traced(inputs, folder, shards: int) -> pd.DataFrame:
    """The table of a sharded trace: every shard job, then the merge job."""
    paths = [trace_shard(inputs, folder, i, shards) for i in range(shards)]
    merged = folder / "mlp_w3.parquet"
    merge = {k: inputs[k] for k in ("cases", "correctness", "noise")}
    run_script("trace_merge", fake_snakemake("trace_merge", input={**merge, "shards": [str(p) for p in paths]},
                                             output=[merged], log=folder / "merge.log", params=params(shards),
                                             wildcards={"kind": "mlp", "window": "3"}))
    return pd.read_parquet(merged)


def unsharded(inputs, folder) -> pd.DataFrame:
    """The table as the trace job made it before sharding: one checkpoint merged with the provenance columns."""
    from locedit.models import load_model

    model, tok = load_model(inputs["model"], "float32", "cpu")
    cases = CASES[CORRECT].assign(is_correct=True)
    opts = params(1)["tracing"]
    checkpoint = CaseCheckpoint(folder / ".partial", {})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the jobs' threads (a different count may round differently)
    try:
        tracing_job.TraceJob(cases, kind="mlp", window=3, sigma=0.5, tracing=opts,
                             localization=LOCALIZATION).run(model, tok, checkpoint)
    finally:
        torch.set_num_threads(threads)
    path = checkpoint.merge(cases.case_id.tolist(), folder / "mlp_w3.parquet",
                            {"model": "tiny-gpt2", "run": "t", "sigma": 0.5, "samples": 2, "seed": 1, **LOCALIZATION})
    return pd.read_parquet(path)


def test_the_merged_table_is_the_same_for_any_number_of_shards(inputs, tmp_path):
    reference = unsharded(inputs, tmp_path / "before")
    assert list(reference.case_id.unique()) == [13, 37, 40, 52]  # case order; 18 not traced
    for shards in (1, 3, 5):  # 5: one shard gets no case
        table = traced(inputs, tmp_path / f"shards{shards}", shards)
        pd.testing.assert_frame_equal(table, reference, check_exact=True, obj=f"{shards} shards")
    record = provenance.read(tmp_path / "shards3" / "mlp_w3.parquet")
    assert record["rule"] == "trace_merge" and record["model"]["name"] == "tiny-gpt2"
    assert record["shards"] == [{"shard": str(i), "device": "cpu"} for i in range(3)]
    shard_record = provenance.read(tmp_path / "shards3" / "shards" / "shard0.parquet")
    assert shard_record["device"] == "cpu" and shard_record["model"]["device"] == "cpu"
    assert not list((tmp_path / "shards3" / ".partial").iterdir())  # each shard's checkpoint removed once merged


def test_merging_refuses_cases_of_another_selection(tmp_path):
    shard = tmp_path / "shard0.parquet"
    pd.DataFrame({"case_id": [99], "restored": [0.5]}).to_parquet(shard)
    with pytest.raises(ValueError, match=r"case_ids \[99\] that are not among the traced cases"):
        tracing_job.merge_shards([13, 37], [shard], tmp_path / "out.parquet")


class Killed(Exception):
    """Stands in for SIGKILL in the middle of a trace job."""


@pytest.mark.parametrize("other_device", [False, True], ids=["same device", "checkpoint from a GPU"])
def test_a_killed_shard_resumes_only_on_the_device_that_made_its_checkpoint(inputs, tmp_path, monkeypatch,
                                                                            other_device):
    reference = traced(inputs, tmp_path / "whole", 1)
    real, calls = tracing_job.trace, []

    def dies_at_the_second_case(*args, **kwargs):
        if calls:
            raise Killed
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(tracing_job, "trace", dies_at_the_second_case)
    with pytest.raises(Killed):
        trace_shard(inputs, tmp_path / "killed", 0, 1)
    stamp = tmp_path / "killed" / ".partial" / "shard0" / "params.json"
    assert read_json(stamp)["device"] == "cpu"
    if other_device:  # the checkpoint a GPU job would have left: its stamp names the GPU
        stamp.write_text(json.dumps({**read_json(stamp), "device": "cuda (NVIDIA H100 80GB HBM3)"}, sort_keys=True))

    def counted(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    calls.clear()
    monkeypatch.setattr(tracing_job, "trace", counted)
    table = traced(inputs, tmp_path / "killed", 1)
    assert len(calls) == (4 if other_device else 3)  # the GPU's case is traced again on this CPU
    pd.testing.assert_frame_equal(table, reference, check_exact=True)
