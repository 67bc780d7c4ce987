"""The per-model epoch kernel (jaxmia/engine/kernel.py): the order members are visited in."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmia.engine import kernel


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
