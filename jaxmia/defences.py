"""Defences against membership inference, and what they cost in privacy and utility.

* Training-time: L2 weight decay, dropout, early stopping, L1, label smoothing, mixup,
  RelaxLoss, adversarial training, DP-SGD and adversarial regularisation, set together by
  a :class:`Defence` (the ``defence`` section of an audit's configuration), with
  :func:`dp_epsilon`, the DP-SGD budget by ``dp-accounting``'s accountant, and
  :func:`optimizer`, the optimizer a defence trains with.
* Output-side: a :class:`Perturbation` of the target's query interface (top-k only,
  rounding, Gaussian noise, label only) and what it leaves the attacker
  (:func:`access_level`).
"""

from jaxmia._src.defences.perturbation import (
    KINDS,
    Perturbation,
    access_level,
    gaussian_noise,
    label_only,
    round_probs,
    top_k_only,
)
from jaxmia._src.defences.training import Defence, dp_epsilon, l1_penalty, optimizer

__all__ = [
    "KINDS",
    "Defence",
    "Perturbation",
    "access_level",
    "dp_epsilon",
    "gaussian_noise",
    "l1_penalty",
    "label_only",
    "optimizer",
    "round_probs",
    "top_k_only",
]
