"""Stratified percentile-bootstrap confidence intervals for the AUC and TPR at fixed FPR.

Members and non-members are resampled separately, so every resample keeps the class
counts; all resamples are evaluated at once (vectorised over ``B`` resamples) and give
exactly what :func:`jaxmia.metrics.auc` and :func:`jaxmia.metrics.tpr_at_fpr` give on
each resample.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from jaxmia._src.metrics.roc import DEFAULT_FPRS
from jaxmia._src.metrics.roc_core import check_fprs, validate

__all__ = ["bootstrap_ci"]


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
    return np.concatenate([columns[draw] for columns, draw in _class_draws(y, n_boot, rng)], 1)


def _class_draws(y: np.ndarray, n_boot: int, rng: np.random.Generator):
    """The resamples' draws, class by class (members, then non-members): the class's
    example indices ``(size,)`` and each resample's draws among them ``(B, size)``, in
    ``[0, size)``, with replacement."""
    for columns in (np.flatnonzero(y), np.flatnonzero(~y)):
        yield columns, rng.integers(0, columns.shape[0], size=(n_boot, columns.shape[0]))


def _draw_counts(
    y: np.ndarray, n_boot: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """How often each example is drawn in each of :func:`_stratified_bootstrap_indices`'s
    resamples (a resample is a multiset, so its statistics depend on these counts only):
    ``(members, non_members)``, two ``(B, n)`` arrays, each zero outside its class.

    The same draws as :func:`_stratified_bootstrap_indices` (:func:`_class_draws`),
    counted with one ``bincount`` per class. The counts are ``uint8`` when none exceeds
    255 (always, in practice: a count is Binomial(n_class, 1/n_class)), else ``int32``:
    the sums over them are taken in ``int32``/``int64`` either way.
    """
    n = y.shape[0]
    out = []
    for columns, draw in _class_draws(y, n_boot, rng):
        size = columns.shape[0]
        draw += (np.arange(n_boot) * size)[:, None]  # row b's bins follow row b - 1's
        counts = np.bincount(draw.ravel(), minlength=n_boot * size).reshape(n_boot, size)
        full = np.zeros((n_boot, n), np.uint8 if counts.max(initial=0) <= 255 else np.int32)
        full[:, columns] = counts
        out.append(full)
    return out[0], out[1]


_COUNTS_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _resample_counts(membership: bytes, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_draw_counts` of bool membership (its bytes) with
    ``numpy.random.default_rng(seed)``, drawn once for every attack of an audit (they share
    the membership and the seed); read-only."""
    y = np.frombuffer(membership, dtype=bool)
    counts = _draw_counts(y, n_boot, np.random.default_rng(seed))
    for a in counts:
        a.flags.writeable = False
    return counts


def _bootstrap_stats(
    y: np.ndarray, s: np.ndarray, fprs: np.ndarray, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """AUC and TPR@FPR for every stratified bootstrap resample, vectorised.

    Each resample is summarised by how often it draws each example (:func:`_draw_counts`).
    With the members and the non-members each sorted by score once, the prefix sums of
    the non-members' counts, read at each member's rank, give the AUC (Mann-Whitney with
    ties counting 1/2, in exact integer sums), and the first prefix sum to reach the
    allowed number of false positives gives each TPR. The results are identical to
    calling :func:`auc` / :func:`tpr_at_fpr` on each resample.

    Returns:
        ``(aucs, tprs)`` with shapes ``(B,)`` and ``(B, len(fprs))``.
    """
    if isinstance(seed, (int, np.integer)):
        with _COUNTS_LOCK:  # attacks evaluated in threads draw the counts once
            drawn1, drawn0 = _resample_counts(y.tobytes(), n_boot, int(seed))
    else:  # a seed sequence or generator state: not cached
        drawn1, drawn0 = _draw_counts(y, n_boot, np.random.default_rng(seed))
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    # members and non-members each in ascending score order (s1, s0), and for every
    # member how many non-members score below it (lo) and at most as high (hi)
    order = np.argsort(s, kind="stable")
    member_sorted = y[order]
    pos, neg = order[member_sorted], order[~member_sorted]
    s1, s0 = s[pos], s[neg]
    lo, hi = np.searchsorted(s0, s1, side="left"), np.searchsorted(s0, s1, side="right")
    # per resample (a row each): w1 how often each member is drawn; c0[:, r] and c1[:, r]
    # how many draws the r lowest non-members and members got
    w1 = np.take(drawn1, pos, axis=1)
    c0 = np.zeros((n_boot, n_neg + 1), dtype=np.int32)  # int32: at most n
    c1 = np.zeros((n_boot, n_pos + 1), dtype=np.int32)
    np.cumsum(np.take(drawn0, neg, axis=1), axis=1, dtype=np.int32, out=c0[:, 1:])
    np.cumsum(w1, axis=1, dtype=np.int32, out=c1[:, 1:])
    if int(w1.max(initial=0)) * max(n_neg, 1) >= 2**31:  # the products below in int64
        w1 = w1.astype(np.int64)  # (else int32: uint8 counts promote to it)

    # AUC: each member beats the non-members strictly below it and ties with those of its
    # score (integer sums, exact, so the float64 result is the Mann-Whitney formula's)
    beats = (w1 * np.take(c0, lo, axis=1)).sum(axis=1, dtype=np.int64)
    tied = np.flatnonzero(hi != lo)
    ties_with = 0
    if tied.size:
        ties_with = (w1[:, tied] * (c0[:, hi[tied]] - c0[:, lo[tied]])).sum(axis=1, dtype=np.int64)
    aucs = (beats + 0.5 * ties_with) / (n_pos * n_neg)

    # ROC from the highest score down: its vertices lie at the distinct scores, with
    # fps = n_neg - (non-members below) and tps = n_pos - (members below). The last vertex
    # with fps <= c lies just below the score v of the non-member at which c0 first
    # reaches need = n_neg - c (the r-th lowest, r counting the c0 still short of need;
    # c0 does not decrease), so its tps = n_pos - (members scoring at most v).
    members_at_most = np.searchsorted(s1, s0, side="right")  # (n_neg,)
    rows = np.arange(n_boot)
    tprs = np.empty((n_boot, fprs.shape[0]), dtype=np.float64)
    for j, target in enumerate(fprs):
        need = n_neg - _max_count(target, n_neg)
        if need <= 0:  # every example called a member
            tprs[:, j] = 1.0
            continue
        r = (c0 < need).sum(axis=1)  # >= 1: c0[:, 0] = 0
        tprs[:, j] = (n_pos - c1[rows, members_at_most[r - 1]]) / n_pos
    return aucs, tprs


def _max_count(target: float, n_neg: int) -> int:
    """The largest ``c`` in ``[-1, n_neg]`` with ``c / n_neg <= target`` in float64 (the
    test the ROC's vertices pass; ``c / n_neg`` does not decrease with ``c``)."""
    c = min(max(int(np.floor(target * n_neg)), 0), n_neg)
    while c < n_neg and (c + 1) / n_neg <= target:
        c += 1
    while c >= 0 and not c / n_neg <= target:
        c -= 1
    return c


def bootstrap_ci(
    membership: ArrayLike,
    scores: ArrayLike,
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
    y, s = validate(membership, scores)
    targets = np.atleast_1d(check_fprs(list(fprs)))
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
