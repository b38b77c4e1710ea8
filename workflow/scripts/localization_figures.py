"""Rule localization_figures: Fig. 1 and Fig. 4 under each configured localization
(locedit.results.build.draw_localization_figures)."""
import pandas as pd

from locedit.jobs import job
from locedit.results.build import draw_localization_figures

with job(snakemake):
    params = snakemake.params
    tables = {loc: pd.read_parquet(p) for loc, p in zip(params.localizations, snakemake.input.effects)}
    draw_localization_figures(pd.read_parquet(snakemake.input.scores), tables, snakemake.output[0], params.n_layers,
                              params.effect_window, params.correlation_layer, params.effect)
