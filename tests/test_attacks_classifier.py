"""The Shokri attack classifier (jaxmia/attacks/classifier.py) on planted signals."""

import numpy as np
import pytest

from jaxmia import splits
from jaxmia._src import attacks, metrics


def planted_signals(k, n, c, rng, gap):
    """Sorted probability vectors in which members are more confident by ``gap``."""
    keep = splits.balanced_keep(k, n, seed=int(rng.integers(1 << 30)))
    top = np.where(keep, 0.55 + gap, 0.55) + 0.05 * rng.standard_normal((k, n))
    top = np.clip(top, 0.05, 0.999)
    rest = (1 - top)[..., None] * rng.dirichlet(np.ones(c - 1), size=(k, n))
    probs = np.sort(np.concatenate([top[..., None], rest], axis=-1), axis=-1)[..., ::-1]
    return keep, probs


@pytest.mark.slow
@pytest.mark.parametrize("per_class", [False, True])
def test_attack_classifier_learns_planted_signal(per_class):
    rng = np.random.default_rng(0)
    c = 3
    keep, probs = planted_signals(4, 600, c, rng, gap=0.3)
    labels = rng.integers(0, c, 600)
    target_keep, target_probs = planted_signals(2, 600, c, rng, gap=0.3)
    config = attacks.ShokriConfig(per_class=per_class, steps=1500)
    scores = attacks.shokri(
        {"sorted_probabilities": target_probs[0]},
        {"sorted_probabilities": probs},
        keep.astype(int),  # 0/1 integers are accepted
        labels=labels,
        target_labels=labels,
        num_classes=c,
        config=config,
    )
    tau = 0.0  # the attack classifier's threshold: probability 1/2
    assert scores.shape == (600,)
    assert metrics.auc(target_keep[0], scores) > 0.97
    assert metrics.threshold_metrics(target_keep[0], scores, tau)["accuracy"] > 0.9


@pytest.mark.slow
def test_attack_classifier_no_signal_is_chance():
    rng = np.random.default_rng(1)
    keep, probs = planted_signals(4, 600, 3, rng, gap=0.0)
    target_keep, target_probs = planted_signals(2, 600, 3, rng, gap=0.0)
    labels = rng.integers(0, 3, 600)
    scores = attacks.shokri(
        {"sorted_probabilities": target_probs[0]},
        {"sorted_probabilities": probs},
        keep,
        labels=labels,
        target_labels=labels,
        num_classes=3,
        config=attacks.ShokriConfig(steps=500),
    )
    assert abs(metrics.auc(target_keep[0], scores) - 0.5) < 0.06
