"""The privacy-utility frontier: named defence settings and the frontier figure.

A frontier is a :mod:`jaxmia.study` over the factor ``defence``, whose values are named
settings, each a set of audit settings (any option of :func:`jaxmia._src.audit.config.options`,
so a defence added to :class:`jaxmia.defences.Defence` is a setting key at once).
Every point trains the target *and the shadow models* with its setting
(``defend_shadows=True``: the realistic attacker who knows the training recipe, Shokri et
al. 2017; Carlini et al. 2022), and records the target's train and test accuracy,
epsilon under DP-SGD, and every attack's AUC and TPR at the chosen FPRs. The figure
(:func:`plot`) puts the target's test accuracy (utility) against LiRA-online's TPR at the
lowest FPR and against its AUC (privacy risk), one labelled point per setting.

Settings are written inline, separated by ``;``, each ``NAME=KEY:VALUE[,KEY:VALUE...]``
(``none`` alone is the undefended setting; list values separate their items with ``/``)::

    none; l2=weight_decay:5e-4; drop=dropout:0.3; dp1=dp_noise:1,dp_clip:1

or in a TOML file (``--values frontier.toml``) of ``[[setting]]`` tables, each with a
``name`` and audit settings, typed as in an audit's TOML config::

    [[setting]]
    name = "none"

    [[setting]]
    name = "dp1"
    dp_noise = 1.0

A name is a safe file name (letters, digits, ``.``, ``_``, ``-``): each setting keeps its
shadow pool in ``POOLS/defence-NAME``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from jaxmia._src import audit
from jaxmia._src.audit import config, fields

__all__ = [
    "RESERVED",
    "Setting",
    "SettingError",
    "configure",
    "parse_settings",
    "plot",
    "read_settings",
    "tpr_column",
]

RESERVED: Mapping[str, str] = {
    "output_dir": "the study writes one output directory",
    "defend_shadows": "a frontier always defends the shadows",
    "dataset": "a study loads its data once: give --dataset to the whole study",
    "label_column": "a study loads its data once: give --label-column to the whole study",
}
"""Audit settings a frontier setting may not change, and why: the study's output
directory, the shadows' defence (always on in a frontier) and the data (loaded once for
every setting, so a per-setting value would label a row with data it never ran on)."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_UNDEFENDED = "none"


class SettingError(ValueError):
    """A bad frontier setting (name, key or value); the message is one line."""


class Setting(NamedTuple):
    """One point of a frontier: a name and the audit settings it changes.

    Attributes:
      name: a safe file name (it names the setting's shadow pool directory).
      changes: ``(key, value)`` pairs of flat audit settings, in the order given.
    """

    name: str
    changes: tuple[tuple[str, object], ...] = ()

    def describe(self) -> str:
        """The changes in the inline syntax, e.g. ``weight_decay:0.0005,dropout:0.3``
        (``none`` for the undefended setting)."""
        shown = lambda v: "/".join(map(str, v)) if isinstance(v, tuple | list) else str(v)
        return ",".join(f"{k}:{shown(v)}" for k, v in self.changes) or _UNDEFENDED


def _option(setting: str, key: str) -> config.Option:
    options = {o.name: o for o in config.options()}
    if key in RESERVED:
        raise SettingError(
            f"setting {setting!r}: {key} cannot be set per setting ({RESERVED[key]})"
        )
    if key not in options:
        close = difflib.get_close_matches(key, list(options), 1)
        hint = f"; did you mean {close[0]}?" if close else " (see jaxmia audit --help)"
        raise SettingError(f"setting {setting!r}: unknown key {key!r}{hint}")
    return options[key]


def _scalar(kind: type, text: str) -> Any:
    if kind is bool:
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        return words[text.lower()]
    return kind(text)


def _value(setting: str, option: config.Option, text: str) -> Any:
    """The inline ``text`` of a setting's value as the option's type."""
    text = text.strip()
    try:
        if option.optional and text.lower() == "none":
            return None
        if option.many:
            return tuple(_scalar(option.kind, t.strip()) for t in text.split("/"))
        return _scalar(option.kind, text)
    except (KeyError, ValueError):
        kind = {int: "an integer", float: "a number", bool: "true or false"}.get(option.kind)
        raise SettingError(
            f"setting {setting!r}: bad value {text!r} for {option.name}"
            + (f" (expected {kind})" if kind else "")
        ) from None


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SettingError(
            f"bad setting name {name!r}: use 1-64 letters, digits, '.', '_' or '-' "
            "(it names the setting's pool directory)"
        )
    return name


def _parse_one(text: str) -> Setting:
    """One inline setting ``NAME=KEY:VALUE[,KEY:VALUE...]`` (or ``none``)."""
    name, sep, body = (part.strip() for part in text.partition("="))
    _check_name(name)
    if not sep:
        if name != _UNDEFENDED:
            raise SettingError(
                f"setting {name!r} has no changes: write {name}=KEY:VALUE,... "
                f"(only {_UNDEFENDED!r} stands alone)"
            )
        return Setting(name)
    changes = []
    for pair in body.split(","):
        key, colon, value = (part.strip() for part in pair.partition(":"))
        if not colon or not key:
            raise SettingError(f"setting {name!r}: expected KEY:VALUE, got {pair.strip()!r}")
        changes.append((key, _value(name, _option(name, key), value)))
    return _setting(name, changes)


def _setting(name: str, changes: Sequence[tuple[str, Any]]) -> Setting:
    keys = [k for k, _ in changes]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise SettingError(f"setting {name!r} sets {', '.join(repeated)} twice")
    if name == _UNDEFENDED and changes:
        raise SettingError(f"the setting named {_UNDEFENDED!r} is the undefended one: no changes")
    return Setting(name, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in changes))


def _from_table(table: Any, where: str) -> Setting:
    if not isinstance(table, Mapping) or "name" not in table:
        raise SettingError(f"each [[setting]] in {where} needs a name, got {table!r}")
    name = _check_name(table["name"])
    changes = [(k, v) for k, v in table.items() if k != "name"]
    for key, _ in changes:
        _option(name, key)
    return _setting(name, changes)


def read_settings(path: str) -> list[Setting]:
    """The settings of a TOML file of ``[[setting]]`` tables (module docstring)."""
    data = fields.load_toml(path, "settings file", SettingError)
    other = sorted(set(data) - {"setting"})
    if other or not isinstance(data.get("setting"), list):
        raise SettingError(
            f"{path} must hold [[setting]] tables only"
            + (f"; found {', '.join(other)}" if other else "")
        )
    return [_from_table(t, path) for t in data["setting"]]


def parse_settings(spec: str | Sequence[str | Setting | Mapping[str, Any]]) -> list[Setting]:
    """Named settings from the inline syntax (one string, ``;``-separated), a TOML file
    (a string ending in ``.toml``), or a sequence of inline strings, :class:`Setting`\\ s or
    tables; names must be distinct (regardless of case, for case-insensitive file systems).

    Raises:
      SettingError: a bad name, unknown key or bad value, before any audit runs.
    """
    if isinstance(spec, str):
        text = spec.strip()
        if text.endswith(".toml"):
            return _distinct(read_settings(text))
        spec = _split(text)
    found = []
    for item in spec:
        if isinstance(item, Setting):
            found.append(_setting(_check_name(item.name), list(item.changes)))
        elif isinstance(item, Mapping):
            found.append(_from_table(item, "the settings"))
        else:
            found.extend(_parse_one(s) for s in _split(str(item)))
    return _distinct(found)


def _split(text: str) -> list[str]:
    """The ``;``-separated settings of ``text`` (none if there are none); an empty one
    among others (``a=dropout:0.1;;none``, a trailing ``;``) is refused, never dropped."""
    items = [s.strip() for s in text.split(";")]
    if not any(items):
        return []
    if "" in items:
        raise SettingError(f"empty setting in {text!r}; separate the settings by single ';'")
    return items


def _distinct(settings: list[Setting]) -> list[Setting]:
    if not settings:
        raise SettingError("a frontier needs at least one setting")
    names = [s.name.lower() for s in settings]
    repeated = sorted({s.name for s in settings if names.count(s.name.lower()) > 1})
    if repeated:
        raise SettingError(f"setting name(s) used twice: {', '.join(repeated)}")
    return settings


def configure(setting: Setting, base: audit.AuditConfig) -> audit.AuditConfig:
    """The audit settings of one frontier point: ``base`` with the setting's changes and
    the shadows defended as the target.

    Raises:
      SettingError: a value the audit refuses (its message, prefixed with the setting).
    """
    try:
        return base.replace(**dict(setting.changes), defend_shadows=True)
    except ValueError as e:
        raise SettingError(f"setting {setting.name!r}: {e}") from None


def tpr_column(rows: Sequence[Mapping[str, Any]]) -> str:
    """The TPR column of a study's rows that its figures show: ``tpr@0.001`` when
    recorded, else the one of the lowest FPR."""
    cols = [c for c in rows[0] if c.startswith("tpr@")]
    return "tpr@0.001" if "tpr@0.001" in cols else min(cols, key=lambda c: float(c[4:]))


def plot(result: Any, path: Any, *, attack: str = "lira_online") -> None:
    """The frontier figure of a ``defence`` study (a :class:`jaxmia.study.StudyResult`):
    the target's test accuracy (x) against ``attack``'s TPR at the lowest FPR (log scale
    when every TPR is positive) and against its AUC, one labelled point per setting, the
    undefended one a star, DP-SGD points with their epsilon. Another attack stands in
    (named on the axes) when ``attack`` did not run."""
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    attack = attack if attack in result.attacks() else result.attacks()[0]
    rows = [r for r in result.rows if r["attack"] == attack]
    tpr = tpr_column(rows)
    fig = Figure(figsize=(11, 4.6))
    for ax, column in zip(fig.subplots(1, 2), (tpr, "auc"), strict=True):
        for r in rows:
            bare = r.get("setting", r["value"]) == _UNDEFENDED
            style = dict(marker="*", s=170, color="C3") if bare else dict(s=40, color="C0")
            ax.scatter(r["target_test_acc"], r[column], zorder=3, **style)
            eps = f" (eps {r['epsilon']:.2g})" if r.get("epsilon") is not None else ""
            ax.annotate(
                f"{r['value']}{eps}",
                (r["target_test_acc"], r[column]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
        fpr = float(tpr[4:])
        if column == tpr and all(r[tpr] > 0 for r in rows):
            ax.set_yscale("log")
        ax.axhline(0.5 if column == "auc" else fpr, color="k", lw=0.8, ls="--")
        ax.set_xlabel("target test accuracy (utility)")
        shown = "AUC" if column == "auc" else f"TPR at {fpr:.2g} FPR"
        ax.set_ylabel(f"{attack} {shown} (privacy risk)")
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"privacy-utility frontier: {result.base.dataset}, shadows defended as the target "
        "(star: undefended; dashed: chance)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
