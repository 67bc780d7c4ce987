"""Checks of what a caller passes to :func:`jaxmia.engine.train`, before any tracing.

Each mistake gives one clear ``ValueError`` line instead of a traceback from inside JAX.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxmia._src.engine.caching import cache_by_structure
from jaxmia._src.engine.kernel import LossFn, abstract_model, as_mask, graphdefs
from jaxmia.models import ModelFactory

__all__ = [
    "MODES",
    "check_factory",
    "check_heldout",
    "check_inputs",
    "check_loss",
    "check_settings",
    "check_validation",
    "output_width",
]

MODES = ("vmap", "sequential")
"""Training modes of :func:`jaxmia.engine.train`: ``"vmap"`` (the engine) and
``"sequential"`` (the same jitted per-model function in a Python loop)."""


def check_factory(factory: Any) -> None:
    """Refuses a model factory that cannot build a model as the engine calls it,
    ``factory(rngs=nnx.Rngs(...))``, in one line that says which of two things failed:
    the call itself (a class or function that needs more arguments, a model instead of
    a factory) or the model's construction inside the factory."""
    if isinstance(factory, nnx.Module):
        raise ValueError(
            f"got a model ({type(factory).__name__} instance) where the engine needs a factory "
            "that builds a fresh model per shadow: pass e.g. lambda rngs: "
            f"{type(factory).__name__}(..., rngs=rngs)"
        )
    if not callable(factory):
        raise ValueError(
            f"the model factory must be callable as factory(rngs=...), got {factory!r}"
        )
    try:
        abstract_model(factory)
    except Exception as e:  # a user's code: any error means it does not build
        cause = f"{type(e).__name__}: {_first_line(e)}"
        name = _factory_name(factory)
        if isinstance(e, TypeError) and _failed_at_call(factory, e):
            raise ValueError(
                f"the model factory {name} cannot be called as {name}(rngs=nnx.Rngs(...)), "
                f"which is how the engine builds every model ({cause}); bind its other "
                f"arguments first, e.g. functools.partial({name}, ...) or "
                f"lambda rngs: {name}(..., rngs=rngs)"
            ) from e
        raise ValueError(f"building the model with {name}(rngs=...) failed: {cause}") from e


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _factory_name(factory: Any) -> str:
    inner = factory.func if isinstance(factory, functools.partial) else factory
    return getattr(inner, "__name__", None) or type(inner).__name__


def _code_of(factory: Any) -> types.CodeType | None:
    """The code object a call of ``factory`` enters first (a class's ``__init__``)."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    if isinstance(factory, type):
        factory = factory.__init__
    return getattr(factory, "__code__", None)


def _failed_at_call(factory: Any, e: TypeError) -> bool:
    """Whether ``e`` was raised by calling ``factory`` itself (its arguments did not
    bind) rather than inside it: the factory's own code never ran."""
    code = _code_of(factory)
    if code is None:
        return False
    tb, frames = e.__traceback__, set()
    while tb is not None:
        frames.add(tb.tb_frame.f_code)
        tb = tb.tb_next
    return code not in frames


def output_width(factory: ModelFactory, input_shape: tuple[int, ...], y: np.ndarray) -> int:
    """The model's number of outputs ``c`` for inputs of ``input_shape``; refuses a
    factory the engine cannot call (:func:`check_factory`) and labels ``y`` ``(n,)``
    that are not ``< c``."""
    check_factory(factory)
    classes = _output_width(factory, input_shape)
    if y.size and y.max() >= classes:
        raise ValueError(f"labels must be < {classes} (the model's outputs), got {y.max()}")
    return classes


@cache_by_structure()
def _output_width(factory: ModelFactory, input_shape: tuple[int, ...]) -> int:
    """The model's number of outputs for inputs of ``input_shape``, from shapes alone
    (cached); a clear error when the model does not take such inputs."""
    state = nnx.state(abstract_model(factory), nnx.Param, ...)
    try:
        out = jax.eval_shape(
            lambda state, xb: nnx.merge(graphdefs(factory)[1], *state)(xb),
            state,
            jax.ShapeDtypeStruct((1, *input_shape), jnp.float32),
        )
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"the model does not take inputs shaped {input_shape}: {_first_line(e)}"
        ) from e
    return int(out.shape[-1])


def check_settings(mode: str, epochs: Any, batch_size: Any) -> None:
    """Refuses an unknown ``mode`` and ``epochs`` or ``batch_size`` that are not whole
    numbers ``>= 0`` and ``>= 1``."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    whole = (int, np.integer)
    if not (isinstance(epochs, whole) and isinstance(batch_size, whole)) or (
        epochs < 0 or batch_size < 1
    ):
        raise ValueError(
            f"need integers epochs >= 0 and batch_size >= 1, got {epochs!r}, {batch_size!r}"
        )


def check_inputs(x: Any, y: Any, keep: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x float32, y int32, keep (k, n) bool)`` after checking shapes and values."""
    x, y = np.asarray(x), np.asarray(y)
    keep = as_mask(keep)
    if keep.ndim == 1:
        keep = keep[None]
    if keep.ndim != 2:
        raise ValueError(f"keep must be a (k, n) bool array, got shape {keep.shape}")
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


def check_heldout(heldout, keep: np.ndarray) -> np.ndarray | None:
    """``heldout`` as a bool ``(k, n)``, ``(1, n)`` or ``(n,)`` array (or None), checked
    against ``keep`` ``(k, n)``."""
    if heldout is None:
        return None
    k, n = keep.shape
    if (
        np.ndim(heldout) not in (1, 2)
        or np.shape(heldout)[-1] != n
        or (np.ndim(heldout) == 2 and np.shape(heldout)[0] not in (1, k))
    ):
        raise ValueError(f"heldout must be (k, n) or (n,) with n = {n}, got {np.shape(heldout)}")
    return as_mask(heldout, "heldout")


def check_validation(validation: Any, input_shape: tuple[int, ...], classes: int):
    """``(x_val float32 (v, *input_shape), y_val int32 (v,))`` of early stopping (or
    None), checked against the training inputs' shape and the model's ``classes``."""
    if validation is None:
        return None
    if not isinstance(validation, tuple | list) or len(validation) != 2:
        raise ValueError("validation must be a pair (x_val, y_val)")
    x_val, y_val = np.asarray(validation[0]), np.asarray(validation[1])
    if x_val.dtype.kind not in "biuf" or not np.issubdtype(y_val.dtype, np.integer):
        raise ValueError(
            f"validation needs numeric x_val and integer y_val, got {x_val.dtype} and {y_val.dtype}"
        )
    if x_val.shape[1:] != input_shape or y_val.shape != x_val.shape[:1]:
        raise ValueError(
            f"validation must be x_val (v, *{input_shape}) and y_val (v,) like x and y, "
            f"got {x_val.shape} and {y_val.shape}"
        )
    if y_val.size and (y_val.min() < 0 or y_val.max() >= classes):
        raise ValueError(
            f"validation labels must be in [0, {classes}) (the model's outputs), "
            f"got {y_val.min()}..{y_val.max()}"
        )
    return validation


def check_loss(loss_fn: LossFn, classes: int, batch_size: int) -> LossFn:
    """``loss_fn``, refused unless it maps ``(logits (b, c), labels (b,)) -> (b,)``."""
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable, got {loss_fn!r}")
    b = max(1, min(batch_size, 4))
    logits = jax.ShapeDtypeStruct((b, classes), jnp.float32)
    labels = jax.ShapeDtypeStruct((b,), jnp.int32)
    try:
        shape = jax.eval_shape(loss_fn, logits, labels).shape
    except Exception as e:  # a user function: any error means it does not fit
        raise ValueError(f"loss_fn(logits (b, c), labels (b,)) failed: {e}") from None
    if shape != (b,):
        raise ValueError(f"loss_fn must return per-example losses (b,) = ({b},), got {shape}")
    return loss_fn
