"""Rule figures: the paper's figures that apply to this run (PNG; locedit.results.build.draw_figures)."""
import pandas as pd

from locedit.jobs import job
from locedit.results.build import FIGURES, draw_figures

with job(snakemake):
    params = snakemake.params
    tables = {int(w): pd.read_parquet(p) for w, p in zip(params.windows, snakemake.input.traces)}
    draw_figures(pd.read_parquet(snakemake.input.scores), pd.read_csv(snakemake.input.r2), tables,
                 {name: getattr(snakemake.output, name) for name in FIGURES}, params.n_layers, params.effect_window,
                 params.correlation_layer, params.effect, params.heatmap_case)
