"""Audit configuration: one frozen dataclass per concern, and which attacks an audit runs.

:class:`AuditConfig` is composed of :class:`DataConfig`, :class:`TrainingConfig`,
:class:`jaxmia.defences.training.Defence`, :class:`QueryConfig`, :class:`AttackConfig`,
:class:`OutputConfig` and :class:`jaxmia.audit.shadow_config.ShadowConfig`, whose fields'
metadata hold each setting's ``help``, ``flags`` (where not ``--field-name``), ``choices``,
``bounds`` and ``pool`` (whether it changes the shadow pool: ``always``, ``never``,
``defended`` = when the shadows are defended, ``disjoint`` = in the disjoint scheme). The CLI
flags, TOML keys (:func:`read_toml`), :func:`command_for` and :func:`changes_pool` derive from
them. Settings read flat (``AuditConfig(epochs=20).epochs``), as in TOML and metrics.json.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from jaxmia import datasets, models, splits, threat_models
from jaxmia.attacks import lira, registry
from jaxmia.audit import fields, shadow_config
from jaxmia.audit.fields import Option, options_of
from jaxmia.defences import perturbation
from jaxmia.defences import training as defences
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
    opt,
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


@dataclasses.dataclass(frozen=True)
class QueryConfig(Section):
    """The target's query interface: what the attacker sees (:attr:`AuditConfig.interface`)."""

    access: str = opt("probs", "attacker access", c=threat_models.ACCESS_LEVELS)
    top_k: int = opt(3, "probabilities returned under --access topk", b=POS)
    perturbation: str = opt("none", "target outputs (the shadows seen alike)", c=perturbation.KINDS)
    decimals: int = opt(2, "rounding of --perturbation round", b=NAT)
    noise_sigma: float = opt(0.0, "std of --perturbation noise", b=NAT)

    def __post_init__(self):
        if isinstance(self.access, str):  # its own message: "unknown access level"
            try:
                threat_models.check_access(self.access)
            except ValueError as e:
                raise ConfigError(f"access: {e}") from None
        super().__post_init__()


@dataclasses.dataclass(frozen=True)
class AttackConfig(Section):
    """Which attacks run, and their options."""

    attacks: tuple[str, ...] | None = opt(
        None,
        "comma-separated attacks (default: every registered attack the access level and "
        "the shadow pool allow)",
        distinct=True,
    )
    per_class: bool = opt(False, "one Shokri attack model per class")
    lira_variance: str = opt(
        "auto", "LiRA variance (auto: per example from 64 shadows on)", c=("auto", *lira.VARIANCES)
    )
    augment: bool = opt(False, "query LiRA with flipped and shifted images (image data only)")
    rmia_a: float | None = opt(None, "offline RMIA's a (default: calibrated)", b=Range(0, 1))
    rmia_gamma: float = opt(2.0, "RMIA's likelihood-ratio threshold gamma", b=POSITIVE_REAL)
    population_size: int | None = opt(None, "RMIA population records z (default: all)", b=POS)
    label_queries: int = opt(16, "perturbed queries of the label-only attack", b=POS)

    def __post_init__(self):
        super().__post_init__()  # a string: its comma-separated names
        known = registry.names()
        unknown = [a for a in self.attacks or () if a not in known]
        if unknown:
            raise ConfigError(
                f"attacks: unknown attack(s) {', '.join(unknown)}; choose from {', '.join(known)}"
            )


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


def _collect() -> dict[str, Option]:
    """Every section's settings, in declaration order (the sections in the order of
    :data:`SECTIONS`, then their fields): the order of the CLI flags, of
    ``metrics.json``'s ``"config"`` and of :func:`command_for`."""
    found: dict[str, Option] = {}
    for section, cls in SECTIONS.items():
        for option in options_of(cls, section):
            assert option.name not in found, f"{option.name} is a setting of two sections"
            found[option.name] = option
    return found


_OPTIONS = _collect()


def options() -> tuple[Option, ...]:
    """Every flat setting of :class:`AuditConfig`, in the order of ``metrics.json``."""
    return tuple(_OPTIONS.values())


@dataclasses.dataclass(frozen=True, init=False)
class AuditConfig:
    """Every setting of an audit, in one section per concern (:data:`SECTIONS`).

    Built from flat settings, ``AuditConfig(num_shadows=16, epochs=20)``, from sections,
    ``AuditConfig(training=TrainingConfig(epochs=20))``, or both (flat settings win); read
    flat, ``config.epochs``, or by section, ``config.training.epochs``. Every value is
    checked here, before any training: a :class:`ConfigError` names the setting, the value
    and what is allowed. ``jaxmia audit --help`` lists the settings with their help text.
    """

    data: DataConfig
    training: TrainingConfig
    defence: defences.Defence
    query: QueryConfig
    attack: AttackConfig
    output: OutputConfig
    shadow: shadow_config.ShadowConfig

    def __init__(self, **settings: Any):
        refuse_unknown(set(settings) - set(SECTIONS), _OPTIONS)
        for name, cls in SECTIONS.items():
            section = settings.get(name)
            if section is None:
                section = cls()
            elif not isinstance(section, cls):
                raise ConfigError(f"{name} must be a {cls.__name__}, got {section!r}")
            changes = {
                f.name: settings[f.name] for f in dataclasses.fields(cls) if f.name in settings
            }
            if changes:  # every section checks its own values (settings.Section)
                section = as_config_error(dataclasses.replace, section, **changes)
            object.__setattr__(self, name, section)
        self._check_together()

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
        values = {name: getattr(self, name) for name in _OPTIONS}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _flat(option: Option) -> property:
    """The flat read access ``config.<name>`` to a section's field."""

    def get(self: AuditConfig) -> Any:
        return getattr(getattr(self, option.section), option.name)

    get.__name__, get.__doc__ = option.name, option.help
    return property(get, doc=option.help)


for _option in _OPTIONS.values():
    setattr(AuditConfig, _option.name, _flat(_option))


def read_toml(path: str) -> dict[str, Any]:
    """The flat settings of a TOML file: top-level keys, or an ``[audit]`` table (then
    nothing else); :meth:`AuditConfig.from_dict` checks them."""
    return fields.read_toml(path, "audit")


def command_for(config: AuditConfig) -> str:
    """The ``jaxmia audit`` command line that reproduces ``config``: a flag for every
    setting that differs from its default (switches last)."""
    values = {name: getattr(config, name) for name in _OPTIONS}
    return fields.command_line(["jaxmia", "audit"], options(), values)


def shadows_defended(config: AuditConfig) -> bool:
    """Whether the shadow models train with the target's defences (``defend_shadows``, or
    leave-one-out, where the pool holds the targets)."""
    return config.defend_shadows or config.targets > 0


def changes_pool(name: str, config: AuditConfig) -> bool:
    """Whether the setting ``name`` can change the shadow pool of ``config`` (from its
    ``pool`` metadata); a name that is no setting (a study's ``classes``) is assumed to."""
    option = _OPTIONS.get(name)
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
