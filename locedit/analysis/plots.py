"""Matplotlib figures (PNG).

    >>> plot_trace_heatmap(tracing_table[tracing_table.case_id == 13], "heatmap.png")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from locedit.analysis.regressions import CEILING, FLOOR, verdict_label  # noqa: E402
from locedit.plan import EDIT_SITES, METHOD_LABELS, PROBLEM_LABELS  # noqa: E402

KIND_LABELS = {"hidden": "hidden state", "mlp": "MLP output", "attn": "attention output"}
KIND_COLORMAPS = {"hidden": "Purples", "mlp": "Greens", "attn": "Reds"}
METRIC_LABELS = {"prob": "P(target)", "logit_diff": "logit(target) − logit(corrupted answer)"}


def plot_trace_heatmap(case: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Heatmap of the restored metric (P(target) or logit difference) for one case: tokens down,
    layers across (paper Fig. 2).

    ``case`` holds the long tracing table of one (case, kind, window); subject tokens are starred.
    """
    first = case.iloc[0]
    grid = case.pivot(index="token_idx", columns="layer", values="restored").sort_index()
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
    metric = METRIC_LABELS[first.get("metric", "prob")]
    bar.set_label(f"{metric}; clean {first.clean:.3f}, corrupted {first.low:.3f}", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


METHOD_COLORS = {name: m.color for name, m in EDIT_SITES.items()}


def _save(fig, path: str | Path, tight: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_argmax_layer_histogram(effects: pd.DataFrame, n_layers: int, edit_layers: dict[str, list[int]],
                                path: str | Path, window: int, effect: str = "max_fraction_restored",
                                note: str = "") -> Path:
    """Fig. 1: per case, the layer where the tracing effect peaks; edit layers marked (``note``: a
    second title line, e.g. the localization).

    ``effects``: per (case_id, layer) ``max_fraction_restored``; ``edit_layers``: label → layers
    (e.g. {"ROME": [8], "MEMIT": [6, …, 10]}).
    """
    peaks = effects.loc[effects.groupby("case_id")[effect].idxmax(), "layer"]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    ax.hist(peaks, bins=[b - 0.5 for b in range(n_layers + 1)], color="tab:gray", edgecolor="white", zorder=2)
    ymax = max(1, ax.get_ylim()[1])
    for (label, layers), color in zip(edit_layers.items(), ("tab:green", "tab:red", "tab:blue")):
        if len(layers) == 1:
            ax.axvline(layers[0], color=color, ls="--", lw=2, zorder=3, label=f"{label} edit layer")
        else:
            ax.axvspan(min(layers) - 0.5, max(layers) + 0.5, color=color, alpha=0.15, zorder=0,
                       label=f"{label} edit layers")
    ax.set_xlim(-0.5, n_layers - 0.5)
    ax.set_ylim(0, ymax)
    ax.set_xlabel("layer of maximal tracing effect (MLP, window %d)" % window)
    ax.set_ylabel("cases")
    ax.set_title(f"Where tracing peaks ({len(peaks)} cases)" + (f"\n{note}" if note else ""), fontsize=10)
    if edit_layers:
        ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def plot_score_vs_effect(scores: pd.DataFrame, method: str, problem: str, layer: int, path: str | Path,
                         metric: str = "rewrite", effect: str = "max_fraction_restored", note: str = "") -> Path:
    """Fig. 4: edit score vs tracing effect at one edit layer, with the least-squares line and y = x
    (``note``: a second title line)."""
    rows = scores[(scores.method == method) & (scores.problem == problem) & (scores.layer == layer)]
    x, y = rows[effect].to_numpy(), rows[f"{metric}_score"].to_numpy()
    fig, ax = plt.subplots(figsize=(4.8, 4.2), dpi=120)
    ax.scatter(x, y, s=18, alpha=0.7, color=METHOD_COLORS.get(method, "tab:blue"), label="cases")
    ax.plot([0, 1], [0, 1], ls=":", color="gray", label="y = x")
    if len(rows) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        ax.plot([0, 1], [intercept, intercept + slope], color="black", label=f"fit (slope {slope:.2f})")
    ax.set_xlim(-0.02, max(1.02, float(np.nanmax(x, initial=0)) * 1.05))
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel(f"tracing effect ({effect})")
    ax.set_ylabel(f"{metric} score")
    ax.set_title(f"{METHOD_LABELS.get(method, method)}, {PROBLEM_LABELS.get(problem, problem)}, layer {layer} "
                 f"(n = {len(rows)})" + (f"\n{note}" if note else ""), fontsize=9)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_r2_bars(r2: pd.DataFrame, path: str | Path, metric: str = "rewrite") -> Path:
    """Fig. 6: R² of layer alone and of layer + tracing, per problem (panels) and method (bars);
    with bootstrap columns (``r2_layer_lo``/``_hi``), the layer R²'s 95% interval as an error bar."""
    rows = r2[r2.metric == metric]
    problems = [p for p in PROBLEM_LABELS if p in set(rows.problem)]
    methods = [m for m in METHOD_LABELS if m in set(rows.method)]
    fig, axes = plt.subplots(1, len(problems), figsize=(2.6 * len(problems) + 0.8, 3.4), dpi=120, sharey=True,
                             squeeze=False)
    for ax, problem in zip(axes[0], problems):
        part = rows[rows.problem == problem].set_index("method")
        xs = np.arange(len(methods))
        layer = [part.r2_layer.get(m, np.nan) for m in methods]
        added = [max(0.0, part.r2_added.get(m, np.nan)) for m in methods]
        ax.bar(xs, layer, color="tab:blue", label="layer")
        ax.bar(xs, added, bottom=layer, color="tab:orange", label="added by tracing")
        if "r2_layer_lo" in part:
            lo = np.array([part.r2_layer_lo.get(m, np.nan) for m in methods])
            hi = np.array([part.r2_layer_hi.get(m, np.nan) for m in methods])
            ax.errorbar(xs, layer, yerr=[np.clip(layer - lo, 0, None), np.clip(hi - layer, 0, None)], fmt="none",
                        ecolor="black", elinewidth=0.8, capsize=2, label="layer, 95% interval")
        ax.set_xticks(xs, [METHOD_LABELS[m] for m in methods], fontsize=8, rotation=30)
        ax.set_title(PROBLEM_LABELS[problem], fontsize=9)
        ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel(f"R² of {metric} score")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center right")
    fig.tight_layout(rect=(0, 0, 0.87, 1))
    return _save(fig, path, tight=False)


def plot_scores_by_layer(scores: pd.DataFrame, metric: str, path: str | Path) -> Path:
    """Figs. 7–9: mean ``metric`` score by edit layer, one panel per problem, one line per method."""
    column = f"{metric}_score"
    problems = [p for p in PROBLEM_LABELS if p in set(scores.problem)]
    fig, axes = plt.subplots(1, len(problems), figsize=(2.6 * len(problems) + 0.8, 3.2), dpi=120, sharey=True,
                             squeeze=False)
    means = scores.groupby(["problem", "method", "layer"])[column].mean().reset_index()
    for ax, problem in zip(axes[0], problems):
        for method in [m for m in METHOD_LABELS if m in set(scores.method)]:
            line = means[(means.problem == problem) & (means.method == method)]
            ax.plot(line.layer, line[column], marker="o", ms=3, color=METHOD_COLORS[method],
                    label=METHOD_LABELS[method])
        ax.set_title(PROBLEM_LABELS[problem], fontsize=9)
        ax.set_xlabel("edit layer", fontsize=8)
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].set_ylabel(f"mean {metric} score")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center right")
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    return _save(fig, path, tight=False)


def plot_strength_sweep(by_layer: pd.DataFrame, path: str | Path, hparam: str,
                        verdicts: pd.DataFrame | None = None) -> Path:
    """Mean rewrite score by edit layer under each scale of a swept hyperparameter (columns scale,
    method, problem, layer, mean_rewrite; :mod:`locedit.results.strength`): a row of panels per method, a
    panel per problem, a line per scale; dashed lines at the ceiling and floor bounds. With ``verdicts``
    (scale, method, problem, verdict: the sweep's table) each panel lists its verdict per scale in the
    scale's colour."""
    methods = [m for m in METHOD_LABELS if m in set(by_layer.method)]
    problems = [p for p in PROBLEM_LABELS if p in set(by_layer.problem)]
    scales = sorted(by_layer.scale.unique())
    fig, axes = plt.subplots(len(methods), len(problems), figsize=(2.6 * len(problems) + 1.2, 2.6 * len(methods)),
                             dpi=120, sharex=True, sharey=True, squeeze=False)
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.8, len(scales)))  # the last still legible as text
    for row, method in zip(axes, methods):
        for ax, problem in zip(row, problems):
            for scale, color in zip(scales, colors):
                line = by_layer[(by_layer.method == method) & (by_layer.problem == problem) & (by_layer.scale == scale)]
                ax.plot(line.layer, line.mean_rewrite, marker="o", ms=3, color=color, label=f"{hparam} × {scale:g}")
            for bound in (CEILING, FLOOR):
                ax.axhline(bound, color="grey", lw=0.6, ls="--")
            if verdicts is not None:  # at the top of a panel whose lines lie low, else at its bottom
                panel = by_layer[(by_layer.method == method) & (by_layer.problem == problem)]
                top = panel.mean_rewrite.mean() < 0.5
                for rank, (scale, color) in enumerate(zip(scales, colors)):
                    hit = verdicts[(verdicts.method == method) & (verdicts.problem == problem) & (verdicts.scale == scale)]
                    verdict = verdict_label(hit.verdict.iloc[0] if not hit.empty else None)
                    y = 0.92 - 0.09 * rank if top else 0.06 + 0.09 * (len(scales) - 1 - rank)
                    ax.text(0.97, y, f"× {scale:g}: {verdict}", color=color, fontsize=6.5, ha="right",
                            transform=ax.transAxes)
            ax.set_title(f"{METHOD_LABELS[method]}, {PROBLEM_LABELS[problem]}", fontsize=8)
            ax.set_ylim(-0.03, 1.03)
        row[0].set_ylabel("mean rewrite score", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("edit layer", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center right")
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    return _save(fig, path, tight=False)


def plot_effect_by_layer(effects_by_window: dict[int, pd.DataFrame], path: str | Path,
                         effect: str = "max_fraction_restored") -> Path:
    """Fig. 10: mean over cases of the per-layer tracing effect, one line per window size."""
    fig, ax = plt.subplots(figsize=(6.0, 3.6), dpi=120)
    for window, effects in sorted(effects_by_window.items()):
        curve = effects.groupby("layer")[effect].mean()
        ax.plot(curve.index, curve.to_numpy(), marker="o", ms=3, label=f"window {window}")
    ax.set_xlabel("center of the restored window (layer)")
    ax.set_ylabel(f"mean {effect}")
    ax.set_title("Tracing effect by layer (MLP)", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return _save(fig, path)
