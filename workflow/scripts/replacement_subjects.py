"""Rule replacement_subjects: each case's partner for symmetric token replacement (tracing.corruption
str), chosen deterministically from the CounterFact records of its relation, with the partner's
answer; cases without one are logged by case_id and listed in the table with why."""
import logging

import pandas as pd
from transformers import AutoTokenizer

from locedit.cases.counterfact import cases_frame, load_counterfact, record_problems
from locedit.io import write_parquet
from locedit.jobs import job
from locedit.models import resolve_source
from locedit.tracing.corruption import replacements

with job(snakemake):
    records = load_counterfact(snakemake.params.counterfact)
    usable = [r for r in records if isinstance(r, dict) and not record_problems(r)]
    if len(usable) < len(records):
        logging.info("%d of %d CounterFact records fail validation and are not partners", len(records) - len(usable),
                     len(records))
    pool = cases_frame(usable)
    tok = AutoTokenizer.from_pretrained(resolve_source(snakemake.input.model))
    table = replacements(tok, pd.read_parquet(snakemake.input.cases), pool, seed=snakemake.params.seed)
    for row in table[table.partner_case_id.isna()].itertuples():
        logging.warning("case_id %d has no str partner: %s", row.case_id, row.reason)
    logging.info("%d of %d cases have a partner of their relation; %d have none", int(table.partner_case_id.notna().sum()),
                 len(table), int(table.partner_case_id.isna().sum()))
    write_parquet(table, snakemake.output[0], {"run": snakemake.params.run, "seed": snakemake.params.seed,
                                               "pool": snakemake.params.counterfact})
