"""Rule essence_texts: texts sampled from the unedited model after "{subject} is a", per edited case."""
import pandas as pd
from tqdm import tqdm

from locedit.editing.essence import essence_texts
from locedit.editing.job import editable_cases
from locedit.io import write_parquet
from locedit.jobs import job, job_model

with job(snakemake):
    opts = snakemake.params.editing
    spec = opts["essence"]
    cases = editable_cases(pd.read_parquet(snakemake.input.cases), pd.read_parquet(snakemake.input.correctness),
                           "error_injection", opts["max_cases"], opts.get("cases", "correct"))
    model, tok = job_model(snakemake.input.model, snakemake.params.model)
    rows = []
    for case in tqdm(list(cases.itertuples()), desc="essence texts", unit="case", mininterval=10):
        texts = essence_texts(model, tok, case.subject, spec.get("texts", 5), spec.get("max_new_tokens", 100),
                              spec.get("top_k", 5), seed=opts["seed"] + int(case.case_id))
        rows += [{"case_id": case.case_id, "text_idx": i, "text": t} for i, t in enumerate(texts)]
    write_parquet(pd.DataFrame(rows, columns=["case_id", "text_idx", "text"]), snakemake.output[0],
                  {"model": snakemake.params.model["name"], "essence": spec})
