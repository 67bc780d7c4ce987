"""jaxmia: JAX-accelerated membership inference attacks and privacy audits.

The main entry points are offered here directly::

    import jaxmia

    # audit your own trained model: members, non-members, population as (x, y) pairs
    report = jaxmia.audit_model(model, (x_in, y_in), (x_out, y_out), (x_pop, y_pop))
    print(jaxmia.metrics.format_table(report.metrics))

    # train (or resume) the shadow pool an audit configuration describes
    pool = jaxmia.train_pool(jaxmia.AuditConfig(num_shadows=16), "pools/location30")

The package follows the audit's data flow, each layer importing only from those below;
these are its public modules (the internals are in ``jaxmia._src``, one package per
concept):

* :mod:`jaxmia.settings`: typed settings and their checks (every configuration's).
* :mod:`jaxmia.datasets`, :mod:`jaxmia.splits`: data and the keep matrices of members.
* :mod:`jaxmia.models`: Flax NNX MLP and CNN factories.
* :mod:`jaxmia.signals`: jitted per-example signals (loss, confidence, ...).
* :mod:`jaxmia.engine`: the vmapped, sharded shadow-model engine.
* :mod:`jaxmia.threat_models`: access levels (what the attacker sees).
* :mod:`jaxmia.metrics`: ROC, AUC, TPR at low FPR, bootstrap intervals, ROC plots,
  epsilon lower bounds.
* :mod:`jaxmia.attacks`: attacks producing per-example membership scores, and
  :mod:`jaxmia.attacks.registry`, where your own attack plugs in.
* :mod:`jaxmia.defences`: training-time defences and output perturbation.
* :mod:`jaxmia.audit`: the end-to-end audit, its configuration and report.
* :mod:`jaxmia.study`, :mod:`jaxmia.frontier`, :mod:`jaxmia.multiples`,
  :mod:`jaxmia.dp_audit`, :mod:`jaxmia.cli`: sweeps, the privacy-utility frontier, several
  studies in one figure, the DP-SGD audit, the command line.

Everything is loaded on first use, so that ``import jaxmia`` itself loads without JAX.
Build this reference with ``python -m pdoc -d google jaxmia -o DIR`` (``pip install pdoc``).
"""

import importlib
from typing import Any

__version__ = "0.1.0"

_MODULES = (
    "attacks",
    "audit",
    "cli",
    "datasets",
    "defences",
    "dp_audit",
    "engine",
    "frontier",
    "metrics",
    "models",
    "multiples",
    "settings",
    "signals",
    "splits",
    "study",
    "threat_models",
)

# Entry points re-exported from the module that defines them (name -> module).
_ENTRY_POINTS = {
    "AuditConfig": "jaxmia.audit",
    "AuditReport": "jaxmia.audit",
    "audit_model": "jaxmia.audit",
    "query_model": "jaxmia.audit",
    "train_pool": "jaxmia.audit",
}

__all__ = sorted([*_MODULES, *_ENTRY_POINTS])


def __getattr__(name: str) -> Any:
    """Imports a submodule or an entry point on first access (PEP 562)."""
    if name in _MODULES:
        return importlib.import_module(f"jaxmia.{name}")
    if name in _ENTRY_POINTS:
        value = getattr(importlib.import_module(_ENTRY_POINTS[name]), name)
        globals()[name] = value  # later look-ups skip __getattr__
        return value
    raise AttributeError(f"module 'jaxmia' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names: ``__all__`` and ``__version__``."""
    return [*__all__, "__version__"]
