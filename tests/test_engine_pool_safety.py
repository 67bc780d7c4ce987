"""A hostile or careless pool directory (issue 13, items 1, 8 and 9): jaxmia writes and
deletes nothing outside it, deletes only files it wrote, and refuses damaged manifests
in one line."""

import json
import os

import numpy as np
import pytest
from helpers import run_cli

from jaxmia import models, splits
from jaxmia._src import engine
from jaxmia._src.engine.store import pools

QUICK = ["--dataset", "digits", "--shadows", "4", "--epochs", "3", "--n-boot", "0", "-q"]


@pytest.fixture
def outside(tmp_path):
    """A directory of the user's own files, which no pool operation may touch."""
    d = tmp_path / "Documents"
    d.mkdir()
    for name in ("thesis.tex", "labels-" + "0" * 32 + ".npz", "chunk-000000-000004.npz"):
        (d / name).write_text("mine")
    return d


def intact(d) -> dict[str, str]:
    return {f.name: f.read_text() for f in sorted(d.iterdir())}


@pytest.fixture(scope="module")
def tiny(small_digits):
    ds = small_digits.subset(np.arange(80))
    return ds, models.mlp((8,), ds.num_classes, 64)


def train(tiny, path):
    ds, factory = tiny
    keep = splits.balanced_keep(2, ds.n, seed=0)
    return engine.train(factory, ds.x, ds.y, keep, epochs=1, batch_size=16, checkpoint=path)


def test_a_linked_answers_directory_is_refused_by_the_audit(tmp_path, outside, capsys):
    """The reproduction: ``mkdir P; ln -s ~/Documents P/answers; jaxmia audit --pool P``
    deleted every file in ~/Documents and wrote its labels there."""
    pool = tmp_path / "P"
    pool.mkdir()
    (pool / "answers").symlink_to(outside)
    before = intact(outside)
    rc, _, err = run_cli(["audit", *QUICK, "--pool", str(pool), "-o", str(tmp_path / "o")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "link" in err, err
    assert intact(outside) == before


@pytest.mark.slow
def test_a_link_put_into_a_trained_pool_is_never_written_through(tiny, tmp_path, outside):
    train(tiny, tmp_path / "P")
    (tmp_path / "P" / "answers").symlink_to(outside)
    before = intact(outside)
    with pytest.raises(pools.PoolError, match="symbolic link"):
        pools.cached_labels(tmp_path / "P", np.zeros((3, 64)), np.arange(2), lambda x: None)
    with pytest.raises(pools.PoolError, match="symbolic link"):
        train(tiny, tmp_path / "P")  # reopening the pool
    with pytest.raises(pools.PoolError, match="nothing removed"):
        pools.remove(tmp_path / "P")
    assert intact(outside) == before


@pytest.mark.slow
def test_retrain_deletes_only_files_jaxmia_wrote(tiny, tmp_path, capsys):
    """``--retrain`` deleted any ``chunk-*`` or ``.*.tmp`` file by its name."""
    pool = tmp_path / "P"
    train(tiny, pool)
    for name in ("chunk-notes.txt", ".backup.tmp"):
        (pool / name).write_text("mine")
    with pytest.raises(pools.PoolError, match="nothing removed"):
        pools.remove(pool)
    rc, _, err = run_cli(["audit", *QUICK, "--retrain", "--pool", str(pool)], capsys)
    assert rc == 2 and "nothing removed" in err
    assert (pool / "chunk-notes.txt").read_text() == (pool / ".backup.tmp").read_text() == "mine"
    for name in ("chunk-notes.txt", ".backup.tmp"):
        (pool / name).unlink()
    (pool / ".manifest.json.77.jaxmia-tmp").write_text("{")  # a killed writer's
    assert pools.remove(pool) and not pool.exists()


def test_a_directory_that_is_not_a_pool_is_left_alone(tiny, tmp_path):
    """``--pool DIR`` on a directory that is not a pool deleted its ``.*.tmp`` files."""
    d = tmp_path / "mine"
    d.mkdir()
    (d / ".backup.tmp").write_text("mine")
    with pytest.raises(pools.PoolError, match=r"not a shadow pool .*\.backup\.tmp"):
        train(tiny, d)
    assert [f.name for f in d.iterdir()] == [".backup.tmp"]


def test_a_killed_writers_temporary_file_is_removed_and_only_that(tiny, tmp_path):
    pool = tmp_path / "P"
    train(tiny, pool)
    own = pool / ".chunk-000002-000004.npz.123.jaxmia-tmp"
    own.write_bytes(b"partial")
    link = pool / ".chunk-000004-000006.npz.124.jaxmia-tmp"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(pools.PoolError):  # a link is not ours: the pool is refused
        pools.remove(pool)
    link.unlink()
    train(tiny, pool)
    assert not own.exists()


def test_a_linked_lock_file_is_refused_in_one_line(tiny, tmp_path):
    """A ``.lock`` link gave "Too many levels of symbolic links"."""
    pool = tmp_path / "P"
    train(tiny, pool)
    (pool / ".lock").unlink(missing_ok=True)
    (pool / ".lock").symlink_to(pool / ".lock")
    with pytest.raises(pools.PoolError, match=r"\.lock is a symbolic link"):
        train(tiny, pool)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.update(meta=None), "meta is None"),
        (lambda m: m["chunks"][0].update(stop=-1), "ends at -1"),
        (lambda m: m["chunks"][0].update(stop="2"), "ends at '2'"),
        (lambda m: m.update(meta={"blocks": "zz"}), "meta.blocks is 'zz'"),
        (lambda m: m.update(meta={"blocks": [4, 2]}), r"meta.blocks is \[4, 2\]"),
        (lambda m: m.update(non_finite=[9]), "bad non_finite"),
        (lambda m: m["chunks"][0].pop("sha256"), "has no checksum"),
    ],
)
def test_an_edited_manifest_is_refused_in_one_line(tiny, tmp_path, capsys, edit, match):
    pool = tmp_path / "P"
    train(tiny, pool)
    manifest = json.loads((pool / "manifest.json").read_text())
    edit(manifest)
    (pool / "manifest.json").write_text(json.dumps(manifest))
    for read in (pools.read_manifest, pools.load, pools.info):
        with pytest.raises(pools.PoolError, match=match):
            read(pool)
    rc, _, err = run_cli(["pool", "info", str(pool)], capsys)
    assert rc == 2 and err.startswith("jaxmia: error: damaged shadow pool") and err.count("\n") == 1


def test_pool_info_checks_the_chunks(tiny, tmp_path, capsys):
    """``pool info`` described a pool with a damaged chunk as if it were fine."""
    pool = tmp_path / "P"
    train(tiny, pool)
    assert "every chunk matches" in pools.info(pool)
    chunk = next(pool.glob("chunk-*.npz"))
    with open(chunk, "r+b") as f:
        f.seek(100)
        f.write(b"\0\1\2")
    rc, _, err = run_cli(["pool", "info", str(pool)], capsys)
    assert rc == 2 and "does not match the checksum" in err


def test_atomic_write_never_follows_a_planted_temporary_link(tmp_path, outside):
    target = tmp_path / "P" / "manifest.json"
    target.parent.mkdir()
    planted = target.with_name(f".manifest.json.{os.getpid()}.jaxmia-tmp")
    planted.symlink_to(outside / "thesis.tex")
    with pytest.raises(pools.PoolError, match="symbolic link"):
        engine.files.atomic_write(target, lambda f: f.write(b"{}"))
    assert (outside / "thesis.tex").read_text() == "mine"
