"""engine.TrainingSpec (jaxmia/engine/training_spec.py): one frozen spec of how a pool
trains, equal to engine.train's keywords, and recorded whole in a pool's spec."""

import dataclasses

import numpy as np
import optax
import pytest
from helpers import tree_max_diff

from jaxmia import models, splits
from jaxmia._src import engine
from jaxmia._src.audit import target_cache
from jaxmia._src.engine import training_spec


def _data(n=48, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, rng.integers(0, c, n), models.mlp((8,), c, d)


@pytest.mark.slow
def test_a_spec_trains_as_its_fields_given_as_keywords():
    x, y, factory = _data()
    keep = splits.balanced_keep(4, len(y), seed=1)
    settings = dict(epochs=2, batch_size=16, optimizer=optax.sgd(0.1), patience=0)
    by_keywords = engine.train(factory, x, y, keep, seed=4, **settings)
    by_spec = engine.train(factory, x, y, keep, seed=4, spec=engine.TrainingSpec(**settings))
    assert tree_max_diff(by_keywords.params, by_spec.params) == 0.0
    np.testing.assert_array_equal(by_keywords.logits, by_spec.logits)


def test_spec_and_keywords_together_are_refused_in_one_line():
    x, y, factory = _data()
    keep = splits.balanced_keep(2, len(y), seed=1)
    with pytest.raises(ValueError, match=r"in spec or as keywords, not both .*epochs") as info:
        engine.train(factory, x, y, keep, spec=engine.TrainingSpec(), epochs=3)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"spec must be an engine\.TrainingSpec"):
        engine.train(factory, x, y, keep, spec={"epochs": 3})


def test_describe_names_the_optimizer_and_the_loss():
    assert engine.TrainingSpec().describe() == "30 epochs, batch 128, Adam 0.001"
    sgd = engine.TrainingSpec(epochs=5, batch_size=32, optimizer=optax.sgd(0.1))
    assert sgd.describe() == (
        "5 epochs, batch 32, optimizer given by the user (GradientTransformationExtraArgs)"
    )
    named = sgd.replace(optimizer_name="SGD 0.1", loss_fn=optax.softmax_cross_entropy)
    assert named.describe() == "5 epochs, batch 32, SGD 0.1, loss given by the user"


def _changes(x, y):
    """One changed value for every field of TrainingSpec (each a setting that trains
    other models)."""
    n = len(y)
    reference = np.zeros(n, bool)
    reference[::2] = True
    return {
        "epochs": 7,
        "batch_size": 64,
        "optimizer": optax.sgd(0.5),
        "loss_fn": lambda logits, labels: (
            optax.softmax_cross_entropy_with_integer_labels(logits, labels) * 2.0
        ),
        "dp": engine.DPConfig(noise_multiplier=1.0, l2_clip=1.0),
        "objective": engine.Objective(label_smoothing=0.1),
        "adv_reg": engine.AdvReg(strength=1.0),
        "reference": reference,
        "validation": (x[:5], y[:5]),
        "patience": 3,
    }


def test_every_field_of_the_spec_enters_the_pool_spec_and_the_target_key():
    """A new field of TrainingSpec must reach what tells pools (and kept targets) apart;
    optimizer_name is only how a report names the optimizer."""
    x, y, factory = _data()
    keys = engine.model_keys(0, 1)
    keep = np.ones(len(y), bool)
    base = engine.TrainingSpec(validation=(x[5:9], y[5:9]), patience=1)
    adv = base.replace(adv_reg=engine.AdvReg(strength=2.0), reference=~keep)
    changes = _changes(x, y)
    named = {f.name for f in dataclasses.fields(engine.TrainingSpec)} - {"optimizer_name"}
    assert set(changes) == named
    for name, value in changes.items():
        before = adv if name == "reference" else base.replace(reference=~keep)
        after = before.replace(**{name: value})
        spec_of = lambda s: training_spec.pool_spec(factory, x, y, s, classes=3, extra=None)
        assert spec_of(after) != spec_of(before), name
        key_of = lambda s: target_cache.target_key(factory, x, y, keep, keys, s, {})
        assert key_of(after) != key_of(before), name
    renamed = base.replace(optimizer_name="Adam, named otherwise")
    assert target_cache.target_key(factory, x, y, keep, keys, renamed, {}) == (
        target_cache.target_key(factory, x, y, keep, keys, base, {})
    )
