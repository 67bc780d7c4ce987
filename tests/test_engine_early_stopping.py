"""Early stopping (jaxmia/engine/early_stopping.py): each model keeps its best epoch."""

import jax
import numpy as np
import optax

from jaxmia import engine, models, splits


def test_early_stopping_keeps_the_best_epoch(digits):
    ds = digits
    factory = models.mlp((64,), 10, 64)
    keep = splits.balanced_keep(2, 1200, seed=0)
    keep = np.concatenate([keep, np.zeros((2, ds.n - 1200), bool)], axis=1)
    val = (ds.x[1200:], ds.y[1200:])
    tx = optax.adam(0.05)  # a large step overfits fast, so validation loss turns up
    stopped = engine.train(
        factory, ds.x, ds.y, keep, epochs=40, optimizer=tx, seed=0, validation=val, patience=2
    )
    best = stopped.best_epoch
    assert (best < 40).all()
    assert np.isnan(stopped.losses[-1]).all()  # the run stopped before the last epoch
    for i in range(2):  # equals training model i for exactly its best number of epochs
        plain = engine.train(factory, ds.x, ds.y, keep, epochs=int(best[i]), optimizer=tx, seed=0)
        for a, b in zip(
            jax.tree.leaves(stopped.params), jax.tree.leaves(plain.params), strict=True
        ):
            np.testing.assert_allclose(a[i], b[i], rtol=1e-5, atol=1e-6)
