"""Rule trace_heatmaps: one PNG per case for the first N traced cases of a (kind, window)."""
from pathlib import Path

import pandas as pd

from locedit.analysis.plots import plot_trace_heatmap
from locedit.jobs import job

with job(snakemake):
    table = pd.read_parquet(snakemake.input[0])
    out = Path(snakemake.output[0])
    out.mkdir(parents=True, exist_ok=True)
    for case_id in table.case_id.drop_duplicates().head(snakemake.params.cases):
        plot_trace_heatmap(table[table.case_id == case_id], out / f"case_{case_id}.png")
