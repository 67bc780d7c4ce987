"""Tables (csv, parquet, Hugging Face hub) as features and raw labels, the way a tabular
user expects:

* the label column is ``label_column`` or else the one column named as in
  :data:`LABEL_COLUMNS`; a table with several such columns (``label`` and ``y``) is
  refused, since each other column is a feature and a second label would leak into the
  features. :func:`read_table` and :func:`to_arrays` return the label column's name;
* a text (categorical) feature column is one-hot encoded, one feature per distinct value
  in sorted order (a column ``colour`` with values ``blue``, ``red`` gives two features);
  a text column whose values are mostly numbers is refused, naming its first value that
  is not (a stray string in a numeric column), rather than one-hot encoded;
* a table may have at most :data:`MAX_FEATURES` columns and one-hot features, checked
  from the file's header (csv) or metadata (parquet) before any row is read;
* a text label column (e.g. ``income`` with ``<=50K`` and ``>50K``) is a class label,
  classes in sorted order;
* missing values are refused, naming the column and the count: jaxmia does not impute,
  since which records an audit sees decides what it measures. Fill or drop them first
  (for example ``pandas.read_csv(...).dropna().to_csv(...)``).

A table is read through the ``datasets`` library into a cache keyed on the file's
content (SHA-256), so a file rewritten in place is never served from a stale cache.
:func:`jaxmia.datasets.load` checks and normalises what :func:`read_table` and
:func:`to_arrays` return (:func:`jaxmia._src.datasets.hub.read_hub` reads the hub).
"""

from __future__ import annotations

import hashlib
import os
import pathlib

import numpy as np

from jaxmia._src.datasets.errors import DatasetError, short

__all__ = ["LABEL_COLUMNS", "MAX_FEATURES", "read_table", "to_arrays"]

LABEL_COLUMNS = ("label", "labels", "y", "target", "class")
"""Column names taken as the label of a table or hub dataset when no ``label_column`` is
given; a table with more than one of them is refused (which one is the label would be a
guess)."""

MAX_FEATURES = 16_384
"""The most feature columns (and features, counting each one-hot value) a table may
have, checked before ``datasets`` reads it: that takes about 3 ms a column (a csv of 3
rows and 10^4 columns: 35 s); a csv of 3 rows and 10^6 columns ran for more than 10
minutes and reached 8 GB. Wider data (images) belongs in an ``.npz`` file."""


def read_table(
    path: pathlib.Path, kind: str, label_column: str | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Reads a csv or parquet file through ``datasets.load_dataset``, once its columns
    are counted (at most :data:`MAX_FEATURES` + 1)."""
    try:
        if _table_is_empty(path, kind):
            raise DatasetError(f"empty dataset: {path} has no rows")
        columns = _count_columns(path, kind, MAX_FEATURES + 2)
    except DatasetError:
        raise
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read {path}: {short(e)}") from e
    if columns > MAX_FEATURES + 1:  # the features and the label
        raise DatasetError(
            f"{path} has more than {MAX_FEATURES + 1} columns ({MAX_FEATURES} features and a "
            "label at most); select the features first or store them as an .npz array"
        )
    import datasets  # heavy: imported only when a table is read

    try:
        hf_ds = datasets.load_dataset(
            kind, data_files=str(path), split="train", cache_dir=_table_cache_dir(path)
        )
    except DatasetError:
        raise
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as e:
        raise DatasetError(f"cannot read {path}: {short(e)}") from e
    return to_arrays(hf_ds, label_column, str(path))


def _table_cache_dir(path: pathlib.Path) -> str:
    """The ``datasets`` cache directory of a table: one per content (SHA-256 of the file),
    since ``datasets`` keys its own cache on the path, size and modification time and
    serves stale contents for a file rewritten with the same size within one second."""
    import datasets

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return os.path.join(datasets.config.HF_DATASETS_CACHE, "jaxmia-tables", digest.hexdigest())


def _count_columns(path: pathlib.Path, kind: str, stop: int) -> int:
    """The number of columns of a table, from a parquet file's metadata or a csv file's
    header line (commas outside double quotes), read in blocks and counted only up to
    ``stop``, so that a huge header costs no more than its first columns."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        return len(pq.read_schema(path).names)
    count, quoted, started = 1, False, False
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            if not started:  # blank lines before the header are skipped, as by the reader
                block = block.lstrip(b"\r\n")
                started = bool(block)
            for i, part in enumerate(block.split(b'"')):
                quoted ^= i > 0
                if quoted:
                    continue
                end = part.find(b"\n")
                if end >= 0:
                    return count + part.count(b",", 0, end)
                count += part.count(b",")
            if count >= stop:
                break
    return count


def _table_is_empty(path: pathlib.Path, kind: str) -> bool:
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows == 0
    with path.open("rb") as f:  # csv: a header and no data line
        lines = (line for line in f if line.strip())
        return next(lines, None) is None or next(lines, None) is None


def to_arrays(hf_ds, label_column: str | None, source: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Splits a ``datasets.Dataset`` into features and raw labels.

    Args:
      hf_ds: a ``datasets.Dataset``.
      label_column: the label column, or None for the one of :data:`LABEL_COLUMNS`.
      source: the file or hub name, for messages.

    Returns:
      ``x``, ``(n, d)`` numeric columns or ``(n, H, W, C)`` uint8 images, the raw labels
      ``(n,)`` and the label column's name.
    """
    import datasets

    columns = list(hf_ds.column_names)
    found = ", ".join(columns) or "none"
    if label_column is None:
        candidates = [c for c in LABEL_COLUMNS if c in columns]
        if not candidates:
            raise DatasetError(
                f"no label column in {source}: found columns {found}; "
                f"name one with label_column= (default: one of {', '.join(LABEL_COLUMNS)})"
            )
        if len(candidates) > 1:
            raise DatasetError(
                f"{source} has {len(candidates)} possible label columns "
                f"({', '.join(candidates)}); choose the label with --label-column (label_column= "
                "in Python or TOML): the others are then features"
            )
        label_column = candidates[0]
    elif label_column not in columns:
        raise DatasetError(f"label column {label_column!r} not in {source}: found columns {found}")
    feature_columns = [c for c in columns if c != label_column]
    if not feature_columns:
        raise DatasetError(f"{source} has no feature columns besides the label {label_column!r}")

    table = hf_ds.with_format("arrow")[:]
    y = _table_labels(table.column(label_column), label_column, source)
    features = hf_ds.features  # a deep copy at each access: read once, not per column
    images = [c for c in feature_columns if isinstance(features[c], datasets.Image)]
    if images:
        return _stack_images(hf_ds[images[0]], images[0], source), y, label_column
    columns, width = [], 0
    for c in feature_columns:
        columns.append(_table_feature(table.column(c), c, source, MAX_FEATURES - width))
        width += columns[-1].shape[1]
    return np.column_stack(columns), y, label_column


def _kind(arrow_type) -> str | None:
    """``"numeric"``, ``"text"`` or None for other arrow column types."""
    import pyarrow as pa

    t = pa.types
    if t.is_integer(arrow_type) or t.is_floating(arrow_type) or t.is_boolean(arrow_type):
        return "numeric"
    return "text" if t.is_string(arrow_type) or t.is_large_string(arrow_type) else None


def _missing(column, name: str, source: str, what: str) -> None:
    """Refuses missing values (jaxmia does not impute), with how to prepare the file."""
    if column.null_count:
        raise DatasetError(
            f"{what} column {name!r} of {source} has {column.null_count} missing value(s); "
            "jaxmia does not impute: fill or drop them first"
        )


def _table_labels(labels, name: str, source: str) -> np.ndarray:
    """``(n,)`` raw labels of a table: numbers, or text classes in sorted order."""
    import pyarrow as pa

    if _kind(labels.type) == "text":
        _missing(labels, name, source, "label")
        return np.unique(np.asarray(labels.to_pylist(), dtype=object), return_inverse=True)[1]
    if _kind(labels.type) != "numeric":
        raise DatasetError(
            f"labels are not integers: column {name!r} of {source} has type {labels.type}"
        )
    return labels.cast(pa.float64()).to_numpy() if labels.null_count else labels.to_numpy()


def _table_feature(column, name: str, source: str, room: int) -> np.ndarray:
    """``(n, 1)`` a numeric column or ``(n, v)`` the one-hot code of a text column with
    ``v`` distinct values (sorted), at most ``room`` features (else refused, as is a
    text column of mostly numbers)."""
    import pyarrow as pa

    if _kind(column.type) == "numeric":
        _missing(column, name, source, "feature")
        return column.cast(pa.float64()).to_numpy()[:, None]
    if _kind(column.type) == "text":
        _missing(column, name, source, "feature")
        text = column.to_pylist()
        _not_stray_text(text, name, source)
        values, codes = np.unique(np.asarray(text, dtype=object), return_inverse=True)
        if len(values) > room:
            raise DatasetError(
                f"feature column {name!r} of {source} has {len(values)} distinct text values: "
                f"one-hot encoded, the table would have more than {MAX_FEATURES} features; "
                "drop it or encode it first"
            )
        return (codes.reshape(-1)[:, None] == np.arange(len(values))).astype(np.float64)
    raise DatasetError(
        f"feature column {name!r} of {source} is neither numeric nor text (type {column.type})"
    )


def _not_stray_text(values: list[str], name: str, source: str) -> None:
    """Refuses a text column whose values are mostly numbers: a numeric column with
    stray strings, which one-hot encoding would silently turn into one feature per
    distinct number."""
    numbers = 0
    first = None  # the first value that is no number, and its row
    for row, value in enumerate(values, 1):
        try:
            float(value)
            numbers += 1
        except ValueError:
            first = first or (row, value)
    if first is not None and 2 * numbers >= len(values):
        raise DatasetError(
            f"feature column {name!r} of {source} holds numbers but also text: {first[1]!r} "
            f"in data row {first[0]}, {len(values) - numbers} such value(s) in all; fix or drop "
            "them (a text column is one-hot encoded only when its values are mostly not numbers)"
        )


def _stack_images(images, column: str, source: str) -> np.ndarray:
    """``(n, H, W, C)`` uint8 array from PIL images (greyscale if all are, else RGB)."""
    images = list(images)
    mode = "L" if all(im.mode == "L" for im in images) else "RGB"
    arrays = [np.asarray(im if im.mode == mode else im.convert(mode)) for im in images]
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) > 1:
        raise DatasetError(
            f"images in column {column!r} of {source} differ in size ({shapes[0]} .. "
            f"{shapes[-1]}); resize them to one size first"
        )
    x = np.stack(arrays) if arrays else np.zeros((0, 1, 1, 1), np.uint8)
    return x[..., None] if x.ndim == 3 else x
