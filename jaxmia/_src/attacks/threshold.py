"""Threshold attacks on one scalar signal, calibrated on shadow models.

The attacker predicts "member" when ``score >= tau``, where the score is the signal
oriented so that higher means member (:data:`jaxmia.signals.MEMBER_SIGN`): low loss (Yeom
et al. 2018, "Privacy Risk in Machine Learning: Analyzing the Connection to
Overfitting", CSF), high confidence, low entropy or low modified entropy (Song & Mittal
2021, "Systematic Evaluation of Privacy Risks of Machine Learning Models", USENIX
Security). The score is the oriented signal itself, so the ROC does not depend on ``tau``;
``tau`` (:func:`calibrate_threshold`) is the threshold that maximises accuracy over the
shadow models' members and non-members, and only sets the accuracy, precision and recall
reported at the operating point.

Every attack follows the protocol of :mod:`jaxmia.attacks`:
``attack(target_stat, shadow_stats, keep) -> (m,) scores``. The shadow statistics do not
change a threshold attack's scores; they are optional and only checked, so that every
attack can be called alike. The scores are computed elementwise in float32 (from any
floating dtype, ``bfloat16`` and ``float16`` included) and trace under ``jax.jit`` and
``jax.vmap``.

Example::

    scores = attacks.loss(signals.loss(target_logits, y))              # (m,)
    tau = attacks.calibrate_threshold(attacks.loss(shadow_loss), keep)  # float
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxmia import signals
from jaxmia._src import metrics
from jaxmia._src.attacks import checks, registry

__all__ = [
    "ATTACKS",
    "calibrate_threshold",
    "confidence",
    "entropy",
    "loss",
    "modified_entropy",
]


def _check_shadows(target: ArrayLike, shadow: ArrayLike, keep: ArrayLike) -> None:
    """Checks the optional ``(k, m)`` shadow statistics and ``keep`` against the target."""
    if shadow is None and keep is None:
        return
    if shadow is None or keep is None:
        raise checks.AttackInputError("give both the shadow statistics and keep, or neither")
    expected = (np.shape(shadow)[0] if np.ndim(shadow) else 0, *np.shape(target))
    if np.shape(shadow) != expected:
        raise checks.AttackInputError(
            f"shadow statistics {np.shape(shadow)} must be (k, *{np.shape(target)})"
        )
    checks.as_keep("keep", keep, expected)
    checks.as_float("shadow statistics", shadow)


def _oriented(signal: str, target: ArrayLike, shadow: ArrayLike, keep: ArrayLike) -> jax.Array:
    _check_shadows(target, shadow, keep)
    values = checks.as_float(f"the {signal} signal", target)
    return jnp.float32(signals.MEMBER_SIGN[signal]) * values


def loss(
    target_loss: ArrayLike, shadow_loss: ArrayLike | None = None, keep: ArrayLike | None = None
) -> jax.Array:
    """The loss attack of Yeom et al. 2018: score ``-loss`` (members have low loss).

    Args:
      target_loss: ``(m,)`` (or any shape) the target's cross-entropy on the candidates,
        e.g. :func:`jaxmia.signals.loss`.
      shadow_loss: optional ``(k, m)`` shadow losses; unused by the scores (calibrate the
        threshold with :func:`calibrate_threshold`), only checked.
      keep: optional ``(k, m)`` bool or 0/1 shadow membership, checked with ``shadow_loss``.

    Returns:
      ``(m,)`` float32 scores, higher = member.
    """
    return _oriented("loss", target_loss, shadow_loss, keep)


def confidence(
    target_confidence: ArrayLike,
    shadow_confidence: ArrayLike | None = None,
    keep: ArrayLike | None = None,
) -> jax.Array:
    """The confidence attack: score = the top predicted probability (Song & Mittal 2021).

    Args:
      target_confidence: ``(m,)`` the target's largest predicted probability.
      shadow_confidence: optional ``(k, m)``; checked, unused by the scores.
      keep: optional ``(k, m)`` bool or 0/1 shadow membership.

    Returns:
      ``(m,)`` float32 scores, higher = member.
    """
    return _oriented("confidence", target_confidence, shadow_confidence, keep)


def entropy(
    target_entropy: ArrayLike,
    shadow_entropy: ArrayLike | None = None,
    keep: ArrayLike | None = None,
) -> jax.Array:
    """The entropy attack of Song & Mittal 2021: score ``-entropy`` of the prediction.

    Args:
      target_entropy: ``(m,)`` entropy of the target's predicted distribution.
      shadow_entropy: optional ``(k, m)``; checked, unused by the scores.
      keep: optional ``(k, m)`` bool or 0/1 shadow membership.

    Returns:
      ``(m,)`` float32 scores, higher = member.
    """
    return _oriented("entropy", target_entropy, shadow_entropy, keep)


def modified_entropy(
    target_mentropy: ArrayLike,
    shadow_mentropy: ArrayLike | None = None,
    keep: ArrayLike | None = None,
) -> jax.Array:
    """The modified-entropy attack of Song & Mittal 2021: score ``-Mentr`` (label-aware).

    Args:
      target_mentropy: ``(m,)`` modified entropy of the target's prediction
        (:func:`jaxmia.signals.modified_entropy`).
      shadow_mentropy: optional ``(k, m)``; checked, unused by the scores.
      keep: optional ``(k, m)`` bool or 0/1 shadow membership.

    Returns:
      ``(m,)`` float32 scores, higher = member.
    """
    return _oriented("modified_entropy", target_mentropy, shadow_mentropy, keep)


def calibrate_threshold(
    shadow_scores: ArrayLike, keep: ArrayLike, *, pool: ArrayLike | None = None
) -> float:
    """Accuracy-maximising threshold on the shadow models' scores.

    Give the scores the attack assigns on the shadow models, e.g.
    ``attacks.loss(shadow_loss)`` or ``attacks.label_only(shadow_correct)``. Runs on the
    host (NumPy), with :func:`jaxmia.metrics.best_threshold`; not traceable.

    Args:
      shadow_scores: ``(k, n)`` scores of every shadow model on every example.
      keep: ``(k, n)`` bool or 0/1 shadow membership.
      pool: ``(n,)`` bool examples that count (default: all).

    Returns:
      ``tau`` such that ``score >= tau`` predicts "member", a Python float: an observed
      score, or (to predict no member) the next float above the largest score, in the
      scores' precision (float32 scores compare alike in float32 and float64).

    Raises:
      AttackInputError: on mismatched shapes, NaN scores or a bad ``keep``.
    """
    shadow_scores = np.asarray(shadow_scores)
    if shadow_scores.ndim != 2:
        raise checks.AttackInputError(
            f"shadow scores must be (k, n), got shape {shadow_scores.shape}"
        )
    keep = np.asarray(checks.as_keep("keep", keep, shadow_scores.shape))
    nan = int(np.isnan(shadow_scores).sum())
    if nan:
        raise checks.AttackInputError(f"the shadow scores have {nan} NaN value(s)")
    cols = slice(None) if pool is None else np.asarray(pool, bool)
    if pool is not None and cols.shape != keep.shape[1:]:
        raise checks.AttackInputError(
            f"pool must be a ({keep.shape[1]},) bool mask, got shape {cols.shape}"
        )
    tau = metrics.best_threshold(keep[:, cols].ravel(), shadow_scores[:, cols].ravel())
    if shadow_scores.dtype == np.float32 and float(np.float32(tau)) != tau:
        # "predict nobody" (just above the largest score, in float64) would round down to
        # that score when compared in float32: take the next float32 instead
        tau = float(np.nextafter(np.float32(tau), np.float32(np.inf)))
    return tau


def _scorer(attack, signal: str):
    """The audit's :attr:`jaxmia.attacks.Attack.score` of the threshold attack ``attack``
    on ``signal``: its scores on the candidates, and ``tau`` calibrated on the shadow
    models' scores of the pool records."""

    def score(inputs: registry.AttackInputs) -> registry.Scores:
        shadows = inputs.shadows
        tau = calibrate_threshold(
            np.asarray(attack(shadows.signals[signal])), shadows.keep, pool=shadows.pool
        )
        scores = attack(inputs.target[signal][inputs.candidates])
        return registry.Scores(np.asarray(scores, dtype=np.float64), tau)

    return score


def _declare(attack, signal: str, statistic: str, paper: str) -> registry.Attack:
    return registry.Attack(
        name=attack.__name__,
        score=_scorer(attack, signal),
        signals=(signal,),
        calibrated=True,
        statistic=statistic,
        paper=paper,
        core=attack,
        core_input="statistic",
    )


_SONG_MITTAL = "Song & Mittal 2021"
ATTACKS: tuple[registry.Attack, ...] = (
    _declare(loss, "loss", "cross-entropy loss", "Yeom et al. 2018"),
    _declare(confidence, "confidence", "top predicted probability", _SONG_MITTAL),
    _declare(entropy, "entropy", "prediction entropy", _SONG_MITTAL),
    _declare(modified_entropy, "modified_entropy", "modified entropy", _SONG_MITTAL),
)
"""The threshold attacks as the audit runs them (:mod:`jaxmia.attacks.registry`)."""
