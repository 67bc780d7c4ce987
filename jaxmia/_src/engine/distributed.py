"""Several hosts: one shadow pool over every device of every process.

JAX's own multi-process runtime (:func:`jax.distributed.initialize`) joins the
processes; :func:`jaxmia.engine.train` then shards the ``k`` models over the global mesh
of all their devices, and every process ends with the whole pool. Run the same command
on each host, with the same data, seed and options, changing only ``process_id``::

    jaxmia audit --coordinator host0:1234 --num-processes 2 --process-id 0   # on host 0
    jaxmia audit --coordinator host0:1234 --num-processes 2 --process-id 1   # on host 1

Only process 0 writes the report. On CPU the processes talk through JAX's gloo
collectives.

Pools across processes (:func:`open_pool`, :func:`save_parts`). A pool directory
(``train(checkpoint=DIR)``; the audit's ``OUTPUT_DIR/pool`` or ``--pool DIR``) must be
one directory of a file system that every process shares (NFS or the like), at the same
path on every host: every process reads all of it.

* Who writes what: the models of a chunk are sharded over the mesh, and each belongs to
  the process whose devices hold it (:func:`chunk_owners`: the lowest such process when
  several do; process 0 when every process trains every model itself, without a mesh).
  Each process writes the files of its own models, one per contiguous run of them
  (``chunk-SSSSSS-EEEEEE.npz`` of :mod:`jaxmia._src.engine.store.pools`, so the pool reads like a
  single process's), atomically. No two processes write the same file.
* Barrier: once every process has written its files of a chunk (:func:`barrier`),
  process 0 checks that each is there (waiting up to :data:`FILE_TIMEOUT_S` seconds for
  a slow file system, else :class:`jaxmia.engine.PoolError`), hashes it and adds
  the chunk to the manifest. Process 0 alone writes the manifest (and removes a pool).
* Resume: the manifest lists the chunks that every process finished. The same command,
  run again on every host, reads those (every process reads every file; the processes
  check that they see the same pool) and trains from the first chunk not listed: a chunk
  that some process had saved when another died is trained again by all (training a
  chunk is collective) and its files are written anew, with the same bits. The pool
  ends as an uninterrupted run's, parameters bit for bit (``tests/test_pool_processes.py``
  kills one of two processes after its second file). ``chunk_size`` sets how much a
  crash can lose; ``"auto"`` trains all models as one chunk across processes.
* A process that dies stops the others at their next collective, once JAX's
  coordination service notices (its heartbeat timeout, 100 s by default); then run the
  command again on every host.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxmia._src.engine.store import pools
from jaxmia._src.engine.store.manifest import chunk_entry, chunk_file

__all__ = [
    "FILE_TIMEOUT_S",
    "barrier",
    "chunk_owners",
    "initialize",
    "is_main_process",
    "open_pool",
    "save_parts",
]

FILE_TIMEOUT_S = 60.0
"""How long process 0 waits to see a chunk file that another process wrote."""


def initialize(coordinator: str, num_processes: int, process_id: int) -> None:
    """Joins this process to a multi-process JAX runtime.

    Args:
      coordinator: ``host:port`` of process 0, reachable from every process.
      num_processes: total number of processes.
      process_id: this process's index, ``0 <= process_id < num_processes``.
    """
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(
            f"need 0 <= process_id < num_processes, got {process_id} and {num_processes}"
        )
    if ":" not in coordinator:
        raise ValueError(f"coordinator must be host:port, got {coordinator!r}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )


def is_main_process() -> bool:
    """Whether this process writes outputs (process 0, or the only one)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process has reached the barrier ``name`` (at once with one)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def open_pool(
    path: str | os.PathLike, spec: Mapping[str, Any], meta: Mapping[str, Any] | None = None
) -> pools.ChunkStore:
    """The pool directory ``path`` that :func:`jaxmia.engine.train` saves to, opened by
    every process: process 0 creates or checks the manifest, the others read it after
    a barrier; all refuse a pool of another ``spec`` alike (see the module docstring).
    One process: ``pools.ChunkStore(path, spec, meta)``.

    Raises:
      PoolError: another command's pool, or processes that see different pools (the
        directory is not shared).
    """
    if jax.process_count() == 1:
        return pools.ChunkStore(path, spec, meta)
    barrier("jaxmia-pool-open")  # process 0 has removed the pool it retrains
    store = pools.ChunkStore(path, spec, meta, write=False)  # the same refusals everywhere
    if is_main_process():
        store = pools.ChunkStore(path, spec, meta)
    barrier("jaxmia-pool-opened")
    if not is_main_process():
        store.reload()
    counts = np.asarray(multihost_utils.process_allgather(np.int64(store.count)))
    if np.unique(counts).size > 1:
        raise pools.PoolError(
            f"the processes see {counts.tolist()} models in the shadow pool at {path}: keep "
            "it on a file system that every process shares, at the same path"
        )
    return store


def chunk_owners(placed: jax.Array, n: int) -> np.ndarray:
    """``(n,)`` the process that saves each of the first ``n`` models of a chunk, from
    the chunk's array ``placed`` (leading axis: the chunk's models, padding included): the
    lowest process whose devices hold the model; 0 for an array that every process
    holds whole (no mesh)."""
    if getattr(placed, "is_fully_addressable", True) or jax.process_count() == 1:
        return np.zeros(n, np.int64)
    owners = np.full(placed.shape[0], jax.process_count(), np.int64)
    rows = np.arange(placed.shape[0])
    for device, index in placed.sharding.devices_indices_map(placed.shape).items():
        owners[rows[index[0]]] = np.minimum(owners[rows[index[0]]], device.process_index)
    return owners[:n]


def _runs(owners: np.ndarray) -> list[tuple[int, int, int]]:
    """``[(lo, hi, process)]``: the contiguous runs of rows with one owner."""
    edges = [0, *(np.flatnonzero(np.diff(owners)) + 1).tolist(), len(owners)]
    return [(lo, hi, int(owners[lo])) for lo, hi in itertools.pairwise(edges)]


def _rows(arrays: Mapping[str, np.ndarray], lo: int, hi: int) -> dict[str, np.ndarray]:
    """Models ``[lo, hi)`` of a chunk's records (``losses`` is ``(epochs, m)``)."""
    return {name: a[:, lo:hi] if name == "losses" else a[lo:hi] for name, a in arrays.items()}


def _wait_entry(path: pathlib.Path, start: int, stop: int, owner: int, timeout: float) -> dict:
    """The manifest entry of models ``[start, stop)``'s file, once process 0 sees it."""
    file, deadline = path / chunk_file(start, stop), time.monotonic() + timeout
    while not file.is_file():
        if time.monotonic() > deadline:
            raise pools.PoolError(
                f"process 0 does not see {file.name}, which process {owner} wrote to the "
                f"shadow pool at {path}, after {timeout:g} s: keep the pool on a file system "
                "that every process shares, at the same path"
            )
        time.sleep(0.05)
    return chunk_entry(path, start, stop)


def save_parts(
    store: pools.ChunkStore,
    start: int,
    leaves: Sequence[tuple[str, str, np.ndarray]],
    arrays: Mapping[str, np.ndarray],
    owners: np.ndarray,
    timeout: float = FILE_TIMEOUT_S,
) -> None:
    """Saves models ``[start, start + m)`` across processes: each process writes the
    files of the models it owns, then all wait at a barrier, then process 0 adds the files
    to the manifest (see the module docstring). Every process calls it with the whole
    chunk.

    Args:
      store: the pool (:func:`open_pool`).
      start: the chunk's first model.
      leaves: ``[(name, kind, (m, ...))]`` the chunk's variables
        (:func:`jaxmia._src.engine.store.checkpointing.flatten`).
      arrays: the chunk's records (``keep`` ``(m, n)``, ``losses`` ``(epochs, m)``, ...).
      owners: ``(m,)`` the process that writes each model (:func:`chunk_owners`).
      timeout: seconds process 0 waits to see another process's file.
    """
    runs = _runs(np.asarray(owners))
    for lo, hi, owner in runs:
        if owner == jax.process_index():
            part = [(name, kind, a[lo:hi]) for name, kind, a in leaves]
            store.write_models(start + lo, part, _rows(arrays, lo, hi))
    barrier(f"jaxmia-pool-chunk-{start}")
    if is_main_process():
        entries = [_wait_entry(store.path, start + a, start + b, p, timeout) for a, b, p in runs]
        store.add_chunks(entries, leaves, arrays["logits"])
