"""Input checks shared by the attacks' public wrappers.

Shape and dtype checks are static and run always (also while ``jax.jit`` or ``jax.vmap``
trace a wrapper, where they see the unbatched shapes). Checks of *values* (NaN, keep in
``{0, 1}``, enough IN/OUT models, labels in ``[0, c)``) need concrete arrays and are skipped
while tracing, so that the array cores stay traceable. Every floating dtype is accepted
(``bfloat16``, ``float16`` and the other ``ml_dtypes`` floats among them) and computed in
float32, eagerly and under ``jax.jit`` alike.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = ["AttackInputError", "as_float", "as_keep", "is_concrete"]


class AttackInputError(ValueError):
    """An attack's inputs have the wrong shape, dtype or values."""


def is_concrete(*arrays: object) -> bool:
    """Whether no argument is a JAX tracer (value checks may run)."""
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def _host(a: ArrayLike) -> np.ndarray:
    return np.asarray(a)


def as_float(name: str, values: ArrayLike, error: type[ValueError] = AttackInputError) -> jax.Array:
    """``values`` as a float32 array, checked to be finite when concrete.

    Bool, integer and every floating dtype are accepted (``jnp.issubdtype``, which knows
    ``bfloat16`` and the other ``ml_dtypes`` floats that NumPy's ``np.number`` does not).
    """
    if is_concrete(values):
        host = _host(values)
        if not (jnp.issubdtype(host.dtype, jnp.number) or host.dtype.kind == "b"):
            raise error(f"{name} must be a numeric array, got dtype {host.dtype}")
        with np.errstate(over="ignore"):  # beyond float32's range counts as infinite
            bad = int(host.size - np.isfinite(host.astype(np.float32)).sum())
        if bad:
            raise error(f"{name} has {bad} NaN or infinite value(s) in float32")
    return jnp.asarray(values, jnp.float32)


def as_keep(
    name: str,
    keep: ArrayLike,
    shape: tuple[int, ...] | None = None,
    error: type[ValueError] = AttackInputError,
) -> jax.Array:
    """``keep`` as a bool array: accepts bool or 0/1 integers, refuses anything else.

    Args:
      name: the argument's name, for the message.
      keep: membership mask.
      shape: the shape it must have, or ``None``.
      error: the exception class raised.
    """
    dtype = np.dtype(keep.dtype) if hasattr(keep, "dtype") else _host(keep).dtype
    if dtype.kind != "b" and not np.issubdtype(dtype, np.integer):
        raise error(f"{name} must hold bool or 0/1 integers, got dtype {dtype}")
    if shape is not None and tuple(np.shape(keep)) != tuple(shape):
        raise error(f"{name} must have shape {tuple(shape)}, got {tuple(np.shape(keep))}")
    if dtype.kind != "b" and is_concrete(keep):
        host = _host(keep)
        if not np.isin(host, (0, 1)).all():
            bad = np.unique(host[~np.isin(host, (0, 1))])[:3].tolist()
            raise error(f"{name} must hold bool or 0/1 integers, got values such as {bad}")
    return jnp.asarray(keep).astype(bool)
