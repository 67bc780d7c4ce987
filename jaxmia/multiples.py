"""Small multiples: several committed studies in one figure.

Each study directory (written by ``jaxmia study``, holding ``study.json``) becomes one
column of panels: its factor's values on x (log scale where the values are sizes: positive
numbers spanning a factor of 8 or more; categories otherwise), the AUC of LiRA-online and
RMIA-online on top and their TPR at 0.1% FPR (the lowest FPR recorded, if not that) below.
Side by side, studies of epochs, width, training-set size, classes, access and shadow
quality show the factors of a target's vulnerability at a glance (Shokri et al. 2017,
Sec. VI; Carlini et al. 2022, Sec. VI).

``jaxmia plot-studies OUT.png DIR1 DIR2 ...`` writes the figure (:func:`write`).
"""

from __future__ import annotations

import io
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from jaxmia import frontier, study
from jaxmia._src.engine.store import files

__all__ = ["ATTACKS", "load_studies", "plot", "write"]

ATTACKS = ("lira_online", "rmia_online")
"""The attacks drawn in every panel (their offline versions where a study has no online
attack, as in the disjoint scheme)."""


def load_studies(dirs: Sequence[str | os.PathLike]) -> list[study.StudyResult]:
    """The studies of ``dirs``, each a directory holding ``study.json``.

    Raises:
      StudyError: a missing directory, one without ``study.json``, or an unreadable one.
    """
    if not dirs:
        raise study.StudyError("plot-studies needs at least one study directory")
    results = []
    for d in map(pathlib.Path, dirs):
        if not d.is_dir():
            raise study.StudyError(f"no such study directory: {d}")
        path = d / "study.json"
        if not path.is_file():
            raise study.StudyError(f"{d} holds no study.json (write one with jaxmia study -o {d})")
        try:
            results.append(study.load(path))
        except (ValueError, KeyError, TypeError) as e:
            raise study.StudyError(f"cannot read {path}: {e}") from None
    return results


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _log_scale(values: list[Any]) -> bool:
    """Whether ``values`` are sizes: positive numbers spanning a factor of 8 or more."""
    return _numeric(values) and min(values) > 0 and max(values) / min(values) >= 8


def _attacks(result: study.StudyResult) -> list[str]:
    ran = result.attacks()
    offline = [a.replace("online", "offline") for a in ATTACKS]
    return [a for a in ATTACKS if a in ran] or [a for a in offline if a in ran]


def _panel(ax_auc: Any, ax_tpr: Any, result: study.StudyResult, title: str) -> None:
    """One study's two panels: AUC and TPR at low FPR against the factor's values."""
    tpr = frontier.tpr_column(result.rows)
    for attack in _attacks(result):
        xs = result.series(attack, "value")
        log = _log_scale(xs)
        shown = xs if _numeric(xs) else [str(v) for v in xs]  # categories: access, names
        for ax, column in ((ax_auc, "auc"), (ax_tpr, tpr)):
            ax.plot(shown, result.series(attack, column), marker="o", label=attack)
            if log:  # ticks at the values studied, written out (2, 16, 256)
                ax.set_xscale("log")
                ax.set_xticks(xs, [f"{v:g}" for v in xs], minor=False)
                ax.minorticks_off()
    ax_auc.set_title(title, fontsize=9)
    ax_auc.axhline(0.5, color="k", lw=0.8, ls="--")
    ax_tpr.axhline(float(tpr[4:]), color="k", lw=0.8, ls="--")
    ax_auc.set_ylabel("AUC")
    ax_tpr.set_ylabel(f"TPR at {float(tpr[4:]):.2g} FPR")
    ax_tpr.set_xlabel(result.factor)
    for ax in (ax_auc, ax_tpr):
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", labelsize=7, labelrotation=30)


def plot(
    results: Sequence[study.StudyResult],
    path: str | os.PathLike | io.BytesIO,
    *,
    titles: Sequence[str] | None = None,
) -> None:
    """Draws ``results`` as small multiples (module docstring): one column per study,
    AUC above and TPR at low FPR below, LiRA-online and RMIA-online lines; dashed lines
    mark chance. ``titles`` (default: each study's factor) head the columns."""
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    titles = [r.factor for r in results] if titles is None else list(titles)
    n = len(results)
    fig = Figure(figsize=(3.3 * n + 1.2, 6.2))
    axes = fig.subplots(2, n, squeeze=False)
    for j, (result, title) in enumerate(zip(results, titles, strict=True)):
        _panel(axes[0][j], axes[1][j], result, title)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8)
    datasets = sorted({r.base.dataset for r in results})
    fig.suptitle(f"factors of vulnerability ({', '.join(datasets)}; dashed: chance)")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)


def write(path: str | os.PathLike, dirs: Sequence[str | os.PathLike]) -> str:
    """Draws the studies of ``dirs`` (:func:`load_studies`) into the image ``path``,
    written atomically (:func:`jaxmia._src.engine.store.files.atomic_write`: complete or not at all,
    never through a link); returns the path. Each column is headed by its factor and
    directory name."""
    target = pathlib.Path(path)
    if target.suffix.lower() != ".png":
        raise study.StudyError(f"plot-studies writes a .png image, got {path}")
    results = load_studies(dirs)
    titles = [f"{r.factor}\n({pathlib.Path(d).name})" for r, d in zip(results, dirs, strict=True)]
    buffer = io.BytesIO()
    plot(results, buffer, titles=titles)
    files.atomic_write(target, lambda f: f.write(buffer.getvalue()))
    return str(target)
