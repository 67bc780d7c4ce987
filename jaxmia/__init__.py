"""jaxmia: JAX-accelerated membership inference attacks and privacy audits.

The package follows the audit's data flow, each layer importing only from those below:

* :mod:`jaxmia.datasets`, :mod:`jaxmia.splits`: data and the keep matrices of members.
* :mod:`jaxmia.models`: Flax NNX MLP and CNN factories.
* :mod:`jaxmia.signals`: jitted per-example signals (loss, confidence, ...).
* :mod:`jaxmia.engine`: the vmapped, sharded shadow-model engine and pools on disk.
* :mod:`jaxmia.threat_models`: access levels (what the attacker sees).
* :mod:`jaxmia.metrics`: ROC, AUC, TPR at low FPR, bootstrap intervals.
* :mod:`jaxmia.attacks`: attacks producing per-example membership scores.
* :mod:`jaxmia.defences`: training-time defences and output perturbation.
* :mod:`jaxmia.audit`: the end-to-end audit, its configuration and report.
* :mod:`jaxmia.study`, :mod:`jaxmia.cli`: sweeps and the command line.

Submodules are imported on first use, so that ``import jaxmia`` itself loads without JAX.
"""

import importlib

__version__ = "0.1.0"

__all__ = [
    "attacks",
    "audit",
    "cli",
    "datasets",
    "defences",
    "engine",
    "metrics",
    "models",
    "signals",
    "splits",
    "study",
    "threat_models",
]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"jaxmia.{name}")
    raise AttributeError(f"module 'jaxmia' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
