"""Early stopping: each model of a chunk keeps its parameters of its best validation epoch.

After every epoch the chunk's models are evaluated on one validation set; a model's
parameters are kept whenever its validation loss improves, and the chunk stops once no
model has improved for ``patience`` epochs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmia._src.engine.inference import apply_fn
from jaxmia._src.engine.kernel import LossFn, cross_entropy
from jaxmia._src.engine.placement import gather

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Tracks each model's validation loss and keeps its best parameters.

    Args:
      graphdef: the models' eval-mode ``nnx.GraphDef``.
      validation: ``(x_val (v, ...), y_val (v,))``.
      patience: epochs without improvement (for every model) before stopping.
      mode: ``"vmap"`` (stacked models) or ``"sequential"`` (one unstacked model).
      loss_fn: the per-example loss ``(logits (b, c), labels (b,)) -> (b,)``.

    Attributes:
      best_params, best_rest: the stacked state of each model's best epoch.
      best_epoch: ``(m,)`` each model's best epoch (0-based).
    """

    def __init__(
        self, graphdef, validation, patience: int, mode: str, loss_fn: LossFn = cross_entropy
    ):
        x_val, y_val = validation
        self.apply = apply_fn(graphdef)
        self.x = jnp.asarray(np.asarray(x_val, np.float32))
        self.y = jnp.asarray(np.asarray(y_val, np.int32))
        self.patience = patience
        self.stacked = mode != "sequential"
        self.loss_fn = loss_fn
        self.best_loss = None

    def _losses(self, params: Any, rest: Any) -> np.ndarray:
        """``(m,)`` mean validation loss of each model."""
        logits = self.apply(params, rest, self.x)  # (m, v, c)
        if self.loss_fn is cross_entropy:  # broadcast over models, as it always was
            loss = cross_entropy(logits, self.y[None]).mean(-1)
        else:
            m, v, c = logits.shape
            loss = self.loss_fn(logits.reshape(m * v, c), jnp.tile(self.y, m)).reshape(m, v)
            loss = loss.mean(-1)
        return np.asarray(gather(loss, loss.shape[0]))

    def update(self, epoch: int, params: Any, rest: Any) -> bool:
        """Records epoch ``epoch``; returns True when every model has stopped improving."""
        if not self.stacked:
            params, rest = jax.tree.map(lambda a: a[None], (params, rest))
        loss = self._losses(params, rest)
        if self.best_loss is None:
            self.best_loss = loss
            self.best_epoch = np.zeros(loss.shape, int)
            self.best_params = jax.tree.map(jnp.copy, params)
            self.best_rest = jax.tree.map(jnp.copy, rest)
        else:
            better = loss < self.best_loss
            pick = lambda new, old: jnp.where(
                jnp.asarray(better).reshape((-1,) + (1,) * (new.ndim - 1)), new, old
            )
            self.best_params = jax.tree.map(pick, params, self.best_params)
            self.best_rest = jax.tree.map(pick, rest, self.best_rest)
            self.best_loss = np.where(better, loss, self.best_loss)
            self.best_epoch = np.where(better, epoch, self.best_epoch)
        return bool(np.all(epoch - self.best_epoch >= self.patience))
