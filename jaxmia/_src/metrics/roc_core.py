"""The ROC core every metric shares: validated ``(membership, scores)``, the exact ROC
counts at every distinct score, and what is read off them.

Private to :mod:`jaxmia.metrics` (its modules import these names; users call the public
metrics of :mod:`jaxmia._src.metrics.roc`, which validate their inputs here). Pure NumPy on
the host.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "auc_sorted",
    "best_threshold_of_counts",
    "check_fprs",
    "fpr_key",
    "roc_counts",
    "tpr_at_fpr_from_curve",
    "validate",
]


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


def validate(membership: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
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


def roc_counts(
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


def check_fprs(fprs: ArrayLike) -> np.ndarray:
    """Validates target false-positive rates; returns them as a float64 array."""
    arr = np.asarray(fprs, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"fpr must be a scalar or 1-D sequence; got shape {arr.shape}")
    if np.isnan(arr).any() or (arr < 0).any() or (arr > 1).any():
        raise ValueError(f"target FPRs must lie in [0, 1]; got {arr.tolist()}")
    return arr


def tpr_at_fpr_from_curve(fpr: np.ndarray, tpr: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Highest TPR among ROC vertices with ``fpr <= target`` (``fpr`` non-decreasing)."""
    # TPR is non-decreasing along the curve, so the best vertex is the last admissible one.
    # Vertex 0 is (0, 0), hence the index is always >= 0 for targets >= 0.
    k = np.searchsorted(fpr, targets, side="right") - 1
    return tpr[k]


def auc_sorted(y_sorted: np.ndarray, s_sorted: np.ndarray) -> float:
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


def best_threshold_of_counts(fps: np.ndarray, tps: np.ndarray, thresholds: np.ndarray) -> float:
    """:func:`best_threshold` from the ROC counts of :func:`roc_counts`."""
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


def fpr_key(fpr: float) -> str:
    """JSON key for a target FPR, e.g. ``0.001 -> "0.001"``."""
    return repr(float(fpr))
