"""Threshold attacks on one scalar signal, calibrated on shadow models.

The attacker predicts "member" when ``sign * signal >= tau``, where ``sign`` orients the
signal so that higher means member (:data:`jaxmia.signals.MEMBER_SIGN`): low loss (Yeom
et al. 2018, "Privacy Risk in Machine Learning: Analyzing the Connection to
Overfitting"), high confidence, low entropy or low modified entropy (Song & Mittal 2021,
"Systematic Evaluation of Privacy Risks of Machine Learning Models"). The score is the
oriented signal itself, so the ROC does not depend on ``tau``; ``tau`` is the threshold
that maximises accuracy over the shadow models' members and non-members, and only sets
the accuracy, precision and recall reported at the operating point.
"""

from __future__ import annotations

import numpy as np

from jaxmia import metrics, signals


def oriented(name: str, values: np.ndarray) -> np.ndarray:
    """``MEMBER_SIGN[name] * values``: higher means more likely a member."""
    try:
        sign = signals.MEMBER_SIGN[name]
    except KeyError:
        raise ValueError(
            f"{name!r} is not a scalar signal; threshold attacks take one of "
            f"{', '.join(signals.SCALAR_SIGNALS)}"
        ) from None
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError(f"the {name} signal has {int(np.isnan(values).sum())} NaN value(s)")
    return sign * values


def calibrate(
    name: str, shadow_values: np.ndarray, keep: np.ndarray, pool: np.ndarray | None = None
) -> float:
    """Accuracy-maximising threshold on the shadow models' oriented signal.

    Args:
      name: the scalar signal.
      shadow_values: ``(k, n)`` signal of every shadow model on every example.
      keep: ``(k, n)`` bool shadow membership.
      pool: ``(n,)`` bool examples that count (default: all).

    Returns:
      ``tau`` such that ``oriented(name, v) >= tau`` predicts "member".
    """
    shadow_values, keep = np.asarray(shadow_values), np.asarray(keep)
    if keep.ndim != 2 or shadow_values.shape != keep.shape:
        raise ValueError(
            f"shadow values {shadow_values.shape} and keep {keep.shape} must both be (k, n)"
        )
    cols = slice(None) if pool is None else np.asarray(pool, bool)
    if pool is not None and cols.shape != keep.shape[1:]:
        raise ValueError(f"pool must be a ({keep.shape[1]},) bool mask, got shape {cols.shape}")
    return metrics.best_threshold(
        keep[:, cols].ravel(), oriented(name, shadow_values[:, cols]).ravel()
    )


def attack(
    name: str,
    shadow_values: np.ndarray,
    keep: np.ndarray,
    pool: np.ndarray | None,
    target_values: np.ndarray,
) -> tuple[np.ndarray, float]:
    """Scores the target's candidates with the threshold attack on signal ``name``.

    Args:
      name: the scalar signal (``loss``, ``confidence``, ``entropy``, ...).
      shadow_values: ``(k, n)`` shadow signal, for calibration.
      keep: ``(k, n)`` bool shadow membership.
      pool: ``(n,)`` bool usable shadow examples, or ``None`` for all.
      target_values: ``(m,)`` the target's signal on the candidates.

    Returns:
      ``(scores, tau)``: ``(m,)`` membership scores and the calibrated threshold.
    """
    return oriented(name, target_values), calibrate(name, shadow_values, keep, pool)
