"""Shadow pools on disk: save, resume after a crash, reuse for many audits, grow.

Training hundreds of shadow models is the expensive part of an audit, so a pool is kept
as a directory that :func:`jaxmia.engine.train` writes chunk by chunk (``checkpoint=``)
and that later audits read back without retraining (``jaxmia audit --pool DIR``).

Format ``jaxmia-pool``, version 1 (readable with NumPy and ``json`` alone; nothing in
it is pickled, and :func:`load` reads every array with ``allow_pickle=False``)::

    DIR/manifest.json              # what the pool is (below)
    DIR/chunk-000000-000008.npz    # models [0, 8)
    DIR/chunk-000008-000016.npz    # models [8, 16) ...

``manifest.json``:

* ``format`` (``"jaxmia-pool"``), ``version`` (1), ``jaxmia`` (the writing version);
* ``spec``: everything that determines the models besides their keep rows and keys:
  the data fingerprint (``n``, ``input_shape``, SHA-256 of the float32 features and
  int32 labels), ``architecture_sha256`` (of the ``nnx`` graph structure),
  ``optimizer_sha256`` (of the optimizer's updates of fixed parameters at several step counts), the
  epochs, batch size, DP-SGD and early-stopping settings, and what the caller adds (the
  audit: model description, learning rate, defence, seed, split scheme). A command
  whose spec differs is refused with the fields that differ, never mixed into the pool;
* ``k``: models saved so far; ``chunks``: ``[{file, start, stop, sha256, bytes}]`` in
  order, contiguous from 0. A chunk's SHA-256 is checked on every load, so a truncated
  or edited file is refused;
* ``leaves``: ``[{name, kind, shape, dtype}]`` of one model's variables, ``kind`` one of
  ``param``, ``rest`` (other NNX variables) or ``key`` (a PRNG key stored as its
  ``uint32`` key data); ``non_finite``: models whose outputs on the data are not all
  finite (diverged in training); ``meta``: the caller's notes (the audit writes the
  dataset name and ``blocks``, the ends of the balanced blocks a grown pool is made of;
  see :func:`jaxmia.splits.grown_balanced_keep`).

Each chunk ``.npz`` holds, for its ``m`` models: every leaf under its ``name`` with a
leading axis ``m``; ``keep`` ``(m, n)`` bool training sets; ``keys`` ``(m, 2)`` uint32
key data; ``losses`` ``(epochs, m)`` training loss per epoch; ``best_epoch`` ``(m,)``
(early stopping only); ``train_accuracy``, ``test_accuracy`` ``(m,)``; and the signals
the attacks need on all ``n`` records: ``logits`` ``(m, n, c)``, ``loss`` ``(m, n)`` and
``logit_scaled_confidence`` ``(m, n)`` (Carlini et al. 2022), computed from the raw
model outputs (before any output-perturbation interface).

Derived answers: ``DIR/answers/labels-<digest>.npz`` holds the predicted labels
``labels`` ``(m, p)`` of models ``models`` ``(m,)`` on some inputs (the label-only
attack's perturbed queries; the digest covers the inputs and the model indices) and
``sha256``, the digest of ``labels``. They are a cache: :func:`cached_labels` recomputes
any that is missing or does not match its digest, and a new pool starts without them.
The audit keeps two more caches there (:mod:`jaxmia._src.audit.target_cache`,
:mod:`jaxmia._src.audit.signal_cache`): ``DIR/target-<key>.npz``, the trained target keyed by
its full specification, and ``DIR/answers/signals-<key>.npz``, signals keyed by a digest
of the outputs they come from.

Writes are atomic (a temporary file in the same directory, ``fsync``, then
``os.replace``; the manifest is replaced only after its chunk is on disk), so a killed
run leaves the pool as of its last complete chunk, and the same command resumes there.
Each write holds a file lock on ``DIR/.lock`` (POSIX and Windows) and checks that the
manifest is still the one this run last wrote, so two runs on one directory fail instead
of interleaving. Across several processes each writes its own models' chunk files and
process 0 alone the manifest (:mod:`jaxmia._src.engine.distributed`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxmia._src.engine.fingerprint import data_fingerprint, spec_differences
from jaxmia._src.engine.store.answers import ANSWERS, answers_key, cached_labels
from jaxmia._src.engine.store.files import (
    LOCK,
    TMP_SUFFIX,
    PoolError,
    atomic_write,
    inside,
    is_own,
    locked,
    npz_layout,
    open_read,
    read_npz,
    sha256,
)
from jaxmia._src.engine.store.manifest import (
    FORMAT,
    MANIFEST,
    VERSION,
    chunk_entry,
    chunk_file,
    read_manifest,
    with_chunks,
)

__all__ = [
    "ANSWERS",
    "FORMAT",
    "MANIFEST",
    "RETRAIN",
    "SIGNALS",
    "VERSION",
    "ChunkStore",
    "PoolError",
    "StoredModels",
    "answers_key",
    "cached_labels",
    "data_fingerprint",
    "info",
    "load",
    "read_manifest",
    "remove",
    "spec_differences",
]

SIGNALS = ("logits", "loss", "logit_scaled_confidence")
"""The per-model signals every chunk holds on all ``n`` training-data records."""
RETRAIN = (
    "use another pool directory, or train this one anew (--retrain on the command line, "
    "jaxmia._src.engine.store.pools.remove in Python)"
)
"""The advice every refusal of an existing pool ends with."""


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value))


def _chunk_layout(manifest: Mapping[str, Any], chunk: Mapping[str, Any]) -> Callable:
    """``check(name, dtype, shape)``: whether an array may be in the chunk file of models
    ``[start, stop)`` of a pool with this manifest (see the module docstring): every leaf
    with the manifest's dtype and shape, ``(m, n)`` records, ``(epochs, m)`` losses."""
    m = chunk["stop"] - chunk["start"]
    spec = manifest["spec"]
    n = spec.get("data", {}).get("n")
    epochs = spec.get("epochs")
    leaves = {}
    for leaf in manifest["leaves"]:
        try:
            leaves[leaf["name"]] = (np.dtype(leaf["dtype"]), (m, *map(int, leaf["shape"])))
        except (TypeError, ValueError, KeyError):
            raise PoolError(f"bad variable entry {leaf!r} in {MANIFEST}") from None
    records = {
        "keep": ("b", (m, n)),
        "keys": ("u", (m, None)),
        "losses": ("f", (epochs, m)),
        "train_accuracy": ("f", (m,)),
        "test_accuracy": ("f", (m,)),
        "best_epoch": ("iu", (m,)),
        "logits": ("f", (m, n, None)),
        "loss": ("f", (m, n)),
        "logit_scaled_confidence": ("f", (m, n)),
        "dp_counts": ("iu", (m, None)),
        "canary_keep": ("b", (m,)),
    }

    def check(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> bool:
        if name in leaves:
            want, want_shape = leaves[name]
            same = dtype == want or (dtype.kind == "V" and dtype.itemsize == want.itemsize)
            return same and shape == want_shape
        if name not in records:
            return False
        kinds, want_shape = records[name]
        return (
            dtype.kind in kinds
            and len(shape) == len(want_shape)
            and all(w is None or s == w for s, w in zip(shape, want_shape, strict=True))
        )

    return check


def _open_chunk(path: pathlib.Path, manifest: Mapping[str, Any], chunk: Mapping[str, Any]):
    """The chunk's file, open, with its :func:`jaxmia._src.engine.store.files.npz_layout`, after
    checking its SHA-256 against the manifest and every array's name, dtype and shape
    against the manifest's variables and the records a chunk holds (before any is read)."""
    file = inside(path, chunk["file"])
    if not file.is_file():
        raise PoolError(f"damaged shadow pool at {path}: {chunk['file']} is missing")
    f = open_read(file)
    try:
        if sha256(f) != chunk.get("sha256"):
            raise PoolError(
                f"damaged shadow pool at {path}: {chunk['file']} does not match the checksum "
                f"in {MANIFEST} (truncated or modified); delete the pool or that chunk's entry"
            )
        try:
            layout = npz_layout(f)
        except PoolError as e:
            raise PoolError(
                f"damaged shadow pool at {path}: cannot read {chunk['file']} ({e})"
            ) from None
        check = _chunk_layout(manifest, chunk)
        wrong = [n for n, (dtype, shape) in layout.items() if not check(n, dtype, shape)]
        names = [leaf["name"] for leaf in manifest["leaves"]]
        missing = [n for n in [*names, "keep", "keys", "losses", *SIGNALS] if n not in layout]
        if wrong or missing:
            name = (wrong or missing)[0]
            what = f"holds {name} {layout[name][1]} {layout[name][0]}" if wrong else "lacks"
            raise PoolError(
                f"damaged shadow pool at {path}: {chunk['file']} {what}"
                + ("" if wrong else f" {name}")
                + f", not what {MANIFEST} describes"
            )
    except BaseException:
        f.close()
        raise
    return f, layout


def _read_chunk(
    path: pathlib.Path, manifest: Mapping[str, Any], chunk: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Every array of one chunk file, after checking it (:func:`_open_chunk`)."""
    f, layout = _open_chunk(path, manifest, chunk)
    with f:
        try:
            return read_npz(f, layout)
        except PoolError as e:
            raise PoolError(
                f"damaged shadow pool at {path}: cannot read {chunk['file']} ({e})"
            ) from None


@dataclasses.dataclass(frozen=True)
class StoredModels:
    """Models ``[0, count)`` read back from a pool directory.

    Attributes:
      count: number of models.
      leaves: ``{name: (count, ...) array}`` of every variable (keys as key data).
      arrays: ``{name: array}`` of the per-model records: ``keep`` ``(count, n)``,
        ``keys`` ``(count, 2)``, ``losses`` ``(epochs, count)``, ``train_accuracy``,
        ``test_accuracy``, ``best_epoch`` (if present) and the signals ``logits``
        ``(count, n, c)``, ``loss`` and ``logit_scaled_confidence`` ``(count, n)``.
      manifest: the pool's manifest.
    """

    count: int
    leaves: dict[str, np.ndarray]
    arrays: dict[str, np.ndarray]
    manifest: dict[str, Any]


def load(path: str | os.PathLike, count: int | None = None) -> StoredModels:
    """Reads the first ``count`` models (default all) of the pool at ``path``.

    Raises:
      PoolError: no pool there, a damaged manifest or chunk, or fewer than ``count``
        models.
    """
    path = pathlib.Path(path)
    manifest = read_manifest(path)
    count = manifest["k"] if count is None else count
    if count > manifest["k"]:
        raise PoolError(f"shadow pool {path} holds {manifest['k']} models, not {count}")
    names = [leaf["name"] for leaf in manifest["leaves"]]
    parts: dict[str, list[np.ndarray]] = {}
    for chunk in manifest["chunks"]:
        if chunk["start"] >= count:
            break
        data = _read_chunk(path, manifest, chunk)
        take = count - chunk["start"]
        for name, array in data.items():
            axis = 1 if name == "losses" else 0
            parts.setdefault(name, []).append(array[:, :take] if axis else array[:take])
    joined = {
        name: np.concatenate(a, axis=1 if name == "losses" else 0) for name, a in parts.items()
    }
    leaves = {n: joined.pop(n) for n in names if n in joined}
    return StoredModels(count=count, leaves=leaves, arrays=joined, manifest=manifest)


class ChunkStore:
    """A pool directory that :func:`jaxmia.engine.train` writes one chunk at a time.

    Args:
      path: the directory (created if needed).
      spec: JSON-able description of everything that determines the models besides
        their keep rows and keys; an existing pool with another spec is refused.
      meta: JSON-able notes kept in the manifest (not compared).
      write: False for a process that only reads the manifest (checked against ``spec``
        if there is one) and writes chunk files (:meth:`write_models`), while another
        process writes the manifest (several processes, :mod:`jaxmia._src.engine.distributed`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        spec: Mapping[str, Any],
        meta: Mapping | None = None,
        *,
        write: bool = True,
    ):
        self.path = pathlib.Path(path)
        self.spec = _jsonable(dict(spec))
        self.meta = _jsonable(dict(meta or {}))
        foreign = _foreign_files(self.path)
        if foreign and not (self.path / MANIFEST).exists():
            raise PoolError(
                f"{self.path} is not a shadow pool and holds other files or links "
                f"({', '.join(foreign[:3])}); keep a pool in an empty or new directory"
            )
        if not write:  # another process writes the manifest (jaxmia._src.engine.distributed)
            self.manifest = {"k": 0, "chunks": []}
            if (self.path / MANIFEST).exists():
                self.reload()
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PoolError(
                f"cannot create shadow pool directory {self.path}: {e.strerror}"
            ) from None
        with locked(self.path):
            self._open()

    def _open(self) -> None:
        inside(self.path, MANIFEST)
        inside(self.path, ANSWERS)
        for stale in self.path.iterdir():  # left by a killed writer (we hold the lock)
            if stale.name.endswith(TMP_SUFFIX) and is_own(stale):
                stale.unlink()
        if (self.path / MANIFEST).exists():
            self.reload()
        else:
            answers = self.path / ANSWERS
            if answers.is_dir():  # answers of models no longer here
                for file in answers.iterdir():
                    if is_own(file):
                        file.unlink()
            self.manifest = {
                "format": FORMAT,
                "version": VERSION,
                "jaxmia": _version(),
                "created": _now(),
                "spec": self.spec,
                "k": 0,
                "chunks": [],
                "leaves": [],
                "non_finite": [],
                "meta": self.meta,
            }
            self._write_manifest(self.manifest)

    def reload(self) -> None:
        """Reads the manifest from disk (a process that does not write it reads the one that
        process 0 wrote) and refuses a pool trained with another spec."""
        self.manifest = read_manifest(self.path)
        diff = spec_differences(self.manifest["spec"], self.spec)
        if diff:
            raise PoolError(
                f"the shadow pool at {self.path} was trained with other settings ("
                + "; ".join(diff[:4])
                + ("; ..." if len(diff) > 4 else "")
                + f"); {RETRAIN}"
            )

    @property
    def count(self) -> int:
        """Models saved so far."""
        return int(self.manifest["k"])

    def resume(self, keep: np.ndarray, keys: np.ndarray) -> StoredModels | None:
        """The saved models that this run would train, or None if there are none.

        Args:
          keep: ``(k, n)`` the run's keep matrix.
          keys: ``(k, 2)`` the run's key data.

        Raises:
          PoolError: a saved model's keep row or key differs from the run's.
        """
        if self.count == 0:
            return None
        stored = load(self.path, min(self.count, keep.shape[0]))
        n = stored.count
        if stored.arrays["keep"].shape != keep[:n].shape or not np.array_equal(
            stored.arrays["keep"], keep[:n]
        ):
            raise PoolError(
                f"the shadow pool at {self.path} trained its models on other members than "
                f"this command asks for (another seed, split scheme or split size); {RETRAIN}"
            )
        if not np.array_equal(stored.arrays["keys"], np.asarray(keys)[:n]):
            raise PoolError(
                f"the shadow pool at {self.path} was trained with other model keys "
                f"(another seed); {RETRAIN}"
            )
        return stored

    def save_chunk(
        self,
        start: int,
        leaves: Sequence[tuple[str, str, np.ndarray]],
        arrays: Mapping[str, np.ndarray],
    ) -> None:
        """Appends models ``[start, start + m)``: their leaves ``[(name, kind, (m, ...))]``
        (:func:`jaxmia._src.engine.store.checkpointing.flatten`) and per-model records (``keep``,
        ``keys``, ``losses``, accuracies, signals)."""
        with locked(self.path):
            self._check_unchanged()
            if start != self.count:
                raise PoolError(f"chunk starts at model {start}, but the pool has {self.count}")
            entry = self.write_models(start, leaves, arrays)
            self._commit([entry], leaves, arrays["logits"])

    def write_models(self, start: int, leaves, arrays: Mapping[str, np.ndarray]) -> dict:
        """Writes models ``[start, start + m)`` (as :meth:`save_chunk`) to their chunk file
        without adding them to the manifest; returns the file's entry
        (:func:`jaxmia._src.engine.store.manifest.chunk_entry`) for :meth:`add_chunks`."""
        file = inside(self.path, chunk_file(start, start + int(arrays["keep"].shape[0])))
        payload = {name: np.ascontiguousarray(a) for name, _, a in leaves}
        payload.update({name: np.ascontiguousarray(a) for name, a in arrays.items()})
        atomic_write(file, lambda f: np.savez(f, **payload))
        return chunk_entry(self.path, start, start + int(arrays["keep"].shape[0]))

    def add_chunks(self, entries: Sequence[Mapping[str, Any]], leaves, logits) -> None:
        """Adds chunk files on disk to the manifest: ``entries`` contiguous from
        :attr:`count`, of the models whose stacked ``leaves`` and ``logits`` ``(m, n, c)``
        these are (all entries together)."""
        with locked(self.path):
            self._check_unchanged()
            starts = [self.count, *(e["stop"] for e in entries[:-1])]
            if not entries or [e["start"] for e in entries] != starts:
                raise PoolError(f"the chunks do not follow the pool's {self.count} models")
            self._commit(entries, leaves, logits)

    def _check_unchanged(self) -> None:
        on_disk = read_manifest(self.path)
        if on_disk["chunks"] != self.manifest["chunks"]:
            raise PoolError(
                f"another run changed the shadow pool at {self.path} while this one was "
                "training; run one command per pool directory at a time"
            )

    def _commit(self, entries, leaves, logits) -> None:
        manifest = with_chunks(self.manifest, entries, leaves, logits)
        manifest["meta"] = {**manifest.get("meta", {}), **self.meta}
        self._write_manifest(manifest)
        self.manifest = manifest

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        manifest["updated"] = _now()
        text = json.dumps(manifest, indent=2) + "\n"
        atomic_write(inside(self.path, MANIFEST), lambda f: f.write(text.encode()))


def remove(path: str | os.PathLike) -> bool:
    """Deletes the shadow pool at ``path`` (its manifest, chunks, cached answers, lock
    and temporary files) and the directory if that leaves it empty, so that the next
    training run starts afresh. Returns whether there was a pool.

    Only files that carry the exact names jaxmia gives its own files are deleted
    (:func:`jaxmia._src.engine.store.files.is_own`), never through a symbolic link: a pool
    directory that is itself a link is refused (its files lie elsewhere).

    Raises:
      PoolError: ``path`` is a symbolic link, or holds anything else (it is not only a
        pool); nothing is deleted then.
    """
    path = pathlib.Path(path)
    if path.is_symlink():
        raise PoolError(
            f"{path} is a symbolic link; --retrain deletes a pool only in a directory, "
            "never through a link: nothing removed"
        )
    if not path.exists():
        return False
    if not path.is_dir():
        raise PoolError(f"{path} is not a shadow pool directory; nothing removed")
    answers = path / ANSWERS
    others = [f.name for f in path.iterdir() if _foreign(f)]
    if answers.is_dir() and not answers.is_symlink():
        others += [f"{ANSWERS}/{f.name}" for f in answers.iterdir() if not is_own(f)]
    if others:
        raise PoolError(
            f"{path} holds files that are not part of a shadow pool ({', '.join(others[:3])}"
            + (", ..." if len(others) > 3 else "")
            + "); nothing removed"
        )
    if (path / MANIFEST).exists():  # a foreign manifest.json is refused, a damaged one not
        try:
            found = json.loads((path / MANIFEST).read_text()).get("format", None)
        except (ValueError, AttributeError, UnicodeDecodeError):
            found = FORMAT
        if found != FORMAT:
            raise PoolError(f"{path} is not a jaxmia shadow pool; nothing removed")
    with locked(path):
        for f in [*path.iterdir(), *(answers.iterdir() if answers.is_dir() else ())]:
            if is_own(f):
                f.unlink()
        if answers.is_dir():
            answers.rmdir()
    (path / LOCK).unlink(missing_ok=True)
    if not any(path.iterdir()):
        path.rmdir()
    return True


def _foreign(f: pathlib.Path) -> bool:
    """Whether ``f`` is not what a pool directory holds: jaxmia's own files (exact names,
    no links), its lock and a real ``answers`` directory."""
    if f.name == LOCK:
        return f.is_symlink() or not f.is_file()
    if f.name == ANSWERS:
        return f.is_symlink() or not f.is_dir()
    return not is_own(f)


def _foreign_files(path: pathlib.Path) -> list[str]:
    """The names in ``path`` other than what an interrupted first chunk leaves (a chunk
    file or a temporary file written before the first manifest)."""
    if not path.is_dir():
        return []
    return sorted(f.name for f in path.iterdir() if f.name != MANIFEST and _foreign(f))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("jaxmia")
    except Exception:  # not installed: running from a source tree
        return "unknown"


def _shape(value: Any) -> Any:
    """A manifest's shape ``[d, ...]`` as a tuple (any other JSON value as it is)."""
    return tuple(value) if isinstance(value, list) else value


def info(path: str | os.PathLike) -> str:
    """A human-readable summary of the pool at ``path`` (``jaxmia pool info``), after
    checking every chunk against its checksum (:class:`PoolError` if one does not match)."""
    path = pathlib.Path(path)
    manifest = read_manifest(path)
    for chunk in manifest["chunks"]:  # a damaged pool is refused here too, not described
        _open_chunk(path, manifest, chunk)[0].close()
    spec = manifest["spec"]
    data = spec.get("data", {})
    training = {
        k: v for k, v in spec.items() if k not in ("data", "model") and not k.endswith("sha256")
    }
    size = sum(c.get("bytes", 0) for c in manifest["chunks"])
    lines = [
        f"shadow pool {path} ({FORMAT} v{manifest['version']}, jaxmia {manifest.get('jaxmia')})",
        f"  models:        {manifest['k']} in {len(manifest['chunks'])} chunk(s), "
        f"{size / 2**20:.1f} MiB",
        f"  data:          n = {data.get('n')}, input shape {_shape(data.get('input_shape', []))}, "
        f"x sha256 {str(data.get('x_sha256'))[:12]}...",
        f"  architecture:  {spec.get('model', '(not described)')}",
        "  training:      " + ", ".join(f"{k}={v}" for k, v in sorted(training.items())),
        f"  fingerprints:  architecture {str(spec.get('architecture_sha256'))[:12]}..., "
        f"optimizer {str(spec.get('optimizer_sha256'))[:12]}...",
        f"  non-finite:    {len(manifest.get('non_finite', []))} model(s)"
        + (f" {manifest['non_finite'][:10]}" if manifest.get("non_finite") else ""),
        f"  created:       {manifest.get('created')}, updated {manifest.get('updated')}",
        f"  checked:       every chunk matches its SHA-256 in {MANIFEST}",
    ]
    for key, value in manifest.get("meta", {}).items():
        lines.append(f"  {key + ':':14} {value}")
    planned = manifest.get("meta", {}).get("blocks") or [manifest["k"]]
    if manifest["k"] < planned[-1]:
        lines.append(
            f"  incomplete:    {manifest['k']} of {planned[-1]} models saved; the same "
            "command resumes it"
        )
    return "\n".join(lines)
