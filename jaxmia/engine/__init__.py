"""The shadow-model engine: k models trained at once (``jax.vmap`` over models, ``jax.jit``
over whole epochs, sharded over devices), pools of them on disk, several hosts.

The public API is re-exported here (``engine.train``, ``engine.predict``, ...); the
submodules hold the implementation.
"""

from jaxmia.engine import distributed, pools
from jaxmia.engine.shadow import (
    MODES,
    DPConfig,
    Pool,
    ProgressFn,
    accuracies,
    adam,
    apply,
    auto_chunk_size,
    model_keys,
    model_mesh,
    predict,
    train,
)

__all__ = [
    "MODES",
    "DPConfig",
    "Pool",
    "ProgressFn",
    "accuracies",
    "adam",
    "apply",
    "auto_chunk_size",
    "distributed",
    "model_keys",
    "model_mesh",
    "pools",
    "predict",
    "train",
]
