"""The batched editing engine against the plain path (one request, weights edited in place):
same deltas and post-edit probabilities per case, whatever shares its batch; weights never written;
per-case early stop and clamp inside a batch."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from locedit.editing.apply import applied
from locedit.editing.case_updates import Dense, RankOne, case_deltas, rows_updated
from locedit.editing.evaluation import LowerLayers, evaluate, evaluate_cases
from locedit.editing.ft import finetune_cases
from locedit.editing.job import EditJob
from locedit.editing.key_stats import KeyStats, collect_second_moments, corpus_texts, save_factor, save_layer_moments
from locedit.editing.methods import METHODS
from locedit.editing.precision import bfloat16_optimisation, optimisation_model
from locedit.editing.problems import EditRequest
from locedit.models import architecture_of
from locedit.prompts import target_log_probs

from conftest import TINY_CONFIGS, tiny_model, weights_hash

PEOPLE = [
    ("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French"),
    ("Edwin of Northumbria", "Edwin of Northumbria follows the religion of", "Islam", "Christianity"),
    ("Toko Yasuda", "Toko Yasuda plays the instrument", "piano", "guitar"),
    ("Autonomous University of Madrid", "Autonomous University of Madrid is located in", "Sweden", "Spain"),
]
REQUESTS = [
    EditRequest(case_id=i, prompt=prompt, subject=subject, target=target, baseline=baseline,
                paraphrases=(f"Something said. {prompt}",), neighborhood=("Léon Blum speaks", "Paris is in"))
    for i, (subject, prompt, target, baseline) in enumerate(PEOPLE)
]
TEMPLATES = {"rome": ["{}", "A few words. {}", "Something else here. {}"],
             "memit": [["{}"], ["The day. {}", "Because of it. {}"]]}
PROBLEM_FLAGS = {"maximize": {}, "minimize": {"minimize": True}, "noised": {"sigma": 0.5}}
HPARAMS = {"rome": {"v_steps": 4}, "memit": {"v_steps": 4}, "ft1": {"steps": 4, "norm_constraint": 1e-2},
           "ft5": {"steps": 4, "norm_constraint": 1e-2, "noise_samples": 3}}


# Deltas: the batched passes round differently (W x + ΔW x per row, other padding and shapes), and
# Adam's first steps, ±lr·g/(|g| + 1e-8) per coordinate, turn that rounding into larger relative
# differences where a tiny random model's gradient is near its noise floor (measured, init 0.45:
# up to 1.2e-2 for MEMIT on llama when minimising, ≤ 1e-3 for most conditions). The edited
# model's probabilities agree to ≤ 9e-7 absolute everywhere; on the embedded model the deltas
# agree to 1e-4 (tests/test_batched_editing_embedded.py; FT there in float64), and in float64 FT's
# to 1e-9 here. A wrong row-to-case mapping gives O(1).
DELTA_RTOL = 2e-2
PROB_ATOL, PROB_RTOL = 1e-6, 1e-3


def greedy_word(model, tok, prompt: str) -> str:
    """The model's most likely next word-initial token (``Ġ…``) after ``prompt``, as a target."""
    ids = torch.tensor([tok(prompt)["input_ids"]])
    spaced = torch.tensor([t.startswith("Ġ") for t in tok.convert_ids_to_tokens(list(range(len(tok))))])
    with torch.no_grad():
        logits = model(ids).logits[0, -1].masked_fill(~spaced, -torch.inf)
    return tok.decode([int(logits.argmax())]).strip()


@pytest.fixture(scope="module", params=["gpt2", "gemma3_text", "llama"])
def setup(request, gpt2_tokenizer, tmp_path_factory):
    model = tiny_model(request.param, init_range=0.45)  # peaked: likely targets are > FT's loss floor
    folder = tmp_path_factory.mktemp(f"stats-{request.param}")
    moments = collect_second_moments(model, gpt2_tokenizer, corpus_texts("bundled-wiki", n_samples=60),
                                     layers=[0, 1, 2, 3], max_tokens=48)
    save_layer_moments(moments, folder)
    for layer in moments.sums:
        save_factor(folder, layer)
    return model, gpt2_tokenizer, KeyStats(folder)


def close(actual: torch.Tensor, expected: torch.Tensor, rel: float) -> bool:
    return bool((actual - expected).norm() <= rel * expected.norm().clamp_min(1e-12))


@pytest.mark.parametrize("flags", sorted(PROBLEM_FLAGS))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_batched_edits_equal_the_plain_path_case_by_case(setup, method, flags):
    """Deltas within 1e-4 relative and post-edit probabilities within 1e-4 absolute of editing each
    case alone with the weights changed in place; the weights themselves are never written."""
    model, tok, stats = setup
    spec = METHODS[method]
    requests = [replace(r, **PROBLEM_FLAGS[flags]) for r in REQUESTS]
    if flags == "minimize":  # a likely target, so FT's loss P(target) is above its floor and it steps
        requests = [replace(r, target=greedy_word(model, tok, r.prompt)) for r in requests]
    layers = [0, 1, 2] if spec.window > 1 else [2]
    templates = TEMPLATES.get(spec.templates)
    before = weights_hash(model)
    updates = spec.edit_cases(model, tok, requests, layers, HPARAMS[method], stats, templates)
    assert weights_hash(model) == before
    batched_tables = evaluate_cases(model, tok, requests, updates)
    assert weights_hash(model) == before
    moved = 0.0
    for c, req in enumerate(requests):
        plain = spec.edit(model, tok, req, layers, HPARAMS[method], stats, templates)
        batched = case_deltas(model, updates, c)
        assert sorted(batched) == sorted(plain)
        for name in plain:
            assert close(batched[name], plain[name], DELTA_RTOL), (req.case_id, name)
            moved = max(moved, plain[name].abs().max().item())
        with applied(model, plain):
            expected = evaluate(model, tok, req)
        columns = ["p_target", "p_baseline"]
        assert np.allclose(batched_tables[c][columns], expected[columns], rtol=PROB_RTOL, atol=PROB_ATOL), req.case_id
    assert moved > 0


@pytest.mark.parametrize("method", sorted(METHODS))
def test_batch_composition_does_not_change_a_case(setup, method):
    """Case 2 edited alone, with one other case, and with all four: the same deltas to rounding."""
    model, tok, stats = setup
    spec = METHODS[method]
    layers = [0, 1, 2] if spec.window > 1 else [2]
    requests = [replace(r, sigma=0.5) for r in REQUESTS]  # noise: each case must draw its own
    results = []
    for batch in ([requests[2]], [requests[0], requests[2]], requests):
        updates = spec.edit_cases(model, tok, batch, layers, HPARAMS[method], stats, TEMPLATES.get(spec.templates))
        results.append(case_deltas(model, updates, batch.index(requests[2])))
    for other in results[1:]:
        for name in results[0]:
            assert close(other[name], results[0][name], DELTA_RTOL)


@pytest.mark.parametrize("floor", [6.6])
def test_ft_stops_and_clamps_each_case_on_its_own(setup, monkeypatch, floor):
    """Each case in a batch steps, pauses below the loss floor and stops after 5 calm steps as it
    does alone, while the others go on; no entry ever leaves the L∞ ball. Tiny models do not reach
    the real floor (1e-2), so the floor is raised to where their noised losses (~6.6 summed over
    3 rows) hover around it: fresh noise each step lets a calm case's loss rise again, which is
    when a case that failed to stop would take extra steps."""
    model, tok, _ = setup
    monkeypatch.setattr("locedit.editing.ft.LOSS_FLOOR", floor)
    eps = 0.5
    hp = {"steps": 40, "norm_constraint": eps, "lr": 5e-2, "noise_samples": 3}
    requests = [replace(r, sigma=0.5) for r in REQUESTS]
    updates = finetune_cases(model, tok, requests, [2], hp)
    for c, req in enumerate(requests):
        plain = METHODS["ft1"].edit(model, tok, req, [2], hp)
        batched = case_deltas(model, updates, c)
        for name in plain:
            assert batched[name].abs().max() <= eps + 1e-7
            assert close(batched[name], plain[name], DELTA_RTOL)


@pytest.mark.parametrize("method", ["ft1", "ft5"])
def test_ft_in_float64_keeps_its_deltas_in_float64_and_equals_the_plain_path(method, gpt2_tokenizer):
    """On a float64 model FT's ΔW_c and Adam's state are float64 (never below float32); the
    rounding that Adam's sign-like steps amplify in float32 (DELTA_RTOL) is gone, and the batched
    deltas equal the plain path's to 1e-9 relative (measured: bit for bit after the float32 cast)."""
    model = tiny_model("gemma3_text", init_range=0.45).double()
    layers = [0, 1, 2] if METHODS[method].window > 1 else [2]
    updates = METHODS[method].edit_cases(model, gpt2_tokenizer, REQUESTS, layers, HPARAMS[method])
    assert {u.weight_delta.dtype for u in updates.values()} == {torch.float64}
    for c, req in enumerate(REQUESTS):
        plain = METHODS[method].edit(model, gpt2_tokenizer, req, layers, HPARAMS[method])
        batched = case_deltas(model, updates, c)
        for name in plain:
            assert plain[name].abs().max() > 0
            assert close(batched[name], plain[name], 1e-9), (req.case_id, name)


def test_rank_one_and_dense_rows_add_their_own_cases_update():
    """A closed form: row r of a linear layer's output moves by x_r ΔW_{case(r)}ᵀ (+ Δb)."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3)
    holder = torch.nn.Module()
    holder.down = layer
    x = torch.randn(3, 2, 4)
    row_case = torch.tensor([0, 1, 1])
    u, right = torch.randn(2, 4), torch.randn(2, 3)
    dense = Dense(torch.randn(2, 3, 4), torch.randn(2, 3))
    for update in (RankOne(u, right), dense):
        with rows_updated(holder, {"down": update}, row_case), torch.no_grad():
            out = holder.down(x)
        for r, c in enumerate(row_case.tolist()):
            w = update.weight(c)
            bias = dense.bias_delta[c] if update is dense else 0
            expected = x[r] @ (layer.weight + w).T + layer.bias + bias
            torch.testing.assert_close(out[r], expected, rtol=1e-5, atol=1e-5)


def test_every_family_edits_in_a_batch(gpt2_tokenizer, tmp_path):
    """One batched ROME edit per registry family runs, and case 1's update in a batch of two equals
    its update alone (ROME's plain path is the engine with one case; the independent oracle for its
    δ is the plain loop in test_editing.py)."""
    for family in sorted(TINY_CONFIGS):
        model = tiny_model(family)
        folder = tmp_path / family
        save_layer_moments(collect_second_moments(model, gpt2_tokenizer, corpus_texts("bundled-wiki", n_samples=20),
                                                  layers=[2], max_tokens=32), folder)
        save_factor(folder, 2)
        stats = KeyStats(folder)
        updates = METHODS["rome"].edit_cases(model, gpt2_tokenizer, REQUESTS[:2], [2], {"v_steps": 3}, stats,
                                             TEMPLATES["rome"])
        plain = METHODS["rome"].edit(model, gpt2_tokenizer, REQUESTS[1], [2], {"v_steps": 3}, stats, TEMPLATES["rome"])
        name = architecture_of(model).down_proj(2) + ".weight"
        assert close(case_deltas(model, updates, 1)[name], plain[name], DELTA_RTOL), family


def test_bfloat16_optimisation_is_scoped_and_made_once(setup):
    """Inside the block the optimisation model is a bfloat16 copy (the same one each time); outside
    it is the model itself, whose weights are untouched."""
    model, _, _ = setup
    before = weights_hash(model)
    assert optimisation_model(model) is model
    with bfloat16_optimisation(model):
        twin = optimisation_model(model)
        assert twin is not model and {p.dtype for p in twin.parameters()} == {torch.bfloat16}
    assert optimisation_model(model) is model
    with bfloat16_optimisation(model):
        assert optimisation_model(model) is twin
    with bfloat16_optimisation(model, enabled=False):
        assert optimisation_model(model) is model
    assert weights_hash(model) == before


@pytest.mark.parametrize("flags", PROBLEM_FLAGS, ids=list(PROBLEM_FLAGS))
@pytest.mark.parametrize("method", ["ft1", "ft5", "rome", "memit"])
def test_mixed_precision_edit_lands_near_the_float32_edit(setup, method, flags):
    """An edit optimised through the bfloat16 copy moves each case as the float32 edit does
    does: |Δ log P(target)| between them under half of what the edit moved it (measured: ≤ 0.38 of it,
    0.13 at most, on these tiny random models; MEMIT's 4-step edits barely move them, hence the
    2e-4 floor); a mixed edit that did nothing, or was anchored to bfloat16 states, would not."""
    model, tok, stats = setup
    spec = METHODS[method]
    reqs = [replace(r, **PROBLEM_FLAGS[flags]) for r in REQUESTS]
    if flags == "minimize":
        reqs = [replace(r, target=greedy_word(model, tok, r.prompt)) for r in reqs]
    window = [0, 1, 2] if spec.window > 1 else [2]
    runs = {}
    for mixed in (False, True):
        job = EditJob(model, tok, method, flags, reqs, [], HPARAMS[method], stats, TEMPLATES.get(spec.templates),
                      mixed_precision=mixed)
        runs[mixed] = job.edit(reqs, window)[0]
    unedited = [evaluate(model, tok, r) for r in reqs]
    moved = max(np.abs(np.log(e.p_target) - np.log(u.p_target)).max() for e, u in zip(runs[False], unedited))
    gap = max(np.abs(np.log(lo.p_target) - np.log(e.p_target)).max() for e, lo in zip(runs[False], runs[True]))
    assert gap < moved / 2 + 2e-4, (moved, gap)


@pytest.mark.parametrize("flags", ["maximize", "noised"])
def test_evaluation_from_the_lowest_edited_layer_equals_the_full_pass(setup, flags):
    """With a LowerLayers cache kept across the layers of one set of requests, every edit's
    probabilities equal a full evaluation pass (the cached states are what the pass recomputes)."""
    model, tok, stats = setup
    reqs = [replace(r, **PROBLEM_FLAGS[flags]) for r in REQUESTS]
    lower = LowerLayers()
    for method, window in (("ft1", [3]), ("memit", [1, 2]), ("rome", [0]), ("ft1", [2])):
        spec = METHODS[method]
        updates = spec.edit_cases(model, tok, reqs, window, HPARAMS[method], stats, TEMPLATES.get(spec.templates))
        full = evaluate_cases(model, tok, reqs, updates)
        cached = evaluate_cases(model, tok, reqs, updates, lower=lower)
        for a, b in zip(full, cached):
            assert np.allclose(a[["p_target", "p_baseline"]], b[["p_target", "p_baseline"]], rtol=1e-5, atol=1e-9)
    assert len(lower._passes) == 1
    other = [replace(r, prompt=r.prompt + " indeed") for r in reqs]  # other tokens: the cache is replaced
    updates = METHODS["ft1"].edit_cases(model, tok, other, [3], HPARAMS["ft1"], stats)
    for a, b in zip(evaluate_cases(model, tok, other, updates), evaluate_cases(model, tok, other, updates, lower=lower)):
        assert np.allclose(a.p_target, b.p_target, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("target,baseline", [("English", "French"), ("English", "Old High German"),
                                             ("Old High German", "French"), ("Middle English", "Old French")])
def test_evaluation_reads_each_probability_as_a_plain_pass_does(setup, target, baseline):
    """A prompt shares one row between target and baseline when either is one token; every
    probability still equals the plain one-row-per-(prompt, target) computation."""
    model, tok, _ = setup
    req = replace(REQUESTS[0], target=target, baseline=baseline)
    table = evaluate(model, tok, req)
    prompts = table.prompt.tolist()
    for column, text in (("p_target", target), ("p_baseline", baseline)):
        plain = target_log_probs(model, tok, prompts, [text] * len(prompts), batch_size=1).exp().numpy()
        assert np.allclose(table[column].to_numpy(), plain, rtol=1e-5, atol=1e-9), column


@pytest.mark.parametrize("method", sorted(METHODS))
def test_editing_seed_draws_the_noise_of_a_noised_edit(setup, method):
    """``editing.seed`` reaches the subject noise drawn during an edit (fact forcing): another seed
    gives another edit, the same seed the same one, on the plain path as in a batch."""
    model, tok, stats = setup
    req = replace(REQUESTS[0], sigma=0.5)
    templates = TEMPLATES.get(METHODS[method].templates)
    layers = [1, 2] if method in ("memit", "ft5") else [2]

    def delta(seed: int, plain: bool = False) -> torch.Tensor:
        spec = METHODS[method]
        if plain:
            deltas = spec.edit(model, tok, req, layers, HPARAMS[method], stats, templates, seed)
        else:
            deltas = case_deltas(model, spec.edit_cases(model, tok, [req], layers, HPARAMS[method], stats, templates,
                                                        seed), 0)
        return torch.cat([d.flatten() for d in deltas.values()])

    first, again, other = delta(1), delta(1), delta(7)
    assert torch.equal(first, again)
    assert not close(other, first, rel=1e-3)
    assert close(delta(7, plain=True), other, rel=DELTA_RTOL)
