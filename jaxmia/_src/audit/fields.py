"""Settings as a command sees them: flags, TOML keys and the command line that
reproduces them, derived from a configuration's fields (:mod:`jaxmia.settings`, the
checks, sits below).

Every command's configuration is a dataclass of :func:`jaxmia.settings.opt` fields
(``jaxmia audit``'s sections, ``jaxmia dp-audit``'s settings), whose metadata also holds
each setting's CLI ``flags`` and ``pool`` (whether it changes a shadow pool): its flags
(:func:`add_flags`), TOML keys (:func:`read_toml`), the configuration built from both
(:func:`from_command_line`, errors naming a setting as it was given) and the command
line that reproduces it (:func:`command_line`) all derive from :func:`options_of`, in
declaration order.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import tomllib
import typing
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from jaxmia.settings import ConfigError, kind_of, list_items

__all__ = [
    "Option",
    "add_flags",
    "comma_list",
    "command_line",
    "from_command_line",
    "load_toml",
    "options_of",
    "read_toml",
]


def comma_list(kind: Callable[[str], Any], what: str) -> Callable[[str], tuple]:
    """An ``argparse`` type that reads a comma-separated flag (``--fprs 0.001,0.01``) into
    a tuple of ``kind``: an empty item (:func:`list_items`) or an item ``kind`` refuses is
    an ``argparse.ArgumentTypeError`` ("expected comma-separated ``what``"), one line."""

    def parse(text: str) -> tuple:
        try:
            items = list_items(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        try:
            return tuple(kind(v) for v in items)
        except ValueError:
            message = f"expected comma-separated {what}, got {text!r}"
            raise argparse.ArgumentTypeError(message) from None

    return parse


def load_toml(path: str, what: str, error: type[Exception] = ConfigError) -> dict[str, Any]:
    """The tables of the TOML file ``path``, or ``error`` in one line naming ``what`` (e.g.
    ``"config file"``): ``no such config file: PATH`` or
    ``cannot read config file PATH: REASON`` (unreadable, or not TOML)."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise error(f"no such {what}: {path}") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise error(f"cannot read {what} {path}: {getattr(e, 'strerror', e)}") from None


class Option(NamedTuple):
    """One flat setting as the CLI, TOML and :func:`command_line` see it: its section
    (``""`` for a configuration of one section), scalar ``kind`` (of each element when
    ``many``), whether it may be ``None``, its default, CLI ``flags``, ``help``,
    ``choices`` and ``pool`` (:mod:`jaxmia._src.audit.config`)."""

    name: str
    section: str
    kind: type
    many: bool
    optional: bool
    default: object
    flags: tuple[str, ...]
    help: str
    choices: tuple[str, ...] | None
    pool: str


def options_of(cls: type, section: str = "") -> tuple[Option, ...]:
    """The :class:`Option` of every field of the dataclass ``cls`` made by
    :func:`jaxmia.settings.opt`, in declaration order (a field made otherwise is no
    setting: :attr:`jaxmia.audit.AttackConfig.options`, the sections holding the
    attacks' settings); a field's flag is ``--field-name`` unless its metadata says."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "help" not in meta:
            continue
        flags = meta.get("flags") or ("--" + f.name.replace("_", "-"),)
        kind, many, optional = kind_of(hints[f.name])
        found.append(
            Option(
                f.name,
                section,
                kind,
                many,
                optional,
                f.default,
                tuple(flags),
                meta["help"],
                meta.get("choices"),
                meta.get("pool", "never"),
            )
        )
    return tuple(found)


_PARSE = {
    int: (int, comma_list(int, "integers")),
    float: (float, comma_list(float, "numbers")),
    str: (str, comma_list(str, "names")),
}
"""How a flag's text becomes a setting of each kind: one value, or comma-separated."""


def add_flags(parser: argparse.ArgumentParser, options: tuple[Option, ...]) -> None:
    """A flag per option (``--no-x`` too for a switch), each defaulting to ``None`` (not
    given: the TOML file's value or the setting's default applies), with the option's
    help, choices and default."""
    for option in options:
        default = option.default
        shown = ",".join(map(str, default)) if option.many and default else default
        text = option.help
        if option.choices:
            text += f"; one of {', '.join(option.choices)}"
        text += "" if default is None else f" (default: {shown})"
        if option.kind is bool:
            parser.add_argument(
                *option.flags,
                dest=option.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=text,
            )
            continue
        kind = _PARSE[option.kind][option.many]
        metavar = option.name.upper()
        parser.add_argument(
            *option.flags, dest=option.name, type=kind, default=None, help=text, metavar=metavar
        )


def command_line(words: list[str], options: tuple[Option, ...], values: Mapping) -> str:
    """``words`` (``["jaxmia", "audit"]``) and a flag for every setting in ``values``
    that differs from its default (switches last): the command that reproduces them."""
    parts, switches = list(words), []
    for option in options:
        value = values[option.name]
        if value == option.default or value is None:
            continue
        if option.kind is bool:
            switches.append(option.flags[0] if value else "--no-" + option.flags[0][2:])
            continue
        shown = ",".join(map(str, value)) if option.many else str(value)
        parts += [option.flags[0], shlex.quote(shown)]
    return " ".join(parts + switches)


def read_toml(path: str, table: str) -> dict[str, Any]:
    """The flat settings of a TOML file: top-level keys, or a ``[table]`` table (then
    nothing else); the configuration class checks them."""
    data = load_toml(path, "config file")
    if table not in data:
        return data
    if not isinstance(data[table], dict):
        raise ConfigError(f"{table} in {path} must be a table ([{table}]), got {data[table]!r}")
    beside = sorted(set(data) - {table})
    if beside:
        raise ConfigError(
            f"key(s) {', '.join(beside)} in {path} lie outside the [{table}] table; "
            "move them into it"
        )
    return dict(data[table])


def from_command_line(
    args: argparse.Namespace,
    options: tuple[Option, ...],
    table: str,
    build: Callable[[dict[str, Any]], Any],
    defaults: Mapping[str, Any] | None = None,
) -> Any:
    """``build(values)`` of the settings of ``--config`` (a TOML file: top level or a
    ``[table]``), overridden by the flags given, over ``defaults``. An error that names a
    setting given by a flag names it by that flag (``--shadows must be ...``, where the
    file would say ``num_shadows``)."""
    values = dict(defaults or {})
    values.update(read_toml(args.config, table) if getattr(args, "config", None) else {})
    flags = {}
    for option in options:
        value = getattr(args, option.name)
        if value is not None:
            values[option.name] = value
            flags[option.name] = option.flags[0]
    try:
        return build(values)
    except ValueError as error:
        text = str(error)
        for name in sorted(flags, key=len, reverse=True):  # "dp_noise" before "dp"
            if text.startswith((name + " ", name + ":")):
                raise type(error)(flags[name] + text[len(name) :]) from None
        raise
