"""Safe file operations for pool directories: atomic writes, checksums, a lock.

A write goes to a temporary name in the same directory, is ``fsync``-ed and renamed over
the target (``os.replace``), so a killed process leaves either the old file or the new
one. The lock (``filelock``: ``flock`` on POSIX, ``msvcrt.locking`` on Windows) is
released by the OS if its process dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

import filelock

__all__ = ["LOCK", "atomic_write", "locked", "sha256"]

LOCK = ".lock"
"""The lock file's name inside a pool directory."""


def _fsync_dir(path: pathlib.Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: pathlib.Path, write: Callable[[BinaryIO], object]) -> None:
    """Writes ``path`` through ``write(file)`` to a temporary name, syncs it, renames it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def sha256(path: pathlib.Path) -> str:
    """SHA-256 (hex) of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def locked(path: pathlib.Path) -> Iterator[None]:
    """Holds an exclusive lock on ``path/.lock`` while the ``with`` block runs (the OS
    releases it if the process dies, so a killed run never leaves the pool locked)."""
    with filelock.FileLock(path / LOCK, thread_local=False):
        yield
