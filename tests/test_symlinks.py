"""Pools and caches under hostile or careless hands (issue 23, section 4): nothing is
read, written or deleted through a symbolic link below the directory the user named, no
array is allocated before its name, dtype and shape are checked against what the file
should hold, and a damaged manifest or chunk is refused in one line."""

import builtins
import contextlib
import hashlib
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from helpers import run_cli

from jaxmia import models
from jaxmia._src import engine
from jaxmia._src.audit import signal_cache, target_cache
from jaxmia._src.engine import kernel
from jaxmia._src.engine.store import checkpointing, files, manifest, pools

QUICK = ["--dataset", "digits", "--shadows", "4", "--epochs", "3", "--n-boot", "0", "-q"]


def train(path, k=2):
    """A pool of ``k`` models saved at ``path`` as training saves one, its arrays made up
    (no training: nothing to compile)."""
    rng = np.random.default_rng(0)
    store = pools.ChunkStore(path, {"data": {"n": 5, "input_shape": [4]}, "epochs": 1})
    leaves = [("params/w", "params", rng.normal(size=(k, 4, 3)).astype(np.float32))]
    logits = rng.normal(size=(k, 5, 3)).astype(np.float32)
    store.save_chunk(
        0,
        leaves,
        {
            "keep": np.ones((k, 5), bool),
            "keys": np.zeros((k, 2), np.uint32),
            "losses": np.ones((1, k), np.float32),
            "train_accuracy": np.ones(k, np.float32),
            "test_accuracy": np.ones(k, np.float32),
            "logits": logits,
            "loss": logits[..., 0],
            "logit_scaled_confidence": logits[..., 1],
        },
    )


def one_model(factory=None):
    """A fresh model as a trained one-model pool (``engine.Pool``), its factory, optimizer."""
    import jax

    factory, tx = factory or models.mlp((8,), 3, 4), engine.adam(1e-3)
    params, rest, _ = kernel.init_one(factory, tx, jax.random.key_data(jax.random.key(0)))
    params, rest = jax.tree.map(lambda a: np.asarray(a)[None], (params, rest))
    pool = engine.Pool(
        graphdef=kernel.graphdefs(factory)[1],
        params=params,
        rest=rest,
        keep=np.ones((1, 5), bool),
        train_accuracy=np.ones(1, np.float32),
        test_accuracy=np.ones(1, np.float32),
        losses=np.ones((2, 1), np.float32),
        epoch_seconds=(),
        best_epoch=None,
        logits=np.zeros((1, 5, 3), np.float32),
        dp_counts=None,
    )
    return pool, factory, tx


@pytest.fixture
def outside(tmp_path):
    """A directory of the user's own, outside every directory named to jaxmia."""
    d = tmp_path / "Documents"
    d.mkdir()
    (d / "thesis.tex").write_text("mine")
    return d


def contents(d: pathlib.Path) -> dict[str, bytes]:
    """Every file below ``d`` (not following links) and its bytes."""
    return {
        str(f.relative_to(d)): f.read_bytes()
        for f in sorted(d.rglob("*"))
        if f.is_file() and not f.is_symlink()
    }


@pytest.fixture
def unread(monkeypatch, outside):
    """A context in which any open of a file inside ``outside`` (through a link or not)
    fails the test: what lies there is never read, not merely left unchanged."""
    real = outside.resolve()
    watching, opened = [], []

    def guard(fn):
        def wrapped(file, *args, **kwargs):
            if watching and isinstance(file, str | bytes | os.PathLike):
                target = pathlib.Path(os.path.realpath(os.fsdecode(file)))
                if target == real or real in target.parents:
                    opened.append(target)
                    raise AssertionError(f"{target} was opened")
            return fn(file, *args, **kwargs)

        return wrapped

    monkeypatch.setattr(builtins, "open", guard(builtins.open))
    monkeypatch.setattr(io, "open", guard(io.open))
    monkeypatch.setattr(os, "open", guard(os.open))

    @contextlib.contextmanager
    def watch():
        watching.append(True)
        try:
            yield
        finally:
            watching.clear()

    yield watch
    assert not opened


# --- 1. a linked pool directory: --retrain deletes nothing -------------------------------


def test_retrain_through_a_linked_output_pool_deletes_nothing(tmp_path, capsys):
    """``A -o victim; ln -s victim/pool o/pool; A -o o --retrain`` emptied victim/pool."""
    victim = tmp_path / "victim"
    train(victim)
    before = contents(victim)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "pool").symlink_to(victim)
    rc, _, err = run_cli(["audit", *QUICK, "-o", str(tmp_path / "o"), "--retrain"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "symbolic link" in err, err
    assert contents(victim) == before
    assert sorted(os.listdir(tmp_path / "o")) == ["pool"]  # refused before anything
    with pytest.raises(pools.PoolError, match=r"symbolic link.*nothing removed"):
        pools.remove(tmp_path / "o" / "pool")  # even when named: never through a link
    assert contents(victim) == before


def test_study_retrain_through_a_linked_pool_deletes_nothing(tmp_path, capsys):
    victim = tmp_path / "victim"
    train(victim)
    before = contents(victim)
    (tmp_path / "o" / "pools").mkdir(parents=True)
    (tmp_path / "o" / "pools" / "epochs-1").symlink_to(victim)
    args = ["study", "--factor", "epochs", "--values", "1", *QUICK, "-o", str(tmp_path / "o")]
    rc, _, err = run_cli([*args, "--retrain"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "symbolic link" in err, err
    assert contents(victim) == before


# --- 2. no write or read through a linked subdirectory or file ---------------------------


@pytest.mark.parametrize(
    "command, link",
    [
        (["audit", *QUICK], "pool"),
        (["study", "--factor", "epochs", "--values", "1", *QUICK], "pools"),
    ],
)
def test_a_linked_subdirectory_of_the_output_is_never_written(
    tmp_path, outside, capsys, command, link
):
    """A linked ``OUTPUT/pool`` (audit) or ``OUTPUT/pools`` (study) received the pool."""
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / link).symlink_to(outside)
    before = contents(outside)
    rc, _, err = run_cli([*command, "-o", str(tmp_path / "o")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "symbolic link" in err, err
    assert contents(outside) == before and sorted(os.listdir(outside)) == ["thesis.tex"]


def test_dp_audit_never_writes_through_a_linked_epsilon_directory(tmp_path, outside, capsys):
    """``dp-audit --pool dpl`` with ``dpl/epsilon-1`` a link wrote a chunk, a manifest and
    a ``.lock`` into the link's target."""
    (tmp_path / "dpl").mkdir()
    (tmp_path / "dpl" / "epsilon-1").symlink_to(outside)
    small = ["--models", "8", "--records", "99", "--batch-size", "20", "--epochs", "1"]
    small += ["--canaries", "10", "--repetitions", "1", "--hidden", "4", "--epsilons", "1"]
    words = ["dp-audit", "-o", str(tmp_path / "o"), "--pool", str(tmp_path / "dpl"), *small]
    rc, _, err = run_cli(words, capsys)
    assert rc == 2 and err.count("\n") == 1 and "symbolic link" in err, err
    assert sorted(os.listdir(outside)) == ["thesis.tex"]


def _plant(path: pathlib.Path, target: pathlib.Path) -> None:
    """Moves ``path`` to ``target`` and leaves a link to it in its place."""
    path.rename(target)
    path.symlink_to(target)


@pytest.mark.parametrize("which", ["chunk", "manifest"])
def test_a_linked_pool_file_is_refused_unread(tmp_path, outside, unread, which):
    """A chunk linked to an outside file was read and used, and ``pool info`` said "every
    chunk matches" for a chunk linked to /etc/passwd once the manifest carried its hash."""
    pool = tmp_path / "P"
    train(pool)
    name = pools.read_manifest(pool)["chunks"][0]["file"] if which == "chunk" else "manifest.json"
    _plant(pool / name, outside / name)  # a real chunk or manifest: it would be accepted
    before = contents(outside)
    for read in (pools.load, pools.info):
        with unread(), pytest.raises(pools.PoolError, match="symbolic link"):
            read(pool)
    assert contents(outside) == before


def test_pool_info_never_hashes_a_linked_outside_file(tmp_path, outside, unread):
    pool = tmp_path / "P"
    train(pool)
    chunk = pool / pools.read_manifest(pool)["chunks"][0]["file"]
    chunk.unlink()
    chunk.symlink_to(outside / "thesis.tex")
    text = (pool / "manifest.json").read_text()
    digest = hashlib.sha256(b"mine").hexdigest()
    (pool / "manifest.json").write_text(
        text.replace(json.loads(text)["chunks"][0]["sha256"], digest)
    )
    with pytest.raises(pools.PoolError, match="symbolic link"):
        pools.info(pool)


def test_linked_cache_files_are_refused_unread(tmp_path, outside, unread):
    """The signals and label caches in ``answers/`` were read through a link."""
    pool = tmp_path / "P"
    train(pool)
    logits = np.zeros((2, 5, 3), np.float32)
    labels = np.zeros(5, np.int32)
    cache = signal_cache.SignalCache(pool)
    cache.observe(logits, labels, "probs", ["loss"])
    cache.save()
    (kept,) = (pool / "answers").glob("signals-*.npz")
    _plant(kept, outside / kept.name)
    with unread(), pytest.raises(pools.PoolError, match="symbolic link"):
        signal_cache.SignalCache(pool).observe(logits, labels, "probs", ["loss"])
    x, index = np.zeros((3, 64), np.float32), np.arange(2)
    label_file = pool / "answers" / f"labels-{pools.answers_key(x, index)}.npz"
    label_file.symlink_to(outside / kept.name)
    with unread(), pytest.raises(pools.PoolError, match="symbolic link"):
        pools.cached_labels(pool, x, index, lambda x: np.zeros((2, 3), np.int16))


def test_inside_refuses_links_and_names_that_leave_the_directory(tmp_path, outside):
    (tmp_path / "named").symlink_to(outside)  # the user named the link: allowed
    assert files.inside(tmp_path / "named", "pool") == tmp_path / "named" / "pool"
    (outside / "pool").symlink_to(tmp_path)
    with pytest.raises(files.PoolError, match="symbolic link"):
        files.inside(tmp_path / "named", "pool", "manifest.json")
    for bad in ("..", ".", "", "a/b", "/etc", "a\\b"):
        with pytest.raises(files.PoolError, match="not a file name"):
            files.inside(tmp_path, bad)


# --- 3. arrays checked before they are read ----------------------------------------------


def _npz(path: pathlib.Path, arrays: dict, bomb: str | None = None, deflate=(), shape=None):
    """An ``.npz`` of ``arrays``; the array ``bomb``'s header claims ``shape`` (default
    ``(10**12,)``) float32 (4 TB) over its real data; those in ``deflate`` are compressed."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, a in arrays.items():
            a = np.asanyarray(a)
            buffer = io.BytesIO()
            header = np.lib.format.header_data_from_array_1_0(a)
            if name == bomb:
                header = {**header, "shape": shape or (10**12,), "descr": "<f4"}
            np.lib.format.write_array_header_1_0(buffer, header)
            buffer.write(a.tobytes())
            method = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
            archive.writestr(f"{name}.npy", buffer.getvalue(), compress_type=method)


def _rewrite_chunk(pool: pathlib.Path, change) -> None:
    """Rewrites the pool's first chunk as ``change(arrays)`` makes it, its SHA-256 in the
    manifest updated to match (as anyone can)."""
    text = json.loads((pool / "manifest.json").read_text())
    chunk = pool / text["chunks"][0]["file"]
    with np.load(chunk) as data:
        arrays = dict(data)
    change(arrays, chunk)
    text["chunks"][0]["sha256"] = hashlib.sha256(chunk.read_bytes()).hexdigest()
    (pool / "manifest.json").write_text(json.dumps(text))


@pytest.mark.parametrize("how", ["bomb", "wide", "extra", "compressed", "missing", "leaf shape"])
def test_a_chunk_not_as_the_manifest_describes_is_refused_before_reading(tmp_path, how):
    """A header of ``(10**12,)`` with the SHA-256 updated gave ``_ArrayMemoryError: Unable
    to allocate 3.64 TiB``; an extra 3 GiB array compressed to 3.6 MB was accepted with
    3.3 GB peak memory; a leaf of the wrong shape failed in JAX."""
    pool = tmp_path / "P"
    train(pool)

    def change(arrays, chunk):
        if how == "bomb":
            _npz(chunk, arrays, bomb="logits")
        elif how == "wide":  # logits' class axis is not in the manifest: 10**9 classes
            _npz(chunk, arrays, bomb="logits", shape=(*arrays["logits"].shape[:2], 10**9))
        elif how in ("extra", "compressed"):
            arrays["evil"] = np.zeros(1 << 21, np.float32)  # 8 MB, 8 kB compressed
            _npz(chunk, arrays, deflate=("evil",) if how == "compressed" else ())
        elif how == "missing":
            del arrays["keys"]
            _npz(chunk, arrays)
        else:
            name = next(n for n in arrays if n.startswith("params/"))
            arrays[name] = arrays[name][..., :1]
            _npz(chunk, arrays)

    _rewrite_chunk(pool, change)
    for read in (pools.load, pools.info):
        with pytest.raises(pools.PoolError, match="damaged shadow pool") as caught:
            read(pool)
        assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_cache_files_with_a_planted_header_are_recomputed_unallocated(tmp_path):
    """``target-*.npz`` and ``answers/signals-*.npz`` had no manifest checksum: a header of
    ``(10**12,)`` (digest updated) gave ``_ArrayMemoryError`` and a traceback."""
    pool = tmp_path / "P"
    train(pool)
    logits = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    labels = np.arange(5) % 3
    cache = signal_cache.SignalCache(pool)
    want = cache.observe(logits, labels, "probs", ["loss"])["loss"]
    cache.save()
    (kept,) = (pool / "answers").glob("signals-*.npz")
    arrays = {"loss": want, "extra": np.zeros(1)}
    _npz(kept, {**arrays, "sha256": np.array(files.arrays_digest(arrays))})
    got = signal_cache.SignalCache(pool).observe(logits, labels, "probs", ["loss"])
    np.testing.assert_array_equal(got["loss"], want)  # the extra array refused: recomputed
    arrays = {"loss": want}
    _npz(kept, {**arrays, "sha256": np.array(files.arrays_digest(arrays))}, bomb="loss")
    got = signal_cache.SignalCache(pool).observe(logits, labels, "probs", ["loss"])
    np.testing.assert_array_equal(got["loss"], want)

    target, factory, tx = one_model()
    key = "0" * 32
    assert target_cache.save(pool, key, target) is not None
    assert target_cache.load(pool, key, factory, tx) is not None
    file = target_cache.path_of(pool, key)
    with np.load(file) as data:
        arrays = {n: data[n] for n in data.files if n != "sha256"}
    _npz(file, {**arrays, "sha256": np.array(files.arrays_digest(arrays))}, bomb="logits")
    assert target_cache.load(pool, key, factory, tx) is None  # trained anew, not allocated
    arrays["logits"] = arrays["logits"][:, :4]  # 4 records where keep has 5
    _npz(file, {**arrays, "sha256": np.array(files.arrays_digest(arrays))})
    assert target_cache.load(pool, key, factory, tx) is None
    arrays["logits"], arrays["extra"] = target.logits, np.zeros(3)
    _npz(file, {**arrays, "sha256": np.array(files.arrays_digest(arrays))})
    assert target_cache.load(pool, key, factory, tx) is None


# --- 4. one line instead of a traceback ----------------------------------------------------


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m["chunks"][0].update(bytes="big"), "bytes"),
        (lambda m: m["spec"].update(data=None), "spec.data"),
    ],
)
def test_pool_info_refuses_a_damaged_manifest_in_one_line(tmp_path, capsys, edit, match):
    """``pool info`` failed with a TypeError and an AttributeError; ``audit`` refused."""
    pool = tmp_path / "P"
    train(pool)
    text = json.loads((pool / "manifest.json").read_text())
    edit(text)
    (pool / "manifest.json").write_text(json.dumps(text))
    rc, _, err = run_cli(["pool", "info", str(pool)], capsys)
    assert rc == 2 and err.count("\n") == 1 and match in err, err


def test_pool_info_describes_an_odd_input_shape(tmp_path):
    pool = tmp_path / "P"
    train(pool)
    text = json.loads((pool / "manifest.json").read_text())
    text["spec"]["data"]["input_shape"] = 64
    (pool / "manifest.json").write_text(json.dumps(text))
    assert "input shape 64" in pools.info(pool)


def test_ctrl_c_while_the_command_imports_is_one_line(tmp_path):
    """Ctrl-C in the first 0.1 s, while ``jaxmia.cli`` was still imported, printed a
    ``KeyboardInterrupt`` traceback: the interrupt is sent here exactly then."""
    command = os.path.join(os.path.dirname(sys.executable), "jaxmia")
    code = (
        "import os, signal, sys\n"
        f"sys.argv = [{command!r}, 'pool', 'info', {str(tmp_path)!r}]\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'jaxmia._src.audit.runtime':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from jaxmia.cli import entry\n"
        "entry()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "jaxmia: interrupted\n"
    assert signal.SIGINT  # the real command: the same module, the same check of argv[0]


# --- 5. tests that kill mutants ------------------------------------------------------------


def test_a_reshaped_array_with_its_old_digest_is_refused(tmp_path):
    """Mutant: the shape dropped from ``arrays_digest`` (engine/files.py)."""
    a = np.arange(6.0).reshape(2, 3)
    files.write_checked(tmp_path / "f.npz", {"a": a})
    np.testing.assert_array_equal(files.read_checked(tmp_path / "f.npz")["a"], a)
    digest = np.array(files.arrays_digest({"a": a}))
    _npz(tmp_path / "f.npz", {"a": a.reshape(3, 2), "sha256": digest})
    assert files.read_checked(tmp_path / "f.npz") is None


def test_with_chunks_only_appends_at_the_pools_end():
    """``with_chunks`` dropped chunks "from start on", which no caller reached: entries
    that do not start at the manifest's ``k`` are refused instead."""
    base = {"k": 2, "chunks": [{"file": "chunk-000000-000002.npz", "start": 0, "stop": 2}]}
    entry = {"file": manifest.chunk_file(2, 3), "start": 2, "stop": 3, "sha256": "x"}
    leaves = [("params/w", "params", np.zeros((1, 4)))]
    logits = np.array([[[np.nan, 0.0]]])
    out = manifest.with_chunks({**base, "non_finite": [1]}, [entry], leaves, logits)
    assert [c["start"] for c in out["chunks"]] == [0, 2] and out["k"] == 3
    assert out["non_finite"] == [1, 2] and out["leaves"][0]["shape"] == [4]
    with pytest.raises(pools.PoolError, match="from model 1"):
        manifest.with_chunks(base, [{**entry, "start": 1}], leaves, logits)


def test_unflatten_checks_every_leaf_shape():
    pool = one_model()[0]
    flat = checkpointing.flatten("params", pool.params) + checkpointing.flatten("rest", pool.rest)
    leaves = {name: a for name, _, a in flat}
    shapes = (jax_shape(pool.params), jax_shape(pool.rest))
    checkpointing.unflatten(shapes, leaves)
    name = next(n for n in leaves if n.startswith("params/"))
    with pytest.raises(pools.PoolError, match=name):
        checkpointing.unflatten(shapes, {**leaves, name: leaves[name][..., :1]})


def jax_shape(tree):
    """One model's shapes of a stacked state (the leading axis dropped)."""
    import jax

    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), tree)


def test_a_fifo_in_place_of_a_cache_file_is_never_opened_to_block(tmp_path):
    """A FIFO planted as a cache file would block a reader that opens it; it is refused
    as not a regular file, at once (mutant: the regular-file check dropped)."""
    os.mkfifo(tmp_path / "f.npz")
    with pytest.raises(files.PoolError, match="not a regular file"):
        files.open_read(tmp_path / "f.npz")
    assert files.read_checked(tmp_path / "f.npz") is None
