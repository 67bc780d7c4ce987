"""Tests that kill the last three surviving mutants of issue 13 (item 11): the pool mask
of threshold calibration, RMIA's ties at gamma, and the target's RMIA temperature."""

import numpy as np
import pytest

from jaxmia import attacks, metrics, splits
from jaxmia.audit import AuditConfig, attacking


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


def test_rmia_counts_population_records_exactly_at_gamma():
    """Kills: ``>=`` turned ``>`` in the comparison with gamma. With Pr(x) = 1/2 and
    population Pr(z) = 1/4, 1/2, 1/8, the ratios are exactly 2 (= gamma), 1 and 4."""
    lx = np.log(np.float32([0.5]))
    lz = np.log(np.float32([0.25, 0.5, 0.125]))
    brute = np.mean(lx[0] - lz >= np.float32(np.log(2.0)))  # ties count
    assert brute == 2 / 3
    assert float(attacks.attack_p(lx, target_log_p_z=lz, gamma=2.0)[0]) == pytest.approx(brute)


def test_the_target_is_read_at_rmias_calibrated_temperature(monkeypatch):
    """Kills: the target's logits not divided by the calibrated temperature (the
    references still were). The calibration is forced to temperature 2, and the scores
    are checked against log-softmax at temperature 2 computed by hand."""
    rng = np.random.default_rng(1)
    k, n, c = 6, 50, 4
    keep = splits.balanced_keep(k, n, seed=2)
    labels = rng.integers(0, c, n)
    ref_logits = rng.normal(0, 3, (k, n, c)).astype(np.float32)
    target_logits = rng.normal(0, 3, (n, c)).astype(np.float32)
    monkeypatch.setattr(
        attacking.attacks_lib,
        "calibrate_rmia",
        lambda *a, **kw: attacks.RMIACalibration(temperature=2.0, a=None),
    )
    shadows = attacking.PoolSignals(
        signals={}, phi=None, logits=ref_logits, keep=keep, pool=np.ones(n, bool)
    )
    candidates = np.arange(20)
    notes: list[str] = []
    got = attacking._rmia(
        "rmia_online", shadows, {}, target_logits, candidates, labels, AuditConfig(), notes
    )

    def log_p(logits):  # log softmax at temperature 2, by hand
        z = logits.astype(np.float64) / 2
        z = z - z.max(-1, keepdims=True)
        lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        return np.take_along_axis(lp, np.broadcast_to(labels, lp.shape[:-1])[..., None], -1)[..., 0]

    lp, ref = log_p(target_logits), log_p(ref_logits)
    want = attacks.rmia_online(
        lp[candidates], ref[:, candidates], keep[:, candidates],
        target_log_p_z=lp, ref_log_p_z=ref, keep_z=keep,
    )  # fmt: skip
    np.testing.assert_allclose(got, np.asarray(want), atol=1e-6)
    assert any("temperature 2.0" in note for note in notes)
