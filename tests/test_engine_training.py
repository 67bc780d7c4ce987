"""engine.train (jaxmia/engine/training.py) against its references: one model alone,
chunks, seeds, any optax optimizer, the user's own modules; and its rough edges: rng
streams, the compile cache, the loss, steps per epoch, keep as 0/1 integers."""

import contextlib
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import tree_max_diff

from jaxmia import models, splits
from jaxmia._src import datasets, engine
from jaxmia._src.engine import caching, kernel, placement, training

# One factory and optimizer object per configuration, so the compiled functions are reused.
TX = optax.adam(3e-3)
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def factory_for(ds, dropout=0.0):
    return models.mlp((32,), ds.num_classes, int(np.prod(ds.input_shape)), dropout=dropout)


class Case(NamedTuple):
    """Four models of unequal member counts on ``small_digits``, and two factories."""

    ds: datasets.Dataset
    keep: np.ndarray
    factory: object
    dropout_factory: object


@pytest.fixture(scope="module")
def case(small_digits) -> Case:
    ds = small_digits
    keep = splits.balanced_keep(4, ds.n, seed=3)  # rows of unequal size: masked steps
    assert len(set(keep.sum(1).tolist())) > 1
    return Case(ds, keep, factory_for(ds), factory_for(ds, dropout=0.3))


@pytest.fixture(scope="module")
def data(small_digits) -> datasets.Dataset:
    """The first 200 examples of ``small_digits``."""
    return small_digits.subset(np.arange(200))


@pytest.mark.slow
def test_vmap_equals_each_model_trained_alone(case):
    ds, keep, factory = case.ds, case.keep, case.factory
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


@pytest.mark.slow
def test_vmap_equals_sequential_with_dropout(case):
    ds, keep, factory = case.ds, case.keep, case.dropout_factory
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


@pytest.mark.slow
def test_chunked_equals_unchunked(case):
    ds, keep, factory = case.ds, case.keep, case.factory
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
def test_progress_counts_models_done(case, k, chunk, mode, expected, last_chunk):
    ds, keep, factory = case.ds, case.keep, case.factory
    seen = []
    pool = engine.train(
        factory,
        ds.x,
        ds.y,
        keep[:k],
        epochs=2,
        batch_size=32,
        optimizer=TX,
        seed=2,
        chunk_size=chunk,
        mode=mode,
        progress=lambda *a: seen.append(a),
    )
    assert [done for done, _, _ in seen] == expected
    assert all(total == k for _, total, _ in seen)
    # the loss is the mean over the chunk just trained, in its last epoch
    assert seen[-1][2] == pytest.approx(float(np.mean(pool.losses[-1, last_chunk:])), rel=1e-6)


def test_same_seed_same_numbers_other_seed_other_numbers(case):
    ds, keep, factory = case.ds, case.keep, case.factory
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


def test_second_call_with_new_data_does_not_recompile(case):
    ds, keep, factory = case.ds, case.keep, case.factory
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


@pytest.mark.slow
def test_any_optax_optimizer_and_training_learns(case):
    ds, keep, factory = case.ds, case.keep, case.factory
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1, momentum=0.9))
    pool = engine.train(factory, ds.x, ds.y, keep, epochs=15, batch_size=32, optimizer=tx)
    assert pool.losses.shape == (15, 4)
    assert np.all(pool.losses[-1] < pool.losses[0])
    assert np.all(pool.train_accuracy > 0.9)
    assert np.all(pool.test_accuracy > 0.5)


@pytest.mark.slow
def test_user_model_class_and_predict_shape(case):
    ds, keep = case.ds, case.keep
    factory = functools.partial(TinyNet, 64, ds.num_classes)
    pool = engine.train(factory, ds.x, ds.y, keep, epochs=2, batch_size=32, optimizer=TX)
    logits = engine.predict(pool, ds.x, batch_size=128)  # 300 = 2 full batches + a padded one
    assert logits.shape == (4, ds.n, ds.num_classes)
    for i in range(4):
        np.testing.assert_allclose(logits[i], np.asarray(pool.model(i)(ds.x)), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_cnn_trains_under_vmap():
    rng = np.random.default_rng(0)
    x = rng.random((40, 8, 8, 1), dtype=np.float32)
    y = (x.mean((1, 2, 3)) > 0.5).astype(np.int64)
    factory = models.cnn((8, 8, 1), 2, channels=(4,), hidden=8)
    pool = engine.train(factory, x, y, splits.balanced_keep(2, 40), epochs=1, batch_size=8)
    assert engine.predict(pool, x).shape == (2, 40, 2)


def test_bad_inputs_raise_clear_errors(case):
    ds, keep, factory = case.ds, case.keep, case.factory
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_non_members_never_reach_training(tiny):
    """Kills: a member-count comparison `<` turned `<=`, which trains on one non-member
    per epoch. Garbage features and labels on the non-members leave every parameter
    bit-identical."""
    keep = splits.balanced_keep(2, tiny.ds.n, seed=1)
    kw = dict(epochs=3, batch_size=7, seed=5, mesh=None, chunk_size=None)
    clean = engine.train(tiny.factory, tiny.ds.x, tiny.ds.y, keep, **kw)
    out = ~keep[0]
    x, y = tiny.ds.x.copy(), tiny.ds.y.copy()
    rng = np.random.default_rng(0)
    x[out] = rng.normal(0, 100, x[out].shape).astype(np.float32)
    y[out] = rng.integers(0, tiny.ds.num_classes, out.sum())
    dirty = engine.train(tiny.factory, x, y, keep, **kw)  # model 1 trains on some of them
    first = lambda p: jax.tree.map(lambda a: a[:1], p)
    assert tree_max_diff(first(clean.params), first(dirty.params)) == 0.0
    assert tree_max_diff(clean.params, dirty.params) > 0  # the garbage was trained on


class StreamNet(nnx.Module):
    """Draws from the default stream (``rngs()``) and an unnamed one (``rngs.noise()``)."""

    def __init__(self, din, dout, *, rngs):
        self.a = nnx.Linear(din, 16, rngs=rngs)
        self.b = nnx.Linear(16, dout, rngs=rngs)
        self.scale = nnx.Param(1.0 + 0.1 * jax.random.normal(rngs(), (16,)))
        self.shift = nnx.Param(0.1 * jax.random.normal(rngs.noise(), (16,)))

    def __call__(self, x):
        return self.b(nnx.relu(self.a(x)) * self.scale + self.shift)


@pytest.mark.slow
def test_module_drawing_from_any_rng_stream_trains(data):
    keep = splits.balanced_keep(4, len(data.y), seed=0)
    factory = functools.partial(StreamNet, data.x.shape[1], data.num_classes)
    pool = engine.train(
        factory, data.x, data.y, keep, epochs=1, batch_size=32, optimizer=TX, seed=4
    )
    alone = engine.train(
        factory,
        data.x,
        data.y,
        keep,
        epochs=1,
        batch_size=32,
        optimizer=TX,
        seed=4,
        mode="sequential",
    )
    assert tree_max_diff(pool.params, alone.params) < 1e-5
    initial = engine.train(factory, data.x, data.y, keep, epochs=0, optimizer=TX, seed=4)
    scale = np.asarray(initial.params["scale"][...])
    assert len({tuple(row) for row in scale.round(6)}) == 4  # each model its own stream


@pytest.mark.slow
def test_params_and_dropout_streams_keep_their_keys(data):
    """Adding the default stream changes no other key: the initial parameters are those
    of ``nnx.Rngs(params=split(key, 3)[0], dropout=split(key, 3)[1])``."""
    factory = models.mlp((8,), data.num_classes, data.x.shape[1], dropout=0.2)
    keys = engine.model_keys(3, 2)
    pool = engine.train(
        factory, data.x, data.y, np.ones((2, len(data.y)), bool), epochs=0, keys=keys
    )
    for i in range(2):
        init_key, dropout_key, _ = jax.random.split(keys[i], 3)
        model = factory(rngs=nnx.Rngs(params=init_key, dropout=dropout_key))
        assert (
            tree_max_diff(
                nnx.state(model, nnx.Param),
                pool.select(slice(i, i + 1)).params,
            )
            == 0.0
        )


@contextlib.contextmanager
def count_compilations():
    seen = []

    def listen(name, _duration, **_):
        if name == COMPILE_EVENT:
            seen.append(name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


class TinyNet(nnx.Module):
    """A user's own model: the engine must not care about its structure."""

    def __init__(self, din, dout, *, rngs):
        self.a = nnx.Linear(din, 8, rngs=rngs)
        self.b = nnx.Linear(8, dout, rngs=rngs)

    def __call__(self, x):
        return self.b(jnp.tanh(self.a(x)))


@pytest.mark.slow
def test_equal_new_factory_and_optimizer_do_not_recompile(data):
    keep = splits.balanced_keep(2, len(data.y), seed=1)
    factory = lambda: functools.partial(TinyNet, data.x.shape[1], data.num_classes)
    run = lambda tx: engine.train(
        factory(), data.x, data.y, keep, epochs=1, batch_size=32, optimizer=tx, chunk_size=None
    )
    first = run(optax.chain(optax.clip(1.0), optax.adam(2e-3)))
    with count_compilations() as compiles:
        again = run(optax.chain(optax.clip(1.0), optax.adam(2e-3)))  # new, equal objects
    assert compiles == []
    assert tree_max_diff(first.params, again.params) == 0.0
    with count_compilations() as compiles:
        run(optax.chain(optax.clip(1.0), optax.adam(5e-3)))  # another rate: another program
    assert len(compiles) >= 1


def test_compile_caches_are_bounded():
    assert 0 < training.compiled.cache_info().maxsize <= 64
    size = kernel.abstract_model.cache_info().maxsize
    for width in range(1, size + 9):
        kernel.abstract_model(functools.partial(TinyNet, width, 2))
    assert kernel.abstract_model.cache_info().currsize == size
    cached = caching.cache_by_structure(maxsize=2)(lambda a: object())
    first = cached(functools.partial(TinyNet, 1, 2))
    assert cached(functools.partial(TinyNet, 1, 2)) is first  # equal partial: a hit
    cached(2), cached(3)
    assert cached(functools.partial(TinyNet, 1, 2)) is not first  # evicted
    assert cached.cache_info().currsize == 2


def smoothed(logits, labels):
    """Label-smoothed cross-entropy, per example."""
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), 0.3)
    return optax.softmax_cross_entropy(logits, targets)


def reference_model(factory, tx, x, y, keep_row, key, epochs, batch_size, loss_fn):
    """One model trained by a plain optax loop, in the engine's data order."""
    init_key, dropout_key, data_key = jax.random.split(key, 3)
    graphdef, params = nnx.split(factory(rngs=nnx.Rngs(params=init_key, dropout=dropout_key)))
    opt_state = tx.init(params)
    members = int(keep_row.sum())

    @jax.jit
    def step(params, opt_state, xb, yb):  # one plain optax step on a batch
        mean_loss = lambda p: loss_fn(nnx.merge(graphdef, p)(xb), yb).mean()
        updates, opt_state = tx.update(jax.grad(mean_loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for e in range(epochs):
        order = np.asarray(kernel.member_order(jax.random.fold_in(data_key, e), keep_row))
        for start in range(0, members, batch_size):
            idx = order[start : min(start + batch_size, members)]
            params, opt_state = step(params, opt_state, x[idx], y[idx])
    return params


@pytest.mark.slow
def test_loss_fn_equals_a_plain_optax_loop_with_that_loss(data):
    factory = models.mlp((16,), data.num_classes, data.x.shape[1])
    keep = splits.balanced_keep(2, len(data.y), seed=2)
    keys = engine.model_keys(11, 2)
    kwargs = dict(epochs=2, batch_size=32, optimizer=TX, keys=keys)
    pool = engine.train(factory, data.x, data.y, keep, loss_fn=smoothed, **kwargs)
    for i in range(2):
        want = reference_model(factory, TX, data.x, data.y, keep[i], keys[i], 2, 32, smoothed)
        assert tree_max_diff(pool.select(slice(i, i + 1)).params, want) < 1e-4
    default = engine.train(factory, data.x, data.y, keep, **kwargs)
    assert tree_max_diff(pool.params, default.params) > 1e-3
    explicit = engine.train(factory, data.x, data.y, keep, loss_fn=kernel.cross_entropy, **kwargs)
    assert tree_max_diff(explicit.params, default.params) == 0.0


@pytest.mark.slow
def test_loss_fn_is_used_by_dp_sgd(data):
    """Without noise and clipping, and with full batches, DP-SGD is plain training with
    the same loss."""
    factory = models.mlp((16,), data.num_classes, data.x.shape[1])
    keep = np.zeros((2, len(data.y)), bool)
    keep[0, :64], keep[1, 64:160] = True, True  # 2 and 3 full batches of 32
    dp = engine.DPConfig(l2_clip=1e6, noise_multiplier=0.0, sampling="shuffle")
    kwargs = dict(epochs=1, batch_size=32, optimizer=optax.sgd(0.1), seed=3)
    private = engine.train(factory, data.x, data.y, keep, dp=dp, loss_fn=smoothed, **kwargs)
    plain = engine.train(factory, data.x, data.y, keep, loss_fn=smoothed, **kwargs)
    assert tree_max_diff(private.params, plain.params) < 1e-5
    private_default = engine.train(factory, data.x, data.y, keep, dp=dp, **kwargs)
    assert tree_max_diff(private.params, private_default.params) > 1e-4


def test_loss_fn_of_the_wrong_shape_is_refused(data):
    factory = models.mlp((4,), data.num_classes, data.x.shape[1])
    with pytest.raises(ValueError, match="per-example losses"):
        engine.train(
            factory,
            data.x,
            data.y,
            np.ones(len(data.y), bool),
            epochs=1,
            loss_fn=lambda logits, labels: smoothed(logits, labels).mean(),
        )
    with pytest.raises(ValueError, match="loss_fn must be callable"):
        engine.train(factory, data.x, data.y, np.ones(len(data.y), bool), epochs=1, loss_fn="hinge")


def counting_optimizer() -> optax.GradientTransformation:
    """Adds ``t`` to every parameter at the optimizer's ``t``-th step (optax's count plus
    one), whatever the gradient: after ``T`` steps a parameter has moved by
    ``T (T + 1) / 2``, which a step count advanced by skipped steps would change."""
    ones = optax.GradientTransformation(
        lambda params: optax.EmptyState(),
        lambda grads, state, params=None: (jax.tree.map(jnp.ones_like, grads), state),
    )
    return optax.chain(ones, optax.scale_by_schedule(lambda count: count + 1))


@pytest.mark.slow
@pytest.mark.parametrize("epochs", [1, 2])
def test_steps_per_epoch_is_what_the_kernel_runs(data, epochs):
    factory = models.mlp((4,), data.num_classes, data.x.shape[1])
    keep = np.zeros((3, len(data.y)), bool)
    keep[0, :40], keep[1, :64], keep[2, 50:150] = True, True, True
    steps = engine.steps_per_epoch(keep, 32)
    np.testing.assert_array_equal(steps, [2, 2, 4])
    total = engine.optimizer_steps(keep, 32, epochs)
    np.testing.assert_array_equal(total, epochs * steps)
    kwargs = dict(batch_size=32, optimizer=counting_optimizer(), seed=0, chunk_size=None)
    before = engine.train(factory, data.x, data.y, keep, epochs=0, **kwargs)
    after = engine.train(factory, data.x, data.y, keep, epochs=epochs, **kwargs)
    for i in range(3):  # each model's own schedule count, not the pool's longest
        moved = jax.tree.map(lambda a, b, i=i: a[i] - b[i], after.params, before.params)
        for leaf in jax.tree.leaves(moved):
            np.testing.assert_allclose(leaf, total[i] * (total[i] + 1) / 2, atol=1e-4)
    np.testing.assert_array_equal(engine.steps_per_epoch(keep[1].astype(int), 32), [2])


def test_balanced_splits_give_models_unequal_step_counts():
    # the rows of a balanced split differ in size, so their schedules reach other counts
    keep = splits.balanced_keep(16, 1797, seed=0)
    members = keep.sum(axis=1)
    steps = engine.steps_per_epoch(keep, 64)
    np.testing.assert_array_equal(steps, np.ceil(members / 64).astype(int))
    assert set(steps.tolist()) == {14, 15}
    total = engine.optimizer_steps(keep, 64, 30)
    np.testing.assert_array_equal(total, 30 * steps)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="integer epochs >= 0"):
            engine.optimizer_steps(keep, 64, bad)


@pytest.mark.slow
def test_keep_as_zero_one_integers_everywhere(data):
    factory = models.mlp((4,), data.num_classes, data.x.shape[1])
    keep = splits.balanced_keep(2, len(data.y), seed=5)
    heldout = np.zeros(len(data.y), bool)
    heldout[::3] = True
    kwargs = dict(epochs=1, batch_size=32, optimizer=TX, seed=1)
    want = engine.train(factory, data.x, data.y, keep, heldout=heldout, **kwargs)
    got = engine.train(
        factory, data.x, data.y, keep.astype(np.int64), heldout=heldout.astype(np.uint8), **kwargs
    )
    assert tree_max_diff(want.params, got.params) == 0.0
    assert got.keep.dtype == bool
    np.testing.assert_array_equal(want.test_accuracy, got.test_accuracy)
    for acc_want, acc_got in zip(
        engine.accuracies(want.logits, data.y, keep, heldout),
        engine.accuracies(want.logits, data.y, keep.astype(int), heldout.astype(int)),
        strict=True,
    ):
        np.testing.assert_array_equal(acc_want, acc_got)
    for bad in (keep.astype(int) * 2, keep.astype(float)):
        with pytest.raises(ValueError, match="keep must hold bools or 0/1 integers"):
            engine.train(factory, data.x, data.y, bad, **kwargs)
    with pytest.raises(ValueError, match="heldout must hold bools or 0/1 integers"):
        engine.train(factory, data.x, data.y, keep, heldout=heldout.astype(int) - 1, **kwargs)
    with pytest.raises(ValueError, match="keep must hold bools or 0/1 integers"):
        engine.steps_per_epoch(keep.astype(int) + 1, 32)


def test_accuracies_count_members_and_held_out_records_apart():
    # model 0 right on its members only, model 1 right on its non-members only
    y = np.array([0, 1, 0, 1])
    keep = np.array([[1, 1, 0, 0], [1, 1, 0, 0]], bool)
    right = np.eye(2, dtype=np.float32)[y]
    logits = np.stack(
        [np.where(keep[0, :, None], right, 1 - right), np.where(keep[1, :, None], 1 - right, right)]
    )
    train_acc, test_acc = engine.accuracies(logits, y, keep)
    np.testing.assert_array_equal(train_acc, [1.0, 0.0])
    np.testing.assert_array_equal(test_acc, [0.0, 1.0])
    heldout = np.array([1, 1, 1, 0], bool)  # members are never counted as held out
    np.testing.assert_array_equal(engine.accuracies(logits, y, keep, heldout)[1], [0.0, 1.0])


class _Compiling(Exception):
    """Raised in place of compiling: the settings a call reached the compiler with."""


def test_poisson_batches_have_slots_for_the_largest_model(data, monkeypatch):
    # the slots of a Poisson batch are sized for the model with the most members: sized
    # for the smallest (10 members, at most 10 slots), the largest (40 members, expected
    # batch 8) would overflow in about one step in ten
    seen = {}

    def compiled(*args, **kwargs):
        seen.update(kwargs)
        raise _Compiling

    monkeypatch.setattr(training, "compiled", compiled)
    keep = np.zeros((2, len(data.y)), bool)
    keep[0, :10], keep[1, 50:90] = True, True
    factory = models.mlp((4,), data.num_classes, data.x.shape[1])
    with pytest.raises(_Compiling):
        engine.train(factory, data.x, data.y, keep, epochs=1, batch_size=8, dp=engine.DPConfig())
    assert seen["max_batch"] == engine.sampling.max_batch_size(8, 40) > 10
