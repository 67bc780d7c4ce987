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
# Validation and shared helpers
# --------------------------------------------------------------------------------------


def _is_real(dtype: np.dtype) -> bool:
    """Bool, integer or any floating dtype: NumPy's and ``ml_dtypes``' (``bfloat16``, the
    float8 types, ``int4``: JAX's low-precision numbers, whose ``dtype.kind`` is ``"V"``)."""
    if dtype.kind in "biuf":
        return True
    if dtype.kind != "V":
        return False
    import ml_dtypes  # installed with JAX; imported only for such dtypes

    for info in (ml_dtypes.finfo, ml_dtypes.iinfo):  # floats, then int4 and the like
        try:
            info(dtype)
        except (TypeError, ValueError):
            continue
        return True
    return False


def _validate(membership: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Checks and converts the inputs shared by every metric.

    Args:
        membership: Array-like of shape ``(n,)``; bool or numeric with values in {0, 1}.
        scores: Array-like of shape ``(n,)`` of real scores (``±inf`` allowed, NaN not).

    Returns:
        ``(y, s)``: ``y`` bool array ``(n,)``, ``s`` float64 array ``(n,)``.

    Raises:
        ValueError: On non-1-D inputs, mismatched lengths, NaN scores, non-binary
            membership, or when only one class is present.
    """
    y = np.asarray(membership)
    s = np.asarray(scores)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(
            f"membership and scores must be 1-D arrays; got shapes {y.shape} and {s.shape}"
        )
    if y.shape[0] != s.shape[0]:
        raise ValueError(
            f"membership and scores have mismatched lengths: {y.shape[0]} != {s.shape[0]}"
        )
    if not _is_real(s.dtype):
        raise ValueError(f"scores must be real numbers; got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    if np.isnan(s).any():
        raise ValueError(f"scores contain {int(np.isnan(s).sum())} NaN value(s)")
    if y.dtype.kind == "b":
        y_bool = y
    else:
        if not _is_real(y.dtype) or not np.all((y == 0) | (y == 1)):
            bad = np.unique(y[~((y == 0) | (y == 1))]) if _is_real(y.dtype) else y.dtype
            raise ValueError(f"membership must be binary (bool or 0/1, 1 = member); found {bad!r}")
        y_bool = y == 1
    n_pos = int(y_bool.sum())
    if n_pos == 0 or n_pos == y_bool.shape[0]:
        raise ValueError(
            "membership must contain both members and non-members; got "
            f"{n_pos} member(s) and {y_bool.shape[0] - n_pos} non-member(s)"
        )
    return y_bool.astype(bool, copy=False), s


def _roc_counts(
    y: np.ndarray, s: np.ndarray, order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative false/true-positive counts at every distinct score, highest first.

    Args:
        y: Validated bool membership, shape ``(n,)``.
        s: Validated float64 scores, shape ``(n,)``.
        order: ``(n,)`` a permutation sorting ``s`` ascending, if known (ties in any
            order: the counts at the end of each run of equal scores do not depend on it).

    Returns:
        ``(fps, tps, thresholds)``, each of shape ``(k + 1,)`` where ``k`` is the number
        of distinct scores. Entry ``i`` counts examples with ``score >= thresholds[i]``;
        entry 0 is the empty decision (threshold ``+inf``, counts 0).
    """
    order = (np.argsort(s) if order is None else order)[::-1]
    s_sorted = s[order]
    y_sorted = y[order]
    # Last index of every run of equal scores (``!=`` rather than ``np.diff`` so that
    # repeated infinities are treated as ties, not as NaN differences).
    last = np.flatnonzero(s_sorted[1:] != s_sorted[:-1])
    idx = np.append(last, s_sorted.shape[0] - 1)
    tps = np.cumsum(y_sorted, dtype=np.int64)[idx]
    fps = idx + 1 - tps
    zero = np.zeros(1, dtype=np.int64)
    return (
        np.concatenate([zero, fps]),
        np.concatenate([zero, tps]),
        np.concatenate([[np.inf], s_sorted[idx]]),
    )


def _check_fprs(fprs: ArrayLike) -> np.ndarray:
    """Validates target false-positive rates; returns them as a float64 array."""
    arr = np.asarray(fprs, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"fpr must be a scalar or 1-D sequence; got shape {arr.shape}")
    if np.isnan(arr).any() or (arr < 0).any() or (arr > 1).any():
        raise ValueError(f"target FPRs must lie in [0, 1]; got {arr.tolist()}")
    return arr


def _tpr_at_fpr_from_curve(fpr: np.ndarray, tpr: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Highest TPR among ROC vertices with ``fpr <= target`` (``fpr`` non-decreasing)."""
    # TPR is non-decreasing along the curve, so the best vertex is the last admissible one.
    # Vertex 0 is (0, 0), hence the index is always >= 0 for targets >= 0.
    k = np.searchsorted(fpr, targets, side="right") - 1
    return tpr[k]


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
    y, s = _validate(membership, scores)
    fps, tps, thresholds = _roc_counts(y, s)
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
    y, s = _validate(membership, scores)
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
    return _auc_sorted(y[order], s[order])


def _auc_sorted(y_sorted: np.ndarray, s_sorted: np.ndarray) -> float:
    """:func:`auc` of validated inputs sorted by score (ascending)."""
    n = s_sorted.shape[0]
    if n > 1 and (s_sorted[1:] < s_sorted[:-1]).any():
        raise ValueError("order does not sort the scores in ascending order")
    # Runs of equal scores occupy positions [start, end) of the sorted array and all get
    # the average of the 1-based ranks start+1 .. end.
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ends = np.r_[starts[1:], n]
    avg_rank = (starts + 1 + ends) / 2.0
    ranks = np.repeat(avg_rank, ends - starts)
    n_pos = int(y_sorted.sum())
    n_neg = n - n_pos
    u = ranks[y_sorted].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


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
    targets = _check_fprs(fpr)
    fpr_curve, tpr_curve, _ = roc_curve(membership, scores)
    out = _tpr_at_fpr_from_curve(fpr_curve, tpr_curve, np.atleast_1d(targets))
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
    y, s = _validate(membership, scores)
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
    y, s = _validate(membership, scores)
    return _best_threshold(*_roc_counts(y, s))


def _best_threshold(fps: np.ndarray, tps: np.ndarray, thresholds: np.ndarray) -> float:
    """:func:`best_threshold` from the ROC counts of :func:`_roc_counts`."""
    n_neg = fps[-1]
    correct = tps + (n_neg - fps)  # TP + TN at each vertex
    # Vertex 0 is "predict nobody"; express it as a finite threshold when possible.
    thresholds = thresholds.copy()
    with np.errstate(over="ignore"):  # the largest float's successor is +inf
        thresholds[0] = np.nextafter(thresholds[1], np.inf)
    if thresholds[0] == thresholds[1]:  # max score is +inf: "predict nobody" unreachable
        correct = correct[1:]
        thresholds = thresholds[1:]
    return float(thresholds[int(np.argmax(correct))])
