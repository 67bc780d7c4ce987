"""A log-log ROC plot of attacks' scores (Carlini et al., 2022, Fig. 1 style).

matplotlib is an optional dependency (``pip install 'jaxmia[plot]'``); it is imported
only when :func:`plot_roc` is called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from jaxmia._src.metrics.roc import auc, roc_curve
from jaxmia._src.metrics.roc_core import validate

if TYPE_CHECKING:  # matplotlib is optional, imported only when plotting
    from matplotlib.axes import Axes

__all__ = ["plot_roc"]


def plot_roc(
    membership: ArrayLike, scores_by_name: Mapping[str, ArrayLike], ax: Axes | None = None
) -> Axes:
    """Plots the ROC curve of every attack on log-log axes, with the chance diagonal.

    Low false-positive rates are what matter for membership inference (Carlini et al.,
    2022, "Membership Inference Attacks From First Principles"), hence logarithmic axes.
    Rates of zero, which a log axis cannot show, are drawn at half the smallest non-zero
    FPR, ``1 / (2 * n_nonmembers)``, where the axes start.

    Example::

        ax = metrics.plot_roc(membership, {"loss": loss_scores, "lira": lira_scores})
        ax.figure.savefig("roc.png")

    Args:
        membership: Bool/0-1 array ``(n,)``, ``True`` = member.
        scores_by_name: ``{attack_name: scores}``, each a float array ``(n,)``, higher =
            more likely member; one curve each, labelled with its name and AUC, in
            iteration order.
        ax: A matplotlib ``Axes`` to draw on; ``None`` creates a new figure with
            ``matplotlib.pyplot.subplots()``.

    Returns:
        The matplotlib ``Axes`` drawn on.

    Raises:
        ValueError: On invalid membership or scores (as :func:`jaxmia.metrics.roc_curve`)
            or an empty ``scores_by_name``.
        ImportError: When matplotlib is not installed.
    """
    if not scores_by_name:
        raise ValueError("scores_by_name is empty: give at least one {name: scores}")
    y, _ = validate(membership, next(iter(scores_by_name.values())))
    curves = {}
    for name, scores in scores_by_name.items():
        fpr, tpr, _ = roc_curve(y, scores)
        curves[str(name)] = (fpr, tpr, auc(y, scores))
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("metrics.plot_roc needs matplotlib: pip install 'jaxmia[plot]'") from e
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5.5, 5))
    colours = list(matplotlib.colormaps["tab10"].colors)
    floor = 1.0 / (2 * int((~y).sum()))
    for i, (name, (fpr, tpr, area)) in enumerate(curves.items()):
        ax.plot(
            np.maximum(fpr, floor),
            np.maximum(tpr, floor),
            color=colours[i % len(colours)],
            linestyle=("-", "--", ":")[(i // len(colours)) % 3],
            label=f"{name} (AUC {area:.3f})",
        )
    ax.plot([floor, 1.0], [floor, 1.0], "k--", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(floor, 1.0)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("Membership inference ROC (log-log)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    return ax
