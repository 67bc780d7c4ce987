"""The target's query interface: a user's model or function, queried in batches.

:func:`query_model` turns any model (an NNX module or a function to logits or
probabilities) into ``(n, c)`` logits, checking the outputs once at the boundary;
:func:`output_kind` says how the outputs are read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmia import signals
from jaxmia._src.audit.config import ConfigError

__all__ = ["PROB_SUM_TOLERANCE", "output_kind", "query_model"]

PROB_SUM_TOLERANCE = 0.1
"""How far from 1 the rows of probabilities may sum for ``outputs="auto"`` (rounding to
two decimals over tens of classes, or a renormalisation, moves the sum by a few 0.01)."""


def output_kind(out: np.ndarray, outputs: str = "auto") -> str:
    """``"logits"`` or ``"probs"``: how ``(n, c)`` model outputs ``out`` are read.

    Args:
      out: ``(n, c)`` the model's outputs.
      outputs: ``logits``, ``probs``, or ``auto``: probabilities if every value lies in
        ``[0, 1]`` and every row sums to within :data:`PROB_SUM_TOLERANCE` of 1 (so
        probabilities rounded to 2 decimals, or renormalised to 0.98, are still read as
        probabilities), logits if some value lies outside ``[0, 1]``.

    Raises:
      ConfigError: ``auto`` and the outputs are ambiguous: in ``[0, 1]`` but with rows
        that do not sum to about 1 (name the reading with ``outputs=``).
    """
    if outputs not in ("auto", "logits", "probs"):
        raise ConfigError(f"outputs must be auto, logits or probs, got {outputs!r}")
    if outputs != "auto":
        return outputs
    if not ((out >= 0).all() and (out <= 1).all()):
        return "logits"
    sums = out.sum(axis=1, dtype=np.float64)
    if np.abs(sums - 1).max() <= PROB_SUM_TOLERANCE:
        return "probs"
    raise ConfigError(
        f"the model's outputs lie in [0, 1] but its rows sum to {sums.min():.3g} .. "
        f"{sums.max():.3g}: are they probabilities? pass outputs='probs' or outputs='logits'"
    )


def query_model(
    fn: Callable[[np.ndarray], Any], x: np.ndarray, *, outputs: str = "auto", batch_size: int = 1024
) -> np.ndarray:
    """Queries a user's model in batches and returns ``(n, c)`` logits.

    Args:
      fn: maps a batch ``(b, *input_shape)`` to logits or probabilities ``(b, c)``.
      x: ``(n, *input_shape)`` inputs.
      outputs: ``logits``, ``probs`` or ``auto`` (see :func:`output_kind`).
      batch_size: examples per call.

    Returns:
      ``(n, c)`` float32 logits (log-probabilities when the model returns probabilities).
    """
    if outputs not in ("auto", "logits", "probs"):
        raise ConfigError(f"outputs must be auto, logits or probs, got {outputs!r}")
    parts: list[np.ndarray] = []
    for i in range(0, len(x), batch_size):
        batch = x[i : i + batch_size]
        part = np.asarray(fn(batch))
        width = parts[0].shape[1] if parts else part.shape[-1] if part.ndim == 2 else "classes"
        if part.shape != (len(batch), width):
            raise ConfigError(
                f"the model must return ({len(batch)}, {width}) outputs for a batch of "
                f"{len(batch)} records, got shape {part.shape}"
            )
        parts.append(part)
    out = np.concatenate(parts).astype(np.float32)
    if not np.isfinite(out).all():
        raise ConfigError("the model returned NaN or infinite outputs")
    if output_kind(out, outputs) == "probs":
        return np.asarray(signals.log_probs_from_probs(out))
    return out


def as_function(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``x (b, ...) -> (b, c)``: a jitted function of an NNX module (in evaluation
    mode), or ``model`` itself."""
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


def pair_arrays(name: str, data: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(x (n, ...) float32, y (n,) int)`` of a pair ``data``, or a one-line error."""
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a pair (x, y)") from None
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if x.ndim == 0 or y.ndim != 1:
        raise ConfigError(f"{name}: x must be (n, ...) and y (n,), got {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ConfigError(f"{name}: x has {x.shape[0]} rows and y {y.shape[0]}; need equal, > 0")
    if not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"{name}: labels must be integers, got {y.dtype}")
    if y.min() < 0:
        raise ConfigError(f"{name}: labels must be class indices >= 0, got {y.min()}")
    return x, y
