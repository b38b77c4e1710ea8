"""Per-case checkpoints: resumed work merges into the same table as an uninterrupted run."""

import pandas as pd

from locedit.io import CaseCheckpoint, write_parquet


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
