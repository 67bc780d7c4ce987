"""The audit's phases (jaxmia/audit/setup, training, extraction, scoring, pipeline):
each testable alone, and together exactly :func:`jaxmia.audit.run`."""

import ast
import dataclasses
import pathlib

import numpy as np
import pytest

from jaxmia import audit, datasets, engine, splits
from jaxmia.audit import extraction, pipeline, scoring, setup, training

QUICK = audit.AuditConfig(
    dataset="digits", num_shadows=4, epochs=2, n_boot=0, attacks=("loss", "lira_online")
)


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits")


def test_prepare_draws_the_split_of_the_config(digits):
    s = setup.prepare(QUICK, dataset=digits)
    expected = splits.make_split(digits.n, 4, scheme="balanced", seed=QUICK.seed)
    np.testing.assert_array_equal(s.split.shadow_keep, expected.shadow_keep)
    np.testing.assert_array_equal(s.split.target_keep, expected.target_keep)
    assert s.attacks == ("loss", "lira_online") and not s.loo and s.views.shape == (1, 1797, 64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.config = QUICK
    loo = setup.prepare(dataclasses.replace(QUICK, targets=2), dataset=digits)
    np.testing.assert_array_equal(loo.split.membership, loo.split.shadow_keep[0])
    assert loo.loo and loo.split.candidates.size == digits.n


def test_train_options_and_descriptions(digits):
    s = setup.prepare(QUICK, dataset=digits)
    kw = setup.train_options(s, False)
    assert (kw["epochs"], kw["batch_size"]) == (2, 128) and "loss_fn" not in kw
    assert "dp" not in kw  # undefended: no DP-SGD or early stopping arguments
    assert setup.describe_training(s, False).endswith("2 epochs, batch 128, Adam 0.001; seed 0")
    user = dataclasses.replace(s, shadow_training=setup.ShadowTraining(loss_fn=len))
    assert setup.train_options(user, False, shadows=True)["loss_fn"] is len
    assert "loss_fn" not in setup.train_options(user, False)  # the target's are the config's


def test_phases_compose_to_run(digits):
    report = audit.run(QUICK, dataset=digits)
    s = setup.prepare(QUICK, dataset=digits)
    target = training.train_target(s)
    notes: list[str] = []
    shadows = training.keep_finite(s, training.train_shadows(s), notes)
    extracted = extraction.extract(s, target, shadows)
    assert extracted.shadows.signals["loss"].shape == (4, digits.n)
    assert extracted.target.all["loss"].shape == (digits.n,)
    scored = scoring.attack_all(s, extracted, target, shadows, notes)
    results = scoring.evaluate(s, scored, notes)
    for name in QUICK.attacks:
        np.testing.assert_array_equal(np.concatenate(scored.scores[name]), report.scores[name])
        assert results[name] == report.metrics[name]
    assert notes == report.notes


def test_train_pool_returns_the_audits_pool(digits, tmp_path):
    pool = audit.train_pool(QUICK, tmp_path / "pool", dataset=digits)
    s = setup.prepare(QUICK, dataset=digits)
    assert isinstance(pool, engine.Pool) and pool.k == 4
    np.testing.assert_array_equal(pool.keep, s.split.shadow_keep)


def test_keep_finite_drops_diverged_models(digits):
    s = setup.prepare(QUICK, dataset=digits)
    pool = training.train_shadows(s)
    logits = pool.logits.copy()
    logits[2, 5] = np.nan
    notes: list[str] = []
    shadows = training.keep_finite(s, dataclasses.replace(pool, logits=logits), notes)
    assert shadows.pool.k == 3 and shadows.dropped == (2,)
    np.testing.assert_array_equal(shadows.rows, [0, 1, 3])
    np.testing.assert_array_equal(shadows.split.shadow_keep, s.split.shadow_keep[[0, 1, 3]])
    assert notes and notes[0].startswith("dropped 1 of 4 shadow models")


OWN = ["pipeline", "setup", "training", "extraction", "scoring", "report", "target", "own_model"]


@pytest.mark.parametrize("name", OWN)
def test_phase_modules_are_short_and_documented(name):
    module = __import__(f"jaxmia.audit.{name}", fromlist=["__all__"])
    path = pathlib.Path(module.__file__)
    tree = ast.parse(path.read_text())
    assert len(path.read_text().splitlines()) <= 500
    assert ast.get_docstring(tree) and module.__all__
    for public in module.__all__:
        assert getattr(module, public).__doc__, f"{name}.{public} has no docstring"
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            assert node.end_lineno - node.lineno < 85, f"{name}.{node.name} is too long"
    assert pipeline.run.__doc__ and "pool_dir" in pipeline.run.__doc__
