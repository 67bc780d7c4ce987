"""The trained pool: ``k`` models of one architecture with a leading model axis, what
:func:`jaxmia.engine.train` returns (:mod:`jaxmia._src.engine.store.pools` keeps pools on disk)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

__all__ = ["Pool"]


@dataclasses.dataclass(frozen=True)
class Pool:
    """A trained pool of ``k`` models.

    Attributes:
      graphdef: the model's structure in evaluation mode (``nnx.GraphDef``).
      params: ``nnx.State`` of parameters, every leaf with leading axis ``k``.
      rest: ``nnx.State`` of the other variables (RNG streams, statistics), axis ``k``.
      keep: ``(k, n)`` bool, the training set of each model.
      train_accuracy: ``(k,)`` accuracy of each model on its members.
      test_accuracy: ``(k,)`` accuracy on its held-out examples.
      losses: ``(epochs, k)`` mean training loss per epoch and model.
      epoch_seconds: wall time of each epoch (the first includes compilation).
      best_epoch: ``(k,)`` the epoch each model was kept at under early stopping.
      logits: ``(k, n, c)`` every model's outputs on the ``n`` training-data records
        (computed chunk by chunk as the models finish, and saved with a checkpoint).
      dp_counts: under DP-SGD, ``{name: (k,) int}`` of :data:`jaxmia._src.engine.sampling.COUNTS`
        (steps taken, members sampled, overflow, canary inclusions) over the epochs run.
    """

    graphdef: Any
    params: Any
    rest: Any
    keep: np.ndarray
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    losses: np.ndarray
    epoch_seconds: tuple[float, ...]
    best_epoch: np.ndarray | None = None
    logits: np.ndarray | None = None
    dp_counts: Mapping[str, np.ndarray] | None = None

    @property
    def dp_overflow(self) -> np.ndarray | None:
        """``(k,)`` members dropped from overflowing Poisson batches (None without DP)."""
        return None if self.dp_counts is None else self.dp_counts["overflow"]

    @property
    def k(self) -> int:
        """The number of models."""
        return int(self.keep.shape[0])

    def model(self, i: int) -> nnx.Module:
        """Model ``i`` as an ordinary NNX module (evaluation mode)."""
        take = lambda a: a[i]
        return nnx.merge(
            self.graphdef, jax.tree.map(take, self.params), jax.tree.map(take, self.rest)
        )

    def select(self, idx: np.ndarray | slice) -> Pool:
        """The sub-pool of models ``idx`` (e.g. leave one out)."""
        take = lambda a: a[idx]
        return dataclasses.replace(
            self,
            params=jax.tree.map(take, self.params),
            rest=jax.tree.map(take, self.rest),
            keep=self.keep[idx],
            train_accuracy=self.train_accuracy[idx],
            test_accuracy=self.test_accuracy[idx],
            losses=self.losses[:, idx],
            best_epoch=None if self.best_epoch is None else self.best_epoch[idx],
            logits=None if self.logits is None else self.logits[idx],
            dp_counts=None
            if self.dp_counts is None
            else {name: a[idx] for name, a in self.dp_counts.items()},
        )
