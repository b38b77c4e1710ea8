"""Rule select_cases: the first N CounterFact records by case_id (or an id list), validated."""
import logging

from locedit.cases.counterfact import COUNTERFACT_SHA256, cases_frame, load_counterfact, select_cases
from locedit.io import write_parquet
from locedit.jobs import job

with job(snakemake):
    data = snakemake.params.data
    source = data.get("counterfact", "bundled")
    local = snakemake.input.get("counterfact", source)  # a URL's copy made by rule fetch_counterfact
    records = load_counterfact(local, sha256=data.get("counterfact_sha256", COUNTERFACT_SHA256))
    chosen = select_cases(records, data.get("n_cases"), data.get("case_ids"), data.get("exclude_case_ids", []),
                          data.get("skip_cases", 0))
    logging.info("%d of %d records selected from %s", len(chosen), len(records), source)
    write_parquet(cases_frame(chosen), snakemake.output[0], {"source": source})
