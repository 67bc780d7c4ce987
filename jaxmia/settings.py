"""Typed settings and their checks: the one validation mechanism every configuration of
jaxmia uses (the audit's sections, ``dp-audit``'s settings, the defences, the engine's
training objectives, DP-SGD and adversarial regularisation).

A setting is a frozen-dataclass field made by :func:`opt`, whose metadata holds its
``help`` text, ``bounds`` (a :class:`Range`), ``choices``, ``distinct`` (whether a list may
repeat an item) and ``infinite`` (whether a float may be ``inf``), and, for the command
line, ``flags`` and ``pool`` (:mod:`jaxmia._src.audit.fields`). :class:`Section` checks every
field of a dataclass from its type hint and metadata: strict types (a bool is no number,
a string no number, floats finite, integers of 64 bits), choices, bounds and repeats,
each refused by a one-line :class:`ConfigError` that names the setting, the value and
what is allowed. A string where a list of names belongs is a comma-separated list
(:func:`split_list`: an empty item is refused, never dropped).

A field may take its checks from another configuration's field (:func:`opt_like`), and a
function's argument that is also a setting is checked as that field (:func:`check_field`),
so that each bound and choice is stated once. A combination of settings that cannot go
together is a :class:`Rule`, stated once where its concept lives and checked by
:func:`refuse_combinations` with each caller's names of the settings.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

__all__ = [
    "BELOW_ONE",
    "INT64_MAX",
    "NAT",
    "POS",
    "POSITIVE_REAL",
    "UNIT",
    "ConfigError",
    "Range",
    "Rule",
    "Section",
    "as_config_error",
    "check_field",
    "check_value",
    "kind_of",
    "list_items",
    "opt",
    "opt_like",
    "refuse_combinations",
    "refuse_unknown",
    "split_list",
]


class ConfigError(ValueError):
    """A setting has a bad value (the message names the setting, the value and what is
    allowed, on one line)."""


class Range(NamedTuple):
    """The interval ``[low, high]``, each end open when asked; ``None``: unbounded."""

    low: float
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, v) -> bool:
        above = v > self.low if self.open_low else v >= self.low
        return above and (
            self.high is None or (v < self.high if self.open_high else v <= self.high)
        )

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low}"
        ends = "(["[not self.open_low], ")]"[not self.open_high]
        return f"in {ends[0]}{self.low}, {self.high}{ends[1]}"


POS = Range(1)
"""Bounds of a count: ``>= 1``."""
NAT = Range(0)
"""Bounds of a non-negative setting: ``>= 0``."""
POSITIVE_REAL = Range(0, open_low=True)
"""Bounds of a positive number: ``> 0``."""
UNIT = Range(0, 1, True, True)
"""Bounds of a rate: ``(0, 1)``."""
BELOW_ONE = Range(0, 1, open_high=True)
"""Bounds of a rate below one: ``[0, 1)``."""
INT64_MAX = 2**63 - 1
"""The largest integer a setting may hold (NumPy's int64; seeds, sizes)."""


def opt(
    default,
    help: str,
    pool: str = "never",
    f=None,
    *,
    c=None,
    b=None,
    distinct=False,
    infinite=False,
    empty=False,
):
    """A config field with its metadata: ``help``, ``pool``, ``flags`` (``f``), ``choices``
    (``c``), ``bounds`` (``b``, a :class:`Range`), ``distinct`` (a list whose items may
    not repeat: a set of choices, not a sequence such as layer widths), ``infinite``
    (a float that may be ``inf``, within its bounds) and ``empty`` (a list that may have
    no items)."""
    metadata = dict(
        help=help,
        pool=pool,
        flags=f,
        choices=c,
        bounds=b,
        distinct=distinct,
        infinite=infinite,
        empty=empty,
    )
    return dataclasses.field(default=default, metadata=metadata)


def _field(cls: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def opt_like(cls: type, name: str, default, help: str, pool: str = "never", f=None):
    """A config field that takes the values the field ``name`` of the dataclass ``cls``
    takes (its choices, bounds, repeats, ``inf`` and emptiness: each stated once, where
    the concept lives), with its own ``default``, ``help``, ``pool`` and flags ``f``. The
    new field's type hint says its type (``float | None`` where ``None`` means "off")."""
    meta = _field(cls, name).metadata
    return opt(
        default,
        help,
        pool,
        f,
        c=meta.get("choices"),
        b=meta.get("bounds"),
        distinct=bool(meta.get("distinct")),
        infinite=bool(meta.get("infinite")),
        empty=bool(meta.get("empty")),
    )


def kind_of(hint) -> tuple[type, bool, bool]:
    """``(scalar type, is a tuple, may be None)`` of a field's type hint."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], True, optional
    return hint, False, optional


_WORDS = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}


def _scalar_ok(value, kind: type, infinite: bool = False) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):  # a bool is not a number
        return False
    if kind is int:
        return isinstance(value, int)
    if kind is float:
        finite = isinstance(value, int | float) and math.isfinite(value)
        return finite or (infinite and value == math.inf)
    return isinstance(value, str) and value != ""


def _plain(v, kind: type):
    """A NumPy integer or float as the Python number it equals; other values unchanged."""
    if kind in (int, float) and isinstance(v, numbers.Integral) and type(v) not in (int, bool):
        return int(v)
    if kind is float and isinstance(v, numbers.Real) and not isinstance(v, int | float):
        return float(v)
    return v


def split_list(name: str, text: str) -> tuple[str, ...]:
    """The items of the comma-separated ``text``, stripped (``"loss, rmia_online"``; a
    blank ``text``: none); an empty item (``3,,4``, a trailing comma) is refused by a
    one-line :class:`ConfigError` naming ``name`` (as the user gave it: a key or a flag),
    never dropped."""
    try:
        return list_items(text)
    except ValueError as error:
        raise ConfigError(f"{name}: {error}") from None


def list_items(text: str) -> tuple[str, ...]:
    """The items of the comma-separated ``text``, stripped (a blank ``text``: none); an
    empty item (``3,,4``, a trailing comma) raises a ValueError saying so. The command
    line's lists (``--fprs``, ``--epsilons``) and :func:`split_list` read lists this way."""
    items = tuple(item.strip() for item in text.split(","))
    if items == ("",):
        return ()
    if "" in items:
        raise ValueError(f"empty item in {text!r}; separate the items by single commas")
    return items


def check_value(name: str, value, hint, meta: Mapping[str, Any]):
    """``value`` as the field ``name`` stores it (lists become tuples, a string in a list
    of strings a comma-separated list), or a ConfigError."""
    kind, many, optional = kind_of(hint)
    given = value  # as the user wrote it, for the message
    if value is None and optional:
        return None
    if many and kind is str and isinstance(value, str):
        value = split_list(name, value)
    if many and isinstance(value, list | tuple):
        value = tuple(_plain(v, kind) for v in value)
    else:
        value = _plain(value, kind)
    infinite = bool(meta.get("infinite"))
    if many and _scalar_ok(value, kind, infinite):
        value = (value,)
    word = _WORDS[kind] if kind is not str else "a non-empty string"
    empty = bool(meta.get("empty"))
    if many:
        word = f"a {'' if empty else 'non-empty '}list of {word.split(' ', 1)[1]}s"
        word = word.replace("trues or false", "bools")
    if infinite:
        word = word.replace("finite ", "") + " (inf allowed)"
    if optional:
        word += " or none"
    if many and not (isinstance(value, tuple) and (value or empty)):
        raise ConfigError(f"{name} must be {word}, got {given!r}")
    for v in value if many else (value,):
        if not _scalar_ok(v, kind, infinite):
            raise ConfigError(f"{name} must be {word}, got {given!r}")
        choices, bounds = meta.get("choices"), meta.get("bounds")
        if choices is not None and v not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {v!r}")
        if bounds is not None and v not in bounds:
            raise ConfigError(f"{name} must be {word.split(' or ')[0]} {bounds}, got {given!r}")
        if kind is int and not -INT64_MAX - 1 <= v <= INT64_MAX:
            raise ConfigError(f"{name} must be a 64-bit integer, got {given!r}")
    if many and meta.get("distinct"):
        repeated = [v for i, v in enumerate(value) if v in value[:i]]
        if repeated:
            raise ConfigError(f"{name} repeats {repeated[0]!r} in {given!r}; give each once")
    return value


def check_field(cls: type, name: str, value):
    """``value`` as the field ``name`` of the dataclass ``cls`` (made by :func:`opt`)
    stores it, or a one-line :class:`ConfigError` naming ``name``: the check of a
    function's argument that is also that setting (``top_k_only(probs, k)`` and
    ``Perturbation.k``)."""
    hint = typing.get_type_hints(cls)[name]
    return check_value(name, value, hint, _field(cls, name).metadata)


def as_config_error(check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``check(*args, **kwargs)``, its ValueError raised as a ConfigError."""
    try:
        return check(*args, **kwargs)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None


class Section:
    """Checks (and normalises) every field from its type hint and metadata."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = check_value(f.name, getattr(self, f.name), hints[f.name], f.metadata)
            object.__setattr__(self, f.name, value)


def refuse_unknown(given: Iterable[str], known: Iterable[str]) -> None:
    """A one-line :class:`ConfigError` naming the settings of ``given`` that are not
    ``known``, and listing those that are."""
    known = set(known)
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(known))}"
        )


class Rule(NamedTuple):
    """A combination rule: ``setting``, when on, does not combine with any of ``others``.

    Settings are named by keys that every configuration stating them shares (the
    engine's names); each caller gives :func:`refuse_combinations` which settings are on
    and its own names for them. ``what``: the setting in words (``"DP-SGD"``), shown
    after its name.
    """

    setting: str
    others: tuple[str, ...]
    what: str = ""

    def message(self, on: Mapping[str, bool], names: Mapping[str, str]) -> str | None:
        """The one-line refusal of the settings ``on`` (by key; a key not there is off)
        in ``names`` (a key not there names itself), or ``None`` when they keep the rule."""
        clash = [names.get(o, o) for o in self.others if on.get(o)]
        if not (on.get(self.setting) and clash):
            return None
        what = f" ({self.what})" if self.what else ""
        name = names.get(self.setting, self.setting)
        return f"{name}{what} does not combine with {', '.join(clash)}"


def refuse_combinations(
    rules: Iterable[Rule], on: Mapping[str, bool], names: Mapping[str, str] | None = None
) -> None:
    """A one-line :class:`ConfigError` for the first of ``rules`` that the settings
    ``on`` break (``{"dp": True, "mixup": True}``: which are on, by key), naming them as
    the caller does (``names``, e.g. ``{"dp": "dp_noise"}``), as in
    ``dp_noise (DP-SGD) does not combine with mixup``."""
    for rule in rules:
        refused = rule.message(on, names or {})
        if refused is not None:
            raise ConfigError(refused)
