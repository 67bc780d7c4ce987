"""The audit's training phases: the target (:func:`train_target`) and the shadow pool
(:func:`train_shadows`), then the pool less its diverged models (:func:`keep_finite`).

Both train with :func:`jaxmia.engine.train` from the keys of the :class:`Setup`: the
target from ``fold_in(root, 1)``, the ``k`` shadows from ``fold_in(root, 2)``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxmia import splits
from jaxmia._src import engine
from jaxmia._src.audit import shadow_config, target_cache
from jaxmia._src.audit.config import AuditConfig, ConfigError, pool_spec
from jaxmia._src.audit.log import Log, note, silent
from jaxmia._src.audit.setup import Setup, defended_factory, describe_model, describe_training
from jaxmia._src.audit.target import query_model
from jaxmia._src.defences import training as defences
from jaxmia._src.engine.store import pools

__all__ = [
    "ACCOUNTING",
    "Shadows",
    "TargetRun",
    "check_logits",
    "checkpoint_spec",
    "keep_finite",
    "keep_target",
    "predict_known",
    "privacy_spent",
    "train_shadows",
    "train_target",
]


@dataclasses.dataclass(frozen=True)
class TargetRun:
    """The audited target (a model jaxmia trained, or the user's function).

    Attributes:
      predict: ``x (b, ...) -> (1, b, c)`` the target's logits (log-probabilities for a
        model returning probabilities), before the output interface.
      accuracy: ``(train, test)`` accuracy on its members and non-members.
      privacy: epochs run and, under DP-SGD, epsilon (:func:`privacy_spent`); empty for
        the user's model.
      trained: whether jaxmia trained it (else it is the user's ``target_fn``).
      model: the model jaxmia trained, as a pool of one (``None`` for the user's).
      cache_key: its name in the pool directory (:mod:`jaxmia._src.audit.target_cache`) when
        the audit keeps one, else ``None``.
      cached: whether it was read from there instead of trained.
    """

    predict: Callable[[np.ndarray], np.ndarray]
    accuracy: tuple[float, float]
    privacy: dict[str, Any]
    trained: bool
    model: engine.Pool | None = None
    cache_key: str | None = None
    cached: bool = False


@dataclasses.dataclass(frozen=True)
class Shadows:
    """The shadow pool the attacks read, less the models that diverged.

    Attributes:
      pool: the :class:`jaxmia.engine.Pool` of ``k`` finite models (``logits`` ``(k, n, c)``).
      split: the split with ``shadow_keep`` ``(k, n)`` of those models.
      dropped: indices of the models left out (outputs not finite).
      rows: ``(k,)`` the kept models' rows in the pool directory.
    """

    pool: engine.Pool
    split: splits.AuditSplit
    dropped: tuple[int, ...]
    rows: np.ndarray


ACCOUNTING = {
    "poisson": "RDP accountant (dp-accounting) of the Poisson-sampled steps that ran",
    "shuffle": "RDP accountant (dp-accounting), which assumes Poisson sampling: these models "
    "trained on shuffled batches, which it does not cover (Chua et al. 2024), so this "
    "epsilon is no guarantee for them",
}
"""What ``privacy["accounting"]`` says of the epsilon, by ``dp_sampling``."""


def privacy_spent(config: AuditConfig, trained: engine.Pool) -> dict[str, Any]:
    """Epochs run (early stopping) and, under DP-SGD, epsilon at ``config.dp_delta`` of the
    steps each model took and its sample rate ``min(1, batch_size / members)`` (the largest
    epsilon over the models), the sampling, the members dropped from overflowing Poisson
    batches, and what the accountant covers (:data:`ACCOUNTING`)."""
    out: dict[str, Any] = {}
    epochs_run = int(np.sum(~np.isnan(trained.losses).all(axis=1)))
    if trained.best_epoch is not None:
        out["best_epoch"] = [int(e) for e in trained.best_epoch[:8]]
    if config.dp_noise is None:
        return out
    members = np.maximum(trained.keep.sum(axis=1), 1)
    if trained.dp_counts is not None:  # the steps the engine counted
        steps = np.asarray(trained.dp_counts["steps"])
    else:  # a pool the user gave, trained by the shuffled epoch
        steps = epochs_run * -(-members // config.batch_size)
    rates = np.minimum(1.0, config.batch_size / members)
    epsilons = {
        (float(q), int(t)): defences.dp_epsilon(config.dp_noise, q, t, config.dp_delta)
        for q, t in sorted(set(zip(rates.tolist(), steps.tolist(), strict=True)))
    }
    (sample_rate, steps_run), epsilon = max(epsilons.items(), key=lambda item: item[1])
    out.update(
        epsilon=epsilon,
        delta=config.dp_delta,
        noise_multiplier=config.dp_noise,
        l2_clip=config.dp_clip,
        steps=steps_run,
        sample_rate=sample_rate,
        sampling=config.dp_sampling,
        overflow=0 if trained.dp_overflow is None else int(np.sum(trained.dp_overflow)),
        accounting=ACCOUNTING[config.dp_sampling],
    )
    return out


def predict_known(
    trained: engine.Pool,
    x_known: np.ndarray,
    inputs: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> (k, b, c)``: :func:`jaxmia.engine.predict` over ``trained`` that answers the
    records ``x_known`` from the outputs computed (or read from a pool directory) as the
    models trained; other inputs (LiRA's augmented views, label-only queries) query the
    models, through ``inputs`` where given (the shadows' view of an input,
    :func:`jaxmia._src.audit.shadow_config.shadow_inputs`)."""
    predict = functools.partial(engine.predict, trained)
    if inputs is not None:
        predict = lambda x: engine.predict(trained, inputs(x))
    return lambda x: trained.logits if x is x_known else predict(x)


def train_target(
    setup: Setup,
    target_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    progress: engine.ProgressFn | None = None,
    log: Log = silent,
) -> TargetRun | None:
    """Trains the target on ``split.target_keep`` (with the config's defences), or wraps
    the user's ``target_fn`` (``x (b, ...) -> (b, c)`` logits); ``None`` in leave-one-out,
    where the shadow models are the targets."""
    config, ds, split = setup.config, setup.ds, setup.split
    if target_fn is not None:
        predict = lambda x: query_model(target_fn, x, outputs="logits")[None]
        out = predict(ds.x[split.candidates])[0]
        check_logits(out, (split.candidates.size, ds.num_classes), "the target model's")
        correct = out.argmax(-1) == ds.y[split.candidates]
        accuracy = (correct[split.membership].mean(), correct[~split.membership].mean())
        run = TargetRun(predict=predict, accuracy=accuracy, privacy={}, trained=False)
    elif setup.loo:
        return None
    else:
        run = _trained_target(setup, progress, log)
    log(f"target: train accuracy {run.accuracy[0]:.3f}, test accuracy {run.accuracy[1]:.3f}")
    if "epsilon" in run.privacy:
        shuffled = " (shuffled batches: not covered by the accountant)"
        log(
            f"target: DP-SGD epsilon {run.privacy['epsilon']:.3g} at delta {config.dp_delta:g}"
            + (shuffled if config.dp_sampling == "shuffle" else "")
        )
    return run


def _trained_target(setup: Setup, progress: engine.ProgressFn | None, log: Log) -> TargetRun:
    """The target jaxmia trains, read from the pool directory where an earlier run with
    the same settings kept it (:mod:`jaxmia._src.audit.target_cache`), else trained."""
    config, ds, split = setup.config, setup.ds, setup.split
    factory, spec = defended_factory(setup, True), setup.target_spec
    keys = engine.model_keys(jax.random.fold_in(setup.root, 1), 1)
    key, target = None, None
    if setup.pool_dir is not None:
        extra = {
            "training": describe_training(setup),
            "seed": config.seed,
            "defence": config.defence.describe(),
        }
        key = target_cache.target_key(factory, ds.x, ds.y, split.target_keep, keys, spec, extra)
        target = target_cache.load(setup.pool_dir, key, factory, spec.tx)
    cached = target is not None
    if cached:
        file = target_cache.path_of(setup.pool_dir, key)
        check_logits(target.logits, (1, ds.n, ds.num_classes), f"the target kept in {file}:")
        log(f"target read from {file}")
    else:
        log(f"training the target for {config.epochs} epochs")
        target = engine.train(
            factory, ds.x, ds.y, split.target_keep, spec=spec, keys=keys, progress=progress
        )
    accuracy = (target.train_accuracy[0], target.test_accuracy[0])
    privacy = privacy_spent(config, target)
    return TargetRun(
        predict_known(target, ds.x),
        accuracy,
        privacy,
        trained=True,
        model=target,
        cache_key=key,
        cached=cached,
    )


def check_logits(logits: np.ndarray, expected: tuple[int, ...], what: str) -> None:
    """A one-line error where ``logits`` are not of the ``expected`` shape,
    ``(models, records, classes)`` or ``(records, classes)``; ``what`` names whose they are.
    """
    shape = tuple(np.shape(logits))
    if shape != expected:
        axes = ("models", "records", "classes")[-len(expected) :]
        named = ", ".join(
            f"{v} {a[:-1] if v == 1 else a}" for v, a in zip(expected, axes, strict=True)
        )
        raise ConfigError(f"{what} logits are {shape}, expected {expected} ({named})")


def keep_target(setup: Setup, target: TargetRun | None) -> None:
    """Saves the target jaxmia trained into the pool directory, for the next run with the
    same settings (:mod:`jaxmia._src.audit.target_cache`); call it once the shadow pool is
    there, so that a directory the pool is refused in is left alone. Nothing for the
    user's model, a target read from there, or without a pool directory."""
    if target is None or target.model is None or target.cache_key is None or target.cached:
        return
    target_cache.save(setup.pool_dir, target.cache_key, target.model)


def checkpoint_spec(setup: Setup, defended: bool) -> dict[str, Any]:
    """JSON-able pool settings the engine cannot see, compared when a kept pool is reused
    (:func:`jaxmia._src.audit.config.pool_spec`, the one place that says what changes a pool)."""
    model = describe_model(defended_factory(setup, defended, shadows=True))
    return pool_spec(setup.config, model=model, scheme=setup.split.scheme)


def train_shadows(
    setup: Setup, *, progress: engine.ProgressFn | None = None, log: Log = silent
) -> engine.Pool:
    """Trains (or reads from ``setup.pool_dir``, or takes the user's) the ``k`` shadow
    models on the rows of ``split.shadow_keep``; returns the pool with its ``(k, n, c)``
    logits on the records."""
    config, ds, split = setup.config, setup.ds, setup.split
    given = setup.shadow_training.pool
    if given is not None:
        log(f"shadows: the user's pool of {given.k} models")
        if given.logits is None or given.logits.shape[:2] != (given.k, ds.n):
            given = dataclasses.replace(given, logits=engine.predict(given, ds.x))
        check_logits(given.logits, (given.k, ds.n, ds.num_classes), "the user's pool's")
        return given
    k = split.shadow_keep.shape[0]
    inputs = shadow_config.shadow_inputs(config)  # the features shift, else None
    log(_shadows_line(setup, k))
    defended = setup.shadows_defended  # in leave-one-out the pool is the target
    pool = engine.train(
        defended_factory(setup, defended, shadows=True),
        ds.x if inputs is None else inputs(ds.x),
        ds.y,
        split.shadow_keep,
        keys=engine.model_keys(jax.random.fold_in(setup.root, 2), k),
        chunk_size="auto" if config.chunk_size is None else config.chunk_size,
        heldout=split.shadow_pool,
        progress=progress,
        checkpoint=setup.pool_dir,
        checkpoint_spec=checkpoint_spec(setup, defended),
        checkpoint_meta={"dataset": ds.name, **({"blocks": setup.blocks} if setup.blocks else {})},
        spec=setup.shadow_spec,
    )
    what = "the shadow models'" if setup.pool_dir is None else f"the pool in {setup.pool_dir}:"
    check_logits(pool.logits, (k, ds.n, ds.num_classes), what)
    log(
        f"shadows: train accuracy {np.nanmean(pool.train_accuracy):.3f}, "
        f"test accuracy {np.nanmean(pool.test_accuracy):.3f}"
        + (f"; pool kept in {setup.pool_dir}" if setup.pool_dir is not None else "")
    )
    return pool


def _shadows_line(setup: Setup, k: int) -> str:
    """The log line before the shadow pool's phase: how many of the ``k`` models are
    read from the pool directory, and how many trained."""
    config, pool_dir = setup.config, setup.pool_dir
    loo = f" (leave-one-out over the first {config.targets})" if setup.loo else ""
    kept = _kept_models(pool_dir, k)
    if kept == k:
        return f"reading the {k} shadow models from {pool_dir}{loo}"
    read = f"reading {kept} of the {k} shadow models from {pool_dir}; " if kept else ""
    epochs = shadow_config.shadow_epochs(config)
    return f"{read}training {k - kept} shadow models for {epochs} epochs{loo}"


def _kept_models(pool_dir: str | os.PathLike | None, k: int) -> int:
    """How many of ``k`` models the pool directory holds by its manifest (0 without
    one, or with one the engine will refuse as it opens the pool)."""
    if pool_dir is None or not (pathlib.Path(pool_dir) / pools.MANIFEST).is_file():
        return 0
    try:
        return min(int(pools.read_manifest(pool_dir)["k"]), k)
    except (pools.PoolError, KeyError, TypeError, ValueError):
        return 0


def keep_finite(setup: Setup, pool: engine.Pool, notes: list[str], log: Log = silent) -> Shadows:
    """Removes the shadow models whose outputs on the records are not all finite (a
    diverged model would turn every per-example statistic over the pool into NaN), and
    says so in ``notes``.

    Raises:
      ConfigError: fewer than two models are left, or a leave-one-out target diverged.
    """
    split, targets = setup.split, setup.config.targets
    finite = np.isfinite(pool.logits.reshape(pool.k, -1)).all(axis=1)
    dropped = np.flatnonzero(~finite).tolist()
    rows = np.flatnonzero(finite)
    if not dropped:
        return Shadows(pool, split, (), rows)
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
    shown = ", ".join(map(str, dropped[:10])) + (", ..." if len(dropped) > 10 else "")
    note(
        notes,
        f"dropped {len(dropped)} of {pool.k} shadow models whose outputs are not finite "
        f"(models {shown}): they diverged in training; a lower learning rate may help",
    )
    log("warning: " + notes[-1])
    split = dataclasses.replace(split, shadow_keep=split.shadow_keep[finite])
    return Shadows(pool.select(rows), split, tuple(dropped), rows)
