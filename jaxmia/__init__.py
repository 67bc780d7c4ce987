"""jaxmia: JAX-accelerated membership inference attacks and privacy audits.

Modules, named after the concepts of the field:

* :mod:`jaxmia.datasets`: bundled and local datasets (``load``).
* :mod:`jaxmia.splits`: target splits and shadow keep matrices.
* :mod:`jaxmia.models`: Flax NNX MLP and CNN factories.
* :mod:`jaxmia.shadow`: the vmapped shadow-model engine (``train``, ``predict``).
* :mod:`jaxmia.signals`: jitted per-example signals (loss, confidence, ...).
* :mod:`jaxmia.threat_models`: access levels (what the attacker sees).
* :mod:`jaxmia.threshold`, :mod:`jaxmia.shokri`: attacks producing membership scores.
* :mod:`jaxmia.metrics`: ROC, AUC, TPR at low FPR, bootstrap intervals.
* :mod:`jaxmia.audit`, :mod:`jaxmia.report`: the end-to-end audit and its outputs.
"""

from jaxmia import (
    audit,
    datasets,
    metrics,
    models,
    shadow,
    shokri,
    signals,
    splits,
    threat_models,
    threshold,
)

__version__ = "0.1.0"

__all__ = [
    "audit",
    "datasets",
    "metrics",
    "models",
    "shadow",
    "shokri",
    "signals",
    "splits",
    "threat_models",
    "threshold",
]
