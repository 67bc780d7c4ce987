"""Studies: sweep one factor of an audit and record what every attack achieves.

A study runs :func:`jaxmia.audit.run` once per value of one factor, everything else fixed,
and records for every attack its AUC and TPR at the chosen FPRs, next to the target's
train and test accuracy (utility) and, under DP-SGD, epsilon. Factors:

* ``shadows``: number of shadow models (balanced pools need an even number);
* ``target_size``: the target's training-set size;
* ``epochs``: training epochs (overfitting);
* ``width``: the MLP's hidden width;
* ``classes``: number of classes (the first ``c`` classes of the data);
* ``access``: the attacker's access level;
* ``weight_decay``, ``dropout``, ``dp_noise`` (DP-SGD noise multiplier; epsilon is
  recorded), ``perturbation``: defence strength;
* ``defence``: the privacy-utility frontier, whose values are named settings of any audit
  options (:mod:`jaxmia.frontier`), the shadows defended as the target.
* ``shadow_width``, ``shadow_depth``, ``shadow_epochs``, ``shadow_lr``,
  ``shadow_data_size``, ``shadow_shift``: shadow quality, the shadows trained unlike the
  target (:mod:`jaxmia._src.audit.shadow_config`; ``none``: as the target);
* every option a registered attack declares (:attr:`jaxmia.attacks.Attack.options`:
  ``rmia_gamma``, ``label_queries``, ... and a third-party attack's own), by its name:
  one shadow pool for all values (:func:`factors`).

``jaxmia study --factor shadows --values 2,4,8,16`` writes ``study.json``, ``study.csv``
and ``study.png`` (metric versus factor, one line per attack; for defences also privacy
versus utility; for ``defence`` the frontier figure). :mod:`jaxmia.multiples` draws
several studies in one figure.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from jaxmia import frontier
from jaxmia._src import audit, datasets
from jaxmia._src.audit import config, outputs, report
from jaxmia._src.engine.store.files import inside
from jaxmia.settings import ConfigError, split_list

__all__ = [
    "DEFENCE_FACTORS",
    "FACTORS",
    "SHADOW_FACTORS",
    "VALUES_HELP",
    "StudyError",
    "StudyResult",
    "factors",
    "load",
    "parse_values",
    "plot",
    "pool_name",
    "run",
    "table",
    "write",
]

SHADOW_FACTORS = (
    "shadow_width",
    "shadow_depth",
    "shadow_epochs",
    "shadow_lr",
    "shadow_data_size",
    "shadow_shift",
)
"""Shadow-quality factors (:mod:`jaxmia._src.audit.shadow_config`): the shadows trained unlike
the target; the value ``none`` trains them as the target."""

FACTORS: dict[str, str] = {
    "shadows": "num_shadows",
    "target_size": "target_size",
    "epochs": "epochs",
    "width": "hidden",
    "classes": "classes",
    "access": "access",
    "weight_decay": "weight_decay",
    "dropout": "dropout",
    "dp_noise": "dp_noise",
    "perturbation": "perturbation",
    "defence": "defence",
    **{name: name for name in SHADOW_FACTORS},
}
"""Study factors and the audit option each sets (``classes`` subsets the data; ``defence``
sets a :class:`jaxmia.frontier.Setting`'s options); the attacks' options are factors too
(:func:`factors`)."""


def factors() -> dict[str, str]:
    """Every study factor and the audit option it sets: :data:`FACTORS`, then the options
    of the attacks registered now (:func:`jaxmia._src.audit.config.attack_options`), each
    setting itself (one named like a factor of :data:`FACTORS` is no factor)."""
    return FACTORS | {o.name: o.name for o in config.attack_options() if o.name not in FACTORS}


VALUES_HELP = (
    "comma-separated values; for --factor defence, named settings "
    "'none; NAME=KEY:VALUE,KEY:VALUE; ...' or a TOML file of [[setting]] tables (jaxmia.frontier)"
)
"""The help text of ``jaxmia study --values``."""

DEFENCE_FACTORS = frozenset({"weight_decay", "dropout", "dp_noise", "perturbation"})
"""Factors that are defences (plotted against the target's utility too)."""


def pool_name(factor: str, value: Any, base: audit.AuditConfig) -> str:
    """The directory under ``pool_root`` that holds the shadow pool of one study value:
    ``<factor>-<value>``, or ``<factor>-all`` for every value of a factor that cannot
    change the pool of ``base`` (the setting's ``pool`` metadata,
    :func:`jaxmia._src.audit.config.changes_pool`), so that such a study trains its shadow
    models once."""
    shared = not config.changes_pool(factors()[factor], base)
    return f"{factor}-all" if shared else f"{factor}-{getattr(value, 'name', value)}"


class StudyError(ValueError):
    """A bad factor or value."""


def _convert(factor: str, v: Any) -> Any:
    """One value of ``factor`` as the audit setting takes it."""
    if factor not in FACTORS:  # an attack's option
        return _option_value(next(o for o in config.attack_options() if o.name == factor), v)
    if factor in SHADOW_FACTORS and str(v).lower() == "none":
        return None  # the shadows as the target
    if factor in ("shadow_lr", "shadow_data_size", "shadow_shift"):
        if isinstance(v, bool):
            raise ValueError(v)
        return float(v)
    if factor in ("access", "perturbation"):
        return str(v)
    if factor == "dp_noise":
        return None if str(v).lower() in ("none", "0", "0.0") else float(v)
    if factor in ("weight_decay", "dropout"):
        return float(v)
    if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError(v)
    return int(v)


def _option_value(option: config.Option, v: Any) -> Any:
    """One value of an attack's option (the audit checks its bounds and choices)."""
    if option.optional and str(v).lower() == "none":
        return None
    if option.kind is bool:
        if not isinstance(v, bool) and str(v).lower() not in ("true", "false"):
            raise ValueError(v)
        return v if isinstance(v, bool) else str(v).lower() == "true"
    value = option.kind(v) if isinstance(v, str) else v
    return (value,) if option.many else value


def parse_values(
    factor: str, values: str | Sequence[Any], base: audit.AuditConfig | None = None
) -> list[Any]:
    """Converts the values of ``factor`` (a sequence, or one string of comma-separated
    values; for ``defence``, :func:`jaxmia.frontier.parse_settings`) to the types the
    audit expects and checks them all (duplicates refused; with ``base``, each audit's
    settings too), before any audit runs."""
    if factor not in factors():
        raise StudyError(f"unknown factor {factor!r}; choose one of {', '.join(factors())}")
    if factor == "defence":
        try:
            found = frontier.parse_settings(values)
            for setting in found if base is not None else ():
                frontier.configure(setting, base)
        except frontier.SettingError as e:
            raise StudyError(str(e)) from None
        return found
    if isinstance(values, str):
        try:
            values = split_list("--values", values)
        except ConfigError as e:
            raise StudyError(str(e)) from None
    if not values:
        raise StudyError("a study needs at least one value")
    out = []
    for v in values:
        try:
            out.append(_convert(factor, v))
        except (TypeError, ValueError):
            raise StudyError(f"bad value {v!r} for factor {factor}") from None
    repeated = sorted({str(v) for v in out if out.count(v) > 1})
    if repeated:
        raise StudyError(f"factor {factor} repeats the value(s) {', '.join(repeated)}")
    for value in out if base is not None else ():
        _config_for(factor, value, base)
    return out


def _config_for(factor: str, value: Any, base: audit.AuditConfig) -> audit.AuditConfig:
    """The audit settings of one study value (``classes`` subsets the data instead)."""
    if factor == "classes":
        if value < 2:
            raise StudyError(f"classes must be at least 2, got {value}")
        return base
    if factor == "defence":
        return frontier.configure(value, base)
    if factor in ("width", "shadow_width") and value is not None:
        value = (value,)
    try:
        return base.replace(**{factors()[factor]: value})
    except ValueError as e:
        raise StudyError(f"{factor}={value}: {e}") from None


def _subset_classes(ds: datasets.Dataset, c: int) -> datasets.Dataset:
    if not 2 <= c <= ds.num_classes:
        raise StudyError(f"classes must lie in [2, {ds.num_classes}], got {c}")
    keep = ds.y < c
    name = f"{ds.name}[:{c}]"
    return dataclasses.replace(ds, x=ds.x[keep], y=ds.y[keep], num_classes=c, name=name)


@dataclasses.dataclass
class StudyResult:
    """One row per (value, attack).

    Attributes:
      factor: the factor swept.
      values: its values, in order.
      rows: dicts with ``value``, ``attack``, ``auc``, ``tpr@<fpr>``, ``target_train_acc``,
        ``target_test_acc``, ``epsilon`` (DP-SGD, else ``None``) and ``seconds``.
      base: the audit options held fixed.
    """

    factor: str
    values: list[Any]
    rows: list[dict[str, Any]]
    base: audit.AuditConfig

    def attacks(self) -> list[str]:
        """The attacks, in the order of the rows."""
        return list(dict.fromkeys(r["attack"] for r in self.rows))

    def series(self, attack: str, column: str) -> list[Any]:
        """``column`` of ``attack``'s rows, one per value."""
        return [r[column] for r in self.rows if r["attack"] == attack]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able contents of ``study.json``."""
        return {
            "factor": self.factor,
            "values": self.values,
            "rows": self.rows,
            "base_config": self.base.to_dict(),
        }


def run(
    factor: str,
    values: Sequence[Any],
    base: audit.AuditConfig | None = None,
    *,
    log: Callable[[str], None] = lambda _: None,
    pool_root: str | os.PathLike | None = None,
) -> StudyResult:
    """Runs one audit per value of ``factor``.

    Args:
      factor: one of :func:`factors`.
      values: its values (converted with :func:`parse_values`).
      base: the audit options held fixed (default: :class:`jaxmia.audit.AuditConfig`).
      log: receives a line per audit.
      pool_root: keep each audit's shadow pool in ``pool_root/<factor>-<value>``
        (:mod:`jaxmia._src.engine.store.pools`), so that an interrupted study, run again,
        reads the pools
        it finished and resumes the one it was training (``jaxmia study`` uses
        ``OUTPUT_DIR/pools``). Values that leave the pool unchanged (access, output
        perturbation, training defences of the target alone, and the target's size in
        the balanced scheme) share one pool,
        ``pool_root/<factor>-all`` (:func:`pool_name`), trained by the first value.
        Each setting of ``defence`` has its own pool, ``pool_root/defence-<name>``.

    Returns:
      A :class:`StudyResult`.
    """
    base = audit.AuditConfig() if base is None else base
    if factor == "defence":  # the realistic attacker: shadows trained as the target
        base = base.replace(defend_shadows=True)
    values = parse_values(factor, values, base)
    data = datasets.load(base.dataset, label_column=base.label_column)
    runs = []  # every value checked before the first audit
    for value in values:
        ds = _subset_classes(data, value) if factor == "classes" else data
        runs.append((value, _config_for(factor, value, base), ds))
    rows = []
    for value, settings, ds in runs:
        start = time.perf_counter()
        name = getattr(value, "name", value)  # a frontier.Setting by its name
        log(f"{factor} = {name}" + (f" ({value.describe()})" if factor == "defence" else ""))
        pool_dir = (  # never through a link (jaxmia._src.engine.store.files.inside)
            None if pool_root is None else inside(pool_root, pool_name(factor, value, base))
        )
        audited = audit.run(settings, dataset=ds, pool_dir=pool_dir)
        seconds = round(time.perf_counter() - start, 2)
        eps = audited.privacy.get("epsilon")
        for attack, m in audited.metrics.items():
            row = {
                "value": name,
                **({"setting": value.describe()} if factor == "defence" else {}),
                "attack": attack,
                "auc": m.auc,
                **{f"tpr@{f:g}": t for f, t in m.tpr_at_fpr.items()},
                "target_train_acc": audited.target_accuracy["train"],
                "target_test_acc": audited.target_accuracy["test"],
                "epsilon": None if eps is None or math.isinf(eps) else eps,
                "seconds": seconds,
            }
            rows.append(row)
        log(
            f"  target test accuracy {audited.target_accuracy['test']:.3f}; "
            + ", ".join(f"{a} {m.auc:.3f}" for a, m in audited.metrics.items())
        )
    names = [getattr(v, "name", v) for v in values]
    return StudyResult(factor=factor, values=names, rows=rows, base=base)


def load(path: str | os.PathLike) -> StudyResult:
    """Reads a ``study.json`` back (e.g. to re-plot or compare studies)."""
    data = json.loads(pathlib.Path(path).read_text())
    return StudyResult(
        factor=data["factor"],
        values=data["values"],
        rows=data["rows"],
        base=audit.AuditConfig.from_dict(data["base_config"]),
    )


def _x(result: StudyResult, attack: str) -> tuple[list[Any], str, bool]:
    """x values, label and log scale for plots (epsilon for DP-SGD)."""
    if result.factor == "dp_noise":
        eps = result.series(attack, "epsilon")
        if all(e is not None for e in eps):
            shuffled = result.base.dp_sampling == "shuffle"
            return eps, "DP-SGD epsilon" + (" (shuffled: not covered)" if shuffled else ""), True
    xs = result.series(attack, "value")
    numeric = all(isinstance(v, int | float) and v is not None for v in xs)
    log = numeric and result.factor == "shadows"
    return xs if numeric else [str(v) for v in xs], result.factor, log


def plot(result: StudyResult, path: str | os.PathLike) -> None:
    """Metric versus factor, one line per attack (AUC and TPR at each FPR); for a defence
    factor, a last panel of privacy (AUC) versus utility (target test accuracy)."""
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    if result.factor == "defence":
        return frontier.plot(result, path)
    tpr_cols = [c for c in result.rows[0] if c.startswith("tpr@")]
    panels = ["auc", *tpr_cols]
    utility = result.factor in DEFENCE_FACTORS
    fig = Figure(figsize=(4.6 * (len(panels) + utility), 4))
    axes = fig.subplots(1, len(panels) + utility, squeeze=False)[0]
    for ax in axes:
        ax.set_prop_cycle(report.line_cycle())
    for ax, column in zip(axes, panels, strict=False):
        for attack in result.attacks():
            xs, label, log = _x(result, attack)
            ys = result.series(attack, column)
            if log:
                ax.set_xscale("log")
            ax.plot(xs, ys, marker="o", label=attack)
            ax.set_xlabel(label)
        ax.set_ylabel(column.replace("tpr@", "TPR at FPR "))
        if column == "auc":
            ax.axhline(0.5, color="k", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    if utility:
        ax = axes[-1]
        for attack in result.attacks():
            ax.plot(
                result.series(attack, "target_test_acc"),
                result.series(attack, "auc"),
                marker="o",
                label=attack,
            )
        ax.set_xlabel("target test accuracy (utility)")
        ax.set_ylabel("attack AUC (privacy risk)")
        ax.axhline(0.5, color="k", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.suptitle(f"jaxmia study: {result.factor} ({result.base.dataset})")
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    fig.savefig(path, dpi=110)


OUTPUTS = ("study.json", "study.csv", "study.png")
"""The files a study writes into its output directory."""


def write(result: StudyResult, output_dir: str | os.PathLike) -> dict[str, str]:
    """Writes study.json, study.csv and (with matplotlib) study.png as one consistent set
    (:func:`jaxmia._src.audit.outputs.write_set`); returns ``{kind: path}``."""
    files = {"study.json": json.dumps(result.to_dict(), indent=2, default=str).encode()}
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(result.rows[0]))
    writer.writeheader()
    writer.writerows(result.rows)
    files["study.csv"] = text.getvalue().encode()
    if outputs.plots_available():
        files["study.png"] = outputs.png(lambda f: plot(result, f))
    paths = outputs.write_set(output_dir, files)
    kinds = {"study.json": "json", "study.csv": "csv", "study.png": "plot"}
    return {kinds[name]: path for name, path in paths.items()}


def table(result: StudyResult) -> str:
    """An aligned text table: one row per value, AUC per attack, target test accuracy."""
    attacks = result.attacks()
    header = [result.factor, "test acc", "epsilon", *attacks]
    lines = []
    for value in result.values:
        rows = [r for r in result.rows if r["value"] == value]
        eps = rows[0]["epsilon"]
        cells = [
            str(value),
            f"{rows[0]['target_test_acc']:.3f}",
            "-" if eps is None else f"{eps:.3g}",
        ]
        by_attack = {r["attack"]: r["auc"] for r in rows}
        cells += [f"{by_attack[a]:.3f}" if a in by_attack else "-" for a in attacks]
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
    out = [fmt(header), fmt(["-" * w for w in widths]), *map(fmt, lines)]
    if result.base.dp_sampling == "shuffle" and any(r["epsilon"] for r in result.rows):
        out.append("epsilon: " + audit.training.ACCOUNTING["shuffle"])
    return "\n".join(out)
