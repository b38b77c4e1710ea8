"""Every figure function writes a decodable, non-blank PNG from synthetic tables."""

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from locedit.analysis.plots import (plot_argmax_layer_histogram, plot_effect_by_layer, plot_r2_bars,
                                    plot_score_vs_effect, plot_scores_by_layer)

RNG = np.random.default_rng(0)
METHODS, PROBLEMS, LAYERS = ["ft1", "rome"], ["error_injection", "fact_forcing"], [0, 3, 6]


def scores() -> pd.DataFrame:
    rows = [{"method": m, "problem": p, "case_id": c, "layer": l, "max_fraction_restored": RNG.uniform(),
             **{f"{k}_score": RNG.uniform() for k in ("rewrite", "paraphrase", "neighborhood", "overall")}}
            for m in METHODS for p in PROBLEMS for c in range(5) for l in LAYERS]
    return pd.DataFrame(rows)


def effects() -> pd.DataFrame:
    return pd.DataFrame([{"case_id": c, "layer": l, "max_fraction_restored": RNG.uniform()}
                         for c in range(8) for l in range(8)])


def assert_image(path):
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01  # something was drawn


@pytest.mark.parametrize("draw", [
    lambda p: plot_argmax_layer_histogram(effects(), 8, {"ROME": [3], "MEMIT": [1, 2, 3, 4, 5]}, p, window=5),
    lambda p: plot_score_vs_effect(scores(), "rome", "error_injection", 3, p),
    lambda p: plot_r2_bars(pd.DataFrame([{"method": m, "problem": q, "metric": "rewrite", "r2_layer": .6,
                                          "r2_added": .05} for m in METHODS for q in PROBLEMS]), p),
    lambda p: plot_scores_by_layer(scores(), "rewrite", p),
    lambda p: plot_effect_by_layer({5: effects(), 10: effects()}, p),
], ids=["fig1", "fig4", "fig6", "fig7", "fig10"])
def test_figure_is_a_valid_image(draw, tmp_path):
    path = draw(tmp_path / "figure.png")
    assert_image(path)
