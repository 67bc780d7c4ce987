"""DP-SGD (jaxmia/engine/dpsgd.py): per-example clipping, noise of the right scale, noise
drawn for each model apart."""

import jax
import numpy as np
import optax
import pytest

from jaxmia import models
from jaxmia._src import engine


def _one_step(tiny, keep, *, lr, dp):
    """One optimizer step of SGD(lr) on the members of ``keep`` (a single batch)."""
    kw = dict(epochs=1, batch_size=int(keep.sum()), seed=3, mesh=None, chunk_size=None)
    return engine.train(
        tiny.factory, tiny.ds.x, tiny.ds.y, keep, optimizer=optax.sgd(lr), dp=dp, **kw
    )


def _update_leaves(tiny, keep, dp):
    before = _one_step(tiny, keep, lr=0.0, dp=dp).params
    after = _one_step(tiny, keep, lr=1.0, dp=dp).params
    return np.concatenate(
        [
            np.ravel(a - b)
            for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before), strict=True)
        ]
    )


@pytest.mark.slow
def test_dp_sgd_clips_each_example_gradient(tiny):
    """Kills: per-example clipping removed. Noise 0, clip C, SGD lr 1, one step over B
    members: the update is the mean of clipped gradients, of norm at most C."""
    clip = 1e-3  # far below any unclipped gradient norm of this model
    keep = np.zeros((1, 64), bool)
    keep[0, :8] = True
    update = _update_leaves(tiny, keep, engine.DPConfig(l2_clip=clip, noise_multiplier=0.0))
    norm = float(np.linalg.norm(update))
    assert 0 < norm <= clip * (1 + 1e-4), norm
    unclipped = _update_leaves(tiny, keep, engine.DPConfig(l2_clip=1e6, noise_multiplier=0.0))
    assert np.linalg.norm(unclipped) > 10 * clip  # clipping was active


@pytest.mark.slow
def test_dp_sgd_noise_std_is_sigma_times_clip_over_batch(tiny):
    """Kills: noise std sigma instead of sigma * C. C = 0.1, sigma = 1000, B = 8: each
    coordinate of the update is N(mean of clipped gradients, (sigma C / B)^2); the clipped
    part is at most C / B = 0.0125 in norm, negligible against the noise (12.5 per
    coordinate). With about 1,200 coordinates the sample std lies within 6% of the truth
    with probability > 1 - 1e-6 (chi-square); the mutant gives 10x."""
    sigma, clip, batch = 1000.0, 0.1, 8
    keep = np.zeros((1, 64), bool)
    keep[0, :batch] = True
    update = _update_leaves(tiny, keep, engine.DPConfig(l2_clip=clip, noise_multiplier=sigma))
    expected = sigma * clip / batch
    assert update.size > 1000
    assert abs(update.std() / expected - 1) < 0.06, (update.std(), expected)


@pytest.mark.slow
def test_vmapped_dp_noise_differs_between_models(digits):
    ds = digits.subset(np.arange(256))
    factory = models.mlp((32,), 10, 64)
    keep = np.ones((2, ds.n), bool)  # same data for both models
    tx = optax.sgd(1.0)
    start = engine.train(factory, ds.x, ds.y, keep, epochs=0, seed=3, optimizer=tx)
    # a clip so small that the update is the noise alone
    dp = engine.DPConfig(l2_clip=1e-6, noise_multiplier=1e6)
    after = engine.train(factory, ds.x, ds.y, keep, epochs=1, seed=3, optimizer=tx, dp=dp)
    delta = [
        np.asarray(a - b).reshape(2, -1)
        for a, b in zip(jax.tree.leaves(after.params), jax.tree.leaves(start.params), strict=True)
    ]
    delta = np.concatenate(delta, axis=1)
    assert delta.std(axis=1).min() > 1e-3  # noise was added
    assert abs(np.corrcoef(delta)[0, 1]) < 0.1  # ... independently for each model
    # one model's key fixes its noise: the same key twice gives the same update
    keys = engine.model_keys(3, 1)
    twice = jax.numpy.concatenate([keys, keys])
    again = engine.train(factory, ds.x, ds.y, keep, epochs=1, keys=twice, optimizer=tx, dp=dp)
    leaf = jax.tree.leaves(again.params)[0]
    np.testing.assert_array_equal(leaf[0], leaf[1])


def _square_loss(params, rest, xb, yb, weight):
    """Weighted mean of ``||w - x||^2 / 2``: each example's gradient is ``w - x``."""
    per = 0.5 * jax.numpy.sum((params["w"] - xb) ** 2, axis=1)
    return jax.numpy.sum(per * weight) / jax.numpy.maximum(jax.numpy.sum(weight), 1.0), rest


@pytest.mark.slow
def test_padding_slots_add_nothing_to_the_clipped_sum():
    """Kills ``scale = min(...)`` without ``weight``: a Poisson batch of 3 members padded to
    5 with record 0 (as the engine pads); noise 0: the update is the sum of the members'
    clipped gradients over the denominator, without record 0's gradient twice more."""
    x = np.array([[3.0, 0, 0], [0, 0.5, 0], [0, 0, -4.0], [3.0, 0, 0], [3.0, 0, 0]], np.float32)
    weight = np.array([1, 1, 1, 0, 0], np.float32)
    params = {"w": np.zeros(3, np.float32)}
    dp = engine.DPConfig(l2_clip=1.0, noise_multiplier=0.0)
    key = jax.random.key(0)
    _, grads = engine.dpsgd.private_grads(
        _square_loss, dp, key, params, None, x, np.zeros(5), weight, denominator=4.0
    )
    g = -x[:3]  # w - x at w = 0
    clipped = g * np.minimum(1.0, 1.0 / np.linalg.norm(g, axis=1, keepdims=True))
    np.testing.assert_allclose(grads["w"], clipped.sum(axis=0) / 4.0, rtol=1e-6)


def test_each_leaf_draws_its_own_noise():
    """Kills one key for every leaf: leaves of equal size (and a reshaped one) would get
    the same draws. Each leaf's noise is uncorrelated with the others' (256 draws: |r| <
    0.3 is more than 4.5 sd) and has the asked standard deviation."""
    like = {"a": np.zeros(256), "b": np.zeros(256), "c": np.zeros((16, 16))}
    noise = engine.dpsgd.dp_noise(jax.random.key(1), like, 2.0)
    flat = [np.ravel(noise[k]) for k in ("a", "b", "c")]
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert abs(np.corrcoef(flat[i], flat[j])[0, 1]) < 0.3
    assert all(1.6 < f.std() < 2.4 for f in flat)
