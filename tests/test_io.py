"""Per-case checkpoints: resumed work merges into the same table as an uninterrupted run."""

import pandas as pd
import pytest

from locedit.editing.job import EditJob
from locedit.editing.problems import EditRequest
from locedit.io import CaseCheckpoint, write_parquet

from conftest import tiny_model


def table(case_id):
    return pd.DataFrame({"case_id": [case_id] * 2, "x": [case_id * 1.5, case_id * 2.5]})


def test_resume_skips_finished_cases_and_merges_in_order(tmp_path):
    folder = tmp_path / ".partial" / "job"
    first = CaseCheckpoint(folder, {"window": 5})
    first.save(3, table(3))  # then the job "dies"
    again = CaseCheckpoint(folder, {"window": 5})
    assert again.todo([1, 3, 2]) == [1, 2]
    for c in again.todo([1, 3, 2]):
        again.save(c, table(c))
    out = again.merge([1, 3, 2], tmp_path / "out.parquet", provenance={"run": "t"})
    merged = pd.read_parquet(out)
    expected = pd.concat([table(1), table(3), table(2)], ignore_index=True).assign(run="t")
    pd.testing.assert_frame_equal(merged, expected)
    assert not folder.exists()


def test_changed_settings_discard_the_checkpoint(tmp_path):
    folder = tmp_path / "job"
    CaseCheckpoint(folder, {"window": 5}).save(3, table(3))
    assert CaseCheckpoint(folder, {"window": 10}).todo([3]) == [3]


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    write_parquet(table(1), tmp_path / "a.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["a.parquet"]


def test_finished_layers_of_a_case_in_progress_are_kept_until_the_case_is_saved(tmp_path):
    ckpt = CaseCheckpoint(tmp_path / "job", {})
    ckpt.save_layer(3, 4, table(3))
    assert ckpt.todo([3]) == [3]  # a layer is not the case
    pd.testing.assert_frame_equal(ckpt.load_layer(3, 4), table(3))
    assert ckpt.load_layer(3, 8) is None
    ckpt.save_layer(13, 4, table(13))
    assert ckpt.layers_done([3, 13]) == 2 and ckpt.layers_done([3]) == 1 and ckpt.layers_done([1]) == 0
    ckpt.save(3, table(3))
    assert ckpt.load_layer(3, 4) is None and ckpt.todo([3]) == [] and ckpt.layers_done([3, 13]) == 1


class Killed(Exception):
    """Stands in for SIGKILL in the middle of an edit job."""


def test_a_killed_edit_job_resumes_at_the_layer_it_was_editing(tmp_path, monkeypatch, gpt2_tokenizer):
    """An edit job (a batch of 2 cases at central layers 1 and 3) killed while editing layer 3
    keeps layer 1, edits only layer 3 when rerun, and merges to the uninterrupted job's table."""
    model = tiny_model("llama", init_range=0.45)
    reqs = [EditRequest(case_id=i, prompt=p, subject=s, target=t, baseline=b, paraphrases=(f"Also. {p}",),
                        neighborhood=("Paris is in",))
            for i, (s, p, t, b) in enumerate([("Danielle Darrieux", "The mother tongue of Danielle Darrieux is",
                                               "English", "French"),
                                              ("Toko Yasuda", "Toko Yasuda plays the instrument", "piano", "guitar")])]
    hparams = {"steps": 3, "norm_constraint": 1e-2}

    def job(folder, edit):
        monkeypatch.setattr(EditJob, "edit", edit)
        ckpt = CaseCheckpoint(folder, {"job": 1})
        EditJob(model, gpt2_tokenizer, "ft1", "error_injection", reqs, [1, 3], hparams, batch_cases=2).run(ckpt)
        return ckpt

    real, windows = EditJob.edit, []

    def dies_at_layer_3(self, batch, window, *args):
        if window == [3]:
            raise Killed
        return real(self, batch, window, *args)

    def counted(self, batch, window, *args):
        windows.append(window)
        return real(self, batch, window, *args)

    expected = pd.read_parquet(job(tmp_path / "whole", real).merge([0, 1], tmp_path / "whole.parquet"))
    with pytest.raises(Killed):
        job(tmp_path / "killed", dies_at_layer_3)
    assert sorted(p.name for p in (tmp_path / "killed").glob("*.parquet")) == ["layer_1_case_0.parquet",
                                                                               "layer_1_case_1.parquet"]
    resumed = pd.read_parquet(job(tmp_path / "killed", counted).merge([0, 1], tmp_path / "resumed.parquet"))
    assert windows == [[3]]
    timing = ["edit_s", "eval_s"]
    pd.testing.assert_frame_equal(resumed.drop(columns=timing), expected.drop(columns=timing), check_exact=True)
