"""Writing an audit to disk: metrics.json, scores.npz, roc.png, signals.png, report.md.

Plots need matplotlib (``pip install 'jaxmia[plot]'``); without it the numbers are still
written and report.md says the plots were skipped.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import io
import json
import os
import pathlib
import platform
from typing import Any

import jax
import numpy as np

from jaxmia._src import metrics
from jaxmia._src.attacks import registry
from jaxmia._src.audit import outputs, shadow_config
from jaxmia._src.audit import vulnerability as vuln
from jaxmia._src.audit.config import AuditConfig, command_for

__all__ = [
    "OUTPUTS",
    "ROC_PIXELS",
    "AuditReport",
    "line_cycle",
    "markdown",
    "plot_roc",
    "plot_signals",
    "thin_roc",
    "versions",
    "write",
]


@dataclasses.dataclass
class AuditReport:
    """Everything an audit measured.

    Attributes:
      config: the :class:`AuditConfig`.
      dataset: one-line description of the data.
      model: the architecture jaxmia trained (the shadows', and the target's where
        jaxmia trained it), e.g. ``MLP(hidden=(128,), ...)``.
      metrics: ``{attack: AttackMetrics}`` (pooled over targets in leave-one-out mode).
      scores: ``{attack: (m,) scores}`` on the candidates, higher = member.
      candidates: ``(m,)`` indices of the candidates in the dataset.
      membership: ``(m,)`` bool true membership of the candidates in their target.
      target_index: ``(m,)`` which target each row was scored against (0 without
        leave-one-out).
      per_target: ``{attack: [AttackMetrics per target]}`` in leave-one-out mode.
      target_accuracy: ``{"train", "test"}`` accuracy of the target (mean over targets).
      shadow_accuracy: mean and std of the shadow models' train and test accuracy.
      target_signals: ``{signal: (m,)}`` the (first) target's confidence/loss on its
        candidates for plots, where the access level provides them.
      privacy: the target's defences and output interface, and the DP-SGD epsilon.
      notes: settings chosen on the way (LiRA variance, RMIA ``a``, skipped attacks).
      timings: seconds per phase.
      versions: library versions and the machine.
      data: ``{"name", "records", "input_shape", "classes", ...}`` the records audited
        (:func:`jaxmia.audit.audit_model` adds the members, non-members and population).
      target: how the target came about (trained by jaxmia and how, the user's own model
        and how its outputs were read, or the leave-one-out shadow models).
      shadows: how the shadow models came about (how many, architecture and training,
        or the user's pool).
      reproducible: whether ``jaxmia audit`` with the config's flags reruns this audit
        (``False`` for a model and data given in Python: no command line is printed).
      attack_seconds: ``{attack: seconds}`` each attack's wall time (all targets).
      vulnerability: per-class and per-record vulnerability to the strongest attack
        (:class:`jaxmia.metrics.Vulnerability`, :mod:`jaxmia._src.audit.vulnerability`), or
        ``None``.
      applied: ``{setting: value}`` where what applied differs from the config: for
        :func:`jaxmia.audit.audit_model`, the user's factory, optimizer or pool in place
        of the architecture and training settings; :func:`write` adds the directory the
        report went to (:meth:`settings`).
      optimistic: the attacks without a threshold calibrated on the shadows, whose
        accuracy, precision and recall are at the best threshold on the target's own
        scores.
    """

    config: AuditConfig
    dataset: str
    model: str
    metrics: dict[str, metrics.AttackMetrics]
    scores: dict[str, np.ndarray]
    candidates: np.ndarray
    membership: np.ndarray
    target_index: np.ndarray
    per_target: dict[str, list[metrics.AttackMetrics]]
    target_accuracy: dict[str, float]
    shadow_accuracy: dict[str, float]
    target_signals: dict[str, np.ndarray]
    privacy: dict[str, Any]
    notes: list[str]
    timings: dict[str, float]
    versions: dict[str, str]
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    target: str = ""
    shadows: str = ""
    reproducible: bool = True
    attack_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    vulnerability: metrics.Vulnerability | None = None
    applied: dict[str, Any] = dataclasses.field(default_factory=dict)
    optimistic: tuple[str, ...] = ()

    def settings(self) -> dict[str, Any]:
        """The flat settings as they applied: the config's (:meth:`AuditConfig.to_dict`)
        with ``applied`` in place."""
        return self.config.to_dict() | self.applied

    def table(self) -> str:
        """The metrics as an aligned text table."""
        return metrics.format_table(self.metrics)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (what ``metrics.json`` holds); ``shadow_differences`` where
        the shadows train unlike the target
        (:func:`jaxmia._src.audit.shadow_config.differences`)."""
        differ = shadow_config.differences(self.config)
        summary = {
            "dataset": self.dataset,
            "data": self.data,
            "model": self.model,
            "target": self.target,
            "shadows": self.shadows,
            "attacks": {name: m.to_dict() for name, m in self.metrics.items()},
            "per_target": {name: [m.to_dict() for m in ms] for name, ms in self.per_target.items()},
            "target_accuracy": self.target_accuracy,
            "privacy": self.privacy,
            "shadow_accuracy": self.shadow_accuracy,
            "n_candidates": int(self.candidates.size),
            "n_targets": int(self.target_index.max()) + 1 if self.target_index.size else 0,
            "notes": self.notes,
            "config": self.settings(),
            "timings_s": self.timings,
            "timings_s_by_attack": self.attack_seconds,
            "versions": self.versions,
        }
        extra = (
            {}
            if self.vulnerability is None
            else {"vulnerability": self.vulnerability.to_dict(vuln.TOP_RECORDS)}
        )
        return summary | extra | ({"shadow_differences": differ} if differ else {})

    def write(self, output_dir: str | None = None) -> dict[str, str]:
        """Writes metrics.json, scores.npz, the plots and report.md; returns their paths."""
        return write(self, output_dir or self.config.output_dir)


def versions() -> dict[str, str]:
    """``{package: version}`` of Python, jaxmia and its JAX stack, and the devices."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("jaxmia", "jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    out["devices"] = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    out["device_count"] = str(jax.device_count())
    return out


def line_cycle():
    """Colours and line styles that stay distinct for a dozen attacks."""
    import matplotlib
    from cycler import cycler

    colours = list(matplotlib.colormaps["tab10"].colors)
    return cycler(linestyle=["-", "--"]) * cycler(color=colours)


ROC_PIXELS = 1000
"""The grid (cells per axis) on which :func:`thin_roc` thins a ROC curve: finer than the
drawn axes (about 530 x 480 pixels at 120 dpi), so a cell is smaller than a pixel."""


def thin_roc(
    fpr: np.ndarray, tpr: np.ndarray, lo: float, *, pixels: int = ROC_PIXELS
) -> tuple[np.ndarray, np.ndarray]:
    """The vertices of a ROC curve that its log-log drawing over ``[lo, 1]^2`` needs.

    The axes are divided into ``pixels`` x ``pixels`` cells of equal size in log space;
    of each run of consecutive vertices in one cell only the first and the last are
    kept, and always the curve's first and last vertex. A ROC curve is monotone, so every
    vertex dropped lies in the cell of the kept vertices around it: the drawn line moves
    by less than a cell's diagonal, under one pixel of the figure (at most
    ``2 x 2 x pixels`` vertices stay, about half of 5,000). Vertices below ``lo`` count as
    at ``lo``.

    Args:
      fpr, tpr: ``(p,)`` nondecreasing false and true positive rates.
      lo: the axes' lower limit (> 0).
      pixels: cells per axis.

    Returns:
      ``(fpr, tpr)``, each ``(q,)`` with ``q <= p``: a subsequence of the vertices.
    """
    fpr, tpr = np.asarray(fpr), np.asarray(tpr)
    if fpr.size < 3:
        return fpr, tpr
    span = -np.log10(lo)
    cell = lambda v: np.floor((np.log10(np.maximum(v, lo)) + span) / span * pixels)
    moved = (np.diff(cell(fpr)) != 0) | (np.diff(cell(tpr)) != 0)
    keep = np.zeros(fpr.size, bool)
    keep[[0, -1]] = True
    keep[1:] |= moved  # the first vertex in a new cell
    keep[:-1] |= moved  # the last one in the cell it leaves
    return fpr[keep], tpr[keep]


def plot_roc(report: AuditReport, path: pathlib.Path) -> None:
    """ROC of every attack on log-log axes (Carlini et al. 2022, Fig. 1 style)."""
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    ax.set_prop_cycle(line_cycle())
    floor = 1.0 / max(int((~report.membership).sum()), 1)
    for name, s in report.scores.items():
        fpr, tpr, _ = metrics.roc_curve(report.membership, s)
        fpr, tpr = thin_roc(np.maximum(fpr, floor / 2), np.maximum(tpr, floor / 2), floor / 2)
        m = report.metrics[name]
        ax.plot(fpr, tpr, label=f"{name} (AUC {m.auc:.3f})")
    grid = np.logspace(np.log10(floor / 2), 0, 100)
    ax.plot(grid, grid, "k--", lw=0.8, label="chance")
    if any(m.unmeasurable_fprs for m in report.metrics.values()):  # TPR@FPR means nothing
        ax.axvspan(
            floor / 2, floor, color="0.85", label=f"FPR < 1/{round(1 / floor)}: not measurable"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor / 2, 1)
    ax.set_ylim(floor / 2, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("Membership inference ROC (log-log)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    # the margins tight_layout finds for these labels, without its extra drawing pass
    fig.subplots_adjust(left=0.14, right=0.95, bottom=0.12, top=0.93)
    fig.savefig(path, dpi=120)


def plot_signals(report: AuditReport, path: pathlib.Path) -> bool:
    """Histograms of the target's confidence and loss, members versus non-members."""
    names = [n for n in ("confidence", "loss") if n in report.target_signals]
    if not names:
        return False
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    fig = Figure(figsize=(5 * len(names), 3.8))
    axes = fig.subplots(1, len(names), squeeze=False)
    member = report.membership[report.target_index == 0]  # the signals are the first target's
    for ax, name in zip(axes[0], names, strict=True):
        v = np.asarray(report.target_signals[name], dtype=np.float64)
        if name == "loss":  # losses span orders of magnitude: show log10
            v = np.log10(np.maximum(v, 1e-12))
            label = "log10 loss"
        else:
            label = name
        bins = np.linspace(v.min(), v.max() + 1e-9, 50)
        ax.hist(v[member], bins=bins, alpha=0.6, label="members", density=True)
        ax.hist(v[~member], bins=bins, alpha=0.6, label="non-members", density=True)
        ax.set_xlabel(label)
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    fig.suptitle("Target model outputs on candidate records")
    # about the margins tight_layout finds, without its extra drawing pass
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.155, top=0.875, wspace=0.18)
    fig.savefig(path, dpi=110)
    return True


def _setting(report: AuditReport) -> list[str]:
    """report.md's "Setting" lines: data, split, target, shadows, access, defences."""
    c, privacy = report.config, report.privacy
    ta, sa = report.target_accuracy, report.shadow_accuracy
    lines = [
        f"- data: {report.dataset}",
        f"- split: {c.scheme}; {report.membership.sum()} members and "
        f"{(~report.membership).sum()} non-members among the candidates",
        f"- target: {report.target or report.model}; train accuracy {ta['train']:.3f}, test "
        f"accuracy {ta['test']:.3f} (generalisation gap {ta['train'] - ta['test']:.3f})"
        + (" (mean over the targets)" if report.per_target else ""),
        f"- shadows: {report.shadows or f'{c.num_shadows} shadow models'}; train accuracy "
        f"{sa['train_mean']:.3f} ± {sa['train_std']:.3f}, test accuracy "
        f"{sa['test_mean']:.3f} ± {sa['test_std']:.3f}",
        f"- attacker access: `{c.effective_access}`"
        + (f" (top {c.top_k})" if c.effective_access == "topk" else "")
        + f"; target interface: {privacy.get('interface', 'none')}",
        f"- defences of the target: {privacy.get('defence', 'none')}" + _shadow_defence(report),
    ]
    differ = shadow_config.describe(c)
    if differ:  # after the shadows' line
        lines.insert(4, "- shadows differ from the target in: " + "; ".join(differ.values()))
    if "epsilon" in privacy:
        lines.append(
            f"- DP-SGD: epsilon {privacy['epsilon']:.3g} at delta {privacy['delta']:g} "
            f"({privacy['steps']} steps, sample rate {privacy['sample_rate']:.3g}; "
            f"{privacy['accounting']})"
        )
    return lines


def _shadow_defence(report: AuditReport) -> str:
    """The shadows' defences after the target's: trained alike, or (the user's own
    model, whose defences jaxmia does not know) ``privacy["shadow_defence"]``."""
    if not report.config.defend_shadows:
        return ""
    if "shadow_defence" not in report.privacy:
        return " (shadows trained alike)"
    return f"; the shadows trained with {report.privacy['shadow_defence']}"


def _results(report: AuditReport) -> list[str]:
    """report.md's "Results": the table, the bootstrap intervals (where computed) and,
    in leave-one-out, mean ± std over the targets."""
    intervals = [(name, m) for name, m in report.metrics.items() if m.auc_ci is not None]
    lines = [
        "Scores are oriented so that higher means member; AUC 0.5 is chance. "
        + _thresholds(report)
        + (" Brackets: 95% bootstrap intervals." if intervals else ""),
        "",
        metrics.markdown_table(report.metrics),
        "",
    ]
    for name, m in intervals:
        tprs = "; ".join(
            f"TPR@{f:g} [{lo:.4f}, {hi:.4f}]" for f, (lo, hi) in (m.tpr_at_fpr_ci or {}).items()
        )
        lines.append(
            f"- {name}: AUC [{m.auc_ci[0]:.4f}, {m.auc_ci[1]:.4f}]; {tprs}; "
            f"precision {m.precision:.3f}, recall {m.recall:.3f}"
        )
    lines.append("")
    lines += _attacks(report)
    if report.per_target:
        fprs = report.config.fprs
        lines += [
            "### Per target (leave-one-out)",
            "",
            "Mean ± std over the targets; the table above pools every target's candidates.",
            "",
            "| attack | AUC | " + " | ".join(f"TPR@{f:g}" for f in fprs) + " |",
            "| :--- | ---: | " + " | ".join("---:" for _ in fprs) + " |",
        ]
        for name, ms in report.per_target.items():
            aucs = np.array([m.auc for m in ms])
            cells = [f"{aucs.mean():.4f} ± {aucs.std():.4f}"]
            for f in fprs:
                v = np.array([m.tpr_at_fpr[f] for m in ms])
                cells.append(f"{v.mean():.4f} ± {v.std():.4f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _attacks(report: AuditReport) -> list[str]:
    """What each attack of the table models and where it comes from, as declared in the
    attack registry (:mod:`jaxmia.attacks.registry`); an attack no longer registered is
    left out."""
    lines = []
    for name in report.metrics:
        try:
            attack = registry.get(name)
        except KeyError:
            continue
        online = "; online (shadows trained on the candidates)" if attack.online else ""
        source = f"; {attack.paper}" if attack.paper else ""
        lines.append(f"- {name}: {attack.statistic or 'statistic not stated'}{online}{source}")
    return (
        ["Attacks (as registered in `jaxmia.attacks.registry`):", "", *lines, ""] if lines else []
    )


def _thresholds(report: AuditReport) -> str:
    """Which threshold the table's accuracy, precision and recall are at: calibrated on
    the shadow models, or (:attr:`AuditReport.optimistic`) the best on the target."""
    best = "at the best threshold on the target's own scores (optimistic)"
    optimistic = [name for name in report.metrics if name in report.optimistic]
    if not optimistic:
        return (
            "Accuracy, precision and recall are at the threshold calibrated on the shadow models."
        )
    if len(optimistic) == len(report.metrics):
        return f"Accuracy, precision and recall are {best}."
    return (
        "Accuracy, precision and recall are at the threshold calibrated on the shadow "
        f"models, except for {', '.join(optimistic)}: {best}."
    )


def _run_section(report: AuditReport) -> list[str]:
    """report.md's "Run": the command (where ``jaxmia audit`` reproduces the audit),
    timings, versions and the config."""
    c = report.config
    lines = ["## Run", ""]
    if report.reproducible:
        lines += [f"Command: `{command_for(c)}`", ""]
    return [
        *lines,
        "Timings (seconds): " + ", ".join(f"{k} {v:.2f}" for k, v in report.timings.items()),
        "",
        "Attack timings (seconds): "
        + ", ".join(f"{k} {v:.2f}" for k, v in report.attack_seconds.items()),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()),
        "",
        "Config:",
        "",
        "```json",
        json.dumps(report.settings(), indent=2),
        "```",
        "",
    ]


def markdown(report: AuditReport, plots: dict[str, str]) -> str:
    """The report.md text: setting, results, notes, plots (``{title: file}``), run."""
    lines = ["# jaxmia membership-inference audit", "", "## Setting", "", *_setting(report)]
    lines += ["", "## Results", "", *_results(report)]
    if report.notes:
        lines += ["Notes:", "", *[f"- {n}" for n in report.notes], ""]
    lines += vuln.markdown(report.vulnerability)
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{name}]({file})" for name, file in plots.items()]
        lines += [""]
    else:
        lines += ["Plots skipped: install matplotlib (`pip install 'jaxmia[plot]'`).", ""]
    return "\n".join([*lines, *_run_section(report)])


OUTPUTS = (
    "metrics.json",
    "scores.npz",
    "roc.png",
    "signals.png",
    "report.md",
    "vulnerable.csv",
    "vulnerable_classes.csv",
    "vulnerable.png",
)
"""The files an audit writes into its output directory."""


def write(report: AuditReport, output_dir: str | os.PathLike) -> dict[str, str]:
    """Writes every output file of an audit as one consistent set
    (:func:`jaxmia._src.audit.outputs.write_set`) and returns ``{kind: path}``."""
    report = dataclasses.replace(report, applied={**report.applied, "output_dir": str(output_dir)})
    files = {"metrics.json": json.dumps(report.to_dict(), indent=2).encode()}
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        index=report.candidates,
        membership=report.membership,
        target=report.target_index,
        **{f"score_{name}": s for name, s in report.scores.items()},
    )
    files["scores.npz"] = buffer.getvalue()
    if report.vulnerability is not None:
        files["vulnerable.csv"] = vuln.members_csv(report.vulnerability)
        files["vulnerable_classes.csv"] = vuln.classes_csv(report.vulnerability)
    plots = {}
    if outputs.plots_available():
        files["roc.png"], plots["ROC"] = outputs.png(lambda f: plot_roc(report, f)), "roc.png"
        buffer = io.BytesIO()
        if plot_signals(report, buffer):
            files["signals.png"], plots["signals"] = buffer.getvalue(), "signals.png"
        if report.vulnerability is not None:
            files["vulnerable.png"] = outputs.png(lambda f: vuln.plot(report.vulnerability, f))
            plots["vulnerable"] = "vulnerable.png"
    files["report.md"] = markdown(report, plots).encode()
    paths = outputs.write_set(output_dir, files)
    kinds = {"metrics.json": "metrics", "scores.npz": "scores", "report.md": "report"}
    kinds |= {"vulnerable.csv": "records", "vulnerable_classes.csv": "classes"}
    kinds.update({file: name.lower() for name, file in plots.items()})
    return {kinds[name]: path for name, path in paths.items()}
