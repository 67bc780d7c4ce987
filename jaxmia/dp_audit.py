from jaxmia._src.dp_audit import pipeline as _pipeline
from jaxmia._src.dp_audit.pipeline import (
    DEFAULT_EPSILONS,
    DPAuditConfig,
    DPAuditError,
    calibrate_noise,
    pld_epsilon,
    run,
)

__doc__ = _pipeline.__doc__  # what jaxmia dp-audit measures, written once beside it

__all__ = [
    "DEFAULT_EPSILONS",
    "DPAuditConfig",
    "DPAuditError",
    "calibrate_noise",
    "pld_epsilon",
    "run",
]
