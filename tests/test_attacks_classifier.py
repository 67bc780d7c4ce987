"""Attacks against controls: planted signals, no-information targets, overfit targets."""

import numpy as np
import pytest

from jaxmia import attacks, audit, datasets, metrics, splits, threat_models


def planted_signals(k, n, c, rng, gap):
    """Sorted probability vectors in which members are more confident by ``gap``."""
    keep = splits.balanced_keep(k, n, seed=int(rng.integers(1 << 30)))
    top = np.where(keep, 0.55 + gap, 0.55) + 0.05 * rng.standard_normal((k, n))
    top = np.clip(top, 0.05, 0.999)
    rest = (1 - top)[..., None] * rng.dirichlet(np.ones(c - 1), size=(k, n))
    probs = np.sort(np.concatenate([top[..., None], rest], axis=-1), axis=-1)[..., ::-1]
    return keep, probs


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


def test_threshold_calibration_maximises_shadow_accuracy():
    rng = np.random.default_rng(2)
    keep = rng.random((3, 200)) < 0.5
    loss = np.where(keep, 0.2, 1.0) + 0.4 * rng.standard_normal((3, 200))
    tau = attacks.calibrate_threshold(attacks.loss(loss), keep)
    oriented = -loss
    best = max(
        np.mean((oriented >= t) == keep) for t in np.concatenate([oriented.ravel(), [np.inf]])
    )
    assert np.mean((oriented >= tau) == keep) == pytest.approx(best)
    scores = attacks.loss(loss[0], loss[1:], keep[1:])
    assert metrics.auc(keep[0], scores) > 0.8  # low loss -> member: oriented correctly
    with pytest.raises(ValueError, match="shadow statistics"):
        attacks.loss(loss[0], loss[1:, :5], keep[1:])


def test_access_levels_are_enforced():
    logits = np.random.default_rng(3).standard_normal((2, 5, 4)).astype(np.float32)
    labels = np.arange(5) % 4
    seen = threat_models.observe(logits, labels, "topk", ["top_k_probabilities"], top_k=2)
    assert seen["top_k_probabilities"].shape == (2, 5, 2)
    for access, hidden in [
        ("topk", "probabilities"),
        ("topk", "loss"),
        ("label", "confidence"),
        ("label", "sorted_probabilities"),
        ("loss", "entropy"),
    ]:
        with pytest.raises(threat_models.AccessError, match="does not provide"):
            threat_models.observe(logits, labels, access, [hidden])
    with pytest.raises(threat_models.AccessError, match="unknown access level"):
        threat_models.check_access("everything")
    # an attack asked for explicitly is refused; by default only allowed attacks run
    with pytest.raises(threat_models.AccessError, match=r"attack 'entropy' .* needs entropy"):
        audit.select_attacks(audit.AuditConfig(access="topk", attacks=("entropy",)))
    assert audit.select_attacks(audit.AuditConfig(access="label")) == ("shokri", "label_only")
    assert audit.select_attacks(audit.AuditConfig(access="topk")) == ("shokri", "confidence")
    assert audit.select_attacks(audit.AuditConfig(access="loss")) == (
        "shokri",
        "loss",
        *audit.LIKELIHOOD_ATTACKS,
    )
    # online attacks need IN models, which the disjoint scheme does not have
    disjoint = audit.select_attacks(audit.AuditConfig(scheme="disjoint"))
    assert "lira_offline" in disjoint and "lira_online" not in disjoint
    with pytest.raises(audit.ConfigError, match="needs shadow models trained on the candidates"):
        audit.select_attacks(audit.AuditConfig(scheme="disjoint", attacks=("rmia_online",)))


# ---------------------------------------------------------------- controls on real data

SMALL = dict(num_shadows=8, epochs=25, n_boot=0)


@pytest.fixture(scope="module")
def location():
    return datasets.load("location30")


def test_no_information_control_every_attack_at_chance(location):
    """The target trains on records disjoint from every candidate, so "members" and
    "non-members" are both unseen: no attack may do better than chance."""
    n = location.n
    rng = np.random.default_rng(0)
    perm = rng.permutation(n)
    target_keep = np.zeros(n, bool)
    target_keep[perm[:2000]] = True
    candidates = np.sort(perm[2000:])
    fake_membership = rng.random(candidates.size) < 0.5
    split = splits.AuditSplit(
        target_keep=target_keep,
        candidates=candidates,
        membership=fake_membership,
        shadow_keep=splits.balanced_keep(SMALL["num_shadows"], n, seed=1),
        shadow_pool=np.ones(n, bool),
        scheme="balanced",
    )
    report = audit.run(audit.AuditConfig(**SMALL), dataset=location, split=split)
    assert set(report.metrics) == set(audit.ATTACKS)
    for name, m in report.metrics.items():
        assert abs(m.auc - 0.5) <= 0.05, (name, m.auc)


def test_overfit_target_every_attack_above_chance(location):
    report = audit.run(audit.AuditConfig(**SMALL), dataset=location)
    assert report.target_accuracy["train"] > 0.95
    for name, m in report.metrics.items():
        # oriented so that higher = member: a sign flip would give AUC well below 0.5
        assert m.auc > 0.65, (name, m.auc)
        assert m.advantage > 0.2, (name, m.advantage)
