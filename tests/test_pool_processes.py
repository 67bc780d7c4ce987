"""A shadow pool kept by two processes (``--coordinator``): each writes its own models'
chunk files, process 0 the manifest; one killed mid-training (SIGKILL) and the same
command run again end with the pool of an uninterrupted run, bit for bit."""

import os
import pathlib
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxmia._src.engine import distributed
from jaxmia._src.engine.store import manifest, pools

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import mp_worker  # noqa: E402

pytestmark = pytest.mark.slow  # two training processes, one killed and run again

TIMEOUT_S = 240  # per launch; a run takes seconds, this only keeps a broken one from hanging


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp_path, *args: str, kill_after: int | None = None) -> list[subprocess.Popen]:
    """Starts processes 0 and 1 of ``mp_worker.py ... pool ARGS`` (one CPU device each);
    process 1 kills itself after its ``kill_after``-th chunk file of the last directory."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "xla")  # the second launch compiles less
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    port, worker = str(free_port()), str(ROOT / "tests" / "mp_worker.py")
    kill = {1: ["--kill-after", str(kill_after)]} if kill_after else {}
    procs = []
    for i in range(2):
        command = [sys.executable, worker, str(i), "2", port, str(tmp_path / "out"), "pool"]
        command += [*args, *kill.get(i, [])]
        procs.append(
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        )
    return procs


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    return proc.returncode, output.decode(errors="replace")[-3000:]


def inodes(path: pathlib.Path) -> dict[str, int]:
    return {f.name: f.stat().st_ino for f in path.glob("chunk-*.npz")}


def test_killed_process_resumes_to_the_uninterrupted_pool(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    procs = launch(tmp_path, str(whole), str(killed), kill_after=2)
    try:
        code, output = finish(procs[1])
        assert code == -signal.SIGKILL, output
    finally:
        procs[0].kill()  # blocked in a collective with the dead process
        finish(procs[0])
    # process 1 died after its file of chunk [2, 4): the manifest holds chunk [0, 2) only
    assert pools.read_manifest(killed)["k"] == 2
    assert (killed / "chunk-000003-000004.npz").is_file()
    before = inodes(killed)
    results = [finish(p) for p in launch(tmp_path, str(killed))]
    for code, output in results:
        assert code == 0, output
    after = inodes(killed)
    assert after["chunk-000000-000001.npz"] == before["chunk-000000-000001.npz"]  # read
    assert after["chunk-000003-000004.npz"] != before["chunk-000003-000004.npz"]  # retrained
    # each process wrote the models on its device: one file per model, none padded
    want, got = pools.load(whole), pools.load(killed)
    differ = {key for key in want.manifest if want.manifest[key] != got.manifest.get(key)}
    assert differ <= {"created", "updated"}, differ  # the same files, byte for byte (sha256)
    files = [c["file"] for c in got.manifest["chunks"]]
    assert files == [manifest.chunk_file(i, i + 1) for i in range(mp_worker.POOL_MODELS)]
    assert [c["file"] for c in want.manifest["chunks"]] == files
    assert set(got.leaves) == set(want.leaves) and set(got.arrays) == set(want.arrays)
    for name in want.leaves:
        np.testing.assert_array_equal(got.leaves[name], want.leaves[name], err_msg=name)
    for name in want.arrays:
        np.testing.assert_array_equal(got.arrays[name], want.arrays[name], err_msg=name)
    for i in range(2):  # the pool the resumed run returned, on every process
        returned = np.load(tmp_path / f"out-{i}.npz")
        np.testing.assert_array_equal(returned["logits"], want.arrays["logits"])
        np.testing.assert_array_equal(returned["losses"], want.arrays["losses"])
        for name in want.leaves:
            np.testing.assert_array_equal(returned[name], want.leaves[name], err_msg=name)


def test_owners_and_runs():
    """One process: every model of a chunk is its own; runs split where owners change."""
    import jax.numpy as jnp

    np.testing.assert_array_equal(distributed.chunk_owners(jnp.zeros((4, 2)), 3), [0, 0, 0])
    assert distributed._runs(np.array([0, 0, 1, 1, 0])) == [(0, 2, 0), (2, 4, 1), (4, 5, 0)]


def test_process_zero_waits_for_files_then_says_why(tmp_path):
    """A file another process wrote that process 0 never sees: one clear PoolError."""
    with pytest.raises(pools.PoolError, match="file system that every process shares"):
        distributed._wait_entry(tmp_path, 0, 1, owner=1, timeout=0.1)


def test_parts_of_a_chunk_read_back_as_the_chunk(tmp_path):
    """Process 0's and another process's files of one chunk (owners 0, 1, 1, 0), added
    to the manifest by process 0, read back as the chunk; a process that does not write
    the manifest never creates or changes it, and reads process 0's."""
    rng, path, n = np.random.default_rng(0), tmp_path / "pool", 3
    leaves = [("params/w", "param", rng.normal(size=(4, 2)).astype(np.float32))]
    records = {
        "keep": rng.random((4, n)) < 0.5,
        "keys": rng.integers(0, 9, (4, 2)).astype(np.uint32),
        "losses": rng.normal(size=(2, 4)),
        "logits": rng.normal(size=(4, n, 2)).astype(np.float32),
        "loss": rng.normal(size=(4, n)),
        "logit_scaled_confidence": rng.normal(size=(4, n)),
    }
    records["logits"][2, 0, 0] = np.nan
    other = pools.ChunkStore(path, {"a": 1}, write=False)
    assert not path.exists() and other.count == 0
    main = distributed.open_pool(path, {"a": 1})  # one process: a plain ChunkStore
    part = [(name, kind, a[1:3]) for name, kind, a in leaves]
    other.write_models(1, part, distributed._rows(records, 1, 3))  # "process 1"'s file
    distributed.save_parts(main, 0, leaves, records, np.array([0, 1, 1, 0]))
    stored = pools.load(path)
    files = [c["file"] for c in stored.manifest["chunks"]]
    assert files == [manifest.chunk_file(a, b) for a, b in [(0, 1), (1, 3), (3, 4)]]
    assert stored.manifest["non_finite"] == [2]
    np.testing.assert_array_equal(stored.leaves["params/w"], leaves[0][2])
    for name, array in records.items():
        np.testing.assert_array_equal(stored.arrays[name], array, err_msg=name)
    other.reload()
    assert other.count == 4
    with pytest.raises(pools.PoolError, match="other settings"):
        pools.ChunkStore(path, {"a": 2}, write=False)
    with pytest.raises(pools.PoolError, match="do not follow"):
        main.add_chunks([manifest.chunk_entry(path, 1, 3)], part, records["logits"][1:3])
