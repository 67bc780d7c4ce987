"""The per-model epoch kernel (jaxmia/engine/kernel.py): the order members are visited in,
epoch by epoch, as its documented keys draw it."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxmia._src.engine import kernel


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


class Recorder(nnx.Module):
    """Logit 0 of record ``i`` (one-hot inputs) is ``w[i]``: a step's gradient of the
    mean of that logit is ``1 / b`` on the records of its batch and 0 elsewhere."""

    def __init__(self, n: int, *, rngs: nnx.Rngs):
        self.w = nnx.Param(jnp.zeros((n,)))

    def __call__(self, x):
        z = x @ self.w[...]
        return jnp.stack([z, jnp.zeros_like(z)], axis=-1)


def test_each_epochs_batches_are_the_documented_order():
    # 8 members of 12 at batch 4, two epochs: step t adds 4**t / 4 to the weight of each
    # record of its batch, so the weights spell out which step saw which record. Epoch e
    # must visit the members in member_order(fold_in(split(key, 3)[2], e), keep).
    n, b = 12, 4
    keep = np.zeros(n, bool)
    keep[[0, 1, 3, 4, 6, 7, 9, 11]] = True
    factory = functools.partial(Recorder, n)
    tx = optax.scale_by_schedule(lambda count: 4.0**count)
    graphdef = kernel.graphdefs(factory)[0]
    spec = kernel.KernelSpec(graphdef, tx, b, 2, 2, None, loss_fn=lambda logits, y: logits[:, 0])
    epoch = jax.jit(functools.partial(kernel.epoch_one, spec))
    _, params, rest = nnx.split(nnx.eval_shape(lambda: factory(rngs=nnx.Rngs(0))), nnx.Param, ...)
    params = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), params)
    state = (params, rest, tx.init(params))
    key = jax.random.key(5)
    key_data = jax.random.key_data(key)
    x, y = np.eye(n, dtype=np.float32), np.zeros(n, np.int32)
    for e in range(2):
        state = epoch(key_data, jnp.int32(e), keep, *state, x, y)[:3]
    data_key = jax.random.split(key, 3)[2]
    want = np.zeros(n)
    for e in range(2):
        order = np.asarray(kernel.member_order(jax.random.fold_in(data_key, e), keep))
        for position, record in enumerate(order[: keep.sum()]):
            want[record] += 4.0 ** (2 * e + position // b) / b
    np.testing.assert_allclose(np.asarray(state[0]["w"][...]), want, rtol=1e-6)
