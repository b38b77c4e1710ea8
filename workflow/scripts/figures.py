"""Rule figures: the paper's figures that apply to this run (PNG)."""
import pandas as pd

from locedit.jobs import job
from locedit.plots import (plot_argmax_layer_histogram, plot_effect_by_layer, plot_r2_bars, plot_score_vs_effect,
                           plot_scores_by_layer, plot_trace_heatmap)
from locedit.tracing import tracing_effects

with job(snakemake) as cfg:
    out, params = snakemake.output, snakemake.params
    scores = pd.read_parquet(snakemake.input.scores)
    r2 = pd.read_csv(snakemake.input.r2)
    tables = {int(w): pd.read_parquet(p) for w, p in zip(params.windows, snakemake.input.traces)}
    effects = {w: tracing_effects(t) for w, t in tables.items()}
    window = params.effect_window

    effect = params.effect
    plot_argmax_layer_histogram(effects[window], params.n_layers, params.edit_layers, out.fig1, window, effect)
    widest = tables[max(tables)]
    case = params.heatmap_case if params.heatmap_case is not None else int(widest.case_id.iloc[0])
    plot_trace_heatmap(widest[widest.case_id == case], out.fig2)
    plot_score_vs_effect(scores, "rome", "error_injection", params.correlation_layer, out.fig4, effect=effect)
    plot_r2_bars(r2, out.fig6)
    for metric in ("rewrite", "paraphrase", "neighborhood", "overall"):
        plot_scores_by_layer(scores, metric, out[f"by_layer_{metric}"])
    plot_effect_by_layer(effects, out.fig10, effect)
