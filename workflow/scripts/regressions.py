"""Rule regressions: R² of layer / tracing / both per method × problem × metric, the App. B subset,
the Fig. 4 correlation, and summary.md with the paper's tables beside this run's."""
import pandas as pd

from locedit.analysis import concentrated_cases, layer_correlation, regressions
from locedit.jobs import job
from locedit.summary import headline, paper_tables, summary_markdown
from locedit.tracing import tracing_effects

with job(snakemake) as cfg:
    scores = pd.read_parquet(snakemake.input.scores)
    model = cfg["model"]["name"]
    effect = snakemake.params.effect
    r2 = regressions(scores, model, effect)
    r2.to_csv(snakemake.output.r2, index=False, float_format="%.6g")

    effects = tracing_effects(pd.read_parquet(snakemake.input.trace))
    chosen = concentrated_cases(effects, effect=effect)
    subset = scores[scores.case_id.isin(chosen)]
    concentrated = (regressions(subset, model, effect).assign(n_cases=subset.case_id.nunique()) if len(subset)
                    else pd.DataFrame())
    concentrated.to_csv(snakemake.output.concentrated, index=False, float_format="%.6g")

    layer = snakemake.params.correlation_layer
    correlation = layer_correlation(scores, "rome", "error_injection", layer, effect=effect)
    info = {"run": cfg["run"], "model": model, "n_cases": scores.case_id.nunique(),
            "n_layers": scores.layer.nunique(), "layers": sorted(scores.layer.unique().tolist()),
            "effect": effect, "window": cfg["editing"]["effect_window"]}
    with open(snakemake.output.summary, "w") as f:
        f.write(summary_markdown(r2, paper_tables(), concentrated, correlation, info))
    print(headline(r2))
