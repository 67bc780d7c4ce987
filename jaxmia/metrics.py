"""Evaluation metrics for membership-inference attacks.

Every attack in :mod:`jaxmia` produces per-example membership ``scores`` (float array of
shape ``(n,)``) where **higher means more likely a member**, together with the ground-truth
``membership`` (bool or 0/1 array of shape ``(n,)``, ``True`` = member). The functions here
turn such a pair into the usual summary numbers:

* the exact ROC curve and its area (:func:`roc_curve`, :func:`auc`),
* the true-positive rate at a small false-positive rate (:func:`tpr_at_fpr`), the headline
  metric of Carlini et al. (2022), "Membership Inference Attacks From First Principles",
* the membership advantage ``max(TPR - FPR)`` of Yeom et al. (2018) (:func:`advantage`),
* threshold-based metrics (:func:`threshold_metrics`, :func:`best_threshold`),
* stratified percentile-bootstrap confidence intervals (:func:`bootstrap_ci`),
* a one-call summary (:func:`evaluate` -> :class:`AttackMetrics`) and text/Markdown tables.

Everything is pure NumPy on the host and runs in ``O(n log n)`` per metric.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "AttackMetrics",
    "advantage",
    "auc",
    "best_threshold",
    "bootstrap_ci",
    "evaluate",
    "format_table",
    "markdown_table",
    "roc_curve",
    "threshold_metrics",
    "tpr_at_fpr",
]

DEFAULT_FPRS: tuple[float, ...] = (0.001, 0.01)


# --------------------------------------------------------------------------------------
# Validation and shared helpers
# --------------------------------------------------------------------------------------


def _validate(membership: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
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
    if s.dtype.kind not in "biuf":
        raise ValueError(f"scores must be real numbers; got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    if np.isnan(s).any():
        raise ValueError(f"scores contain {int(np.isnan(s).sum())} NaN value(s)")
    if y.dtype.kind == "b":
        y_bool = y
    else:
        if y.dtype.kind not in "iuf" or not np.all((y == 0) | (y == 1)):
            bad = np.unique(y[~((y == 0) | (y == 1))]) if y.dtype.kind in "iuf" else y.dtype
            raise ValueError(f"membership must be binary (bool or 0/1, 1 = member); found {bad!r}")
        y_bool = y == 1
    n_pos = int(y_bool.sum())
    if n_pos == 0 or n_pos == y_bool.shape[0]:
        raise ValueError(
            "membership must contain both members and non-members; got "
            f"{n_pos} member(s) and {y_bool.shape[0] - n_pos} non-member(s)"
        )
    return y_bool.astype(bool, copy=False), s


def _roc_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative false/true-positive counts at every distinct score, highest first.

    Args:
        y: Validated bool membership, shape ``(n,)``.
        s: Validated float64 scores, shape ``(n,)``.

    Returns:
        ``(fps, tps, thresholds)``, each of shape ``(k + 1,)`` where ``k`` is the number
        of distinct scores. Entry ``i`` counts examples with ``score >= thresholds[i]``;
        entry 0 is the empty decision (threshold ``+inf``, counts 0).
    """
    order = np.argsort(s, kind="stable")[::-1]
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


def _check_fprs(fprs: Any) -> np.ndarray:
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


def _fpr_key(fpr: float) -> str:
    """JSON key for a target FPR, e.g. ``0.001 -> "0.001"``."""
    return repr(float(fpr))


def _fpr_label(fpr: float) -> str:
    """Table column label for a target FPR, e.g. ``0.001 -> "TPR@0.1%FPR"``."""
    return f"TPR@{float(fpr) * 100:g}%FPR"


# --------------------------------------------------------------------------------------
# Point metrics
# --------------------------------------------------------------------------------------


def roc_curve(membership: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def auc(membership: Any, scores: Any) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic.

    Equals the probability that a random member scores higher than a random non-member,
    ties counting 1/2 (average ranks), i.e. ``sklearn.metrics.roc_auc_score``. 0.5 is
    chance; 1.0 perfect separation; 0.0 perfectly reversed.

    Args:
        membership: Bool/0-1 array ``(n,)``, ``True`` = member.
        scores: Float array ``(n,)``, higher = more likely member.

    Returns:
        The AUC as a Python float in ``[0, 1]``.

    Raises:
        ValueError: On invalid inputs.
    """
    y, s = _validate(membership, scores)
    n = s.shape[0]
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    # Runs of equal scores occupy positions [start, end) of the sorted array and all get
    # the average of the 1-based ranks start+1 .. end.
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ends = np.r_[starts[1:], n]
    avg_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(avg_rank, ends - starts)
    n_pos = int(y.sum())
    n_neg = n - n_pos
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def tpr_at_fpr(
    membership: Any, scores: Any, fpr: float | Sequence[float] | np.ndarray
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


def advantage(membership: Any, scores: Any) -> float:
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


def threshold_metrics(membership: Any, scores: Any, threshold: float) -> dict[str, float]:
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


def best_threshold(membership: Any, scores: Any) -> float:
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
    fps, tps, thresholds = _roc_counts(y, s)
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


# --------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------


def _stratified_bootstrap_indices(
    y: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Stratified bootstrap resamples: members and non-members resampled separately.

    Args:
        y: Bool membership ``(n,)`` with both classes present.
        n_boot: Number of resamples ``B``.
        rng: NumPy random generator.

    Returns:
        Int array ``(B, n)`` of indices into the original arrays; in every row the first
        ``n_members`` columns are members and the rest non-members, so each resample keeps
        the original class counts.
    """
    pos = np.flatnonzero(y)
    neg = np.flatnonzero(~y)
    pos_draw = pos[rng.integers(0, pos.shape[0], size=(n_boot, pos.shape[0]))]
    neg_draw = neg[rng.integers(0, neg.shape[0], size=(n_boot, neg.shape[0]))]
    return np.concatenate([pos_draw, neg_draw], axis=1)


def _grouped_counts(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-row histogram: ``(B, m)`` group ids -> ``(B, n_groups)`` int64 counts."""
    n_rows = groups.shape[0]
    offsets = (np.arange(n_rows, dtype=np.int64) * n_groups)[:, None]
    flat = np.bincount((groups + offsets).ravel(), minlength=n_rows * n_groups)
    return flat.reshape(n_rows, n_groups)


def _bootstrap_stats(
    y: np.ndarray, s: np.ndarray, fprs: np.ndarray, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """AUC and TPR@FPR for every stratified bootstrap resample, vectorised.

    Each resample is summarised by per-distinct-score counts of members ``W1`` and
    non-members ``W0`` (shape ``(B, G)``), from which the AUC (Mann-Whitney with ties
    counting 1/2) and the ROC curve follow by cumulative sums. The results are identical
    to calling :func:`auc` / :func:`tpr_at_fpr` on each resample.

    Returns:
        ``(aucs, tprs)`` with shapes ``(B,)`` and ``(B, len(fprs))``.
    """
    rng = np.random.default_rng(seed)
    idx = _stratified_bootstrap_indices(y, n_boot, rng)
    _, inv = np.unique(s, return_inverse=True)  # ascending distinct-score ids
    n_groups = int(inv.max()) + 1
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    g = inv[idx]
    w1 = _grouped_counts(g[:, :n_pos], n_groups)
    w0 = _grouped_counts(g[:, n_pos:], n_groups)

    # AUC: each member beats the non-members strictly below it and ties with its group.
    below = np.cumsum(w0, axis=1) - w0
    aucs = np.einsum("bg,bg->b", w1, below + 0.5 * w0) / (n_pos * n_neg)

    # ROC, highest score first, with the (0, 0) vertex prepended.
    zero = np.zeros((n_boot, 1), dtype=np.int64)
    tps = np.concatenate([zero, np.cumsum(w1[:, ::-1], axis=1)], axis=1)
    fps = np.concatenate([zero, np.cumsum(w0[:, ::-1], axis=1)], axis=1)
    fpr = fps / n_neg
    rows = np.arange(n_boot)
    tprs = np.empty((n_boot, fprs.shape[0]), dtype=np.float64)
    for j, target in enumerate(fprs):
        k = np.count_nonzero(fpr <= target, axis=1) - 1
        tprs[:, j] = tps[rows, k] / n_pos
    return aucs, tprs


def bootstrap_ci(
    membership: Any,
    scores: Any,
    *,
    fprs: Iterable[float] = DEFAULT_FPRS,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Percentile-bootstrap confidence intervals for the AUC and TPR@FPR.

    Examples are resampled with replacement **within each class** (stratified), so every
    resample has the original numbers of members and non-members. The interval is the
    ``((1 - level) / 2, (1 + level) / 2)`` quantile pair of the resampled statistic.
    Note that TPR at FPRs below ``1 / n_nonmembers`` is estimated from zero false
    positives and its interval can be very wide or degenerate.

    Args:
        membership: Bool/0-1 array ``(n,)``, ``True`` = member.
        scores: Float array ``(n,)``, higher = more likely member.
        fprs: Target FPRs in ``[0, 1]``.
        n_boot: Number of bootstrap resamples (>= 1).
        level: Confidence level in ``(0, 1)``.
        seed: Seed for ``numpy.random.default_rng``; equal seeds give equal intervals.

    Returns:
        ``{"auc": (lo, hi), "tpr_at_fpr": {fpr: (lo, hi), ...}}`` with Python floats and
        keys ``float(fpr)``.

    Raises:
        ValueError: On invalid inputs, ``n_boot < 1`` or ``level`` outside ``(0, 1)``.
    """
    y, s = _validate(membership, scores)
    targets = np.atleast_1d(_check_fprs(list(fprs)))
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer; got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1); got {level!r}")
    aucs, tprs = _bootstrap_stats(y, s, targets, int(n_boot), seed)
    q = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    auc_lo, auc_hi = np.quantile(aucs, q)
    tpr_q = np.quantile(tprs, q, axis=0)  # (2, m)
    return {
        "auc": (float(auc_lo), float(auc_hi)),
        "tpr_at_fpr": {
            float(f): (float(tpr_q[0, j]), float(tpr_q[1, j])) for j, f in enumerate(targets)
        },
    }


# --------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AttackMetrics:
    """Summary of one attack's performance.

    Attributes:
        auc: Area under the ROC curve.
        tpr_at_fpr: ``{fpr: tpr}`` (see :func:`tpr_at_fpr` for the convention).
        advantage: Membership advantage ``max(TPR - FPR)``.
        threshold: Decision threshold used for the threshold metrics (``scores >= t``).
        accuracy: Accuracy at ``threshold``.
        precision: Precision at ``threshold`` (0 when nothing is predicted a member).
        recall: Recall (TPR) at ``threshold``.
        balanced_accuracy: Balanced accuracy at ``threshold``.
        auc_ci: Bootstrap ``(lo, hi)`` interval for the AUC, or ``None``.
        tpr_at_fpr_ci: ``{fpr: (lo, hi)}`` bootstrap intervals, or ``None``.
        n_members: Number of members evaluated.
        n_nonmembers: Number of non-members evaluated.
    """

    auc: float
    tpr_at_fpr: dict[float, float]
    advantage: float
    threshold: float
    accuracy: float
    precision: float
    recall: float
    balanced_accuracy: float
    auc_ci: tuple[float, float] | None
    tpr_at_fpr_ci: dict[float, tuple[float, float]] | None
    n_members: int
    n_nonmembers: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view: FPR keys as strings (``"0.001"``), tuples as lists.

        Returns:
            A dict of plain Python floats, ints, lists, dicts and ``None``: strict JSON
            (no ``Infinity``). A non-finite ``threshold`` (an explicit one, or the best
            threshold when it lies above every finite score) becomes ``None``.
        """
        return {
            "auc": float(self.auc),
            "tpr_at_fpr": {_fpr_key(f): float(v) for f, v in self.tpr_at_fpr.items()},
            "advantage": float(self.advantage),
            "threshold": float(self.threshold) if math.isfinite(self.threshold) else None,
            "accuracy": float(self.accuracy),
            "precision": float(self.precision),
            "recall": float(self.recall),
            "balanced_accuracy": float(self.balanced_accuracy),
            "auc_ci": None if self.auc_ci is None else [float(v) for v in self.auc_ci],
            "tpr_at_fpr_ci": None
            if self.tpr_at_fpr_ci is None
            else {_fpr_key(f): [float(v) for v in ci] for f, ci in self.tpr_at_fpr_ci.items()},
            "n_members": int(self.n_members),
            "n_nonmembers": int(self.n_nonmembers),
        }


def evaluate(
    membership: Any,
    scores: Any,
    *,
    threshold: float | None = None,
    fprs: Iterable[float] = DEFAULT_FPRS,
    n_boot: int = 200,
    seed: int = 0,
) -> AttackMetrics:
    """Computes every metric of this module at once.

    Args:
        membership: Bool/0-1 array ``(n,)``, ``True`` = member.
        scores: Float array ``(n,)``, higher = more likely member.
        threshold: Decision threshold for accuracy/precision/recall. If ``None``, the
            accuracy-maximising :func:`best_threshold` **on these same scores** is used,
            which is optimistically biased; for an honest accuracy pass a threshold
            calibrated on shadow-model scores instead.
        fprs: Target FPRs for TPR@FPR.
        n_boot: Number of stratified bootstrap resamples for 95% percentile intervals;
            ``0`` skips the bootstrap (``auc_ci`` and ``tpr_at_fpr_ci`` are then ``None``).
        seed: Bootstrap seed.

    Returns:
        An :class:`AttackMetrics`.

    Raises:
        ValueError: On invalid inputs.
    """
    y, s = _validate(membership, scores)
    targets = np.atleast_1d(_check_fprs(list(fprs)))
    fps, tps, _ = _roc_counts(y, s)
    fpr_curve, tpr_curve = fps / fps[-1], tps / tps[-1]
    tprs = _tpr_at_fpr_from_curve(fpr_curve, tpr_curve, targets)
    if threshold is None:
        threshold = best_threshold(y, s)
    tm = threshold_metrics(y, s, threshold)
    auc_ci: tuple[float, float] | None = None
    tpr_ci: dict[float, tuple[float, float]] | None = None
    if n_boot:
        ci = bootstrap_ci(y, s, fprs=targets.tolist(), n_boot=n_boot, seed=seed)
        auc_ci, tpr_ci = ci["auc"], ci["tpr_at_fpr"]
    return AttackMetrics(
        auc=auc(y, s),
        tpr_at_fpr={float(f): float(t) for f, t in zip(targets, tprs, strict=True)},
        advantage=float(np.max(tpr_curve - fpr_curve)),
        threshold=float(threshold),
        accuracy=tm["accuracy"],
        precision=tm["precision"],
        recall=tm["recall"],
        balanced_accuracy=tm["balanced_accuracy"],
        auc_ci=auc_ci,
        tpr_at_fpr_ci=tpr_ci,
        n_members=int(y.sum()),
        n_nonmembers=int((~y).sum()),
    )


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


def _table_rows(results: Mapping[str, AttackMetrics]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells shared by the text and Markdown tables."""
    fprs = sorted({float(f) for m in results.values() for f in m.tpr_at_fpr})
    if not fprs:
        fprs = list(DEFAULT_FPRS)
    header = ["attack", "AUC", *(_fpr_label(f) for f in fprs), "advantage", "accuracy"]
    rows = []
    for name, m in results.items():
        tprs = {float(f): v for f, v in m.tpr_at_fpr.items()}
        cells = [
            str(name),
            f"{m.auc:.4f}",
            *(f"{tprs[f]:.4f}" if f in tprs else "-" for f in fprs),
            f"{m.advantage:.4f}",
            f"{m.accuracy:.4f}",
        ]
        rows.append(cells)
    return header, rows


def format_table(results: Mapping[str, AttackMetrics]) -> str:
    """Plain-text aligned table for terminals.

    Columns: attack, AUC, one TPR@FPR column per target FPR found in ``results``
    (``TPR@0.1%FPR``, ``TPR@1%FPR`` by default; ``-`` where an attack lacks it),
    advantage, accuracy. Numbers are fractions with 4 decimals.

    Args:
        results: ``{attack_name: AttackMetrics}``, rows in iteration order.

    Returns:
        The table as a string (no trailing newline).
    """
    header, rows = _table_rows(results)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    lines.extend(fmt(r) for r in rows)
    return "\n".join(lines)


def markdown_table(results: Mapping[str, AttackMetrics]) -> str:
    """The :func:`format_table` table as GitHub-flavoured Markdown.

    Args:
        results: ``{attack_name: AttackMetrics}``, rows in iteration order.

    Returns:
        The Markdown table as a string (no trailing newline); numeric columns are
        right-aligned.
    """
    header, rows = _table_rows(results)

    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join([":---", *["---:"] * (len(header) - 1)]) + " |",
    ]
    lines.extend("| " + " | ".join(esc(c) for c in r) + " |" for r in rows)
    return "\n".join(lines)
