"""The end-to-end audit: configuration, the pipeline's phases and the report.

The pipeline (:func:`run`) is a short list of phases, each a module with typed inputs
and outputs: :mod:`~jaxmia.audit.setup` (data, split, architecture, keys),
:mod:`~jaxmia.audit.training` (target and shadow pool), :mod:`~jaxmia.audit.extraction`
(the signals an attacker observes), :mod:`~jaxmia.audit.scoring` (every attack against
every target, then the metrics), :mod:`~jaxmia.audit.vulnerability` (per class and per
record, for the strongest attack) and :mod:`~jaxmia.audit.report`.

:mod:`~jaxmia.audit.dp_audit` is ``jaxmia dp-audit``: empirical epsilon lower bounds of
DP-SGD from canaries (:mod:`~jaxmia.audit.dp_report` writes it, :mod:`~jaxmia.audit.dp_cli`
is its command line).
"""

from jaxmia.audit import (
    attacking,
    config,
    dp_audit,
    dp_cli,
    dp_report,
    extraction,
    fields,
    outputs,
    own_model,
    pipeline,
    report,
    scoring,
    setup,
    shadow_config,
    target,
    training,
    vulnerability,
)
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
    "attacking",
    "audit_model",
    "config",
    "dp_audit",
    "dp_cli",
    "dp_report",
    "extraction",
    "fields",
    "needs",
    "outputs",
    "own_model",
    "pipeline",
    "query_model",
    "report",
    "run",
    "scoring",
    "select_attacks",
    "setup",
    "shadow_config",
    "target",
    "train_pool",
    "training",
    "vulnerability",
]
