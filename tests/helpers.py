"""Helpers shared by several test modules (importable because pytest puts ``tests/`` on
``sys.path`` in its default ``prepend`` import mode)."""

import jax
import jax.numpy as jnp

from jaxmia import cli
from jaxmia._src import metrics


def tree_max_diff(a, b) -> float:
    """Largest absolute difference between the leaves of two pytrees of equal structure."""
    return max(
        float(jnp.max(jnp.abs(u - v)))
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


METRIC_CALLS = (
    metrics.auc,
    metrics.roc_curve,
    metrics.advantage,
    metrics.best_threshold,
    lambda y, s: metrics.tpr_at_fpr(y, s, 0.01),
    lambda y, s: metrics.threshold_metrics(y, s, 0.0),
    lambda y, s: metrics.bootstrap_ci(y, s, n_boot=2),
    lambda y, s: metrics.evaluate(y, s, n_boot=2),
    lambda y, s: metrics.plot_roc(y, {"attack": s}),
)
"""Every metric that validates ``(membership, scores)``, as a call of those two (only ever
called with invalid inputs: ``plot_roc`` raises before it opens a figure)."""


def run_cli(args, capsys):
    """``(exit status, stdout, stderr)`` of ``jaxmia ARGS`` run in-process."""
    try:
        rc = cli.main(args)
    except SystemExit as e:  # argparse exits on its own
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err
