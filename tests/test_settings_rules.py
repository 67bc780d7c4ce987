"""One validation mechanism (jaxmia/settings.py) for the engine's configurations and the
output perturbation: every bad value refused by a one-line ``ConfigError`` that names the
field, each bound stated once (the defence and the functions take the fields'), and each
combination rule stated once in the engine, refusing the same combination in the same
words through ``Defence`` and through ``engine.train``."""

import dataclasses
import math

import jax
import numpy as np
import pytest

from jaxmia import models
from jaxmia._src import engine
from jaxmia._src.defences import perturbation
from jaxmia._src.defences import training as defences
from jaxmia._src.defences.perturbation import Perturbation
from jaxmia.settings import ConfigError, Rule, Section, check_field, opt_like

NAN, INF = math.nan, math.inf

BAD_VALUES = [
    (engine.Objective, "label_smoothing", True, "must be a finite number, got True"),
    (engine.Objective, "label_smoothing", 1.0, "must be a finite number in [0, 1), got 1.0"),
    (engine.Objective, "mixup", NAN, "must be a finite number, got nan"),
    (engine.Objective, "mixup", -0.5, "must be a finite number >= 0, got -0.5"),
    (engine.Objective, "relaxloss", INF, "must be a finite number, got inf"),
    (engine.Objective, "adv_eps", -1.0, "must be a finite number >= 0, got -1.0"),
    (engine.Objective, "adv_steps", True, "must be an integer, got True"),
    (engine.Objective, "adv_steps", 0, "must be an integer >= 1, got 0"),
    (engine.Objective, "adv_step_size", 0.0, "must be a finite number > 0, got 0.0"),
    (engine.Objective, "adv_step_size", NAN, "must be a finite number or none, got nan"),
    (
        engine.Objective,
        "x_range",
        (0.0, NAN),
        "must be a non-empty list of finite numbers or none, got (0.0, nan)",
    ),
    (
        engine.Objective,
        "x_range",
        (1.0, 0.0),
        "must be a pair (min, max), min <= max, got (1.0, 0.0)",
    ),
    (engine.Objective, "x_range", (0.0, 0.5, 1.0), "must be a pair (min, max), min <= max, got"),
    (engine.DPConfig, "l2_clip", 0.0, "must be a finite number > 0, got 0.0"),
    (engine.DPConfig, "l2_clip", INF, "must be a finite number, got inf"),
    (engine.DPConfig, "noise_multiplier", True, "must be a finite number, got True"),
    (engine.DPConfig, "noise_multiplier", NAN, "must be a finite number, got nan"),
    (engine.DPConfig, "noise_multiplier", -1.0, "must be a finite number >= 0, got -1.0"),
    (engine.DPConfig, "sampling", "uniform", "must be one of poisson, shuffle; got 'uniform'"),
    (engine.AdvReg, "strength", 0.0, "must be a finite number > 0, got 0.0"),
    (engine.AdvReg, "strength", True, "must be a finite number, got True"),
    (engine.AdvReg, "strength", INF, "must be a finite number, got inf"),
    (engine.AdvReg, "learning_rate", NAN, "must be a finite number, got nan"),
    (engine.AdvReg, "learning_rate", -1e-3, "must be a finite number > 0, got -0.001"),
    (engine.AdvReg, "steps", 0, "must be an integer >= 1, got 0"),
    (engine.AdvReg, "steps", 2.5, "must be an integer, got 2.5"),
    (engine.AdvReg, "hidden", (64, 0), "must be a list of integers >= 1, got (64, 0)"),
    (engine.AdvReg, "hidden", (True,), "must be a list of integers, got (True,)"),
    (Perturbation, "kind", "blur", "must be one of none, topk, round, noise, label; got 'blur'"),
    (Perturbation, "k", True, "must be an integer, got True"),
    (Perturbation, "k", 0, "must be an integer >= 1, got 0"),
    (Perturbation, "decimals", -1, "must be an integer >= 0, got -1"),
    (Perturbation, "decimals", 1.5, "must be an integer, got 1.5"),
    (Perturbation, "sigma", -0.1, "must be a finite number >= 0, got -0.1"),
    (Perturbation, "sigma", INF, "must be a finite number, got inf"),
]


@pytest.mark.parametrize("cls, name, value, message", BAD_VALUES)
def test_bad_values_are_refused_in_one_line_naming_the_field(cls, name, value, message):
    with pytest.raises(ConfigError) as e:
        cls(**{name: value})
    assert str(e.value).startswith(f"{name} {message}") and "\n" not in str(e.value)


def test_good_values_are_kept_as_plain_python_values():
    assert engine.AdvReg(hidden=()).hidden == ()  # a linear inference model
    assert engine.AdvReg(hidden=[8, 4]).hidden == (8, 4)  # a list becomes a tuple
    steps = engine.Objective(adv_eps=0.1, adv_steps=np.int64(2)).adv_steps
    assert steps == 2 and type(steps) is int
    assert engine.Objective(x_range=[0, 1]).x_range == (0, 1)
    assert engine.DPConfig(1.0, 0.0, "shuffle") == engine.DPConfig(
        l2_clip=1.0, noise_multiplier=0.0, sampling="shuffle"
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p: perturbation.top_k_only(p, 0), "k must be an integer >= 1, got 0"),
        (lambda p: perturbation.top_k_only(p, True), "k must be an integer, got True"),
        (lambda p: perturbation.round_probs(p, -1), "decimals must be an integer >= 0, got -1"),
        (
            lambda p: perturbation.gaussian_noise(p, NAN, jax.random.key(0)),
            "sigma must be a finite number, got nan",
        ),
    ],
)
def test_the_perturbations_check_their_arguments_as_the_fields(call, message):
    with pytest.raises(ConfigError) as e:
        call(np.full((2, 4), 0.25, np.float32))
    assert str(e.value) == message


@pytest.mark.parametrize(
    "field, engine_cls, engine_field",
    [
        ("dp_noise", engine.DPConfig, "noise_multiplier"),
        ("dp_clip", engine.DPConfig, "l2_clip"),
        ("dp_sampling", engine.DPConfig, "sampling"),
        ("label_smoothing", engine.Objective, "label_smoothing"),
        ("mixup", engine.Objective, "mixup"),
        ("relaxloss", engine.Objective, "relaxloss"),
        ("adv_train", engine.Objective, "adv_eps"),
        ("adv_train_steps", engine.Objective, "adv_steps"),
    ],
)
def test_the_defence_takes_its_bounds_from_the_engine(field, engine_cls, engine_field):
    ours = {f.name: f.metadata for f in dataclasses.fields(defences.Defence)}[field]
    theirs = {f.name: f.metadata for f in dataclasses.fields(engine_cls)}[engine_field]
    assert (ours["bounds"], ours["choices"]) == (theirs["bounds"], theirs["choices"])
    assert (ours["bounds"], ours["choices"]) != (None, None)


def test_opt_like_takes_the_checks_and_not_the_help():
    @dataclasses.dataclass(frozen=True)
    class Interface(Section):  # as the audit's query interface
        top_k: int = opt_like(Perturbation, "k", 5, "probabilities returned")

    field = {f.name: f for f in dataclasses.fields(Interface)}["top_k"]
    assert field.default == 5 and field.metadata["help"] == "probabilities returned"
    with pytest.raises(ConfigError, match=r"^top_k must be an integer >= 1, got 0$"):
        Interface(top_k=0)
    assert check_field(Interface, "top_k", np.int32(2)) == 2


def test_a_rule_names_the_settings_as_each_caller_does():
    rule = Rule("a", ("b", "c", "d"), "the A")
    assert rule.message({"a": True, "b": False}, {}) is None
    assert rule.message({"b": True, "c": True}, {}) is None
    on = {"a": True, "b": True, "d": True}
    assert rule.message(on, {}) == "a (the A) does not combine with b, d"
    assert rule.message(on, {"a": "--a-flag", "d": "dee"}) == (
        "--a-flag (the A) does not combine with b, dee"
    )


# ---------------------------------------------------------------- combination rules

X = (np.random.default_rng(0).random((12, 5)) < 0.5).astype(np.float32)
Y = np.arange(12, dtype=np.int32) % 3
KEEP = np.arange(12) < 6
DEFENCE_SETTINGS = {
    "dp": {"dp_noise": 1.0},
    "dropout": {"dropout": 0.2},
    "label_smoothing": {"label_smoothing": 0.1},
    "mixup": {"mixup": 0.2},
    "relaxloss": {"relaxloss": 1.0},
    "adv_eps": {"adv_train": 0.1},
    "adv_reg": {"adv_reg": 1.0},
}
"""The settings of a ``Defence`` that turn on each key of the engine's rules."""
DEFENCE_NAMES = {"dp": "dp_noise", "adv_eps": "adv_train"}
ENGINE_NAMES = {"dropout": "model state (dropout or other non-parameter variables)"}
PARTS = {"label_smoothing": 0.1, "mixup": 0.2, "relaxloss": 1.0, "adv_eps": 0.1}
WHAT = {"dp": " (DP-SGD)", "relaxloss": "", "adv_reg": " (adversarial regularisation)"}
COMBINATIONS = [
    ("dp", "dropout"),
    ("dp", "label_smoothing"),
    ("dp", "mixup"),
    ("dp", "relaxloss"),
    ("dp", "adv_eps"),
    ("dp", "adv_reg"),
    ("relaxloss", "label_smoothing"),
    ("relaxloss", "mixup"),
    ("relaxloss", "adv_eps"),
    ("adv_reg", "label_smoothing"),
    ("adv_reg", "mixup"),
    ("adv_reg", "relaxloss"),
    ("adv_reg", "adv_eps"),
]
"""Every pair of settings a ``Defence`` can give that the engine refuses."""


def _defence(keys):
    return defences.Defence(**{k: v for key in keys for k, v in DEFENCE_SETTINGS[key].items()})


def _train(keys):
    """``engine.train`` of a tiny pool with the engine's settings ``keys`` on."""
    kw = {}
    parts = {key: PARTS[key] for key in keys if key in PARTS}
    if parts:
        kw["objective"] = engine.Objective(**parts)
    if "dp" in keys:
        kw["dp"] = engine.DPConfig()
    if "adv_reg" in keys:
        kw.update(adv_reg=engine.AdvReg(hidden=(4,)), reference=~KEEP)
    if "loss_fn" in keys:
        kw["loss_fn"] = lambda logits, labels: 2 * engine.kernel.cross_entropy(logits, labels)
    factory = models.mlp((4,), 3, 5, dropout=0.2 if "dropout" in keys else 0.0)
    return engine.train(factory, X, Y, KEEP, epochs=1, batch_size=4, **kw)


@pytest.mark.parametrize("setting, other", COMBINATIONS)
def test_each_rule_refuses_alike_through_the_defence_and_the_engine(setting, other):
    def named(key, names):
        return names.get(key, key)

    with pytest.raises(ConfigError) as by_defence:
        _defence((setting, other))
    with pytest.raises(ConfigError) as by_engine:
        _train((setting, other))
    for error, names in ((by_defence, DEFENCE_NAMES), (by_engine, ENGINE_NAMES)):
        want = f"{named(setting, names)}{WHAT[setting]} does not combine with {named(other, names)}"
        assert str(error.value) == want


def test_the_test_covers_every_rule_of_the_engine():
    pairs = {(r.setting, o) for r in engine.training_spec.COMBINATIONS for o in r.others}
    assert pairs - set(COMBINATIONS) == {("loss_fn", "label_smoothing"), ("loss_fn", "relaxloss")}
    assert set(COMBINATIONS) <= pairs


@pytest.mark.parametrize("part", ["label_smoothing", "relaxloss"])
def test_a_loss_of_ones_own_is_refused_with_an_objective_that_sets_its_own(part):
    with pytest.raises(ConfigError) as e:
        _train(("loss_fn", part))
    assert str(e.value) == f"loss_fn (not softmax cross-entropy) does not combine with {part}"


def test_the_defence_states_no_rule_of_its_own(monkeypatch):
    everything = ("dp", "dropout", "mixup", "adv_eps", "adv_reg")
    monkeypatch.setattr(engine.training_spec, "COMBINATIONS", ())
    assert _defence(everything).dp_noise == 1.0  # nothing refused: no rule but the engine's
    new = Rule("mixup", ("label_smoothing",), "a rule for this test")
    monkeypatch.setattr(engine.training_spec, "COMBINATIONS", (new,))
    want = r"^mixup \(a rule for this test\) does not combine with label_smoothing$"
    with pytest.raises(ConfigError, match=want):
        _defence(("mixup", "label_smoothing"))
    with pytest.raises(ConfigError, match=want):
        _train(("mixup", "label_smoothing"))


def test_a_training_spec_breaking_a_rule_is_refused_before_training():
    spec = engine.TrainingSpec(
        epochs=1, dp=engine.DPConfig(), objective=engine.Objective(mixup=0.2)
    )
    factory = models.mlp((4,), 3, 5)
    with pytest.raises(ConfigError, match=r"^dp \(DP-SGD\) does not combine with mixup$"):
        engine.train(factory, X, Y, KEEP, spec=spec)
    off = engine.TrainingSpec(dp=engine.DPConfig(), objective=engine.Objective())  # all off
    on = engine.training_spec.settings_on(off, stateful=False)
    assert on == {**dict.fromkeys(on, False), "dp": True}
