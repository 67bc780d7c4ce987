"""The end-to-end audit: configuration, the pipeline's phases and the report."""

from jaxmia.audit.config import (
    ATTACKS,
    LIKELIHOOD_ATTACKS,
    AuditConfig,
    ConfigError,
    needs,
    select_attacks,
)
from jaxmia.audit.own_model import audit_model
from jaxmia.audit.pipeline import run, train_pool
from jaxmia.audit.report import AuditReport
from jaxmia.audit.target import query_model

__all__ = [
    "ATTACKS",
    "LIKELIHOOD_ATTACKS",
    "AuditConfig",
    "AuditReport",
    "ConfigError",
    "audit_model",
    "needs",
    "query_model",
    "run",
    "select_attacks",
    "train_pool",
]
