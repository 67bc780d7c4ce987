"""Output directories written as one consistent set of files, never half-written.

``jaxmia audit -o DIR`` (and ``study``) writes several files (metrics.json, scores.npz,
the plots, report.md). :func:`write_set` writes each to a temporary name first
(``.NAME.PID.jaxmia-tmp``, ``fsync``-ed), renames them into place only once every one is
complete, and then records the set in ``DIR/jaxmia-run.json`` (each file's SHA-256). So a
run that fails while writing (a full disk, a file-size limit) leaves the previous run's
files as they were, and its error names the file it could not write.

jaxmia overwrites only what it wrote: a file of one of its names that the run record
does not list with the same checksum (``report.md`` of the user's own, or edited since)
is refused by :func:`prepare_output_dir` before any training. :func:`claim` holds
``DIR/.jaxmia.lock`` for a whole run, so two runs on one directory fail fast instead of
the last writer winning.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import os
import pathlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import filelock

from jaxmia._src.engine.store.files import TMP_SUFFIX, sha256, write_temporary

__all__ = [
    "LOCK",
    "RUN_RECORD",
    "claim",
    "plots_available",
    "png",
    "prepare_output_dir",
    "write_set",
]

RUN_RECORD = "jaxmia-run.json"
"""The record of the files the last run wrote into an output directory."""
LOCK = ".jaxmia.lock"
"""The lock a run holds on its output directory."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _recorded(out: pathlib.Path) -> dict[str, str]:
    """``{file name: sha256}`` of the last run's record (empty if none or unreadable)."""
    try:
        record = json.loads((out / RUN_RECORD).read_text())
        files = record["files"]
        return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _file_sha256(path: pathlib.Path) -> str | None:
    try:
        return sha256(path)
    except OSError:
        return None


def _foreign(out: pathlib.Path, names: Iterable[str]) -> list[str]:
    """Files of ``names`` in ``out`` that jaxmia did not write (or that changed since)."""
    recorded = _recorded(out)
    found = []
    for name in names:
        path = out / name
        if path.is_symlink() or (path.exists() and recorded.get(name) != _file_sha256(path)):
            found.append(name)
    return found


def prepare_output_dir(path: str | os.PathLike, names: Iterable[str] = ()) -> pathlib.Path:
    """Creates ``path``, checks that a file can be written there, and that none of the
    files ``names`` a run will write there is someone else's.

    Raises:
      OSError: with a one-line message if the directory cannot be created or written,
        or holds a file of one of ``names`` that jaxmia did not write (or that was
        changed since): nothing is overwritten.
    """
    out = pathlib.Path(path)
    if not str(path):
        raise OSError("the output directory is an empty path; name one with -o DIR")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".jaxmia-write-test.{os.getpid()}{TMP_SUFFIX}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise OSError(f"cannot write to output directory {str(out)!r}: {e.strerror or e}") from None
    foreign = _foreign(out, names)
    if foreign:
        raise OSError(
            f"{out / foreign[0]} was not written by jaxmia (or was changed since); jaxmia "
            "overwrites only its own files: move it or choose another output directory"
        )
    return out


@contextlib.contextmanager
def claim(path: str | os.PathLike) -> Iterator[None]:
    """Holds the output directory ``path`` (created if needed) for one run.

    Raises:
      OSError: another run holds it.
    """
    out = pathlib.Path(path)
    out.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(out / LOCK, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise OSError(
            f"another jaxmia run is writing to {out}; wait for it or choose another "
            "output directory"
        ) from None
    try:
        yield
    finally:
        lock.release()


def write_set(path: str | os.PathLike, files: Mapping[str, bytes]) -> dict[str, str]:
    """Writes ``{name: contents}`` into the output directory ``path`` as one set: every
    file complete on disk before any replaces its predecessor, then the run record.
    Files of the previous run's record that this set does not rewrite (a plot that is
    not drawn this time) are removed, so the directory never mixes two runs.

    Returns:
      ``{name: path}`` of the files written.

    Raises:
      OSError: naming the file that could not be written; the previous files are intact.
    """
    out = prepare_output_dir(path, files)
    previous = _recorded(out)
    temporary: list[pathlib.Path] = []
    try:
        for name, data in files.items():
            temporary.append(write_temporary(out / name, lambda f, data=data: f.write(data)))
    except OSError:
        for tmp in temporary:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, name in zip(temporary, files, strict=True):
        os.replace(tmp, out / name)
    for name in set(previous) - set(files):
        stale = out / name
        if not stale.is_symlink() and _file_sha256(stale) == previous[name]:
            stale.unlink()  # the previous run's, provably (its checksum is recorded)
    record = {
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "files": {name: _sha256(data) for name, data in files.items()},
    }
    text = json.dumps(record, indent=2) + "\n"
    record_tmp = write_temporary(out / RUN_RECORD, lambda f: f.write(text.encode()))
    os.replace(record_tmp, out / RUN_RECORD)
    return {name: str(out / name) for name in files}


def plots_available() -> bool:
    """Whether matplotlib can be imported (plots are optional: ``pip install 'jaxmia[plot]'``)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def png(draw: Callable[[io.BytesIO], Any]) -> bytes:
    """The bytes ``draw(buffer)`` writes into an in-memory buffer (a figure to add to a
    :func:`write_set`)."""
    buffer = io.BytesIO()
    draw(buffer)
    return buffer.getvalue()
