"""Tests for jaxmia.signals against float64 NumPy references and in degenerate limits."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmia import signals

K, N, C = 3, 7, 5


# --------------------------------------------------------------------------- references


def _ref_probs(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _ref_py(p: np.ndarray, labels: np.ndarray) -> np.ndarray:
    idx = np.broadcast_to(labels, p.shape[:-1])[..., None]
    return np.take_along_axis(p, idx, axis=-1)[..., 0]


def _reference(name: str, logits: np.ndarray, labels: np.ndarray, top_k: int) -> np.ndarray:
    p = _ref_probs(logits)
    c = p.shape[-1]
    onehot = np.arange(c) == labels[..., None]
    py = _ref_py(p, labels)
    if name == "probabilities":
        return p
    if name == "sorted_probabilities":
        return -np.sort(-p, axis=-1)
    if name == "top_k_probabilities":
        return -np.sort(-p, axis=-1)[..., :top_k]
    if name == "confidence":
        return p.max(axis=-1)
    if name == "true_class_probability":
        return py
    if name == "entropy":
        return -(p * np.log(p)).sum(axis=-1)
    if name == "modified_entropy":
        others = np.where(onehot, 0.0, p * np.log(1.0 - p)).sum(axis=-1)
        return -(1.0 - py) * np.log(py) - others
    if name == "loss":
        return -np.log(py)
    if name == "logit_scaled_confidence":
        return np.log(py) - np.log(np.where(onehot, 0.0, p).sum(axis=-1))
    if name == "correctness":
        return (p.argmax(axis=-1) == labels).astype(np.float64)
    raise AssertionError(name)


class Logits(NamedTuple):
    """Random logits, ``(K, N, C)`` or ``(N, C)``, and ``N`` integer labels."""

    logits: np.ndarray
    labels: np.ndarray


@pytest.fixture(params=[(K, N, C), (N, C)], ids=["knc", "nc"])
def data(request) -> Logits:
    rng = np.random.default_rng(0)
    logits = (3.0 * rng.standard_normal(request.param)).astype(np.float32)
    labels = rng.integers(0, C, size=N).astype(np.int32)
    return Logits(logits, labels)


# --------------------------------------------------------------------------- accuracy


@pytest.mark.slow
@pytest.mark.parametrize("name", signals.SIGNALS)
def test_matches_numpy_reference(name, data):
    out = signals.compute(name, jnp.asarray(data.logits), jnp.asarray(data.labels), top_k=3)
    ref = _reference(name, data.logits, data.labels, top_k=3)
    assert out.shape == ref.shape
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", signals.SIGNALS)
def test_from_probs_matches_logits(name, data):
    probs = _ref_probs(data.logits).astype(np.float32)
    out = signals.compute(name, probs, data.labels, from_probs=True)
    ref = _reference(name, data.logits, data.labels, top_k=3)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-4, atol=1e-5)


def test_direct_calls_and_shapes(data):
    lead = data.logits.shape[:-1]
    assert signals.probabilities(data.logits).shape == data.logits.shape
    assert signals.sorted_probabilities(data.logits).shape == data.logits.shape
    assert signals.top_k_probabilities(data.logits, 2).shape == (*lead, 2)
    for fn in (signals.confidence, signals.entropy):
        assert fn(data.logits).shape == lead
    for fn in (
        signals.true_class_probability,
        signals.modified_entropy,
        signals.loss,
        signals.logit_scaled_confidence,
        signals.correctness,
    ):
        assert fn(data.logits, data.labels).shape == lead


def test_per_model_labels_broadcast():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((K, N, C)).astype(np.float32)
    labels = rng.integers(0, C, size=(K, N))
    out = signals.loss(logits, labels)
    for i in range(K):
        np.testing.assert_allclose(out[i], signals.loss(logits[i], labels[i]), rtol=1e-6)


def test_top_k_validates_k():
    with pytest.raises(ValueError, match="k must be"):
        signals.top_k_probabilities(jnp.zeros((N, C)), C + 1)


def test_low_precision_logits_promoted():
    logits = jnp.asarray(np.random.default_rng(2).standard_normal((N, C)), jnp.bfloat16)
    assert signals.entropy(logits).dtype == jnp.float32


# --------------------------------------------------------------------------- limits


def _all_scalar(logits, labels):
    return {name: np.asarray(signals.compute(name, logits, labels)) for name in signals.SIGNALS}


def _assert_finite(outs):
    for name, v in outs.items():
        assert np.all(np.isfinite(v)), (name, v)


@pytest.mark.slow
def test_saturated_logits_finite_with_right_limits():
    logits = jnp.array([[1000.0, 0.0, -1000.0]] * 3)
    labels = jnp.array([0, 1, 2])  # correct, wrong (runner-up), wrong (last)
    outs = _all_scalar(logits, labels)
    _assert_finite(outs)
    np.testing.assert_allclose(outs["probabilities"][0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(outs["entropy"], 0.0)
    np.testing.assert_array_equal(outs["confidence"], 1.0)
    np.testing.assert_array_equal(outs["correctness"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(outs["loss"], [0.0, 1000.0, 2000.0])
    np.testing.assert_allclose(outs["true_class_probability"], [1.0, 0.0, 0.0])
    # Correct one-hot: 0. Wrong: (z_max - z_y) + (z_max - z_second).
    np.testing.assert_allclose(outs["modified_entropy"], [0.0, 2000.0, 3000.0])
    np.testing.assert_allclose(outs["logit_scaled_confidence"], [1000.0, -1000.0, -2000.0])


@pytest.mark.parametrize("name", ["loss", "entropy", "modified_entropy", "confidence"])
def test_relative_precision_near_certainty(name):
    # p_y = 1 - O(1e-9): float32 log_softmax would cancel to 0 or lose all digits here.
    logits = np.array([[20.0, 0.0, 0.0], [25.0, 3.0, -4.0], [15.0, 14.0, -30.0]], np.float32)
    labels = np.array([0, 0, 0])
    out = np.asarray(signals.compute(name, logits, labels))
    ref = _reference(name, logits, labels, top_k=3)
    assert np.all(out > 0)
    np.testing.assert_allclose(out, ref, rtol=1e-5)


def test_logit_scaled_confidence_huge_gap():
    logits = jnp.array([[1e4, 0.0, 0.0], [0.0, 1e4, -1e4]])
    phi = signals.logit_scaled_confidence(logits, jnp.array([0, 0]))
    assert np.all(np.isfinite(phi))
    np.testing.assert_allclose(phi, [1e4 - np.log(2.0), -1e4], rtol=1e-6)


@pytest.mark.slow
def test_one_hot_probabilities_via_log_probs_from_probs():
    probs = jnp.array([[1.0, 0.0, 0.0, 0.0]] * 2)
    labels = jnp.array([0, 2])
    z = signals.log_probs_from_probs(probs)
    assert np.all(np.isfinite(z))
    log_floor = np.log(np.float64(signals.PROB_FLOOR))
    outs = _all_scalar(z, labels)
    _assert_finite(outs)
    np.testing.assert_allclose(outs["entropy"], 0.0, atol=1e-30)
    np.testing.assert_allclose(outs["loss"][0], 0.0, atol=1e-30)
    np.testing.assert_allclose(outs["loss"][1], -log_floor, rtol=1e-5)  # large, finite
    np.testing.assert_allclose(outs["modified_entropy"][0], 0.0, atol=1e-30)
    assert outs["modified_entropy"][1] > 80.0
    np.testing.assert_array_equal(outs["correctness"], [1.0, 0.0])
    phi = outs["logit_scaled_confidence"]
    np.testing.assert_allclose(phi[0], -log_floor - np.log(3.0), rtol=1e-5)
    assert phi[0] > 80.0 and phi[1] < -80.0
    # compute(from_probs=True) is the same pipeline.
    np.testing.assert_array_equal(
        signals.compute("logit_scaled_confidence", probs, labels, from_probs=True), phi
    )


@pytest.mark.slow
def test_from_probs_float16_and_int_inputs_finite():
    for probs in (jnp.eye(3, dtype=jnp.float16), jnp.eye(3, dtype=jnp.int32)):
        z = signals.log_probs_from_probs(probs)
        assert z.dtype == jnp.float32
        assert np.all(np.isfinite(z))


def test_neg_inf_logits_entropy():
    logits = jnp.array([[0.0, -jnp.inf, 0.0]])
    np.testing.assert_allclose(signals.entropy(logits), [np.log(2.0)], rtol=1e-6)
    np.testing.assert_allclose(signals.modified_entropy(logits, jnp.array([0])), [np.log(2.0)])


@pytest.mark.slow
def test_gradients_finite_when_saturated():
    logits = jnp.array([[50.0, 0.0, -50.0]])
    labels = jnp.array([1])
    for fn in (signals.modified_entropy, signals.logit_scaled_confidence, signals.loss):
        g = jax.grad(lambda z, fn=fn: fn(z, labels).sum())(logits)
        assert np.all(np.isfinite(g)), fn
    g = jax.grad(lambda z: signals.entropy(z).sum())(logits)
    assert np.all(np.isfinite(g))


# --------------------------------------------------------------------------- jit


def test_public_functions_are_jitted():
    for name in signals.SIGNALS:
        assert hasattr(getattr(signals, name), "lower"), name
    assert hasattr(signals.log_probs_from_probs, "lower")


def test_no_recompile_on_same_shapes():
    fn = signals.modified_entropy
    if not hasattr(fn, "_cache_size"):
        pytest.skip("jit cache introspection unavailable")
    rng = np.random.default_rng(3)
    shape = (2, 11, 13)  # unique to this test so the cache starts empty for it
    labels = jnp.asarray(rng.integers(0, 13, size=11))
    fn(jnp.asarray(rng.standard_normal(shape), jnp.float32), labels).block_until_ready()
    size = fn._cache_size()
    fn(jnp.asarray(rng.standard_normal(shape), jnp.float32), labels).block_until_ready()
    assert fn._cache_size() == size
    fn(jnp.asarray(rng.standard_normal((11, 13)), jnp.float32), labels).block_until_ready()
    assert fn._cache_size() == size + 1

    topk = signals.top_k_probabilities
    x = jnp.asarray(rng.standard_normal((4, 17)), jnp.float32)
    topk(x, 2)
    size = topk._cache_size()
    topk(x + 1.0, 2)
    assert topk._cache_size() == size
    topk(x, 4)
    assert topk._cache_size() == size + 1


def test_no_retrace_inside_user_jit():
    traces = []

    @jax.jit
    def attack(z, y):
        traces.append(None)
        return signals.compute("logit_scaled_confidence", z, y)

    z = jnp.zeros((K, N, C))
    y = jnp.zeros((N,), jnp.int32)
    attack(z, y)
    attack(z + 1.0, y + 1)
    assert len(traces) == 1


# --------------------------------------------------------------------------- dispatch


def test_compute_dispatch_and_errors():
    logits = jnp.asarray(np.random.default_rng(4).standard_normal((N, C)), jnp.float32)
    labels = jnp.arange(N) % C
    np.testing.assert_array_equal(
        signals.compute("loss", logits, labels), signals.loss(logits, labels)
    )
    assert signals.compute("top_k_probabilities", logits, None, top_k=2).shape == (N, 2)
    assert signals.compute("entropy", logits, None).shape == (N,)
    with pytest.raises(ValueError, match="valid names: probabilities"):
        signals.compute("nope", logits, labels)
    with pytest.raises(ValueError, match="needs labels"):
        signals.compute("loss", logits, None)


def test_member_sign():
    assert signals.MEMBER_SIGN == {
        "confidence": 1.0,
        "true_class_probability": 1.0,
        "entropy": -1.0,
        "modified_entropy": -1.0,
        "loss": -1.0,
        "logit_scaled_confidence": 1.0,
        "correctness": 1.0,
    }
    assert set(signals.SCALAR_SIGNALS) <= set(signals.SIGNALS)
    # Sign-adjusted signals rank a confident correct prediction above a wrong one.
    logits = jnp.array([[8.0, 0.0, 0.0], [0.0, 8.0, 0.0]])
    labels = jnp.array([0, 0])
    for name, sign in signals.MEMBER_SIGN.items():
        s = sign * np.asarray(signals.compute(name, logits, labels))
        if name == "confidence" or name == "entropy":
            assert s[0] == pytest.approx(s[1])  # label-free: identical vectors up to permutation
        else:
            assert s[0] > s[1], name


def test_label_signals_refuse_out_of_range_labels_on_concrete_inputs():
    # Only compute() checked: loss, the logit-scaled confidence and log_probs gave NaN
    # silently (which LiRA then reported as "NaN or infinite values").
    from jaxmia._src import attacks

    logits = np.zeros((2, 4, 3), np.float32)
    for bad in ([0, 1, 2, 3], [0, -1, 2, 1]):
        labels = np.array(bad)
        for fn in (
            signals.loss,
            signals.logit_scaled_confidence,
            signals.true_class_probability,
            signals.modified_entropy,
            signals.correctness,
            attacks.log_probs,
        ):
            with pytest.raises(ValueError, match=r"^labels must be in \[0, 3\) for 3 classes"):
                fn(logits, labels)
            with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):  # logits traced
                jax.vmap(fn, in_axes=(0, None))(logits, labels)
    # traced labels cannot be checked: NaN there, as documented
    traced = jax.jit(signals.loss)(logits[0], np.array([0, 1, 2, 3]))
    assert np.isnan(traced[3]) and np.isfinite(traced[:3]).all()
