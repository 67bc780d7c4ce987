"""One-call evaluation of an attack (:func:`evaluate` -> :class:`AttackMetrics`) and the
text and Markdown tables that compare attacks."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from jaxmia._src.metrics.bootstrap import bootstrap_ci
from jaxmia._src.metrics.roc import DEFAULT_FPRS, threshold_metrics
from jaxmia._src.metrics.roc_core import (
    auc_sorted,
    best_threshold_of_counts,
    check_fprs,
    fpr_key,
    roc_counts,
    tpr_at_fpr_from_curve,
    validate,
)

__all__ = ["AttackMetrics", "evaluate", "format_table", "markdown_table"]


def _fpr_label(fpr: float) -> str:
    """Table column label for a target FPR, e.g. ``0.001 -> "TPR@0.1%FPR"``."""
    return f"TPR@{float(fpr) * 100:g}%FPR"


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

    @property
    def unmeasurable_fprs(self) -> list[float]:
        """The target FPRs below ``1 / n_nonmembers``, the smallest nonzero FPR these
        non-members can show: a TPR there is read at FPR 0 and means nothing (with 3
        non-members, "TPR at 0.1% FPR" is the TPR at no false positive at all)."""
        return sorted(f for f in self.tpr_at_fpr if f * self.n_nonmembers < 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view: FPR keys as strings (``"0.001"``), tuples as lists.

        Returns:
            A dict of plain Python floats, ints, lists, dicts and ``None``: strict JSON
            (no ``Infinity``). A non-finite ``threshold`` (an explicit one, or the best
            threshold when it lies above every finite score) becomes ``None``.
        """
        return {
            "auc": float(self.auc),
            "tpr_at_fpr": {fpr_key(f): float(v) for f, v in self.tpr_at_fpr.items()},
            "advantage": float(self.advantage),
            "threshold": float(self.threshold) if math.isfinite(self.threshold) else None,
            "accuracy": float(self.accuracy),
            "precision": float(self.precision),
            "recall": float(self.recall),
            "balanced_accuracy": float(self.balanced_accuracy),
            "auc_ci": None if self.auc_ci is None else [float(v) for v in self.auc_ci],
            "tpr_at_fpr_ci": None
            if self.tpr_at_fpr_ci is None
            else {fpr_key(f): [float(v) for v in ci] for f, ci in self.tpr_at_fpr_ci.items()},
            "n_members": int(self.n_members),
            "n_nonmembers": int(self.n_nonmembers),
        } | (
            {"tpr_at_fpr_unmeasurable": [fpr_key(f) for f in self.unmeasurable_fprs]}
            if self.unmeasurable_fprs
            else {}
        )


def evaluate(
    membership: ArrayLike,
    scores: ArrayLike,
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
    y, s = validate(membership, scores)
    targets = np.atleast_1d(check_fprs(list(fprs)))
    order = np.argsort(s)  # one sort for the ROC, the AUC and the best threshold
    counts = roc_counts(y, s, order)
    fps, tps, _ = counts
    fpr_curve, tpr_curve = fps / fps[-1], tps / tps[-1]
    tprs = tpr_at_fpr_from_curve(fpr_curve, tpr_curve, targets)
    if threshold is None:
        threshold = best_threshold_of_counts(*counts)
    tm = threshold_metrics(y, s, threshold)
    auc_ci: tuple[float, float] | None = None
    tpr_ci: dict[float, tuple[float, float]] | None = None
    if n_boot:
        ci = bootstrap_ci(y, s, fprs=targets.tolist(), n_boot=n_boot, seed=seed)
        auc_ci, tpr_ci = ci["auc"], ci["tpr_at_fpr"]
    return AttackMetrics(
        auc=auc_sorted(y[order], s[order]),
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
        flag = {f: "*" if f in m.unmeasurable_fprs else "" for f in fprs}
        cells = [
            str(name),
            f"{m.auc:.4f}",
            *(f"{tprs[f]:.4f}{flag[f]}" if f in tprs else "-" for f in fprs),
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
    return "\n".join(lines + _footnote(results))


def _footnote(results: Mapping[str, AttackMetrics]) -> list[str]:
    """The line that explains a ``*`` (a TPR at an FPR below ``1 / non-members``)."""
    flagged = [m for m in results.values() if m.unmeasurable_fprs]
    if not flagged:
        return []
    n = min(m.n_nonmembers for m in flagged)
    return [
        f"* not measurable: an FPR below 1/{n} (one over the {n} non-members) reads the "
        "TPR at no false positive; evaluate more non-members"
    ]


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
    footnote = _footnote(results)
    return "\n".join(lines + (["", f"\\{footnote[0]}"] if footnote else []))
