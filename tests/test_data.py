"""Bundled data, case selection, and the documented messages for bad records and files."""

import copy
import gzip
import json

import pandas as pd
import pytest

from locedit.cases.counterfact import (BadRecordsError, cases_frame, load_counterfact, load_knowns, record_problems,
                                       select_cases)


@pytest.fixture(scope="module")
def records():
    return load_counterfact("bundled")


def test_bundled_counterfact_and_knowns(records):
    assert len(records) == 2191
    assert len(load_knowns()) == 1209
    assert all(not record_problems(r) for r in records)


def test_first_n_by_case_id_and_explicit_ids(records):
    assert [r["case_id"] for r in select_cases(records, n_cases=3)] == [13, 18, 37]
    assert [r["case_id"] for r in select_cases(list(reversed(records)), n_cases=3)] == [13, 18, 37]
    assert [r["case_id"] for r in select_cases(records, case_ids=[37, 13])] == [37, 13]
    assert [r["case_id"] for r in select_cases(records, n_cases=2, exclude_case_ids=[13])] == [18, 37]


def test_groups_of_records_partition_the_first_n(records):
    first = [r["case_id"] for r in select_cases(records, n_cases=9)]
    groups = [[r["case_id"] for r in select_cases(records, n_cases=3, skip_cases=k)] for k in (0, 3, 6)]
    assert sum(groups, []) == first


def test_unknown_case_ids_are_named(records):
    with pytest.raises(BadRecordsError, match=r"not found in the CounterFact file: \[999999\]"):
        select_cases(records, case_ids=[13, 999999])


def test_cases_frame_fills_in_the_subject(records):
    frame = cases_frame(select_cases(records, n_cases=1))
    row = frame.iloc[0]
    assert row.prompt == "Ferrari F40, developed by" and row.target_true == "Ferrari" and row.target_new == "Microsoft"
    assert len(row.paraphrase_prompts) == 2 and len(row.neighborhood_prompts) == 10


def test_bad_records_are_reported_with_case_id_and_reason(records):
    good = select_cases(records, n_cases=4)
    bad = copy.deepcopy(good)
    bad[0]["requested_rewrite"]["prompt"] = "The developer is"  # no {} slot: subject not in prompt
    del bad[1]["neighborhood_prompts"]
    bad[2]["requested_rewrite"]["target_new"]["str"] = " "
    bad[3]["paraphrase_prompts"][1] = "Something else entirely"
    with pytest.raises(BadRecordsError) as err:
        select_cases(bad, n_cases=4)
    message = str(err.value)
    assert "case_id 13: subject not in prompt" in message
    assert "case_id 18: missing field 'neighborhood_prompts'" in message
    assert "case_id 37: 'requested_rewrite.target_new.str' is missing or empty" in message
    assert "case_id 51: subject 'Prydz Bay' not in paraphrase_prompts[1] 'Something else entirely'" in message
    assert "data.exclude_case_ids" in message  # how to fix it


def test_duplicate_case_ids_are_reported(records):
    two = select_cases(records, n_cases=1) * 2
    with pytest.raises(BadRecordsError, match="case_id 13: case_id occurs more than once"):
        select_cases(two)


def test_wrong_hash_is_named(tmp_path, records):
    path = tmp_path / "counterfact.json"
    path.write_text(json.dumps(records[:3]))
    with pytest.raises(ValueError, match="has sha256 .* expected d0170561.*counterfact_sha256: null"):
        load_counterfact(str(path))
    assert len(load_counterfact(str(path), sha256=None)) == 3


def test_unreadable_file_is_named(tmp_path):
    path = tmp_path / "counterfact.json.gz"
    path.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="cannot read CounterFact file .*counterfact.json.gz"):
        load_counterfact(str(path), sha256=None)
    with pytest.raises(FileNotFoundError, match="is not 'bundled', an https URL, or an existing file"):
        load_counterfact(str(tmp_path / "missing.json"))


def test_offline_download_says_what_to_do(tmp_path):
    with pytest.raises(ConnectionError, match="looks offline.*data.counterfact"):
        load_counterfact("https://127.0.0.1:9/counterfact.json", download_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # no partial file left behind


def test_gzipped_local_file_hash_is_of_its_content(tmp_path, records):
    from locedit.cases.counterfact import sha256_of

    plain, packed = tmp_path / "a.json", tmp_path / "a.json.gz"
    plain.write_text(json.dumps(records[:2]))
    with gzip.open(packed, "wt") as f:
        f.write(json.dumps(records[:2]))
    assert sha256_of(plain) == sha256_of(packed)


def test_a_url_is_downloaded_once_and_checked(tmp_path, records):
    """The function behind rule fetch_counterfact, on file:// URLs (no network here)."""
    from locedit.cases.counterfact import download_counterfact, sha256_of

    published = tmp_path / "published" / "counterfact.json"
    published.parent.mkdir()
    published.write_text(json.dumps(records[:3]))
    dest = tmp_path / "resources" / "data" / "counterfact.json"
    with pytest.raises(ValueError, match="expected 0000.*data.counterfact_sha256"):
        download_counterfact(published.as_uri(), dest, sha256="0" * 64)
    assert not list(dest.parent.iterdir())  # neither the wrong file nor a partial one is left
    assert download_counterfact(published.as_uri(), dest, sha256_of(published)) == dest
    assert dest.read_bytes() == published.read_bytes()
    published.unlink()  # once: the copy is used, the URL is not read again
    assert download_counterfact(published.as_uri(), dest, sha256_of(dest)) == dest


@pytest.fixture
def served(tmp_path):
    """An HTTP server on localhost for ``tmp_path / "www"`` (the workflow downloads http(s) URLs)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    (tmp_path / "www").mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path / "www", f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.workflow
def test_rule_fetch_counterfact_downloads_a_url_once_for_select_cases(tmp_path, records, served):
    """A URL in data.counterfact is fetched by its own (local) rule into resources/data/, and
    select_cases reads that file: rerun with the server gone, it needs no network."""
    import yaml

    from locedit.cases.counterfact import sha256_of
    from test_workflow import snakemake

    www, url = served
    (www / "counterfact.json").write_text(json.dumps(records[:5]))
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"counterfact": f"{url}/counterfact.json", "case_ids": None,
                                                "n_cases": 3, "counterfact_sha256": sha256_of(www / "counterfact.json")}}))
    workdir = tmp_path / "work"
    done = snakemake(workdir, "--", "results/smoke/cases.parquet", configfiles=(str(overlay),))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "fetch_counterfact" in done.stdout + done.stderr
    assert (workdir / "resources" / "data" / "counterfact.json").read_bytes() == (www / "counterfact.json").read_bytes()
    (www / "counterfact.json").unlink()
    done = snakemake(workdir, "--forcerun", "select_cases", "--", "results/smoke/cases.parquet",
                     configfiles=(str(overlay),))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert list(pd.read_parquet(workdir / "results" / "smoke" / "cases.parquet").case_id) == [13, 18, 37]
