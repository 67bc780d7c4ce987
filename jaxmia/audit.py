"""The end-to-end audit: its configuration, the pipeline and the report.

:func:`run` audits the target an :class:`AuditConfig` describes: it splits the data,
trains the target and the shadow pool (or reuses a pool kept on disk), extracts the
signals an attacker observes, runs every attack against every target, and returns an
:class:`AuditReport` (metrics, per-class and per-record vulnerability), which it also
writes to ``output_dir``. :func:`train_pool` trains (or resumes) only the pool;
:func:`audit_model` audits a model you trained yourself, from its members, non-members
and population records; :func:`query_model` wraps a model as the query interface an
attacker sees.
"""

from jaxmia._src.audit.config import (
    AttackConfig,
    AuditConfig,
    DataConfig,
    OutputConfig,
    QueryConfig,
    TrainingConfig,
    command_for,
    read_toml,
    select_attacks,
)
from jaxmia._src.audit.own_model import audit_model
from jaxmia._src.audit.pipeline import run, train_pool
from jaxmia._src.audit.report import AuditReport
from jaxmia._src.audit.shadow_config import ShadowConfig
from jaxmia._src.audit.target import query_model
from jaxmia._src.defences.training import Defence
from jaxmia.settings import ConfigError

__all__ = [
    "AttackConfig",
    "AuditConfig",
    "AuditReport",
    "ConfigError",
    "DataConfig",
    "Defence",
    "OutputConfig",
    "QueryConfig",
    "ShadowConfig",
    "TrainingConfig",
    "audit_model",
    "command_for",
    "query_model",
    "read_toml",
    "run",
    "select_attacks",
    "train_pool",
]
