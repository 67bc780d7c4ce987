"""Where the models go: the device mesh, the chunk size, placing and gathering arrays.

The ``k`` models of a pool are sharded along their leading axis over a 1-D mesh
(:func:`model_mesh`, axis :data:`MODEL_AXIS`), of every device of every process; data
is replicated. On CPU, models are trained in chunks that fit the cache
(:func:`auto_chunk_size`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmia._src.engine.kernel import abstract_model
from jaxmia.models import ModelFactory

__all__ = [
    "CACHE_BUDGET_BYTES",
    "MODEL_AXIS",
    "auto_chunk_size",
    "auto_mesh",
    "gather",
    "layout",
    "model_mesh",
    "place",
    "vmapped_convs_are_slow",
]

MODEL_AXIS = "models"
"""Name of the mesh axis over which the k models are sharded."""

CACHE_BUDGET_BYTES = 12 * 2**20
"""Working set that one chunk of models may occupy on a CPU (all devices together)."""


def model_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"models"`` over ``devices`` (default: every device of
    every process, so the same code runs on one CPU, 8 forced CPU devices, several
    GPUs or hosts)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (MODEL_AXIS,))


def auto_chunk_size(
    factory: ModelFactory, input_shape: tuple[int, ...], batch_size: int, k: int
) -> int | None:
    """How many models to train at once.

    On CPU, as many as keep the estimated working set (parameters, gradients and two
    optimizer moments, plus the gathered batch ``(batch_size, *input_shape)``) within
    :data:`CACHE_BUDGET_BYTES`, split evenly into chunks of a multiple of the device
    count; on accelerators (or several processes), all of them.

    Returns:
      The chunk size, or None for all ``k`` models at once.
    """
    if jax.default_backend() != "cpu" or jax.process_count() > 1:
        return None
    params = nnx.state(abstract_model(factory), nnx.Param)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    per_model = 4 * (4 * n_params + 2 * batch_size * int(np.prod(input_shape)))
    devices = min(jax.device_count(), k)
    most = max(devices, CACHE_BUDGET_BYTES // max(per_model, 1))
    if most >= k:
        return None
    chunks = math.ceil(k / most)
    return math.ceil(math.ceil(k / chunks) / devices) * devices


def vmapped_convs_are_slow(factory: ModelFactory) -> bool:
    """Whether to train this model one at a time under ``chunk_size="auto"``.

    On CPU, a convolution vmapped over models (with different kernels) becomes a
    grouped convolution that XLA:CPU runs about 3x slower than one model at a time
    (measured: 4 CNNs on 1000 MNIST images, 12 s against 3.8 s per epoch; see
    benchmarks/README.md), so convolutional models are trained one at a time there.
    """
    if jax.default_backend() != "cpu":
        return False
    nodes = nnx.iter_graph(abstract_model(factory))
    return any(isinstance(node, nnx.Conv) for _, node in nodes)


def auto_mesh(k: int) -> Mesh | None:
    """Every device when several processes share the pool; otherwise up to ``k`` local
    devices (one model or one device needs no mesh: None)."""
    if jax.process_count() > 1:
        return model_mesh()
    if k < 2 or jax.device_count() < 2:
        return None
    return model_mesh(jax.devices()[: min(k, jax.device_count())])


def place(array: np.ndarray, mesh: Mesh | None, sharded: bool) -> jax.Array:
    """A global array from a host array that every process holds in full: sharded
    along axis 0 (the models) over the mesh, or replicated (the data)."""
    if mesh is None:
        return jnp.asarray(array)
    sharding = NamedSharding(mesh, P(MODEL_AXIS) if sharded else P())
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def gather(a: jax.Array, n: int) -> jax.Array | np.ndarray:
    """The first ``n`` models (rows) of ``a``; gathered to the host when the array spans
    several processes."""
    if getattr(a, "is_fully_addressable", True):
        return a[:n]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(a, tiled=True))[:n]


def layout(factory, k, x, batch_size, mode, chunk_size, mesh) -> tuple[str, int, Mesh | None]:
    """``(mode, chunk, mesh)`` of a :func:`jaxmia.engine.train` call: how many models to
    train at once and where (one model, or convolutions on CPU: ``"sequential"``)."""
    if jax.process_count() == 1 and (
        k == 1 or (chunk_size == "auto" and vmapped_convs_are_slow(factory))
    ):
        mode = "sequential"  # the per-model function itself, without a vmap axis
    if chunk_size == "auto":
        chunk_size = auto_chunk_size(factory, x.shape[1:], batch_size, k)
    if mesh == "auto":
        mesh = auto_mesh(k if chunk_size is None else min(int(chunk_size), k))
    if mode == "sequential":
        mesh = None
    per_step = 1 if mesh is None else mesh.size
    chunk = k if chunk_size is None else max(1, min(int(chunk_size), k))
    chunk = 1 if mode == "sequential" else math.ceil(chunk / per_step) * per_step
    return mode, chunk, mesh
