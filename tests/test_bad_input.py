"""Bad input stops the workflow with one message naming the problem and the fix, a non-zero exit,
and no output left behind as if complete."""

import json

import pytest
import yaml

from locedit.cases.counterfact import load_counterfact
from test_workflow import snakemake

pytestmark = pytest.mark.workflow


def overlay(tmp_path, **sections) -> str:
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(sections))
    return str(path)


def counterfact_file(tmp_path, break_record: bool = False):
    records = load_counterfact("bundled")[:3]
    if break_record:
        records[1]["requested_rewrite"]["prompt"] = "A prompt without the subject slot"
    path = tmp_path / "counterfact.json"
    path.write_text(json.dumps(records))
    return path, records[1]["case_id"]


def run(tmp_path, target: str, *configfiles: str, dry: bool = False):
    done = snakemake(tmp_path, *(["-n"] if dry else []), "--", target, configfiles=configfiles)
    return done.returncode, done.stdout + done.stderr


def test_model_that_is_not_installed_or_reachable(tmp_path):
    config = overlay(tmp_path, model={"name": "no-such-org/no-such-model", "num_layers": 8},
                     editing={"layers": [0, 2]})
    code, out = run(tmp_path, "resources/models/no-such-org--no-such-model", config)
    assert code != 0
    assert "model.name 'no-such-org/no-such-model' is neither an embedded id" in out
    assert "Fix model.name in the config" in out
    assert not (tmp_path / "resources" / "models" / "no-such-org--no-such-model").exists()


def test_counterfact_file_with_the_wrong_hash(tmp_path):
    path, _ = counterfact_file(tmp_path)
    config = overlay(tmp_path, data={"counterfact": str(path), "counterfact_sha256": "0" * 64, "case_ids": None,
                                     "n_cases": 3})
    code, out = run(tmp_path, "results/smoke/cases.parquet", config)
    assert code != 0 and "expected 0000" in out and "data.counterfact_sha256" in out
    assert not (tmp_path / "results" / "smoke" / "cases.parquet").exists()


def test_unreadable_counterfact_file(tmp_path):
    path = tmp_path / "counterfact.json"
    path.write_text("{ not json")
    config = overlay(tmp_path, data={"counterfact": str(path), "counterfact_sha256": None, "case_ids": None,
                                     "n_cases": 3})
    code, out = run(tmp_path, "results/smoke/cases.parquet", config)
    assert code != 0 and str(path) in out
    assert not (tmp_path / "results" / "smoke" / "cases.parquet").exists()


def test_record_whose_subject_is_not_in_its_prompt(tmp_path):
    path, case_id = counterfact_file(tmp_path, break_record=True)
    config = overlay(tmp_path, data={"counterfact": str(path), "counterfact_sha256": None, "case_ids": None,
                                     "n_cases": 3})
    code, out = run(tmp_path, "results/smoke/cases.parquet", config)
    assert code != 0
    assert f"case_id {case_id}" in out and "subject not in prompt" in out and "data.exclude_case_ids" in out
    assert not (tmp_path / "results" / "smoke" / "cases.parquet").exists()


@pytest.mark.parametrize("section,message", [
    ({"editing": {"layers": [0, 40]}}, "editing.layers [40] are outside the model's layers 0..17"),
    ({"tracing": {"windows": [5, 30]}}, "tracing.windows [30] are larger than the model's 18 layers"),
    ({"tracing": {"windwos": [5]}}, "unknown key 'windwos' at tracing (did you mean 'windows'?)"),
])
def test_config_errors_stop_before_any_job(tmp_path, section, message):
    code, out = run(tmp_path, "all", overlay(tmp_path, **section), dry=True)
    assert code != 0 and message in out
    assert not (tmp_path / "results").exists()
