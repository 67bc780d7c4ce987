"""Training a pool: ``k`` models of one architecture at once.

All ``k`` models live in one parameter pytree (an ``nnx.State``) and one optimizer state
with a leading axis ``k``. One training epoch of one model is a pure function
(:func:`jaxmia._src.engine.kernel.epoch_one`, a ``lax.scan`` over its steps); :func:`train`
``jax.vmap``s it over models and ``jax.jit``s the whole epoch, so a pool of 64 shadow
models costs a few large batched matrix products per step instead of 64 small ones.

Chunks: ``chunk_size`` bounds how many models train at once; the result is the same as
without chunks. ``"auto"`` keeps each chunk's working set near the CPU's cache on CPU
backends (measured 1.3x faster than one chunk of 64 models on Location-30, see
benchmarks/README.md), trains convolutional models one at a time on CPU (vmapped
convolutions are slow there), and trains all models at once on accelerators.

Devices: with a mesh (``"auto"``: every device when there are several), ``k`` (or the
chunk) is padded to a multiple of the device count with copies of the last model, which
are dropped afterwards, so the result does not depend on the devices up to float
rounding (XLA:CPU may block a batched matmul of 32 models differently from one of 64,
which moves the last bits; ``tests/test_engine_distributed.py`` compares with tolerances).

Checkpoints: with ``checkpoint=DIR`` every finished chunk of models is saved to the pool
directory atomically, with its outputs on ``x``. A later call with the same settings
resumes after the saved models (an interrupted run loses at most one chunk), takes a
finished pool whole, or trains only the models beyond it (a pool grown from 64 to 128
models). A pool trained with other settings, data, keep rows or keys raises
:class:`jaxmia.engine.PoolError`. Across several processes (a shared directory),
each process saves its own models and process 0 the manifest
(:mod:`jaxmia._src.engine.distributed`).

Compiled programs are cached by structure (:mod:`jaxmia._src.engine.caching`): an equal
factory, optimizer or loss built anew reuses them, and the cache is bounded.

Example::

    factory = models.mlp((128,), num_classes=30, in_features=446)
    keep = splits.balanced_keep(64, ds.n, seed=0)
    pool = engine.train(factory, ds.x, ds.y, keep, epochs=30, seed=0)
    logits = engine.predict(pool, ds.x)  # (64, n, 30)
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmia._src.engine import adversarial, distributed, sampling, training_spec
from jaxmia._src.engine.adversarial import AdvReg
from jaxmia._src.engine.caching import cache_by_structure
from jaxmia._src.engine.checks import (
    check_heldout,
    check_inputs,
    check_loss,
    check_settings,
    check_validation,
    output_width,
)
from jaxmia._src.engine.dpsgd import DPConfig
from jaxmia._src.engine.early_stopping import EarlyStopping
from jaxmia._src.engine.inference import accuracies, apply
from jaxmia._src.engine.kernel import (
    KernelSpec,
    LossFn,
    abstract_model,
    cross_entropy,
    graphdefs,
    init_one,
    steps_per_epoch,
)
from jaxmia._src.engine.objectives import Objective, check_objective
from jaxmia._src.engine.placement import MODEL_AXIS, gather, layout, place
from jaxmia._src.engine.pool import Pool
from jaxmia._src.engine.sampling import DiracCanary, DPPlan
from jaxmia._src.engine.store import checkpointing
from jaxmia._src.engine.training_spec import TrainingSpec
from jaxmia.models import ModelFactory

__all__ = ["Pool", "ProgressFn", "adam", "compiled", "compiled_init", "model_keys", "train"]

ProgressFn = Callable[[float, int, float | None], None]
"""Called as ``progress(done, k, mean_loss)`` as training goes: ``done`` models of ``k``
are trained, a fraction while a chunk is part-way through its epochs (after every epoch)
and a whole number once its models are finished (and saved, with a checkpoint).
``mean_loss`` is the last epoch's mean training loss (NaN if the models diverged);
``None`` when the models were read from a checkpoint."""


def model_keys(seed: int | jax.Array, k: int) -> jax.Array:
    """``(k,)`` typed PRNG keys, one per model: ``jax.random.split(key(seed), k)``."""
    key = jax.random.key(seed) if isinstance(seed, int) else seed
    return jax.random.split(key, k)


def adam(learning_rate: float = 1e-3) -> optax.GradientTransformation:
    """``optax.adam(learning_rate)``, the default optimizer. Equal optimizers share
    compiled programs (they are cached by structure, not by object)."""
    return optax.adam(learning_rate)


@cache_by_structure()
def compiled(
    factory: ModelFactory,
    tx: optax.GradientTransformation,
    batch_size: int,
    steps: int,
    full_steps: int,
    vmapped: bool,
    mesh: Mesh | None = None,
    dp: DPConfig | None = None,
    loss_fn: LossFn = cross_entropy,
    objective: Objective | None = None,
    canary: DiracCanary | None = None,
    max_batch: int = 1,
    adv_reg: AdvReg | None = None,
    classes: int = 0,
):
    """Jitted ``(init, epoch)`` programs for one configuration; ``epoch`` has the signature
    of :func:`jaxmia._src.engine.sampling.dp_epoch_one` less its static arguments.

    Cached by structure (:mod:`jaxmia._src.engine.caching`, least recently used first out),
    so repeated :func:`train` calls with an equal factory, optimizer and loss and arrays
    of the same shapes never recompile, even when those are new objects. With a
    ``mesh``, every output is sharded along its leading (model) axis. With ``adv_reg``,
    those of :func:`jaxmia._src.engine.adversarial.programs` (``classes`` outputs).
    """
    spec = KernelSpec(
        graphdefs(factory)[0], tx, batch_size, steps, full_steps, dp, loss_fn, objective=objective
    )
    init = None  # compiled_init: the same for every epoch program of factory and tx
    epoch = functools.partial(sampling.counted_epoch, spec)  # kernel.epoch_one
    if dp is not None and (dp.sampling == "poisson" or canary is not None):
        epoch = functools.partial(sampling.dp_epoch_one, spec, DPPlan(max_batch, canary))
    if adv_reg is not None:
        init, adv_epoch = adversarial.programs(factory, spec, adv_reg, classes)
        epoch = functools.partial(adversarial.counted_epoch, adv_epoch, batch_size)
    if vmapped:
        epoch = jax.vmap(epoch, in_axes=(0, None, 0, 0, 0, 0, 0, None, None))
    out = {} if mesh is None else {"out_shardings": NamedSharding(mesh, P(MODEL_AXIS))}
    if init is None:
        init_fn = compiled_init(factory, tx, vmapped, mesh)
    else:
        init_fn = jax.jit(jax.vmap(init) if vmapped else init, **out)
    return init_fn, jax.jit(epoch, donate_argnums=(4, 5, 6), **out)


@cache_by_structure()
def compiled_init(
    factory: ModelFactory, tx: optax.GradientTransformation, vmapped: bool, mesh: Mesh | None
):
    """The jitted ``init`` of :func:`compiled`: ``(params, rest, opt_state)`` of fresh
    models from their key data (vmapped over models when ``vmapped``). It does not depend
    on the batch, DP-SGD, the objective or the canary, so every epoch program of one
    architecture and optimizer shares it, and it compiles once per shape of keys."""
    init = functools.partial(init_one, factory, tx)
    out = {} if mesh is None else {"out_shardings": NamedSharding(mesh, P(MODEL_AXIS))}
    return jax.jit(jax.vmap(init) if vmapped else init, **out)


@dataclasses.dataclass(frozen=True)
class _Run:
    """Everything one :func:`train` call fixes before its first chunk."""

    factory: ModelFactory
    x: np.ndarray
    y: np.ndarray
    keep: np.ndarray
    heldout: np.ndarray | None
    key_data: np.ndarray
    spec: TrainingSpec
    canary_keep: np.ndarray
    mode: str
    chunk: int
    mesh: Mesh | None
    init: Callable
    epoch_fn: Callable
    xd: jax.Array
    yd: jax.Array
    progress: ProgressFn | None

    @property
    def k(self) -> int:
        return self.keep.shape[0]

    @property
    def epochs(self) -> int:
        return self.spec.epochs


@dataclasses.dataclass
class _Trained:
    """The models of a :func:`train` call so far, chunk by chunk."""

    params: list = dataclasses.field(default_factory=list)
    rest: list = dataclasses.field(default_factory=list)
    losses: list = dataclasses.field(default_factory=list)
    best_epoch: list = dataclasses.field(default_factory=list)
    logits: list = dataclasses.field(default_factory=list)
    counts: list = dataclasses.field(default_factory=list)


def _prepare(
    factory,
    x,
    y,
    keep,
    heldout,
    spec: TrainingSpec,
    *,
    keys,
    mode,
    chunk_size,
    mesh,
    canary,
    canary_keep,
    progress,
    classes=0,
) -> _Run:
    """Settles the layout, the per-model keys and the compiled programs of a call
    (``spec`` as checked by :func:`train`)."""
    k, batch_size, dp = keep.shape[0], spec.batch_size, spec.dp
    if keys.shape[0] != k:
        raise ValueError(f"got {keys.shape[0]} keys for {k} models")
    counts_steps = steps_per_epoch(keep, batch_size)
    mode, chunk, mesh = layout(factory, k, x, batch_size, mode, chunk_size, mesh)
    stateful = bool(jax.tree.leaves(nnx.state(abstract_model(factory), nnx.Not(nnx.Param))))
    training_spec.check_combinations(training_spec.settings_on(spec, stateful=stateful))
    canary_keep = sampling.check_canary_args(canary, canary_keep, dp, k, abstract_model(factory))
    steps, full_steps = int(counts_steps.max()), int(counts_steps.min())
    max_batch = sampling.max_batch_size(batch_size, int(keep.sum(axis=1).max()))
    adv = {} if spec.adv_reg is None else {"adv_reg": spec.adv_reg, "classes": classes}
    init, epoch_fn = compiled(
        factory,
        spec.tx,
        batch_size,
        steps,
        full_steps,
        mode == "vmap",
        mesh,
        dp,
        spec.loss,
        objective=spec.objective,
        canary=canary,
        max_batch=max_batch if dp is not None and dp.sampling == "poisson" else 1,
        **adv,
    )
    return _Run(
        factory=factory,
        x=x,
        y=y,
        keep=keep,
        heldout=heldout,
        spec=spec,
        canary_keep=canary_keep,
        key_data=np.asarray(jax.random.key_data(keys)),
        mode=mode,
        chunk=chunk,
        mesh=mesh,
        init=init,
        epoch_fn=epoch_fn,
        xd=place(x, mesh, False),
        yd=place(y, mesh, False),
        progress=progress,
    )


def _resume(run: _Run, store, tx, trained: _Trained) -> int:
    """Takes the models a checkpoint already holds; returns how many."""
    resumed = store.resume(run.keep, run.key_data)
    if resumed is None:
        return 0
    one = functools.partial(init_one, run.factory, tx)  # unsharded: shapes of one model
    shapes = jax.eval_shape(one, jnp.asarray(run.key_data[0]))[:2]
    params, rest = checkpointing.unflatten(shapes, resumed.leaves)
    trained.params, trained.rest = [params], [rest]
    trained.losses = [resumed.arrays["losses"]]
    trained.logits = [resumed.arrays["logits"]]
    if "best_epoch" in resumed.arrays:
        trained.best_epoch = [resumed.arrays["best_epoch"]]
    trained.counts = [checkpointing.resumed_counts(resumed, run.canary_keep)]
    if run.progress is not None:
        run.progress(resumed.count, run.k, None)
    return resumed.count


def _run_epochs(
    run: _Run,
    chunk_keys,
    chunk_keep,
    state,
    start: int,
    n_real: int,
    stopper: EarlyStopping | None,
    seconds: np.ndarray,
):
    """Trains one chunk for its epochs; returns ``(params, rest, [loss (n_real,)],
    counts (n_real, 4))`` (``chunk_keep``: the keep rows and canary flags)."""
    params, rest, opt_state = state
    chunk_losses, counts = [], np.zeros((n_real, len(sampling.COUNTS)), np.int64)
    for e in range(run.epochs):
        t0 = time.perf_counter()
        params, rest, opt_state, loss, count = run.epoch_fn(
            chunk_keys,
            jnp.asarray(e, jnp.int32),
            *chunk_keep,
            params,
            rest,
            opt_state,
            run.xd,
            run.yd,
        )
        if run.mode != "sequential":
            loss, count = gather(loss, run.chunk), gather(count, run.chunk)
        loss = np.atleast_1d(np.asarray(loss))
        counts += np.reshape(np.asarray(count), (-1, len(sampling.COUNTS)))[:n_real]
        seconds[e] += time.perf_counter() - t0
        chunk_losses.append(loss[:n_real])
        if run.progress is not None and e + 1 < run.epochs:
            run.progress(
                start + n_real * (e + 1) / run.epochs, run.k, float(np.mean(loss[:n_real]))
            )
        if stopper is not None and stopper.update(e, params, rest):
            chunk_losses += [np.full(n_real, np.nan)] * (run.epochs - e - 1)
            break
    return params, rest, chunk_losses, counts


def _train_chunk(run: _Run, start: int, trained: _Trained, seconds: np.ndarray, store) -> None:
    """Trains models ``[start, start + chunk)`` (the last chunk padded with copies of the
    last model), keeps them in ``trained`` and saves them to ``store``."""
    idx = np.minimum(np.arange(start, start + run.chunk), run.k - 1)  # pad with copies
    n_real = min(run.chunk, run.k - start)
    reference = run.spec.reference
    rows = run.keep if reference is None else np.stack([run.keep, reference], axis=1)
    if run.mode == "sequential":
        ck, ckeep = jnp.asarray(run.key_data[idx[0]]), jnp.asarray(rows[idx[0]])
        ckeep = (ckeep, jnp.asarray(run.canary_keep[idx[0]]))
    else:
        ck, ckeep = place(run.key_data[idx], run.mesh, True), place(rows[idx], run.mesh, True)
        ckeep = (ckeep, place(run.canary_keep[idx], run.mesh, True))
    stopper = None
    spec = run.spec
    if spec.validation is not None and spec.patience > 0:
        eval_gd = graphdefs(run.factory)[1]
        stopper = EarlyStopping(eval_gd, spec.validation, spec.patience, run.mode, spec.loss)
    state = run.init(ck)
    params, rest, losses, counts = _run_epochs(
        run, ck, ckeep, state, start, n_real, stopper, seconds
    )
    trained.counts.append(counts)
    if stopper is not None:
        params, rest = stopper.best_params, stopper.best_rest
        if run.mode == "sequential":
            params, rest = jax.tree.map(lambda a: a[0], (params, rest))
        trained.best_epoch.append(stopper.best_epoch[:n_real] + 1)
    if run.mode == "sequential":
        params, rest = jax.tree.map(lambda a: a[None], (params, rest))
    trained.params.append(jax.tree.map(lambda a: gather(a, n_real), params))
    trained.rest.append(jax.tree.map(lambda a: gather(a, n_real), rest))
    trained.losses.append(np.stack(losses) if run.epochs else np.zeros((0, n_real)))
    logits = apply(graphdefs(run.factory)[1], trained.params[-1], trained.rest[-1], run.x)
    trained.logits.append(logits)
    rows = slice(start, start + n_real)
    if store is not None:  # several processes: each saves its own models
        owners = None if jax.process_count() == 1 else distributed.chunk_owners(ck, n_real)
        heldout = None if run.heldout is None else np.broadcast_to(run.heldout, run.keep.shape)
        checkpointing.save_chunk(
            store,
            start,
            trained.params[-1],
            trained.rest[-1],
            logits,
            run.y,
            run.keep[rows],
            None if heldout is None else heldout[rows],
            run.key_data[rows],
            trained.losses[-1],
            trained.best_epoch[-1] if stopper is not None else None,
            None
            if spec.dp is None
            else {"dp_counts": counts, "canary_keep": run.canary_keep[rows]},
            owners,
        )
    if run.progress is not None:
        last = trained.losses[-1][~np.isnan(trained.losses[-1]).all(axis=1)][-1:]
        run.progress(start + n_real, run.k, float(np.mean(last)) if last.size else float("nan"))


def _concat(chunks: list) -> Any:
    return chunks[0] if len(chunks) == 1 else jax.tree.map(lambda *a: jnp.concatenate(a), *chunks)


def _assemble(run: _Run, trained: _Trained, seconds: np.ndarray) -> Pool:
    """The :class:`Pool` of every chunk's models."""
    logits = np.concatenate(trained.logits) if len(trained.logits) > 1 else trained.logits[0]
    train_acc, test_acc = accuracies(logits, run.y, run.keep, run.heldout)
    return Pool(
        graphdef=graphdefs(run.factory)[1],
        params=_concat(trained.params),
        rest=_concat(trained.rest),
        keep=run.keep,
        train_accuracy=train_acc,
        test_accuracy=test_acc,
        losses=np.concatenate(trained.losses, axis=1) if run.epochs else np.zeros((0, run.k)),
        epoch_seconds=tuple(float(s) for s in seconds),
        best_epoch=np.concatenate(trained.best_epoch) if trained.best_epoch else None,
        logits=logits,
        dp_counts=None
        if run.spec.dp is None
        else dict(zip(sampling.COUNTS, np.concatenate(trained.counts).T, strict=True)),
    )


def train(
    factory: ModelFactory,
    x: np.ndarray,
    y: np.ndarray,
    keep: np.ndarray,
    *,
    spec: TrainingSpec | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    optimizer: optax.GradientTransformation | None = None,
    seed: int | jax.Array = 0,
    keys: jax.Array | None = None,
    mode: str = "vmap",
    chunk_size: int | str | None = "auto",
    heldout: np.ndarray | None = None,
    progress: ProgressFn | None = None,
    mesh: Mesh | str | None = "auto",
    dp: DPConfig | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    patience: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_spec: Mapping[str, Any] | None = None,
    checkpoint_meta: Mapping[str, Any] | None = None,
    loss_fn: LossFn | None = None,
    objective: Objective | None = None,
    canary: DiracCanary | None = None,
    canary_keep: np.ndarray | None = None,
    adv_reg: AdvReg | None = None,
    reference: np.ndarray | None = None,
) -> Pool:
    """Trains one model per row of ``keep``, all at once (see the module docstring).

    Args:
      factory: builds a model as ``factory(rngs=nnx.Rngs(...))``; it gets per-model
        ``params``, ``dropout`` and ``default`` streams (other names fall back to it).
      x: ``(n, *input_shape)`` float32 features; y: ``(n,)`` integer labels.
      keep: ``(k, n)`` bool or 0/1 keep matrix (``(n,)`` for one model, e.g. a target).
      spec: how the models train (:class:`jaxmia.engine.TrainingSpec`); or give its
        fields (``epochs``, ``batch_size``, ``optimizer``, ``loss_fn``, ``dp``,
        ``objective``, ``adv_reg``, ``reference``, ``validation``, ``patience``) as
        keywords instead, not both. Unset fields take the spec's defaults.
      epochs: passes over each model's members (default 30).
      batch_size: examples per step (default 128). Model ``i`` takes
        ``steps_per_epoch(keep, batch_size)[i]`` optimizer steps per epoch
        (:func:`jaxmia.engine.steps_per_epoch`), a number that differs between models
        whose member counts differ (balanced splits included); size an optax schedule
        with the largest total, ``optimizer_steps(keep, batch_size, epochs).max()``
        (:func:`jaxmia.engine.optimizer_steps`).
      optimizer: any optax transformation (default ``optax.adam(1e-3)``).
      seed, keys: per-model keys ``jax.random.split(key(seed), k)``, or these ``(k,)``.
      mode: ``"vmap"`` (the engine) or ``"sequential"`` (the same jitted per-model
        function in a Python loop: the reference and the baseline).
      chunk_size: models at a time (the result does not change); ``"auto"`` fits the
        CPU cache, ``None`` all at once.
      heldout: ``(k, n)`` or ``(n,)`` bool or 0/1 examples for the held-out accuracy
        (default: each model's non-members).
      progress: :data:`ProgressFn`, called after every epoch and every finished chunk.
      mesh: shard the models over this mesh (:func:`jaxmia.engine.model_mesh`);
        ``"auto"`` every device, ``None`` one.
      dp: train with DP-SGD (:class:`DPConfig`, Poisson-sampled batches by default);
        not with stateful layers (dropout). ``Pool.dp_counts`` says what ran.
      canary, canary_keep: under DP-SGD, a :class:`jaxmia.engine.DiracCanary`
        added to the clipped gradient sum of the models with ``canary_keep`` ``(k,)``
        bool True, at each step where it is sampled (for auditing DP; Nasr et al. 2023).
      validation, patience: early stopping on ``(x_val, y_val)``: stop a chunk once no
        model has improved for ``patience`` epochs; keep each model's best (0: off).
      checkpoint: a pool directory (:mod:`jaxmia._src.engine.store.pools`) to save every chunk to
        and resume from; another command's pool raises ``pools.PoolError``. Several
        processes share one (:mod:`jaxmia._src.engine.distributed`).
      checkpoint_spec, checkpoint_meta: JSON-able settings the engine cannot see
        (compared like the spec), and notes kept in the manifest (not compared).
      loss_fn: per-example loss ``(logits (b, c), labels (b,)) -> (b,)``, default
        softmax cross-entropy; for plain and DP-SGD steps and the validation loss.
      objective: label smoothing, mixup, RelaxLoss or adversarial training
        (:class:`jaxmia.engine.Objective`; adversarial inputs are clipped to ``x``'s range
        unless it sets ``x_range``); not with DP-SGD or ``adv_reg``. None (or all off):
        the plain loss.
      adv_reg, reference: adversarial regularisation (:class:`AdvReg`, Nasr et al. 2018)
        against an inference model per model that tells its members from its
        ``reference`` records, ``(k, n)`` or ``(n,)`` bool disjoint from ``keep``
        (:mod:`jaxmia._src.engine.adversarial`); not with DP-SGD or an objective.

    Settings that do not go together
    (:data:`jaxmia._src.engine.training_spec.COMBINATIONS`) are refused before any training
    by a one-line :class:`jaxmia.settings.ConfigError` (a ``ValueError``).

    Returns:
      A :class:`Pool` of the ``k`` models, their accuracies, losses and logits on ``x``.
    """
    given = {
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": optimizer,
        "loss_fn": loss_fn,
        "dp": dp,
        "objective": objective,
        "adv_reg": adv_reg,
        "reference": reference,
        "validation": validation,
        "patience": patience,
    }
    given = {name: value for name, value in given.items() if value is not None}
    if spec is not None and given:
        raise ValueError(
            f"give the training settings in spec or as keywords, not both (got spec and "
            f"{', '.join(given)})"
        )
    if spec is not None and not isinstance(spec, TrainingSpec):
        raise ValueError(f"spec must be an engine.TrainingSpec, got {spec!r}")
    spec = TrainingSpec(**given) if spec is None else spec
    check_settings(mode, spec.epochs, spec.batch_size)
    x, y, keep = check_inputs(x, y, keep)
    classes = output_width(factory, tuple(x.shape[1:]), y)
    check_loss(spec.loss, classes, spec.batch_size)
    checked = spec.replace(  # what runs: the checks' conversions, the defaults filled in
        optimizer=spec.tx,
        validation=check_validation(spec.validation, tuple(x.shape[1:]), classes),
        objective=check_objective(spec.objective, x),
        reference=adversarial.check_reference(spec.adv_reg, spec.reference, keep),
    )
    run = _prepare(
        factory,
        x,
        y,
        keep,
        check_heldout(heldout, keep),
        checked,
        keys=model_keys(seed, keep.shape[0]) if keys is None else keys,
        mode=mode,
        chunk_size=chunk_size,
        mesh=mesh,
        canary=canary,
        canary_keep=canary_keep,
        progress=progress,
        classes=classes,
    )
    trained, seconds, store, first = _Trained(), np.zeros(spec.epochs), None, 0
    if checkpoint is not None:
        recorded = training_spec.pool_spec(
            factory, x, y, checked, classes=classes, extra=checkpoint_spec, canary=canary
        )
        store = distributed.open_pool(checkpoint, recorded, checkpoint_meta)
        first = _resume(run, store, checked.tx, trained)
    for start in range(first, run.k, run.chunk):
        _train_chunk(run, start, trained, seconds, store)
    return _assemble(run, trained, seconds)
