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
import importlib.metadata
import platform
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from jaxmia import datasets, metrics, models, shadow, shokri, splits, threat_models, threshold

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

ATTACKS: tuple[str, ...] = ("shokri", *THRESHOLD_ATTACKS)


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
      chunk_size: train at most this many shadow models at a time (memory bound).
      access: what the attacker sees: ``probs``, ``topk``, ``label`` or ``loss``.
      top_k: probabilities returned by the ``topk`` interface.
      attacks: attacks to run (default: all that the access level allows).
      per_class: one Shokri attack model per class.
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
        for name in ("target_size", "shadow_size", "chunk_size"):
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
        if self.attacks is not None:
            unknown = [a for a in self.attacks if a not in ATTACKS]
            if unknown or not self.attacks:
                raise ConfigError(
                    f"unknown attack(s) {', '.join(unknown) or '(none given)'}; "
                    f"choose from {', '.join(ATTACKS)}"
                )

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
    return (THRESHOLD_ATTACKS[attack],)


def select_attacks(config: AuditConfig) -> tuple[str, ...]:
    """The attacks to run: those asked for (refused if the access level cannot serve
    them) or, by default, every attack the access level allows."""
    if config.attacks is None:
        return tuple(
            a for a in ATTACKS if threat_models.allows(config.access, needs(a, config.access))
        )
    for a in config.attacks:
        threat_models.require(config.access, needs(a, config.access), f"attack {a!r}")
    return tuple(dict.fromkeys(config.attacks))


@dataclasses.dataclass
class AuditReport:
    """Everything an audit measured.

    Attributes:
      config: the :class:`AuditConfig`.
      dataset: one-line description of the data.
      model: description of the target/shadow architecture.
      metrics: ``{attack: AttackMetrics}``.
      scores: ``{attack: (m,) scores}`` on the candidates, higher = member.
      candidates: ``(m,)`` indices of the candidates in the dataset.
      membership: ``(m,)`` bool true membership of the candidates in the target.
      target_accuracy: ``{"train", "test"}`` accuracy of the target.
      shadow_accuracy: mean and std of the shadow models' train and test accuracy.
      target_signals: ``{signal: (m,)}`` the target's confidence/loss for plots, where the
        access level provides them.
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
    target_accuracy: dict[str, float]
    shadow_accuracy: dict[str, float]
    target_signals: dict[str, np.ndarray]
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
            "target_accuracy": self.target_accuracy,
            "shadow_accuracy": self.shadow_accuracy,
            "n_candidates": int(self.candidates.size),
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


def model_factory(config: AuditConfig, ds: datasets.Dataset) -> models.ModelFactory:
    """The target/shadow architecture named by the config."""
    kind = config.model
    if kind == "auto":
        kind = "cnn" if len(ds.input_shape) == 3 else "mlp"
    if kind == "cnn":
        if len(ds.input_shape) != 3:
            raise ConfigError(f"model 'cnn' needs images (h, w, channels), got {ds.input_shape}")
        return models.cnn(ds.input_shape, ds.num_classes)
    in_features = int(np.prod(ds.input_shape))
    return models.mlp(config.hidden, ds.num_classes, in_features, activation=config.activation)


def describe_model(factory: models.ModelFactory) -> str:
    """``MLP(hidden=(128,), ...)``-style summary of a factory (its keyword arguments)."""
    func = getattr(factory, "func", factory)
    kwargs = getattr(factory, "keywords", {}) or {}
    args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{getattr(func, '__name__', type(func).__name__)}({args})"


def run(
    config: AuditConfig = AuditConfig(),
    *,
    log: Log = _silent,
    progress: shadow.ProgressFn | None = None,
    dataset: datasets.Dataset | None = None,
    split: splits.AuditSplit | None = None,
) -> AuditReport:
    """Runs a full audit.

    Args:
      config: the options.
      log: receives one line per phase (the CLI prints them).
      progress: receives shadow-training progress ``(done, total, loss)``.
      dataset: use this data instead of loading ``config.dataset``.
      split: use this split instead of drawing one (e.g. a control where the target
        trains on records disjoint from every candidate).

    Returns:
      An :class:`AuditReport`.
    """
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    attacks = select_attacks(config)
    ds = datasets.load(config.dataset) if dataset is None else dataset
    if split is None:
        split = splits.make_split(
            ds.n,
            config.num_shadows,
            scheme=config.scheme,
            target_size=config.target_size,
            shadow_size=config.shadow_size,
            seed=config.seed,
        )
    log(f"data: {datasets.describe(ds)}; {split.scheme} split, {split.candidates.size} candidates")
    phase("load")

    factory = model_factory(config, ds)
    train_kwargs = dict(
        epochs=config.epochs,
        batch_size=config.batch_size,
        optimizer=shadow.adam(config.learning_rate),
    )
    root = jax.random.key(config.seed)
    target = shadow.train(
        factory,
        ds.x,
        ds.y,
        split.target_keep,
        keys=shadow.model_keys(jax.random.fold_in(root, 1), 1),
        **train_kwargs,
    )
    log(
        f"target: train accuracy {target.train_accuracy[0]:.3f}, "
        f"test accuracy {target.test_accuracy[0]:.3f}"
    )
    phase("train_target")
    log(f"training {split.shadow_keep.shape[0]} shadow models for {config.epochs} epochs")
    pool = shadow.train(
        factory,
        ds.x,
        ds.y,
        split.shadow_keep,
        keys=shadow.model_keys(jax.random.fold_in(root, 2), split.shadow_keep.shape[0]),
        chunk_size=config.chunk_size,
        heldout=split.shadow_pool,
        progress=progress,
        **train_kwargs,
    )
    log(
        f"shadows: train accuracy {np.nanmean(pool.train_accuracy):.3f}, "
        f"test accuracy {np.nanmean(pool.test_accuracy):.3f}"
    )
    phase("train_shadows")

    cand = split.candidates
    needed = {s for a in attacks for s in needs(a, config.access)}
    plot_signals = {"confidence", "loss"} & threat_models.PROVIDES[config.access]
    target_logits = shadow.predict(target, ds.x[cand])[0]
    shadow_logits = shadow.predict(pool, ds.x)
    target_sig = threat_models.observe(
        target_logits, ds.y[cand], config.access, needed | plot_signals, top_k=config.top_k
    )
    shadow_sig = threat_models.observe(
        shadow_logits, ds.y, config.access, needed, top_k=config.top_k
    )
    phase("signals")

    membership = split.membership
    results, scores = {}, {}
    for name in attacks:
        log(f"attack: {name}")
        t0 = time.perf_counter()
        if name == "shokri":
            s, tau = shokri.attack(
                shadow_sig,
                split.shadow_keep,
                split.shadow_pool,
                ds.y,
                target_sig,
                ds.y[cand],
                ds.num_classes,
                config=shokri.ShokriConfig(
                    features=needs(name, config.access), per_class=config.per_class
                ),
                seed=config.seed,
            )
        else:
            sig = THRESHOLD_ATTACKS[name]
            s, tau = threshold.attack(
                sig, shadow_sig[sig], split.shadow_keep, split.shadow_pool, target_sig[sig]
            )
        scores[name] = s
        results[name] = metrics.evaluate(
            membership, s, threshold=tau, fprs=config.fprs, n_boot=config.n_boot, seed=config.seed
        )
        timings[f"attack_{name}"] = round(time.perf_counter() - t0, 3)
    phase("attacks_total")

    return AuditReport(
        config=config,
        dataset=datasets.describe(ds),
        model=describe_model(factory),
        metrics=results,
        scores=scores,
        candidates=cand,
        membership=membership,
        target_accuracy={
            "train": float(target.train_accuracy[0]),
            "test": float(target.test_accuracy[0]),
        },
        shadow_accuracy={
            "train_mean": float(np.nanmean(pool.train_accuracy)),
            "train_std": float(np.nanstd(pool.train_accuracy)),
            "test_mean": float(np.nanmean(pool.test_accuracy)),
            "test_std": float(np.nanstd(pool.test_accuracy)),
        },
        target_signals={k: target_sig[k] for k in plot_signals},
        timings=timings,
        versions=versions(),
    )
