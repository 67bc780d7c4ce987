"""Helpers shared by several test modules (importable because pytest puts ``tests/`` on
``sys.path`` in its default ``prepend`` import mode)."""

import jax
import jax.numpy as jnp


def tree_max_diff(a, b) -> float:
    """Largest absolute difference between the leaves of two pytrees of equal structure."""
    return max(
        float(jnp.max(jnp.abs(u - v)))
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
