"""Early stopping (jaxmia/engine/early_stopping.py): each model keeps its best epoch."""

import jax
import numpy as np
import optax

from jaxmia import models, splits
from jaxmia._src import engine


def test_early_stopping_keeps_the_best_epoch(small_digits):
    """Two small MLPs on 200 of ``small_digits`` (the other 100 for validation) stop well
    before 40 epochs, each at its own; each keeps the parameters of its best epoch."""
    ds = small_digits
    factory = models.mlp((16,), 10, 64)
    keep = splits.balanced_keep(2, 200, seed=0)
    keep = np.concatenate([keep, np.zeros((2, ds.n - 200), bool)], axis=1)
    val = (ds.x[200:], ds.y[200:])
    tx = optax.adam(0.05)  # a large step overfits fast, so validation loss turns up
    kw = dict(optimizer=tx, seed=0, batch_size=32)
    stopped = engine.train(factory, ds.x, ds.y, keep, epochs=40, validation=val, patience=2, **kw)
    best = stopped.best_epoch
    assert (best < 40).all() and len(set(best.tolist())) == 2  # two different epochs
    assert np.isnan(stopped.losses[-1]).all()  # the run stopped before the last epoch
    for i in range(2):  # equals training model i for exactly its best number of epochs
        plain = engine.train(factory, ds.x, ds.y, keep, epochs=int(best[i]), **kw)
        for a, b in zip(
            jax.tree.leaves(stopped.params), jax.tree.leaves(plain.params), strict=True
        ):
            np.testing.assert_allclose(a[i], b[i], rtol=1e-5, atol=1e-6)
