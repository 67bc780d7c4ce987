"""The membership-inference audit pipeline: one call from a dataset to a report.

:func:`run` trains the target and the shadow pool with the shadow engine, computes the
signals the chosen access level provides, runs every attack that it allows, and scores
them with :mod:`jaxmia.metrics`. ``jaxmia audit`` is a thin command line over it.

The audit is a short list of phases, each a function with typed inputs and outputs
(frozen dataclasses) that a test can call alone:

1. :func:`jaxmia._src.audit.setup.prepare` -> ``Setup`` (data, split, architecture, keys);
2. :func:`jaxmia._src.audit.training.train_target` -> ``TargetRun`` (or the user's model);
3. :func:`jaxmia._src.audit.training.train_shadows` -> ``engine.Pool``, then
   :func:`~jaxmia._src.audit.training.keep_finite` -> ``Shadows``;
4. :func:`jaxmia._src.audit.extraction.extract` -> ``Extracted`` (the signals);
5. :func:`jaxmia._src.audit.scoring.attack_all` -> ``Scored``, then
   :func:`~jaxmia._src.audit.scoring.evaluate` (the metrics);
6. :func:`assemble` -> :class:`jaxmia.audit.AuditReport`.

Example::

    import jaxmia
    report = jaxmia.audit.run(jaxmia.audit.AuditConfig(num_shadows=16, epochs=20))
    print(report.table())
    report.write("audit-out")
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

from jaxmia import models, splits
from jaxmia._src import datasets, engine, metrics
from jaxmia._src.audit.config import AuditConfig
from jaxmia._src.audit.extraction import extract
from jaxmia._src.audit.log import Log, note, silent
from jaxmia._src.audit.report import AuditReport, versions
from jaxmia._src.audit.scoring import (
    Scored,
    attack_all,
    evaluate,
    evaluate_per_target,
    optimistic,
)
from jaxmia._src.audit.setup import (
    Setup,
    ShadowTraining,
    describe_model,
    describe_training,
    prepare,
)
from jaxmia._src.audit.training import (
    Shadows,
    TargetRun,
    keep_finite,
    keep_target,
    privacy_spent,
    train_shadows,
    train_target,
)
from jaxmia._src.audit.vulnerability import assess

__all__ = ["assemble", "run", "train_pool"]


def run(
    config: AuditConfig = AuditConfig(),
    *,
    log: Log = silent,
    progress: engine.ProgressFn | None = None,
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
      progress: receives training progress (:data:`jaxmia.engine.ProgressFn`), of the
        target and then of the shadow pool.
      dataset: use this data instead of loading ``config.dataset``.
      split: use this split instead of drawing one (e.g. a control where the target
        trains on records disjoint from every candidate).
      target_fn: audit this model (``x -> (b, c)`` logits) instead of training a target;
        see :func:`audit_model`.
      factory: the shadow (and target) architecture instead of the config's.
      pool_dir: keep the shadow pool in this directory
        (:mod:`jaxmia._src.engine.store.pools`), saved
        after every chunk of models with their signals: an interrupted audit resumes
        where it stopped, a rerun with the same pool settings reuses the finished pool
        without touching its models, and a larger ``num_shadows`` grows it (balanced
        scheme: by a new balanced block of models; see
        :func:`jaxmia.splits.grown_balanced_keep`). A pool of other settings is refused.

    Returns:
      An :class:`AuditReport`.
    """
    return run_phases(
        config,
        log=log,
        progress=progress,
        dataset=dataset,
        split=split,
        target_fn=target_fn,
        factory=factory,
        pool_dir=pool_dir,
    )


def train_pool(
    config: AuditConfig,
    pool_dir: str | os.PathLike,
    *,
    log: Log = silent,
    progress: engine.ProgressFn | None = None,
    dataset: datasets.Dataset | None = None,
) -> engine.Pool:
    """Trains (or resumes, or grows) the shadow pool an audit with ``config`` would train,
    and keeps it in ``pool_dir`` (``jaxmia pool train``); no target, no attacks.

    Returns:
      The :class:`jaxmia.engine.Pool`.
    """
    setup = prepare(config, dataset=dataset, pool_dir=pool_dir, log=log)
    return train_shadows(setup, progress=progress, log=log)


class _Clock:
    """Seconds per phase: :meth:`lap` charges the time since the last lap to ``name``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(self.timings.get(name, 0.0) + now - self._last, 3)
        self._last = now


def run_phases(
    config: AuditConfig,
    *,
    log: Log = silent,
    progress: engine.ProgressFn | None = None,
    dataset: datasets.Dataset | None = None,
    split: splits.AuditSplit | None = None,
    target_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    factory: models.ModelFactory | None = None,
    pool_dir: str | os.PathLike | None = None,
    shadow_training: ShadowTraining | None = None,
) -> AuditReport:
    """:func:`run` as its phases, with the user's settings for the shadows
    (:func:`jaxmia.audit.audit_model`)."""
    clock = _Clock()
    setup = prepare(
        config,
        dataset=dataset,
        split=split,
        factory=factory,
        pool_dir=pool_dir,
        shadow_training=shadow_training or ShadowTraining(),
        log=log,
    )
    clock.lap("load")
    target = train_target(setup, target_fn, progress=progress, log=log)
    if target is not None:
        clock.lap("train_target" if target.trained else "query_target")
    pool = train_shadows(setup, progress=progress, log=log)
    keep_target(setup, target)  # beside the pool, now that it is there
    clock.lap("train_shadows")
    notes: list[str] = []
    shadows = keep_finite(setup, pool, notes, log)
    extracted = extract(setup, target, shadows)
    clock.lap("signals")
    scored = attack_all(setup, extracted, target, shadows, notes, log)
    clock.lap("attacks")
    results = evaluate(setup, scored, notes)
    per_target = evaluate_per_target(setup, scored)
    clock.lap("metrics")
    vulnerability = assess(setup, shadows, scored, results)
    clock.lap("vulnerability")
    report = assemble(setup, target, shadows, scored, results, per_target, notes, clock.timings)
    report.vulnerability = vulnerability
    # `jaxmia audit` with the config's flags reruns it only if nothing came from Python
    report.reproducible = dataset is None and split is None and factory is None
    report.attack_seconds = scored.seconds
    return report


def _describe_target(setup: Setup, target: TargetRun | None) -> str:
    """How the target came about, for the report."""
    if target is None:
        return f"each of the first {setup.config.targets} shadow models in turn (leave-one-out)"
    if not target.trained:
        return "the user's own model (not trained by jaxmia)"
    return "trained by jaxmia: " + describe_training(setup)


def _describe_shadows(setup: Setup, shadows: Shadows) -> str:
    """How the shadow models came about, for the report."""
    k = shadows.pool.k
    if setup.shadow_training.pool is not None:
        return (
            f"the user's pool of {k} models (trained by the user; its keep matrix gives "
            "their membership)"
        )
    return f"{k} shadow models: " + describe_training(setup, shadows=True)


def assemble(
    setup: Setup,
    target: TargetRun | None,
    shadows: Shadows,
    scored: Scored,
    results: dict[str, metrics.AttackMetrics],
    per_target: dict[str, list[metrics.AttackMetrics]],
    notes: list[str],
    timings: dict[str, float],
) -> AuditReport:
    """The :class:`AuditReport` of the phases' results: scores ``(t * m,)`` pooled over
    the ``t`` targets, their metrics (``results``; ``per_target`` in leave-one-out), the
    accuracies, privacy, and what was audited (data, target, shadows)."""
    config, ds, pool = setup.config, setup.ds, shadows.pool
    privacy = {"defence": config.defence.describe(), "interface": config.interface.describe()}
    if target is not None and not target.trained:  # the user's: its defences unknown
        privacy["defence"] = "not known to jaxmia (the user's own model)"
        if config.defend_shadows:
            privacy["shadow_defence"] = config.defence.describe()
    if target is not None:
        privacy.update(target.privacy)
    elif setup.loo:
        privacy.update(privacy_spent(config, pool))
    if privacy.get("overflow"):  # probability < 1e-9 per step (engine.sampling)
        note(
            notes,
            f"DP-SGD: {privacy['overflow']} sampled members were dropped from "
            "overflowing Poisson batches",
        )
    acc = scored.accuracy
    return AuditReport(
        config=config,
        dataset=datasets.describe(ds),
        model=describe_model(setup.factory),
        metrics=results,
        scores={a: np.concatenate(v) for a, v in scored.scores.items()},
        candidates=np.concatenate(scored.candidates),
        membership=np.concatenate(scored.membership),
        target_index=scored.target_index,
        per_target=per_target,
        target_accuracy={"train": float(acc[:, 0].mean()), "test": float(acc[:, 1].mean())},
        shadow_accuracy={
            "train_mean": float(np.nanmean(pool.train_accuracy)),
            "train_std": float(np.nanstd(pool.train_accuracy)),
            "test_mean": float(np.nanmean(pool.test_accuracy)),
            "test_std": float(np.nanstd(pool.test_accuracy)),
        },
        target_signals=scored.plot,
        privacy=privacy,
        notes=notes,
        timings=timings,
        versions=versions(),
        data={
            "name": ds.name,
            "records": ds.n,
            "input_shape": list(ds.input_shape),
            "classes": ds.num_classes,
        },
        target=_describe_target(setup, target),
        shadows=_describe_shadows(setup, shadows),
        optimistic=optimistic(scored),
    )
