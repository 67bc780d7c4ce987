"""The ROC curve of membership scores and the point metrics read off it.

Every function takes the ground-truth ``membership`` (bool or 0/1 array ``(n,)``,
``True`` = member) and the attack's ``scores`` (float array ``(n,)``, higher = more likely
a member) and validates them the same way (one-line ``ValueError`` on bad input):

* the exact ROC curve and its area (:func:`roc_curve`, :func:`auc`),
* the true-positive rate at a small false-positive rate (:func:`tpr_at_fpr`), the headline
  metric of Carlini et al. (2022), "Membership Inference Attacks From First Principles",
* the membership advantage ``max(TPR - FPR)`` of Yeom et al. (2018) (:func:`advantage`),
* the metrics of one threshold rule ``scores >= t`` (:func:`threshold_metrics`) and the
  accuracy-maximising threshold (:func:`best_threshold`).

Pure NumPy on the host, ``O(n log n)`` per call. Scores of every floating dtype are
accepted (``float16`` and ``bfloat16`` included) and compared in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from jaxmia._src.metrics.roc_core import (
    auc_sorted,
    best_threshold_of_counts,
    check_fprs,
    roc_counts,
    tpr_at_fpr_from_curve,
    validate,
)

__all__ = [
    "DEFAULT_FPRS",
    "advantage",
    "auc",
    "best_threshold",
    "roc_curve",
    "threshold_metrics",
    "tpr_at_fpr",
]

DEFAULT_FPRS: tuple[float, ...] = (0.001, 0.01)
"""The false-positive rates at which TPR is reported by default: 0.1% and 1%
(Carlini et al., 2022)."""


# --------------------------------------------------------------------------------------
# Point metrics
# --------------------------------------------------------------------------------------


def roc_curve(
    membership: ArrayLike, scores: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ROC curve of the decision rule ``scores >= threshold``.

    One point per distinct score (ties are handled jointly), preceded by the point (0, 0)
    at threshold ``+inf``. Matches
    ``sklearn.metrics.roc_curve(membership, scores, drop_intermediate=False)``.

    Args:
        membership: Bool/0-1 array ``(n,)``, ``True`` = member.
        scores: Float array ``(n,)``, higher = more likely member.

    Returns:
        ``(fpr, tpr, thresholds)``, float64 arrays of shape ``(k + 1,)`` with ``k`` the
        number of distinct scores. ``thresholds`` is strictly decreasing (``+inf`` first);
        ``fpr`` and ``tpr`` are non-decreasing and end at 1.

    Raises:
        ValueError: On invalid inputs (see module docs).
    """
    y, s = validate(membership, scores)
    fps, tps, thresholds = roc_counts(y, s)
    return fps / fps[-1], tps / tps[-1], thresholds


def auc(membership: ArrayLike, scores: ArrayLike, *, order: ArrayLike | None = None) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic.

    Equals the probability that a random member scores higher than a random non-member,
    ties counting 1/2 (average ranks), i.e. ``sklearn.metrics.roc_auc_score``. 0.5 is
    chance; 1.0 perfect separation; 0.0 perfectly reversed.

    Args:
        membership: Bool/0-1 array ``(n,)``, ``True`` = member.
        scores: Float array ``(n,)``, higher = more likely member.
        order: Optional ``(n,)`` permutation along which ``scores`` do not decrease
            (e.g. known from an earlier sort): the sort is skipped, and the result is
            the same. Checked (a ``ValueError`` if it does not sort the scores).

    Returns:
        The AUC as a Python float in ``[0, 1]``.

    Raises:
        ValueError: On invalid inputs.
    """
    y, s = validate(membership, scores)
    if order is None:
        order = np.argsort(s, kind="stable")
    else:
        order = np.asarray(order)
        n = s.shape[0]
        if (
            order.shape != (n,)
            or order.dtype.kind not in "iu"
            or np.bincount(order.clip(0, n), minlength=n + 1)[:n].min(initial=1) != 1
        ):
            raise ValueError(f"order must be a permutation of the {n} indices")
    return auc_sorted(y[order], s[order])


def tpr_at_fpr(
    membership: ArrayLike, scores: ArrayLike, fpr: float | Sequence[float] | np.ndarray
) -> float | np.ndarray:
    """True-positive rate at a fixed (low) false-positive rate.

    Convention: the **highest TPR over the vertices of the exact ROC curve whose FPR is
    ``<= fpr``**, i.e. the best TPR of any actual threshold rule ``scores >= t`` that does
    not exceed the FPR budget. There is no interpolation between vertices, so the value is
    conservative and attainable. Carlini et al. (2022) report this metric at 0.1% and 1%
    FPR; their reference code takes the last point with FPR strictly ``<`` the target,
    which differs from this function only when some threshold hits the budget exactly.
    With ``fpr=0`` this is the TPR achievable with zero false positives.

    Args:
        membership: Bool/0-1 array ``(n,)``, ``True`` = member.
        scores: Float array ``(n,)``, higher = more likely member.
        fpr: Target FPR in ``[0, 1]``, or a sequence of ``m`` targets.

    Returns:
        A Python float for a scalar ``fpr``; a float64 array ``(m,)`` for a sequence.

    Raises:
        ValueError: On invalid inputs or targets outside ``[0, 1]``.
    """
    targets = check_fprs(fpr)
    fpr_curve, tpr_curve, _ = roc_curve(membership, scores)
    out = tpr_at_fpr_from_curve(fpr_curve, tpr_curve, np.atleast_1d(targets))
    if targets.ndim == 0:
        return float(out[0])
    return out.astype(np.float64)


def advantage(membership: ArrayLike, scores: ArrayLike) -> float:
    """Membership advantage ``max_t TPR(t) - FPR(t)`` (Yeom et al., 2018).

    Maximised over all thresholds of the exact ROC curve (equivalently, the maximal
    Youden's J, or twice the best balanced accuracy minus one). Always in ``[0, 1]``
    because the trivial thresholds give ``TPR - FPR = 0``.

    Args:
        membership: Bool/0-1 array ``(n,)``, ``True`` = member.
        scores: Float array ``(n,)``, higher = more likely member.

    Returns:
        The advantage as a Python float.

    Raises:
        ValueError: On invalid inputs.
    """
    fpr, tpr, _ = roc_curve(membership, scores)
    return float(np.max(tpr - fpr))


def threshold_metrics(
    membership: ArrayLike, scores: ArrayLike, threshold: float
) -> dict[str, float]:
    """Classification metrics of the decision ``scores >= threshold`` (predict member).

    Args:
        membership: Bool/0-1 array ``(n,)``, ``True`` = member.
        scores: Float array ``(n,)``, higher = more likely member.
        threshold: Decision threshold (may be ``±inf``, not NaN).

    Returns:
        Dict with float entries ``accuracy``, ``precision`` (TP / predicted members;
        defined as 0.0 when nothing is predicted a member, like sklearn's
        ``zero_division=0``), ``recall`` (= TPR), ``fpr`` and ``balanced_accuracy``
        (mean of TPR and TNR).

    Raises:
        ValueError: On invalid inputs or a NaN threshold.
    """
    y, s = validate(membership, scores)
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    pred = s >= threshold
    tp = int(np.count_nonzero(pred & y))
    fp = int(np.count_nonzero(pred & ~y))
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    tn = n_neg - fp
    tpr = tp / n_pos
    fpr = fp / n_neg
    return {
        "accuracy": (tp + tn) / y.shape[0],
        "precision": tp / (tp + fp) if tp + fp > 0 else 0.0,
        "recall": tpr,
        "fpr": fpr,
        "balanced_accuracy": 0.5 * (tpr + 1.0 - fpr),
    }


def best_threshold(membership: ArrayLike, scores: ArrayLike) -> float:
    """Threshold maximising accuracy of the decision ``scores >= threshold``.

    Candidates are every distinct score (each realises one ROC vertex) plus a value just
    above the maximum score (predict no members). Ties in accuracy are broken towards the
    **highest** threshold (fewest predicted members). The returned value is an observed
    score (or the next float above the maximum), so applying it to the same scores
    reproduces the optimal accuracy exactly.

    Typical use is calibrating an attack on shadow-model scores (where membership is
    known) and then applying the threshold to the target model's scores.

    Args:
        membership: Bool/0-1 array ``(n,)``, ``True`` = member.
        scores: Float array ``(n,)``, higher = more likely member.

    Returns:
        The threshold as a Python float.

    Raises:
        ValueError: On invalid inputs.
    """
    y, s = validate(membership, scores)
    return best_threshold_of_counts(*roc_counts(y, s))
