"""The shadow-model engine: k models trained at once (``jax.vmap`` over models, ``jax.jit``
over whole epochs, sharded over devices), pools of them on disk, several hosts.

The public API is re-exported here (``engine.train``, ``engine.predict``, ...). The
submodules, lowest first: ``caching`` (compiled programs cached by structure),
``dpsgd`` (DP-SGD), ``kernel`` (one model's init and epoch), ``fingerprint`` (digests
of model, optimizer, loss), ``placement`` (mesh, chunks), ``inference`` (predict),
``checks`` (input checks), ``early_stopping``, ``pools`` and ``answers`` (pools on
disk), ``checkpointing`` (what training writes there), ``sampling`` (Poisson-sampled DP-SGD
epochs and the Dirac canary), ``training`` (:func:`train`),
``distributed`` (several hosts).
"""

from jaxmia.engine import (
    answers,
    caching,
    checkpointing,
    checks,
    distributed,
    dpsgd,
    early_stopping,
    files,
    fingerprint,
    inference,
    kernel,
    manifest,
    placement,
    pools,
    sampling,
    training,
)
from jaxmia.engine.checks import MODES
from jaxmia.engine.dpsgd import DPConfig
from jaxmia.engine.inference import accuracies, apply, predict
from jaxmia.engine.kernel import LossFn, steps_per_epoch
from jaxmia.engine.placement import auto_chunk_size, model_mesh
from jaxmia.engine.sampling import DiracCanary
from jaxmia.engine.training import Pool, ProgressFn, adam, model_keys, train

__all__ = [
    "MODES",
    "DPConfig",
    "DiracCanary",
    "LossFn",
    "Pool",
    "ProgressFn",
    "accuracies",
    "adam",
    "answers",
    "apply",
    "auto_chunk_size",
    "caching",
    "checkpointing",
    "checks",
    "distributed",
    "dpsgd",
    "early_stopping",
    "files",
    "fingerprint",
    "inference",
    "kernel",
    "manifest",
    "model_keys",
    "model_mesh",
    "placement",
    "pools",
    "predict",
    "sampling",
    "steps_per_epoch",
    "train",
    "training",
]
