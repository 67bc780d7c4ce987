"""Tests of jaxmia.datasets: bundled data, local files, normalisation and errors."""

from __future__ import annotations

import ast
import hashlib
import importlib.resources
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from jaxmia._src.datasets import (
    BUNDLED,
    DEFAULT,
    Dataset,
    DatasetError,
    describe,
    load,
    normalise_features,
    tables,
)

DATA = importlib.resources.files("jaxmia") / "data"
HUB_NAME = "jaxmia-test/does-not-exist"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """Keeps the `datasets` cache of tables read by a test inside tmp_path."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def _readme_hashes() -> dict[str, dict[str, str]]:
    """file -> {"x": sha256, "y": sha256}: the content hashes stated in data/README.md."""
    text = (DATA / "README.md").read_text()
    hashes = {}
    for section in text.split("\n## ")[1:]:
        file = section.split(":", 1)[0].strip()
        content = section[section.index("content sha256") :]
        hashes[file] = {
            k: re.search(rf"{k} `([0-9a-f]{{64}})`", content).group(1) for k in ("x", "y")
        }
    return hashes


def _write_npz(path: pathlib.Path, **arrays) -> pathlib.Path:
    np.savez(path, **arrays)
    return path


def _table(rng: np.random.Generator, n: int = 40) -> pd.DataFrame:
    """Features: one column in [0, 1], one far outside it, one constant; labels {1, 2, 5}."""
    return pd.DataFrame(
        {
            "unit": rng.random(n),
            "wide": rng.normal(50.0, 10.0, n),
            "const": np.full(n, 7.0),
            "target": np.resize([5, 1, 2], n),
        }
    )


# Bundled data.


@pytest.mark.parametrize(
    ("name", "shape", "num_classes"),
    [
        ("location30", (5010, 446), 30),
        ("digits", (1797, 64), 10),
        ("mnist", (10000, 28, 28, 1), 10),
    ],
)
def test_bundled_shapes_dtypes_ranges(name, shape, num_classes):
    ds = load(name)
    assert ds.x.shape == shape and ds.x.dtype == np.float32
    assert ds.y.shape == (shape[0],) and ds.y.dtype == np.int32
    assert ds.n == shape[0] and ds.input_shape == shape[1:]
    assert ds.num_classes == num_classes and ds.name == name
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    np.testing.assert_array_equal(np.unique(ds.y), np.arange(num_classes))


def test_bundled_location30_is_binary():
    assert set(np.unique(load("location30").x)) == {0.0, 1.0}


def test_bundled_names():
    assert BUNDLED == ("location30", "digits", "mnist")
    assert DEFAULT in BUNDLED


@pytest.mark.parametrize("file", ["location30.npz", "sklearn_digits.npz", "mnist_t10k.npz"])
def test_bundled_content_sha256_matches_readme(file):
    expected = _readme_hashes()[file]
    with (DATA / file).open("rb") as f, np.load(f, allow_pickle=False) as z:
        for k in ("x", "y"):
            digest = hashlib.sha256(np.ascontiguousarray(z[k]).tobytes()).hexdigest()
            assert digest == expected[k], f"{file}:{k}"


def test_import_does_not_import_hf_datasets():
    code = "import sys, jaxmia.datasets as d; d.load('digits'); print('datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_subset_and_describe():
    ds = load("digits")
    sub = ds.subset(np.array([3, 0, 5]))
    assert isinstance(sub, Dataset) and sub.n == 3 and sub.num_classes == 10
    np.testing.assert_array_equal(sub.x[1], ds.x[0])
    np.testing.assert_array_equal(sub.y, ds.y[[3, 0, 5]])
    assert ds.subset(ds.y == 4).n == int((ds.y == 4).sum())
    assert describe(ds) == "digits: 1797 examples, input shape (64,), 10 classes"


# Normalisation.


def test_normalise_features_tabular():
    x = np.array([[0.0, 10.0, 3.0], [0.5, 20.0, 3.0], [1.0, 30.0, 3.0]])
    out = normalise_features(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0], x[:, 0])  # already in [0, 1]
    np.testing.assert_allclose(out[:, 1], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)], rtol=1e-6)
    np.testing.assert_array_equal(out[:, 2], 0.0)  # constant outside [0, 1]


def test_normalise_features_images():
    x = np.array([0, 51, 255], np.uint8).reshape(3, 1, 1)
    np.testing.assert_allclose(normalise_features(x).ravel(), [0.0, 0.2, 1.0], rtol=1e-6)
    assert normalise_features(x).dtype == np.float32


# Local files.


def test_npz_tabular_remaps_labels_and_standardises(tmp_path):
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.random(30), rng.normal(100.0, 5.0, 30)])
    y = np.resize([5, 1, 2], 30)
    ds = load(_write_npz(tmp_path / "mine.npz", x=x, y=y))
    assert ds.name == "mine" and ds.x.shape == (30, 2) and ds.num_classes == 3
    np.testing.assert_allclose(ds.x[:, 0], x[:, 0], rtol=1e-6)
    np.testing.assert_allclose([ds.x[:, 1].mean(), ds.x[:, 1].std()], [0.0, 1.0], atol=1e-5)
    np.testing.assert_array_equal(ds.y, np.resize([2, 0, 1], 30))
    assert ds.y.dtype == np.int32


def test_npz_images_and_label_kinds(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    for y in (np.array([0.0, 1, 2, 0, 1, 2]), np.array([True, False] * 3)):
        ds = load(_write_npz(tmp_path / "img.npz", x=x, y=y))
        assert ds.input_shape == (4, 4, 3) and ds.x.dtype == np.float32
        np.testing.assert_allclose(ds.x, x / 255, rtol=1e-6)
        assert ds.num_classes == len(np.unique(y))


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_table_file(tmp_path, hf_cache, kind):
    df = _table(np.random.default_rng(2))
    path = tmp_path / f"tab.{kind}"
    df.to_csv(path, index=False) if kind == "csv" else df.to_parquet(path)
    ds = load(str(path))
    assert ds.name == "tab" and ds.x.shape == (40, 3) and ds.x.dtype == np.float32
    np.testing.assert_allclose(ds.x[:, 0], df["unit"], rtol=1e-6)  # [0, 1]: passed through
    np.testing.assert_allclose([ds.x[:, 1].mean(), ds.x[:, 1].std()], [0, 1], atol=1e-5)
    np.testing.assert_array_equal(ds.x[:, 2], 0.0)
    assert ds.num_classes == 3
    np.testing.assert_array_equal(ds.y, np.resize([2, 0, 1], 40))


def test_table_label_column_selection(tmp_path, hf_cache):
    df = pd.DataFrame({"label": [0.0, 1.0, 0.5, 0.25], "kind": [3, 3, 4, 4]})
    df.to_csv(path := tmp_path / "sel.csv", index=False)
    ds = load(path, label_column="kind")
    np.testing.assert_array_equal(ds.y, [0, 0, 1, 1])
    np.testing.assert_allclose(ds.x[:, 0], df["label"])  # the default label is now a feature
    with pytest.raises(DatasetError, match="labels are not integers"):
        load(path)  # the default label column, "label", holds fractions


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_table_text_columns_are_one_hot_features_and_class_labels(tmp_path, hf_cache, kind):
    """A tabular user's file: a categorical feature and a text label named on the
    command line (``--label-column income``)."""
    df = pd.DataFrame(
        {
            "age": [30.0, 40.0, 50.0, 60.0],
            "colour": ["red", "blue", "red", "green"],
            "income": [">50K", "<=50K", "<=50K", ">50K"],
        }
    )
    path = tmp_path / f"adult.{kind}"
    df.to_csv(path, index=False) if kind == "csv" else df.to_parquet(path)
    ds = load(path, label_column="income")
    assert ds.x.shape == (4, 4) and ds.num_classes == 2
    np.testing.assert_array_equal(ds.y, [1, 0, 0, 1])  # classes sorted: <=50K, >50K
    one_hot = ds.x[:, 1:]  # blue, green, red: 0/1 features pass through unchanged
    np.testing.assert_array_equal(one_hot, [[0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 0]])


def test_a_table_with_two_label_columns_is_refused_and_the_chosen_one_recorded(tmp_path, hf_cache):
    """Issue 23: with ``label`` and ``y``, ``y`` (the same labels) was fed to the model
    as a feature (input shape 65 on digits), and the report never said which column was
    the label."""
    df = pd.DataFrame({"a": [0.1, 0.5, 0.9, 0.3], "label": [0, 1, 0, 1], "y": [0, 1, 0, 1]})
    df.to_csv(path := tmp_path / "both.csv", index=False)
    with pytest.raises(DatasetError) as e:
        load(path)
    message = str(e.value)
    assert "2 possible label columns (label, y)" in message and "--label-column" in message
    assert "\n" not in message
    ds = load(path, label_column="y")
    assert ds.label_column == "y" and ds.input_shape == (2,)  # label is now a feature
    assert describe(ds) == "both: 4 examples, input shape (2,), 2 classes in column 'y'"
    df.drop(columns="y").to_csv(path, index=False)
    assert load(path).label_column == "label"  # the only candidate
    assert load("digits").label_column is None


def test_a_stray_string_in_a_numeric_column_is_refused_naming_it(tmp_path, hf_cache):
    """Issue 23: one stray string one-hot encoded the whole column (64 features became
    81) without a word."""
    rows = [f"{i},{i % 7}.5,{i % 2}" for i in range(12)]
    rows[4] = "4,oops,0"
    (path := tmp_path / "stray.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DatasetError) as e:
        load(path)
    message = str(e.value)
    assert "feature column 'b'" in message and "'oops' in data row 5" in message
    assert "1 such value(s)" in message and "\n" not in message
    half = "a,b,label\n1,2,0\n2,x,1\n3,4,0\n4,y,1\n"  # as many numbers as not: refused
    (path := tmp_path / "half.csv").write_text(half)
    with pytest.raises(DatasetError, match=r"'b' .* 'x' in data row 2, 2 such value"):
        load(path)
    path.write_text(half.replace("3,4,0", "3,z,0"))  # mostly text: a categorical column
    assert load(path).input_shape == (1 + 4,)  # a and b's one-hot values 2, x, y, z


def test_a_table_too_wide_is_refused_from_its_header_before_reading(tmp_path, monkeypatch):
    """Issue 23: a 14 MB csv of 3 rows and 10^6 columns ran for more than 10 minutes and
    reached 8 GB before any check. Its header is counted (up to the limit) first."""
    n = 2 * 10**5
    row = ",".join(["1"] * n)
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"f{i}" for i in range(n)) + ",label\n" + f"{row},0\n{row},1\n")
    import datasets as hf  # the reader of the rows, never reached

    monkeypatch.setattr(hf, "load_dataset", lambda *a, **k: pytest.fail("the rows were read"))
    with pytest.raises(DatasetError, match=r"more than 16385 columns \(16384 features"):
        load(path)
    # the header is counted only up to the limit (in 64 KiB blocks), not to its end; how
    # long the refusal takes is measured by benchmarks/wall_clock.py (under 2 s)
    assert tables.MAX_FEATURES + 2 <= tables._count_columns(path, "csv", tables.MAX_FEATURES + 2)
    assert tables._count_columns(path, "csv", tables.MAX_FEATURES + 2) < n // 4
    monkeypatch.setattr(tables, "MAX_FEATURES", 2)
    (quoted := tmp_path / "q.csv").write_text('\n"a,b",c,label\n1,2,0\n')  # 3 columns
    assert tables._count_columns(quoted, "csv", 10) == 3
    (wide := tmp_path / "w.csv").write_text('a,"b,c",d,label\n1,2,3,0\n')
    with pytest.raises(DatasetError, match=r"w\.csv has more than 3 columns"):
        load(wide)


def test_a_text_column_of_too_many_values_is_refused(tmp_path, hf_cache, monkeypatch):
    monkeypatch.setattr(tables, "MAX_FEATURES", 4)
    rows = "".join(f"{i},v{i % 4},{i % 2}\n" for i in range(8))
    (path := tmp_path / "t.csv").write_text("a,b,label\n" + rows)
    with pytest.raises(DatasetError, match=r"'b' .* 4 distinct text values: .* more than 4"):
        load(path)


def test_a_rewritten_table_is_read_anew(tmp_path, hf_cache):
    """``datasets`` keys its cache on path, size and mtime: a file rewritten with the same
    size and modification time was served from the stale cache."""
    path = tmp_path / "t.csv"
    path.write_text("a,label\n1,0\n2,1\n3,0\n")
    stat = path.stat()
    first = load(path)
    path.write_text("a,label\n7,1\n8,0\n9,1\n")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = load(path)
    np.testing.assert_array_equal(first.y, [0, 1, 0])
    np.testing.assert_array_equal(second.y, [1, 0, 1])


def test_parquet_image_column(tmp_path, hf_cache):
    import datasets
    from PIL import Image

    pixels = np.arange(3 * 5 * 4, dtype=np.uint8).reshape(3, 5, 4) * 4
    hf_ds = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(p) for p in pixels], "label": [0, 1, 1]},
        features=datasets.Features(
            {"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=2)}
        ),
    )
    hf_ds.to_parquet(path := tmp_path / "images.parquet")
    ds = load(path)
    assert ds.x.shape == (3, 5, 4, 1) and ds.x.dtype == np.float32
    np.testing.assert_allclose(ds.x[..., 0], pixels / 255, rtol=1e-6)
    np.testing.assert_array_equal(ds.y, [0, 1, 1])


# Errors.


def test_error_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"no such file: .*nope\.csv"):
        load(tmp_path / "nope.csv")


def test_error_unsupported_extension(tmp_path):
    (path := tmp_path / "data.txt").write_text("1,2\n")
    with pytest.raises(DatasetError, match=r"unsupported file type '\.txt'"):
        load(path)


def test_error_unknown_bundled_name():
    with pytest.raises(DatasetError, match=r"unknown dataset 'cifar'.*location30, digits, mnist"):
        load("cifar")


def test_error_label_column_for_npz_or_bundled(tmp_path):
    with pytest.raises(DatasetError, match="label_column='y' applies only to"):
        load("digits", label_column="y")
    path = _write_npz(tmp_path / "ok.npz", x=np.ones((2, 1)), y=np.array([0, 1]))
    with pytest.raises(DatasetError, match=r"label_column='y' applies only to .*ok\.npz"):
        load(path, label_column="y")


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros((3, 2))}, r"has no array 'y'; found arrays: x"),
        ({"features": np.zeros(3), "labels": np.zeros(3)}, r"has no array 'x' or 'y'"),
        ({"x": np.ones((3, 2)), "y": np.array(["a", "b", "a"])}, "labels are not integers"),
        ({"x": np.ones((3, 2)), "y": np.array([0.0, 0.5, 1.0])}, "labels are not integers"),
        ({"x": np.ones((3, 2)), "y": np.zeros(3, int)}, "need at least 2 classes, found 1"),
        ({"x": np.ones((4, 2)), "y": np.array([0, 1, 0])}, "x has 4 rows but y has 3 labels"),
        ({"x": np.ones((0, 2)), "y": np.zeros(0, int)}, "empty dataset"),
        (
            {"x": np.array([[np.nan, 1], [0, np.inf], [0, 1]]), "y": np.array([0, 1, 0])},
            r"features contain NaN or infinite values \(2 rows\)",
        ),
    ],
)
def test_error_npz(tmp_path, arrays, match):
    path = _write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError, match=match):
        load(path)


def test_error_npz_unreadable(tmp_path):
    (path := tmp_path / "junk.npz").write_bytes(b"not a zip archive")
    with pytest.raises(DatasetError, match=r"cannot read .*junk\.npz"):
        load(path)


@pytest.mark.parametrize(
    ("csv", "label_column", "match"),
    [
        ("a,b\n1,2\n3,4\n", None, r"no label column in .*: found columns a, b"),
        ("a,label\n1,0\n3,1\n", "kind", r"label column 'kind' not in .*: found columns a, label"),
        ("a,label\n1,0\n,1\n3,0\n", None, r"feature column 'a' .* 1 missing value\(s\).* fill"),
        ("a,s,label\n1,x,0\n3,,1\n", None, r"feature column 's' .* 1 missing value\(s\)"),
        ("a,label\n1,cat\n3,\n", None, r"label column 'label' .* 1 missing value\(s\)"),
        ("a,label\n", None, r"empty dataset: .*empty.csv has no rows"),
        ("label\n0\n1\n", None, "no feature columns"),
    ],
)
def test_error_csv(tmp_path, hf_cache, csv, label_column, match):
    name = "empty.csv" if csv.count("\n") == 1 else "bad.csv"
    (path := tmp_path / name).write_text(csv)
    with pytest.raises(DatasetError, match=match):
        load(path, label_column=label_column)


def test_error_parquet_empty_and_corrupt(tmp_path, hf_cache):
    pd.DataFrame({"a": pd.Series([], dtype=float), "label": pd.Series([], dtype=int)}).to_parquet(
        empty := tmp_path / "empty.parquet"
    )
    with pytest.raises(DatasetError, match="empty dataset"):
        load(empty)
    (junk := tmp_path / "junk.parquet").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"cannot read .*junk\.parquet"):
        load(junk)


def test_error_hf_without_name():
    with pytest.raises(DatasetError, match="names no dataset"):
        load("hf:")


@pytest.mark.slow
@pytest.mark.parametrize("offline", [True, False])
def test_hf_hub_unreachable_fails_fast_in_one_line(tmp_path, monkeypatch, offline):
    """The sandbox has no route to the hub; the error must be one clear line, quickly.

    Run in a subprocess: `datasets` reads HF_HUB_OFFLINE once, when it is imported.
    """
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # nothing cached
    code = (
        "from jaxmia.datasets import DatasetError, load\n"
        "try:\n"
        f"    load('hf:{HUB_NAME}')\n"
        "except DatasetError as e:\n"
        "    print(repr(str(e)))\n"
    )
    # how fast it fails is measured by benchmarks/wall_clock.py (under 30 s); the timeout
    # only keeps a hang from holding the suite
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert out.returncode == 0, out.stderr[-2000:]
    message = ast.literal_eval(out.stdout.strip().splitlines()[-1])  # repr of the message
    assert "\n" not in message and len(message) < 500
    assert "Hugging Face hub" in message and f"'{HUB_NAME}'" in message
