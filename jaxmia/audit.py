"""The membership-inference audit: one call from a dataset to a report.

:func:`run` trains the target and the shadow pool with the shadow engine, computes the
signals the chosen access level provides, runs every attack that it allows, and scores
them with :mod:`jaxmia.metrics`. ``jaxmia audit`` is a thin command line over it.

Example::

    import jaxmia
    report = jaxmia.audit.run(jaxmia.audit.AuditConfig(num_shadows=16, epochs=20))
    print(report.table())
    report.write("audit-out")
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import math
import os
import pathlib
import platform
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmia import (
    datasets,
    defences,
    label_only,
    lira,
    metrics,
    models,
    perturbation,
    pools,
    rmia,
    shadow,
    shokri,
    signals,
    splits,
    threat_models,
    threshold,
)

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


@dataclasses.dataclass
class AuditReport:
    """Everything an audit measured.

    Attributes:
      config: the :class:`AuditConfig`.
      dataset: one-line description of the data.
      model: description of the target/shadow architecture.
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

    def table(self) -> str:
        """The metrics as an aligned text table."""
        return metrics.format_table(self.metrics)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (what ``metrics.json`` holds)."""
        return {
            "dataset": self.dataset,
            "model": self.model,
            "attacks": {name: m.to_dict() for name, m in self.metrics.items()},
            "per_target": {name: [m.to_dict() for m in ms] for name, ms in self.per_target.items()},
            "target_accuracy": self.target_accuracy,
            "privacy": self.privacy,
            "shadow_accuracy": self.shadow_accuracy,
            "n_candidates": int(self.candidates.size),
            "n_targets": int(self.target_index.max()) + 1 if self.target_index.size else 0,
            "notes": self.notes,
            "config": self.config.to_dict(),
            "timings_s": self.timings,
            "versions": self.versions,
        }

    def write(self, output_dir: str | None = None) -> dict[str, str]:
        """Writes metrics.json, scores.npz, the plots and report.md; returns their paths."""
        from jaxmia import report

        return report.write(self, output_dir or self.config.output_dir)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("jaxmia", "jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    out["devices"] = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    out["device_count"] = str(jax.device_count())
    return out


Log = Callable[[str], None]


def _silent(_: str) -> None:
    pass


def model_factory(
    config: AuditConfig, ds: datasets.Dataset, dropout: float = 0.0
) -> models.ModelFactory:
    """The target/shadow architecture named by the config (with ``dropout``)."""
    kind = config.model
    if kind == "auto":
        kind = "cnn" if len(ds.input_shape) == 3 else "mlp"
    if kind == "cnn":
        if len(ds.input_shape) != 3:
            raise ConfigError(f"model 'cnn' needs images (h, w, channels), got {ds.input_shape}")
        return models.cnn(ds.input_shape, ds.num_classes, dropout=dropout)
    in_features = int(np.prod(ds.input_shape))
    return models.mlp(
        config.hidden, ds.num_classes, in_features, activation=config.activation, dropout=dropout
    )


def describe_model(factory: models.ModelFactory) -> str:
    """``MLP(hidden=(128,), ...)``-style summary of a factory (its keyword arguments)."""
    func = getattr(factory, "func", factory)
    kwargs = getattr(factory, "keywords", {}) or {}
    args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{getattr(func, '__name__', type(func).__name__)}({args})"


@dataclasses.dataclass(frozen=True)
class PoolSignals:
    """The shadow pool's signals, computed once and read by every attack.

    Attributes:
      signals: ``{signal: (k, n, ...)}`` on all ``n`` records, through the access level.
      phi: ``(k, n, q)`` LiRA's logit-scaled confidence for ``q`` queries, or ``None``.
      logits: ``(k, n, c)`` the models' logits where the access level gives probability
        vectors and RMIA runs (for its softmax temperature), else ``None``.
      keep: ``(k, n)`` bool shadow membership.
      pool: ``(n,)`` bool records whose shadow outputs may be used.
    """

    signals: dict[str, np.ndarray]
    phi: np.ndarray | None
    logits: np.ndarray | None
    keep: np.ndarray
    pool: np.ndarray

    def without(self, t: int) -> PoolSignals:
        """The pool less model ``t`` (leave-one-out)."""
        rows = np.arange(self.keep.shape[0]) != t
        return PoolSignals(
            signals={k: v[rows] for k, v in self.signals.items()},
            phi=None if self.phi is None else self.phi[rows],
            logits=None if self.logits is None else self.logits[rows],
            keep=self.keep[rows],
            pool=self.pool,
        )


def attack_target(
    attacks: tuple[str, ...],
    shadows: PoolSignals,
    target_sig: Mapping[str, np.ndarray],
    target_phi: np.ndarray | None,
    target_all: Mapping[str, np.ndarray],
    target_logits_all: np.ndarray | None,
    candidates: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    config: AuditConfig,
    notes: list[str],
    log: Log = _silent,
    queries: tuple[Callable, Callable, np.ndarray] | None = None,
) -> dict[str, tuple[np.ndarray, float | None]]:
    """Runs every attack against one target.

    Args:
      attacks: attack names.
      shadows: the shadow pool's signals (without the target).
      target_sig: ``{signal: (m, ...)}`` the target's signals on the candidates.
      target_phi: ``(m, q)`` the target's logit-scaled confidence per query, for LiRA.
      target_all: ``{signal: (n, ...)}`` the target's signals on every record (RMIA's
        population needs them).
      target_logits_all: ``(n, c)`` the target's logits where the access level gives
        probability vectors, for RMIA's temperature; else ``None``.
      candidates: ``(m,)`` candidate indices.
      labels: ``(n,)`` labels.
      num_classes: ``c``.
      config: the audit options.
      notes: receives the settings chosen on the way.
      log: progress lines.
      queries: ``(target_query, shadow_query, x)`` for the label-only attack: functions
        returning the target's ``(n, c)`` and the shadows' ``(k, n, c)`` outputs on any
        inputs, and the records ``x``.

    Returns:
      ``{attack: (scores (m,), threshold or None)}``; a ``None`` threshold means the
      accuracy is reported at the best threshold on the target (optimistic).
    """
    out: dict[str, tuple[np.ndarray, float | None]] = {}
    k = shadows.keep.shape[0]
    keep_c = shadows.keep[:, candidates]
    variance = config.lira_variance
    if variance == "auto":
        variance = "per_example" if k >= 64 else "global"
    population = np.flatnonzero(shadows.pool)
    if config.population_size is not None and config.population_size < population.size:
        rng = np.random.default_rng([config.seed, 23])
        population = np.sort(rng.choice(population, config.population_size, replace=False))
    for name in attacks:
        log(f"attack: {name}")
        if name == "shokri":
            out[name] = shokri.attack(
                shadows.signals,
                shadows.keep,
                shadows.pool,
                labels,
                target_sig,
                labels[candidates],
                num_classes,
                config=shokri.ShokriConfig(
                    features=needs(name, config.effective_access), per_class=config.per_class
                ),
                seed=config.seed,
            )
        elif name == "label_only":
            target_query, shadow_query, x = queries
            out[name] = label_only.attack(
                target_query,
                shadow_query,
                x,
                labels,
                shadows.keep,
                shadows.pool,
                candidates,
                n_queries=config.label_queries,
                seed=config.seed,
            )
        elif name in THRESHOLD_ATTACKS:
            sig = THRESHOLD_ATTACKS[name]
            out[name] = threshold.attack(
                sig, shadows.signals[sig], shadows.keep, shadows.pool, target_sig[sig]
            )
        elif name.startswith("lira"):
            online = name == "lira_online"
            s = lira.scores(
                target_phi, shadows.phi[:, candidates], keep_c, online=online, variance=variance
            )
            out[name] = (s, None)
            _note(notes, f"LiRA variance: {variance} ({k} shadow models)")
        else:
            z = population
            if name == "rmia_offline":  # Pr_OUT(z) needs a reference model without z
                z = population[(~shadows.keep[:, population]).any(axis=0)]
                if z.size < population.size:
                    _note(
                        notes,
                        f"RMIA offline: {population.size - z.size} of {population.size} "
                        "population records are members of every shadow model and are "
                        "left out of the population",
                    )
            lp_x, lp_z, ref_x, ref_z, a = _rmia_inputs(
                name, shadows, target_all, target_logits_all, candidates, z, labels, config, notes
            )
            s = rmia.scores(
                lp_x,
                lp_z,
                ref_x,
                keep_c if ref_x is not None else None,
                ref_z,
                shadows.keep[:, z] if ref_z is not None else None,
                online=name == "rmia_online",
                a=a,
                gamma=config.rmia_gamma,
            )
            out[name] = (s, None)
    return out


RMIA_TEMPERATURES = (1.0, 1.5, 2.0, 3.0)
"""Softmax temperatures tried when RMIA is calibrated on the reference models."""


def _rmia_inputs(
    name, shadows, target_all, target_logits_all, candidates, population, labels, config, notes
):
    """RMIA's log-probabilities of the target and the references on candidates ``x``
    and population ``z`` at the temperature calibrated on the references, and ``a``."""
    if name == "attack_p":
        lp = -target_all["loss"]
        return lp[candidates], lp[population], None, None, 0.0
    online = name == "rmia_online"
    if shadows.logits is not None:

        def log_p_at(temperature, logits=shadows.logits):
            return -np.asarray(signals.loss(logits / temperature, labels))

        temperatures = RMIA_TEMPERATURES
    else:  # only the loss is visible: the temperature stays 1

        def log_p_at(temperature):
            return -shadows.signals["loss"]

        temperatures = (1.0,)
    pool = shadows.pool
    fixed_a = {} if config.rmia_a is None else {"a_grid": (config.rmia_a,)}
    temperature, a = rmia.calibrate(
        lambda t: log_p_at(t)[:, pool],
        shadows.keep[:, pool],
        online=online,
        temperatures=temperatures,
        **fixed_a,
    )
    notes_key = "online" if online else "offline"
    _note(
        notes,
        f"RMIA {notes_key}: softmax temperature {temperature}"
        + ("" if online else f", a = {a}")
        + " (calibrated on the reference models)",
    )
    ref = log_p_at(temperature)
    if target_logits_all is not None:
        lp = -np.asarray(signals.loss(target_logits_all / temperature, labels))
    else:
        lp = -target_all["loss"]
    return lp[candidates], lp[population], ref[:, candidates], ref[:, population], a


def _predict_known(trained: shadow.Pool, x_known: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``shadow.predict`` over ``trained`` that answers the records ``x_known`` from the
    outputs computed (or read from a pool directory) as the models trained; other inputs
    (LiRA's augmented views, label-only queries) query the models."""
    predict = functools.partial(shadow.predict, trained)
    return lambda x: trained.logits if x is x_known else predict(x)


def _split_spec(config: AuditConfig, split: splits.AuditSplit, loo: bool) -> dict[str, Any]:
    """What decides the shadow keep matrix, for the pool's spec (a clear refusal message
    when it differs; the keep rows themselves are compared too)."""
    if loo or split.scheme == "balanced":
        return {"scheme": "balanced"}
    return {
        "scheme": split.scheme,
        "target_size": config.target_size,
        "shadow_size": config.shadow_size,
    }


def _drop_non_finite(
    pool: shadow.Pool, split: splits.AuditSplit, targets: int
) -> tuple[shadow.Pool, splits.AuditSplit, list[int]]:
    """Removes the shadow models whose outputs on the records are not all finite (a
    diverged model would turn every per-example statistic over the pool into NaN)."""
    finite = np.isfinite(pool.logits.reshape(pool.k, -1)).all(axis=1)
    dropped = np.flatnonzero(~finite).tolist()
    if not dropped:
        return pool, split, []
    if finite.sum() < 2:
        raise ConfigError(
            f"{len(dropped)} of {pool.k} shadow models diverged in training (outputs not "
            "finite); try a lower --lr"
        )
    if targets and min(dropped) < targets:
        raise ConfigError(
            f"leave-one-out target model {min(dropped)} diverged in training (outputs not "
            "finite); try a lower --lr"
        )
    split = dataclasses.replace(split, shadow_keep=split.shadow_keep[finite])
    return pool.select(np.flatnonzero(finite)), split, dropped


def _privacy_spent(config: AuditConfig, trained: shadow.Pool) -> dict[str, Any]:
    """Epochs run (early stopping) and, under DP-SGD, epsilon at ``config.dp_delta``."""
    out: dict[str, Any] = {}
    epochs_run = int(np.sum(~np.isnan(trained.losses).all(axis=1)))
    if trained.best_epoch is not None:
        out["best_epoch"] = [int(e) for e in trained.best_epoch[:8]]
    if config.dp_noise is None:
        return out
    members = int(trained.keep.sum(axis=1).max())
    steps = epochs_run * math.ceil(members / config.batch_size)
    sample_rate = config.batch_size / members
    out.update(
        epsilon=defences.dp_epsilon(config.dp_noise, sample_rate, steps, config.dp_delta),
        delta=config.dp_delta,
        noise_multiplier=config.dp_noise,
        l2_clip=config.dp_clip,
        steps=steps,
        sample_rate=sample_rate,
        accounting="RDP, Poisson subsampling assumed (dp-accounting)",
    )
    return out


def _note(notes: list[str], text: str) -> None:
    if text not in notes:
        notes.append(text)


def _queries(config: AuditConfig, ds: datasets.Dataset) -> np.ndarray:
    """``(q, n, ...)`` the inputs LiRA queries: the records, or their augmentations."""
    if not config.augment:
        return ds.x[None]
    if len(ds.input_shape) != 3:
        raise ConfigError(f"augment needs image data (h, w, channels), got {ds.input_shape}")
    return lira.augment_images(ds.x)


def _phi(
    predict: Callable[[np.ndarray], np.ndarray],
    views: np.ndarray,
    y: np.ndarray,
    access: str,
    first: np.ndarray,
) -> np.ndarray:
    """``(..., n, q)`` logit-scaled confidence of the outputs on every view; ``first``
    holds the outputs on ``views[0]`` (the records themselves), already computed."""
    outputs = [first, *(predict(v) for v in views[1:])]
    per_view = [
        threat_models.observe(o, y, access, ["logit_scaled_confidence"])["logit_scaled_confidence"]
        for o in outputs
    ]
    return np.stack(per_view, axis=-1)


def query_model(
    fn: Callable[[np.ndarray], Any], x: np.ndarray, *, outputs: str = "auto", batch_size: int = 1024
) -> np.ndarray:
    """Queries a user's model in batches and returns ``(n, c)`` logits.

    Args:
      fn: maps a batch ``(b, *input_shape)`` to logits or probabilities ``(b, c)``.
      x: ``(n, *input_shape)`` inputs.
      outputs: ``logits``, ``probs`` or ``auto`` (probabilities if every row is
        non-negative and sums to 1).
      batch_size: examples per call.

    Returns:
      ``(n, c)`` float32 logits (log-probabilities when the model returns probabilities).
    """
    if outputs not in ("auto", "logits", "probs"):
        raise ConfigError(f"outputs must be auto, logits or probs, got {outputs!r}")
    parts = [np.asarray(fn(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    out = np.concatenate(parts).astype(np.float32)
    if out.ndim != 2 or out.shape[0] != len(x):
        raise ConfigError(f"the model must return (n, classes) outputs, got shape {out.shape}")
    if not np.isfinite(out).all():
        raise ConfigError("the model returned NaN or infinite outputs")
    looks_like_probs = bool((out >= 0).all() and np.allclose(out.sum(axis=1), 1.0, atol=1e-3))
    if outputs == "probs" or (outputs == "auto" and looks_like_probs):
        return np.asarray(signals.log_probs_from_probs(out))
    return out


def run(
    config: AuditConfig = AuditConfig(),
    *,
    log: Log = _silent,
    progress: shadow.ProgressFn | None = None,
    dataset: datasets.Dataset | None = None,
    split: splits.AuditSplit | None = None,
    target_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    factory: models.ModelFactory | None = None,
    pool_dir: str | os.PathLike | None = None,
) -> AuditReport:
    """Runs a full audit.

    Args:
      config: the options.
      log: receives one line per phase (the CLI prints them).
      progress: receives training progress (:data:`jaxmia.shadow.ProgressFn`), of the
        target and then of the shadow pool.
      dataset: use this data instead of loading ``config.dataset``.
      split: use this split instead of drawing one (e.g. a control where the target
        trains on records disjoint from every candidate).
      target_fn: audit this model (``x -> (b, c)`` logits) instead of training a target;
        see :func:`audit_model`.
      factory: the shadow (and target) architecture instead of the config's.
      pool_dir: keep the shadow pool in this directory (:mod:`jaxmia.pools`), saved
        after every chunk of models with their signals: an interrupted audit resumes
        where it stopped, a rerun with the same pool settings reuses the finished pool
        without touching its models, and a larger ``num_shadows`` grows it (balanced
        scheme: by a new balanced block of models; see
        :func:`jaxmia.splits.grown_balanced_keep`). A pool of other settings is refused.

    Returns:
      An :class:`AuditReport`.
    """
    return _run(config, log, progress, dataset, split, target_fn, factory, pool_dir, False)


def train_pool(
    config: AuditConfig,
    pool_dir: str | os.PathLike,
    *,
    log: Log = _silent,
    progress: shadow.ProgressFn | None = None,
    dataset: datasets.Dataset | None = None,
) -> shadow.Pool:
    """Trains (or resumes, or grows) the shadow pool an audit with ``config`` would train,
    and keeps it in ``pool_dir`` (``jaxmia pool train``); no target, no attacks.

    Returns:
      The :class:`jaxmia.shadow.Pool`.
    """
    return _run(config, log, progress, dataset, None, None, None, pool_dir, True)


def _pool_blocks(pool_dir: str | os.PathLike, k: int) -> list[int]:
    """Block ends of the balanced pool of ``k`` models kept in ``pool_dir``: ``[k]`` for a
    new pool; the saved blocks up to ``k``; or those plus a new block ending at ``k``."""
    path = pathlib.Path(pool_dir)
    if not (path / pools.MANIFEST).is_file():
        return [k]
    manifest = pools.read_manifest(path)
    if manifest["k"] == 0:
        return [k]
    blocks = [int(b) for b in manifest.get("meta", {}).get("blocks", [manifest["k"]])]
    if k in blocks:
        return [b for b in blocks if b <= k]
    if k > blocks[-1]:
        return [*blocks, k]
    raise ConfigError(
        f"the shadow pool at {path} holds balanced blocks of models ending at "
        f"{', '.join(map(str, blocks))}; ask for one of those numbers of shadows, or more "
        f"than {blocks[-1]} to grow it"
    )


def _run(
    config: AuditConfig,
    log: Log,
    progress: shadow.ProgressFn | None,
    dataset: datasets.Dataset | None,
    split: splits.AuditSplit | None,
    target_fn: Callable[[np.ndarray], np.ndarray] | None,
    factory: models.ModelFactory | None,
    pool_dir: str | os.PathLike | None,
    shadows_only: bool,
) -> Any:
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(timings.get(name, 0.0) + now - clock, 3)
        clock = now

    attacks = select_attacks(config)
    ds = datasets.load(config.dataset) if dataset is None else dataset
    loo = config.targets > 0
    blocks = None
    if split is None and pool_dir is not None and (loo or config.scheme == "balanced"):
        blocks = _pool_blocks(pool_dir, config.num_shadows)
    if split is None and loo:
        keep = splits.grown_balanced_keep(blocks or [config.num_shadows], ds.n, seed=config.seed)
        split = splits.AuditSplit(
            target_keep=keep[0],
            candidates=np.arange(ds.n),
            membership=keep[0],
            shadow_keep=keep,
            shadow_pool=np.ones(ds.n, bool),
            scheme="balanced",
        )
    elif split is None:
        split = splits.make_split(
            ds.n,
            config.num_shadows,
            scheme=config.scheme,
            target_size=config.target_size,
            shadow_size=config.shadow_size,
            seed=config.seed,
        )
        if blocks is not None and len(blocks) > 1:
            keep = splits.grown_balanced_keep(blocks, ds.n, seed=config.seed)
            split = dataclasses.replace(split, shadow_keep=keep)
    views = _queries(config, ds)
    log(f"data: {datasets.describe(ds)}; {split.scheme} split, {split.candidates.size} candidates")
    phase("load")

    access = config.effective_access
    defence = config.defence
    user_factory = factory
    factory = model_factory(config, ds) if user_factory is None else user_factory
    root = jax.random.key(config.seed)
    rng = np.random.default_rng([config.seed, 31])
    heldout = np.flatnonzero(~split.target_keep)
    validation = None
    if defence.early_stopping:
        val = np.sort(rng.choice(heldout, size=max(1, heldout.size // 10), replace=False))
        validation = (ds.x[val], ds.y[val])

    def train_kwargs(defended: bool) -> dict[str, Any]:
        kw: dict[str, Any] = dict(
            epochs=config.epochs,
            batch_size=config.batch_size,
            optimizer=defences.optimizer(
                config.learning_rate, defence.weight_decay if defended else 0.0
            ),
        )
        if defended:
            kw.update(dp=defence.dp, validation=validation, patience=defence.early_stopping)
        return kw

    def defended_factory(defended: bool) -> models.ModelFactory:
        if defended and defence.dropout and user_factory is None:
            return model_factory(config, ds, dropout=defence.dropout)
        return factory

    iface = config.interface
    iface_key = jax.random.fold_in(root, 3)

    def seen(predict: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        """Outputs as the target's query interface returns them (as log-probabilities)."""
        if iface.kind == "none":
            return predict
        return lambda x: np.asarray(
            signals.log_probs_from_probs(iface.apply(jax.nn.softmax(predict(x)), iface_key))
        )

    privacy: dict[str, Any] = {"defence": defence.describe(), "interface": iface.describe()}
    target_predict = None
    if target_fn is not None:
        target_predict = lambda x: query_model(target_fn, x, outputs="logits")[None]
        correct = target_predict(ds.x[split.candidates])[0].argmax(-1) == ds.y[split.candidates]
        target_acc = (correct[split.membership].mean(), correct[~split.membership].mean())
    elif not loo and not shadows_only:
        log(f"training the target for {config.epochs} epochs")
        target = shadow.train(
            defended_factory(True),
            ds.x,
            ds.y,
            split.target_keep,
            keys=shadow.model_keys(jax.random.fold_in(root, 1), 1),
            progress=progress,
            **train_kwargs(True),
        )
        target_predict = _predict_known(target, ds.x)
        target_acc = (target.train_accuracy[0], target.test_accuracy[0])
        privacy.update(_privacy_spent(config, target))
        phase("train_target")
    if target_predict is not None:
        log(f"target: train accuracy {target_acc[0]:.3f}, test accuracy {target_acc[1]:.3f}")
        if "epsilon" in privacy:
            log(f"target: DP-SGD epsilon {privacy['epsilon']:.3g} at delta {config.dp_delta:g}")
        target_predict = seen(target_predict)
    k = split.shadow_keep.shape[0]
    log(
        f"training {k} shadow models for {config.epochs} epochs"
        + (f" (leave-one-out over the first {config.targets})" if loo else "")
    )
    defend_shadows = config.defend_shadows or loo  # in leave-one-out the pool is the target
    pool = shadow.train(
        defended_factory(defend_shadows),
        ds.x,
        ds.y,
        split.shadow_keep,
        keys=shadow.model_keys(jax.random.fold_in(root, 2), k),
        chunk_size="auto" if config.chunk_size is None else config.chunk_size,
        heldout=split.shadow_pool,
        progress=progress,
        checkpoint=pool_dir,
        checkpoint_spec={
            "model": describe_model(defended_factory(defend_shadows)),
            "learning_rate": config.learning_rate,
            "defence": defence.describe()
            if defend_shadows and defence.describe() != "none"
            else None,
            "seed": config.seed,
            "split": _split_spec(config, split, loo),
        },
        checkpoint_meta={"dataset": ds.name, **({"blocks": blocks} if blocks else {})},
        **train_kwargs(defend_shadows),
    )
    log(
        f"shadows: train accuracy {np.nanmean(pool.train_accuracy):.3f}, "
        f"test accuracy {np.nanmean(pool.test_accuracy):.3f}"
        + (f"; pool kept in {pool_dir}" if pool_dir is not None else "")
    )
    phase("train_shadows")
    if shadows_only:
        return pool
    pool, split, dropped = _drop_non_finite(pool, split, config.targets)
    k = pool.k
    pool_rows = np.setdiff1d(np.arange(k + len(dropped)), dropped)  # models in the directory
    notes: list[str] = []
    if dropped:
        shown = ", ".join(map(str, dropped[:10])) + (", ..." if len(dropped) > 10 else "")
        _note(
            notes,
            f"dropped {len(dropped)} of {k + len(dropped)} shadow models whose outputs are "
            f"not finite (models {shown}): they diverged in training; a lower learning rate "
            "may help",
        )
        log("warning: " + notes[-1])
    if loo:
        privacy.update(_privacy_spent(config, pool))

    needed = {s for a in attacks for s in needs(a, access)}
    if any(a.startswith(("rmia", "attack_p")) for a in attacks):
        needed.add("loss")
    plot_signals = {"confidence", "loss"} & threat_models.PROVIDES[access]
    use_lira = any(a.startswith("lira") for a in attacks)
    pool_predict = seen(_predict_known(pool, ds.x))
    shadow_logits = pool_predict(ds.x)
    answered: dict[str, np.ndarray] = {}

    def pool_labels(x: np.ndarray) -> np.ndarray:
        """``(k, p)`` the pool's predicted labels on ``x`` (the label-only queries): once
        per input, and kept in the pool directory when the outputs are unperturbed."""
        key = pools.answers_key(x, pool_rows)
        if key not in answered:
            if iface.kind != "none":
                answered[key] = np.asarray(pool_predict(x)).argmax(-1)
            elif pool_dir is None:
                answered[key] = shadow.predict(pool, x, labels=True)
            else:
                compute = functools.partial(shadow.predict, pool, labels=True)
                answered[key] = pools.cached_labels(pool_dir, x, pool_rows, compute, key=key)
        return answered[key]

    keep_logits = access == "probs" and any(a.startswith("rmia") for a in attacks)
    shadows = PoolSignals(
        signals=threat_models.observe(
            shadow_logits,
            ds.y,
            access,
            needed | (plot_signals if loo else set()),
            top_k=config.top_k,
        ),
        phi=_phi(pool_predict, views, ds.y, access, shadow_logits) if use_lira else None,
        logits=shadow_logits if keep_logits else None,
        keep=split.shadow_keep,
        pool=split.shadow_pool,
    )
    if target_predict is not None:
        target_logits = target_predict(ds.x)[0]
        if not np.isfinite(target_logits).all():
            raise ConfigError(
                "the target model's outputs are not finite: it diverged in training "
                "(try a lower --lr)"
            )
        target_all = threat_models.observe(
            target_logits,
            ds.y,
            access,
            needed | plot_signals,
            top_k=config.top_k,
        )
        target_phi_all = (
            _phi(target_predict, views, ds.y, access, target_logits[None])[0] if use_lira else None
        )
        target_logits = target_logits if keep_logits else None
    phase("signals")

    cand = split.candidates
    if config.attacks is None and config.scheme != "balanced":
        notes.append("online LiRA/RMIA skipped: the disjoint scheme has no IN models")
    targets = range(config.targets) if loo else [None]
    rows: dict[str, list] = {"scores": [], "membership": [], "candidates": [], "target": []}
    per_attack: dict[str, list[np.ndarray]] = {a: [] for a in attacks}
    taus: dict[str, list[float | None]] = {a: [] for a in attacks}
    per_target: dict[str, list[metrics.AttackMetrics]] = {a: [] for a in attacks}
    accuracy = []
    for t in targets:
        if t is None:
            others, membership = shadows, split.membership
            t_all = target_all
            t_phi = target_phi_all
            t_logits = target_logits
            accuracy.append(target_acc)
            queries = (lambda x: target_predict(x)[0], pool_labels, ds.x)
        else:
            log(f"target {t + 1}/{config.targets} (leave-one-out)")
            others, membership = shadows.without(t), split.shadow_keep[t, cand]
            t_all = {name: v[t] for name, v in shadows.signals.items()}
            t_phi = None if shadows.phi is None else shadows.phi[t]
            t_logits = None if shadows.logits is None else shadows.logits[t]
            accuracy.append((pool.train_accuracy[t], pool.test_accuracy[t]))
            queries = (
                lambda x, t=t: pool_labels(x)[t],
                lambda x, t=t: np.delete(pool_labels(x), t, axis=0),
                ds.x,
            )
        results = attack_target(
            attacks,
            others,
            {name: v[cand] for name, v in t_all.items()},
            None if t_phi is None else t_phi[cand],
            t_all,
            t_logits,
            cand,
            ds.y,
            ds.num_classes,
            config,
            notes,
            log=log if t in (None, 0) else _silent,
            queries=queries,
        )
        for name, (s, tau) in results.items():
            per_attack[name].append(s)
            taus[name].append(tau)
            if loo:
                per_target[name].append(
                    metrics.evaluate(membership, s, threshold=tau, fprs=config.fprs, n_boot=0)
                )
        rows["membership"].append(membership)
        rows["candidates"].append(cand)
        rows["target"].append(np.full(cand.size, 0 if t is None else t))
        if t in (None, 0):
            plot = {name: t_all[name][cand] for name in plot_signals}
    phase("attacks")

    membership = np.concatenate(rows["membership"])
    scores = {a: np.concatenate(v) for a, v in per_attack.items()}
    results = {}
    for name, s in scores.items():
        known = [t for t in taus[name] if t is not None]
        tau = float(np.median(known)) if known else None
        if tau is None:
            _note(notes, f"{name}: accuracy at the best threshold on the target (optimistic)")
        results[name] = metrics.evaluate(
            membership, s, threshold=tau, fprs=config.fprs, n_boot=config.n_boot, seed=config.seed
        )
    phase("metrics")
    acc = np.asarray(accuracy, dtype=np.float64)
    return AuditReport(
        config=config,
        dataset=datasets.describe(ds),
        model=describe_model(factory),
        metrics=results,
        scores=scores,
        candidates=np.concatenate(rows["candidates"]),
        membership=membership,
        target_index=np.concatenate(rows["target"]),
        per_target=per_target if loo else {},
        target_accuracy={"train": float(acc[:, 0].mean()), "test": float(acc[:, 1].mean())},
        shadow_accuracy={
            "train_mean": float(np.nanmean(pool.train_accuracy)),
            "train_std": float(np.nanstd(pool.train_accuracy)),
            "test_mean": float(np.nanmean(pool.test_accuracy)),
            "test_std": float(np.nanstd(pool.test_accuracy)),
        },
        target_signals=plot,
        privacy=privacy,
        notes=notes,
        timings=timings,
        versions=versions(),
    )


def _as_function(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A jitted ``x -> outputs`` for an NNX module (in evaluation mode), or ``model``."""
    if isinstance(model, nnx.Module):
        graphdef, state = nnx.split(model)
        clone = nnx.merge(graphdef, state)
        clone.eval()
        graphdef, state = nnx.split(clone)
        apply = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
        return lambda x: apply(state, jnp.asarray(x, jnp.float32))
    if not callable(model):
        raise ConfigError(f"model must be a Flax NNX module or a function, got {type(model)}")
    return model


def _xy(name: str, data: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a pair (x, y)") from None
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ConfigError(f"{name}: x has {x.shape[0]} rows and y {y.shape[0]}; need equal, > 0")
    if not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"{name}: labels must be integers, got {y.dtype}")
    return x, y


def audit_model(
    model: Any,
    members: tuple[np.ndarray, np.ndarray],
    nonmembers: tuple[np.ndarray, np.ndarray],
    population: tuple[np.ndarray, np.ndarray],
    *,
    factory: models.ModelFactory | None = None,
    config: AuditConfig = AuditConfig(num_shadows=16, dataset="user data"),
    outputs: str = "auto",
    log: Log = _silent,
    progress: shadow.ProgressFn | None = None,
    pool_dir: str | os.PathLike | None = None,
) -> AuditReport:
    """Audits a model the user trained: how well does each attack tell its members apart?

    jaxmia trains the shadow/reference pool with the named architecture on the
    population data and the candidate records (the auditor knows the candidates; with
    ``config.scheme="disjoint"`` the shadows train on the population only and the online
    attacks are skipped), then runs every attack the access level allows against
    ``model``. Inputs are used as given (no normalisation), so pass them preprocessed the
    way the model expects.

    Args:
      model: a Flax NNX module (evaluated in eval mode) or any function mapping a batch
        ``(b, *input_shape)`` to logits or probabilities ``(b, c)``.
      members: ``(x, y)`` records the model was trained on.
      nonmembers: ``(x, y)`` records it was not trained on.
      population: ``(x, y)`` further records from the same distribution.
      factory: the shadow architecture, ``factory(rngs=...) -> nnx.Module``; default:
        an MLP with ``config.hidden``.
      config: audit options (``dataset`` is only a label here).
      outputs: what ``model`` returns: ``logits``, ``probs`` or ``auto``.
      log, progress: as in :func:`run`.
      pool_dir: keep the shadow pool there (as in :func:`run`): auditing another model
        on the same records (a retrained or defended version) then reuses it.

    Returns:
      An :class:`AuditReport` over the member and non-member candidates.
    """
    fn = _as_function(model)
    parts = [_xy(n, d) for n, d in (("members", members), ("nonmembers", nonmembers))]
    parts.append(_xy("population", population))
    shapes = {p[0].shape[1:] for p in parts}
    if len(shapes) != 1:
        raise ConfigError(f"members, nonmembers and population differ in input shape: {shapes}")
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts]).astype(np.int32)
    if not np.isfinite(x).all():
        raise ConfigError("inputs contain NaN or infinite values")
    n_m, n_nm = len(parts[0][0]), len(parts[1][0])
    probe = query_model(fn, x[:2], outputs=outputs)
    num_classes = max(int(y.max()) + 1, probe.shape[1])
    ds = datasets.Dataset(x=x, y=y, num_classes=num_classes, name=config.dataset)
    n, m = len(x), n_m + n_nm
    membership = np.arange(m) < n_m
    target_keep = np.zeros(n, bool)
    target_keep[:n_m] = True
    if config.scheme == "balanced":
        shadow_keep = splits.balanced_keep(config.num_shadows, n, seed=config.seed)
        pool = np.ones(n, bool)
    else:
        shadow_keep = np.zeros((config.num_shadows, n), bool)
        shadow_keep[:, m:] = splits.balanced_keep(config.num_shadows, n - m, seed=config.seed)
        pool = np.arange(n) >= m
    split = splits.AuditSplit(
        target_keep=target_keep,
        candidates=np.arange(m),
        membership=membership,
        shadow_keep=shadow_keep,
        shadow_pool=pool,
        scheme=config.scheme,
    )
    return run(
        config,
        log=log,
        progress=progress,
        dataset=ds,
        split=split,
        target_fn=lambda b: query_model(fn, b, outputs=outputs),
        factory=factory,
        pool_dir=pool_dir,
    )
