"""Audit configuration: every option of an audit, and which attacks it runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from jaxmia import datasets, models, splits, threat_models
from jaxmia.attacks import lira
from jaxmia.defences import perturbation
from jaxmia.defences import training as defences

THRESHOLD_ATTACKS: Mapping[str, str] = {
    "loss": "loss",
    "confidence": "confidence",
    "entropy": "entropy",
    "modified_entropy": "modified_entropy",
}
"""Threshold attacks and the signal each thresholds."""

SHOKRI_FEATURES: Mapping[str, tuple[str, ...]] = {
    "probs": ("sorted_probabilities",),
    "topk": ("top_k_probabilities",),
    "label": ("correctness",),
    "loss": ("loss",),
}
"""Default attack-classifier features for each access level."""

LIKELIHOOD_ATTACKS: Mapping[str, str] = {
    "lira_online": "logit_scaled_confidence",
    "lira_offline": "logit_scaled_confidence",
    "rmia_online": "loss",
    "rmia_offline": "loss",
    "attack_p": "loss",
}
"""Per-example attacks on the shared shadow pool (LiRA, RMIA) and the signal each reads;
RMIA uses ``log Pr(x | theta) = -loss``."""

ONLINE_ATTACKS = frozenset({"lira_online", "rmia_online"})
"""Attacks that need shadow models trained on the candidates (IN models)."""

ATTACKS: tuple[str, ...] = (
    "shokri",
    *THRESHOLD_ATTACKS,
    *LIKELIHOOD_ATTACKS,
    "label_only",
)
"""Every attack; ``label_only`` (Choquette-Choo et al. 2021) queries perturbed inputs and
reads only the predicted labels."""


class ConfigError(ValueError):
    """An audit option has a bad value."""


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    """Every option of an audit; ``jaxmia audit --help`` documents the same names.

    Attributes:
      dataset: bundled name (``location30``, ``digits``, ``mnist``), a local
        ``.npz``/``.csv``/``.parquet`` path or ``hf:owner/name``.
      num_shadows: number of shadow models ``k``.
      scheme: ``balanced`` (every example IN half of the shadows) or ``disjoint``.
      model: ``mlp``, ``cnn`` or ``auto`` (CNN for images, MLP otherwise).
      hidden: MLP hidden widths.
      activation: MLP activation.
      epochs: training epochs of the target and of every shadow model.
      batch_size: training batch size.
      learning_rate: Adam learning rate.
      seed: seeds the splits and every model.
      target_size: size of the target's training set (default: half the data for
        ``balanced``, a quarter for ``disjoint``).
      shadow_size: size of each shadow training set (``disjoint`` only).
      chunk_size: train at most this many shadow models at a time (memory bound;
        default: chosen for the CPU cache, all at once on accelerators).
      access: what the attacker sees: ``probs``, ``topk``, ``label`` or ``loss``.
      top_k: probabilities returned by the ``topk`` interface.
      attacks: attacks to run (default: all that the access level allows).
      per_class: one Shokri attack model per class.
      targets: leave-one-out evaluation: instead of training a separate target, each of
        the first ``targets`` models of the balanced pool serves in turn as the target,
        attacked with the other ``num_shadows - 1``; metrics are pooled and per target.
      lira_variance: ``per_example``, ``global`` or ``auto`` (per example from 64
        shadow models on, global below, as Carlini et al. 2022 recommend).
      augment: query LiRA with augmented images (flip and 1-pixel shifts; images only).
      rmia_a: offline RMIA's ``a`` (default: calibrated on the reference models).
      rmia_gamma: RMIA's likelihood-ratio threshold ``gamma``.
      population_size: RMIA population records ``z`` drawn from the shadow pool's data
        (default: all of it).
      weight_decay: defence: L2 weight decay of the target (AdamW).
      dropout: defence: dropout rate of the target's hidden layers.
      early_stopping: defence: patience in epochs on a validation split of the target's
        non-members (0: off).
      dp_noise: defence: DP-SGD noise multiplier (``None``: no DP-SGD).
      dp_clip: DP-SGD per-example clipping norm.
      dp_delta: delta at which the DP-SGD epsilon is reported.
      defend_shadows: train the shadow models with the same defences (the attacker
        knows the training recipe) instead of undefended.
      perturbation: output perturbation of the target's interface: ``none``, ``topk``
        (the ``top_k`` largest probabilities), ``round`` (to ``decimals``), ``noise``
        (Gaussian, ``noise_sigma``) or ``label`` (predicted label only). The attacker
        sees the shadows through the same interface.
      decimals: rounding of the ``round`` perturbation.
      noise_sigma: standard deviation of the ``noise`` perturbation.
      label_queries: perturbed queries per record of the label-only attack.
      fprs: false-positive rates at which TPR is reported.
      n_boot: bootstrap resamples for confidence intervals (0: none).
      output_dir: where ``jaxmia audit`` writes the report.
    """

    dataset: str = datasets.DEFAULT
    num_shadows: int = 64
    scheme: str = "balanced"
    model: str = "auto"
    hidden: tuple[int, ...] = (128,)
    activation: str = "tanh"
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    target_size: int | None = None
    shadow_size: int | None = None
    chunk_size: int | None = None
    access: str = "probs"
    top_k: int = 3
    attacks: tuple[str, ...] | None = None
    per_class: bool = False
    targets: int = 0
    lira_variance: str = "auto"
    augment: bool = False
    rmia_a: float | None = None
    rmia_gamma: float = 2.0
    population_size: int | None = None
    weight_decay: float = 0.0
    dropout: float = 0.0
    early_stopping: int = 0
    dp_noise: float | None = None
    dp_clip: float = 1.0
    dp_delta: float = 1e-5
    defend_shadows: bool = False
    perturbation: str = "none"
    decimals: int = 2
    noise_sigma: float = 0.0
    label_queries: int = 16
    fprs: tuple[float, ...] = (0.001, 0.01)
    n_boot: int = 200
    output_dir: str = "jaxmia-audit"

    def __post_init__(self):
        def positive(name, minimum=1):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")

        for name in ("num_shadows", "epochs", "batch_size", "top_k"):
            positive(name)
        positive("n_boot", 0)
        positive("targets", 0)
        for name in ("target_size", "shadow_size", "chunk_size", "population_size"):
            if getattr(self, name) is not None:
                positive(name)
        if self.scheme not in splits.SCHEMES:
            raise ConfigError(
                f"scheme must be one of {', '.join(splits.SCHEMES)}, got {self.scheme!r}"
            )
        if self.model not in ("auto", "mlp", "cnn"):
            raise ConfigError(f"model must be auto, mlp or cnn, got {self.model!r}")
        if self.activation not in models.ACTIVATIONS:
            raise ConfigError(
                f"activation must be one of {', '.join(models.ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ConfigError(f"hidden widths must be positive integers, got {self.hidden!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not self.fprs or any(not 0 < f < 1 for f in self.fprs):
            raise ConfigError(f"fprs must lie in (0, 1), got {self.fprs!r}")
        threat_models.check_access(self.access)
        try:
            self.defence  # noqa: B018  (validates the defence settings)
            self.interface  # noqa: B018
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.perturbation != "none" and self.access == "loss":
            raise ConfigError(
                "output perturbation applies to a probability interface, not to --access loss"
            )
        positive("label_queries")
        if self.lira_variance not in ("auto", *lira.VARIANCES):
            raise ConfigError(
                f"lira_variance must be auto, per_example or global, got {self.lira_variance!r}"
            )
        if self.rmia_a is not None and not 0 <= self.rmia_a <= 1:
            raise ConfigError(f"rmia_a must lie in [0, 1], got {self.rmia_a!r}")
        if not self.rmia_gamma > 0:
            raise ConfigError(f"rmia_gamma must be > 0, got {self.rmia_gamma!r}")
        if self.targets:
            if self.scheme != "balanced":
                raise ConfigError("leave-one-out targets need the balanced scheme")
            if self.targets > self.num_shadows:
                raise ConfigError(
                    f"targets ({self.targets}) cannot exceed the pool size ({self.num_shadows})"
                )
            if self.num_shadows < 3:
                raise ConfigError("leave-one-out targets need a pool of at least 3 models")
        if self.attacks is not None:
            unknown = [a for a in self.attacks if a not in ATTACKS]
            if unknown or not self.attacks:
                raise ConfigError(
                    f"unknown attack(s) {', '.join(unknown) or '(none given)'}; "
                    f"choose from {', '.join(ATTACKS)}"
                )

    @property
    def defence(self) -> defences.Defence:
        """The training-time defences of the target."""
        return defences.Defence(
            weight_decay=self.weight_decay,
            dropout=self.dropout,
            early_stopping=self.early_stopping,
            dp_noise=self.dp_noise,
            dp_clip=self.dp_clip,
            dp_delta=self.dp_delta,
        )

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
        """Builds a config from plain values (a TOML table, JSON), checking the names."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)}; "
                f"valid options: {', '.join(sorted(fields))}"
            )
        values = dict(values)
        for name in ("hidden", "attacks", "fprs"):
            if values.get(name) is not None:
                v = values[name]
                values[name] = tuple(v) if isinstance(v, list | tuple) else (v,)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


def needs(attack: str, access: str) -> tuple[str, ...]:
    """The signals ``attack`` reads under ``access``."""
    if attack == "shokri":
        return SHOKRI_FEATURES[access]
    if attack in LIKELIHOOD_ATTACKS:
        return (LIKELIHOOD_ATTACKS[attack],)
    if attack == "label_only":
        return ("correctness",)
    return (THRESHOLD_ATTACKS[attack],)


def select_attacks(config: AuditConfig) -> tuple[str, ...]:
    """The attacks to run: those asked for (refused if the access level or the shadow
    pool cannot serve them) or, by default, every attack both allow."""
    online_ok = config.scheme == "balanced"
    if config.attacks is None:
        return tuple(
            a
            for a in ATTACKS
            if threat_models.allows(config.effective_access, needs(a, config.effective_access))
            and (online_ok or a not in ONLINE_ATTACKS)
        )
    for a in config.attacks:
        access = config.effective_access
        threat_models.require(access, needs(a, access), f"attack {a!r} (access {access!r})")
        if a in ONLINE_ATTACKS and not online_ok:
            raise ConfigError(
                f"attack {a!r} needs shadow models trained on the candidates (IN models); "
                "the disjoint scheme has none: use --scheme balanced or the offline attack"
            )
    return tuple(dict.fromkeys(config.attacks))


Log = Callable[[str], None]


def _silent(_: str) -> None:
    pass


def _note(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)
