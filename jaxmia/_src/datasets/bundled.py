"""The datasets jaxmia ships in ``jaxmia/data``, read offline (provenance and licences in
the README there): ``location30`` (Shokri et al. 2017, 446 binary features, 30 classes),
``digits`` (scikit-learn 8x8 digits, 64 features in ``[0, 1]``) and ``mnist`` (the MNIST
test split, NHWC ``(n, 28, 28, 1)`` in ``[0, 1]``).
"""

from __future__ import annotations

import importlib.resources

import numpy as np

__all__ = ["BUNDLED", "DEFAULT", "read_bundled"]

BUNDLED = ("location30", "digits", "mnist")
"""Names of the datasets shipped in ``jaxmia/data``, readable offline by
:func:`jaxmia.datasets.load`."""

DEFAULT = "location30"
"""The dataset an audit uses when none is given."""

# Bundled name -> (file in jaxmia/data, divisor that maps its raw values to [0, 1]).
_FILES = {
    "location30": ("location30.npz", 1.0),
    "digits": ("sklearn_digits.npz", 16.0),
    "mnist": ("mnist_t10k.npz", 255.0),
}


def read_bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The features ``x`` (float32 in ``[0, 1]``; greyscale images as NHWC) and int32
    labels ``y`` (``0 .. C-1``) of the bundled dataset ``name`` (one of :data:`BUNDLED`)."""
    file, scale = _FILES[name]
    resource = importlib.resources.files("jaxmia") / "data" / file
    with resource.open("rb") as f, np.load(f, allow_pickle=False) as z:
        x, y = z["x"], z["y"]
    x = (x / np.float32(scale)).astype(np.float32)
    if x.ndim == 3:  # greyscale images -> NHWC
        x = x[..., None]
    return x, y.astype(np.int32)
