"""Shared fixtures: tiny real data from the bundled datasets."""

import os
import tempfile

import numpy as np
import pytest

from jaxmia import datasets


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
