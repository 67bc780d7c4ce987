"""Datasets: the bundled MIA benchmarks and loaders for the user's own data.

Every source becomes a :class:`Dataset`: float32 features ``x`` of shape ``(n, ...)``
and int32 labels ``y`` of shape ``(n,)`` with values ``0 .. num_classes - 1``.

Sources accepted by :func:`load`:

* a bundled name (:data:`BUNDLED`), read offline from ``jaxmia/data`` (see the README
  there for provenance and licences): ``"location30"`` (Shokri et al. 2017, 446 binary
  features, 30 classes), ``"digits"`` (scikit-learn 8x8 digits, flattened to 64
  features in ``[0, 1]``) and ``"mnist"`` (the MNIST test split, NHWC ``(n, 28, 28, 1)``
  in ``[0, 1]``);
* ``"hf:owner/name[:split]"``, a Hugging Face hub dataset (split ``"train"`` by default);
* a local ``.npz`` file with arrays ``x`` and ``y``, or a ``.csv`` / ``.parquet`` table
  with one label column and feature columns.

Features from non-bundled sources go through :func:`normalise_features`; labels that
are integers but not ``0 .. C-1`` are remapped to it in sorted order.

Bundled data is read by :mod:`jaxmia._src.datasets.bundled`, the hub by
:mod:`jaxmia._src.datasets.hub` and tables (csv, parquet, hub) by
:mod:`jaxmia._src.datasets.tables`: text feature columns one-hot encoded, text labels as
classes, missing values, ambiguous label columns and stray text in numeric columns
refused, at most :data:`MAX_FEATURES` features. The :class:`Dataset` records a table's
label column, which :func:`describe` states.

Example::

  ds = load("digits")
  describe(ds)  # 'digits: 1797 examples, input shape (64,), 10 classes'
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import zipfile

import numpy as np

from jaxmia._src.datasets import bundled, errors, hub, tables
from jaxmia._src.datasets.bundled import BUNDLED, DEFAULT
from jaxmia._src.datasets.errors import DatasetError, short
from jaxmia._src.datasets.tables import LABEL_COLUMNS, MAX_FEATURES

__all__ = [
    "BUNDLED",
    "DEFAULT",
    "LABEL_COLUMNS",
    "MAX_FEATURES",
    "SUFFIXES",
    "Dataset",
    "DatasetError",
    "bundled",
    "describe",
    "errors",
    "hub",
    "load",
    "normalise_features",
    "tables",
]

SUFFIXES = (".npz", ".csv", ".parquet")
"""File suffixes :func:`load` reads from a local path."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Examples and class labels held as host NumPy arrays.

    Attributes:
      x: ``(n, ...)`` float32 features.
      y: ``(n,)`` int32 labels in ``0 .. num_classes - 1``.
      num_classes: number of classes ``C``.
      name: where the data came from (a bundled name, a file stem or ``hf:...``).
      label_column: the column of a table (csv, parquet, hub) that holds the labels;
        ``None`` for bundled and ``.npz`` data.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str
    label_column: str | None = None

    @property
    def n(self) -> int:
        """Number of examples."""
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, ``x.shape[1:]``."""
        return tuple(self.x.shape[1:])

    def subset(self, idx: np.ndarray) -> Dataset:
        """The examples picked by ``idx``.

        Args:
          idx: ``(k,)`` integer indices or an ``(n,)`` bool mask.

        Returns:
          A :class:`Dataset` with the same ``num_classes`` and ``name``.
        """
        return dataclasses.replace(self, x=self.x[idx], y=self.y[idx])


def describe(ds: Dataset) -> str:
    """One-line summary, e.g. ``'digits: 1797 examples, input shape (64,), 10 classes'``;
    for a table, its label column too (``..., 2 classes in column 'income'``)."""
    text = f"{ds.name}: {ds.n} examples, input shape {ds.input_shape}, {ds.num_classes} classes"
    return text if ds.label_column is None else f"{text} in column {ds.label_column!r}"


def load(name_or_path: str | os.PathLike, *, label_column: str | None = None) -> Dataset:
    """Loads a bundled dataset, a Hugging Face hub dataset or a local file.

    Args:
      name_or_path: a name in :data:`BUNDLED`; ``"hf:owner/name"`` or
        ``"hf:owner/name:split"`` (split ``"train"`` if omitted); or the path of a
        ``.npz`` (arrays ``x`` and ``y``), ``.csv`` or ``.parquet`` file.
      label_column: for tables (csv, parquet, hub), the label column; by default the
        one of :data:`LABEL_COLUMNS` present (several: refused). All other columns are
        features (for a hub dataset with an image column, that column alone).

    Returns:
      The :class:`Dataset`; ``x`` is ``(n, d)`` for tables and ``(n, H, W, C)`` for images.

    Raises:
      DatasetError: the source is missing or unreadable, or its features or labels are
        unusable (non-numeric, NaN, non-integer labels, fewer than 2 classes, ...).
    """
    spec = os.fspath(name_or_path)
    if not isinstance(spec, str):
        raise DatasetError(f"expected a dataset name or path, got bytes {spec!r}")
    if spec in BUNDLED:
        _no_label_column(label_column, spec)
        x, y = bundled.read_bundled(spec)
        return Dataset(x=x, y=y, num_classes=int(y.max()) + 1, name=spec)
    if spec.startswith("hf:"):
        x, y, label_column = hub.read_hub(spec, label_column)
        return _build(x, y, name=spec, source=spec, label_column=label_column)
    path = pathlib.Path(spec)
    if not path.suffix and os.sep not in spec and "/" not in spec:
        raise DatasetError(
            f"unknown dataset {spec!r}: not a bundled name ({', '.join(BUNDLED)}), "
            "'hf:owner/name' or a .npz/.csv/.parquet file"
        )
    if not path.is_file():
        raise DatasetError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DatasetError(
            f"unsupported file type {path.suffix!r} for {path}; use one of {', '.join(SUFFIXES)}"
        )
    if suffix == ".npz":
        _no_label_column(label_column, str(path))
        return _build(*_read_npz(path), name=path.stem, source=str(path))
    x, y, label_column = tables.read_table(path, suffix[1:], label_column)
    return _build(x, y, name=path.stem, source=str(path), label_column=label_column)


def normalise_features(x: np.ndarray) -> np.ndarray:
    """Puts features on a common scale for training.

    * uint8 arrays with ``ndim >= 3`` are images: divided by 255.
    * 1-D and 2-D arrays are tables: each column is standardised to zero mean and unit
      variance, except columns already within ``[0, 1]``, which are kept; constant
      columns outside ``[0, 1]`` become 0.
    * anything else is only cast.

    Args:
      x: ``(n, ...)`` numeric (or bool) features.

    Returns:
      float32 array of the same shape.
    """
    x = np.asarray(x)
    if x.dtype == np.uint8 and x.ndim >= 3:
        return (x / np.float32(255)).astype(np.float32)
    if x.ndim > 2 or x.size == 0:
        return x.astype(np.float32)
    cols = x.reshape(len(x), -1).astype(np.float64)
    in_unit = (cols.min(axis=0) >= 0) & (cols.max(axis=0) <= 1)
    # Standardising is scale-free: columns so large that their squares could overflow
    # float64 (and silently become 0 or NaN) are divided by their largest magnitude first.
    span = np.abs(cols).max(axis=0)
    huge = span > 1e100
    cols_scaled = np.where(huge, cols / np.where(huge, span, 1.0), cols)
    std = cols_scaled.std(axis=0)
    scaled = (cols_scaled - cols_scaled.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return np.where(in_unit, cols, scaled).reshape(x.shape).astype(np.float32)


def _no_label_column(label_column: str | None, source: str) -> None:
    if label_column is not None:
        raise DatasetError(
            f"label_column={label_column!r} applies only to .csv, .parquet and hf: sources, "
            f"not {source}"
        )


def _read_npz(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise DatasetError(f"cannot read {path}: {short(e)}") from e
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DatasetError(f"{path} is not an .npz archive (np.load gave a single array)")
    with z:
        missing = [k for k in ("x", "y") if k not in z.files]
        if missing:
            raise DatasetError(
                f"{path} has no array {' or '.join(map(repr, missing))}; "
                f"found arrays: {', '.join(z.files) or 'none'}"
            )
        try:
            return z["x"], z["y"]
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise DatasetError(f"cannot read {path}: {short(e)}") from e


def _build(
    x: np.ndarray, y: np.ndarray, *, name: str, source: str, label_column: str | None = None
) -> Dataset:
    """Checks raw arrays, remaps labels, normalises features."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 0:
        raise DatasetError(f"features of {source} are a scalar, not an (n, ...) array")
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(f"labels of {source} must be 1-D, got shape {y.shape}")
    if len(x) != len(y):
        raise DatasetError(
            f"mismatched lengths in {source}: x has {len(x)} rows but y has {len(y)} labels"
        )
    if len(x) == 0:
        raise DatasetError(f"empty dataset: {source} has no rows")
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"features of {source} are not numeric (dtype {x.dtype})")
    if x[0].size == 0:
        raise DatasetError(f"{source} has no features: x has shape {x.shape}")
    if x.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1)))
        if bad:
            raise DatasetError(f"features contain NaN or infinite values ({bad} rows) in {source}")
    y, num_classes = _encode_labels(y, source)
    x = normalise_features(x)
    if not np.isfinite(x).all():
        raise DatasetError(f"features of {source} overflow float32 (|x| > 3.4e38)")
    return Dataset(x=x, y=y, num_classes=num_classes, name=name, label_column=label_column)


def _encode_labels(y: np.ndarray, source: str) -> tuple[np.ndarray, int]:
    """Integer labels as int32 ``0 .. C-1`` (sorted remap if needed) and ``C``."""
    if y.dtype.kind == "f":
        if not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise DatasetError(f"labels are not integers in {source} (non-integral or missing)")
    elif y.dtype.kind not in "biu":
        raise DatasetError(f"labels are not integers in {source} (dtype {y.dtype})")
    classes, y = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise DatasetError(f"need at least 2 classes, found {len(classes)} in {source}")
    return y.reshape(-1).astype(np.int32), len(classes)
