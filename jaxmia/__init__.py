"""jaxmia: JAX-accelerated membership inference attacks and privacy audits.

Modules, named after the concepts of the field (imported on first use, so that
``jaxmia`` itself loads without JAX):

* :mod:`jaxmia.datasets`: bundled and local datasets (``load``).
* :mod:`jaxmia.splits`: target splits and shadow keep matrices.
* :mod:`jaxmia.models`: Flax NNX MLP and CNN factories.
* :mod:`jaxmia.shadow`: the vmapped, sharded shadow-model engine (``train``, ``predict``).
* :mod:`jaxmia.distributed`: one pool over several processes or hosts.
* :mod:`jaxmia.signals`: jitted per-example signals (loss, confidence, ...).
* :mod:`jaxmia.threat_models`: access levels (what the attacker sees).
* :mod:`jaxmia.threshold`, :mod:`jaxmia.shokri`, :mod:`jaxmia.lira`, :mod:`jaxmia.rmia`:
  attacks producing per-example membership scores.
* :mod:`jaxmia.label_only`: the label-only attack (Choquette-Choo et al. 2021).
* :mod:`jaxmia.defences`, :mod:`jaxmia.perturbation`: training-time defences (DP-SGD
  with accounting) and output perturbation of the target's interface.
* :mod:`jaxmia.metrics`: ROC, AUC, TPR at low FPR, bootstrap intervals.
* :mod:`jaxmia.audit`, :mod:`jaxmia.report`: the end-to-end audit and its outputs.
"""

import importlib

__version__ = "0.1.0"

__all__ = [
    "audit",
    "datasets",
    "defences",
    "distributed",
    "label_only",
    "lira",
    "metrics",
    "models",
    "perturbation",
    "report",
    "rmia",
    "shadow",
    "shokri",
    "signals",
    "splits",
    "threat_models",
    "threshold",
]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"jaxmia.{name}")
    raise AttributeError(f"module 'jaxmia' has no attribute {name!r}")
