"""Shared fixtures: tiny real data from the bundled datasets, and a small shadow pool.

The test processes compile with XLA's LLVM back end unoptimised
(``--xla_backend_optimization_level=0``). Most of the suite's time is XLA compiling the
small programs of many tiny trainings, which compile faster at level 0 (a tiny DP-SGD
and a tiny Adam training: 2.7 s of compilation against 9.8 s), and the test files that
start no process take a third less time (198 CPU-s against 307, 103 s against 158 on
two workers); running the programs takes longer, which matters only for the largest
(the README's 64 Location-30 models). The
programs compute the same functions, but their floats may differ in the last bits from
those of the default level, so:

* the processes tests start get the environment as it was: the command line, the
  notebooks' kernels and the multi-process runs compile at the default level, as a
  user's do (``tests/test_default_audit.py`` reproduces the committed runs in
  ``results/`` bit for bit there);
* no test compares the floats of the test process with another process's bit for bit
  (a pool's optimizer fingerprint is its updates' bits: a pool trained in here is read
  in here); the multi-device and multi-process checks allow rounding, as before;
* the test process keeps no program in a persistent compilation cache, whose key reads
  ``XLA_FLAGS`` from the environment, which no longer says level 0.

An ``xla_backend_optimization_level`` of your own in ``XLA_FLAGS`` turns this off.
"""

import os
import tempfile
from typing import Any, NamedTuple


def _compile_unoptimised() -> None:
    """XLA reads ``XLA_FLAGS`` once, at the process's first compilation: that one
    compiles at level 0, and then the environment is given back as it was."""
    before = os.environ.get("XLA_FLAGS")
    if "xla_backend_optimization_level" in (before or ""):
        return
    os.environ["XLA_FLAGS"] = f"{before or ''} --xla_backend_optimization_level=0".strip()
    try:
        import jax

        # decided at the first compilation, like the flags: no persistent cache in here
        jax.config.update("jax_enable_compilation_cache", False)
        jax.jit(lambda x: x + 1)(0).block_until_ready()
    finally:
        if before is None:
            del os.environ["XLA_FLAGS"]
        else:
            os.environ["XLA_FLAGS"] = before


_compile_unoptimised()

import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

from jaxmia import models, splits  # noqa: E402
from jaxmia._src import datasets, engine  # noqa: E402
from jaxmia._src.engine.store import pools  # noqa: E402

# The files that take longest, longest first: each runs on one worker (``--dist loadfile``
# in pyproject.toml: a file's module fixtures are made and its programs compiled once,
# not on both workers), and the workers take the files in this order, so that the long
# ones start first and the two workers finish together; the other files follow in their
# usual order. The seconds are those of a whole-suite run with two workers at XLA's
# default level (other work ran at load 1.5-3); the files marked * spend them mostly in
# the processes they start, the others now take about a third less (see above).
LONGEST_FIRST = (
    "test_default_audit.py",  # 77 *
    "test_notebooks.py",  # 74 *
    "test_engine_training.py",  # 90
    "test_readme.py",  # 42 *
    "test_cli.py",  # 56
    "test_engine_objectives.py",  # 35
    "test_study.py",  # 34
    "test_engine_poisson.py",  # 34
    "test_engine_pools.py",  # 31
    "test_audit_pipeline.py",  # 30
    "test_attacks_protocol.py",  # 28
    "test_audit_own_model.py",  # 28
    "test_dp_audit.py",  # 28
    "test_engine_dpsgd.py",  # 24
    "test_engine_distributed.py",  # 23 *
    "test_attacks_robustness.py",  # 21
    "test_engine_adversarial.py",  # 18
    "test_properties.py",  # 17
    "test_audit_attacking.py",  # 16
    "test_pool_processes.py",  # 16 *
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_configure(config):
    """The CLI's compilation cache goes to a fresh directory of this test session (for
    the processes tests start; the test process keeps none, see above), not to the
    user's ``~/.cache``."""
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
