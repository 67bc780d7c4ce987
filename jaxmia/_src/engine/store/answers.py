"""Cached answers of a pool's models: predicted labels on derived inputs, computed once.

``DIR/answers/labels-<digest>.npz`` holds the predicted labels ``labels`` ``(m, p)`` of
models ``models`` ``(m,)`` on some inputs (the label-only attack's perturbed queries;
the digest covers the inputs and the model indices) and ``sha256``, the digest of
``labels``. They are a cache: :func:`cached_labels` recomputes any that is missing or does
not match its digest, and a new pool starts without them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import jax
import numpy as np

from jaxmia._src.engine.store.files import (
    PoolError,
    atomic_write,
    inside,
    npz_layout,
    open_read,
    read_npz,
)

__all__ = ["ANSWERS", "answers_key", "cached_labels"]

ANSWERS = "answers"
"""The answers' subdirectory of a pool directory."""


def answers_key(x: np.ndarray, models: np.ndarray) -> str:
    """Digest of float32 inputs ``x`` (shape and values) and model indices ``models``:
    the name of their answers in ``DIR/answers/``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    digest = hashlib.sha256(str(x.shape).encode())
    digest.update(x.tobytes())
    digest.update(np.ascontiguousarray(models, dtype=np.int64).tobytes())
    return digest.hexdigest()[:32]


def cached_labels(
    path: str | os.PathLike,
    x: np.ndarray,
    models: np.ndarray,
    compute: Callable[[np.ndarray], np.ndarray],
    *,
    key: str | None = None,
) -> np.ndarray:
    """Predicted labels of the pool's models ``models`` on inputs ``x``, computed once.

    Args:
      path: the pool directory.
      x: ``(p, ...)`` inputs.
      models: ``(m,)`` indices of the pool models that ``compute`` runs.
      compute: ``x -> (m, p)`` integer labels.
      key: ``answers_key(x, models)`` if the caller has it already.

    Returns:
      ``(m, p)`` labels (int16 when they fit), read from ``DIR/answers/`` when an earlier
      call stored them for the same inputs and models.
    """
    key = answers_key(x, models) if key is None else key
    folder = inside(path, ANSWERS)
    file = inside(folder, f"labels-{key}.npz")
    if file.is_file():
        try:
            with open_read(file) as f:
                layout = npz_layout(f)  # read only the arrays it should hold, as big
                shapes = {name: (dtype.kind, shape) for name, (dtype, shape) in layout.items()}
                if shapes == {"labels": ("i", (np.size(models), x.shape[0])), "sha256": ("U", ())}:
                    data = read_npz(f, layout)
                    if str(data["sha256"]) == _digest(data["labels"]):
                        return data["labels"]
        except OSError:
            pass  # a damaged cache entry is recomputed
        except PoolError:
            inside(folder, file.name)  # a link planted since is refused, damage recomputed
    labels = np.asarray(compute(x))
    if labels.size and labels.min() >= -(2**15) and labels.max() < 2**15:
        labels = labels.astype(np.int16)
    if jax.process_index() == 0:  # several processes (jaxmia._src.engine.distributed): one writer
        folder.mkdir(exist_ok=True)
        atomic_write(file, lambda f: np.savez(f, labels=labels, sha256=np.array(_digest(labels))))
    return labels


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
