"""Safe file operations for pool directories: atomic writes, checksums, a lock.

A write goes to a temporary name in the same directory, is ``fsync``-ed and renamed over
the target (``os.replace``), so a killed process leaves either the old file or the new
one. The lock (``filelock``: ``flock`` on POSIX, ``msvcrt.locking`` on Windows) is
released by the OS if its process dies.

Threat model: a pool directory may live on a shared file system and may have been
prepared by someone else. jaxmia trusts nothing in it: every chunk is checked against
the SHA-256 in the manifest, nothing is unpickled, and jaxmia never writes or deletes
through a symbolic link (:func:`refuse_link`) and deletes only files whose exact names it
gives its own files (:func:`is_own`): the manifest, ``chunk-SSSSSS-EEEEEE.npz``,
``answers/labels-<32 hex digits>.npz``, the audit's target ``target-<32 hex digits>.npz``
and signals ``answers/signals-<32 hex digits>.npz`` (:mod:`jaxmia.audit.target_cache`,
:mod:`jaxmia.audit.signal_cache`) and their temporary files
``.<name>.<pid>.jaxmia-tmp``. Anything else in the directory is left alone, and makes
removing the pool (``--retrain``) refuse.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from typing import BinaryIO

import filelock
import numpy as np

__all__ = [
    "LOCK",
    "TMP_SUFFIX",
    "PoolError",
    "arrays_digest",
    "atomic_write",
    "is_own",
    "locked",
    "read_checked",
    "refuse_link",
    "sha256",
    "write_checked",
    "write_temporary",
]

LOCK = ".lock"
"""The lock file's name inside a pool directory."""
TMP_SUFFIX = ".jaxmia-tmp"
"""The suffix of jaxmia's temporary files (``.<name>.<pid>.jaxmia-tmp``)."""

_OWN_NAME = r"(manifest\.json|chunk-\d{6}-\d{6}\.npz|(labels|target|signals)-[0-9a-f]{32}\.npz)"
_OWN = re.compile(rf"^({_OWN_NAME}|\.{_OWN_NAME}\.\d+{re.escape(TMP_SUFFIX)})$")


class PoolError(ValueError):
    """A pool directory that cannot be used: missing, damaged, or not this command's."""


def refuse_link(path: pathlib.Path) -> None:
    """Raises :class:`PoolError` if ``path`` is a symbolic link: jaxmia never writes,
    deletes or locks through one (it could point outside the pool directory)."""
    if path.is_symlink():
        raise PoolError(
            f"{path} is a symbolic link; jaxmia writes and deletes only inside the pool "
            "directory, never through a link: remove the link"
        )


def is_own(f: pathlib.Path) -> bool:
    """Whether ``f`` is a regular file (not a link) whose exact name is one jaxmia gives
    its pool files or their temporary files: the only files it ever deletes."""
    return bool(_OWN.match(f.name)) and f.is_file() and not f.is_symlink()


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


def write_temporary(path: pathlib.Path, write: Callable[[BinaryIO], object]) -> pathlib.Path:
    """Writes ``path``'s contents through ``write(file)`` to its temporary name
    ``.NAME.PID.jaxmia-tmp`` beside it (opened with ``O_NOFOLLOW``: never through a link),
    synced to disk, and returns that name; the caller renames it over ``path``.

    Raises:
      OSError: naming ``path``; the temporary file is removed then.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags | getattr(os, "O_BINARY", 0), 0o644)
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: pathlib.Path, write: Callable[[BinaryIO], object]) -> None:
    """Writes ``path`` through ``write(file)`` to a temporary name, syncs it, renames it
    (:func:`write_temporary`); refuses a link at ``path`` or at its temporary name."""
    refuse_link(path)
    refuse_link(path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}"))
    tmp = write_temporary(path, write)
    try:
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(f"cannot write {path}: {e.strerror or e}") from None
    _fsync_dir(path.parent)


def sha256(path: pathlib.Path) -> str:
    """SHA-256 (hex) of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 (hex) of named arrays: each one's name, dtype, shape and bytes, by name."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{a.dtype}:{a.shape};".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def write_checked(path: pathlib.Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Writes ``arrays`` as an ``.npz`` with their :func:`arrays_digest` as ``sha256``,
    atomically (:func:`atomic_write`)."""
    digest = np.array(arrays_digest(arrays))
    atomic_write(path, lambda f: np.savez(f, sha256=digest, **arrays))


def read_checked(path: pathlib.Path) -> dict[str, np.ndarray] | None:
    """The arrays of a :func:`write_checked` file, or ``None`` when there is none, it is
    damaged or its arrays do not match their ``sha256`` (nothing is unpickled)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    check = arrays.pop("sha256", None)
    return arrays if check is not None and str(check) == arrays_digest(arrays) else None


@contextlib.contextmanager
def locked(path: pathlib.Path) -> Iterator[None]:
    """Holds an exclusive lock on ``path/.lock`` while the ``with`` block runs (the OS
    releases it if the process dies, so a killed run never leaves the pool locked)."""
    refuse_link(path / LOCK)
    with filelock.FileLock(path / LOCK, thread_local=False):
        yield
