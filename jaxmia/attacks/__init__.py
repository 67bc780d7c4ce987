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

================  =======================================  ==================================
attack            statistic                                paper
================  =======================================  ==================================
loss              cross-entropy loss                       Yeom et al. 2018
confidence        top predicted probability                Song & Mittal 2021
entropy           prediction entropy                       Song & Mittal 2021
modified_entropy  modified entropy                         Song & Mittal 2021
lira_online       logit-scaled confidence                  Carlini et al. 2022
lira_offline      logit-scaled confidence                  Carlini et al. 2022
rmia_online       log-probability (+ population ``z``)     Zarifzadeh et al. 2024
rmia_offline      log-probability (+ population ``z``)     Zarifzadeh et al. 2024
attack_p          log-probability (+ population ``z``)     Ye et al. 2022
shokri            signals (features of an attack MLP)      Shokri et al. 2017
label_only        correct answers to perturbed queries     Choquette-Choo et al. 2021
================  =======================================  ==================================

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

from jaxmia.attacks import classifier, lira, rmia, robustness, threshold
from jaxmia.attacks._checks import AttackInputError
from jaxmia.attacks.classifier import ShokriConfig, ShokriFit, shokri, shokri_fit, shokri_score
from jaxmia.attacks.lira import LiRAError, augment_images, lira_offline, lira_online
from jaxmia.attacks.rmia import (
    RMIACalibration,
    attack_p,
    calibrate_rmia,
    log_probs,
    rmia_offline,
    rmia_online,
)
from jaxmia.attacks.robustness import (
    label_only,
    perturb_inputs,
    query_correctness,
    query_correctness_many,
)
from jaxmia.attacks.threshold import (
    calibrate_threshold,
    confidence,
    entropy,
    loss,
    modified_entropy,
)

__all__ = [
    "AttackInputError",
    "LiRAError",
    "RMIACalibration",
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
    "rmia",
    "rmia_offline",
    "rmia_online",
    "robustness",
    "shokri",
    "shokri_fit",
    "shokri_score",
    "threshold",
]
