"""engine.train's rough edges: rng streams, compile cache, loss, steps per epoch, keep."""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import tree_max_diff

from jaxmia import engine, models, splits
from jaxmia.engine import caching, kernel, training

TX = optax.adam(3e-3)
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@pytest.fixture(scope="module")
def data(small_digits):
    ds = small_digits
    return ds.x[:200], ds.y[:200], int(np.prod(ds.input_shape)), ds.num_classes


class StreamNet(nnx.Module):
    """Draws from the default stream (``rngs()``) and an unnamed one (``rngs.noise()``)."""

    def __init__(self, din, dout, *, rngs):
        self.a = nnx.Linear(din, 16, rngs=rngs)
        self.b = nnx.Linear(16, dout, rngs=rngs)
        self.scale = nnx.Param(1.0 + 0.1 * jax.random.normal(rngs(), (16,)))
        self.shift = nnx.Param(0.1 * jax.random.normal(rngs.noise(), (16,)))

    def __call__(self, x):
        return self.b(nnx.relu(self.a(x)) * self.scale + self.shift)


def test_module_drawing_from_any_rng_stream_trains(data):
    x, y, d, c = data
    keep = splits.balanced_keep(4, len(y), seed=0)
    factory = functools.partial(StreamNet, d, c)
    pool = engine.train(factory, x, y, keep, epochs=1, batch_size=32, optimizer=TX, seed=4)
    alone = engine.train(factory, x, y, keep, epochs=1, batch_size=32, optimizer=TX, seed=4,
                         mode="sequential")  # fmt: skip
    assert tree_max_diff(pool.params, alone.params) < 1e-5
    initial = engine.train(factory, x, y, keep, epochs=0, optimizer=TX, seed=4)
    scale = np.asarray(initial.params["scale"][...])
    assert len({tuple(row) for row in scale.round(6)}) == 4  # each model its own stream


def test_params_and_dropout_streams_keep_their_keys(data):
    """Adding the default stream changes no other key: the initial parameters are those
    of ``nnx.Rngs(params=split(key, 3)[0], dropout=split(key, 3)[1])``."""
    x, y, d, c = data
    factory = models.mlp((8,), c, d, dropout=0.2)
    keys = engine.model_keys(3, 2)
    pool = engine.train(factory, x, y, np.ones((2, len(y)), bool), epochs=0, keys=keys)
    for i in range(2):
        init_key, dropout_key, _ = jax.random.split(keys[i], 3)
        model = factory(rngs=nnx.Rngs(params=init_key, dropout=dropout_key))
        assert tree_max_diff(nnx.state(model, nnx.Param), pool.select(slice(i, i + 1)).params,
                             ) == 0.0  # fmt: skip


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
    def __init__(self, din, dout, *, rngs):
        self.a = nnx.Linear(din, 8, rngs=rngs)
        self.b = nnx.Linear(8, dout, rngs=rngs)

    def __call__(self, x):
        return self.b(jnp.tanh(self.a(x)))


def test_equal_new_factory_and_optimizer_do_not_recompile(data):
    x, y, d, c = data
    keep = splits.balanced_keep(2, len(y), seed=1)
    run = lambda tx: engine.train(functools.partial(TinyNet, d, c), x, y, keep, epochs=1,
                                  batch_size=32, optimizer=tx, chunk_size=None)  # fmt: skip
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
    for e in range(epochs):
        order = np.asarray(kernel.member_order(jax.random.fold_in(data_key, e), keep_row))
        for start in range(0, members, batch_size):
            idx = order[start : min(start + batch_size, members)]
            mean_loss = lambda p, idx=idx: loss_fn(nnx.merge(graphdef, p)(x[idx]), y[idx]).mean()
            grads = jax.grad(mean_loss)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
    return params


def test_loss_fn_equals_a_plain_optax_loop_with_that_loss(data):
    x, y, d, c = data
    factory = models.mlp((16,), c, d)
    keep = splits.balanced_keep(2, len(y), seed=2)
    keys = engine.model_keys(11, 2)
    kwargs = dict(epochs=2, batch_size=32, optimizer=TX, keys=keys)
    pool = engine.train(factory, x, y, keep, loss_fn=smoothed, **kwargs)
    for i in range(2):
        want = reference_model(factory, TX, x, y, keep[i], keys[i], 2, 32, smoothed)
        assert tree_max_diff(pool.select(slice(i, i + 1)).params, want) < 1e-4
    default = engine.train(factory, x, y, keep, **kwargs)
    assert tree_max_diff(pool.params, default.params) > 1e-3
    explicit = engine.train(factory, x, y, keep, loss_fn=kernel.cross_entropy, **kwargs)
    assert tree_max_diff(explicit.params, default.params) == 0.0


def test_loss_fn_is_used_by_dp_sgd(data):
    """Without noise and clipping, and with full batches, DP-SGD is plain training with
    the same loss."""
    x, y, d, c = data
    factory = models.mlp((16,), c, d)
    keep = np.zeros((2, len(y)), bool)
    keep[0, :64], keep[1, 64:160] = True, True  # 2 and 3 full batches of 32
    dp = engine.DPConfig(l2_clip=1e6, noise_multiplier=0.0)
    kwargs = dict(epochs=1, batch_size=32, optimizer=optax.sgd(0.1), seed=3)
    private = engine.train(factory, x, y, keep, dp=dp, loss_fn=smoothed, **kwargs)
    plain = engine.train(factory, x, y, keep, loss_fn=smoothed, **kwargs)
    assert tree_max_diff(private.params, plain.params) < 1e-5
    private_default = engine.train(factory, x, y, keep, dp=dp, **kwargs)
    assert tree_max_diff(private.params, private_default.params) > 1e-4


def test_loss_fn_of_the_wrong_shape_is_refused(data):
    x, y, d, c = data
    factory = models.mlp((4,), c, d)
    with pytest.raises(ValueError, match="per-example losses"):
        engine.train(factory, x, y, np.ones(len(y), bool), epochs=1,
                     loss_fn=lambda logits, labels: smoothed(logits, labels).mean())  # fmt: skip
    with pytest.raises(ValueError, match="loss_fn must be callable"):
        engine.train(factory, x, y, np.ones(len(y), bool), epochs=1, loss_fn="hinge")


def counting_optimizer() -> optax.GradientTransformation:
    """Adds 1 to every parameter per optimizer step that runs, whatever the gradient."""
    return optax.GradientTransformation(
        lambda params: optax.EmptyState(),
        lambda grads, state, params=None: (jax.tree.map(jnp.ones_like, grads), state),
    )


@pytest.mark.parametrize("epochs", [1, 2])
def test_steps_per_epoch_is_what_the_kernel_runs(data, epochs):
    x, y, d, c = data
    factory = models.mlp((4,), c, d)
    keep = np.zeros((3, len(y)), bool)
    keep[0, :40], keep[1, :64], keep[2, 50:150] = True, True, True
    steps = engine.steps_per_epoch(keep, 32)
    np.testing.assert_array_equal(steps, [2, 2, 4])
    kwargs = dict(batch_size=32, optimizer=counting_optimizer(), seed=0, chunk_size=None)
    before = engine.train(factory, x, y, keep, epochs=0, **kwargs)
    after = engine.train(factory, x, y, keep, epochs=epochs, **kwargs)
    for i in range(3):
        moved = jax.tree.map(lambda a, b, i=i: a[i] - b[i], after.params, before.params)
        for leaf in jax.tree.leaves(moved):
            np.testing.assert_allclose(leaf, epochs * steps[i], atol=1e-5)
    np.testing.assert_array_equal(engine.steps_per_epoch(keep[1].astype(int), 32), [2])


def test_keep_as_zero_one_integers_everywhere(data):
    x, y, d, c = data
    factory = models.mlp((4,), c, d)
    keep = splits.balanced_keep(2, len(y), seed=5)
    heldout = np.zeros(len(y), bool)
    heldout[::3] = True
    kwargs = dict(epochs=1, batch_size=32, optimizer=TX, seed=1)
    want = engine.train(factory, x, y, keep, heldout=heldout, **kwargs)
    got = engine.train(factory, x, y, keep.astype(np.int64), heldout=heldout.astype(np.uint8),
                       **kwargs)  # fmt: skip
    assert tree_max_diff(want.params, got.params) == 0.0
    assert got.keep.dtype == bool
    np.testing.assert_array_equal(want.test_accuracy, got.test_accuracy)
    for acc_want, acc_got in zip(
        engine.accuracies(want.logits, y, keep, heldout),
        engine.accuracies(want.logits, y, keep.astype(int), heldout.astype(int)),
        strict=True,
    ):
        np.testing.assert_array_equal(acc_want, acc_got)
    for bad in (keep.astype(int) * 2, keep.astype(float)):
        with pytest.raises(ValueError, match="keep must hold bools or 0/1 integers"):
            engine.train(factory, x, y, bad, **kwargs)
    with pytest.raises(ValueError, match="heldout must hold bools or 0/1 integers"):
        engine.train(factory, x, y, keep, heldout=heldout.astype(int) - 1, **kwargs)
    with pytest.raises(ValueError, match="keep must hold bools or 0/1 integers"):
        engine.steps_per_epoch(keep.astype(int) + 1, 32)
