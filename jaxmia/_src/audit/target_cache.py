"""The audit's target model kept beside its shadow pool, so that a rerun reads it back
instead of training it again.

``DIR/target-<key>.npz`` in the pool directory holds the trained target as a pool of one
model: its variables under the names :func:`jaxmia._src.engine.store.checkpointing.flatten` gives
them, its records (``keep`` ``(1, n)``, ``losses`` ``(epochs, 1)``, ``train_accuracy``,
``test_accuracy`` ``(1,)``, ``logits`` ``(1, n, c)`` on the records, ``best_epoch`` and
the DP-SGD counts where there are any) and ``sha256``, the digest of all of them.

``key`` (:func:`target_key`) is a digest of everything that determines the model: the
engine's spec of a pool trained with the target's options
(:func:`jaxmia._src.engine.training_spec.pool_spec`: data fingerprint, architecture,
optimizer digest, epochs, batch size, DP-SGD, early stopping, objective, adversarial
regularisation), the audit's description of the training and defence, the seed, the
target's keep row and PRNG key. So any change of options, data or seed reads another
file, which is not there: the target is trained anew, never taken from another run. A
file that does not match its digest is trained anew too.

The file is written atomically (:func:`jaxmia._src.engine.store.files.atomic_write`) and only into a
directory that already holds a shadow pool (its manifest), after the pool: never into a
directory the pool is refused in. Its name is one of the pool directory's own
(:func:`jaxmia._src.engine.store.files.is_own`), so ``--retrain``
(:func:`jaxmia._src.engine.store.pools.remove`)
deletes it with the pool; jaxmia deletes nothing else for it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import zipfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmia import models
from jaxmia._src import engine
from jaxmia._src.engine import kernel, training_spec
from jaxmia._src.engine.store import checkpointing, pools
from jaxmia._src.engine.store.files import Layout, inside, read_checked, write_checked

__all__ = ["FORMAT", "load", "path_of", "save", "target_key"]

FORMAT = "jaxmia-target/1"
"""Part of every key: a new layout of the file gives new keys (old files are ignored)."""

_LEAVES = ("params/", "rest/")


def target_key(
    factory: models.ModelFactory,
    x: np.ndarray,
    y: np.ndarray,
    keep: np.ndarray,
    keys: jax.Array,
    spec: engine.TrainingSpec,
    extra: Mapping[str, Any],
) -> str:
    """The 32-hex-digit digest that names a target's file.

    Args:
      factory: the target's architecture.
      x, y: ``(n, ...)`` features and ``(n,)`` labels it trains on (its rows of ``keep``).
      keep: ``(n,)`` or ``(1, n)`` its members.
      keys: ``(1,)`` its PRNG key.
      spec: how it trains (:class:`jaxmia.engine.TrainingSpec`: every field enters the
        key through :func:`jaxmia._src.engine.training_spec.pool_spec`).
      extra: JSON-able settings the engine cannot see (the audit's description of the
        training and defence, the seed).
    """
    recorded = training_spec.pool_spec(factory, x, y, spec, classes=int(np.max(y)) + 1, extra=extra)
    digest = hashlib.sha256(FORMAT.encode())
    digest.update(json.dumps(recorded, sort_keys=True, default=str).encode())
    digest.update(np.ascontiguousarray(keep, dtype=bool).tobytes())
    digest.update(np.ascontiguousarray(jax.random.key_data(keys), dtype=np.uint32).tobytes())
    return digest.hexdigest()[:32]


def path_of(pool_dir: str | os.PathLike, key: str) -> pathlib.Path:
    """The target's file in the pool directory: ``DIR/target-<key>.npz``
    (:func:`jaxmia._src.engine.store.files.inside`: never a symbolic link)."""
    return inside(pool_dir, f"target-{key}.npz")


def _shapes(shapes) -> dict[str, tuple[int, ...]]:
    """``{leaf name: (1, ...)}`` of one model's ``(params, rest)`` shapes, as saved."""
    out = {}
    for kind, tree in zip(("params", "rest"), shapes, strict=True):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            shape = leaf.shape
            if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):  # saved as key data
                shape = (*shape, *jax.random.key_data(jax.random.key(0)).shape)
            out[f"{kind}/{checkpointing.leaf_name(path)}"] = (1, *shape)
    return out


_RECORDS = {
    "keep": ("b", (1, "n")),
    "losses": ("f", ("epochs", 1)),
    "train_accuracy": ("f", (1,)),
    "test_accuracy": ("f", (1,)),
    "logits": ("f", (1, "n", "c")),
    "best_epoch": ("iu", (1,)),
}
"""What each record of a target's file holds: its dtype kinds and shape (``n``, the
records, the same in every record; ``epochs`` and ``c`` any)."""
_REQUIRED = ("keep", "losses", "train_accuracy", "test_accuracy", "logits")


def _expected(leaves: Mapping[str, tuple[int, ...]], layout: Layout) -> bool:
    """Whether a target's file of this ``layout`` (names, dtypes and shapes, before any
    array is read) holds the variables ``leaves`` ``{name: (1, ...)}`` of the architecture,
    the records :func:`save` writes and nothing else."""
    if any(name not in layout for name in [*leaves, *_REQUIRED]):
        return False
    sizes: dict[str, int] = {}
    for name, (dtype, shape) in layout.items():
        if name in leaves:
            kinds, want = "fiub", leaves[name]
        elif name.startswith("dp_counts/"):
            kinds, want = "iu", (1,)
        else:
            kinds, want = _RECORDS.get(name, ("", ()))
        if dtype.kind not in kinds or len(shape) != len(want):
            return False
        for size, dim in zip(shape, want, strict=True):
            if size != (sizes.setdefault(dim, size) if isinstance(dim, str) else dim):
                return False
    return True


def save(pool_dir: str | os.PathLike, key: str, target: engine.Pool) -> pathlib.Path | None:
    """Writes the trained ``target`` (a pool of one model) as ``DIR/target-<key>.npz``,
    atomically, and returns its path; only where ``pool_dir`` holds a shadow pool, and
    ``None`` (nothing written) otherwise or where the file cannot be written (a cache)."""
    folder = pathlib.Path(pool_dir)
    if not inside(folder, pools.MANIFEST).is_file():
        return None
    arrays = {name: leaf for name, _, leaf in checkpointing.flatten("params", target.params)}
    arrays.update(
        {name: leaf for name, _, leaf in checkpointing.flatten("rest", target.rest)},
        keep=target.keep,
        losses=target.losses,
        train_accuracy=target.train_accuracy,
        test_accuracy=target.test_accuracy,
        logits=target.logits,
    )
    if target.best_epoch is not None:
        arrays["best_epoch"] = target.best_epoch
    for name, counts in (target.dp_counts or {}).items():
        arrays[f"dp_counts/{name}"] = np.asarray(counts)
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    file = path_of(folder, key)
    try:
        write_checked(file, arrays)
    except OSError:  # a read-only or full directory: the next run trains it again
        return None
    return file


def load(
    pool_dir: str | os.PathLike,
    key: str,
    factory: models.ModelFactory,
    tx: optax.GradientTransformation,
) -> engine.Pool | None:
    """The target saved as ``DIR/target-<key>.npz``, as :func:`jaxmia.engine.train` returned
    it (``epoch_seconds`` empty), or ``None`` when there is none or it does not match its
    digest or the architecture (then the caller trains it anew)."""
    file = path_of(pool_dir, key)
    one = functools.partial(kernel.init_one, factory, tx)
    shapes = jax.eval_shape(one, jnp.zeros((2,), jnp.uint32))[:2]
    arrays = read_checked(file, functools.partial(_expected, _shapes(shapes)))
    if arrays is None:
        return None  # none, damaged, or of another architecture: trained anew
    try:
        # on the device first: jnp.asarray of a NumPy array (in unflatten) compiles a copy
        leaves = {n: jax.device_put(a) for n, a in arrays.items() if n.startswith(_LEAVES)}
        params, rest = checkpointing.unflatten(shapes, leaves)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError):
        return None  # damaged, or of another structure: trained anew
    counts = {n.split("/", 1)[1]: a for n, a in arrays.items() if n.startswith("dp_counts/")}
    return engine.Pool(
        graphdef=kernel.graphdefs(factory)[1],
        params=params,
        rest=rest,
        keep=arrays["keep"],
        train_accuracy=arrays["train_accuracy"],
        test_accuracy=arrays["test_accuracy"],
        losses=arrays["losses"],
        epoch_seconds=(),
        best_epoch=arrays.get("best_epoch"),
        logits=arrays["logits"],
        dp_counts=counts or None,
    )
