"""Membership-inference attacks: each turns statistics into per-example scores, higher =
member.

Every attack is a pure function with one argument order and one return::

    scores = attack(target_stat, shadow_stats, keep, *, options)   # (m,) scores

``target_stat`` is the target model's statistic on the ``m`` candidates (``(m,)``, or
``(m, q)`` with ``q`` queries), ``shadow_stats`` the same statistic under ``k`` shadow
(reference) models (``(k, m)`` or ``(k, m, q)``), ``keep`` the ``(k, m)`` bool or 0/1
membership of the candidates in the shadow models' training sets, and the static options
are keyword-only. The array cores accept NumPy or JAX arrays, compute in float32 and trace
under ``jax.jit`` and ``jax.vmap`` (all but :func:`shokri`, which trains a classifier); input
checks run before tracing (values only on concrete inputs). Calibrations return plain values:
:func:`calibrate_threshold` (``tau``) and :func:`calibrate_rmia` (temperature and ``a``).

The attacks an audit runs are declared in :mod:`jaxmia.attacks.registry` (one
:class:`Attack` beside each attack's code, with the audit settings it declares,
:attr:`Attack.options`; :func:`register` adds your own). Registered here, in this order:

{table}

Example: LiRA and RMIA from your own logits ``(k + 1, n, c)`` of ``k + 1`` models on ``n``
records with labels ``y``, ``keep`` ``(k + 1, n)`` their training sets, model 0 the target;
then every model the target in turn (leave-one-out), vmapped::

    phi = signals.logit_scaled_confidence(logits, y)  # (k + 1, n): LiRA's statistic
    lp = attacks.log_probs(logits, y)  # (k + 1, n): RMIA's, log Pr(y | x)
    lira = attacks.lira_online(phi[0], phi[1:], keep[1:])  # model 0 is the target; (n,)
    rmia = attacks.rmia_online(lp[0], lp[1:], keep[1:], target_log_p_z=lp[0], ref_log_p_z=lp[1:])
    others = np.array([np.delete(np.arange(len(keep)), t) for t in range(len(keep))])
    loo = jax.jit(jax.vmap(attacks.lira_online))(phi, phi[others], keep[others])  # (k + 1, n)
"""

import dataclasses

from jaxmia._src.attacks import classifier, lira, registry, rmia, robustness, threshold
from jaxmia._src.attacks.checks import AttackInputError
from jaxmia._src.attacks.classifier import (
    ShokriConfig,
    ShokriFit,
    shokri,
    shokri_fit,
    shokri_score,
)
from jaxmia._src.attacks.lira import LiRAError, augment_images, lira_offline, lira_online
from jaxmia._src.attacks.registry import (
    Attack,
    AttackInputs,
    PoolSignals,
    Queries,
    Scores,
    register,
    unregister,
)
from jaxmia._src.attacks.rmia import (
    RMIACalibration,
    attack_p,
    calibrate_rmia,
    log_probs,
    rmia_offline,
    rmia_online,
)
from jaxmia._src.attacks.robustness import (
    label_only,
    perturb_inputs,
    query_correctness,
    query_correctness_many,
)
from jaxmia._src.attacks.threshold import (
    calibrate_threshold,
    confidence,
    entropy,
    loss,
    modified_entropy,
)

_JAXMIA_ATTACKS = (
    classifier.ATTACK,
    *threshold.ATTACKS,
    *lira.ATTACKS,
    *rmia.ATTACKS,
    robustness.ATTACK,
)
for _attack in _JAXMIA_ATTACKS:
    registry.register(_attack)


def _options(attack: Attack) -> str:
    """The settings ``attack`` declares, comma-separated (``-``: none)."""
    names = [f.name for f in dataclasses.fields(attack.options)] if attack.options else []
    return ", ".join(names) or "-"


def _table() -> str:
    """jaxmia's attacks as a reStructuredText table (for this module's docstring)."""
    rows = [("attack", "statistic", "paper", "options")]
    rows += [(a.name, a.statistic, a.paper, _options(a)) for a in _JAXMIA_ATTACKS]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    rule = "  ".join("=" * w for w in widths)
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join([rule, lines[0], rule, *lines[1:], rule])


__doc__ = __doc__.replace("{table}", _table())

__all__ = [
    "Attack",
    "AttackInputError",
    "AttackInputs",
    "LiRAError",
    "PoolSignals",
    "Queries",
    "RMIACalibration",
    "Scores",
    "ShokriConfig",
    "ShokriFit",
    "attack_p",
    "augment_images",
    "calibrate_rmia",
    "calibrate_threshold",
    "classifier",
    "confidence",
    "entropy",
    "label_only",
    "lira",
    "lira_offline",
    "lira_online",
    "log_probs",
    "loss",
    "modified_entropy",
    "perturb_inputs",
    "query_correctness",
    "query_correctness_many",
    "register",
    "registry",
    "rmia",
    "rmia_offline",
    "rmia_online",
    "robustness",
    "shokri",
    "shokri_fit",
    "shokri_score",
    "threshold",
    "unregister",
]
