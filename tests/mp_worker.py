"""One process of the two-process tests (run by tests/test_engine_distributed.py and
tests/test_pool_processes.py).

``mp_worker.py PROCESS NUM_PROCESSES PORT OUT``: trains the 6-model digits pool and saves
its arrays to ``OUT-PROCESS.npz``.

``mp_worker.py PROCESS NUM_PROCESSES PORT OUT pool DIR... [--kill-after N]``: trains the
small pool of :func:`pool_run` into each pool directory ``DIR`` in turn (``checkpoint=``)
and saves the last one's arrays to ``OUT-PROCESS.npz``; with ``--kill-after N`` the process
SIGKILLs itself right after writing its ``N``-th chunk file into the last ``DIR``
(deterministic: a hook on :meth:`jaxmia._src.engine.store.pools.ChunkStore.write_models`).
"""

import os
import signal
import sys

import numpy as np

from jaxmia import models, splits
from jaxmia._src import datasets, engine
from jaxmia._src.engine import distributed
from jaxmia._src.engine.store import checkpointing, pools

POOL_MODELS, POOL_CHUNK, POOL_RECORDS = 5, 2, 120
"""The pool of the resume test: 5 models in chunks of 2 (the last padded), on 120 records."""


def pool_run(checkpoint=None, **kwargs) -> engine.Pool:
    """The small pool of the resume test (also trained by the test in one process)."""
    ds = datasets.load("digits")
    x, y = ds.x[:POOL_RECORDS], ds.y[:POOL_RECORDS]
    keep = splits.balanced_keep(POOL_MODELS + POOL_MODELS % 2, POOL_RECORDS, seed=0)[:POOL_MODELS]
    factory = models.mlp((8,), 10, 64)
    return engine.train(
        factory,
        x,
        y,
        keep,
        epochs=2,
        batch_size=32,
        seed=1,
        chunk_size=POOL_CHUNK,
        checkpoint=checkpoint,
        **kwargs,
    )


def kill_after(n: int) -> None:
    """SIGKILLs this process right after it has written its ``n``-th chunk file."""
    write, written = pools.ChunkStore.write_models, []

    def hooked(self, *args, **kwargs):
        entry = write(self, *args, **kwargs)
        written.append(entry["file"])
        if len(written) == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return entry

    pools.ChunkStore.write_models = hooked


if __name__ == "__main__":
    process_id, num_processes, port, out = sys.argv[1:5]
    distributed.initialize(f"127.0.0.1:{port}", int(num_processes), int(process_id))
    import jax

    assert jax.process_count() == int(num_processes)
    if sys.argv[5:6] == ["pool"]:
        dirs, kill = sys.argv[6:], None
        if "--kill-after" in dirs:
            kill = int(dirs[dirs.index("--kill-after") + 1])
            dirs = dirs[: dirs.index("--kill-after")]
        for i, directory in enumerate(dirs):
            if kill is not None and i == len(dirs) - 1:
                kill_after(kill)
            pool = pool_run(directory)
        params = checkpointing.flatten("params", pool.params)
        arrays = {name: a for name, _, a in params}
        np.savez(f"{out}-{process_id}.npz", logits=pool.logits, losses=pool.losses, **arrays)
        sys.exit(0)
    ds = datasets.load("digits")
    keep = splits.balanced_keep(6, ds.n, seed=0)  # 6 models over 2 processes x 2 devices: padded
    pool = engine.train(models.mlp((32,), 10, 64), ds.x, ds.y, keep, epochs=2, seed=1)
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(pool.params)]
    np.savez(f"{out}-{process_id}.npz", *leaves, losses=pool.losses, acc=pool.test_accuracy)
