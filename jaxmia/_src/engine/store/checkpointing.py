"""What :func:`jaxmia.engine.train` writes to a pool directory and compares on resume.

The pool's spec (everything that determines its models besides their keep rows and
keys) and each chunk's records (keep rows, keys, losses, accuracies, the signals the
attacks need); the directory format itself is :mod:`jaxmia._src.engine.store.pools`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmia import signals
from jaxmia._src.engine import distributed
from jaxmia._src.engine.inference import accuracies
from jaxmia._src.engine.store import pools

__all__ = [
    "flatten",
    "leaf_name",
    "resumed_counts",
    "save_chunk",
    "signals_on",
    "unflatten",
]


def leaf_name(path: Sequence[Any]) -> str:
    """``"layers/0/kernel"``-style name of a pytree path."""
    parts = []
    for entry in path:
        for attr in ("key", "idx", "name"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


def _is_key(leaf: Any) -> bool:
    """Whether ``leaf`` is an array of typed PRNG keys."""
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def flatten(kind: str, tree: Any) -> list[tuple[str, str, np.ndarray]]:
    """``[(name, kind, host array)]`` of a stacked state; keys become key data."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if _is_key(leaf):
            out.append((f"{kind}/{leaf_name(path)}", "key", np.asarray(jax.random.key_data(leaf))))
        else:
            out.append((f"{kind}/{leaf_name(path)}", kind, np.asarray(leaf)))
    return out


def unflatten(shapes: Sequence[Any], leaves: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
    """The inverse of :func:`flatten`: ``(params, rest)`` with the structure of
    ``shapes`` (one model's state, e.g. from ``jax.eval_shape``) from named leaves
    ``(count, ...)``.

    Raises:
      PoolError: a variable is missing or has another shape than ``shapes`` gives it.
    """
    trees = []
    for kind, tree in zip(("params", "rest"), shapes, strict=True):
        flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
        out = []
        for path, shape in flat:
            name = f"{kind}/{leaf_name(path)}"
            if name not in leaves:
                raise pools.PoolError(f"the saved pool has no variable {name}")
            want = (jax.eval_shape(jax.random.key_data, shape) if _is_key(shape) else shape).shape
            if tuple(np.shape(leaves[name])[1:]) != want:
                raise pools.PoolError(
                    f"the saved pool's variable {name} has shape {np.shape(leaves[name])[1:]} "
                    f"per model, not the model's {want}"
                )
            a = jnp.asarray(leaves[name])
            out.append(jax.random.wrap_key_data(a) if _is_key(shape) else a)
        trees.append(jax.tree.unflatten(treedef, out))
    return tuple(trees)


def signals_on(logits: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The per-model signals a pool keeps: ``logits`` ``(m, n, c)``, ``loss`` and
    ``logit_scaled_confidence`` ``(m, n)``."""
    labels = np.broadcast_to(y, logits.shape[:2])
    return {
        "logits": logits,
        "loss": np.asarray(signals.loss(logits, labels)),
        "logit_scaled_confidence": np.asarray(signals.logit_scaled_confidence(logits, labels)),
    }


def save_chunk(
    store: pools.ChunkStore,
    start: int,
    params,
    rest,
    logits: np.ndarray,
    y: np.ndarray,
    keep: np.ndarray,
    heldout: np.ndarray | None,
    key_data: np.ndarray,
    losses: np.ndarray,
    best_epoch: np.ndarray | None,
    extra: Mapping[str, np.ndarray] | None = None,
    owners: np.ndarray | None = None,
) -> None:
    """Saves models ``[start, start + m)`` with their records.

    Args:
      store: the pool directory.
      start: the chunk's first model.
      params, rest: the chunk's stacked state (leading axis ``m``).
      logits: ``(m, n, c)`` outputs on the training data; y: ``(n,)`` labels.
      keep: ``(m, n)`` members; heldout: ``(m, n)`` held-out examples or None.
      key_data: ``(m, 2)`` uint32 keys; losses: ``(epochs, m)``.
      best_epoch: ``(m,)`` under early stopping, else None.
      extra: more per-model records (under DP-SGD: ``dp_counts`` ``(m, 4)`` and
        ``canary_keep`` ``(m,)``), or None.
      owners: across several processes, ``(m,)`` the process that writes each model
        (:func:`jaxmia._src.engine.distributed.save_parts`); None: this process writes all.
    """
    train_acc, test_acc = accuracies(logits, y, keep, heldout)
    records = {
        "keep": keep,
        "keys": key_data,
        "losses": losses,
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        **signals_on(logits, y),
    }
    if best_epoch is not None:
        records["best_epoch"] = best_epoch
    records.update(extra or {})
    leaves = flatten("params", params) + flatten("rest", rest)
    if owners is None:
        store.save_chunk(start, leaves, records)
    else:
        distributed.save_parts(store, start, leaves, records, owners)


def resumed_counts(resumed: pools.StoredModels, canary_keep: np.ndarray) -> np.ndarray:
    """``(count, 4)`` DP counts (:data:`jaxmia._src.engine.sampling.COUNTS`) of resumed models,
    after checking their canary flags against the run's ``canary_keep`` ``(k,)``. A pool
    saved without counts (DP-SGD over shuffled batches before they were recorded, or no
    DP) gets the shuffled epoch's: ``ceil(m / batch_size)`` steps and ``m`` members per
    epoch run.

    Raises:
      PoolError: the saved canary flags differ from the run's.
    """
    arrays, n = resumed.arrays, resumed.count
    saved = arrays.get("canary_keep", np.zeros(n, bool))
    if not np.array_equal(saved, canary_keep[:n]):
        raise pools.PoolError(
            f"the saved models hold the canary in other models than this run asks for; "
            f"{pools.RETRAIN}"
        )
    if "dp_counts" in arrays:
        return arrays["dp_counts"]
    members = arrays["keep"].sum(axis=1)
    epochs = (~np.isnan(arrays["losses"])).sum(axis=0)
    steps = -(-members // int(resumed.manifest["spec"]["batch_size"]))
    zeros = np.zeros_like(members)
    return np.stack([epochs * steps, epochs * members, zeros, zeros], axis=1).astype(np.int64)
