"""Evaluation metrics for membership-inference attacks.

Every attack in :mod:`jaxmia` produces per-example membership ``scores`` (float array of
shape ``(n,)``) where **higher means more likely a member**, together with the ground-truth
``membership`` (bool or 0/1 array of shape ``(n,)``, ``True`` = member). The functions here
turn such a pair into the usual summary numbers:

* the exact ROC curve and its area (:func:`roc_curve`, :func:`auc`), the true-positive
  rate at a small false-positive rate (:func:`tpr_at_fpr`), the headline metric of Carlini
  et al. (2022), "Membership Inference Attacks From First Principles", the membership
  advantage ``max(TPR - FPR)`` of Yeom et al. (2018) (:func:`advantage`), threshold-based
  metrics (:func:`threshold_metrics`, :func:`best_threshold`);
* stratified percentile-bootstrap confidence intervals (:func:`bootstrap_ci`);
* a one-call summary (:func:`evaluate` -> :class:`AttackMetrics`) and text/Markdown
  tables (:func:`format_table`, :func:`markdown_table`);
* who is vulnerable: per-class AUC and TPR, the most exposed members, outlier measures and
  their rank correlation with the scores (:func:`vulnerability` -> :class:`Vulnerability`,
  :func:`strongest_attack`);
* a log-log ROC plot of several attacks (:func:`plot_roc`, needs matplotlib);
* epsilon lower bounds of DP training from canary scores (:func:`epsilon_clopper_pearson`,
  :func:`epsilon_one_run`) and the Gaussian-DP epsilon *estimate*
  (:func:`epsilon_gdp_estimate`: valid only for a Gaussian privacy curve, not a bound).

Everything is pure NumPy on the host and runs in ``O(n log n)`` per metric. Example::

    from jaxmia import metrics

    m = metrics.evaluate(membership, scores)          # AttackMetrics
    print(m.auc, m.tpr_at_fpr[0.001])
    print(metrics.format_table({"loss": m}))
"""

from jaxmia._src.metrics.bootstrap import bootstrap_ci
from jaxmia._src.metrics.evaluation import AttackMetrics, evaluate, format_table, markdown_table
from jaxmia._src.metrics.one_run_auditing import OneRunBound, epsilon_one_run
from jaxmia._src.metrics.plotting import plot_roc
from jaxmia._src.metrics.privacy_auditing import (
    EpsilonBound,
    GDPEstimate,
    epsilon_clopper_pearson,
    epsilon_gdp_estimate,
)
from jaxmia._src.metrics.roc import (
    DEFAULT_FPRS,
    advantage,
    auc,
    best_threshold,
    roc_curve,
    threshold_metrics,
    tpr_at_fpr,
)
from jaxmia._src.metrics.vulnerability import Vulnerability, strongest_attack, vulnerability

__all__ = [
    "DEFAULT_FPRS",
    "AttackMetrics",
    "EpsilonBound",
    "GDPEstimate",
    "OneRunBound",
    "Vulnerability",
    "advantage",
    "auc",
    "best_threshold",
    "bootstrap_ci",
    "epsilon_clopper_pearson",
    "epsilon_gdp_estimate",
    "epsilon_one_run",
    "evaluate",
    "format_table",
    "markdown_table",
    "plot_roc",
    "roc_curve",
    "strongest_attack",
    "threshold_metrics",
    "tpr_at_fpr",
    "vulnerability",
]
