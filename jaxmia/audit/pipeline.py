"""The membership-inference audit pipeline: one call from a dataset to a report.

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
import math
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxmia import datasets, engine, metrics, models, signals, splits, threat_models
from jaxmia.attacks import lira
from jaxmia.audit.attacking import PoolSignals, attack_target
from jaxmia.audit.config import AuditConfig, ConfigError, Log, _note, _silent, needs, select_attacks
from jaxmia.audit.report import AuditReport, versions
from jaxmia.audit.target import query_model
from jaxmia.defences import training as defences
from jaxmia.engine import pools


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


def _predict_known(trained: engine.Pool, x_known: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``engine.predict`` over ``trained`` that answers the records ``x_known`` from the
    outputs computed (or read from a pool directory) as the models trained; other inputs
    (LiRA's augmented views, label-only queries) query the models."""
    predict = functools.partial(engine.predict, trained)
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
    pool: engine.Pool, split: splits.AuditSplit, targets: int
) -> tuple[engine.Pool, splits.AuditSplit, list[int]]:
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


def _privacy_spent(config: AuditConfig, trained: engine.Pool) -> dict[str, Any]:
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


def run(
    config: AuditConfig = AuditConfig(),
    *,
    log: Log = _silent,
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
      progress: receives training progress (:data:`jaxmia.engine.engine.ProgressFn`), of the
        target and then of the shadow pool.
      dataset: use this data instead of loading ``config.dataset``.
      split: use this split instead of drawing one (e.g. a control where the target
        trains on records disjoint from every candidate).
      target_fn: audit this model (``x -> (b, c)`` logits) instead of training a target;
        see :func:`audit_model`.
      factory: the shadow (and target) architecture instead of the config's.
      pool_dir: keep the shadow pool in this directory (:mod:`jaxmia.engine.pools`), saved
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
    progress: engine.ProgressFn | None = None,
    dataset: datasets.Dataset | None = None,
) -> engine.Pool:
    """Trains (or resumes, or grows) the shadow pool an audit with ``config`` would train,
    and keeps it in ``pool_dir`` (``jaxmia pool train``); no target, no attacks.

    Returns:
      The :class:`jaxmia.engine.engine.Pool`.
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
    progress: engine.ProgressFn | None,
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
        target = engine.train(
            defended_factory(True),
            ds.x,
            ds.y,
            split.target_keep,
            keys=engine.model_keys(jax.random.fold_in(root, 1), 1),
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
    pool = engine.train(
        defended_factory(defend_shadows),
        ds.x,
        ds.y,
        split.shadow_keep,
        keys=engine.model_keys(jax.random.fold_in(root, 2), k),
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
                answered[key] = engine.predict(pool, x, labels=True)
            else:
                compute = functools.partial(engine.predict, pool, labels=True)
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
