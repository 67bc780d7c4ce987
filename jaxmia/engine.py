"""The shadow-model engine: k models trained at once (``jax.vmap`` over models, ``jax.jit``
over whole epochs, sharded over devices), and pools of them kept on disk.

:func:`train` trains a pool, as a :class:`TrainingSpec` (optimizer, epochs, batch size,
loss, DP-SGD, objective, adversarial regularisation, early stopping) describes it, and
returns a :class:`Pool` (parameters with a leading model axis ``k``); :func:`predict`
gives its ``(k, n, c)`` logits and :func:`accuracies` its accuracies. With
``checkpoint_dir=``, a pool is saved chunk by chunk and the same call resumes an
interrupted run or reads the finished pool back (:class:`PoolError` when the directory
holds a pool of another spec or a damaged one).

Example::

    from jaxmia import engine, models, splits

    keep = splits.balanced_keep(16, len(y), seed=0)        # (16, n) membership
    pool = engine.train(models.mlp((128,), 10, 64), x, y, keep, epochs=20)
    logits = engine.predict(pool, x)                        # (16, n, 10)
"""

from jaxmia._src.engine.adversarial import AdvReg
from jaxmia._src.engine.dpsgd import DPConfig
from jaxmia._src.engine.inference import accuracies, apply, predict
from jaxmia._src.engine.kernel import LossFn, optimizer_steps, steps_per_epoch
from jaxmia._src.engine.objectives import Objective
from jaxmia._src.engine.placement import auto_chunk_size, model_mesh
from jaxmia._src.engine.sampling import DiracCanary
from jaxmia._src.engine.store.files import PoolError
from jaxmia._src.engine.training import Pool, ProgressFn, adam, model_keys, train
from jaxmia._src.engine.training_spec import TrainingSpec

__all__ = [
    "AdvReg",
    "DPConfig",
    "DiracCanary",
    "LossFn",
    "Objective",
    "Pool",
    "PoolError",
    "ProgressFn",
    "TrainingSpec",
    "accuracies",
    "adam",
    "apply",
    "auto_chunk_size",
    "model_keys",
    "model_mesh",
    "optimizer_steps",
    "predict",
    "steps_per_epoch",
    "train",
]
