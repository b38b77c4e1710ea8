"""Raw pre/post probabilities → the paper's normalized scores (paper-spec §8.2–8.3).

    >>> float(recovered(pre=0.2, post=0.6))       # (post − pre) / (1 − pre)
    0.5
    >>> round(float(erased(pre=0.4, post=0.1)), 12)   # (pre − post) / pre
    0.75
    >>> float(neighborhood(pre=0.3, post=0.3))    # 1 − |post − pre| / (|pre − .5| + .5)
    1.0
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["method", "problem", "case_id", "layer"]
ESSENCE_PPL_CAP = 5.0  # a perplexity rise of 5 or more scores 0 (paper App. B)


def recovered(pre, post):
    """Fraction of the way from P_pre to 1 that the edit went, floored at 2e-8 (as the reference)."""
    return np.maximum(2e-8, 1 - (1 - np.asarray(post)) / (1 - np.asarray(pre)))


def erased(pre, post):
    """Fraction of P_pre removed by the edit (fact erasure), floored at 0."""
    return np.maximum(0.0, (np.asarray(pre) - np.asarray(post)) / np.asarray(pre))


def neighborhood(pre, post):
    """1 − the change of P(target) on other subjects' prompts, scaled by how far P_pre is from ½."""
    pre, post = np.asarray(pre), np.asarray(post)
    return 1 - np.abs(post - pre) / (np.abs(pre - 0.5) + 0.5)


def prompt_scores(pre: pd.DataFrame, post: pd.DataFrame, minimize: dict[str, bool]) -> pd.DataFrame:
    """Per evaluated prompt: the score of its type, and the ROME success indicators.

    ``pre`` has (problem, case_id, prompt_type, prompt_idx, p_target, p_baseline); ``post`` adds
    method and layer. ``minimize`` maps a problem to whether its target is minimised (erasure).
    """
    on = ["problem", "case_id", "prompt_type", "prompt_idx"]
    values = [c for c in ("p_target", "p_baseline", "ppl") if c in pre and c in post]
    both = post.merge(pre[on + values], on=on, suffixes=("_post", "_pre"), validate="m:1")
    if len(both) != len(post):
        raise ValueError("some post-edit rows have no pre-edit row: rerun the pre_edit rule")
    is_min = both.problem.map(minimize).astype(bool)
    target_score = np.where(is_min, erased(both.p_target_pre, both.p_target_post),
                            recovered(both.p_target_pre, both.p_target_post))
    both["score"] = np.where(both.prompt_type == "neighborhood",
                             neighborhood(both.p_target_pre, both.p_target_post), target_score)
    new_wins = both.p_target_post > both.p_baseline_post
    both["success"] = np.where(both.prompt_type == "neighborhood", ~new_wins, new_wins)
    both["diff"] = np.where(both.prompt_type == "neighborhood", both.p_baseline_post - both.p_target_post,
                            both.p_target_post - both.p_baseline_post)
    return both


def edit_scores(prompts: pd.DataFrame, first_prompt_only: bool = False) -> pd.DataFrame:
    """One row per (method, problem, case, layer): rewrite / paraphrase / neighborhood scores
    (averaged over prompts of each type, or the first prompt only as the reference code did), the
    overall score (their mean, the paper's), their harmonic mean, and the ROME success metrics.
    With essence rows: the mean perplexity of the essence texts before and after, their difference
    and ``essence_score = 1 − clamp(diff, 0, 5)/5`` (paper-spec §8.4)."""
    essence = prompts[prompts.prompt_type == "essence"]
    prompts = prompts[prompts.prompt_type != "essence"]
    if first_prompt_only:
        prompts = prompts[prompts.prompt_idx == 0]
    wide = prompts.pivot_table(index=KEYS, columns="prompt_type", values=["score", "success", "diff"], aggfunc="mean")
    out = pd.DataFrame(index=wide.index)
    for kind in ("rewrite", "paraphrase", "neighborhood"):
        out[f"{kind}_score"] = wide[("score", kind)]
        out[f"{kind}_success"] = wide[("success", kind)]
        out[f"{kind}_diff"] = wide[("diff", kind)]
    parts = out[["rewrite_score", "paraphrase_score", "neighborhood_score"]]
    out["overall_score"] = parts.mean(axis=1)
    out["harmonic_score"] = len(parts.columns) / (1 / parts.clip(lower=1e-12)).sum(axis=1)
    if len(essence):
        ppl = essence.groupby(KEYS)[["ppl_pre", "ppl_post"]].mean()
        out["essence_ppl_pre"], out["essence_ppl_post"] = ppl.ppl_pre, ppl.ppl_post
        out["essence_ppl_diff"] = out.essence_ppl_post - out.essence_ppl_pre
        out["essence_score"] = 1 - out.essence_ppl_diff.clip(0, ESSENCE_PPL_CAP) / ESSENCE_PPL_CAP
    return out.reset_index()
