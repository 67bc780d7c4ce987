"""A pool's manifest (``DIR/manifest.json``, format in :mod:`jaxmia.engine.pools`): read
and checked field by field, so an edited or damaged manifest is refused in one line
(:class:`jaxmia.engine.files.PoolError`) instead of failing later with a ``KeyError``."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from jaxmia.engine.files import PoolError

__all__ = ["FORMAT", "MANIFEST", "VERSION", "read_manifest"]

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
    file = path / MANIFEST
    if not path.is_dir():
        raise PoolError(f"no shadow pool at {path}: not a directory")
    if not file.is_file():
        raise PoolError(f"no shadow pool at {path}: {MANIFEST} is missing")
    try:
        manifest = json.loads(file.read_text())
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
    chunks = manifest.get("chunks")
    if not isinstance(chunks, list) or not isinstance(manifest.get("spec"), dict):
        raise PoolError(f"damaged shadow pool at {path}: {MANIFEST} lacks chunks or spec")
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
