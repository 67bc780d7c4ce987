"""The shadow engine against its references: one model alone, chunks, seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import tree_max_diff

from jaxmia import engine, models, splits
from jaxmia.engine import kernel, placement, training


def factory_for(ds, dropout=0.0):
    return models.mlp((32,), ds.num_classes, int(np.prod(ds.input_shape)), dropout=dropout)


# One factory and optimizer object per configuration, so the compiled functions are reused.
TX = optax.adam(3e-3)


@pytest.fixture(scope="module")
def setup(small_digits):
    ds = small_digits
    keep = splits.balanced_keep(4, ds.n, seed=3)  # rows of unequal size: masked steps
    assert len(set(keep.sum(1).tolist())) > 1
    return ds, keep, factory_for(ds), factory_for(ds, dropout=0.3)


def test_vmap_equals_each_model_trained_alone(setup):
    ds, keep, factory, _ = setup
    keys = engine.model_keys(7, keep.shape[0])
    pool = engine.train(factory, ds.x, ds.y, keep, epochs=3, batch_size=32, optimizer=TX, keys=keys)
    for i in range(keep.shape[0]):
        alone = engine.train(
            factory,
            ds.x,
            ds.y,
            keep[i],
            epochs=3,
            batch_size=32,
            optimizer=TX,
            keys=keys[i : i + 1],
        )
        assert tree_max_diff(pool.select(slice(i, i + 1)).params, alone.params) < 1e-5
        assert pool.train_accuracy[i] == pytest.approx(alone.train_accuracy[0])


def test_vmap_equals_sequential_with_dropout(setup):
    ds, keep, _, factory = setup
    a = engine.train(factory, ds.x, ds.y, keep, epochs=2, batch_size=32, optimizer=TX, seed=1)
    b = engine.train(
        factory, ds.x, ds.y, keep, epochs=2, batch_size=32, optimizer=TX, seed=1, mode="sequential"
    )
    assert tree_max_diff(a.params, b.params) < 1e-5
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-5)
    # dropout streams are per model: every model's RNG state differs
    rng_keys = [
        leaf for leaf in jax.tree.leaves(a.rest) if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
    ]
    data = jax.random.key_data(rng_keys[0])
    assert len({tuple(np.asarray(row).ravel()) for row in data}) == keep.shape[0]


def test_chunked_equals_unchunked(setup):
    ds, keep, factory, _ = setup
    full = engine.train(factory, ds.x, ds.y, keep, epochs=2, batch_size=32, optimizer=TX, seed=2)
    chunked = engine.train(
        factory, ds.x, ds.y, keep, epochs=2, batch_size=32, optimizer=TX, seed=2, chunk_size=3
    )
    assert tree_max_diff(full.params, chunked.params) < 1e-6
    np.testing.assert_allclose(full.test_accuracy, chunked.test_accuracy)


@pytest.mark.parametrize(
    "k, chunk, mode, expected, last_chunk",
    [
        (4, 2, "vmap", [1.0, 2, 3.0, 4], 2),  # half-way through a chunk's 2 epochs, then done
        (4, None, "vmap", [2.0, 4], 0),
        (2, "auto", "sequential", [0.5, 1, 1.5, 2], 1),  # one model at a time
        (1, None, "vmap", [0.5, 1], 0),  # a target: fractions of one model
    ],
)
def test_progress_counts_models_done(setup, k, chunk, mode, expected, last_chunk):
    ds, keep, factory, _ = setup
    seen = []
    pool = engine.train(
        factory, ds.x, ds.y, keep[:k], epochs=2, batch_size=32, optimizer=TX, seed=2,
        chunk_size=chunk, mode=mode, progress=lambda *a: seen.append(a),
    )  # fmt: skip
    assert [done for done, _, _ in seen] == expected
    assert all(total == k for _, total, _ in seen)
    # the loss is the mean over the chunk just trained, in its last epoch
    assert seen[-1][2] == pytest.approx(float(np.mean(pool.losses[-1, last_chunk:])), rel=1e-6)


def test_cli_progress_lines(setup):
    import io

    from jaxmia import cli

    out = io.StringIO()
    progress = cli.Progress(out)
    for done in (0.5, 1):  # the target
        progress(done, 1, 0.25)
    for done in (1.0, 2, 3.0, 4):  # then the shadow pool
        progress(done, 4, 0.5)
    progress(4, 4, float("nan"))  # a pool read back
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("  training  50%  loss 0.2500") and "left" in lines[0]
    assert lines[1].startswith("  training 100%  loss 0.2500") and "left" not in lines[1]
    assert [line.split("models")[0].split()[-1] for line in lines[2:6]] == [
        "1/4", "2/4", "3/4", "4/4"
    ]  # fmt: skip
    assert lines[6] == "  4/4 shadow models read from the pool"


def test_same_seed_same_numbers_other_seed_other_numbers(setup):
    ds, keep, factory, _ = setup
    run = lambda seed: engine.train(
        factory, ds.x, ds.y, keep, epochs=1, batch_size=32, optimizer=TX, seed=seed
    )
    a, b, c = run(5), run(5), run(6)
    assert tree_max_diff(a.params, b.params) == 0.0
    np.testing.assert_array_equal(a.losses, b.losses)
    assert tree_max_diff(a.params, c.params) > 1e-3
    # the models of one pool start from different initialisations
    kernel = a.params["head"]["kernel"][...]
    assert float(jnp.abs(kernel[0] - kernel[1]).max()) > 1e-3


def test_second_call_with_new_data_does_not_recompile(setup):
    ds, keep, factory, _ = setup
    kwargs = dict(epochs=1, batch_size=32, optimizer=TX)
    engine.train(factory, ds.x, ds.y, keep, seed=0, **kwargs)
    steps = int(np.ceil(keep.sum(1).max() / 32))
    full = int(np.ceil(keep.sum(1).min() / 32))
    _, epoch_fn = training.compiled(factory, TX, 32, steps, full, True, None, None)
    before = epoch_fn._cache_size()
    x2 = np.random.default_rng(1).random(ds.x.shape, dtype=np.float32)
    y2 = np.random.default_rng(2).integers(0, ds.num_classes, ds.n)
    engine.train(factory, x2, y2, keep, seed=1, **kwargs)
    assert before >= 1
    assert epoch_fn._cache_size() == before


def test_any_optax_optimizer_and_training_learns(setup):
    ds, keep, factory, _ = setup
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1, momentum=0.9))
    pool = engine.train(factory, ds.x, ds.y, keep, epochs=15, batch_size=32, optimizer=tx)
    assert pool.losses.shape == (15, 4)
    assert np.all(pool.losses[-1] < pool.losses[0])
    assert np.all(pool.train_accuracy > 0.9)
    assert np.all(pool.test_accuracy > 0.5)


class TinyNet(nnx.Module):
    """A user's own model: the engine must not care about its structure."""

    def __init__(self, din, dout, *, rngs):
        self.a = nnx.Linear(din, 16, rngs=rngs)
        self.b = nnx.Linear(16, dout, rngs=rngs)

    def __call__(self, x):
        return self.b(nnx.relu(self.a(x)))


def test_user_model_class_and_predict_shape(setup):
    ds, keep, _, _ = setup
    import functools

    factory = functools.partial(TinyNet, 64, ds.num_classes)
    pool = engine.train(factory, ds.x, ds.y, keep, epochs=2, batch_size=32, optimizer=TX)
    logits = engine.predict(pool, ds.x, batch_size=128)  # 300 = 2 full batches + a padded one
    assert logits.shape == (4, ds.n, ds.num_classes)
    for i in range(4):
        np.testing.assert_allclose(logits[i], np.asarray(pool.model(i)(ds.x)), rtol=1e-5, atol=1e-5)


def test_cnn_trains_under_vmap():
    rng = np.random.default_rng(0)
    x = rng.random((40, 8, 8, 1), dtype=np.float32)
    y = (x.mean((1, 2, 3)) > 0.5).astype(np.int64)
    factory = models.cnn((8, 8, 1), 2, channels=(4,), hidden=8)
    pool = engine.train(factory, x, y, splits.balanced_keep(2, 40), epochs=1, batch_size=8)
    assert engine.predict(pool, x).shape == (2, 40, 2)


def test_bad_inputs_raise_clear_errors(setup):
    ds, keep, factory, _ = setup
    with pytest.raises(ValueError, match="mismatched lengths"):
        engine.train(factory, ds.x[:-1], ds.y, keep, epochs=1)
    with pytest.raises(ValueError, match="labels must be integers"):
        engine.train(factory, ds.x, ds.y.astype(float), keep, epochs=1)
    with pytest.raises(ValueError, match="no training examples"):
        engine.train(factory, ds.x, ds.y, np.zeros_like(keep), epochs=1)
    with pytest.raises(ValueError, match="unknown mode"):
        engine.train(factory, ds.x, ds.y, keep, epochs=1, mode="fast")
    for heldout in (np.ones(ds.n - 1, bool), np.ones((keep.shape[0] + 1, ds.n), bool)):
        with pytest.raises(ValueError, match="heldout must be"):
            engine.train(factory, ds.x, ds.y, keep, epochs=1, heldout=heldout)


def test_auto_chunks_fit_the_cache_and_change_nothing(small_digits):
    big = models.mlp((128,), 30, 446)
    chunk = engine.auto_chunk_size(big, (446,), 128, 64)
    assert chunk is not None and 1 < chunk < 64  # 64 such models do not fit in 12 MiB
    assert engine.auto_chunk_size(big, (446,), 128, 1) is None
    assert placement.vmapped_convs_are_slow(models.cnn((8, 8, 1), 2)) is True
    assert placement.vmapped_convs_are_slow(big) is False
    ds = small_digits
    keep = splits.balanced_keep(6, ds.n, seed=0)
    factory = factory_for(ds)
    auto = engine.train(factory, ds.x, ds.y, keep, epochs=1, batch_size=32, optimizer=TX)
    forced = engine.train(
        factory, ds.x, ds.y, keep, epochs=1, batch_size=32, optimizer=TX, chunk_size=4
    )
    assert tree_max_diff(auto.params, forced.params) < 1e-6


@pytest.mark.parametrize("n", [1, 2, 5, 1797, 5010, 2**20])
def test_member_order_is_a_permutation_with_members_first(n):
    rng = np.random.default_rng(n)
    keep = rng.random(n) < 0.5
    order = np.asarray(kernel.member_order(jax.random.key(3), jnp.asarray(keep)))
    assert order.dtype == np.int32
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    m = int(keep.sum())
    assert keep[order[:m]].all() and not keep[order[m:]].any()


def test_member_order_is_uniform_enough():
    """Each member lands in each half of the order about equally often, and different
    epoch keys give different orders (no index-order bias from the packed sort)."""
    n = 1797
    keep = np.zeros(n, bool)
    keep[::2] = True
    orders = jax.vmap(
        lambda e: kernel.member_order(jax.random.fold_in(jax.random.key(0), e), jnp.asarray(keep))
    )(jnp.arange(400))
    orders = np.asarray(orders)[:, : keep.sum()]
    assert len({tuple(o[:20]) for o in orders}) == 400
    # mean position of each member over 400 orders: uniform gives (m - 1) / 2 +- ~26
    position = np.empty_like(orders)
    np.put_along_axis(position, np.argsort(orders, axis=1), np.arange(orders.shape[1]), axis=1)
    mean_position = position.mean(axis=0)
    m = orders.shape[1]
    assert abs(mean_position.mean() - (m - 1) / 2) < 1e-6
    assert np.abs(mean_position - (m - 1) / 2).max() < 6 * m / np.sqrt(12 * 400)
    # no correlation between a member's index and its position
    assert abs(np.corrcoef(np.arange(m), mean_position)[0, 1]) < 0.1
