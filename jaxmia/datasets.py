from jaxmia._src import datasets as _datasets
from jaxmia._src.datasets import (
    SUFFIXES,
    Dataset,
    DatasetError,
    describe,
    load,
    normalise_features,
)
from jaxmia._src.datasets.bundled import BUNDLED, DEFAULT
from jaxmia._src.datasets.tables import LABEL_COLUMNS, MAX_FEATURES

__doc__ = _datasets.__doc__  # the sources load() accepts, written once

__all__ = [
    "BUNDLED",
    "DEFAULT",
    "LABEL_COLUMNS",
    "MAX_FEATURES",
    "SUFFIXES",
    "Dataset",
    "DatasetError",
    "describe",
    "load",
    "normalise_features",
]
