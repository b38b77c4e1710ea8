"""Each editing problem yields its documented target and baseline, and the sweep's layer rules."""

from types import SimpleNamespace

import pytest

from locedit.editing.problems import PROBLEMS, request_for
from locedit.plan import central_layers, edited_layers, stats_layers

CASE = SimpleNamespace(case_id=13, prompt="Ferrari F40, developed by", subject="Ferrari F40", target_true="Ferrari",
                       target_new="Microsoft", paraphrase_prompts=["p1", "p2"], neighborhood_prompts=["n1"])
NOISED = SimpleNamespace(o_noise="the Italian", ff_baseline="the")


@pytest.mark.parametrize(
    "problem,target,baseline,minimize,sigma",
    [("error_injection", "Microsoft", "Ferrari", False, None),
     ("tracing_reversal", "the Italian", "Ferrari", False, None),
     ("fact_erasure", "Ferrari", "<eos>", True, None),
     ("fact_amplification", "Ferrari", "<eos>", False, None),
     ("fact_forcing", "Ferrari", "the", False, 3.0)],
)
def test_problem_targets_and_baselines(problem, target, baseline, minimize, sigma):
    req = request_for(CASE, PROBLEMS[problem], NOISED, eos="<eos>", sigma=3.0)
    assert (req.target, req.baseline, req.minimize, req.sigma) == (target, baseline, minimize, sigma)
    assert req.paraphrases == ("p1", "p2") and req.neighborhood == ("n1",)


def test_only_fact_erasure_filters_on_p_true():
    assert {name for name, p in PROBLEMS.items() if p.min_p_true} == {"fact_erasure"}
    assert PROBLEMS["fact_erasure"].min_p_true == 0.02


def test_layer_selection():
    assert central_layers("all", 4) == [0, 1, 2, 3]
    assert central_layers({"every": 4}, 28) == [0, 4, 8, 12, 16, 20, 24, 27]
    assert central_layers([0, 5], 28) == [0, 5]
    with pytest.raises(ValueError, match=r"editing.layers \[30\] are outside the model's layers 0..27"):
        central_layers([0, 30], 28)
    assert edited_layers(27, 5, 28) == [25, 26, 27]
    assert stats_layers(["rome"], [0, 9], 18) == [0, 9]
    assert stats_layers(["memit", "ft5"], [0], 18) == [0, 1, 2]
    assert stats_layers(["ft1"], [0], 18) == []
