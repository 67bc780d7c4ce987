"""Shadow quality (jaxmia/audit/shadow_config.py): shadows trained unlike the target, the
target never changed, and the default (or settings equal to the target's) bit for bit."""

import json

import jax
import numpy as np
import optax
import pytest
from helpers import run_cli

from jaxmia import splits, study
from jaxmia._src import audit, engine
from jaxmia._src.audit import config as audit_config
from jaxmia._src.audit import extraction, report, setup, shadow_config, training
from jaxmia._src.engine.store import pools

BASE = dict(
    dataset="digits",
    num_shadows=4,
    epochs=2,
    batch_size=256,
    n_boot=0,
    attacks=("loss", "lira_online", "rmia_online"),
)
"""Batches of 256 on the 300-record ``small_digits``: every target and shadow (whatever its
members: data size, prior shift) takes one step an epoch, so the shadows of every setting
of one width and learning rate share one compiled program (the engine's programs are
keyed on the steps per epoch)."""


def _cfg(**changes) -> audit.AuditConfig:
    return audit.AuditConfig(**{**BASE, **changes})


def _phases(ds, **changes):
    """``(setup, target, pool)`` of the config with ``changes`` on ``ds``."""
    s = setup.prepare(_cfg(**changes), dataset=ds)
    return s, training.train_target(s), training.train_shadows(s)


@pytest.fixture(scope="module")
def default_run(small_digits):
    return audit.run(_cfg(), dataset=small_digits)


@pytest.fixture(scope="module")
def default_phases(small_digits):
    return _phases(small_digits)


@pytest.mark.slow
def test_settings_equal_to_the_targets_give_the_default_audit_bit_for_bit(
    small_digits, default_run
):
    same = _cfg(shadow_width=128, shadow_depth=1, shadow_epochs=2, shadow_lr=1e-3)
    assert shadow_config.differences(same) == {} and shadow_config.spec(same) == {}
    rerun = audit.run(same, dataset=small_digits)
    for name, m in default_run.metrics.items():
        assert rerun.metrics[name] == m
        np.testing.assert_array_equal(rerun.scores[name], default_run.scores[name])
    assert rerun.shadow_accuracy == default_run.shadow_accuracy
    assert "shadow_differences" not in rerun.to_dict()
    assert "differ from the target" not in report.markdown(rerun, {})


@pytest.mark.slow
def test_another_width_changes_the_shadows_not_the_target(small_digits, default_phases):
    s0, t0, p0 = default_phases
    s, t, p = _phases(small_digits, shadow_width=32)
    assert t.accuracy == t0.accuracy
    np.testing.assert_array_equal(t.predict(small_digits.x), t0.predict(small_digits.x))
    kernels = lambda pool: sorted(a.shape for a in jax.tree.leaves(pool.params) if a.ndim == 3)
    assert kernels(p0) == [(4, 64, 128), (4, 128, 10)]
    assert kernels(p) == [(4, 32, 10), (4, 64, 32)]
    assert p.logits.shape == p0.logits.shape and not np.allclose(p.logits, p0.logits)
    np.testing.assert_array_equal(s.split.shadow_keep, s0.split.shadow_keep)
    assert "hidden=(32,)" in setup.describe_training(s, shadows=True)
    assert "hidden=(128,)" in setup.describe_training(s)  # the target's


@pytest.mark.slow
def test_shadow_epochs_and_lr_reach_the_shadows_alone(small_digits, default_phases):
    _, t0, p0 = default_phases
    s, t, p = _phases(small_digits, shadow_epochs=3, shadow_lr=3e-3)
    assert t.accuracy == t0.accuracy and p.losses.shape == (3, 4) and p0.losses.shape == (2, 4)
    assert s.shadow_spec.epochs == 3 and setup.training_spec(s, False, shadows=True).epochs == 3
    assert s.target_spec.epochs == 2
    line = setup.describe_training(s, shadows=True)
    assert "3 epochs" in line and "Adam 0.003" in line
    # the shadows' learning rate alone: same epochs, other models
    _, _, p_lr = _phases(small_digits, shadow_lr=3e-3)
    assert not np.allclose(p_lr.logits, p0.logits)


@pytest.mark.parametrize(
    "settings,hidden",
    [
        (dict(shadow_depth=2), (128, 128)),
        (dict(shadow_width=16, shadow_depth=3), (16, 16, 16)),
        (dict(hidden=(32, 16), shadow_depth=3), (32, 16, 16)),
        (dict(hidden=(32, 16), shadow_depth=1), (32,)),
        (dict(shadow_width=(8, 4)), (8, 4)),
        (dict(shadow_width=(8, 4), shadow_depth=2), (8, 4)),
    ],
)
def test_width_and_depth_combine(settings, hidden):
    assert shadow_config.shadow_hidden(audit.AuditConfig(**settings)) == hidden


@pytest.mark.slow
def test_data_size_keeps_a_subset_of_each_shadows_members(small_digits, default_phases):
    s0, t0, _ = default_phases
    s, t, p = _phases(small_digits, shadow_data_size=0.5)
    before, after = s0.split.shadow_keep, s.split.shadow_keep
    assert not (after & ~before).any()  # no member outside its original members
    expected = np.maximum(1, np.round(0.5 * before.sum(axis=1)))
    np.testing.assert_array_equal(after.sum(axis=1), expected)
    assert after[:, s.split.candidates].sum(axis=0).min() >= 1  # IN models for LiRA
    np.testing.assert_array_equal(p.keep, after)  # trained on, and the attacks' truth
    np.testing.assert_array_equal(s.split.target_keep, s0.split.target_keep)
    assert t.accuracy == t0.accuracy
    assert "0.5 of each shadow's members" in setup.describe_training(s, shadows=True)


def test_data_size_is_stable_as_the_pool_grows(small_digits):
    config = _cfg(shadow_data_size=0.5)
    keep8 = splits.grown_balanced_keep([4, 8], small_digits.n, seed=0)
    thin = lambda keep: shadow_config.shadow_keep(config, keep, small_digits.y, 10)
    np.testing.assert_array_equal(thin(keep8)[:4], thin(keep8[:4]))


@pytest.mark.slow
def test_prior_shift_drops_members_of_half_the_classes(small_digits, default_phases):
    s0, t0, _ = default_phases
    s, t, _ = _phases(small_digits, shadow_shift=0.5)
    classes = shadow_config.shifted_classes(s.config, 10)
    assert classes.size == 5 and np.unique(classes).size == 5
    shifted = np.isin(small_digits.y, classes)
    before, after = s0.split.shadow_keep, s.split.shadow_keep
    assert not (after & ~before).any()
    np.testing.assert_array_equal(after[:, ~shifted], before[:, ~shifted])
    m = (before & shifted).sum(axis=1)
    np.testing.assert_array_equal((after & shifted).sum(axis=1), m - np.round(0.5 * m))
    # the shadows' class prior moved away from the target's
    prior = lambda keep: (keep & shifted).sum(axis=-1) / keep.sum(axis=-1)
    assert (prior(after) < prior(s.split.target_keep) - 0.1).all()
    assert t.accuracy == t0.accuracy
    assert s.split.shadow_keep[:, s.split.candidates].sum(axis=0).min() >= 1


def test_a_full_prior_shift_refuses_online_attacks_before_training(small_digits):
    with pytest.raises(audit.ConfigError, match="without an IN shadow model"):
        setup.prepare(_cfg(shadow_shift=1.0), dataset=small_digits)
    s = setup.prepare(_cfg(shadow_shift=1.0, attacks=("loss",)), dataset=small_digits)
    shifted = np.isin(small_digits.y, shadow_config.shifted_classes(s.config, 10))
    assert not s.split.shadow_keep[:, shifted].any()


@pytest.mark.slow
def test_features_shift_zeroes_the_shadows_inputs_only(small_digits, default_phases):
    s0, t0, _ = default_phases
    s, t, p = _phases(small_digits, shadow_shift=0.25, shadow_shift_kind="features")
    zeroed = shadow_config.shifted_features(s.config, 64)
    assert zeroed.size == 16 and np.unique(zeroed).size == 16
    shift = shadow_config.shadow_inputs(s.config)
    x = small_digits.x + 1.0  # no zero features before the shift
    flat = shift(x).reshape(len(x), -1)
    assert (flat[:, zeroed] == 0).all() and (np.delete(flat, zeroed, axis=1) != 0).all()
    assert t.accuracy == t0.accuracy
    np.testing.assert_array_equal(s.split.shadow_keep, s0.split.shadow_keep)
    np.testing.assert_allclose(p.logits, engine.predict(p, shift(small_digits.x)), atol=1e-5)
    assert not np.allclose(p.logits, engine.predict(p, small_digits.x), atol=1e-3)
    # queries other than the records (label-only, augmentations) see the shifted inputs
    shadows = training.keep_finite(s, p, [])
    labels = extraction.PoolLabels(s, shadows, lambda v: None)(x[:20])
    np.testing.assert_array_equal(labels, engine.predict(p, shift(x[:20]), labels=True))
    known = training.predict_known(p, small_digits.x, shift)
    np.testing.assert_allclose(known(x[:20]), engine.predict(p, shift(x[:20])), atol=1e-6)


@pytest.mark.slow
def test_report_and_metrics_name_the_differences(small_digits, tmp_path):
    config = _cfg(
        shadow_width=32,
        shadow_epochs=3,
        shadow_data_size=0.5,
        shadow_shift=0.5,
        attacks=("loss", "lira_offline"),  # 4 shadows: a quarter of some members are IN
    )
    r = audit.run(config, dataset=small_digits)
    text = report.markdown(r, {})
    line = next(x for x in text.splitlines() if x.startswith("- shadows differ"))
    assert line == (
        "- shadows differ from the target in: hidden widths (32,) (target (128,)); 3 epochs "
        "(target 2); data: 0.5 of each shadow's members trained on; class-prior shift 0.5 "
        "(members of half the classes dropped at rate 0.5)"
    )
    shadows_line = next(x for x in text.splitlines() if x.startswith("- shadows: "))
    assert "hidden=(32,)" in shadows_line and "3 epochs" in shadows_line
    assert "class-prior shift 0.5" in shadows_line
    r.write(tmp_path)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["shadow_differences"] == {
        "hidden": [32],
        "epochs": 3,
        "data_size": 0.5,
        "shift": {"kind": "prior", "strength": 0.5},
    }
    assert m["config"]["shadow_width"] == [32] and m["config"]["shadow_lr"] is None
    assert "--shadow-width 32 --shadow-epochs 3" in audit_config.command_for(config)


BAD = [
    ("shadow_width", 0, "--shadow-width", "0"),
    ("shadow_width", -3, "--shadow-width", "-3"),
    ("shadow_width", True, "--shadow-width", "true"),
    ("shadow_width", "wide", "--shadow-width", "wide"),
    ("shadow_depth", 0, "--shadow-depth", "0"),
    ("shadow_depth", -1, "--shadow-depth", "-1"),
    ("shadow_depth", 1.5, "--shadow-depth", "1.5"),
    ("shadow_depth", True, "--shadow-depth", "true"),
    ("shadow_epochs", 0, "--shadow-epochs", "0"),
    ("shadow_epochs", -2, "--shadow-epochs", "-2"),
    ("shadow_epochs", False, "--shadow-epochs", "false"),
    ("shadow_lr", 0.0, "--shadow-lr", "0"),
    ("shadow_lr", -1e-3, "--shadow-lr", "-0.001"),
    ("shadow_lr", float("nan"), "--shadow-lr", "nan"),
    ("shadow_lr", True, "--shadow-lr", "true"),
    ("shadow_lr", "fast", "--shadow-lr", "fast"),
    ("shadow_data_size", 0.0, "--shadow-data-size", "0"),
    ("shadow_data_size", -0.5, "--shadow-data-size", "-0.5"),
    ("shadow_data_size", 1.5, "--shadow-data-size", "1.5"),
    ("shadow_data_size", True, "--shadow-data-size", "true"),
    ("shadow_data_size", "half", "--shadow-data-size", "half"),
    ("shadow_shift", -0.1, "--shadow-shift", "-0.1"),
    ("shadow_shift", 1.5, "--shadow-shift", "1.5"),
    ("shadow_shift", True, "--shadow-shift", "true"),
    ("shadow_shift", "lots", "--shadow-shift", "lots"),
    ("shadow_shift_kind", "labels", "--shadow-shift-kind", "labels"),
]


@pytest.mark.parametrize("name,value,flag,text", BAD)
def test_bad_values_give_one_line_errors(name, value, flag, text, capsys, tmp_path, monkeypatch):
    with pytest.raises(audit.ConfigError) as e:
        audit.AuditConfig(**{name: value})
    assert name in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setattr(audit, "run", lambda *a, **k: pytest.fail("trained"))
    args = ["audit", "--dataset", "digits", f"{flag}={text}", "-o", str(tmp_path)]
    rc, _, err = run_cli(args, capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("jaxmia: error:"), err


@pytest.mark.parametrize(
    "settings,message",
    [
        (dict(targets=2, shadow_width=64), "shadow_width: leave-one-out"),
        (dict(targets=2, shadow_data_size=0.5), "shadow_data_size: leave-one-out"),
        (dict(targets=1, shadow_shift=0.0), "shadow_shift: leave-one-out"),
        (dict(shadow_width=(8, 4), shadow_depth=3), "disagrees with the 2 widths"),
    ],
)
def test_leave_one_out_and_disagreeing_settings_are_refused(settings, message, capsys, tmp_path):
    with pytest.raises(audit.ConfigError, match=message):
        audit.AuditConfig(num_shadows=4, **settings)
    flags = []
    for k, v in settings.items():
        shown = ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
        flags += ["--" + k.replace("_", "-"), shown]
    rc, _, err = run_cli(["audit", "--shadows", "4", *flags, "-o", str(tmp_path)], capsys)
    lines = err.strip().splitlines()
    as_given = message.replace(
        message.split(":")[0], "--" + message.split(":")[0].replace("_", "-")
    )
    if ":" not in message:
        as_given = message
    assert rc == 2 and len(lines) == 1 and as_given in lines[0], err  # named by its flag


def test_settings_the_architecture_cannot_honour_are_refused(small_digits):
    with pytest.raises(audit.ConfigError, match="change the MLP's hidden layers; the model here"):
        factory = setup.model_factory(_cfg(), small_digits)
        setup.prepare(_cfg(shadow_width=32), dataset=small_digits, factory=factory)
    with pytest.raises(audit.ConfigError, match="user's own shadow optimizer"):
        user = setup.ShadowTraining(optimizer=optax.sgd(0.1))
        setup.prepare(_cfg(shadow_lr=0.1), dataset=small_digits, shadow_training=user)


@pytest.mark.slow
def test_a_pool_kept_with_other_shadow_settings_is_refused(small_digits, tmp_path):
    audit.train_pool(_cfg(), tmp_path / "pool", dataset=small_digits)
    for other in (dict(shadow_width=32), dict(shadow_data_size=0.5), dict(shadow_lr=3e-3)):
        with pytest.raises((pools.PoolError, audit.ConfigError)):
            audit.train_pool(_cfg(**other), tmp_path / "pool", dataset=small_digits)
    # settings equal to the target's are the default pool, read back untouched
    same = _cfg(shadow_width=128, shadow_epochs=2)
    same = audit.train_pool(same, tmp_path / "pool", dataset=small_digits)
    assert same.k == 4
    audit.train_pool(_cfg(shadow_epochs=3), tmp_path / "other", dataset=small_digits)
    with pytest.raises((pools.PoolError, audit.ConfigError)):
        audit.train_pool(_cfg(), tmp_path / "other", dataset=small_digits)


def test_study_factors(small_digits):
    base = _cfg()
    assert study.parse_values("shadow_width", ["32", "128", "none"], base) == [32, 128, None]
    assert study._config_for("shadow_width", 32, base).shadow_width == (32,)
    assert study._config_for("shadow_width", None, base).shadow_width is None
    assert study.parse_values("shadow_data_size", ["0.25", "1"], base) == [0.25, 1.0]
    assert study.parse_values("shadow_shift", [0, 0.5], base) == [0.0, 0.5]
    assert study.parse_values("shadow_epochs", ["5"], base) == [5]
    for name in study.SHADOW_FACTORS:
        assert study.FACTORS[name] == name
        assert study.pool_name(name, 1, base) != study.pool_name(name, 2, base)
    for factor, value in [
        ("shadow_width", "0"),
        ("shadow_depth", "1.5"),
        ("shadow_lr", "true"),
        ("shadow_data_size", "2"),
        ("shadow_shift", "-1"),
        ("shadow_epochs", "x"),
    ]:
        with pytest.raises(study.StudyError):
            study.parse_values(factor, [value], base)
