"""A pool's manifest (``DIR/manifest.json``, format in :mod:`jaxmia._src.engine.store.pools`): read
and checked field by field, so an edited or damaged manifest is refused in one line
(:class:`jaxmia.engine.PoolError`) instead of failing later with a ``KeyError``."""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxmia._src.engine.store.files import PoolError, inside, open_read, sha256

__all__ = [
    "FORMAT",
    "MANIFEST",
    "VERSION",
    "chunk_entry",
    "chunk_file",
    "read_manifest",
    "with_chunks",
]

FORMAT = "jaxmia-pool"
"""The ``format`` field of a pool's manifest."""
VERSION = 1
"""The format version this code writes and reads."""
MANIFEST = "manifest.json"
"""The manifest's file name inside a pool directory."""


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the pool at ``path``; :class:`PoolError` if there is none or it is
    not a jaxmia pool of a version this code reads."""
    path = pathlib.Path(path)
    file = inside(path, MANIFEST)
    if not path.is_dir():
        raise PoolError(f"no shadow pool at {path}: not a directory")
    if not file.is_file():
        raise PoolError(f"no shadow pool at {path}: {MANIFEST} is missing")
    try:
        with open_read(file) as f:
            manifest = json.loads(f.read().decode())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PoolError(
            f"damaged shadow pool at {path}: {MANIFEST} is not valid JSON ({e})"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PoolError(f"{path} is not a jaxmia shadow pool ({MANIFEST} has no format {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise PoolError(
            f"shadow pool {path} has format version {manifest.get('version')!r}; "
            f"this jaxmia reads version {VERSION}"
        )
    chunks, spec = manifest.get("chunks"), manifest.get("spec")
    if not isinstance(chunks, list) or not isinstance(spec, dict):
        raise PoolError(f"damaged shadow pool at {path}: {MANIFEST} lacks chunks or spec")
    if not isinstance(spec.get("data", {}), dict):
        raise PoolError(f"damaged shadow pool at {path}: spec.data is {spec['data']!r}")
    expected = 0
    for chunk in chunks:
        if not isinstance(chunk, dict) or chunk.get("start") != expected:
            raise PoolError(f"damaged shadow pool at {path}: its chunks are not contiguous")
        name = str(chunk.get("file", ""))
        if pathlib.Path(name).name != name or not name.endswith(".npz"):
            raise PoolError(f"damaged shadow pool at {path}: bad chunk file name {name!r}")
        if not _count(chunk.get("stop")) or chunk["stop"] <= expected:
            raise PoolError(
                f"damaged shadow pool at {path}: chunk {name} ends at {chunk.get('stop')!r}, "
                f"not after its start {expected}"
            )
        if not isinstance(chunk.get("sha256"), str):
            raise PoolError(f"damaged shadow pool at {path}: chunk {name} has no checksum")
        if not _count(chunk.get("bytes", 0)):
            raise PoolError(
                f"damaged shadow pool at {path}: chunk {name} has bytes {chunk['bytes']!r}"
            )
        expected = chunk["stop"]
    if manifest.get("k") != expected:
        raise PoolError(f"damaged shadow pool at {path}: k does not match its chunks")
    leaves = manifest.get("leaves")
    if not isinstance(leaves, list) or (expected and not leaves):
        raise PoolError(f"damaged shadow pool at {path}: {MANIFEST} lacks the variables")
    for leaf in leaves:
        if not (isinstance(leaf, dict) and isinstance(leaf.get("name"), str)):
            raise PoolError(f"damaged shadow pool at {path}: bad variable entry {leaf!r}")
    _check_notes(path, manifest, expected)
    return manifest


def _check_notes(path: pathlib.Path, manifest: dict[str, Any], k: int) -> None:
    """The manifest's non-finite list and the caller's notes (``meta``, with the audit's
    ``blocks``): the right types, or :class:`PoolError`."""
    non_finite = manifest.get("non_finite", [])
    if not isinstance(non_finite, list) or not all(_count(i) and i < k for i in non_finite):
        raise PoolError(f"damaged shadow pool at {path}: bad non_finite list {non_finite!r}")
    meta = manifest.get("meta", {})
    if not isinstance(meta, dict):
        raise PoolError(f"damaged shadow pool at {path}: meta is {meta!r}, not an object")
    blocks = meta.get("blocks", [k] if k else [])
    if not (
        isinstance(blocks, list)
        and all(_count(b) and b > 0 for b in blocks)
        and blocks == sorted(set(blocks))
        and (not k or (blocks and blocks[-1] >= k))
    ):
        raise PoolError(
            f"damaged shadow pool at {path}: meta.blocks is {blocks!r}, not increasing model counts"
        )


def chunk_file(start: int, stop: int) -> str:
    """The file name of models ``[start, stop)`` in a pool directory."""
    return f"chunk-{start:06d}-{stop:06d}.npz"


def chunk_entry(path: str | os.PathLike, start: int, stop: int) -> dict[str, Any]:
    """The manifest entry ``{file, start, stop, sha256, bytes}`` of the chunk file of models
    ``[start, stop)`` in the pool directory ``path`` (read to compute its SHA-256)."""
    file = inside(path, chunk_file(start, stop))
    with open_read(file) as f:
        digest = sha256(f)
        size = f.tell()
    return {"file": file.name, "start": start, "stop": stop, "sha256": digest, "bytes": size}


def with_chunks(
    manifest: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    leaves: Sequence[tuple[str, str, np.ndarray]],
    logits: np.ndarray,
) -> dict[str, Any]:
    """A copy of ``manifest`` with the chunk files ``entries`` (:func:`chunk_entry`,
    contiguous, models ``[start, stop)`` from its ``k``) added, their variables ``leaves``
    ``[(name, kind, (m, ...))]`` and the models among them whose ``logits`` ``(m, n, c)``
    are not all finite.

    Raises:
      PoolError: ``entries`` do not start at the manifest's ``k``.
    """
    start, stop = entries[0]["start"], entries[-1]["stop"]
    if start != manifest["k"]:
        raise PoolError(f"chunks from model {start} added to a pool of {manifest['k']}")
    bad = np.flatnonzero(~np.isfinite(logits.reshape(stop - start, -1)).all(axis=1)) + start
    out = dict(manifest)
    out["leaves"] = [
        {"name": name, "kind": kind, "shape": list(a.shape[1:]), "dtype": str(a.dtype)}
        for name, kind, a in leaves
    ]
    out["chunks"] = [*out["chunks"], *map(dict, entries)]
    out["k"] = stop
    out["non_finite"] = sorted({*out.get("non_finite", []), *bad.tolist()})
    return out
