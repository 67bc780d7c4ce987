"""The shadow-model engine: k models trained at once (``jax.vmap`` over models, ``jax.jit``
over whole epochs, sharded over devices), pools of them on disk, several hosts.

The public API is re-exported here (``engine.train``, ``engine.predict``, ...). The
submodules, lowest first: ``caching`` (compiled programs cached by structure), ``dpsgd``
(DP-SGD), ``objectives`` (label smoothing, mixup, RelaxLoss, adversarial training),
``kernel`` (one model's init and epoch), ``adversarial`` (adversarial regularisation),
``fingerprint`` (digests of model, optimizer, loss), ``placement`` (mesh, chunks),
``inference`` (predict), ``checks`` (input checks), ``early_stopping``, ``pool`` (the
trained :class:`Pool`), ``pools`` and ``answers`` (pools on disk), ``checkpointing`` (what
training writes there), ``sampling`` (Poisson-sampled DP-SGD epochs and the Dirac canary),
``training_spec`` (:class:`TrainingSpec`, how a pool trains), ``training``
(:func:`train`), ``distributed`` (several hosts).
"""

from jaxmia._src.engine import (
    adversarial,
    caching,
    checks,
    distributed,
    dpsgd,
    early_stopping,
    fingerprint,
    inference,
    kernel,
    objectives,
    placement,
    pool,
    sampling,
    training,
    training_spec,
)
from jaxmia._src.engine.adversarial import AdvReg
from jaxmia._src.engine.checks import MODES
from jaxmia._src.engine.dpsgd import DPConfig
from jaxmia._src.engine.inference import accuracies, apply, predict
from jaxmia._src.engine.kernel import LossFn, optimizer_steps, steps_per_epoch
from jaxmia._src.engine.objectives import Objective
from jaxmia._src.engine.placement import auto_chunk_size, model_mesh
from jaxmia._src.engine.sampling import DiracCanary
from jaxmia._src.engine.store import answers, checkpointing, files, manifest, pools
from jaxmia._src.engine.training import Pool, ProgressFn, adam, model_keys, train
from jaxmia._src.engine.training_spec import TrainingSpec

__all__ = [
    "MODES",
    "AdvReg",
    "DPConfig",
    "DiracCanary",
    "LossFn",
    "Objective",
    "Pool",
    "ProgressFn",
    "TrainingSpec",
    "accuracies",
    "adam",
    "adversarial",
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
    "objectives",
    "optimizer_steps",
    "placement",
    "pool",
    "pools",
    "predict",
    "sampling",
    "steps_per_epoch",
    "train",
    "training",
    "training_spec",
]
