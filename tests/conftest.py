"""Shared fixtures: tiny real data from the bundled datasets, and a small shadow pool."""

import os
import tempfile
from typing import Any, NamedTuple

import numpy as np
import optax
import pytest

from jaxmia import models, splits
from jaxmia._src import datasets, engine
from jaxmia._src.engine.store import pools

# The files that take longest, longest first (seconds of their tests on one of the two
# workers of the 2-core machine, while other work ran at load 1.5-3). Each file runs on
# one worker (``--dist loadfile`` in pyproject.toml: a file's module fixtures are made
# and its programs compiled once, not on both workers), and the workers take the files
# in this order, so that the long ones start first and the two workers finish together;
# the other files follow in their usual order.
LONGEST_FIRST = (
    "test_engine_training.py",  # 90
    "test_default_audit.py",  # 77
    "test_notebooks.py",  # 74
    "test_cli.py",  # 56
    "test_readme.py",  # 42
    "test_engine_objectives.py",  # 35
    "test_study.py",  # 34
    "test_engine_poisson.py",  # 34
    "test_engine_pools.py",  # 31
    "test_audit_pipeline.py",  # 30
    "test_attacks_protocol.py",  # 28
    "test_audit_own_model.py",  # 28
    "test_dp_audit.py",  # 28
    "test_engine_dpsgd.py",  # 24
    "test_engine_distributed.py",  # 23
    "test_attacks_robustness.py",  # 21
    "test_engine_adversarial.py",  # 18
    "test_properties.py",  # 17
    "test_audit_attacking.py",  # 16
    "test_pool_processes.py",  # 16
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_configure(config):
    """The CLI's compilation cache goes to a fresh directory of this test session (also
    for the subprocesses tests start), not to the user's ``~/.cache``."""
    os.environ.setdefault("JAXMIA_COMPILATION_CACHE", tempfile.mkdtemp(prefix="jaxmia-xla-"))


@pytest.fixture(scope="session")
def digits():
    """The bundled scikit-learn digits, (1797, 64) in [0, 1]."""
    return datasets.load("digits")


@pytest.fixture(scope="session")
def small_digits(digits):
    """A 300-example slice of digits, enough for engine equivalence checks."""
    idx = np.random.default_rng(0).permutation(digits.n)[:300]
    return digits.subset(idx)


@pytest.fixture(scope="session")
def location():
    """The bundled Location-30, (5010, 446) binary features, 30 classes."""
    return datasets.load("location30")


class Tiny(NamedTuple):
    """The first 64 examples of ``small_digits`` and a one-layer MLP for them."""

    ds: datasets.Dataset
    factory: Any


@pytest.fixture(scope="session")
def tiny(small_digits) -> Tiny:
    ds = small_digits.subset(np.arange(64))
    return Tiny(ds, models.mlp((16,), ds.num_classes, 64))


class SmallPool(NamedTuple):
    """Six MLPs on ``small_digits`` trained in chunks of two, and how they were trained."""

    ds: datasets.Dataset
    factory: Any
    keep: np.ndarray
    kwargs: dict
    pool: engine.Pool


@pytest.fixture(scope="session")
def small_pool(small_digits) -> SmallPool:
    ds = small_digits
    factory = models.mlp((32,), ds.num_classes, int(np.prod(ds.input_shape)))
    keep = splits.balanced_keep(6, ds.n, seed=4)
    kwargs = dict(epochs=2, batch_size=32, optimizer=optax.adam(3e-3), seed=9, chunk_size=2)
    return SmallPool(ds, factory, keep, kwargs, engine.train(factory, ds.x, ds.y, keep, **kwargs))


class SavedPool(NamedTuple):
    """The first four models of ``small_pool`` saved to ``path`` (two chunks of two), and
    the pool read back from it."""

    path: Any
    keep: np.ndarray
    stored: Any


@pytest.fixture(scope="session")
def saved_pool(small_pool, tmp_path_factory) -> SavedPool:
    s = small_pool
    path = tmp_path_factory.mktemp("pool")
    engine.train(s.factory, s.ds.x, s.ds.y, s.keep[:4], checkpoint=path, **s.kwargs)
    return SavedPool(path, s.keep[:4], pools.load(path))
