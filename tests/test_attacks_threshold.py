"""Threshold attacks (jaxmia/attacks/threshold.py): calibration on the shadow models."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxmia import splits
from jaxmia._src import attacks, metrics


def test_threshold_calibration_maximises_shadow_accuracy():
    rng = np.random.default_rng(2)
    keep = rng.random((3, 200)) < 0.5
    loss = np.where(keep, 0.2, 1.0) + 0.4 * rng.standard_normal((3, 200))
    tau = attacks.calibrate_threshold(attacks.loss(loss), keep)
    oriented = -loss
    best = max(
        np.mean((oriented >= t) == keep) for t in np.concatenate([oriented.ravel(), [np.inf]])
    )
    assert np.mean((oriented >= tau) == keep) == pytest.approx(best)
    scores = attacks.loss(loss[0], loss[1:], keep[1:])
    assert metrics.auc(keep[0], scores) > 0.8  # low loss -> member: oriented correctly
    with pytest.raises(ValueError, match="shadow statistics"):
        attacks.loss(loss[0], loss[1:, :5], keep[1:])


def test_threshold_calibration_uses_only_the_pool_records():
    """Kills: the pool mask not applied in calibration."""
    rng = np.random.default_rng(0)
    keep = splits.balanced_keep(4, 40, seed=0)
    scores = rng.normal(size=(4, 40)) + keep
    scores[:, 10:] = np.where(keep[:, 10:], -5.0, 5.0)  # outside the pool: inverted
    pool = np.arange(40) < 10
    tau = attacks.calibrate_threshold(scores, keep, pool=pool)
    assert tau == metrics.best_threshold(keep[:, pool].ravel(), scores[:, pool].ravel())
    assert tau != attacks.calibrate_threshold(scores, keep)


def test_threshold_attacks_accept_low_precision_floats():
    rng = np.random.default_rng(0)
    keep = rng.random((3, 20)) < 0.5
    values = rng.random((3, 20)).astype(np.float32)
    for dtype in (jnp.bfloat16, jnp.float16):
        low = np.asarray(jnp.asarray(values, dtype))
        f32 = low.astype(np.float32)
        for attack in (attacks.loss, attacks.confidence, attacks.entropy, attacks.modified_entropy):
            got = attack(low[0], low[1:], keep[1:])
            assert got.dtype == jnp.float32
            np.testing.assert_array_equal(got, attack(f32[0]))
        assert attacks.calibrate_threshold(low, keep) == attacks.calibrate_threshold(
            f32.astype(np.float64), keep
        )


def test_values_beyond_float32_count_as_infinite():
    with pytest.raises(attacks.AttackInputError, match=r"1 NaN or infinite value\(s\) in float32"):
        attacks.loss(np.array([0.5, 1e39, 2.0]))  # finite in float64, inf once in float32
