"""Sharded and multi-process pools equal the single-device pool."""

import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jaxmia import models, splits
from jaxmia._src import datasets, engine

# 8 forced CPU devices, and 2 processes joined by jax.distributed: each compiles the pool
pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parent.parent


def reference_pool():
    ds = datasets.load("digits")
    keep = splits.balanced_keep(6, ds.n, seed=0)
    pool = engine.train(models.mlp((32,), 10, 64), ds.x, ds.y, keep, epochs=2, seed=1, mesh=None)
    return [np.asarray(leaf) for leaf in jax.tree.leaves(pool.params)], pool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(devices: int) -> dict:
    e = dict(os.environ)
    e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def test_eight_forced_cpu_devices_equal_one(tmp_path):
    script = textwrap.dedent(
        f"""
        import jax, numpy as np
        from jaxmia import datasets, models, splits
        from jaxmia import engine
        assert jax.device_count() == 8
        ds = datasets.load("digits")
        keep = splits.balanced_keep(6, ds.n, seed=0)  # 6 models on 8 devices: padded
        mesh = engine.model_mesh()  # all 8 devices: 6 models padded to 8
        factory = models.mlp((32,), 10, 64)
        pool = engine.train(factory, ds.x, ds.y, keep, epochs=2, seed=1, mesh=mesh)
        leaf = jax.tree.leaves(pool.params)[0]
        assert len(leaf.sharding.device_set) == 8, leaf.sharding
        np.savez("{tmp_path}/sharded.npz", *[np.asarray(l) for l in jax.tree.leaves(pool.params)])
        # predictions shard the models over the devices too (6 padded to 8)
        np.save("{tmp_path}/logits.npy", engine.predict(pool, ds.x[:500]))
        np.save("{tmp_path}/labels.npy", engine.predict(pool, ds.x[:500], labels=True))
        """
    )
    subprocess.run([sys.executable, "-c", script], env=env(8), check=True, timeout=300)
    want, pool = reference_pool()
    got = np.load(tmp_path / "sharded.npz")
    assert len(got.files) == len(want)
    for i, w in enumerate(want):
        np.testing.assert_allclose(got[f"arr_{i}"], w, rtol=1e-5, atol=1e-6)
    logits = np.load(tmp_path / "logits.npy")
    np.testing.assert_allclose(logits, pool.logits[:, :500], rtol=1e-4, atol=1e-5)
    assert (np.load(tmp_path / "labels.npy") == logits.argmax(-1)).all()


def test_two_processes_equal_one(tmp_path):
    port, out = free_port(), tmp_path / "mp"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "mp_worker.py"),
                str(i),
                "2",
                str(port),
                str(out),
            ],
            env=env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    for p in procs:
        output, _ = p.communicate(timeout=300)
        assert p.returncode == 0, output.decode()[-2000:]
    want, pool = reference_pool()
    for i in range(2):  # every process ends with the whole pool
        got = np.load(f"{out}-{i}.npz")
        for j, w in enumerate(want):
            np.testing.assert_allclose(got[f"arr_{j}"], w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["losses"], pool.losses, rtol=1e-5)
        np.testing.assert_allclose(got["acc"], pool.test_accuracy)
