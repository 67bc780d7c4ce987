"""The signals of model outputs kept in the pool directory, so that a rerun reads them
instead of computing them again (about 0.5 s for a pool of 64 x 5,010 records).

A signal is a pure function of the outputs, the labels and ``top_k``
(:func:`jaxmia.threat_models.observe`), so ``DIR/answers/signals-<key>.npz`` holds, for
one array of outputs, the scalar signals computed from it so far (and ``top_k``'s
probabilities), each under its name, and ``sha256``, the digest of all of them. ``key``
digests the outputs themselves (shape, dtype and every value), the labels, ``top_k``,
:data:`FORMAT` and the jaxmia version: outputs that differ in any value (another pool,
target or interface) read another file. The probability vectors ``(..., n, c)`` are not
kept (large, and cheap to recompute). A file that does not match its digest is
recomputed; files are written atomically, only into a directory that holds a shadow
pool, beside the pool's cached answers (:mod:`jaxmia._src.engine.store.answers`), and a new pool
there starts without them.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Iterable

import numpy as np

import jaxmia
from jaxmia import signals, threat_models
from jaxmia._src.engine.store import pools
from jaxmia._src.engine.store.files import Layout, inside, read_checked, write_checked

__all__ = ["FORMAT", "UNKEPT", "SignalCache"]

FORMAT = "jaxmia-signals/1"
"""Part of every key: a new layout or a change of the signals' code gives new keys."""

UNKEPT = frozenset({"probabilities", "sorted_probabilities"})
"""Signals computed anew every time: ``(..., n, c)`` arrays, cheap to recompute."""


class SignalCache:
    """:func:`jaxmia.threat_models.observe` that reads the signals a pool directory keeps
    and keeps those it computes (:meth:`save`); without a directory, ``observe`` itself.

    Args:
      pool_dir: the pool directory, or ``None``.
    """

    def __init__(self, pool_dir: str | os.PathLike | None):
        self._dir = None if pool_dir is None else pathlib.Path(pool_dir)
        self._kept: dict[str, dict[str, np.ndarray]] = {}  # key -> {signal: array}
        self._new: set[str] = set()  # keys whose signals grew
        self._keys: dict[tuple[int, int, int], tuple] = {}  # (ids, top_k) -> arrays, key

    def _key(self, logits: np.ndarray, labels: np.ndarray, top_k: int) -> str:
        seen = self._keys.get((id(logits), id(labels), top_k))
        if seen is not None and seen[0] is logits and seen[1] is labels:
            return seen[2]  # the same arrays again (the pool's LiRA phi): hashed once
        digest = hashlib.sha256(f"{FORMAT};{jaxmia.__version__};{top_k};".encode())
        for a in map(np.ascontiguousarray, (logits, labels)):
            digest.update(f"{a.dtype}:{a.shape};".encode())
            digest.update(a.tobytes())
        key = digest.hexdigest()[:32]
        self._keys[(id(logits), id(labels), top_k)] = (logits, labels, key)
        return key

    def _file(self, key: str) -> pathlib.Path:
        return inside(self._dir, pools.ANSWERS, f"signals-{key}.npz")

    def _read(self, key: str, logits: np.ndarray, top_k: int) -> dict[str, np.ndarray]:
        if key in self._kept:
            return self._kept[key]
        rows = tuple(np.shape(logits)[:-1])

        def expected(layout: Layout) -> bool:  # the signals of these outputs, checked unread
            return all(
                name in signals.SIGNALS
                and name not in UNKEPT
                and dtype.kind in "fiub"
                and shape == ((*rows, top_k) if name == "top_k_probabilities" else rows)
                for name, (dtype, shape) in layout.items()
            )

        kept = read_checked(self._file(key), expected) or {}
        for a in kept.values():
            a.setflags(write=False)  # as observe's (views of JAX arrays)
        self._kept[key] = kept
        return kept

    def observe(
        self,
        logits: np.ndarray,
        labels: np.ndarray,
        access: str,
        names: Iterable[str],
        *,
        top_k: int = 3,
    ) -> dict[str, np.ndarray]:
        """:func:`jaxmia.threat_models.observe` of the same arguments, with the signals
        this directory keeps for these outputs read instead of computed."""
        names = tuple(dict.fromkeys((names,) if isinstance(names, str) else names))
        threat_models.require(access, names, "this query")
        if self._dir is None:
            return threat_models.observe(logits, labels, access, names, top_k=top_k)
        key = self._key(logits, labels, top_k)
        kept = self._read(key, logits, top_k)
        missing = [n for n in names if n not in kept]
        computed = threat_models.observe(logits, labels, access, missing, top_k=top_k)
        if any(n not in UNKEPT for n in computed):
            kept.update({n: v for n, v in computed.items() if n not in UNKEPT})
            self._new.add(key)
        return {n: computed[n] if n in computed else kept[n] for n in names}

    def save(self) -> None:
        """Writes the signals computed since they were read, where the directory holds a
        shadow pool (else nothing; nor where they cannot be written: a cache)."""
        if self._dir is None or not (self._dir / pools.MANIFEST).is_file():
            return
        for key in sorted(self._new):
            try:
                (self._dir / pools.ANSWERS).mkdir(exist_ok=True)
                write_checked(self._file(key), self._kept[key])
            except OSError:  # a read-only or full directory: computed again next time
                break
        self._new.clear()
