"""Output perturbations (jaxmia/defences/perturbation.py): each transform's properties,
signals behind them, access levels, the label-only interface inside the audit."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from jaxmia import signals, threat_models
from jaxmia._src import audit
from jaxmia._src.defences import perturbation
from jaxmia._src.defences.perturbation import Perturbation

K, N, C = 3, 50, 7


@pytest.fixture(scope="module")
def probs():
    """``(K, N, C)`` softmax probabilities, some very confident (members-like) rows."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((K, N, C)) * np.linspace(0.5, 12, N)[:, None]
    return np.asarray(signals.probabilities(logits.astype(np.float32)))


@pytest.fixture(scope="module")
def labels():
    return np.random.default_rng(1).integers(0, C, N)


# --------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("k", [1, 3, C])
def test_top_k_only_keeps_the_k_largest(probs, k):
    out = np.asarray(perturbation.top_k_only(probs, k))
    assert out.shape == probs.shape
    assert np.all(np.count_nonzero(out, axis=-1) == k)
    top = np.argsort(-probs, axis=-1)[..., :k]
    np.testing.assert_array_equal(
        np.take_along_axis(out, top, -1), np.take_along_axis(probs, top, -1)
    )
    # Not renormalised: each row keeps exactly its top-k mass.
    np.testing.assert_allclose(out.sum(-1), np.take_along_axis(probs, top, -1).sum(-1), rtol=1e-6)


def test_top_k_only_ties_and_errors():
    tied = np.full((2, 4), 0.25, np.float32)
    out = np.asarray(perturbation.top_k_only(tied, 2))
    np.testing.assert_array_equal(out, [[0.25, 0.25, 0, 0]] * 2)  # lowest indices win
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        perturbation.top_k_only(tied, 5)
    with pytest.raises(ValueError, match="k must be an integer"):
        perturbation.top_k_only(tied, 0)


@pytest.mark.parametrize("decimals", [0, 1, 2, 3])
def test_round_probs(probs, decimals):
    out = np.asarray(perturbation.round_probs(probs, decimals))
    assert out.shape == probs.shape
    scaled = out.astype(np.float64) * 10**decimals
    np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-3)
    assert np.all(np.abs(out - probs) <= 0.5 * 10.0**-decimals + 1e-6)
    assert np.any(out == 0) and (decimals > 2 or np.any(out == 1))
    with pytest.raises(ValueError, match="decimals must be an integer >= 0"):
        perturbation.round_probs(probs, -1)


def test_gaussian_noise(probs):
    key = jax.random.key(0)
    out = np.asarray(perturbation.gaussian_noise(probs, 0.1, key))
    assert out.shape == probs.shape
    assert not np.allclose(out, probs, atol=1e-3)
    assert np.all((out >= 0) & (out <= 1))
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out, perturbation.gaussian_noise(probs, 0.1, key))
    other = np.asarray(perturbation.gaussian_noise(probs, 0.1, jax.random.key(1)))
    assert not np.allclose(out, other)
    # Independent across models: the same inputs in every model get different noise.
    same = np.broadcast_to(probs[0], probs.shape)
    noisy = np.asarray(perturbation.gaussian_noise(same, 0.1, key))
    assert not np.allclose(noisy[0], noisy[1]) and not np.allclose(noisy[1], noisy[2])
    np.testing.assert_allclose(perturbation.gaussian_noise(probs, 0.0, key), probs, rtol=1e-5)
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        perturbation.gaussian_noise(probs, -0.1, key)


def test_gaussian_noise_all_zero_rows_become_uniform():
    zeros = np.zeros((200, 5), np.float32)  # a row stays all zero w.p. 2**-5 after clipping
    out = np.asarray(perturbation.gaussian_noise(zeros, 0.1, jax.random.key(0)))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)
    assert np.any(np.all(out == 0.2, axis=-1))


def test_label_only_is_one_hot_argmax(probs):
    out = np.asarray(perturbation.label_only(probs))
    assert out.shape == probs.shape
    np.testing.assert_array_equal(out, np.eye(C)[probs.argmax(-1)])


# --------------------------------------------------------------------------- signals behind it


@pytest.mark.parametrize("kind", ["topk", "round", "label"])
@pytest.mark.parametrize("name", signals.SIGNALS)
def test_signals_finite_behind_interface(probs, labels, kind, name):
    seen = Perturbation(kind, decimals=1).apply(probs)
    values = np.asarray(signals.compute(name, seen, labels, from_probs=True))
    assert values.shape[:2] == (K, N)
    assert np.all(np.isfinite(values))


def test_label_only_signals_match_correctness(probs, labels):
    seen = perturbation.label_only(probs)
    correct = np.asarray(signals.compute("correctness", seen, labels, from_probs=True))
    np.testing.assert_array_equal(correct, probs.argmax(-1) == labels)


# --------------------------------------------------------------------------- configuration


def test_perturbation_apply_matches_functions(probs):
    key = jax.random.key(3)
    np.testing.assert_array_equal(Perturbation().apply(probs), probs)
    np.testing.assert_array_equal(
        Perturbation("topk", k=2).apply(probs), perturbation.top_k_only(probs, 2)
    )
    np.testing.assert_array_equal(
        Perturbation("round", decimals=1).apply(probs), perturbation.round_probs(probs, 1)
    )
    np.testing.assert_array_equal(
        Perturbation("noise", sigma=0.05).apply(probs, key),
        perturbation.gaussian_noise(probs, 0.05, key),
    )
    np.testing.assert_array_equal(
        Perturbation("label").apply(probs), perturbation.label_only(probs)
    )
    with pytest.raises(ValueError, match="needs a PRNG key"):
        Perturbation("noise", sigma=0.05).apply(probs)


def test_perturbation_describe():
    assert Perturbation().describe() == "full probability vector"
    assert Perturbation("topk", k=5).describe() == "top-5 probabilities (others zeroed)"
    assert Perturbation("round", decimals=3).describe() == "probabilities rounded to 3 decimals"
    assert "0.1" in Perturbation("noise", sigma=0.1).describe()
    assert Perturbation("label").describe() == "predicted label only"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "blur"}, "kind must be one of none, topk, round, noise, label; got 'blur'"),
        ({"kind": "topk", "k": 0}, "k must be an integer >= 1"),
        ({"kind": "topk", "k": 2.5}, "k must be an integer, got 2.5"),
        ({"kind": "topk", "k": True}, "k must be an integer, got True"),
        ({"kind": "round", "decimals": -2}, "decimals must be an integer >= 0"),
        ({"kind": "noise", "sigma": float("nan")}, "sigma must be a finite number"),
        ({"kind": "noise", "sigma": -1.0}, "sigma must be a finite number >= 0"),
    ],
)
def test_perturbation_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Perturbation(**kwargs)


def test_access_level_mapping():
    expected = {"none": "probs", "round": "probs", "noise": "probs", "topk": "topk"}
    expected["label"] = "label"
    for kind, level in expected.items():
        assert perturbation.access_level(Perturbation(kind)) == level
        assert level in threat_models.ACCESS_LEVELS


def test_label_only_interface_refuses_vector_attacks():
    level = perturbation.access_level(Perturbation("label"))
    with pytest.raises(threat_models.AccessError, match="sorted_probabilities"):
        threat_models.require(level, ["sorted_probabilities"], "Shokri attack")
    with pytest.raises(threat_models.AccessError, match="entropy"):
        threat_models.require(level, ["entropy"], "entropy threshold attack")
    threat_models.require(level, ["correctness"], "label-only attack")  # allowed
    threat_models.require(perturbation.access_level(Perturbation("round")), ["entropy"], "x")


@pytest.mark.slow
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
