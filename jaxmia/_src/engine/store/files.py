"""Safe file operations for pool directories: atomic writes, checksums, a lock.

A write goes to a temporary name in the same directory, is ``fsync``-ed and renamed over
the target (``os.replace``), so a killed process leaves either the old file or the new
one. The lock (``filelock``: ``flock`` on POSIX, ``msvcrt.locking`` on Windows) is
released by the OS if its process dies.

Threat model: a pool directory may live on a shared file system and may have been
prepared by someone else. jaxmia trusts nothing in it: every chunk is checked against
the SHA-256 in the manifest, nothing is unpickled, and jaxmia never writes or deletes
through a symbolic link and deletes only files whose exact names it gives its own files
(:func:`is_own`): the manifest, ``chunk-SSSSSS-EEEEEE.npz``,
``answers/labels-<32 hex digits>.npz``, the audit's target ``target-<32 hex digits>.npz``
and signals ``answers/signals-<32 hex digits>.npz`` (:mod:`jaxmia._src.audit.target_cache`,
:mod:`jaxmia._src.audit.signal_cache`) and their temporary files
``.<name>.<pid>.jaxmia-tmp``. Anything else in the directory is left alone, and makes
removing the pool (``--retrain``) refuse.

Every path below a directory the user named is built by :func:`inside`, which refuses a
symbolic link at any component below that directory (the pool directory an audit keeps in
``OUTPUT_DIR/pool``, a chunk, the manifest, the lock, the cached answers), so nothing
outside the named directory is read, written or deleted through a link planted inside it;
files are opened for reading with ``O_NOFOLLOW`` too (:func:`open_read`). An ``.npz`` is
read only after every array's name, dtype and shape in its ``.npy`` header is checked
(:func:`npz_layout`), and only when each array is stored uncompressed and fills its entry
exactly: a planted header of ``(10**12,)`` or an array compressed a thousandfold is refused
before any memory is allocated for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import pathlib
import re
import stat
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
    "inside",
    "is_own",
    "locked",
    "npz_layout",
    "open_read",
    "read_checked",
    "read_npz",
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
    """Raises :class:`PoolError` if ``path`` is a symbolic link: jaxmia never reads, writes,
    deletes or locks through one (it could point outside the directory the user named)."""
    if path.is_symlink():
        raise PoolError(
            f"{path} is a symbolic link; jaxmia reads, writes and deletes only inside the "
            "directory you named, never through a link: remove the link"
        )


def inside(root: str | os.PathLike, *names: str) -> pathlib.Path:
    """``root/names[0]/names[1]/...``, a path below the directory ``root`` that the user
    named, after checking each of ``names``: a plain file name (not ``..``, no separator)
    and, where it exists, not a symbolic link. ``root`` itself may be a link (the user
    chose it); nothing below it is reached through one, so whatever jaxmia reads, writes,
    locks or deletes at the returned path lies inside ``root``.

    Raises:
      PoolError: a name is not a plain file name, or a component is a symbolic link.
    """
    path = pathlib.Path(root)
    for name in names:
        if name in ("", ".", "..") or pathlib.PurePath(name).name != name or "\\" in name:
            raise PoolError(f"{name!r} is not a file name inside {root}")
        path = path / name
        refuse_link(path)
    return path


def open_read(path: pathlib.Path) -> BinaryIO:
    """``path`` opened for reading, never through a symbolic link (``O_NOFOLLOW``) and only
    if it is a regular file (a FIFO or device is not opened to block or stream).

    Raises:
      PoolError: ``path`` is a link or not a regular file.
      OSError: it cannot be opened (e.g. missing).
    """
    refuse_link(path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except OSError as e:
        if os.path.islink(path):  # replaced by a link since the check (ELOOP)
            refuse_link(path)
        raise OSError(f"cannot read {path}: {e.strerror or e}") from None
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise PoolError(f"{path} is not a regular file")
    return f


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


def sha256(path: pathlib.Path | BinaryIO) -> str:
    """SHA-256 (hex) of the file at ``path`` (:func:`open_read`), or of an open file from
    its start (left at its end)."""
    if not isinstance(path, str | os.PathLike):
        path.seek(0)
        return hashlib.file_digest(path, "sha256").hexdigest()
    with open_read(pathlib.Path(path)) as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


Layout = dict[str, tuple[np.dtype, tuple[int, ...]]]
"""``{name: (dtype, shape)}`` of the arrays of an ``.npz`` file (:func:`npz_layout`)."""


def npz_layout(f: BinaryIO) -> Layout:
    """The name, dtype and shape of every array in the open ``.npz`` file ``f``, read from
    the ``.npy`` headers alone, without their data.

    Raises:
      PoolError: an entry that is not an ``.npy`` array, is compressed or does not hold
        exactly its header's array (so no array read afterwards is larger than the file),
        holds Python objects, or repeats a name; or a file that is not a zip archive.
    """
    size = os.fstat(f.fileno()).st_size
    f.seek(0)
    layout: Layout = {}
    try:
        with zipfile.ZipFile(f) as archive:
            for entry in archive.infolist():
                name = entry.filename.removesuffix(".npy")
                if (
                    name == entry.filename
                    or name in layout
                    or entry.compress_type != zipfile.ZIP_STORED
                    or entry.file_size != entry.compress_size
                    or entry.file_size > size
                ):
                    raise PoolError(f"{entry.filename!r} is not a stored .npy array")
                with archive.open(entry) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        header = np.lib.format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        header = np.lib.format.read_array_header_2_0(member)
                    else:
                        raise PoolError(f"{name!r} has .npy format version {version}")
                    shape, _, dtype = header
                    data = math.prod(shape) * dtype.itemsize
                    if dtype.hasobject or entry.file_size != member.tell() + data:
                        raise PoolError(f"{name!r} does not hold the array its header describes")
                layout[name] = (dtype, tuple(shape))
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        if isinstance(e, PoolError):
            raise
        raise PoolError(f"not a readable .npz file ({e})") from None
    f.seek(0)
    return layout


def read_npz(f: BinaryIO, layout: Layout) -> dict[str, np.ndarray]:
    """The arrays of the open ``.npz`` file ``f`` whose :func:`npz_layout` is ``layout``,
    each checked against it as read (nothing is unpickled).

    Raises:
      PoolError: the file cannot be read or does not match ``layout``.
    """
    f.seek(0)
    try:
        with np.load(f, allow_pickle=False) as data:
            arrays = {name: data[name] for name in layout}
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise PoolError(f"not a readable .npz file ({e})") from None
    for name, (dtype, shape) in layout.items():
        if arrays[name].dtype != dtype or arrays[name].shape != shape:
            raise PoolError(f"{name!r} changed while it was read")
    return arrays


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


def read_checked(
    path: pathlib.Path,
    expected: Callable[[Layout], bool] = lambda layout: True,
) -> dict[str, np.ndarray] | None:
    """The arrays of a :func:`write_checked` file, or ``None`` when there is none, it is
    damaged, its arrays do not match their ``sha256``, or ``expected`` (called with their
    names, dtypes and shapes, before any is read: :func:`npz_layout`) refuses them.

    Raises:
      PoolError: ``path`` is a symbolic link (it is never read through one).
    """
    if not path.is_file() or path.is_symlink():
        refuse_link(path)
        return None
    try:
        with open_read(path) as f:
            layout = npz_layout(f)
            check = layout.pop("sha256", None)
            if check is None or check[0].kind != "U" or check[1] != () or not expected(layout):
                return None
            arrays = read_npz(f, {**layout, "sha256": check})
    except PoolError:
        refuse_link(path)
        return None
    except OSError:
        return None
    check = arrays.pop("sha256")
    return arrays if str(check) == arrays_digest(arrays) else None


@contextlib.contextmanager
def locked(path: pathlib.Path) -> Iterator[None]:
    """Holds an exclusive lock on ``path/.lock`` while the ``with`` block runs (the OS
    releases it if the process dies, so a killed run never leaves the pool locked)."""
    with filelock.FileLock(inside(path, LOCK), thread_local=False):
        yield
