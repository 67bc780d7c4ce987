"""Auditing a model the user trained (:func:`audit_model`).

The user gives the model (an NNX module or any function to logits or probabilities) and
three sets of records: its members, its non-members and further population records.
jaxmia trains the shadow pool on them (or takes the user's pool), runs every attack the
access level allows, and reports what it audited in the user's terms: the records and
their counts, the user's own model (not trained by jaxmia) and how its outputs were read,
and how the shadows were trained; no command line, since none reproduces it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import optax

from jaxmia import models, splits
from jaxmia._src import datasets, engine
from jaxmia._src.audit.config import AuditConfig, ConfigError
from jaxmia._src.audit.log import Log, silent
from jaxmia._src.audit.pipeline import run_phases
from jaxmia._src.audit.report import AuditReport
from jaxmia._src.audit.setup import ShadowTraining
from jaxmia._src.audit.target import as_function, output_kind, pair_arrays, query_model

__all__ = ["audit_model"]


def audit_model(
    model: Any,
    members: tuple[np.ndarray, np.ndarray],
    nonmembers: tuple[np.ndarray, np.ndarray],
    population: tuple[np.ndarray, np.ndarray],
    *,
    factory: models.ModelFactory | None = None,
    config: AuditConfig = AuditConfig(num_shadows=16, dataset="user data"),
    outputs: str = "auto",
    optimizer: optax.GradientTransformation | None = None,
    batch_size: int | None = None,
    loss_fn: Callable[..., Any] | None = None,
    pool: engine.Pool | None = None,
    log: Log = silent,
    progress: engine.ProgressFn | None = None,
    pool_dir: str | os.PathLike | None = None,
) -> AuditReport:
    """Audits a model the user trained: how well does each attack tell its members apart?

    jaxmia trains the shadow/reference pool with the named architecture on the
    population data and the candidate records (the auditor knows the candidates; with
    ``config.scheme="disjoint"`` the shadows train on the population only and the online
    attacks are skipped), then runs every attack the access level allows against
    ``model``. Inputs are used as given (no normalisation), so pass them preprocessed the
    way the model expects. The records are numbered members, non-members, population, in
    that order (``n`` in all; the ``m`` members and non-members are the candidates).

    Args:
      model: a Flax NNX module (evaluated in eval mode) or any function mapping a batch
        ``(b, *input_shape)`` to logits or probabilities ``(b, c)``.
      members: ``(x, y)`` records the model was trained on.
      nonmembers: ``(x, y)`` records it was not trained on.
      population: ``(x, y)`` further records from the same distribution.
      factory: the shadow architecture, ``factory(rngs=...) -> nnx.Module``; default:
        an MLP with ``config.hidden``.
      config: audit options for the shadows and attacks (``dataset`` is only a label
        here; left at its default it reads "user data").
      outputs: what ``model`` returns: ``logits``, ``probs`` or ``auto`` (decided once,
        on the model's outputs on the first records, and named in the report).
      optimizer: the shadows' optax transformation (e.g. the one that trained ``model``)
        instead of Adam at ``config.learning_rate``.
      batch_size: the shadows' batch size instead of ``config.batch_size``.
      loss_fn: the shadows' per-example loss instead of cross-entropy (passed to
        :func:`jaxmia.engine.train`).
      pool: a :class:`jaxmia.engine.Pool` the user trained on these ``n`` records (in the
        order above): its ``(k, n)`` keep matrix defines the shadows' membership and
        nothing is trained (so not with ``optimizer``, ``batch_size``, ``loss_fn`` or
        ``pool_dir``).
      log, progress: as in :func:`jaxmia.audit.run`.
      pool_dir: keep the shadow pool there (as in :func:`jaxmia.audit.run`): auditing
        another model on the same records (a retrained or defended version) then
        reuses it.

    Returns:
      An :class:`AuditReport` over the ``m`` member and non-member candidates.

    Raises:
      ConfigError: inconsistent records, outputs or pool (one line).
    """
    fn = as_function(model)
    x, y, counts = _records(members, nonmembers, population)
    probe = query_model(fn, x[:1024], outputs="logits")
    reading = output_kind(probe, outputs)
    if pool is not None:
        _check_pool(pool, probe.shape[1], x, optimizer, batch_size, loss_fn, pool_dir)
    num_classes = _check_width(probe.shape[1], y)
    if factory is not None:
        _check_factory(factory, x.shape[1:], num_classes)
    _check_defence(config, pool)
    config = _user_config(config, batch_size, pool)
    ds = datasets.Dataset(x=x, y=y, num_classes=num_classes, name=config.dataset)
    split = _user_split(config, counts, pool)
    report = run_phases(
        config,
        log=log,
        progress=progress,
        dataset=ds,
        split=split,
        target_fn=lambda b: query_model(fn, b, outputs=reading),
        factory=factory,
        pool_dir=pool_dir,
        shadow_training=ShadowTraining(optimizer=optimizer, loss_fn=loss_fn, pool=pool),
    )
    applied = _applied(factory, optimizer, pool)
    return _describe(dataclasses.replace(report, applied=applied), ds, counts, reading)


def _records(*pairs: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``x (n, ...)``, ``y (n,)`` int32 of the members, non-members and population
    records, in that order, and their counts; one-line errors for inconsistent pairs."""
    names = ("members", "nonmembers", "population")
    parts = [pair_arrays(name, pair) for name, pair in zip(names, pairs, strict=True)]
    shapes = {p[0].shape[1:] for p in parts}
    if len(shapes) != 1:
        raise ConfigError(f"members, nonmembers and population differ in input shape: {shapes}")
    x = np.concatenate([p[0] for p in parts])
    if not np.isfinite(x).all():
        raise ConfigError("inputs contain NaN or infinite values")
    y = np.concatenate([p[1] for p in parts]).astype(np.int32)
    return x, y, [len(p[0]) for p in parts]


def _check_width(width: int, y: np.ndarray) -> int:
    """The number of classes: the model's output width ``c``, one output per class of the
    labels ``y`` (``0 .. c - 1``); a one-line error for a model with more or fewer."""
    classes = int(y.max()) + 1
    if width != classes:
        raise ConfigError(
            f"the model outputs {width} values per record, but the labels (0 .. "
            f"{classes - 1}) name {classes} classes; it must output one per class"
        )
    return width


def _check_factory(factory: models.ModelFactory, input_shape: tuple, classes: int) -> None:
    """A one-line error for a shadow architecture that does not take the records' inputs
    or outputs another number of values than the model's ``classes``."""
    try:
        width = engine.checks.output_width(factory, input_shape, np.zeros(0, np.int32))
    except ValueError as e:
        raise ConfigError(f"factory: {e}") from None
    if width != classes:
        raise ConfigError(
            f"the shadow architecture (factory=) outputs {width} values per record, "
            f"the model {classes}"
        )


def _check_pool(pool: engine.Pool, classes: int, x: np.ndarray, *training: Any) -> None:
    """A one-line error for a user's pool that does not fit: settings that would train
    one (``optimizer``, ``batch_size``, ``loss_fn``, ``pool_dir``), or other classes."""
    if any(t is not None for t in training):
        raise ConfigError(
            "pool= is a trained pool: optimizer=, batch_size=, loss_fn= and pool_dir= are "
            "for training one; pass either"
        )
    pool_classes = engine.predict(pool, x[:1]).shape[-1]
    if pool_classes != classes:
        raise ConfigError(f"the pool's models output {pool_classes} classes, the model {classes}")


def _check_defence(config: AuditConfig, pool: engine.Pool | None) -> None:
    """A one-line error for defence settings that would apply to nothing: the target is
    the user's own model, so they can only train the shadows (``defend_shadows``), and
    not those of a user's pool."""
    defence = config.defence.describe()
    if defence == "none":
        return
    if pool is not None:
        raise ConfigError(f"defence settings ({defence}) cannot apply to the user's own pool")
    if not config.defend_shadows:
        raise ConfigError(
            f"defence settings ({defence}) train a target jaxmia trains; the model audited "
            "here is the user's own: set defend_shadows=True to train the shadows with "
            "them, or leave them out"
        )


def _user_config(
    config: AuditConfig, batch_size: int | None, pool: engine.Pool | None
) -> AuditConfig:
    """The config as the audit runs it: labelled "user data" unless the user named the
    data, the shadows' batch size, and the user's pool's size."""
    changes: dict[str, Any] = {}
    if config.dataset == AuditConfig().dataset:
        changes["dataset"] = "user data"
    if batch_size is not None:
        changes["batch_size"] = batch_size
    if pool is not None:
        changes["num_shadows"] = pool.k
    return dataclasses.replace(config, **changes) if changes else config


def _user_split(
    config: AuditConfig, counts: list[int], pool: engine.Pool | None
) -> splits.AuditSplit:
    """Target membership: the members; candidates: members and non-members; shadow
    membership: balanced over all records (or over the population, ``disjoint``), or the
    user's pool's keep matrix."""
    n, m = sum(counts), counts[0] + counts[1]
    target_keep = np.arange(n) < counts[0]
    shadow_pool = np.ones(n, bool) if config.scheme == "balanced" else np.arange(n) >= m
    if pool is not None:
        keep = np.asarray(pool.keep)
        if keep.ndim != 2 or keep.shape[1] != n:
            raise ConfigError(
                f"the pool's keep matrix is {keep.shape}; it must be (k, {n}) for the {n} "
                "records (members, non-members, population, in that order)"
            )
        shadow_keep = keep.astype(bool)
    elif config.scheme == "balanced":
        shadow_keep = splits.balanced_keep(config.num_shadows, n, seed=config.seed)
    else:
        shadow_keep = np.zeros((config.num_shadows, n), bool)
        shadow_keep[:, m:] = splits.balanced_keep(config.num_shadows, n - m, seed=config.seed)
    return splits.AuditSplit(
        target_keep=target_keep,
        candidates=np.arange(m),
        membership=target_keep[:m],
        shadow_keep=shadow_keep,
        shadow_pool=shadow_pool,
        scheme=config.scheme,
    )


USER_POOL = ("model", "hidden", "activation", "epochs", "learning_rate", "chunk_size")
"""The settings of training the shadows, which a user's pool replaces (its batch size
cannot be given beside it)."""


def _applied(
    factory: models.ModelFactory | None,
    optimizer: optax.GradientTransformation | None,
    pool: engine.Pool | None,
) -> dict[str, str]:
    """``{setting: what applied instead}`` for the settings that the user's own factory,
    optimizer or pool replaced (:attr:`AuditReport.applied`)."""
    if pool is not None:
        return dict.fromkeys(USER_POOL, "user pool")
    applied = {}
    if factory is not None:
        applied |= dict.fromkeys(("model", "hidden", "activation"), "user model factory")
    if optimizer is not None:
        applied["learning_rate"] = "user optimizer"
    return applied


def _describe(
    report: AuditReport, ds: datasets.Dataset, counts: list[int], reading: str
) -> AuditReport:
    """The report in the user's terms: their records and counts, their model and how its
    outputs were read, and no command line (none reproduces an audit from Python)."""
    n_m, n_nm, n_pop = counts
    outputs = "logits" if reading == "logits" else "probabilities"
    return dataclasses.replace(
        report,
        dataset=(
            f"{ds.name}: {ds.n} records: {n_m} members, {n_nm} non-members, {n_pop} "
            f"population; input shape {ds.input_shape}, {ds.num_classes} classes"
        ),
        data={
            **report.data,
            "members": n_m,
            "non_members": n_nm,
            "population": n_pop,
        },
        target=f"{report.target}; outputs read as {outputs}",
        reproducible=False,
    )
