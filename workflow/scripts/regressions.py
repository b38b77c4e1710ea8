"""Rule regressions: R² of layer / tracing / both per method × problem × metric with bootstrap
intervals, the App. B subset, the Fig. 4 correlation, and summary.md with the paper's tables
beside this run's (locedit.results.regression_tables, also used to rebuild from a results folder)."""
import pandas as pd

from locedit.jobs import job
from locedit.results import regression_tables
from locedit.summary import headline

with job(snakemake):
    params = snakemake.params
    info = {"run": snakemake.params.run, "model": snakemake.params.model["name"], "window": snakemake.params.effect_window}
    r2, concentrated, summary = regression_tables(pd.read_parquet(snakemake.input.scores),
                                                  pd.read_parquet(snakemake.input.trace), snakemake.params.model["name"],
                                                  params.effect, params.correlation_layer, info, params.bootstrap)
    r2.to_csv(snakemake.output.r2, index=False, float_format="%.6g")
    concentrated.to_csv(snakemake.output.concentrated, index=False, float_format="%.6g")
    with open(snakemake.output.summary, "w") as f:
        f.write(summary)
    print(headline(r2))
