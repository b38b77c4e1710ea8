"""Editing methods on tiny random models: the algebra each method promises, exact restores."""

import importlib

import pytest
import torch

from locedit.editing.apply import applied
from locedit.editing.evaluation import evaluate
from locedit.editing.hparams import ROME_DEFAULTS
from locedit.editing.key_stats import KeyStats, collect_second_moments, corpus_texts, save_factor, save_layer_moments
from locedit.editing.memit import sherman_morrison_adjustment, solve_adjustment, through_post_mlp_norm, truncated_pinv
from locedit.editing.methods import METHODS
from locedit.editing.problems import EditRequest
from locedit.editing.rome import rank_one_updates
from locedit.editing.rows import one_case, prompt_batch, states_at_subject
from locedit.editing.site_delta import SharedPrefix, optimize_site_deltas
from locedit.models import architecture_of

from conftest import TINY_CONFIGS, tiny_model, weights_hash

REQUEST = EditRequest(
    case_id=1, prompt="The mother tongue of Danielle Darrieux is", subject="Danielle Darrieux",
    target="English", baseline="French", paraphrases=("Danielle Darrieux speaks",),
    neighborhood=("Léon Blum speaks",),
)
TEMPLATES = {"rome": ["{}", "A few words. {}", "Something else here. {}"],
             "memit": [["{}"], ["The day. {}", "Because of it. {}"]]}


@pytest.fixture(scope="module", params=["gpt2", "gemma3_text"])
def setup(request, gpt2_tokenizer, tmp_path_factory):
    model = tiny_model(request.param)
    folder = tmp_path_factory.mktemp(f"stats-{request.param}")
    moments = collect_second_moments(model, gpt2_tokenizer, corpus_texts("bundled-wiki", n_samples=60),
                                     layers=[0, 1, 2, 3], max_tokens=48)
    save_layer_moments(moments, folder)
    for layer in moments.sums:
        save_factor(folder, layer)
    return model, gpt2_tokenizer, KeyStats(folder)


def test_rome_maps_k_star_to_v_star(setup):
    model, tok, stats = setup
    arch = architecture_of(model)
    upd = rank_one_updates(model, tok, [REQUEST], 1, {"v_steps": 5}, stats, TEMPLATES["rome"])
    name = arch.down_proj(1)
    down = model.get_submodule(name)
    deltas = METHODS["rome"].edit(model, tok, REQUEST, [1], {"v_steps": 5}, stats, TEMPLATES["rome"])
    with applied(model, deltas), torch.no_grad():
        out = down(upd.k_star[None, :, :])[0, 0]
    v_star = upd.v_star[0]
    torch.testing.assert_close(out, v_star, rtol=1e-4, atol=1e-4 * v_star.abs().max().item())
    assert torch.linalg.matrix_rank(deltas[name + ".weight"].double(), rtol=1e-5) == 1


def test_memit_closed_form_equals_the_linear_solve():
    torch.manual_seed(0)
    d = 64
    a = torch.randn(4 * d, d, dtype=torch.float64)
    c = a.T @ a / (4 * d)
    k = torch.randn(d, dtype=torch.float64)
    for lam in (1.0, 15000.0):
        closed = sherman_morrison_adjustment(torch.linalg.inv(c), k, lam)
        solved = solve_adjustment(c, k, lam)
        assert ((closed - solved).norm() / solved.norm()).item() <= 1e-6


@pytest.mark.parametrize("method", ["ft1", "ft5"])
def test_ft_clamp_is_never_exceeded(setup, method):
    model, tok, stats = setup
    eps = 3e-4
    layers = [1] if METHODS[method].window == 1 else [0, 1, 2]
    deltas = METHODS[method].edit(model, tok, REQUEST, layers, {"norm_constraint": eps, "lr": 1e-2, "steps": 8}, stats)
    per_layer = 2 if architecture_of(model).model_type == "gpt2" else 1  # GPT-2's c_proj has a bias
    assert len(deltas) == per_layer * len(layers)
    # the clamp is exact in float32: allow one rounding of the weight's own magnitude
    ulp = max(model.get_parameter(n).abs().max().item() for n in deltas) * torch.finfo(torch.float32).eps
    assert max(d.abs().max().item() for d in deltas.values()) <= eps + 2 * ulp
    assert max(d.abs().max().item() for d in deltas.values()) > eps / 2  # it did train


def test_edits_and_restores_leave_every_weight_bit_identical(setup):
    model, tok, stats = setup
    before = weights_hash(model)
    for name, method in METHODS.items():
        layers = [2] if method.window == 1 else [1, 2, 3]
        for noise in (None, 0.5):
            req = EditRequest(**{**REQUEST.__dict__, "sigma": noise})
            deltas = method.edit(model, tok, req, layers, {"steps": 3, "v_steps": 3}, stats,
                                 TEMPLATES.get(method.templates))
            assert weights_hash(model) == before, f"{name} changed the weights while computing its deltas"
            with applied(model, deltas):
                assert weights_hash(model) != before
                evaluate(model, tok, req)
            assert weights_hash(model) == before, f"{name}: restore was not exact"
    assert all(p.requires_grad for p in model.parameters())


def test_upper_layers_only_gives_the_same_update(setup):
    model, tok, stats = setup
    fast = rank_one_updates(model, tok, [REQUEST], 2, {"v_steps": 4, "upper_only": True}, stats, TEMPLATES["rome"])
    full = rank_one_updates(model, tok, [REQUEST], 2, {"v_steps": 4, "upper_only": False}, stats, TEMPLATES["rome"])
    torch.testing.assert_close(fast.right, full.right, rtol=1e-4, atol=1e-6)


def test_fact_forcing_evaluation_noises_only_prompts_with_the_subject(setup):
    model, tok, _ = setup
    clean = evaluate(model, tok, REQUEST)
    noised = evaluate(model, tok, EditRequest(**{**REQUEST.__dict__, "sigma": 1.0}))
    again = evaluate(model, tok, EditRequest(**{**REQUEST.__dict__, "sigma": 1.0}))
    assert (noised.p_target.to_numpy() == again.p_target.to_numpy()).all()  # same noise pre and post
    by_type = dict(zip(noised.prompt_type, noised.p_target != clean.p_target))
    assert by_type["rewrite"] and by_type["paraphrase"] and not by_type["neighborhood"]


def test_residual_change_maps_through_gemmas_post_mlp_norm():
    model = tiny_model("gemma3_text")
    name = architecture_of(model).post_mlp_norm(1)
    assert name == "model.layers.1.post_feedforward_layernorm" and architecture_of(tiny_model("gpt2")).post_mlp_norm(1) is None
    norm = model.get_submodule(name)
    torch.manual_seed(3)
    m, other = torch.randn(32), torch.randn(32)
    with torch.no_grad():
        wanted = norm(m + 0.3 * (other - m)) - norm(m)  # a reachable change of the residual contribution
        dm = through_post_mlp_norm(norm, m, wanted)
        torch.testing.assert_close(norm(m + dm) - norm(m), wanted, rtol=1e-3, atol=1e-4)
        assert (norm(m + wanted) - norm(m) - wanted).norm() > 10 * (norm(m + dm) - norm(m) - wanted).norm()


def test_unreachable_residual_change_never_moves_away_or_blows_up():
    """Gemma's post-MLP gains go to ~0 and below on some coordinates; a wanted change as large as
    the norm's output is then unreachable. Plain Gauss–Newton returned Δm of 1e6–1e9 that moved the
    output away from the target (as at Gemma's layers 0–2); the line search keeps every step
    that helps and no other."""
    model = tiny_model("gemma3_text")
    norm = model.get_submodule(architecture_of(model).post_mlp_norm(1))
    torch.manual_seed(0)
    with torch.no_grad():
        gains = torch.exp(torch.randn(32) * 1.5) * 5
        gains[:8] = torch.rand(8) * 0.2 - 0.1
        norm.weight.copy_(gains - 1)  # Gemma's RMS norm scales by (1 + weight)
        for _ in range(10):
            m = torch.randn(32)
            wanted = torch.randn(32)
            wanted *= 0.8 * norm(m).norm() / wanted.norm()
            dm = through_post_mlp_norm(norm, m, wanted)
            assert (norm(m + dm) - norm(m) - wanted).norm() < wanted.norm()
            assert dm.norm() < 10 * m.norm()


def test_a_float32_svd_that_does_not_converge_is_redone_in_float64(monkeypatch):
    """MKL's strict mode on one thread failed to decompose a Gemma Jacobian that float64 decomposes
    (group 5b's MEMIT amplification job stopped on it); the fallback must give float64's answer."""
    plain = torch.linalg.pinv

    def float32_fails(matrix, **kwargs):
        if matrix.dtype == torch.float32:
            raise torch.linalg.LinAlgError("linalg.svd: The algorithm failed to converge")
        return plain(matrix, **kwargs)

    torch.manual_seed(0)
    jac = torch.randn(16, 16) @ torch.diag(torch.logspace(0, -6, 16))
    monkeypatch.setattr(torch.linalg, "pinv", float32_fails)
    fallback = truncated_pinv(jac, rtol=1e-3)
    assert fallback.dtype == torch.float32
    torch.testing.assert_close(fallback, plain(jac.double(), rtol=1e-3).float())
    # and the Gauss–Newton map still solves a reachable change through it
    norm = torch.nn.LayerNorm(16, elementwise_affine=False)
    m = torch.randn(16)
    with torch.no_grad():
        wanted = norm(m + 0.3 * torch.randn(16)) - norm(m)
        torch.testing.assert_close(norm(m + through_post_mlp_norm(norm, m, wanted)) - norm(m), wanted,
                                   rtol=1e-3, atol=1e-4)


def test_memit_moves_the_residual_to_z_on_gemma(setup):
    model, tok, stats = setup
    if architecture_of(model).post_mlp_norm(0) is None:
        pytest.skip("only families with a post-MLP norm")
    arch = architecture_of(model)
    captured = {}
    memit_module = importlib.import_module("locedit.editing.memit")

    original = memit_module.optimize_site_deltas

    def spy(*args, **kwargs):
        h0, delta = original(*args, **kwargs)
        captured["h0"], captured["delta"] = h0[0], delta[0]
        return h0, delta

    memit_module.optimize_site_deltas = spy
    try:
        deltas = METHODS["memit"].edit(model, tok, REQUEST, [1, 2], {"v_steps": 5, "mom2_update_weight": 1e-3},
                                       stats, TEMPLATES["memit"])
    finally:
        memit_module.optimize_site_deltas = original
    plain = one_case(prompt_batch(tok, [REQUEST.prompt], REQUEST.subject, None, "cpu"))
    with applied(model, deltas):
        moved = states_at_subject(model, plain, outputs_of=[arch.layer(2)])[arch.layer(2), "out"][0] - captured["h0"]
    miss = ((moved - captured["delta"]).norm() / captured["delta"].norm()).item()
    assert miss < 0.5  # 0.35 here; 0.69 without mapping through the norm (keys are template means)


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("site_layer,noise", [(0, None), (2, None), (2, 0.5)])
def test_cached_prefix_and_lower_layers_give_the_plain_loops_delta(family, site_layer, noise, gpt2_tokenizer):
    """v* / z with the shared-prefix cache and the upper-layers-only loop equal the plain loop
    (right-padded rows, every layer and column each step) within float tolerance; under
    fact-forcing noise too (the cache then stops at the subject's first token)."""
    model = tiny_model(family)
    arch = architecture_of(model)
    request = EditRequest(**{**REQUEST.__dict__, "sigma": noise})
    texts = [t.replace("{}", REQUEST.prompt) for t in TEMPLATES["rome"]]
    runs = {}
    for fast in (False, True):
        hp = {**ROME_DEFAULTS, "v_steps": 4, "kl_factor": 0.0625, "upper_only": fast, "shared_prefix": fast}
        runs[fast] = optimize_site_deltas(model, gpt2_tokenizer, [request], [texts], site=arch.down_proj(site_layer),
                                          site_layer=site_layer, hparams=hp)
    (v0_plain, delta_plain), (v0_fast, delta_fast) = runs[False], runs[True]
    assert delta_plain.norm() > 0
    torch.testing.assert_close(v0_fast, v0_plain, rtol=1e-5, atol=1e-5 * v0_plain.abs().max().item())
    torch.testing.assert_close(delta_fast, delta_plain, rtol=1e-4, atol=1e-4 * delta_plain.abs().max().item())


def test_shared_prefix_feeds_only_the_columns_from_the_first_changed_one(gpt2_tokenizer):
    """The cache holds every column before the earliest lookup, and each row's lookup lands in the
    fed columns (the earliest at column 0), so the plain-loop equality above is not vacuous."""
    model, tok = tiny_model("gemma3_text"), gpt2_tokenizer
    texts = [t.replace("{}", REQUEST.prompt) for t in TEMPLATES["rome"]]
    rows = prompt_batch(tok, texts, REQUEST.subject, REQUEST.target, "cpu")
    prefix = SharedPrefix.build(model, rows, tok.pad_token_id, rows.lookup)
    inputs = prefix.inputs(model)
    width = max(len(e.ids) for e in rows.encoded)
    assert 0 < prefix.start < width
    assert inputs["cache"].get_seq_length() == prefix.start
    assert inputs["input_ids"].shape[1] == width - prefix.start
    assert int((rows.lookup + prefix.offsets).min()) == 0
