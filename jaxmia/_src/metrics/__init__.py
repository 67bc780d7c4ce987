"""The metrics' internals (the public surface is :mod:`jaxmia.metrics`): ``roc`` (with
``roc_core``, the counts every metric shares), ``bootstrap``, ``evaluation``,
``vulnerability``, ``plotting``, ``privacy_auditing``, ``one_run_auditing`` and
``intervals``; their main functions are re-exported here for jaxmia's own modules.
"""

from jaxmia._src.metrics import (
    bootstrap,
    evaluation,
    intervals,
    one_run_auditing,
    plotting,
    privacy_auditing,
    roc,
    vulnerability,
)
from jaxmia._src.metrics.bootstrap import bootstrap_ci
from jaxmia._src.metrics.evaluation import (
    AttackMetrics,
    evaluate,
    format_table,
    markdown_table,
)
from jaxmia._src.metrics.one_run_auditing import epsilon_one_run
from jaxmia._src.metrics.plotting import plot_roc
from jaxmia._src.metrics.privacy_auditing import epsilon_clopper_pearson, epsilon_gdp_estimate
from jaxmia._src.metrics.roc import (
    DEFAULT_FPRS,
    advantage,
    auc,
    best_threshold,
    roc_curve,
    threshold_metrics,
    tpr_at_fpr,
)
from jaxmia._src.metrics.vulnerability import Vulnerability, strongest_attack

__all__ = [
    "DEFAULT_FPRS",
    "AttackMetrics",
    "Vulnerability",
    "advantage",
    "auc",
    "best_threshold",
    "bootstrap",
    "bootstrap_ci",
    "epsilon_clopper_pearson",
    "epsilon_gdp_estimate",
    "epsilon_one_run",
    "evaluate",
    "evaluation",
    "format_table",
    "intervals",
    "markdown_table",
    "one_run_auditing",
    "plot_roc",
    "plotting",
    "privacy_auditing",
    "roc",
    "roc_curve",
    "strongest_attack",
    "threshold_metrics",
    "tpr_at_fpr",
    "vulnerability",
]
