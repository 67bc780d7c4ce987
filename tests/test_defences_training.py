"""Defences: DP-SGD (noise per model, epsilon, a control at chance), early stopping,
output perturbation inside the audit, and studies."""

import dataclasses
import json
import re

import dp_accounting
import jax
import numpy as np
import optax
import pytest
from dp_accounting import pld

from jaxmia import audit, datasets, engine, models, splits, study, threat_models
from jaxmia.defences import training as defences


@pytest.fixture(scope="module")
def location():
    return datasets.load("location30")


def test_vmapped_dp_noise_differs_between_models():
    ds = datasets.load("digits").subset(np.arange(256))
    factory = models.mlp((32,), 10, 64)
    keep = np.ones((2, ds.n), bool)  # same data for both models
    tx = optax.sgd(1.0)
    start = engine.train(factory, ds.x, ds.y, keep, epochs=0, seed=3, optimizer=tx)
    # a clip so small that the update is the noise alone
    dp = engine.DPConfig(l2_clip=1e-6, noise_multiplier=1e6)
    after = engine.train(factory, ds.x, ds.y, keep, epochs=1, seed=3, optimizer=tx, dp=dp)
    delta = [
        np.asarray(a - b).reshape(2, -1)
        for a, b in zip(jax.tree.leaves(after.params), jax.tree.leaves(start.params), strict=True)
    ]
    delta = np.concatenate(delta, axis=1)
    assert delta.std(axis=1).min() > 1e-3  # noise was added
    assert abs(np.corrcoef(delta)[0, 1]) < 0.1  # ... independently for each model
    # one model's key fixes its noise: the same key twice gives the same update
    keys = engine.model_keys(3, 1)
    twice = jax.numpy.concatenate([keys, keys])
    again = engine.train(factory, ds.x, ds.y, keep, epochs=1, keys=twice, optimizer=tx, dp=dp)
    leaf = jax.tree.leaves(again.params)[0]
    np.testing.assert_array_equal(leaf[0], leaf[1])


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


def test_early_stopping_keeps_the_best_epoch():
    ds = datasets.load("digits")
    factory = models.mlp((64,), 10, 64)
    keep = splits.balanced_keep(2, 1200, seed=0)
    keep = np.concatenate([keep, np.zeros((2, ds.n - 1200), bool)], axis=1)
    val = (ds.x[1200:], ds.y[1200:])
    tx = optax.adam(0.05)  # a large step overfits fast, so validation loss turns up
    stopped = engine.train(
        factory, ds.x, ds.y, keep, epochs=40, optimizer=tx, seed=0, validation=val, patience=2
    )
    best = stopped.best_epoch
    assert (best < 40).all()
    assert np.isnan(stopped.losses[-1]).all()  # the run stopped before the last epoch
    for i in range(2):  # equals training model i for exactly its best number of epochs
        plain = engine.train(factory, ds.x, ds.y, keep, epochs=int(best[i]), optimizer=tx, seed=0)
        for a, b in zip(
            jax.tree.leaves(stopped.params), jax.tree.leaves(plain.params), strict=True
        ):
            np.testing.assert_allclose(a[i], b[i], rtol=1e-5, atol=1e-6)


def test_label_only_interface_hides_the_vector(location):
    config = audit.AuditConfig(num_shadows=4, epochs=10, n_boot=0, perturbation="label")
    assert config.effective_access == "label"
    assert audit.select_attacks(config) == ("shokri", "label_only")
    with pytest.raises(threat_models.AccessError, match="attack 'lira_online'"):
        audit.select_attacks(dataclasses.replace(config, attacks=("lira_online",)))
    topk = audit.AuditConfig(perturbation="topk", top_k=2)
    assert topk.effective_access == "topk"
    with pytest.raises(threat_models.AccessError, match="needs loss"):
        audit.select_attacks(dataclasses.replace(topk, attacks=("loss",)))
    report = audit.run(config, dataset=location)
    assert set(report.metrics) == {"shokri", "label_only"}
    assert report.metrics["label_only"].auc > 0.6
    assert report.privacy["interface"] == "predicted label only"


def test_bad_defence_options_are_refused():
    with pytest.raises(audit.ConfigError, match="dropout"):
        audit.AuditConfig(dropout=1.5)
    with pytest.raises(audit.ConfigError, match="DP-SGD is supported for models without dropout"):
        audit.AuditConfig(dp_noise=1.0, dropout=0.2)
    with pytest.raises(audit.ConfigError, match="perturbation"):
        audit.AuditConfig(perturbation="blur")
    with pytest.raises(audit.ConfigError, match="not to --access loss"):
        audit.AuditConfig(perturbation="round", access="loss")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"weight_decay": float("nan")}, "weight_decay must be a finite number >= 0, got nan"),
        ({"dp_noise": float("inf")}, "dp_noise must be a finite number >= 0, got inf"),
        ({"dp_noise": -1.0}, "dp_noise must be a finite number >= 0, got -1.0"),
        ({"dp_clip": 0.0}, "dp_clip must be a finite number > 0, got 0.0"),
        ({"dp_delta": 1.0}, "dp_delta must be a finite number > 0 and < 1, got 1.0"),
        ({"dropout": True}, "dropout must be a finite number >= 0 and < 1, got True"),
        ({"early_stopping": 1.5}, "early_stopping must be an integer >= 0, got 1.5"),
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


STUDY_BASE = audit.AuditConfig(
    dataset="digits", num_shadows=2, epochs=2, n_boot=0, attacks=("loss", "lira_offline")
)


@pytest.mark.parametrize(
    "factor,values",
    [
        ("shadows", [2, 4]),
        ("epochs", [1, 3]),
        ("width", [16, 32]),
        ("classes", [2, 5]),
        ("dp_noise", ["none", 2.0]),
    ],
)
def test_each_study_writes_its_table_and_plot(factor, values, tmp_path):
    result = study.run(factor, values, STUDY_BASE)
    written = study.write(result, tmp_path)
    data = json.loads((tmp_path / "study.json").read_text())
    assert data["factor"] == factor and len(data["rows"]) == 2 * len(values)
    assert (tmp_path / "study.csv").read_text().count("\n") == 2 * len(values) + 1
    assert (tmp_path / "study.png").stat().st_size > 1000 and "plot" in written
    assert {r["attack"] for r in data["rows"]} == {"loss", "lira_offline"}
    if factor == "dp_noise":
        eps = [r["epsilon"] for r in data["rows"]]
        assert eps[0] is None and eps[-1] > 0
    assert factor in study.table(result)


def test_study_refuses_bad_factor():
    with pytest.raises(study.StudyError, match="unknown factor"):
        study.parse_values("colour", [1])
    with pytest.raises(study.StudyError, match="bad value"):
        study.parse_values("shadows", ["many"])
