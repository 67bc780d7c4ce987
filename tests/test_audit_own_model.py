"""audit_model (jaxmia/audit/own_model.py): a model the user trained, described truthfully."""

import dataclasses
import functools
import json
from typing import NamedTuple

import jax
import numpy as np
import optax
import pytest

from jaxmia import models, splits
from jaxmia._src import audit, engine
from jaxmia._src.audit import own_model
from jaxmia._src.audit.setup import describe_model


class Parts(NamedTuple):
    """The user's digits arrays: 600 members, 600 non-members, 597 population records,
    each an ``(x, y)`` pair."""

    members: tuple
    nonmembers: tuple
    population: tuple


@pytest.fixture(scope="module")
def parts(digits) -> Parts:
    perm = np.random.default_rng(0).permutation(digits.n)
    rows = perm[:600], perm[600:1200], perm[1200:]
    return Parts(*[(digits.x[i], digits.y[i]) for i in rows])


def linear_model(x):
    """The user's model: a fixed linear map from (b, 64) inputs to (b, 10) logits."""
    w = np.random.default_rng(1).normal(size=(64, 10)).astype(np.float32)
    return np.asarray(x) @ w


QUICK = audit.AuditConfig(num_shadows=4, epochs=2, n_boot=0, attacks=("loss", "lira_online"))


@pytest.mark.slow
def test_report_describes_the_users_data_and_model(parts, tmp_path):
    report = audit.audit_model(
        linear_model, parts.members, parts.nonmembers, parts.population, config=QUICK
    )
    report.write(tmp_path)
    text = (tmp_path / "report.md").read_text()
    setting = text.split("## Results")[0]
    assert "location30" not in text
    assert "1797 records: 600 members, 600 non-members, 597 population" in setting
    assert "input shape (64,), 10 classes" in setting
    target = next(line for line in setting.splitlines() if line.startswith("- target"))
    assert "not trained by jaxmia" in target and "logits" in target
    assert "epochs" not in target and "Adam" not in target
    shadows = next(line for line in setting.splitlines() if line.startswith("- shadow"))
    assert "4 shadow models" in shadows and "2 epochs, batch 128, Adam 0.001" in shadows
    assert "Command:" not in text and "jaxmia audit" not in text
    assert "bootstrap" not in text  # n_boot=0: no intervals were computed
    assert "- defences of the target: not known to jaxmia (the user's own model)\n" in setting
    assert f'"output_dir": "{tmp_path}"' in text.split("Config:")[1]  # where it went
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert "location30" not in json.dumps(m)
    assert m["data"]["members"] == 600 and m["data"]["population"] == 597
    assert "not trained by jaxmia" in m["target"] and "logits" in m["target"]
    assert "2 epochs" in m["shadows"]
    assert m["config"]["learning_rate"] == 0.001 and m["config"]["output_dir"] == str(tmp_path)
    assert "shadow_defence" not in m["privacy"]  # the shadows are undefended


def test_probabilities_are_named_as_read(parts):
    probs = lambda x: np.asarray(jax.nn.softmax(linear_model(x)))
    config = dataclasses.replace(QUICK, attacks=("loss",), dataset="my digits")
    report = audit.audit_model(
        probs, parts.members, parts.nonmembers, parts.population, config=config
    )
    assert "probabilities" in report.target
    assert report.dataset.startswith("my digits: 1797 records")  # the user's own label


@pytest.mark.parametrize("width", [11, 9])
def test_a_model_of_another_width_than_the_classes_is_refused(parts, monkeypatch, width):
    monkeypatch.setattr(engine, "train", lambda *a, **k: pytest.fail("trained shadows"))
    w = np.random.default_rng(1).normal(size=(64, width)).astype(np.float32)
    message = rf"^the model outputs {width} values per record, but the labels \(0 \.\. 9\) name 10"
    with pytest.raises(audit.ConfigError, match=message):
        audit.audit_model(
            lambda x: np.asarray(x) @ w, parts.members, parts.nonmembers, parts.population
        )


def test_a_shadow_architecture_of_another_width_is_refused(parts, monkeypatch):
    monkeypatch.setattr(engine, "train", lambda *a, **k: pytest.fail("trained shadows"))
    message = r"^the shadow architecture \(factory=\) outputs 11 values per record, the model 10$"
    with pytest.raises(audit.ConfigError, match=message):
        audit.audit_model(
            linear_model,
            parts.members,
            parts.nonmembers,
            parts.population,
            factory=models.mlp((8,), 11, 64),
            config=QUICK,
        )
    with pytest.raises(audit.ConfigError, match=r"^factory: the model does not take inputs"):
        audit.audit_model(
            linear_model,
            parts.members,
            parts.nonmembers,
            parts.population,
            factory=models.mlp((8,), 10, 60),
            config=QUICK,
        )


def test_defences_that_would_apply_to_nothing_are_refused(parts, monkeypatch):
    monkeypatch.setattr(engine, "train", lambda *a, **k: pytest.fail("trained shadows"))
    config = dataclasses.replace(QUICK, weight_decay=0.5)
    with pytest.raises(audit.ConfigError, match=r"^defence settings \(L2 weight decay 0.5\) "):
        audit.audit_model(linear_model, *parts, config=config)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (lambda y: y - 1, "members: labels must be class indices >= 0, got -1"),
        (lambda y: y[:, None], r"members: x must be \(n, ...\) and y \(n,\), got .* \(600, 1\)"),
    ],
    ids=["negative", "2-d"],
)
def test_labels_that_name_no_class_are_refused(parts, labels, message):
    members = (parts.members[0], labels(parts.members[1]))
    with pytest.raises(audit.ConfigError, match=message):
        audit.audit_model(linear_model, members, parts.nonmembers, parts.population)


class MyNet:
    """Stands in for a user's NNX class (only its name and arguments are read)."""


def test_describe_model_shows_positional_arguments():
    assert describe_model(functools.partial(MyNet, 64, 128, 10)) == "MyNet(64, 128, 10)"
    assert describe_model(functools.partial(MyNet, 64, dropout=0.5)) == "MyNet(64, dropout=0.5)"
    assert describe_model(MyNet) == "MyNet()"
    assert describe_model(models.mlp((128,), 30, 446)).startswith("MLP(in_features=446")


@pytest.mark.slow
def test_shadows_take_the_users_optimizer_and_batch_size(parts, monkeypatch):
    seen = []
    original = engine.train

    def spy(*args, **kw):
        seen.append(kw)
        return original(*args, **kw)

    monkeypatch.setattr(engine, "train", spy)
    tx = optax.sgd(0.05)
    report = audit.audit_model(
        linear_model,
        parts.members,
        parts.nonmembers,
        parts.population,
        config=QUICK,
        optimizer=tx,
        batch_size=64,
    )
    assert seen[-1]["spec"].optimizer is tx and seen[-1]["spec"].batch_size == 64
    assert "batch 64" in report.shadows and "optimizer given" in report.shadows
    assert "Adam" not in report.shadows
    settings = report.settings()
    assert settings["learning_rate"] == "user optimizer" and settings["batch_size"] == 64
    assert settings["model"] == "auto" and settings["hidden"] == [128]  # these applied


@pytest.mark.slow
def test_a_users_pool_defines_the_shadows(parts, monkeypatch):
    x = np.concatenate([parts.members[0], parts.nonmembers[0], parts.population[0]])
    y = np.concatenate([parts.members[1], parts.nonmembers[1], parts.population[1]])
    keep = splits.balanced_keep(4, x.shape[0], seed=2)
    pool = engine.train(models.mlp((32,), 10, 64), x, y, keep, epochs=2, seed=5)
    monkeypatch.setattr(engine, "train", lambda *a, **k: pytest.fail("retrained the pool"))
    report = audit.audit_model(
        linear_model, parts.members, parts.nonmembers, parts.population, config=QUICK, pool=pool
    )
    assert "the user's pool of 4 models" in report.shadows
    assert {report.settings()[name] for name in own_model.USER_POOL} == {"user pool"}
    assert np.isfinite(report.scores["lira_online"]).all()
    with pytest.raises(audit.ConfigError, match=r"pool.*\(4, 1000\).*1797 records"):
        audit.audit_model(
            linear_model,
            parts.members,
            parts.nonmembers,
            parts.population,
            config=QUICK,
            pool=dataclasses.replace(pool, keep=keep[:, :1000]),
        )
    wide = dataclasses.replace(pool, logits=np.concatenate([pool.logits, pool.logits], axis=2))
    with pytest.raises(audit.ConfigError, match=r"^the user's pool's logits are \(4, 1797, 20\), "):
        audit.audit_model(
            linear_model,
            parts.members,
            parts.nonmembers,
            parts.population,
            config=QUICK,
            pool=wide,
        )
    with pytest.raises(audit.ConfigError, match="pool= is a trained pool"):
        audit.audit_model(
            linear_model,
            parts.members,
            parts.nonmembers,
            parts.population,
            pool=pool,
            pool_dir="elsewhere",
        )
    with pytest.raises(audit.ConfigError, match="pool's models output 10 classes, the model 3"):
        audit.audit_model(
            lambda x: x[:, :3],  # in [0, 1] without summing to 1: name the reading
            parts.members,
            parts.nonmembers,
            parts.population,
            pool=pool,
            outputs="logits",
        )


@pytest.mark.slow
def test_audit_a_users_own_model(location, tmp_path):
    rng = np.random.default_rng(0)
    perm = rng.permutation(location.n)
    members, nonmembers, population = perm[:1000], perm[1000:2000], perm[2000:]
    factory = models.mlp((128,), 30, 446)
    # the user's model: trained elsewhere; here with the engine for brevity
    keep = np.zeros(location.n, bool)
    keep[members] = True
    user = engine.train(factory, location.x, location.y, keep, epochs=40, seed=123).model(0)
    pair = lambda idx: (location.x[idx], location.y[idx])
    config = audit.AuditConfig(num_shadows=8, epochs=40, n_boot=0, dataset="user location30")
    records = pair(members), pair(nonmembers), pair(population)
    report = audit.audit_model(
        user, *records, factory=factory, config=config, pool_dir=tmp_path / "pool"
    )
    assert report.target_accuracy["train"] > 0.95
    assert set(report.metrics) >= {"shokri", "loss", "lira_online", "rmia_online"}
    assert report.metrics["lira_online"].auc > 0.8
    settings = report.settings()
    assert [settings[name] for name in ("model", "hidden", "activation")] == [
        "user model factory"
    ] * 3
    assert settings["learning_rate"] == 0.001  # the shadows' Adam rate
    # a plain function returning probabilities works the same
    probs = lambda x: jax.nn.softmax(user(x))
    seen = []
    again = audit.audit_model(
        probs,
        *records,
        factory=factory,
        config=dataclasses.replace(config, attacks=("loss",)),
        pool_dir=tmp_path / "pool",  # the same records: the pool is reused, not retrained
        progress=lambda *a: seen.append(a),
    )
    assert seen[0][:2] == (8, 8) and len(seen) == 1
    assert again.metrics["loss"].auc == pytest.approx(report.metrics["loss"].auc, abs=1e-3)
    with pytest.raises(audit.ConfigError, match="differ in input shape"):
        audit.audit_model(
            user, pair(members), (location.x[:5, :10], location.y[:5]), pair(population)
        )
