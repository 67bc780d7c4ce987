"""Running trained models: logits or labels of every model on every example, accuracies.

The ``k`` stacked models are ``jax.vmap``ped over and sharded over the local devices, as
in training; inputs go through in fixed-size padded batches, so any ``n`` uses one
compiled program.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmia._src.engine.caching import cache_by_structure
from jaxmia._src.engine.kernel import as_mask
from jaxmia._src.engine.placement import MODEL_AXIS, auto_mesh

__all__ = ["accuracies", "apply", "apply_fn", "predict"]


@cache_by_structure()
def apply_fn(graphdef, labels: bool = False):
    """The jitted ``(params, rest, x (b, ...)) -> (k, b, c)`` logits of stacked models
    (``(k, b)`` int32 labels with ``labels=True``), cached per graph structure."""

    def f(params, rest, x):
        out = nnx.merge(graphdef, params, rest)(x)
        return jnp.argmax(out, axis=-1).astype(jnp.int32) if labels else out

    return jax.jit(jax.vmap(f, in_axes=(0, 0, None)))


def apply(
    graphdef, params, rest, x: np.ndarray, *, batch_size: int = 2048, labels: bool = False
) -> np.ndarray:
    """Outputs of stacked models ``(graphdef, params, rest)`` on ``x``.

    Args:
      graphdef: the models' ``nnx.GraphDef`` (evaluation mode).
      params, rest: ``nnx.State`` of the ``k`` models, every leaf with leading axis ``k``.
      x: ``(n, *input_shape)`` inputs.
      batch_size: examples per jitted call (the last batch is padded).
      labels: return argmax labels instead of logits.

    Returns:
      ``(k, n, c)`` float32 logits, or ``(k, n)`` int32 labels (NumPy). With several
      local devices the models are sharded over them (padded with copies of the last
      model to a multiple of the device count), as in training.
    """
    x = _as_inputs(x)
    n = x.shape[0]
    k = int(jax.tree.leaves(params)[0].shape[0])
    fn = apply_fn(graphdef, labels)
    mesh = auto_mesh(k) if jax.process_count() == 1 else None
    if mesh is not None:
        pad = -k % mesh.size
        grow = lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) if pad else a
        params, rest = jax.device_put(
            jax.tree.map(grow, (params, rest)), NamedSharding(mesh, P(MODEL_AXIS))
        )
    b = min(batch_size, max(n, 1))
    shape = _check_input_shape(fn, params, rest, x.shape[1:], b)
    if n == 0:
        return np.zeros((k, 0, *shape.shape[2:]), shape.dtype)
    out = []
    for start in range(0, n, b):
        xb = x[start : start + b]
        if xb.shape[0] < b:
            xb = np.concatenate([xb, np.zeros((b - xb.shape[0], *x.shape[1:]), x.dtype)])
        # device_put, not jnp.asarray: that stages a jitted copy per shape (a compile)
        out.append(np.asarray(fn(params, rest, jax.device_put(xb)))[:k])
    return np.concatenate(out, axis=1)[:, :n]


def _as_inputs(x: Any) -> np.ndarray:
    """``x`` as a float32 ``(n, ...)`` array; one line when it is not numbers of that shape."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"inputs must be numbers, got dtype {x.dtype}")
    if x.ndim == 0:
        raise ValueError("inputs must be an array shaped (n, *input_shape), got a scalar")
    return x.astype(np.float32, copy=False)


def _check_input_shape(
    fn, params, rest, input_shape: tuple[int, ...], batch: int = 1
) -> jax.ShapeDtypeStruct:
    """Refuses inputs of ``input_shape`` that the stacked models (``fn`` of
    :func:`apply_fn`) do not take, in one line naming the shape they do take where it
    can be found, before anything runs (shapes only: it traces ``fn`` once per shape,
    the trace its call reuses).

    Returns:
      The shape and dtype of ``fn``'s output on a batch of ``batch`` such inputs.

    Raises:
      ValueError: e.g. "x has 60 features per example but the models take 64".
    """
    try:
        return _trace(fn, params, rest, input_shape, batch)
    except (TypeError, ValueError) as e:
        cause = str(e).splitlines()[0] if str(e) else type(e).__name__
    for shape in _candidate_shapes(params):
        try:
            _trace(fn, params, rest, shape, 1)
        except (TypeError, ValueError):
            continue
        if len(shape) == len(input_shape) == 1:
            raise ValueError(
                f"x has {input_shape[0]} features per example but the models take {shape[0]}"
            )
        raise ValueError(f"x holds inputs shaped {input_shape} but the models take {shape}")
    raise ValueError(f"the models do not take inputs shaped {input_shape}: {cause}")


def _trace(fn, params, rest, input_shape, batch):
    xb = jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)
    return jax.eval_shape(fn, params, rest, xb)


def _candidate_shapes(params) -> list[tuple[int, ...]]:
    """Flat input shapes ``(d,)`` the models may take: the input widths of their 2-D
    kernels (a dense layer's ``(d, out)``, after the model axis), first leaf first."""
    widths = [a.shape[1] for a in jax.tree.leaves(params) if np.ndim(a) == 3]
    return [(d,) for d in dict.fromkeys(widths)]


def predict(
    pool: Any, x: np.ndarray, *, batch_size: int = 2048, labels: bool = False
) -> np.ndarray:
    """Logits (or predicted labels) of every model of the pool on every example.

    Args:
      pool: a trained :class:`jaxmia.engine.Pool` of ``k`` models.
      x: ``(n, *input_shape)`` inputs.
      batch_size: examples per jitted call; the last batch is padded, so any ``n`` uses
        one compiled function.
      labels: return the argmax labels ``(k, n)`` (int32) instead, computed on the device.

    Returns:
      ``(k, n, c)`` float32 logits, or ``(k, n)`` labels (NumPy, on the host).
    """
    return apply(pool.graphdef, pool.params, pool.rest, x, batch_size=batch_size, labels=labels)


def accuracies(
    logits: np.ndarray, y: np.ndarray, keep: np.ndarray, heldout: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-model accuracy on members and on held-out examples.

    Args:
      logits: ``(k, n, c)``.
      y: ``(n,)`` labels.
      keep: ``(k, n)`` bool (or 0/1) members.
      heldout: ``(k, n)`` or ``(n,)`` bool (or 0/1) held-out examples (default
        ``~keep``); members are never counted as held out.

    Returns:
      ``(train_accuracy, test_accuracy)``, each ``(k,)``; NaN where a model has no
      examples in that set.
    """
    keep, logits, y = as_mask(keep), np.asarray(logits), np.asarray(y)
    if logits.ndim != 3 or y.shape != logits.shape[1:2] or keep.shape != logits.shape[:2]:
        raise ValueError(
            f"need logits (k, n, c), y (n,) and keep (k, n), got {logits.shape}, {y.shape} "
            f"and {keep.shape}"
        )
    correct = logits.argmax(-1) == y[None]
    if heldout is None:
        heldout = ~keep
    else:
        heldout = np.broadcast_to(as_mask(heldout, "heldout"), keep.shape) & ~keep

    def mean_over(mask):
        total = mask.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, (correct & mask).sum(axis=1) / total, np.nan)

    return mean_over(keep), mean_over(heldout)
