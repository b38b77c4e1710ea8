"""Rule noised_targets: o_noise (tracing reversal target) and the fact-forcing baseline, per case."""
import pandas as pd
from tqdm import tqdm

from locedit.editing.job import editable_cases
from locedit.editing.problems import noised_targets
from locedit.io import read_json, write_parquet
from locedit.jobs import job, job_model

with job(snakemake):
    opts = snakemake.params.editing
    sigma = read_json(snakemake.input.noise)["sigma"]
    cases = editable_cases(pd.read_parquet(snakemake.input.cases), pd.read_parquet(snakemake.input.correctness),
                           "error_injection", opts["max_cases"], opts.get("cases", "correct"))
    model, tok = job_model(snakemake.input.model, snakemake.params.model)
    rows = [{"case_id": c.case_id, **noised_targets(model, tok, c.prompt, c.subject, sigma, opts["noised_target_tokens"],
                                                    opts["ff_noise_samples"], opts["seed"])}
            for c in tqdm(list(cases.itertuples()), desc="noised targets", unit="case", mininterval=10)]
    table = pd.DataFrame(rows, columns=["case_id", "o_noise", "o_noise_tokens", "ff_baseline", "ff_baseline_token"])
    write_parquet(table, snakemake.output[0], {"model": snakemake.params.model["name"], "sigma": sigma})
