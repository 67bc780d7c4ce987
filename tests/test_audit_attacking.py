"""jaxmia/audit/attacking.py: running every attack against one target."""

import numpy as np

from jaxmia import attacks, splits
from jaxmia.audit import AuditConfig, attacking


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
