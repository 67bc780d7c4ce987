"""Evaluation metrics for membership-inference attacks.

Every attack in :mod:`jaxmia` produces per-example membership ``scores`` (float array of
shape ``(n,)``) where **higher means more likely a member**, together with the ground-truth
``membership`` (bool or 0/1 array of shape ``(n,)``, ``True`` = member). The functions here
turn such a pair into the usual summary numbers:

* :mod:`jaxmia.metrics.roc`: the exact ROC curve and its area (:func:`roc_curve`,
  :func:`auc`), the true-positive rate at a small false-positive rate (:func:`tpr_at_fpr`),
  the headline metric of Carlini et al. (2022), "Membership Inference Attacks From First
  Principles", the membership advantage ``max(TPR - FPR)`` of Yeom et al. (2018)
  (:func:`advantage`), threshold-based metrics (:func:`threshold_metrics`,
  :func:`best_threshold`);
* :mod:`jaxmia.metrics.bootstrap`: stratified percentile-bootstrap confidence intervals
  (:func:`bootstrap_ci`);
* :mod:`jaxmia.metrics.evaluation`: a one-call summary (:func:`evaluate` ->
  :class:`AttackMetrics`) and text/Markdown tables (:func:`format_table`,
  :func:`markdown_table`);
* :mod:`jaxmia.metrics.vulnerability`: who is vulnerable: per-class AUC and TPR, the most
  exposed members, outlier measures and their rank correlation with the scores
  (:func:`jaxmia.metrics.vulnerability.vulnerability`, :func:`strongest_attack`);
* :mod:`jaxmia.metrics.plotting`: a log-log ROC plot of several attacks
  (:func:`plot_roc`, needs matplotlib);
* :mod:`jaxmia.metrics.privacy_auditing` and :mod:`jaxmia.metrics.one_run_auditing`:
  epsilon lower bounds of DP training from canary scores (Clopper-Pearson, one run), the
  Gaussian-DP epsilon *estimate* (valid only for a Gaussian privacy curve, not a bound)
  and the ideal Dirac-canary reference; :mod:`jaxmia.metrics.intervals`: the
  float64 statistics under them (Clopper-Pearson bounds, the mu-GDP curve).

Everything is pure NumPy on the host and runs in ``O(n log n)`` per metric. Example::

    from jaxmia import metrics

    m = metrics.evaluate(membership, scores)          # AttackMetrics
    print(m.auc, m.tpr_at_fpr[0.001])
    print(metrics.format_table({"loss": m}))
"""

from jaxmia.metrics import (
    bootstrap,
    evaluation,
    intervals,
    one_run_auditing,
    plotting,
    privacy_auditing,
    roc,
    vulnerability,
)
from jaxmia.metrics.bootstrap import bootstrap_ci
from jaxmia.metrics.evaluation import AttackMetrics, evaluate, format_table, markdown_table
from jaxmia.metrics.one_run_auditing import epsilon_one_run
from jaxmia.metrics.plotting import plot_roc
from jaxmia.metrics.privacy_auditing import epsilon_clopper_pearson, epsilon_gdp_estimate
from jaxmia.metrics.roc import (
    DEFAULT_FPRS,
    advantage,
    auc,
    best_threshold,
    roc_curve,
    threshold_metrics,
    tpr_at_fpr,
)
from jaxmia.metrics.vulnerability import Vulnerability, strongest_attack

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
