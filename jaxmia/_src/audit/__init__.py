"""The end-to-end audit: configuration, the pipeline's phases and the report.

The pipeline (:func:`run`) is a short list of phases, each a module with typed inputs
and outputs: :mod:`~jaxmia._src.audit.setup` (data, split, architecture, keys),
:mod:`~jaxmia._src.audit.training` (target and shadow pool), :mod:`~jaxmia._src.audit.extraction`
(the signals an attacker observes), :mod:`~jaxmia._src.audit.scoring` (every attack against
every target, then the metrics), :mod:`~jaxmia._src.audit.vulnerability` (per class and per
record, for the strongest attack) and :mod:`~jaxmia._src.audit.report`.

Every name is loaded on first use (PEP 562), so that the command line imports only the
modules its command runs (``jaxmia --help`` loads no JAX, ``jaxmia audit`` no study).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what __getattr__ loads, for type checkers and the reference
    from jaxmia._src.audit.config import AuditConfig, ConfigError, select_attacks
    from jaxmia._src.audit.own_model import audit_model
    from jaxmia._src.audit.pipeline import run, train_pool
    from jaxmia._src.audit.report import AuditReport
    from jaxmia._src.audit.target import query_model

__all__ = [
    "AuditConfig",
    "AuditReport",
    "ConfigError",
    "attacking",
    "audit_model",
    "config",
    "extraction",
    "fields",
    "outputs",
    "own_model",
    "pipeline",
    "query_model",
    "report",
    "run",
    "runtime",
    "scoring",
    "select_attacks",
    "setup",
    "shadow_config",
    "signal_cache",
    "target",
    "target_cache",
    "train_pool",
    "training",
    "vulnerability",
]

# Names re-exported from the module that defines them (name -> module).
_ENTRY_POINTS = {
    "AuditConfig": "config",
    "ConfigError": "config",
    "select_attacks": "config",
    "audit_model": "own_model",
    "run": "pipeline",
    "train_pool": "pipeline",
    "AuditReport": "report",
    "query_model": "target",
}

_MODULES = frozenset(__all__) - set(_ENTRY_POINTS)


def __getattr__(name: str) -> Any:
    """Imports a submodule or an entry point on first access (PEP 562)."""
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _ENTRY_POINTS:
        value = getattr(importlib.import_module(f"{__name__}.{_ENTRY_POINTS[name]}"), name)
        globals()[name] = value  # later look-ups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (``__all__``)."""
    return list(__all__)
