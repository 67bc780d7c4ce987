"""Training-time defences (jaxmia/defences/training.py): DP-SGD epsilon, a control at
chance inside the audit, and the checks of the defence settings."""

import dataclasses
import re

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld

from jaxmia._src import audit
from jaxmia._src.defences import training as defences


def test_epsilon_matches_dp_accounting():
    sigma, q, steps, delta = 1.3, 0.05, 600, 1e-5
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
    )
    rdp = dp_accounting.rdp.RdpAccountant()
    rdp.compose(event)
    assert defences.dp_epsilon(sigma, q, steps, delta) == pytest.approx(rdp.get_epsilon(delta))
    # an independent accountant (PLD) agrees to within the slack of RDP
    p = pld.PLDAccountant()
    p.compose(event)
    assert p.get_epsilon(delta) <= defences.dp_epsilon(sigma, q, steps, delta) * 1.05
    assert defences.dp_epsilon(0.0, q, steps) == float("inf")


@pytest.mark.slow
def test_dp_sgd_with_tiny_epsilon_drives_every_attack_to_chance(location):
    base = audit.AuditConfig(num_shadows=8, epochs=5, n_boot=0)
    private = audit.run(dataclasses.replace(base, dp_noise=4.0, dp_clip=1.0), dataset=location)
    eps = private.privacy["epsilon"]
    assert eps <= 1.0
    members = int(private.membership.sum())
    steps = 5 * int(np.ceil(members / base.batch_size))
    assert eps == pytest.approx(defences.dp_epsilon(4.0, base.batch_size / members, steps))
    for name, m in private.metrics.items():
        assert abs(m.auc - 0.5) <= 0.05, (name, m.auc)
    open_run = audit.run(dataclasses.replace(base, epochs=25), dataset=location)
    assert max(m.auc for m in open_run.metrics.values()) > 0.85
    assert open_run.metrics["lira_online"].auc > 0.75


def test_bad_defence_options_are_refused():
    with pytest.raises(audit.ConfigError, match="dropout"):
        audit.AuditConfig(dropout=1.5)
    with pytest.raises(
        audit.ConfigError, match=r"^dp_noise \(DP-SGD\) does not combine with dropout$"
    ):
        audit.AuditConfig(dp_noise=1.0, dropout=0.2)
    with pytest.raises(audit.ConfigError, match="perturbation"):
        audit.AuditConfig(perturbation="blur")
    with pytest.raises(audit.ConfigError, match="not to --access loss"):
        audit.AuditConfig(perturbation="round", access="loss")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"weight_decay": float("nan")}, "weight_decay must be a finite number, got nan"),
        ({"dp_noise": float("inf")}, "dp_noise must be a finite number or none, got inf"),
        ({"dp_noise": -1.0}, "dp_noise must be a finite number >= 0, got -1.0"),
        ({"dp_clip": 0.0}, "dp_clip must be a finite number > 0, got 0.0"),
        ({"dp_delta": 1.0}, "dp_delta must be a finite number in (0, 1), got 1.0"),
        ({"dropout": True}, "dropout must be a finite number, got True"),
        ({"early_stopping": 1.5}, "early_stopping must be an integer, got 1.5"),
    ],
)
def test_a_defence_refuses_meaningless_values_in_one_line(settings, message):
    # NaN weight decay was accepted, infinite DP noise failed inside the accountant and
    # negative noise only once training had begun
    with pytest.raises(ValueError) as e:
        defences.Defence(**settings)
    assert str(e.value) == message
    ((name, value),) = settings.items()
    with pytest.raises(
        audit.ConfigError, match=f"^{name} must be .*, got {re.escape(repr(value))}$"
    ):
        audit.AuditConfig(**settings)


def test_the_defence_section_is_the_defence():
    config = audit.AuditConfig(weight_decay=0.01, dp_noise=None, early_stopping=2)
    assert config.defence == defences.Defence(weight_decay=0.01, early_stopping=2)
    assert config.defence is config.defence  # a section, not rebuilt on every read
    assert not hasattr(config.defence, "active")
    assert {f.name for f in dataclasses.fields(defences.Defence)} <= set(config.to_dict())
