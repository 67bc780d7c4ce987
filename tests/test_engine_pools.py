"""Shadow pools on disk (jaxmia/engine/pools.py): resume, reuse, growth, refusal of damaged
or foreign pools, the lock between runs."""

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import zipfile

import jax
import numpy as np
import optax
import pytest
from helpers import tree_max_diff
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxmia import models
from jaxmia._src import audit, engine
from jaxmia._src.engine import fingerprint
from jaxmia._src.engine.store import files, pools


def test_interrupted_training_resumes_from_the_last_chunk(small_pool, tmp_path):
    p = small_pool

    def interrupt(done, total, loss):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine.train(
            p.factory, p.ds.x, p.ds.y, p.keep, checkpoint=tmp_path, progress=interrupt, **p.kwargs
        )
    manifest = pools.read_manifest(tmp_path)
    assert manifest["k"] == 4 and [c["stop"] for c in manifest["chunks"]] == [2, 4]
    seen = []
    resumed = engine.train(
        p.factory,
        p.ds.x,
        p.ds.y,
        p.keep,
        checkpoint=tmp_path,
        progress=lambda *a: seen.append(a),
        **p.kwargs,
    )
    assert seen[0][0] == 4  # started after the four saved models
    assert tree_max_diff(p.pool.params, resumed.params) == 0.0
    np.testing.assert_array_equal(p.pool.losses, resumed.losses)
    np.testing.assert_array_equal(p.pool.logits, resumed.logits)
    np.testing.assert_array_equal(p.pool.train_accuracy, resumed.train_accuracy)


def test_saved_pool_holds_models_signals_and_a_readable_manifest(small_pool, tmp_path):
    p = small_pool
    engine.train(p.factory, p.ds.x, p.ds.y, p.keep, checkpoint=tmp_path, **p.kwargs)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["format"] == "jaxmia-pool" and manifest["version"] == 1
    assert manifest["k"] == 6 and manifest["spec"]["epochs"] == 2
    assert manifest["spec"]["data"]["n"] == p.ds.n and manifest["non_finite"] == []
    # readable with NumPy alone, no pickle
    with np.load(tmp_path / manifest["chunks"][0]["file"], allow_pickle=False) as chunk:
        assert chunk["logits"].shape == (2, p.ds.n, p.ds.num_classes)
        assert chunk["loss"].shape == chunk["logit_scaled_confidence"].shape == (2, p.ds.n)
        np.testing.assert_array_equal(chunk["keep"], p.keep[:2])
        for leaf in manifest["leaves"]:
            assert chunk[leaf["name"]].shape == (2, *leaf["shape"])
    stored = pools.load(tmp_path)
    np.testing.assert_array_equal(stored.arrays["logits"], engine.predict(p.pool, p.ds.x))
    labels = np.broadcast_to(p.ds.y, p.keep.shape)
    expected = -jax.nn.log_softmax(stored.arrays["logits"])[
        np.arange(6)[:, None], np.arange(p.ds.n)[None], labels
    ]
    np.testing.assert_allclose(stored.arrays["loss"], expected, rtol=1e-5, atol=1e-6)
    assert "6 in 3 chunk(s)" in pools.info(tmp_path)


@pytest.mark.slow
def test_finished_pool_is_reused_and_grown(small_pool, tmp_path):
    p = small_pool
    engine.train(p.factory, p.ds.x, p.ds.y, p.keep[:4], checkpoint=tmp_path, **p.kwargs)
    seen = []
    again = engine.train(
        p.factory,
        p.ds.x,
        p.ds.y,
        p.keep[:4],
        checkpoint=tmp_path,
        progress=lambda *a: seen.append(a),
        **p.kwargs,
    )
    assert seen == [(4, 4, None)]  # nothing trained: read from the pool
    # growing to 6 models trains only the last two; keys are prefix-stable in k
    grown = engine.train(p.factory, p.ds.x, p.ds.y, p.keep, checkpoint=tmp_path, **p.kwargs)
    assert pools.read_manifest(tmp_path)["k"] == 6
    assert tree_max_diff(grown.params, p.pool.params) == 0.0
    assert tree_max_diff(again.params, jax.tree.map(lambda a: a[:4], p.pool.params)) == 0.0
    # asking for fewer models than saved reads the first ones
    fewer = engine.train(p.factory, p.ds.x, p.ds.y, p.keep[:2], checkpoint=tmp_path, **p.kwargs)
    np.testing.assert_array_equal(fewer.logits, p.pool.logits[:2])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epochs": 3}, "epochs: pool 2, this command 3"),
        ({"seed": 10}, "other model keys"),
        ({"batch_size": 16}, "batch_size: pool 32, this command 16"),
    ],
)
def test_pool_of_other_settings_is_refused(small_pool, tmp_path, change, message):
    p = small_pool
    engine.train(p.factory, p.ds.x, p.ds.y, p.keep[:2], checkpoint=tmp_path, **p.kwargs)
    with pytest.raises(pools.PoolError, match=message):
        engine.train(
            p.factory, p.ds.x, p.ds.y, p.keep[:2], checkpoint=tmp_path, **{**p.kwargs, **change}
        )


def test_pool_of_other_data_or_members_is_refused(small_pool, tmp_path):
    p = small_pool
    engine.train(p.factory, p.ds.x, p.ds.y, p.keep[:2], checkpoint=tmp_path, **p.kwargs)
    x = p.ds.x.copy()
    x[0, 0] += 1.0
    with pytest.raises(pools.PoolError, match=r"data\.x_sha256"):
        engine.train(p.factory, x, p.ds.y, p.keep[:2], checkpoint=tmp_path, **p.kwargs)
    with pytest.raises(pools.PoolError, match="other members"):
        engine.train(p.factory, p.ds.x, p.ds.y, p.keep[2:4], checkpoint=tmp_path, **p.kwargs)
    other = models.mlp((16,), p.ds.num_classes, int(np.prod(p.ds.input_shape)))
    with pytest.raises(pools.PoolError, match="architecture"):
        engine.train(other, p.ds.x, p.ds.y, p.keep[:2], checkpoint=tmp_path, **p.kwargs)


def _saved(p, tmp_path) -> pathlib.Path:
    """The first four models of ``p`` (the ``small_pool`` fixture) saved to ``tmp_path``."""
    engine.train(p.factory, p.ds.x, p.ds.y, p.keep[:4], checkpoint=tmp_path, **p.kwargs)
    return tmp_path


def test_truncated_or_tampered_chunk_is_refused(small_pool, tmp_path):
    path = _saved(small_pool, tmp_path)
    chunk = path / pools.read_manifest(path)["chunks"][1]["file"]
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])
    with pytest.raises(pools.PoolError, match="does not match the checksum"):
        pools.load(path)
    # a well-formed file with other numbers is refused as well
    with np.load(path / pools.read_manifest(path)["chunks"][0]["file"]) as z:
        arrays = {name: z[name] for name in z.files}
    arrays["logits"] = arrays["logits"] + 1.0
    np.savez(chunk, **arrays)
    with pytest.raises(pools.PoolError, match="checksum"):
        pools.load(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: "{not json", "not valid JSON"),
        (lambda m: json.dumps({**m, "format": "other"}), "not a jaxmia shadow pool"),
        (lambda m: json.dumps({**m, "version": 99}), "format version 99"),
        (lambda m: json.dumps({**m, "k": 3}), "k does not match"),
        (lambda m: json.dumps({k: v for k, v in m.items() if k != "leaves"}), "lacks the var"),
        (lambda m: json.dumps({**m, "leaves": [{"nom": "x"}]}), "bad variable entry"),
        (
            lambda m: json.dumps({**m, "chunks": [{**m["chunks"][0], "file": "../x.npz"}]}),
            "bad chunk file name",
        ),
    ],
)
def test_damaged_manifest_is_refused(small_pool, tmp_path, edit, message):
    path = _saved(small_pool, tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(edit(manifest))
    with pytest.raises(pools.PoolError, match=message):
        pools.load(path)


def test_missing_pool_and_foreign_directory_are_refused(tmp_path):
    with pytest.raises(pools.PoolError, match="not a directory"):
        pools.load(tmp_path / "nothing")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(pools.PoolError, match=r"not a shadow pool and holds .*notes\.txt"):
        pools.ChunkStore(tmp_path, {"a": 1})


class _Payload:
    """Unpickling this object would create the file named by ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_loading_never_executes_code_from_the_file(small_pool, tmp_path):
    path = _saved(small_pool, tmp_path)
    marker = tmp_path.parent / f"{tmp_path.name}-pwned"
    manifest = pools.read_manifest(path)
    chunk = path / manifest["chunks"][0]["file"]
    with np.load(chunk) as z:
        arrays = {name: z[name] for name in z.files}
    arrays["logits"] = np.array([_Payload(marker)], dtype=object)  # a pickled object array
    np.savez(chunk, **arrays)
    with zipfile.ZipFile(chunk) as zf:
        assert any(b"touch" in zf.read(n) for n in zf.namelist())  # the payload is there
    # even with the checksum updated to match, the object array is refused unread
    manifest["chunks"][0]["sha256"] = files.sha256(chunk)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(pools.PoolError, match="cannot read"):
        pools.load(path)
    assert not marker.exists()


def _pool_train(pool: pathlib.Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jaxmia.cli",
        "pool",
        "train",
        "--dataset",
        "digits",
        "--shadows",
        "8",
        "--hidden",
        "32",
        "--epochs",
        "15",
        "--chunk-size",
        "1",
        "--pool",
        str(pool),
        "-q",
    ]


@pytest.mark.slow
def test_sigkill_mid_run_then_the_same_command_equals_an_uninterrupted_pool(tmp_path):
    env = {**os.environ, "JAXMIA_CPU_DEVICES": "1"}  # chunks of one model: eight chunks
    env.pop("XLA_FLAGS", None)
    subprocess.run(_pool_train(tmp_path / "whole"), env=env, check=True, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _pool_train(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    saved = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            saved = json.loads((killed / "manifest.json").read_text())["k"]
        except (OSError, ValueError, KeyError):  # not written yet (replaced atomically)
            saved = 0
        if saved >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    partial = pools.read_manifest(killed)["k"]
    assert 1 <= partial < 8
    assert f"incomplete:    {partial} of 8 models saved" in pools.info(killed)
    pools.load(killed)  # what a killed run leaves is a valid, smaller pool
    subprocess.run(_pool_train(killed), env=env, check=True, capture_output=True)
    a, b = pools.load(tmp_path / "whole"), pools.load(killed)
    assert a.count == b.count == 8
    assert a.leaves.keys() == b.leaves.keys() and a.arrays.keys() == b.arrays.keys()
    for name in a.leaves:
        np.testing.assert_array_equal(a.leaves[name], b.leaves[name], err_msg=name)
    for name in a.arrays:
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name], err_msg=name)


@pytest.mark.slow
def test_diverged_models_are_recorded_and_left_out_of_the_attacks(
    small_pool, monkeypatch, tmp_path
):
    p = small_pool
    real_train = engine.train

    def diverging(*args, **kw):  # shadow model 2 of the pool diverges
        pool = real_train(*args, **kw)
        if pool.k == 4:
            logits = pool.logits.copy()
            logits[2, :5] = np.nan
            pool = dataclasses.replace(pool, logits=logits)
        return pool

    monkeypatch.setattr(engine, "train", diverging)
    config = audit.AuditConfig(
        dataset="digits", num_shadows=4, epochs=2, n_boot=0, attacks=("loss", "lira_offline")
    )
    lines = []
    report = audit.run(config, dataset=p.ds, log=lines.append)
    assert any("dropped 1 of 4 shadow models" in n and "models 2)" in n for n in report.notes)
    assert any(line.startswith("warning: dropped 1 of 4") for line in lines)
    for m in report.metrics.values():
        assert np.isfinite(m.auc) and np.isfinite(report.scores["loss"]).all()
    # the manifest records which saved models are not finite
    store = pools.ChunkStore(tmp_path / "p", {"a": 1})
    logits = np.zeros((2, 3, 4), np.float32)
    logits[1, 0, 0] = np.inf
    store.save_chunk(
        0,
        [("params/w", "param", np.zeros((2, 1)))],
        {
            "keep": np.ones((2, 3), bool),
            "keys": np.zeros((2, 2), np.uint32),
            "losses": np.zeros((1, 2)),
            "logits": logits,
            "loss": np.zeros((2, 3)),
            "logit_scaled_confidence": np.zeros((2, 3)),
        },
    )
    assert pools.read_manifest(tmp_path / "p")["non_finite"] == [1]
    assert "non-finite:    1 model(s) [1]" in pools.info(tmp_path / "p")


@pytest.mark.slow
def test_pool_of_another_optimizer_is_refused(small_pool, tmp_path):
    p = small_pool
    engine.train(p.factory, p.ds.x, p.ds.y, p.keep[:2], checkpoint=tmp_path, **p.kwargs)
    for tx in (optax.adam(1e-3), optax.sgd(3e-3)):
        with pytest.raises(pools.PoolError, match="optimizer_sha256"):
            engine.train(
                p.factory,
                p.ds.x,
                p.ds.y,
                p.keep[:2],
                checkpoint=tmp_path,
                **{**p.kwargs, "optimizer": tx},
            )
    # an equal optimizer built again is the same optimizer
    again = engine.train(
        p.factory,
        p.ds.x,
        p.ds.y,
        p.keep[:2],
        checkpoint=tmp_path,
        **{**p.kwargs, "optimizer": optax.adam(3e-3)},
    )
    assert again.k == 2


def test_optimizer_fingerprint_sees_late_schedule_differences(small_pool):
    p = small_pool

    def decayed_at(step):  # the same rate until `step`, a tenth of it after
        return optax.adam(optax.piecewise_constant_schedule(3e-3, {step: 0.1}))

    digest = fingerprint.optimizer_digest
    assert digest(p.factory, decayed_at(500)) == digest(p.factory, decayed_at(500))
    # equal for the first 500 updates, so two updates alone cannot tell them apart
    assert digest(p.factory, decayed_at(500)) != digest(p.factory, decayed_at(5000))


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(
    which=st.sampled_from(["manifest.json", "chunk-000000-000002.npz", "chunk-000002-000004.npz"]),
    where=st.floats(0.0, 1.0),
    flip=st.integers(1, 255),
    truncate=st.booleans(),
)
def test_any_damaged_byte_is_refused_or_harmless(
    saved_pool, tmp_path_factory, which, where, flip, truncate
):
    """A flipped byte or a cut anywhere in a pool file gives a PoolError, or (a manifest
    byte that still parses, e.g. inside a timestamp) a load equal to the original: never
    another exception, never other numbers."""
    path = tmp_path_factory.mktemp("damaged")
    for f in saved_pool.path.iterdir():
        (path / f.name).write_bytes(f.read_bytes())
    data = bytearray((path / which).read_bytes())
    at = min(int(where * len(data)), len(data) - 1)
    if truncate:
        data = data[:at]
    else:
        data[at] ^= flip
    (path / which).write_bytes(bytes(data))
    try:
        loaded = pools.load(path)
    except pools.PoolError:
        return
    assert loaded.count == saved_pool.stored.count
    for name in saved_pool.stored.leaves:
        np.testing.assert_array_equal(loaded.leaves[name], saved_pool.stored.leaves[name])
    for name in saved_pool.stored.arrays:
        np.testing.assert_array_equal(loaded.arrays[name], saved_pool.stored.arrays[name])


def _records(m: int, n: int = 3) -> dict:
    return {
        "keep": np.ones((m, n), bool),
        "keys": np.zeros((m, 2), np.uint32),
        "losses": np.zeros((1, m)),
        "logits": np.zeros((m, n, 2), np.float32),
        "loss": np.zeros((m, n)),
        "logit_scaled_confidence": np.zeros((m, n)),
    }


def test_two_runs_on_one_pool_never_interleave(tmp_path):
    leaves = [("params/w", "param", np.zeros((1, 1)))]
    first = pools.ChunkStore(tmp_path, {"a": 1})
    second = pools.ChunkStore(tmp_path, {"a": 1})
    first.save_chunk(0, leaves, _records(1))
    with pytest.raises(pools.PoolError, match="another run changed the shadow pool"):
        second.save_chunk(0, leaves, _records(1))
    assert pools.read_manifest(tmp_path)["k"] == 1 and pools.load(tmp_path).count == 1
    # a temporary file left by a killed writer is removed by the next run
    (tmp_path / ".chunk-000001-000002.npz.123.jaxmia-tmp").write_bytes(b"partial")
    pools.ChunkStore(tmp_path, {"a": 1})
    assert not list(tmp_path.glob(".*.jaxmia-tmp"))


@pytest.mark.slow
def test_the_pool_lock_excludes_another_process(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import pathlib, sys, time\n"
            "from jaxmia._src.engine.store import files\n"
            "with files.locked(pathlib.Path(sys.argv[1])):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(1.5)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    start = time.perf_counter()
    with files.locked(tmp_path):
        waited = time.perf_counter() - start  # until the other process let go, 1.5 s
    holder.wait()
    assert waited > 1.0


def test_loading_a_count_that_ends_mid_chunk(saved_pool):
    """Kills: one model too many loaded when the count ends inside a chunk."""
    stored = pools.load(saved_pool.path, 3)
    assert stored.count == 3
    assert stored.arrays["keep"].shape[0] == 3 and stored.arrays["logits"].shape[0] == 3
    assert all(v.shape[0] == 3 for v in stored.leaves.values())
    np.testing.assert_array_equal(stored.arrays["keep"], saved_pool.keep[:3])


def test_resume_refuses_keys_that_differ_only_in_the_last_stored_model(saved_pool):
    """Kills: the resume check comparing the keys of all but the last stored model."""
    store = pools.ChunkStore(saved_pool.path, pools.read_manifest(saved_pool.path)["spec"])
    keys = pools.load(saved_pool.path).arrays["keys"].copy()
    assert store.resume(saved_pool.keep, keys).count == 4
    keys[3, 1] ^= 1
    with pytest.raises(pools.PoolError, match="other model keys"):
        store.resume(saved_pool.keep, keys)
