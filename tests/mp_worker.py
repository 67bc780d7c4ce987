"""One process of the two-process pool test (run by tests/test_engine_distributed.py)."""

import sys

import numpy as np

from jaxmia import datasets, engine, models, splits
from jaxmia.engine import distributed

if __name__ == "__main__":
    process_id, num_processes, port, out = sys.argv[1:5]
    distributed.initialize(f"127.0.0.1:{port}", int(num_processes), int(process_id))
    import jax

    assert jax.process_count() == int(num_processes)
    ds = datasets.load("digits")
    keep = splits.balanced_keep(6, ds.n, seed=0)  # 6 models over 2 processes x 2 devices: padded
    pool = engine.train(models.mlp((32,), 10, 64), ds.x, ds.y, keep, epochs=2, seed=1)
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(pool.params)]
    np.savez(f"{out}-{process_id}.npz", *leaves, losses=pool.losses, acc=pool.test_accuracy)
