"""Threat models (jaxmia/threat_models.py): what each access level lets an attack see."""

import numpy as np
import pytest

from jaxmia import threat_models
from jaxmia._src import audit


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
        "lira_online",
        "lira_offline",
        "rmia_online",
        "rmia_offline",
        "attack_p",
    )
    # online attacks need IN models, which the disjoint scheme does not have
    disjoint = audit.select_attacks(audit.AuditConfig(scheme="disjoint"))
    assert "lira_offline" in disjoint and "lira_online" not in disjoint
    with pytest.raises(audit.ConfigError, match="needs shadow models trained on the candidates"):
        audit.select_attacks(audit.AuditConfig(scheme="disjoint", attacks=("rmia_online",)))
