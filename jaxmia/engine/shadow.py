"""The shadow engine: train k models of one architecture at once.

All ``k`` models live in one parameter pytree (an ``nnx.State``) and one optimizer state
with a leading axis ``k``. One training epoch of one model is a pure function
(``lax.scan`` over its steps); the engine ``jax.vmap``s it over models and ``jax.jit``s the
whole epoch, so a pool of 64 shadow models costs a few large batched matrix products per
step instead of 64 small ones.

Each model draws its own batches from its own members (its row of the keep matrix) with
its own PRNG streams: ``key_i`` is split into an init key, a dropout key and a data-order
key, so model ``i`` trained inside the pool equals model ``i`` trained alone with the
same key (see :func:`train` with ``mode="sequential"``, the reference and benchmark
baseline that runs the same jitted per-model function in a Python loop).

Example::

    factory = models.mlp((128,), num_classes=30, in_features=446)
    keep = splits.balanced_keep(64, ds.n, seed=0)
    pool = shadow.train(factory, ds.x, ds.y, keep, epochs=30, seed=0)
    logits = shadow.predict(pool, ds.x)  # (64, n, 30)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmia.models import ModelFactory

MODES = ("vmap", "sequential")

ProgressFn = Callable[[float, int, float], None]
"""Called as ``progress(done, k, mean_loss)`` as training goes: ``done`` models of ``k``
are trained, a fraction while a chunk is part-way through its epochs (after every epoch)
and a whole number once its models are finished (and saved, with a checkpoint).
``mean_loss`` is the last epoch's mean training loss; NaN when the models were read
from a checkpoint."""


@dataclasses.dataclass(frozen=True)
class Pool:
    """A trained pool of ``k`` models.

    Attributes:
      graphdef: the model's structure in evaluation mode (``nnx.GraphDef``).
      params: ``nnx.State`` of parameters, every leaf with leading axis ``k``.
      rest: ``nnx.State`` of the other variables (RNG streams, statistics), axis ``k``.
      keep: ``(k, n)`` bool, the training set of each model.
      train_accuracy: ``(k,)`` accuracy of each model on its members.
      test_accuracy: ``(k,)`` accuracy on its held-out examples.
      losses: ``(epochs, k)`` mean training loss per epoch and model.
      epoch_seconds: wall time of each epoch (the first includes compilation).
      best_epoch: ``(k,)`` the epoch each model was kept at under early stopping.
      logits: ``(k, n, c)`` every model's outputs on the ``n`` training-data records
        (computed chunk by chunk as the models finish, and saved with a checkpoint).
    """

    graphdef: Any
    params: Any
    rest: Any
    keep: np.ndarray
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    losses: np.ndarray
    epoch_seconds: tuple[float, ...]
    best_epoch: np.ndarray | None = None
    logits: np.ndarray | None = None

    @property
    def k(self) -> int:
        return int(self.keep.shape[0])

    def model(self, i: int) -> nnx.Module:
        """Model ``i`` as an ordinary NNX module (evaluation mode)."""
        take = lambda a: a[i]
        return nnx.merge(
            self.graphdef, jax.tree.map(take, self.params), jax.tree.map(take, self.rest)
        )

    def select(self, idx: np.ndarray | slice) -> Pool:
        """The sub-pool of models ``idx`` (e.g. leave one out)."""
        take = lambda a: a[idx]
        return dataclasses.replace(
            self,
            params=jax.tree.map(take, self.params),
            rest=jax.tree.map(take, self.rest),
            keep=self.keep[idx],
            train_accuracy=self.train_accuracy[idx],
            test_accuracy=self.test_accuracy[idx],
            losses=self.losses[:, idx],
            best_epoch=None if self.best_epoch is None else self.best_epoch[idx],
            logits=None if self.logits is None else self.logits[idx],
        )


def model_keys(seed: int | jax.Array, k: int) -> jax.Array:
    """``(k,)`` typed PRNG keys, one per model, derived from one seed."""
    key = jax.random.key(seed) if isinstance(seed, int) else seed
    return jax.random.split(key, k)


@functools.cache
def _abstract_model(factory: ModelFactory) -> nnx.Module:
    """The factory's model with shapes only (cached; read it, never mutate it)."""
    return nnx.eval_shape(lambda: factory(rngs=nnx.Rngs(params=0, dropout=0)))


@functools.cache
def _graphdefs(factory: ModelFactory):
    """Train-mode and eval-mode graph definitions of the factory's model (cached)."""
    abstract = nnx.eval_shape(lambda: factory(rngs=nnx.Rngs(params=0, dropout=0)))  # own copy:
    train_gd = nnx.split(abstract, nnx.Param, ...)[0]  # .eval() below mutates it
    abstract.eval()
    eval_gd = nnx.split(abstract, nnx.Param, ...)[0]
    return train_gd, eval_gd


def _init_one(factory: ModelFactory, tx: optax.GradientTransformation, key_data: jax.Array):
    init_key, dropout_key, _ = jax.random.split(jax.random.wrap_key_data(key_data), 3)
    model = factory(rngs=nnx.Rngs(params=init_key, dropout=dropout_key))
    _, params, rest = nnx.split(model, nnx.Param, ...)
    return params, rest, tx.init(params)


@dataclasses.dataclass(frozen=True)
class DPConfig:
    """DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy").

    Every example's gradient is clipped to L2 norm ``l2_clip``, the clipped gradients are
    summed, Gaussian noise of standard deviation ``noise_multiplier * l2_clip`` is added,
    and the sum is divided by the batch size before the optimizer sees it. Each model of
    a pool draws its noise from its own key (``fold_in(model_key, ...)`` per epoch and
    step), unlike ``optax.contrib.differentially_private_aggregate``, whose key in the
    optimizer state would be shared by every vmapped model.
    """

    l2_clip: float = 1.0
    noise_multiplier: float = 1.0

    def __post_init__(self):
        if not self.l2_clip > 0 or not self.noise_multiplier >= 0:
            raise ValueError(
                f"DP-SGD needs l2_clip > 0 and noise_multiplier >= 0, got {self.l2_clip}, "
                f"{self.noise_multiplier}"
            )


_NOISE_STREAM = 0x5EED


def dp_noise(key: jax.Array, like, std: float):
    """Gaussian noise with the structure of ``like`` (one key, split per leaf)."""
    leaves, treedef = jax.tree.flatten(like)
    keys = jax.random.split(key, len(leaves))
    noise = [
        std * jax.random.normal(k, leaf.shape, leaf.dtype)
        for k, leaf in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, noise)


def _private_grads(loss_fn, dp: DPConfig, key, params, rest, xb, yb, weight):
    """Clipped, summed, noised and averaged per-example gradients (DP-SGD)."""

    def one(p, xi, yi):
        return loss_fn(p, rest, xi[None], yi[None], jnp.ones((1,), jnp.float32))[0]

    losses, g = jax.vmap(jax.value_and_grad(one), in_axes=(None, 0, 0))(params, xb, yb)
    sq = sum(jnp.sum(leaf.reshape(leaf.shape[0], -1) ** 2, axis=1) for leaf in jax.tree.leaves(g))
    scale = weight * jnp.minimum(1.0, dp.l2_clip / (jnp.sqrt(sq) + 1e-12))
    summed = jax.tree.map(lambda leaf: jnp.tensordot(scale, leaf, axes=1), g)
    noise = dp_noise(key, summed, dp.noise_multiplier * dp.l2_clip)
    grads = jax.tree.map(lambda a, b: (a + b) / xb.shape[0], summed, noise)
    loss = jnp.sum(losses * weight) / jnp.maximum(jnp.sum(weight), 1.0)
    return loss, grads


def member_order(key: jax.Array, keep_row: jax.Array) -> jax.Array:
    """A random order of the ``n`` positions with the members (``keep_row``) first.

    Args:
      key: PRNG key.
      keep_row: bool ``(n,)``.

    Returns:
      int32 ``(n,)``: the members in uniformly random order, then the non-members.

    XLA:CPU sorts one ``uint32`` array about 6x faster than it argsorts a float array
    (the ``(key, index)`` pair sort of ``jnp.argsort``; 0.7 ms against 4.8 ms for 16
    rows of 1797), and on small datasets that sort was the largest single cost of an
    epoch. So each position's index goes in the low ``ceil(log2 n)`` bits of one word,
    random bits above it and a top bit that is set for non-members; the sorted words'
    low bits are the order. With ``b = 31 - ceil(log2 n)`` random bits, two members
    draw the same bits with probability ``2**-b`` and then keep their index order,
    a negligible bias while ``b >= 12`` (n <= 2**19); larger datasets use the argsort.
    """
    n = keep_row.shape[0]
    index_bits = max(1, math.ceil(math.log2(n)))
    random_bits = 31 - index_bits
    if random_bits < 12:
        noise = jax.random.uniform(key, (n,))
        return jnp.argsort(jnp.where(keep_row, noise, 2.0)).astype(jnp.int32)
    draw = jax.random.bits(key, (n,), jnp.uint32) >> (32 - random_bits)
    top = jnp.where(keep_row, jnp.uint32(0), jnp.uint32(1 << 31))
    word = top | (draw << index_bits) | jnp.arange(n, dtype=jnp.uint32)
    return (jnp.sort(word) & jnp.uint32((1 << index_bits) - 1)).astype(jnp.int32)


def _epoch_one(
    train_gd,
    tx: optax.GradientTransformation,
    batch_size: int,
    steps: int,
    full_steps: int,
    dp: DPConfig | None,
    key_data: jax.Array,
    epoch: jax.Array,
    keep_row: jax.Array,
    params,
    rest,
    opt_state,
    x: jax.Array,
    y: jax.Array,
):
    """One epoch of one model over its members (pure; vmapped by the engine).

    The member order is a random permutation drawn from ``fold_in(data_key, epoch)``
    over all ``n`` positions, so it does not depend on how many steps other models in
    the pool need. The first ``full_steps`` steps have members in every model of the
    pool; the later ones are masked, and are no-ops for a model past its last member.
    """
    n = keep_row.shape[0]
    model_key = jax.random.wrap_key_data(key_data)
    data_key = jax.random.split(model_key, 3)[2]
    noise_key = jax.random.fold_in(jax.random.fold_in(model_key, _NOISE_STREAM), epoch)
    order = member_order(jax.random.fold_in(data_key, epoch), keep_row)
    pad = steps * batch_size - n
    if pad > 0:
        order = jnp.concatenate([order, jnp.zeros((pad,), order.dtype)])
    count = jnp.sum(keep_row)

    def loss_fn(params, rest, xb, yb, weight):
        # Rebuild the non-differentiated variables inside this trace so that stateful
        # layers (dropout RNG counters) may update them.
        rest = jax.tree.map(lambda a: a, rest)
        model = nnx.merge(train_gd, params, rest)
        logits = model(xb)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
        loss = jnp.sum(ce * weight) / jnp.maximum(jnp.sum(weight), 1.0)
        return loss, nnx.split(model, nnx.Param, ...)[2]

    def step(carry, s, masked):
        params, rest, opt_state = carry
        start = s * batch_size
        idx = jax.lax.dynamic_slice(order, (start,), (batch_size,))
        weight = (start + jnp.arange(batch_size) < count).astype(jnp.float32)
        if dp is None:
            (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, rest, x[idx], y[idx], weight
            )
        else:
            loss, grads = _private_grads(
                loss_fn, dp, jax.random.fold_in(noise_key, s), params, rest, x[idx], y[idx], weight
            )
            new_rest = rest
        updates, new_opt = tx.update(grads, opt_state, params)
        new = (optax.apply_updates(params, updates), new_rest, new_opt)
        if masked:  # models with fewer members than the largest skip the surplus steps
            active = start < count
            new = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, carry)
            loss = jnp.where(active, loss, 0.0)
            return new, (loss, active)
        return new, (loss, jnp.bool_(True))

    carry, (losses, _) = jax.lax.scan(
        functools.partial(step, masked=False), (params, rest, opt_state), jnp.arange(full_steps)
    )
    total, count_steps = jnp.sum(losses), full_steps
    if steps > full_steps:  # only the last steps of an epoch need masking
        carry, (tail, active) = jax.lax.scan(
            functools.partial(step, masked=True), carry, jnp.arange(full_steps, steps)
        )
        total, count_steps = total + jnp.sum(tail), count_steps + jnp.sum(active)
    mean_loss = total / jnp.maximum(count_steps, 1)
    return (*carry, mean_loss)


@functools.cache
def _compiled(
    factory: ModelFactory,
    tx,
    batch_size: int,
    steps: int,
    full_steps: int,
    vmapped: bool,
    mesh: Mesh | None = None,
    dp: DPConfig | None = None,
):
    """Jitted init and epoch functions for one configuration (cached, so repeated
    :func:`train` calls with arrays of the same shapes never recompile). With a
    ``mesh``, every output is sharded along its leading (model) axis."""
    train_gd, _ = _graphdefs(factory)
    init = functools.partial(_init_one, factory, tx)
    epoch = functools.partial(_epoch_one, train_gd, tx, batch_size, steps, full_steps, dp)
    if vmapped:
        init = jax.vmap(init)
        epoch = jax.vmap(epoch, in_axes=(0, None, 0, 0, 0, 0, None, None))
    out = {} if mesh is None else {"out_shardings": NamedSharding(mesh, P(MODEL_AXIS))}
    return jax.jit(init, **out), jax.jit(epoch, donate_argnums=(3, 4, 5), **out)


MODEL_AXIS = "models"
"""Name of the mesh axis over which the k models are sharded."""


def model_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"models"`` over ``devices`` (default: every device of
    every process, so the same code runs on one CPU, 8 forced CPU devices, several
    GPUs or hosts)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (MODEL_AXIS,))


CACHE_BUDGET_BYTES = 12 * 2**20
"""Working set that one chunk of models may occupy on a CPU (all devices together)."""


def auto_chunk_size(
    factory: ModelFactory, input_shape: tuple[int, ...], batch_size: int, k: int
) -> int | None:
    """How many models to train at once: on CPU, as many as keep the estimated working
    set (parameters, gradients and two optimizer moments, plus the gathered batch) within
    :data:`CACHE_BUDGET_BYTES`, split evenly into chunks; on accelerators, all of them."""
    if jax.default_backend() != "cpu" or jax.process_count() > 1:
        return None
    params = nnx.state(_abstract_model(factory), nnx.Param)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    per_model = 4 * (4 * n_params + 2 * batch_size * int(np.prod(input_shape)))
    devices = min(jax.device_count(), k)
    most = max(devices, CACHE_BUDGET_BYTES // max(per_model, 1))
    if most >= k:
        return None
    chunks = math.ceil(k / most)
    return math.ceil(math.ceil(k / chunks) / devices) * devices


def _vmapped_convs_are_slow(factory: ModelFactory) -> bool:
    """On CPU, a convolution vmapped over models (with different kernels) becomes a
    grouped convolution that XLA:CPU runs about 3x slower than one model at a time
    (measured: 4 CNNs on 1000 MNIST images, 12 s against 3.8 s per epoch; see
    benchmarks/README.md), so ``chunk_size="auto"`` trains convolutional models one
    at a time there."""
    if jax.default_backend() != "cpu":
        return False
    nodes = nnx.iter_graph(_abstract_model(factory))
    return any(isinstance(node, nnx.Conv) for _, node in nodes)


def _auto_mesh(k: int) -> Mesh | None:
    """Every device when several processes share the pool; otherwise up to ``k`` local
    devices (one model needs no mesh)."""
    if jax.process_count() > 1:
        return model_mesh()
    if k < 2 or jax.device_count() < 2:
        return None
    return model_mesh(jax.devices()[: min(k, jax.device_count())])


def _place(array: np.ndarray, mesh: Mesh | None, sharded: bool) -> jax.Array:
    """A global array from a host array that every process holds in full: sharded
    along axis 0 over the mesh, or replicated."""
    if mesh is None:
        return jnp.asarray(array)
    sharding = NamedSharding(mesh, P(MODEL_AXIS) if sharded else P())
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def _gather(a: jax.Array, n: int) -> jax.Array | np.ndarray:
    """The first ``n`` models of ``a``; gathered to the host when the array spans
    several processes."""
    if getattr(a, "is_fully_addressable", True):
        return a[:n]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(a, tiled=True))[:n]


@functools.cache
def _output_width(factory: ModelFactory, input_shape: tuple[int, ...]) -> int:
    """The model's number of outputs for inputs of ``input_shape``, from shapes alone
    (cached); a clear error when the model does not take such inputs."""
    try:
        out = jax.eval_shape(
            lambda state, xb: nnx.merge(_graphdefs(factory)[1], *state)(xb),
            nnx.state(_abstract_model(factory), nnx.Param, ...),
            jax.ShapeDtypeStruct((1, *input_shape), jnp.float32),
        )
    except (TypeError, ValueError) as e:
        cause = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"the model does not take inputs shaped {input_shape}: {cause}") from e
    return int(out.shape[-1])


def _check_inputs(x, y, keep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    keep = np.asarray(keep)
    if keep.ndim == 1:
        keep = keep[None]
    if keep.ndim != 2 or keep.dtype != bool:
        raise ValueError(f"keep must be a (k, n) bool array, got shape {keep.shape}, {keep.dtype}")
    if keep.shape[0] == 0:
        raise ValueError("keep has no rows: need at least one model")
    if x.ndim == 0 or y.ndim != 1:
        raise ValueError(f"need x shaped (n, ...) and y shaped (n,), got {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0] or keep.shape[1] != x.shape[0]:
        raise ValueError(
            f"mismatched lengths: x has {x.shape[0]} rows, y {y.shape[0]}, "
            f"keep {keep.shape[1]} columns"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {y.dtype}")
    if y.size and y.min() < 0:
        raise ValueError(f"labels must be >= 0, got {y.min()}")
    empty = np.flatnonzero(keep.sum(axis=1) == 0)
    if empty.size:
        raise ValueError(f"model(s) {empty[:5].tolist()} have no training examples")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"features must be numbers, got {x.dtype}")
    with np.errstate(over="ignore"):  # reported below
        x = x.astype(np.float32, copy=False)
    bad = int(x.size - np.isfinite(x).sum())
    if bad:
        raise ValueError(f"x has {bad} NaN or infinite value(s) as float32; need finite x")
    return x, y.astype(np.int32, copy=False), keep


def train(
    factory: ModelFactory,
    x: np.ndarray,
    y: np.ndarray,
    keep: np.ndarray,
    *,
    epochs: int = 30,
    batch_size: int = 128,
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
    patience: int = 0,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_spec: Mapping[str, Any] | None = None,
    checkpoint_meta: Mapping[str, Any] | None = None,
) -> Pool:
    """Trains one model per row of ``keep``, all at once.

    Args:
      factory: builds a model, called as ``factory(rngs=nnx.Rngs(...))``.
      x: ``(n, *input_shape)`` float32 features.
      y: ``(n,)`` integer labels.
      keep: ``(k, n)`` bool keep matrix (or ``(n,)`` for one model, e.g. the target).
      epochs: passes over each model's members.
      batch_size: examples per step; each model's last batch of an epoch is partial.
      optimizer: any optax transformation (default ``optax.adam(1e-3)``). Pass the
        same object to repeated calls to reuse the compiled functions.
      seed: seeds the per-model keys ``jax.random.split(key(seed), k)``.
      keys: ``(k,)`` explicit per-model keys instead of ``seed``.
      mode: ``"vmap"`` (the engine) or ``"sequential"`` (the same jitted per-model
        function in a Python loop over models: the reference and the baseline).
      chunk_size: train at most this many models at a time to bound memory; the result
        is the same as without chunks. ``"auto"`` (the default) keeps each chunk's
        working set near the CPU's cache on CPU backends (measured 1.3x faster than one
        chunk of 64 models on Location-30, see benchmarks/README.md), trains
        convolutional models one at a time on CPU (vmapped convolutions are slow there),
        and trains all models at once on accelerators; ``None`` always trains all at
        once.
      heldout: ``(k, n)`` or ``(n,)`` bool examples for the held-out accuracy
        (default: each model's non-members).
      progress: :data:`ProgressFn`, called after every epoch and every finished chunk.
      mesh: shard the models over this mesh (:func:`model_mesh`); ``"auto"`` uses
        every device when there are several, ``None`` one device. ``k`` (or the chunk)
        is padded to a multiple of the device count with copies of the last model,
        which are dropped afterwards, so the result does not depend on the devices.
      dp: train with DP-SGD (:class:`DPConfig`); models with stateful layers
        (dropout) are not supported then.
      validation: ``(x_val, y_val)`` for early stopping.
      patience: with ``validation``, stop a chunk once no model's validation loss has
        improved for this many epochs, and keep each model's best epoch (0: off).
      checkpoint: a pool directory (:mod:`jaxmia.engine.pools`): every finished chunk of models
        is saved there atomically, with its outputs on ``x``. A later call with the
        same settings resumes after the saved models (an interrupted run loses at most
        one chunk), takes a finished pool whole, or trains only the models beyond it
        (a pool grown from 64 to 128 models). A pool trained with other settings, data,
        keep rows or keys raises :class:`jaxmia.engine.pools.PoolError`.
      checkpoint_spec: JSON-able settings the engine cannot see (the optimizer, the
        split), added to the pool's spec and compared like it.
      checkpoint_meta: JSON-able notes kept in the pool's manifest, not compared.

    Returns:
      A :class:`Pool` with the stacked parameters and per-model accuracies.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    whole = (int, np.integer)
    if not (isinstance(epochs, whole) and isinstance(batch_size, whole)) or (
        epochs < 0 or batch_size < 1
    ):
        raise ValueError(
            f"need integers epochs >= 0 and batch_size >= 1, got {epochs!r}, {batch_size!r}"
        )
    x, y, keep = _check_inputs(x, y, keep)
    classes = _output_width(factory, tuple(x.shape[1:]))
    if y.max() >= classes:
        raise ValueError(f"labels must be < {classes} (the model's outputs), got {y.max()}")
    if heldout is not None and (
        np.ndim(heldout) not in (1, 2)
        or np.shape(heldout)[-1] != x.shape[0]
        or (np.ndim(heldout) == 2 and np.shape(heldout)[0] not in (1, keep.shape[0]))
    ):
        raise ValueError(
            f"heldout must be (k, n) or (n,) with n = {x.shape[0]}, got {np.shape(heldout)}"
        )
    k = keep.shape[0]
    if jax.process_count() == 1 and (
        k == 1 or (chunk_size == "auto" and _vmapped_convs_are_slow(factory))
    ):
        mode = "sequential"  # the per-model function itself, without a vmap axis
    tx = optimizer if optimizer is not None else adam(1e-3)
    if keys is None:
        keys = model_keys(seed, k)
    if keys.shape[0] != k:
        raise ValueError(f"got {keys.shape[0]} keys for {k} models")
    counts = keep.sum(axis=1)
    steps = math.ceil(int(counts.max()) / batch_size)
    full_steps = math.ceil(int(counts.min()) / batch_size)
    if chunk_size == "auto":
        chunk_size = auto_chunk_size(factory, x.shape[1:], batch_size, k)
    if mesh == "auto":
        mesh = _auto_mesh(k if chunk_size is None else min(int(chunk_size), k))
    if mode == "sequential":
        mesh = None
    per_step = 1 if mesh is None else mesh.size
    chunk = k if chunk_size is None else max(1, min(int(chunk_size), k))
    chunk = 1 if mode == "sequential" else math.ceil(chunk / per_step) * per_step
    if dp is not None and jax.tree.leaves(nnx.state(_abstract_model(factory), nnx.Not(nnx.Param))):
        raise ValueError("DP-SGD here supports models without dropout or other state")
    init, epoch_fn = _compiled(factory, tx, batch_size, steps, full_steps, mode == "vmap", mesh, dp)

    key_data = np.asarray(jax.random.key_data(keys))
    xd, yd = _place(x, mesh, False), _place(y, mesh, False)
    params_chunks, rest_chunks, loss_rows, stopped_at = [], [], [], []
    epoch_seconds = np.zeros(epochs)
    first = 0
    eval_gd = _graphdefs(factory)[1]
    heldout_rows = (
        ~keep if heldout is None else np.broadcast_to(np.asarray(heldout, bool), keep.shape)
    )
    logit_chunks: list[np.ndarray] = []
    store = None
    if checkpoint is not None:
        from jaxmia.engine import pools

        spec = {
            "data": pools.data_fingerprint(x, y),
            "architecture_sha256": _structure_digest(factory),
            "optimizer_sha256": _optimizer_digest(factory, tx),
            "epochs": epochs,
            "batch_size": batch_size,
            "dp": None if dp is None else dataclasses.asdict(dp),
            "early_stopping": _early_stopping_spec(validation, patience),
            **(checkpoint_spec or {}),
        }
        store = pools.ChunkStore(checkpoint, spec, checkpoint_meta)
        resumed = store.resume(keep, key_data)
        if resumed is not None:
            one = functools.partial(_init_one, factory, tx)  # unsharded: shapes of one model
            shapes = jax.eval_shape(one, jnp.asarray(key_data[0]))[:2]
            params, rest = pools.unflatten(shapes, resumed.leaves)
            first = resumed.count
            params_chunks, rest_chunks = [params], [rest]
            loss_rows = [resumed.arrays["losses"]]
            logit_chunks = [resumed.arrays["logits"]]
            if "best_epoch" in resumed.arrays:
                stopped_at = [resumed.arrays["best_epoch"]]
            if progress is not None:
                progress(first, k, float("nan"))
    for start in range(first, k, chunk):
        idx = np.minimum(np.arange(start, start + chunk), k - 1)  # pad with copies
        n_real = min(chunk, k - start)
        if mode == "sequential":
            ck, ckeep = jnp.asarray(key_data[idx[0]]), jnp.asarray(keep[idx[0]])
        else:
            ck, ckeep = _place(key_data[idx], mesh, True), _place(keep[idx], mesh, True)
        params, rest, opt_state = init(ck)
        chunk_losses = []
        stopper = None
        if validation is not None and patience > 0:
            stopper = _EarlyStopping(_graphdefs(factory)[1], validation, patience, mode)
        for e in range(epochs):
            t0 = time.perf_counter()
            params, rest, opt_state, loss = epoch_fn(
                ck, jnp.asarray(e, jnp.int32), ckeep, params, rest, opt_state, xd, yd
            )
            loss = np.atleast_1d(np.asarray(loss if mode == "sequential" else _gather(loss, chunk)))
            epoch_seconds[e] += time.perf_counter() - t0
            chunk_losses.append(loss[:n_real])
            if progress is not None and e + 1 < epochs:
                progress(start + n_real * (e + 1) / epochs, k, float(np.mean(loss[:n_real])))
            if stopper is not None and stopper.update(e, params, rest):
                chunk_losses += [np.full(n_real, np.nan)] * (epochs - e - 1)
                break
        if stopper is not None:
            params, rest = stopper.best_params, stopper.best_rest
            if mode == "sequential":
                params, rest = jax.tree.map(lambda a: a[0], (params, rest))
            stopped_at.append(stopper.best_epoch[:n_real] + 1)
        if mode == "sequential":
            params, rest = jax.tree.map(lambda a: a[None], (params, rest))
        params_chunks.append(jax.tree.map(lambda a, n=n_real: _gather(a, n), params))
        rest_chunks.append(jax.tree.map(lambda a, n=n_real: _gather(a, n), rest))
        loss_rows.append(np.stack(chunk_losses) if epochs else np.zeros((0, n_real)))
        rows = slice(start, start + n_real)
        logit_chunks.append(apply(eval_gd, params_chunks[-1], rest_chunks[-1], x))
        if store is not None and jax.process_index() == 0:
            train_acc, test_acc = accuracies(logit_chunks[-1], y, keep[rows], heldout_rows[rows])
            records = {
                "keep": keep[rows],
                "keys": key_data[rows],
                "losses": loss_rows[-1],
                "train_accuracy": train_acc,
                "test_accuracy": test_acc,
                **_signals_on(logit_chunks[-1], y),
            }
            if stopper is not None:
                records["best_epoch"] = stopped_at[-1]
            store.save_chunk(
                start,
                pools.flatten("params", params_chunks[-1]) + pools.flatten("rest", rest_chunks[-1]),
                records,
            )
        if progress is not None:
            last = loss_rows[-1][~np.isnan(loss_rows[-1]).all(axis=1)][-1:]
            progress(start + n_real, k, float(np.mean(last)) if last.size else float("nan"))
    params = (
        params_chunks[0]
        if len(params_chunks) == 1
        else jax.tree.map(lambda *a: jnp.concatenate(a), *params_chunks)
    )
    rest = (
        rest_chunks[0]
        if len(rest_chunks) == 1
        else jax.tree.map(lambda *a: jnp.concatenate(a), *rest_chunks)
    )
    logits = np.concatenate(logit_chunks) if len(logit_chunks) > 1 else logit_chunks[0]
    pool = Pool(
        graphdef=eval_gd,
        params=params,
        rest=rest,
        keep=keep,
        train_accuracy=np.zeros(k),
        test_accuracy=np.zeros(k),
        losses=np.concatenate(loss_rows, axis=1) if epochs else np.zeros((0, k)),
        epoch_seconds=tuple(float(s) for s in epoch_seconds),
        best_epoch=np.concatenate(stopped_at) if stopped_at else None,
        logits=logits,
    )
    train_acc, test_acc = accuracies(logits, y, keep, heldout)
    return dataclasses.replace(pool, train_accuracy=train_acc, test_accuracy=test_acc)


def _structure_digest(factory: ModelFactory) -> str:
    """SHA-256 of the model's structure (layers, shapes, dtypes), without addresses."""
    structure = re.sub(r" at 0x[0-9a-f]+", "", repr(_graphdefs(factory)[0]))
    return hashlib.sha256(structure.encode()).hexdigest()


FINGERPRINT_STEPS = (10, 100, 1_000, 10_000, 100_000)
"""Step counts at which :func:`_optimizer_digest` also samples the optimizer's update."""


@functools.cache
def _optimizer_digest(factory: ModelFactory, tx: optax.GradientTransformation) -> str:
    """SHA-256 of what the optimizer does to fixed parameters under a fixed gradient.

    An optax transformation's hyperparameters live in closures, so they cannot be read;
    instead this hashes its first two updates and, from the state after those, one update
    with every integer leaf of the state (the step counts) set to each of
    :data:`FINGERPRINT_STEPS`. Two optimizers that differ in kind or rate differ here, and
    so do learning-rate schedules that differ only later in training (a decay at step 500
    against one at step 5000). Cached per factory and optimizer object, like the compiled
    training functions."""
    shapes = nnx.state(_abstract_model(factory), nnx.Param)

    @jax.jit
    def updates():
        params = jax.tree.map(lambda a: jnp.full(a.shape, 0.5, a.dtype), shapes)
        grads = jax.tree.map(
            lambda a: jnp.linspace(-1.0, 1.0, a.size).reshape(a.shape).astype(a.dtype), shapes
        )
        state = tx.init(params)
        first, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, first)
        second, state = tx.update(grads, state, params)
        later = []
        for step in FINGERPRINT_STEPS:
            at_step = jax.tree.map(
                lambda a, t=step: (
                    jnp.full_like(a, t) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.integer) else a
                ),
                state,
            )
            later.append(tx.update(grads, at_step, params)[0])
        return first, second, later

    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(updates()):
        digest.update(np.asarray(leaf).tobytes())
    return digest.hexdigest()


def _early_stopping_spec(validation, patience: int) -> dict[str, Any] | None:
    if validation is None or patience <= 0:
        return None
    x_val, y_val = validation
    from jaxmia.engine import pools

    return {"patience": patience, "validation": pools.data_fingerprint(x_val, y_val)}


def _signals_on(logits: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The per-model signals a pool keeps: ``logits`` ``(m, n, c)``, ``loss`` and
    ``logit_scaled_confidence`` ``(m, n)``."""
    from jaxmia import signals

    labels = np.broadcast_to(y, logits.shape[:2])
    return {
        "logits": logits,
        "loss": np.asarray(signals.loss(logits, labels)),
        "logit_scaled_confidence": np.asarray(signals.logit_scaled_confidence(logits, labels)),
    }


class _EarlyStopping:
    """Tracks each model's validation loss and keeps its best parameters."""

    def __init__(self, graphdef, validation, patience: int, mode: str):
        x_val, y_val = validation
        self.apply = _apply_fn(graphdef)
        self.x = jnp.asarray(np.asarray(x_val, np.float32))
        self.y = jnp.asarray(np.asarray(y_val, np.int32))
        self.patience = patience
        self.stacked = mode != "sequential"
        self.best_loss = None

    def update(self, epoch: int, params, rest) -> bool:
        """Records epoch ``epoch``; returns True when every model has stopped improving."""
        if not self.stacked:
            params, rest = jax.tree.map(lambda a: a[None], (params, rest))
        logits = self.apply(params, rest, self.x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, self.y[None]).mean(-1)
        loss = np.asarray(_gather(loss, loss.shape[0]))
        if self.best_loss is None:
            self.best_loss = loss
            self.best_epoch = np.zeros(loss.shape, int)
            better = np.ones(loss.shape, bool)
            self.best_params = jax.tree.map(jnp.copy, params)
            self.best_rest = jax.tree.map(jnp.copy, rest)
        else:
            better = loss < self.best_loss
            pick = lambda new, old: jnp.where(
                jnp.asarray(better).reshape((-1,) + (1,) * (new.ndim - 1)), new, old
            )
            self.best_params = jax.tree.map(pick, params, self.best_params)
            self.best_rest = jax.tree.map(pick, rest, self.best_rest)
            self.best_loss = np.where(better, loss, self.best_loss)
            self.best_epoch = np.where(better, epoch, self.best_epoch)
        return bool(np.all(epoch - self.best_epoch >= self.patience))


@functools.cache
def adam(learning_rate: float = 1e-3) -> optax.GradientTransformation:
    """``optax.adam(learning_rate)``, one object per rate so compiled functions are reused."""
    return optax.adam(learning_rate)


def accuracies(
    logits: np.ndarray, y: np.ndarray, keep: np.ndarray, heldout: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-model accuracy on members and on held-out examples.

    Args:
      logits: ``(k, n, c)``.
      y: ``(n,)`` labels.
      keep: ``(k, n)`` bool members.
      heldout: ``(k, n)`` or ``(n,)`` bool held-out examples (default ``~keep``).

    Returns:
      ``(train_accuracy, test_accuracy)``, each ``(k,)``; NaN where a model has no
      examples in that set.
    """
    correct = np.asarray(logits).argmax(-1) == np.asarray(y)[None]
    heldout = ~keep if heldout is None else np.broadcast_to(heldout, keep.shape) & ~keep

    def mean_over(mask):
        total = mask.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, (correct & mask).sum(axis=1) / total, np.nan)

    return mean_over(keep), mean_over(heldout)


def predict(
    pool: Pool, x: np.ndarray, *, batch_size: int = 2048, labels: bool = False
) -> np.ndarray:
    """Logits (or predicted labels) of every model of the pool on every example.

    Args:
      pool: a trained :class:`Pool` of ``k`` models.
      x: ``(n, *input_shape)`` inputs.
      batch_size: examples per jitted call; the last batch is padded, so any ``n`` uses
        one compiled function.
      labels: return the argmax labels ``(k, n)`` (int32) instead, computed on the device.

    Returns:
      ``(k, n, c)`` float32 logits, or ``(k, n)`` labels (NumPy, on the host).
    """
    return apply(pool.graphdef, pool.params, pool.rest, x, batch_size=batch_size, labels=labels)


@functools.cache
def _apply_fn(graphdef, labels: bool = False):
    def f(params, rest, x):
        out = nnx.merge(graphdef, params, rest)(x)
        return jnp.argmax(out, axis=-1).astype(jnp.int32) if labels else out

    return jax.jit(jax.vmap(f, in_axes=(0, 0, None)))


def apply(
    graphdef, params, rest, x: np.ndarray, *, batch_size: int = 2048, labels: bool = False
) -> np.ndarray:
    """``(k, n, c)`` logits (``(k, n)`` labels with ``labels=True``) of stacked models
    ``(graphdef, params, rest)`` on ``x``. With several local devices the models are
    sharded over them (padded with copies of the last model to a multiple of the device
    count), as in training."""
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0]
    k = int(jax.tree.leaves(params)[0].shape[0])
    fn = _apply_fn(graphdef, labels)
    mesh = _auto_mesh(k) if jax.process_count() == 1 else None
    if mesh is not None:
        pad = -k % mesh.size
        grow = lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) if pad else a
        params, rest = jax.device_put(
            jax.tree.map(grow, (params, rest)), NamedSharding(mesh, P(MODEL_AXIS))
        )
    b = min(batch_size, max(n, 1))
    out = []
    for start in range(0, n, b):
        xb = x[start : start + b]
        if xb.shape[0] < b:
            xb = np.concatenate([xb, np.zeros((b - xb.shape[0], *x.shape[1:]), x.dtype)])
        out.append(np.asarray(fn(params, rest, jnp.asarray(xb)))[:k])
    return np.concatenate(out, axis=1)[:, :n]
