"""The paper presets state the paper's protocol completely: every hyperparameter of every method ×
problem equals App. A (paper-spec §6) cell by cell, whatever config.yaml's model is tuned to, and
the layers, Fig. 4 layer, σ, windows and effect window are the paper's. The embedded model keeps
its tuned values (configs/tuned/gemma-3-270m.yaml) through `editing.tuning: auto`."""

import pytest
import yaml

from locedit.config import DEFAULT_CONFIG, load_config, with_tuning
from locedit.editing.hparams import hparams_for
from locedit.editing.methods import METHODS
from locedit.editing.problems import PROBLEMS
from locedit.plan import central_layers

EI, TR, FE, FA, FF = "error_injection", "tracing_reversal", "fact_erasure", "fact_amplification", "fact_forcing"


def app_a_gpt_j(method: str, problem: str) -> dict:
    """GPT-J, paper App. A (paper-spec §6.2): FT norms per problem, FT 50 steps and ROME 25 v-steps at
    lr .05 under fact forcing, ROME KL 1 and MEMIT KL .9 for error injection, otherwise the defaults."""
    ft_norm = {"ft1": {EI: 1e-4, TR: 1e-5, FE: 1e-5, FA: 1e-5, FF: 1e-4},
               "ft5": {EI: 2e-5, TR: 2e-5, FE: 1e-5, FA: 1e-5, FF: 1e-4}}
    if method in ft_norm:
        return {"lr": 5e-4, "steps": 50 if problem == FF else 25, "norm_constraint": ft_norm[method][problem],
                "noise_samples": 10}
    if method == "rome":
        return {"v_steps": 25 if problem == FF else 20, "v_lr": 0.05 if problem == FF else 0.5, "v_weight_decay": 0.5,
                "clamp_norm_factor": 4.0, "kl_factor": 1.0 if problem == EI else 0.0625}
    return {"v_steps": 25, "v_lr": 0.5, "v_weight_decay": 0.5, "clamp_norm_factor": 0.75,
            "kl_factor": 0.9 if problem == EI else 0.0625, "mom2_update_weight": 15000.0}


def app_a_gpt2_xl(method: str, problem: str) -> dict:
    """GPT-2 XL, App. A (error injection and fact forcing): FT norms 1e-3 / 1e-4 (EI) and 5e-4 / 5e-5
    (FF, 50 steps); ROME and MEMIT at the reference's GPT-2 XL defaults (MEMIT: λ 20,000, 20 z-steps)."""
    if method in ("ft1", "ft5"):
        norm = {("ft1", EI): 1e-3, ("ft5", EI): 1e-4, ("ft1", FF): 5e-4, ("ft5", FF): 5e-5}[method, problem]
        return {"lr": 5e-4, "steps": 50 if problem == FF else 25, "norm_constraint": norm, "noise_samples": 10}
    if method == "rome":
        return {"v_steps": 25 if problem == FF else 20, "v_lr": 0.05 if problem == FF else 0.5, "v_weight_decay": 0.5,
                "clamp_norm_factor": 4.0, "kl_factor": 0.0625}
    return {"v_steps": 20, "v_lr": 0.5, "v_weight_decay": 0.5, "clamp_norm_factor": 0.75, "kl_factor": 0.0625,
            "mom2_update_weight": 20000.0}


PRESETS = {
    "configs/gpt-j-6b.yaml": dict(table=app_a_gpt_j, problems=[EI, TR, FE, FA, FF], n_layers=28,
                                  layers=[0, 4, 5, 8, 12, 16, 20, 24, 27], correlation_layer=5, sigma=0.094,
                                  windows=[10, 5, 3, 1], effect_window=5),
    "configs/gpt2-xl.yaml": dict(table=app_a_gpt2_xl, problems=[EI, FF], n_layers=48,
                                 layers=[0, 4, 8, 12, 16, 17, 20, 24, 28, 32, 36, 40, 44, 47], correlation_layer=None,
                                 sigma=0.1, windows=[10], effect_window=10),
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_state_app_a_cell_by_cell(preset):
    paper = PRESETS[preset]
    cfg = load_config(preset)
    editing = cfg["editing"]
    assert editing["tuned_from"] is None
    assert sorted(editing["problems"]) == sorted(paper["problems"])
    for method in METHODS:
        for problem in paper["problems"]:
            hp = hparams_for(editing, method, problem)
            for key, value in paper["table"](method, problem).items():
                assert hp[key] == pytest.approx(value), (preset, method, problem, key, hp[key], value)
    assert editing["rome_template_lengths"] == [[5, 10], [10, 10]]  # 21 templates with the empty one
    assert central_layers(editing["layers"], paper["n_layers"]) == paper["layers"]
    assert cfg["analysis"].get("correlation_layer") == paper["correlation_layer"]
    assert cfg["noise"] == {**cfg["noise"], "rule": "constant", "value": paper["sigma"]}
    assert cfg["tracing"]["windows"] == paper["windows"] and editing["effect_window"] == paper["effect_window"]


def test_the_embedded_model_keeps_its_tuned_values():
    editing = load_config()["editing"]
    assert editing["tuned_from"] == "configs/tuned/gemma-3-270m.yaml"
    assert editing["rome_template_lengths"] == [[5, 5], [10, 5]]
    assert hparams_for(editing, "memit", EI)["v_lr"] == 1.5 and hparams_for(editing, "rome", FF)["v_lr"] == 0.05
    assert hparams_for(editing, "ft1", FA)["norm_constraint"] == 2.5e-4


def test_the_second_embedded_model_gets_its_own_tuned_values():
    cfg = load_config("configs/paper-smollm2.yaml")
    editing = cfg["editing"]
    assert cfg["model"]["name"] == "smollm2-135m-instruct"
    assert editing["tuned_from"] == "configs/tuned/smollm2-135m-instruct.yaml"
    assert central_layers(editing["layers"], 30) == [0, 4, 8, 12, 16, 20, 24, 28, 29]
    assert hparams_for(editing, "memit", EI)["v_lr"] == 0.5 and hparams_for(editing, "memit", FF)["v_lr"] == 2.0
    assert hparams_for(editing, "ft1", FF)["steps"] == 50 and hparams_for(editing, "ft1", EI)["norm_constraint"] == 1e-2


def test_config_values_win_over_the_tuning_file_and_none_turns_it_off():
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())  # as written, before the tuning file
    cfg["editing"]["hparams"] = {"memit": {"v_lr": 0.7}}
    assert hparams_for(with_tuning(cfg)["editing"], "memit", EI)["v_lr"] == 0.7
    assert hparams_for(with_tuning(cfg)["editing"], "memit", EI)["kl_factor"] == 0.9  # the file's, not overwritten
    cfg["editing"]["tuning"] = "none"
    off = with_tuning(cfg)["editing"]
    assert off["tuned_from"] is None and hparams_for(off, "rome", FF)["v_lr"] == METHODS["rome"].defaults["v_lr"]


def test_every_problem_is_covered():
    assert set(PROBLEMS) == {EI, TR, FE, FA, FF}
