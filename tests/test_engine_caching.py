"""Structural cache keys: equal optimizers, factories and losses share compiled programs."""

import functools

import jax.numpy as jnp
import numpy as np
import optax

from jaxmia import models
from jaxmia._src.engine import caching

key = caching.structural_key


def test_equal_optimizers_have_equal_keys_and_others_not():
    assert key(optax.adam(1e-3)) == key(optax.adam(1e-3))
    assert hash(key(optax.adam(1e-3))) == hash(key(optax.adam(1e-3)))
    assert key(optax.adam(1e-3)) != key(optax.adam(2e-3))
    assert key(optax.adam(1e-3)) != key(optax.sgd(1e-3))
    decayed = lambda step: optax.adam(optax.piecewise_constant_schedule(3e-3, {step: 0.1}))
    assert key(decayed(500)) == key(decayed(500)) != key(decayed(5000))
    chain = lambda m: optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1, momentum=m))
    assert key(chain(0.9)) == key(chain(0.9)) != key(chain(0.8))
    assert key(1) != key(1.0)  # an int rate and a float rate are not the same program


def test_equal_factories_have_equal_keys_and_others_not():
    assert key(models.mlp((8,), 3, 4)) == key(models.mlp((8,), 3, 4))
    assert key(models.mlp((8,), 3, 4)) != key(models.mlp((9,), 3, 4))
    assert key(models.mlp((8,), 3, 4)) != key(models.mlp((8,), 3, 4, activation="relu"))
    assert key(functools.partial(models.CNN, (8, 8, 1), 2)) == key(
        functools.partial(models.CNN, (8, 8, 1), 2)
    )
    assert key(np.arange(3)) == key(np.arange(3)) != key(jnp.arange(1, 4))


def test_unreadable_objects_are_keyed_by_identity():
    class Opaque:
        pass

    a, b = Opaque(), Opaque()
    assert key(a) == key(a) and key(a) != key(b)
    loop = []
    loop.append(loop)  # a cycle ends in an identity key, not a recursion error
    assert key(loop) == key(loop)


def test_cache_binds_defaults_and_counts():
    calls = []

    @caching.cache_by_structure(maxsize=4)
    def f(a, b=2):
        calls.append((a, b))
        return a + b

    assert f(1) == f(1, 2) == f(a=1, b=2) == 3
    assert calls == [(1, 2)]
    info = f.cache_info()
    assert (info.hits, info.misses, info.maxsize, info.currsize) == (2, 1, 4, 1)
    f.cache_clear()
    assert f.cache_info().currsize == 0
