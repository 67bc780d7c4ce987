"""Audit configuration: one frozen dataclass per concern, and which attacks an audit runs.

:class:`AuditConfig` is composed of :class:`DataConfig`, :class:`TrainingConfig`,
:class:`jaxmia.defences.Defence`, :class:`QueryConfig`, :class:`AttackConfig`,
:class:`OutputConfig` and :class:`jaxmia.audit.ShadowConfig`, whose fields'
metadata hold each setting's ``help``, ``flags`` (where not ``--field-name``), ``choices``,
``bounds`` and ``pool`` (whether it changes the shadow pool: ``always``, ``never``,
``defended`` = when the shadows are defended, ``disjoint`` = in the disjoint scheme). The CLI
flags, TOML keys (:func:`read_toml`), :func:`command_for` and :func:`changes_pool` derive from
them. Settings read flat (``AuditConfig(epochs=20).epochs``), as in TOML and metrics.json.

The attacks' own settings (``rmia_gamma``, ``label_queries``, a third-party attack's) are
not written here: each attack declares them beside its code
(:attr:`jaxmia.attacks.Attack.options`), and :class:`AttackConfig` holds those of the
registered attacks; :func:`options` lists them after ``attacks``, in registration order.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from typing import Any

from jaxmia import models, splits, threat_models
from jaxmia._src import datasets
from jaxmia._src.attacks import registry
from jaxmia._src.audit import fields, shadow_config
from jaxmia._src.audit.fields import Option, options_of
from jaxmia._src.defences import perturbation
from jaxmia._src.defences import training as defences
from jaxmia.settings import (
    INT64_MAX,
    NAT,
    POS,
    POSITIVE_REAL,
    UNIT,
    ConfigError,
    Range,
    Section,
    as_config_error,
    check_value,
    opt,
    opt_like,
    refuse_unknown,
)

__all__ = [
    "AttackConfig",
    "AuditConfig",
    "ConfigError",
    "DataConfig",
    "Option",
    "OutputConfig",
    "QueryConfig",
    "TrainingConfig",
    "attack_options",
    "changes_pool",
    "command_for",
    "options",
    "pool_spec",
    "read_toml",
    "select_attacks",
]


@dataclasses.dataclass(frozen=True)
class DataConfig(Section):
    """The data and its split into the target's and the shadow models' training sets."""

    dataset: str = opt(
        datasets.DEFAULT, "bundled name, a .npz/.csv/.parquet file or hf:owner/name", "always"
    )
    label_column: str | None = opt(
        None,
        "label column of a .csv/.parquet or hub table (default: label, y, target, ...)",
        "always",
    )
    num_shadows: int = opt(64, "number of shadow models k", "always", ("--shadows",), b=POS)
    scheme: str = opt("balanced", "shadow split", "always", c=splits.SCHEMES)
    seed: int = opt(0, "seeds the splits and every model", "always", b=Range(0, INT64_MAX))
    target_size: int | None = opt(None, "target training-set size", "disjoint", b=POS)
    shadow_size: int | None = opt(None, "shadow training-set size (disjoint)", "disjoint", b=POS)
    targets: int = opt(
        0, "leave-one-out: evaluate this many pool models as targets", "always", b=NAT
    )


@dataclasses.dataclass(frozen=True)
class TrainingConfig(Section):
    """The architecture and training recipe of the target and of every shadow model."""

    model: str = opt(
        "auto", "auto (CNN for images), mlp or cnn", "always", c=("auto", "mlp", "cnn")
    )
    hidden: tuple[int, ...] = opt((128,), "MLP hidden widths, e.g. 128 or 256,128", "always", b=POS)
    activation: str = opt("tanh", "MLP activation", "always", c=tuple(models.ACTIVATIONS))
    epochs: int = opt(30, "training epochs of target and shadows", "always", b=POS)
    batch_size: int = opt(128, "training batch size", "always", b=POS)
    learning_rate: float = opt(1e-3, "Adam learning rate", "always", ("--lr",), b=POSITIVE_REAL)
    chunk_size: int | None = opt(None, "train at most this many shadows at a time", b=POS)
    defend_shadows: bool = opt(False, "train the shadows with the target's defences", "always")


def _interface_field(name: str, default, help: str):
    """A setting of the query interface that takes the values of the field ``name`` of
    :class:`jaxmia.defences.Perturbation` (its bounds and choices are stated
    there once)."""
    return opt_like(perturbation.Perturbation, name, default, help)


@dataclasses.dataclass(frozen=True)
class QueryConfig(Section):
    """The target's query interface: what the attacker sees (:attr:`AuditConfig.interface`)."""

    access: str = opt("probs", "attacker access", c=threat_models.ACCESS_LEVELS)
    top_k: int = _interface_field("k", 3, "probabilities returned under --access topk")
    perturbation: str = _interface_field("kind", "none", "target outputs (the shadows seen alike)")
    decimals: int = _interface_field("decimals", 2, "rounding of --perturbation round")
    noise_sigma: float = _interface_field("sigma", 0.0, "std of --perturbation noise")

    def __post_init__(self):
        if isinstance(self.access, str):  # its own message: "unknown access level"
            try:
                threat_models.check_access(self.access)
            except ValueError as e:
                raise ConfigError(f"access: {e}") from None
        super().__post_init__()


@dataclasses.dataclass(frozen=True, init=False)
class AttackConfig:
    """Which attacks run, and the options the registered attacks declare.

    ``attacks`` is a setting of this class; the options are those each attack declares
    beside its code (:attr:`jaxmia.attacks.Attack.options`: Shokri's ``per_class``,
    LiRA's ``lira_variance`` and ``augment``, RMIA's ``rmia_a``, ``rmia_gamma`` and
    ``population_size``, the label-only attack's ``label_queries``, a third-party
    attack's own), held as one checked section per declaring class in ``options``, in
    registration order, and given and read flat: ``AttackConfig(rmia_gamma=3.0).rmia_gamma``.

    Why sections held here and not fields of this class: attacks register at any time
    (jaxmia's on import, an installed package's entry point on the registry's first
    read, :func:`jaxmia.attacks.register` at run time), after this class exists. Each
    config reads the registry when it is built, so a setting an attack registered earlier
    is accepted, checked by its own class (:class:`jaxmia.settings.Section`: the message
    names it, the value and what is allowed) and listed by :func:`options` (its flag,
    TOML key, ``metrics.json`` entry, study factor); read from a config built before its
    attack registered, it has its default. jaxmia's attacks register first, so their
    options keep their place after ``attacks``, whatever registers later.

    Args:
      attacks: the attacks to run (a comma-separated string, or names), or ``None``: every
        default attack the access level and the shadow pool allow (:func:`select_attacks`).
      options: sections of :attr:`~jaxmia.attacks.Attack.options` classes (those not given
        hold their defaults; each class of a registered attack).
      **values: flat options (``rmia_gamma=3.0``), over ``options``.
    """

    attacks: tuple[str, ...] | None = opt(
        None,
        "comma-separated attacks (default: every registered attack the access level and "
        "the shadow pool allow)",
        distinct=True,
    )
    options: tuple[Section, ...] = ()

    def __init__(
        self,
        attacks: tuple[str, ...] | str | None = None,
        options: tuple[Section, ...] = (),
        **values: Any,
    ):
        object.__setattr__(self, "attacks", _checked_attacks(attacks))
        object.__setattr__(self, "options", _attack_sections(options, values))

    def __getattr__(self, name: str) -> Any:
        """The option ``name`` (``config.rmia_gamma``): its section's value, or the default
        where its attack registered after this config was built."""
        if name.startswith("__") or "options" not in vars(self):  # copy, pickle, __init__
            raise AttributeError(name)
        for section in (*self.options, *map(_defaults, registry.option_sections())):
            if name in _names_of(type(section)):
                return getattr(section, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _checked_attacks(attacks: Any) -> tuple[str, ...] | None:
    """``attacks`` checked as its field says (a string: its comma-separated names), each
    a registered attack."""
    field = AttackConfig.__dataclass_fields__["attacks"]
    hint = typing.get_type_hints(AttackConfig)["attacks"]
    attacks = check_value("attacks", attacks, hint, field.metadata)
    known = registry.names()
    unknown = [a for a in attacks or () if a not in known]
    if unknown:
        raise ConfigError(
            f"attacks: unknown attack(s) {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return attacks


@functools.cache
def _names_of(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _defaults(cls: type) -> Section:
    """The section ``cls()``: the defaults of an attack's options."""
    return cls()


def _attack_sections(given: Any, values: Mapping[str, Any]) -> tuple[Section, ...]:
    """One section per registered :attr:`~jaxmia.attacks.Attack.options` class, in
    registration order: the one of ``given`` of that class, or its defaults, with the
    flat ``values`` of its settings replaced and checked (by the class)."""
    classes = registry.option_sections()
    if not isinstance(given, tuple | list) or not all(isinstance(s, Section) for s in given):
        raise ConfigError(f"options must be sections of attack options, got {given!r}")
    stray = [type(s).__name__ for s in given if type(s) not in classes]
    if stray:
        raise ConfigError(f"options: {', '.join(stray)} are the options of no registered attack")
    refuse_unknown(values, ["attacks", *(name for cls in classes for name in _names_of(cls))])
    by_class = {type(s): s for s in given}
    sections = []
    for cls in classes:
        section = by_class.get(cls) or _defaults(cls)
        mine = {name: values[name] for name in _names_of(cls) if name in values}
        sections.append(as_config_error(dataclasses.replace, section, **mine) if mine else section)
    return tuple(sections)


@dataclasses.dataclass(frozen=True)
class OutputConfig(Section):
    """What the report states and where it goes."""

    fprs: tuple[float, ...] = opt(
        (0.001, 0.01), "FPRs for TPR@FPR, e.g. 0.001,0.01", b=UNIT, distinct=True
    )
    n_boot: int = opt(200, "bootstrap resamples for confidence intervals", b=NAT)
    output_dir: str = opt("jaxmia-audit", "where to write the report", f=("--output-dir", "-o"))


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "training": TrainingConfig,
    "defence": defences.Defence,
    "query": QueryConfig,
    "attack": AttackConfig,
    "output": OutputConfig,
    "shadow": shadow_config.ShadowConfig,
}
"""The sections of :class:`AuditConfig`: attribute name and class."""


def _table() -> dict[str, Option]:
    """Every flat setting of :class:`AuditConfig` with the registered attacks' options:
    :func:`_collect` of the registry as it is now."""
    return _collect(registry.option_sections())


@functools.cache
def _collect(attack_options: tuple[type, ...]) -> dict[str, Option]:
    """Every section's settings, in declaration order (the sections in the order of
    :data:`SECTIONS`, then their fields; after ``attacks``, the settings of
    ``attack_options``, the :attr:`~jaxmia.attacks.Attack.options` classes in registration
    order): the order of the CLI flags, of ``metrics.json``'s ``"config"`` and of
    :func:`command_for`. An attack's setting that another setting's name or flag holds
    already is refused, naming its class."""
    found: dict[str, Option] = {}
    flags: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        declared = [(cls, option) for option in options_of(cls, section)]
        if cls is AttackConfig:
            declared += [(c, option) for c in attack_options for option in options_of(c, section)]
        for owner, option in declared:
            taken = option.name if option.name in found else None
            taken = taken or next((flags[f] for f in option.flags if f in flags), None)
            if taken is not None:
                raise ConfigError(
                    f"{owner.__qualname__}'s setting {option.name} (flag {option.flags[0]}) "
                    f"clashes with the setting {taken}; rename the attack's option"
                )
            found[option.name] = option
            flags.update(dict.fromkeys(option.flags, option.name))
    return found


def options() -> tuple[Option, ...]:
    """Every flat setting of :class:`AuditConfig`, in the order of ``metrics.json``: the
    settings of every section and the options of the attacks registered now."""
    return tuple(_table().values())


def attack_options() -> tuple[Option, ...]:
    """The settings the registered attacks declare (:attr:`jaxmia.attacks.Attack.options`),
    in registration order: those of :func:`options` after ``attacks``."""
    return tuple(o for o in options() if o.section == "attack" and o.name != "attacks")


@dataclasses.dataclass(frozen=True, init=False)
class AuditConfig:
    """Every setting of an audit, in one section per concern (:data:`SECTIONS`).

    Built from flat settings, ``AuditConfig(num_shadows=16, epochs=20)``, from sections,
    ``AuditConfig(training=TrainingConfig(epochs=20))``, or both (flat settings win); read
    flat, ``config.epochs``, or by section, ``config.training.epochs``. Every value is
    checked here, before any training: a :class:`ConfigError` names the setting, the value
    and what is allowed. ``jaxmia audit --help`` lists the settings with their help text.
    The registered attacks' options (:class:`AttackConfig`) are settings alike:
    ``AuditConfig(rmia_gamma=3.0).rmia_gamma``.
    """

    data: DataConfig
    training: TrainingConfig
    defence: defences.Defence
    query: QueryConfig
    attack: AttackConfig
    output: OutputConfig
    shadow: shadow_config.ShadowConfig

    def __init__(self, **settings: Any):
        table = _table()
        refuse_unknown(set(settings) - set(SECTIONS), table)
        for name, cls in SECTIONS.items():
            section = settings.get(name)
            if section is None:
                section = cls()
            elif not isinstance(section, cls):
                raise ConfigError(f"{name} must be a {cls.__name__}, got {section!r}")
            changes = {
                key: settings[key]
                for key, option in table.items()
                if option.section == name and key in settings
            }
            if changes:  # every section checks its own values (settings.Section)
                section = as_config_error(dataclasses.replace, section, **changes)
            object.__setattr__(self, name, section)
        self._check_together()

    def __getattr__(self, name: str) -> Any:
        """An attack's option read flat, ``config.rmia_gamma``: :class:`AttackConfig`'s (the
        other settings are properties of this class)."""
        if name.startswith("__") or "attack" not in vars(self):  # copy, pickle, __init__
            raise AttributeError(name)
        try:
            return getattr(self.attack, name)
        except AttributeError:
            raise AttributeError(f"'AuditConfig' object has no attribute {name!r}") from None

    def _check_together(self) -> None:
        """Checks of settings that depend on each other."""
        shadow_config.check_with(self)
        if self.perturbation != "none" and self.access == "loss":
            raise ConfigError(
                "output perturbation applies to a probability interface, not to --access loss"
            )
        if self.targets:
            if self.scheme != "balanced":
                raise ConfigError("leave-one-out targets need the balanced scheme")
            if self.targets > self.num_shadows:
                raise ConfigError(
                    f"targets ({self.targets}) cannot exceed the pool size ({self.num_shadows})"
                )
            if self.num_shadows < 3:
                raise ConfigError("leave-one-out targets need a pool of at least 3 models")

    def replace(self, **changes: Any) -> AuditConfig:
        """A copy with the flat settings (or sections) ``changes``, checked anew."""
        return AuditConfig(**{name: getattr(self, name) for name in SECTIONS}, **changes)

    @property
    def interface(self) -> perturbation.Perturbation:
        """The output perturbation of the target's query interface."""
        return perturbation.Perturbation(
            kind=self.perturbation, k=self.top_k, decimals=self.decimals, sigma=self.noise_sigma
        )

    @property
    def effective_access(self) -> str:
        """What the attacker sees: the access level, narrowed by the perturbation."""
        narrowed = perturbation.access_level(self.interface)
        order = threat_models.ACCESS_LEVELS
        if self.access == "loss" or narrowed == "probs":
            return self.access
        return max(self.access, narrowed, key=order.index)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AuditConfig:
        """A config from flat settings (a TOML table, ``metrics.json``'s ``"config"``);
        lists become tuples, and a number where a list belongs a list of one."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"audit settings must be a table, got {values!r}")
        sections = sorted(set(values) & set(SECTIONS))
        if sections:
            raise ConfigError(f"unknown option(s) {', '.join(sections)}; use the flat names")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The flat settings, tuples as lists (the inverse of :meth:`from_dict`)."""
        values = {name: getattr(self, name) for name in _table()}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _flat(option: Option) -> property:
    """The flat read access ``config.<name>`` to a section's field (the attacks' options:
    :meth:`AuditConfig.__getattr__`)."""

    def get(self: AuditConfig) -> Any:
        return getattr(getattr(self, option.section), option.name)

    get.__name__, get.__doc__ = option.name, option.help
    return property(get, doc=option.help)


for _option in _collect(()).values():
    setattr(AuditConfig, _option.name, _flat(_option))


def read_toml(path: str) -> dict[str, Any]:
    """The flat settings of a TOML file: top-level keys, or an ``[audit]`` table (then
    nothing else); :meth:`AuditConfig.from_dict` checks them."""
    return fields.read_toml(path, "audit")


def command_for(config: AuditConfig) -> str:
    """The ``jaxmia audit`` command line that reproduces ``config``: a flag for every
    setting that differs from its default (switches last)."""
    table = _table()
    values = {name: getattr(config, name) for name in table}
    return fields.command_line(["jaxmia", "audit"], tuple(table.values()), values)


def shadows_defended(config: AuditConfig) -> bool:
    """Whether the shadow models train with the target's defences (``defend_shadows``, or
    leave-one-out, where the pool holds the targets)."""
    return config.defend_shadows or config.targets > 0


def changes_pool(name: str, config: AuditConfig) -> bool:
    """Whether the setting ``name`` can change the shadow pool of ``config`` (from its
    ``pool`` metadata); a name that is no setting (a study's ``classes``) is assumed to."""
    option = _table().get(name)
    if option is None or option.pool == "always":
        return True
    if option.pool == "defended":
        return shadows_defended(config)
    if option.pool == "disjoint":
        return config.scheme == "disjoint" and not config.targets
    return False


def pool_spec(config: AuditConfig, *, model: str, scheme: str | None = None) -> dict[str, Any]:
    """The settings a shadow pool records beyond those the engine sees (``checkpoint_spec``
    of :func:`jaxmia.engine.train`); a pool of another spec is refused.

    Args:
      config: the audit's settings.
      model: the shadow models' description (``pipeline.describe_model`` of their factory).
      scheme: the split's scheme when the split is given (default: ``config.scheme``).
    """
    defence = config.defence.describe()
    scheme = config.scheme if scheme is None else scheme
    split: dict[str, Any] = {"scheme": "balanced"}
    if not config.targets and scheme != "balanced":
        split = dict(scheme=scheme, target_size=config.target_size, shadow_size=config.shadow_size)
    return {
        "model": model,
        "learning_rate": config.learning_rate,
        "defence": defence if shadows_defended(config) and defence != "none" else None,
        "seed": config.seed,
        "split": split,
    } | shadow_config.spec(config)


def select_attacks(config: AuditConfig) -> tuple[str, ...]:
    """The attacks to run (:mod:`jaxmia.attacks.registry`): those asked for (refused if
    the access level or the shadow pool cannot serve them) or, by default, every default
    attack both allow, in registration order."""
    online_ok = config.scheme == "balanced"
    access = config.effective_access
    if config.attacks is None:
        return tuple(
            name
            for name in registry.names(default_only=True)
            if threat_models.allows(access, registry.get(name).needs(access))
            and (online_ok or not registry.get(name).online)
        )
    for name in config.attacks:
        attack = registry.get(name)
        threat_models.require(access, attack.needs(access), f"attack {name!r} (access {access!r})")
        if attack.online and not online_ok:
            raise ConfigError(
                f"attack {name!r} needs shadow models trained on the candidates (IN models); "
                "the disjoint scheme has none: use --scheme balanced or the offline attack"
            )
    return tuple(dict.fromkeys(config.attacks))
