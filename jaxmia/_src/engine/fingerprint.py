"""Fingerprints of what a pool was trained with: data, model structure, optimizer, loss.

A pool directory records them in its spec (:mod:`jaxmia._src.engine.store.pools`), so a command
with another architecture, optimizer or loss is refused instead of mixed into the pool.
An optax transformation keeps its hyperparameters in closures, and a loss is any
function, so both are fingerprinted by what they compute on fixed inputs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxmia._src.engine.caching import cache_by_structure
from jaxmia._src.engine.kernel import LossFn, abstract_model, graphdefs
from jaxmia.models import ModelFactory

__all__ = [
    "FINGERPRINT_STEPS",
    "data_fingerprint",
    "loss_digest",
    "optimizer_digest",
    "spec_differences",
    "structure_digest",
]

FINGERPRINT_STEPS = (10, 100, 1_000, 10_000, 100_000)
"""Step counts at which :func:`optimizer_digest` also samples the optimizer's update."""


def structure_digest(factory: ModelFactory) -> str:
    """SHA-256 (hex) of the model's structure (layers, shapes, dtypes), without addresses."""
    structure = re.sub(r" at 0x[0-9a-f]+", "", repr(graphdefs(factory)[0]))
    return hashlib.sha256(structure.encode()).hexdigest()


def _sample_updates(tx: optax.GradientTransformation, shapes):
    """The optimizer's first two updates and one at each of :data:`FINGERPRINT_STEPS`."""
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


@cache_by_structure()
def optimizer_digest(factory: ModelFactory, tx: optax.GradientTransformation) -> str:
    """SHA-256 (hex) of what the optimizer does to fixed parameters under a fixed gradient.

    An optax transformation's hyperparameters live in closures, so they cannot be read;
    instead this hashes its first two updates and, from the state after those, one update
    with every integer leaf of the state (the step counts) set to each of
    :data:`FINGERPRINT_STEPS`. Two optimizers that differ in kind or rate differ here, and
    so do learning-rate schedules that differ only later in training (a decay at step 500
    against one at step 5000). Cached by structure, like the compiled training programs.
    """
    shapes = nnx.state(abstract_model(factory), nnx.Param)
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(jax.jit(lambda: _sample_updates(tx, shapes))()):
        digest.update(np.asarray(leaf).tobytes())
    return digest.hexdigest()


def loss_digest(loss_fn: LossFn, num_classes: int) -> str:
    """SHA-256 (hex) of ``loss_fn``'s values on fixed logits ``(64, num_classes)`` and
    labels ``(64,)``: two losses that differ on such inputs differ here."""
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(0.0, 3.0, (64, num_classes)).astype(np.float32))
    labels = jnp.asarray(np.arange(64) % num_classes, jnp.int32)
    values = np.asarray(loss_fn(logits, labels), np.float32)
    return hashlib.sha256(values.tobytes()).hexdigest()


def data_fingerprint(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """``n``, the input shape and SHA-256 digests of the float32 features and int32
    labels: two datasets with equal fingerprints hold the same arrays."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.int32)
    return {
        "n": int(x.shape[0]),
        "input_shape": list(x.shape[1:]),
        "x_sha256": hashlib.sha256(x.tobytes()).hexdigest(),
        "y_sha256": hashlib.sha256(y.tobytes()).hexdigest(),
    }


def spec_differences(
    stored: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """``["epochs: pool 30, this command 10", ...]`` for every field that differs."""
    out = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key, "(absent)"), wanted.get(key, "(absent)")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += spec_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            show = lambda v: (v[:12] + "...") if isinstance(v, str) and len(v) > 16 else v
            out.append(f"{prefix}{key}: pool {show(a)}, this command {show(b)}")
    return out
