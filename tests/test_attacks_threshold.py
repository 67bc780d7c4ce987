"""Threshold attacks (jaxmia/attacks/threshold.py): calibration on the shadow models."""

import numpy as np
import pytest

from jaxmia import attacks, metrics


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
