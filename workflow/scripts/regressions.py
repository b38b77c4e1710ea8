"""Rule regressions: R² of layer / tracing / both per method × problem × metric with bootstrap
intervals, the App. B subset, the Fig. 4 correlation, the regressions under every configured
localization with their agreement, and summary.md with the paper's tables beside this run's
(locedit.results.build.regression_tables / localization_tables, also used to rebuild from a results folder).
summary.md opens with this run's bootstrap verdict count and, beside it, the committed full-protocol
verdicts of the same model (input ``committed``: docs/results/<model>/r2.csv where the checkout has it)."""
import os

import pandas as pd

from locedit import provenance
from locedit.analysis.summary import headline, verdict_opening
from locedit.jobs import job
from locedit.results.build import localization_tables, regression_tables

with job(snakemake):
    params = snakemake.params
    model = params.model["name"]
    scores = pd.read_parquet(snakemake.input.scores)
    tables = {loc: pd.read_parquet(p) for loc, p in zip(params.localizations, snakemake.input.effects)}
    compared, agreed, section = localization_tables(scores, tables, model, params.effect, params.bootstrap)
    section = section + provenance.markdown([provenance.read(snakemake.input.scores)])
    committed = snakemake.input.get("committed", [])  # [] or [docs/results/<model>/r2.csv]
    committed = [committed] if isinstance(committed, str) else list(committed)
    info = {"run": params.run, "model": model, "window": params.effect_window,
            "committed": os.path.dirname(committed[0]) if committed else None}
    r2, concentrated, summary = regression_tables(scores, pd.read_parquet(snakemake.input.trace), model, params.effect,
                                                  params.correlation_layer, info, params.bootstrap, section)
    r2.to_csv(snakemake.output.r2, index=False, float_format="%.6g")
    concentrated.to_csv(snakemake.output.concentrated, index=False, float_format="%.6g")
    compared.to_csv(snakemake.output.localizations, index=False, float_format="%.6g")
    agreed.to_csv(snakemake.output.agreement, index=False, float_format="%.6g")
    with open(snakemake.output.summary, "w") as f:
        f.write(summary)
    print(verdict_opening(r2))
    print(headline(r2))
