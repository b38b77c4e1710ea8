"""The batched engine on the embedded Gemma 3 270M: a real case edited in a batch of two equals
the plain path (that case alone, weights edited in place) to 1e-4 relative on the deltas and
1e-4 absolute on every post-edit probability, for every method under error injection.

FT-1 / FT-5 are compared on a float64 copy of the model. Their Adam steps are sign-like (an
element moves about ±lr whatever its gradient's size), so an element whose gradient is at float32
rounding level can end a whole step apart. In float32 the two paths agree to 3.6e-6 (FT-1) and
4.4e-5 (FT-5, worst layer) relative here, and 3-5 elements of FT-1's ΔW move when one unedited
weight matrix is perturbed at rounding level (2**-24). But after the full suite's earlier tests, on
CI and on one session's machine, FT-1 differed by 2e-3 relative (21,453 of 1.3M elements up to one
step apart) and FT-5 by about 1e-3 (0.0002 of 0.2246 as printed); on a third machine that never
reproduced (alone, after the same tests, or under the exact make test). What made it that large was
not found. In float64 the paths' deltas are equal (measured: bit for bit once cast to float32, as
on the tiny models in test_batched_editing.py), so a real difference between them still fails
here. ROME's and MEMIT's updates are not sign-like and stay in float32."""

import copy

import pytest
import torch

from locedit.cases.counterfact import cases_frame, load_counterfact, select_cases
from locedit.editing.apply import applied
from locedit.editing.case_updates import case_deltas
from locedit.editing.evaluation import evaluate, evaluate_cases
from locedit.editing.key_stats import KeyStats, collect_second_moments, corpus_texts, save_factor, save_layer_moments
from locedit.editing.methods import METHODS
from locedit.editing.problems import PROBLEMS, request_for
from locedit.editing.templates import context_templates

LAYER = 8
CASES = [13, 37]  # the first two cases Gemma completes correctly (config.yaml's comment)
HPARAMS = {"ft1": {"norm_constraint": 1e-3, "steps": 10}, "ft5": {"norm_constraint": 2e-4, "steps": 10},
           "rome": {"kl_factor": 1.0, "v_steps": 10},
           "memit": {"kl_factor": 0.9, "mom2_update_weight": 1875.0, "v_lr": 1.5, "v_steps": 10}}


@pytest.fixture(scope="module")
def setup(gemma, tmp_path_factory):
    model, tok = gemma
    folder = tmp_path_factory.mktemp("gemma-stats")
    save_layer_moments(collect_second_moments(model, tok, corpus_texts("bundled-wiki", n_samples=40),
                                              layers=[6, 7, 8, 9, 10], max_tokens=64), folder)
    for layer in (6, 7, 8, 9, 10):
        save_factor(folder, layer)
    cases = cases_frame(select_cases(load_counterfact("bundled"), case_ids=CASES))
    requests = [request_for(c, PROBLEMS["error_injection"], None, tok.eos_token) for c in cases.itertuples()]
    templates = context_templates(model, tok, seed=0, rome_lengths=[[5, 2]])
    return model, tok, KeyStats(folder), requests, templates


@pytest.fixture(scope="module")
def gemma_float64(setup):
    """A float64 copy of the model, for the FT methods (see the module docstring)."""
    return copy.deepcopy(setup[0]).double()


@pytest.mark.embedded
@pytest.mark.parametrize("method", sorted(METHODS))
def test_batched_edit_equals_the_plain_path_on_gemma(setup, method, request):
    model, tok, stats, requests, templates = setup
    spec = METHODS[method]
    if method.startswith("ft"):
        model = request.getfixturevalue("gemma_float64")
    window = list(range(LAYER - 2, LAYER + 3)) if spec.window == 5 else [LAYER]
    tpl = templates.get(spec.templates)
    updates = spec.edit_cases(model, tok, requests, window, HPARAMS[method], stats, tpl)
    batched = evaluate_cases(model, tok, requests, updates)
    case = 1  # the second of the batch: its rows are not the first of any pass
    plain = spec.edit(model, tok, requests[case], window, HPARAMS[method], stats, tpl)
    ours = case_deltas(model, updates, case)
    for name, delta in plain.items():
        assert delta.norm() > 0
        assert (ours[name] - delta).norm() <= 1e-4 * delta.norm(), name
    with applied(model, plain):
        expected = evaluate(model, tok, requests[case])
    columns = ["p_target", "p_baseline"]
    assert (batched[case][columns] - expected[columns]).abs().max().max() <= 1e-4
    assert torch.isfinite(torch.tensor(batched[case][columns].to_numpy())).all()
