"""The per-model kernel: one model's initialisation and one epoch of its training.

Both are pure functions of one model (the engine ``jax.vmap``s them over models and
``jax.jit``s them). A model's key ``key_i`` is split into an init key, a dropout key and
a data-order key (``jax.random.split(key_i, 3)``); every other stream a module asks for
(``rngs()``, ``rngs.noise()``, ...) falls back in Flax NNX to the ``default`` stream,
keyed ``fold_in(key_i, DEFAULT_STREAM)``. An epoch visits the model's members (its row
of the keep matrix) in an order drawn from ``fold_in(data_key, epoch)``, so model ``i``
trained inside a pool equals model ``i`` trained alone with the same key.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxmia._src.engine.caching import cache_by_structure
from jaxmia._src.engine.dpsgd import NOISE_STREAM, DPConfig, private_grads
from jaxmia._src.engine.objectives import Objective, objective_loss, step_key
from jaxmia.models import ModelFactory

__all__ = [
    "DEFAULT_STREAM",
    "KernelSpec",
    "LossFn",
    "abstract_model",
    "as_mask",
    "batch_loss",
    "cross_entropy",
    "epoch_one",
    "graphdefs",
    "init_one",
    "member_order",
    "model_rngs",
    "optimizer_steps",
    "steps_per_epoch",
]

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
"""A per-example loss ``loss_fn(logits (b, c), labels (b,)) -> (b,)``."""

cross_entropy: LossFn = optax.softmax_cross_entropy_with_integer_labels
"""The default per-example loss: softmax cross-entropy with integer labels."""

DEFAULT_STREAM = 0xDEFA17
"""``fold_in`` constant that derives a model's ``default`` RNG stream from its key."""


def model_rngs(key: jax.Array) -> nnx.Rngs:
    """The RNG streams of the model with key ``key``: ``params`` and ``dropout`` from
    ``jax.random.split(key, 3)[:2]``, and ``default`` (the fallback of every other
    stream name) from ``fold_in(key, DEFAULT_STREAM)``."""
    init_key, dropout_key, _ = jax.random.split(key, 3)
    default_key = jax.random.fold_in(key, DEFAULT_STREAM)
    return nnx.Rngs(default=default_key, params=init_key, dropout=dropout_key)


def _shape_rngs() -> nnx.Rngs:
    return nnx.Rngs(default=0, params=0, dropout=0)


@cache_by_structure()
def abstract_model(factory: ModelFactory) -> nnx.Module:
    """The factory's model with shapes only (cached; read it, never mutate it)."""
    return nnx.eval_shape(lambda: factory(rngs=_shape_rngs()))


@cache_by_structure()
def graphdefs(factory: ModelFactory) -> tuple[Any, Any]:
    """Train-mode and eval-mode ``nnx.GraphDef`` of the factory's model (cached)."""
    abstract = nnx.eval_shape(lambda: factory(rngs=_shape_rngs()))  # own copy:
    train_gd = nnx.split(abstract, nnx.Param, ...)[0]  # .eval() below mutates it
    abstract.eval()
    eval_gd = nnx.split(abstract, nnx.Param, ...)[0]
    return train_gd, eval_gd


def init_one(factory: ModelFactory, tx: optax.GradientTransformation, key_data: jax.Array):
    """``(params, rest, opt_state)`` of one fresh model from its ``(2,)`` uint32 key data."""
    model = factory(rngs=model_rngs(jax.random.wrap_key_data(key_data)))
    _, params, rest = nnx.split(model, nnx.Param, ...)
    return params, rest, tx.init(params)


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


def as_mask(a: Any, name: str = "keep") -> np.ndarray:
    """``a`` as a NumPy bool array; bools and 0/1 integers are accepted.

    Raises:
      ValueError: ``a`` holds other values or another dtype.
    """
    a = np.asarray(a)
    if a.dtype == bool:
        return a
    if np.issubdtype(a.dtype, np.integer) and ((a == 0) | (a == 1)).all():
        return a.astype(bool)
    shown = np.unique(a)[:4].tolist() if a.dtype.kind in "biuf" else a.dtype
    raise ValueError(f"{name} must hold bools or 0/1 integers, got {a.dtype} values {shown}")


def steps_per_epoch(keep: Any, batch_size: int) -> np.ndarray:
    """Optimizer steps each model takes per epoch, as the kernel counts them.

    A model with ``m`` members takes ``ceil(m / batch_size)`` steps per epoch (its last
    batch partial), in plain training, under DP-SGD (shuffled or Poisson-sampled) and
    under adversarial regularisation alike. A pool runs as many steps as its largest
    model; the extra steps are no-ops for the others: their parameters and optimizer
    state, optax's step count included, do not advance. So models whose member counts
    differ take different numbers of steps, and balanced splits do differ:
    ``splits.balanced_keep(16, 1797)``'s rows hold 873 to 930 members (seed 0), 14 or
    15 steps at batch size 64. A learning-rate schedule reads each model's own count;
    :func:`optimizer_steps` gives the counts at the end of training and how to size one.

    Args:
      keep: ``(k, n)`` or ``(n,)`` bool (or 0/1) members.
      batch_size: examples per step.

    Returns:
      ``(k,)`` int64 steps per epoch (``(1,)`` for a single row).
    """
    keep = as_mask(keep)
    if keep.ndim not in (1, 2) or batch_size < 1:
        raise ValueError(f"need keep (k, n) or (n,) and batch_size >= 1, got {keep.shape}")
    counts = np.atleast_2d(keep).sum(axis=1).astype(np.int64)
    return -(-counts // int(batch_size))


def optimizer_steps(keep: Any, batch_size: int, epochs: int) -> np.ndarray:
    """Optimizer steps each model has taken after ``epochs`` epochs: the step count an
    optax schedule of that model reaches, ``epochs * steps_per_epoch(keep, batch_size)``
    (fewer under early stopping, which ends a chunk's epochs sooner).

    The engine trains every model of a pool with the one optimizer it is given, so one
    schedule serves models whose counts differ (:func:`steps_per_epoch`). Size it with
    the largest, e.g.
    ``optax.cosine_decay_schedule(1e-3, optimizer_steps(keep, 64, epochs).max())``: no
    model steps past the schedule's end, and model ``i`` stops at
    ``optimizer_steps(...)[i] / max`` of it (14/15 or more on ``balanced_keep(16, 1797)``
    at batch size 64). A schedule sized from one row (row 0, or the smallest) runs the
    larger models past its end, where optax schedules hold their last value (a learning
    rate of 0 after a cosine decay to 0). For every model to end exactly at the schedule's
    end, give them equal member counts.

    Args:
      keep: ``(k, n)`` or ``(n,)`` bool (or 0/1) members.
      batch_size: examples per step.
      epochs: epochs of training.

    Returns:
      ``(k,)`` int64 steps.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs < 0:
        raise ValueError(f"need an integer epochs >= 0, got {epochs!r}")
    return int(epochs) * steps_per_epoch(keep, batch_size)


@dataclasses.dataclass(frozen=True)
class KernelSpec:
    """What one epoch of one model needs besides its arrays (static under ``jax.jit``).

    Attributes:
      graphdef: the model's train-mode ``nnx.GraphDef``.
      tx: the optax transformation.
      batch_size: examples per step.
      steps: steps per epoch of the pool's largest model.
      full_steps: steps per epoch of its smallest (no masking needed before these).
      dp: DP-SGD settings, or None.
      loss_fn: the per-example loss (:data:`LossFn`).
      objective: label smoothing, mixup, RelaxLoss or adversarial training
        (:class:`jaxmia.engine.Objective`), or None for the plain mean loss.
    """

    graphdef: Any
    tx: optax.GradientTransformation
    batch_size: int
    steps: int
    full_steps: int
    dp: DPConfig | None
    loss_fn: LossFn = cross_entropy
    """The per-example loss (:data:`LossFn`)."""
    objective: Objective | None = None


def batch_loss(graphdef, loss_fn: LossFn, params, rest, xb, yb, weight):
    """``(loss, rest)``: the ``weight``-ed mean of ``loss_fn`` over a batch ``(b, ...)``,
    and the model's non-parameter variables after the forward pass (dropout RNG counts)."""
    # Rebuild the non-differentiated variables inside this trace so that stateful
    # layers (dropout RNG counters) may update them.
    rest = jax.tree.map(lambda a: a, rest)
    model = nnx.merge(graphdef, params, rest)
    per_example = loss_fn(model(xb), yb)
    loss = jnp.sum(per_example * weight) / jnp.maximum(jnp.sum(weight), 1.0)
    return loss, nnx.split(model, nnx.Param, ...)[2]


def _step(spec: KernelSpec, x, y, order, count, noise_key, carry, s, masked: bool, context=None):
    """One optimizer step on batch ``s`` of the epoch's ``order``; with ``masked``, a
    no-op for a model whose members are used up (``s * batch_size >= count``).
    ``context``: ``(model_key, epoch)`` for ``spec.objective``."""
    params, rest, opt_state = carry
    start = s * spec.batch_size
    idx = jax.lax.dynamic_slice(order, (start,), (spec.batch_size,))
    weight = (start + jnp.arange(spec.batch_size) < count).astype(jnp.float32)
    loss_of = functools.partial(batch_loss, spec.graphdef, spec.loss_fn)
    if spec.objective is not None:
        model_key, epoch = context
        loss_of = functools.partial(
            objective_loss,
            spec.objective,
            spec.graphdef,
            spec.loss_fn,
            step_key(model_key, epoch, s),
            epoch,
        )
    if spec.dp is None:  # engine.train refuses an objective with DP-SGD
        (loss, new_rest), grads = jax.value_and_grad(loss_of, has_aux=True)(
            params, rest, x[idx], y[idx], weight
        )
    else:
        key = jax.random.fold_in(noise_key, s)
        loss, grads = private_grads(loss_of, spec.dp, key, params, rest, x[idx], y[idx], weight)
        new_rest = rest
    updates, new_opt = spec.tx.update(grads, opt_state, params)
    new = (optax.apply_updates(params, updates), new_rest, new_opt)
    if masked:  # models with fewer members than the largest skip the surplus steps
        active = start < count
        new = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, carry)
        loss = jnp.where(active, loss, 0.0)
        return new, (loss, active)
    return new, (loss, jnp.bool_(True))


def epoch_one(
    spec: KernelSpec,
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

    Args:
      spec: the static settings (:class:`KernelSpec`).
      key_data: ``(2,)`` uint32 key data of the model's key.
      epoch: int32 scalar, the epoch's index.
      keep_row: ``(n,)`` bool, the model's members.
      params, rest, opt_state: the model's state.
      x: ``(n, *input_shape)`` float32 inputs; y: ``(n,)`` int32 labels.

    Returns:
      ``(params, rest, opt_state, mean_loss)`` after the epoch; ``mean_loss`` is the
      mean over the model's steps of each batch's mean loss.

    The member order is a random permutation drawn from ``fold_in(data_key, epoch)``
    over all ``n`` positions, so it does not depend on how many steps other models in
    the pool need. The first ``full_steps`` steps have members in every model of the
    pool; the later ones are masked, and are no-ops for a model past its last member.
    """
    n = keep_row.shape[0]
    model_key = jax.random.wrap_key_data(key_data)
    data_key = jax.random.split(model_key, 3)[2]
    noise_key = jax.random.fold_in(jax.random.fold_in(model_key, NOISE_STREAM), epoch)
    order = member_order(jax.random.fold_in(data_key, epoch), keep_row)
    pad = spec.steps * spec.batch_size - n
    if pad > 0:
        order = jnp.concatenate([order, jnp.zeros((pad,), order.dtype)])
    step = functools.partial(_step, spec, x, y, order, jnp.sum(keep_row), noise_key)
    if spec.objective is not None:
        step = functools.partial(step, context=(model_key, epoch))
    carry, (losses, _) = jax.lax.scan(
        functools.partial(step, masked=False),
        (params, rest, opt_state),
        jnp.arange(spec.full_steps),
    )
    total, count_steps = jnp.sum(losses), spec.full_steps
    if spec.steps > spec.full_steps:  # only the last steps of an epoch need masking
        carry, (tail, active) = jax.lax.scan(
            functools.partial(step, masked=True), carry, jnp.arange(spec.full_steps, spec.steps)
        )
        total, count_steps = total + jnp.sum(tail), count_steps + jnp.sum(active)
    mean_loss = total / jnp.maximum(count_steps, 1)
    return (*carry, mean_loss)
