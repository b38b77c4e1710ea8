"""Matplotlib figures (PNG).

    >>> plot_trace_heatmap(tracing_table[tracing_table.case_id == 13], "heatmap.png")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

KIND_LABELS = {"hidden": "hidden state", "mlp": "MLP output", "attn": "attention output"}
KIND_COLORMAPS = {"hidden": "Purples", "mlp": "Greens", "attn": "Reds"}


def plot_trace_heatmap(case: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Heatmap of restored P(target) for one case: tokens down, layers across (paper Fig. 2).

    ``case`` holds the long tracing table of one (case, kind, window); subject tokens are starred.
    """
    first = case.iloc[0]
    grid = case.pivot(index="token_idx", columns="layer", values="restored_prob").sort_index()
    tokens = case.drop_duplicates("token_idx").set_index("token_idx")["token"].sort_index()
    labels = [
        f"{tok!r}*" if first.subject_start <= i < first.subject_end else repr(tok) for i, tok in tokens.items()
    ]
    height = 1.2 + 0.32 * len(labels)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.3 * grid.shape[1] + 2.5), height), dpi=120)
    image = ax.pcolormesh(grid.to_numpy(), cmap=KIND_COLORMAPS.get(first.kind, "Greens"), vmin=float(first.low))
    ax.invert_yaxis()
    ax.set_yticks([i + 0.5 for i in range(len(labels))], labels, fontsize=8)
    step = max(1, grid.shape[1] // 12)
    ax.set_xticks([i + 0.5 for i in range(0, grid.shape[1], step)], list(grid.columns[::step]), fontsize=8)
    ax.set_xlabel(f"center of the restored window of {first.window} layer(s)")
    kind = KIND_LABELS.get(first.kind, first.kind)
    ax.set_title(title or f"case {first.case_id}: restoring the {kind}", fontsize=9)
    bar = fig.colorbar(image, ax=ax)
    bar.set_label(f"P(target); clean {first.clean:.3f}, corrupted {first.low:.3f}", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
