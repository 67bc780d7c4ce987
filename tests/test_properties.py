"""Property-based tests (hypothesis) of the public functions' inputs.

For valid inputs a function returns the documented shape and dtype, values in the documented
range and, where a NumPy reference is cheap, the reference's values. For invalid inputs (NaN or
infinite values, empty arrays, mismatched shapes, one class where two are needed, ``k`` larger
than the data allows, non-integer sizes) it raises a ``ValueError`` (or a subclass) whose
message names the problem, never an ``IndexError``/``TypeError`` from deep inside NumPy or JAX
and never a silent NaN.

Every test is derandomised (CI is reproducible) and sized to keep the file well under a minute
on two CPU cores: arrays are small, and whatever JAX compiles uses a few fixed shapes, so most
examples reuse compiled functions.
"""

from __future__ import annotations

import json
import math
import pathlib
import tempfile

import jax
import numpy as np
import pytest
from helpers import METRIC_CALLS
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxmia import models, signals, splits, threat_models
from jaxmia._src import attacks, datasets, engine, metrics
from jaxmia._src.attacks import classifier
from jaxmia._src.defences import perturbation


def _settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


FAST = _settings(60)  # pure NumPy
JIT = _settings(20)  # compiles JAX code for a few fixed shapes
TRAIN = _settings(6)  # trains tiny models


def _raises(error, pattern: str, fn, *args, **kwargs) -> None:
    with pytest.raises(error, match=pattern):
        fn(*args, **kwargs)


# --------------------------------------------------------------------------- strategies

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)
small = st.floats(-50, 50, allow_nan=False, allow_infinity=False, width=32)
# Scores: any real (infinities allowed, as documented), or few distinct values (many ties).
score_values = st.floats(allow_nan=False) | st.sampled_from([-1.0, 0.0, 1.0, 2.0])


@st.composite
def labelled_scores(draw, min_n: int = 2, max_n: int = 24):
    """``(membership, scores)`` with both classes present."""
    n = draw(st.integers(min_n, max_n))
    y = draw(hnp.arrays(bool, n))
    i, j = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
    y[i], y[j] = True, False
    s = draw(hnp.arrays(np.float64, n, elements=score_values))
    return y, s


@st.composite
def invalid_metric_inputs(draw):
    """``(membership, scores, message pattern)`` that every metric must reject."""
    y, s = draw(labelled_scores(max_n=10))
    kind = draw(
        st.sampled_from(["nan", "one class", "empty", "length", "2-D", "non-binary", "text"])
    )
    if kind == "nan":
        s[draw(st.integers(0, len(s) - 1))] = np.nan
        return y, s, "NaN"
    if kind == "one class":
        return np.full(len(s), draw(st.booleans())), s, "both members and non-members"
    if kind == "empty":
        return y[:0], s[:0], "both members and non-members"
    if kind == "length":
        return y, s[: draw(st.integers(0, len(s) - 1))], "mismatched lengths"
    if kind == "2-D":
        return y[None], s[None], "1-D"
    if kind == "non-binary":
        y = y.astype(np.int64)
        y[draw(st.integers(0, len(y) - 1))] = draw(st.integers(2, 10) | st.integers(-10, -1))
        return y, s, "binary"
    return y, s.astype(str), "real numbers"


# --------------------------------------------------------------------------- metrics


def _ref_auc(y, s) -> float:
    pos, neg = s[y][:, None], s[~y][None]
    return float(np.mean(pos > neg) + 0.5 * np.mean(pos == neg))


def _ref_vertices(y, s):
    """ROC vertices ``(fpr, tpr)`` of ``s >= t`` for every distinct score, plus (0, 0)."""
    pts = [(0.0, 0.0)]
    for t in np.unique(s):
        pred = s >= t
        pts.append(((pred & ~y).sum() / (~y).sum(), (pred & y).sum() / y.sum()))
    return np.array(pts)


@FAST
@given(labelled_scores(), st.floats(0, 1))
def test_metrics_match_brute_force(data, fpr):
    y, s = data
    auc = metrics.auc(y, s)
    assert 0.0 <= auc <= 1.0
    assert auc == pytest.approx(_ref_auc(y, s), abs=1e-12)
    assert metrics.auc(y.astype(int), s) == auc  # 0/1 membership is the same

    fprs, tprs, thresholds = metrics.roc_curve(y, s)
    assert fprs.dtype == tprs.dtype == thresholds.dtype == np.float64
    assert fprs.shape == tprs.shape == thresholds.shape == (len(np.unique(s)) + 1,)
    assert (fprs[0], tprs[0], fprs[-1], tprs[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fprs) >= 0) and np.all(np.diff(tprs) >= 0)
    assert thresholds[0] == np.inf and np.all(np.diff(thresholds[1:]) < 0)

    vertices = _ref_vertices(y, s)
    assert metrics.tpr_at_fpr(y, s, fpr) == vertices[vertices[:, 0] <= fpr, 1].max()
    adv = metrics.advantage(y, s)
    assert 0.0 <= adv <= 1.0
    assert adv == pytest.approx(np.max(vertices[:, 1] - vertices[:, 0]), abs=1e-12)

    accuracy = lambda t: np.mean((s >= t) == y)
    candidates = np.unique(s)
    if s.max() < np.inf:  # "predict nobody" is reachable with a finite threshold
        with np.errstate(over="ignore"):
            candidates = np.append(candidates, np.nextafter(s.max(), np.inf))
    assert accuracy(metrics.best_threshold(y, s)) == max(accuracy(t) for t in candidates)


@FAST
@given(labelled_scores(), st.integers(0, 2**31 - 1))
def test_evaluate_is_finite_and_serialisable(data, seed):
    y, s = data
    m = metrics.evaluate(y, s, n_boot=10, seed=seed)
    for value in (m.auc, m.advantage, m.accuracy, m.precision, m.recall, m.balanced_accuracy):
        assert 0.0 <= value <= 1.0
    assert set(m.tpr_at_fpr) == set(metrics.DEFAULT_FPRS)
    assert all(0.0 <= v <= 1.0 for v in m.tpr_at_fpr.values())
    for lo, hi in [m.auc_ci, *m.tpr_at_fpr_ci.values()]:
        assert 0.0 <= lo <= hi <= 1.0
    assert (m.n_members, m.n_nonmembers) == (int(y.sum()), int((~y).sum()))
    json.dumps(m.to_dict(), allow_nan=False)  # strict JSON, also for infinite scores
    ci = metrics.bootstrap_ci(y, s, n_boot=10, seed=seed)
    assert ci == metrics.bootstrap_ci(y, s, n_boot=10, seed=seed)  # seeded


@FAST
@given(invalid_metric_inputs())
def test_metrics_reject_invalid_inputs(data):
    y, s, pattern = data
    for call in METRIC_CALLS:
        _raises(ValueError, pattern, call, y, s)


@FAST
@given(
    labelled_scores(max_n=8),
    st.floats().filter(lambda f: not 0 <= f <= 1),
    st.integers(-5, 0) | st.floats(0.1, 3).filter(lambda f: f != int(f)),
)
def test_metric_parameters_are_checked(data, bad_rate, bad_n_boot):
    y, s = data
    _raises(ValueError, "FPRs must lie in", metrics.tpr_at_fpr, y, s, bad_rate)
    _raises(ValueError, "FPRs must lie in", metrics.evaluate, y, s, fprs=[bad_rate], n_boot=0)
    _raises(ValueError, "level must lie in", metrics.bootstrap_ci, y, s, level=bad_rate)
    _raises(ValueError, "n_boot must be", metrics.bootstrap_ci, y, s, n_boot=bad_n_boot)
    _raises(ValueError, "threshold must not be NaN", metrics.threshold_metrics, y, s, np.nan)


# --------------------------------------------------------------------------- signals

SHAPES = [(6, 3), (2, 6, 3)]
LABEL_FREE = {
    "probabilities",
    "sorted_probabilities",
    "top_k_probabilities",
    "confidence",
    "entropy",
}  # (n, c) for one model, (k, n, c) for a pool
LOGIT_DTYPES = [np.float32, np.float16, np.int32]


@st.composite
def logits_and_labels(draw, shapes=SHAPES, dtypes=LOGIT_DTYPES):
    shape = draw(st.sampled_from(shapes))
    dtype = draw(st.sampled_from(dtypes))
    if dtype == np.int32:
        z = draw(hnp.arrays(dtype, shape, elements=st.integers(-20, 20)))
    else:
        z = draw(hnp.arrays(np.float32, shape, elements=small)).astype(dtype)
    y = draw(hnp.arrays(np.int32, shape[-2], elements=st.integers(0, shape[-1] - 1)))
    return z, y


def _ref_log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.slow
@JIT
@given(logits_and_labels())
def test_signals_shapes_ranges_and_references(data):
    z, y = data
    lead, c = z.shape[:-1], z.shape[-1]
    log_p = _ref_log_softmax(z)
    p = np.exp(log_p)
    log_py = np.take_along_axis(log_p, np.broadcast_to(y, lead)[..., None], -1)[..., 0]
    out = {name: np.asarray(signals.compute(name, z, y)) for name in signals.SIGNALS}
    for name, v in out.items():
        assert v.dtype == np.float32, name  # at least float32, also for float16/int32 logits
        assert np.isfinite(v).all(), name
        expected = {"probabilities": z.shape, "sorted_probabilities": z.shape}
        expected["top_k_probabilities"] = (*lead, 3)
        assert v.shape == expected.get(name, lead), name
    tol = {"rtol": 1e-4, "atol": 1e-5}
    np.testing.assert_allclose(out["probabilities"], p, **tol)
    np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.diff(out["sorted_probabilities"], axis=-1) <= 0)
    np.testing.assert_allclose(out["confidence"], p.max(-1), **tol)
    assert np.all(out["confidence"] >= 1 / c - 1e-6) and np.all(out["confidence"] <= 1)
    assert np.all(out["entropy"] >= 0) and np.all(out["entropy"] <= math.log(c) + 1e-5)
    np.testing.assert_allclose(out["loss"], -log_py, **tol)
    np.testing.assert_allclose(out["true_class_probability"], np.exp(log_py), **tol)
    assert np.all(out["modified_entropy"] >= 0)
    phi = log_py - np.log1p(-np.minimum(np.exp(log_py), 1 - 1e-12))
    finite_phi = np.exp(log_py) < 1 - 1e-4  # away from p = 1, where the float64 ref saturates
    np.testing.assert_allclose(
        out["logit_scaled_confidence"][finite_phi], phi[finite_phi], rtol=1e-3, atol=1e-3
    )
    assert np.array_equal(out["correctness"], np.asarray(z).argmax(-1) == y)


@pytest.mark.slow
@JIT
@given(logits_and_labels(shapes=[(6, 3)], dtypes=[np.float32]), st.integers(0, 5))
def test_signals_keep_nan_in_its_row(data, row):
    z, y = data
    bad = z.copy()
    bad[row, 0] = np.nan
    for name in signals.SIGNALS:
        clean, dirty = (np.asarray(signals.compute(name, a, y)) for a in (z, bad))
        others = np.arange(len(y)) != row
        np.testing.assert_array_equal(dirty[others], clean[others], err_msg=name)
        if name != "correctness":  # an argmax, 0 or 1 whatever the logits
            assert np.isnan(dirty[row]).all(), name


TRACED_SIGNALS = {name: jax.jit(getattr(signals, name)) for name in signals.SCALAR_SIGNALS}


@pytest.mark.slow
@JIT
@given(
    logits_and_labels(shapes=[(6, 3)], dtypes=[np.float32]),
    st.integers(3, 100) | st.integers(-100, -1),
    st.integers(0, 5),
)
def test_signals_reject_bad_labels(data, bad_label, row):
    z, y = data
    y_bad = y.copy()
    y_bad[row] = bad_label
    for name in signals.SIGNALS:
        if name in LABEL_FREE:  # the labels are not looked at
            assert np.isfinite(signals.compute(name, z, y_bad)).all()
            continue
        _raises(ValueError, r"labels must be in \[0, 3\)", signals.compute, name, z, y_bad)
        _raises(ValueError, "labels must be integers", signals.compute, name, z, y + 0.5)
        _raises(ValueError, "do not match logits", signals.compute, name, z, y[:-1])
        # Called directly on concrete labels, every label-taking signal checks them too
        _raises(ValueError, r"labels must be in \[0, 3\)", getattr(signals, name), z, y_bad)
        # Traced labels cannot be checked: an out-of-range label gives NaN (correctness:
        # 0), never another example's value.
        traced = np.asarray(TRACED_SIGNALS[name](z, y_bad))
        assert traced[row] == 0 if name == "correctness" else np.isnan(traced[row])


@JIT
@given(st.sampled_from([(), (4, 0), (2, 4, 0)]), st.sampled_from(signals.SIGNALS))
def test_signals_reject_logits_without_classes(shape, name):
    _raises(ValueError, "c >= 1", signals.compute, name, np.zeros(shape), np.zeros(4, int))


@JIT
@given(st.integers(-3, 6) | st.floats(-3, 6).filter(lambda k: k != int(k)))
def test_top_k_is_checked(k):
    z = np.zeros((4, 3), np.float32)
    if isinstance(k, int) and 1 <= k <= 3:
        assert signals.compute("top_k_probabilities", z, top_k=k).shape == (4, k)
    else:
        _raises(ValueError, r"k must be an integer in \[1, 3\]", signals.top_k_probabilities, z, k)


def test_signal_names_and_one_class():
    _raises(ValueError, "unknown signal", signals.compute, "lossy", np.zeros((2, 3)), [0, 1])
    _raises(ValueError, "needs labels", signals.compute, "loss", np.zeros((2, 3)))
    _raises(ValueError, "c >= 2", signals.logit_scaled_confidence, np.zeros((2, 1)), [0, 0])
    # One class: p_y = 1, so the loss is 0, as it should be.
    np.testing.assert_array_equal(signals.loss(np.zeros((2, 1)), np.zeros(2, int)), 0.0)


# --------------------------------------------------------------------------- threat models


@JIT
@given(logits_and_labels(shapes=[(6, 3)], dtypes=[np.float32]), st.sampled_from(("probs", "loss")))
def test_observe_equals_compute(data, access):
    z, y = data
    names = sorted(threat_models.PROVIDES[access])
    seen = threat_models.observe(z, y, access, names)
    assert list(seen) == names
    for name, v in seen.items():
        assert isinstance(v, np.ndarray)
        np.testing.assert_array_equal(v, signals.compute(name, z, y))
    assert list(threat_models.observe(z, y, access, names[0])) == [names[0]]  # one name


@FAST
@given(st.sampled_from(threat_models.ACCESS_LEVELS), st.sampled_from(signals.SIGNALS))
def test_observe_refuses_what_the_access_level_hides(access, name):
    z, y = np.zeros((2, 3), np.float32), np.array([0, 1])
    observe = threat_models.observe
    if name not in threat_models.PROVIDES[access]:
        _raises(threat_models.AccessError, "does not provide", observe, z, y, access, [name])
    elif name in LABEL_FREE:  # labels are not looked at
        assert np.isfinite(observe(z, y + 5, access, [name])[name]).all()
    else:
        _raises(ValueError, r"labels must be in \[0, 3\)", observe, z, y + 5, access, [name])
    _raises(threat_models.AccessError, "unknown access level", observe, z, y, "api", [name])


# --------------------------------------------------------------------------- splits

counts = st.integers(-3, 40)
not_integers = st.floats(-3, 40).filter(lambda v: v != int(v)) | st.just(4.0) | st.just("4")


@FAST
@given(st.integers(1, 8).map(lambda h: 2 * h), st.integers(2, 40), st.integers(0, 2**32 - 1))
def test_balanced_keep(k, n, seed):
    keep = splits.balanced_keep(k, n, seed=seed)
    assert keep.shape == (k, n) and keep.dtype == bool
    assert np.all(keep.sum(axis=0) == k // 2)
    assert np.array_equal(keep, splits.balanced_keep(k, n, seed=seed))


@FAST
@given(counts, counts, not_integers)
def test_balanced_keep_rejects_bad_sizes(k, n, bad):
    if k < 2 or k % 2 or n < 2:
        _raises(splits.SplitError, "balanced scheme needs", splits.balanced_keep, k, n)
    _raises(splits.SplitError, "must be an integer", splits.balanced_keep, bad, 4)
    _raises(splits.SplitError, "must be an integer", splits.balanced_keep, 2, bad)


@FAST
@given(
    st.integers(-1, 5),
    st.integers(-2, 30),
    st.integers(-1, 30),
    st.lists(st.integers(0, 29)),
    st.booleans(),
)
def test_disjoint_keep(k, n, size, excluded, as_mask):
    excluded = sorted({i for i in excluded if i < n})
    exclude = np.isin(np.arange(max(n, 0)), excluded) if as_mask else excluded
    available = max(n, 0) - len(excluded)
    if k < 1 or n < 0 or size < 1 or size >= available:
        with pytest.raises(splits.SplitError, match=r"shadow|examples"):
            splits.disjoint_keep(k, n, size=size, exclude=exclude)
        return
    keep = splits.disjoint_keep(k, n, size=size, exclude=exclude)
    assert keep.shape == (k, n) and keep.dtype == bool
    assert np.all(keep.sum(axis=1) == size)
    assert not keep[:, excluded].any()


@FAST
@given(st.integers(1, 10), st.sampled_from(["float", "mask", "range"]))
def test_disjoint_keep_rejects_bad_exclude(n, kind):
    exclude = {
        "float": np.array([0.5]),
        "mask": np.zeros(n + 1, bool),
        "range": [n],
    }[kind]
    _raises(splits.SplitError, "exclude", splits.disjoint_keep, 1, n, size=1, exclude=exclude)


@FAST
@given(
    st.integers(-2, 40),
    st.integers(0, 6),
    st.sampled_from(splits.SCHEMES),
    st.none() | st.integers(-1, 25) | st.just(2.5),
    st.none() | st.integers(-1, 25),
    st.integers(0, 1000),
)
@example(n=-2, k=2, scheme="balanced", target_size=None, shadow_size=None, seed=0)
@example(n=1, k=2, scheme="disjoint", target_size=None, shadow_size=None, seed=0)
@example(n=20, k=2, scheme="balanced", target_size=2.5, shadow_size=None, seed=0)
def test_make_split_is_consistent_or_refused(n, k, scheme, target_size, shadow_size, seed):
    try:
        s = splits.make_split(
            n, k, scheme=scheme, target_size=target_size, shadow_size=shadow_size, seed=seed
        )
    except splits.SplitError as e:
        assert str(e)  # a message, from a SplitError, not an IndexError from NumPy
        return
    assert s.scheme == scheme
    assert s.target_keep.shape == (n,) and s.target_keep.dtype == bool
    assert s.shadow_keep.shape == (k, n) and s.shadow_keep.dtype == bool
    assert s.shadow_pool.shape == (n,) and s.shadow_pool.dtype == bool
    assert np.array_equal(np.unique(s.candidates), s.candidates)
    assert np.array_equal(s.membership, s.target_keep[s.candidates])
    assert s.membership.any() and not s.membership.all()  # both classes to evaluate
    if target_size is not None:
        assert s.membership.sum() == target_size
    if scheme == "balanced":
        assert np.all(s.shadow_keep.sum(axis=0) == k // 2)
    else:
        assert np.all(s.shadow_keep.sum(axis=1) == (shadow_size or s.target_keep.sum()))
        assert not (s.shadow_keep & ~s.shadow_pool).any()
        assert not s.shadow_pool[s.candidates].any()  # shadows never see the candidates
        assert not s.target_keep[s.shadow_pool].any()


@FAST
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.integers(2, 12))
def test_grown_balanced_keep(steps, n):
    blocks = np.cumsum([2 * s for s in steps]).tolist()
    keep = splits.grown_balanced_keep(blocks, n, seed=3)
    assert keep.shape == (blocks[-1], n)
    assert np.all(keep.sum(axis=0) == blocks[-1] // 2)
    assert np.array_equal(keep[: blocks[0]], splits.balanced_keep(blocks[0], n, seed=3))
    if len(blocks) > 1:  # growing the pool never changes the models already there
        assert np.array_equal(
            keep[: blocks[-2]], splits.grown_balanced_keep(blocks[:-1], n, seed=3)
        )
    _raises(
        splits.SplitError, "blocks must increase", splits.grown_balanced_keep, [*blocks[::-1], 0], n
    )
    _raises(splits.SplitError, "at least one block", splits.grown_balanced_keep, [], n)


# --------------------------------------------------------------------------- threshold

# XLA flushes subnormals, so the float32 core maps them to 0
finite32 = st.floats(-1e6, 1e6, allow_infinity=False, width=32, allow_subnormal=False)
THRESHOLD_NAMES = ("loss", "confidence", "entropy", "modified_entropy")


@FAST
@given(
    st.sampled_from(THRESHOLD_NAMES),
    hnp.arrays(np.float32, (4, 6), elements=finite32),
    hnp.arrays(np.float32, 5, elements=finite32),
    st.integers(0, 100),
)
def test_threshold_attack(name, shadow_values, target_values, seed):
    attack = getattr(attacks, name)
    keep = splits.balanced_keep(4, 6, seed=seed)
    scores = np.asarray(attack(target_values))
    assert scores.shape == (5,) and scores.dtype == np.float32
    np.testing.assert_array_equal(scores, signals.MEMBER_SIGN[name] * target_values)
    oriented = np.asarray(attack(shadow_values))
    tau = attacks.calibrate_threshold(oriented, keep.astype(int))  # 0/1 keep accepted
    accuracy = lambda t: np.mean((oriented >= np.float32(t)) == keep)  # compared in float32
    assert accuracy(tau) == max(accuracy(t) for t in [*oriented.ravel(), np.inf])

    bad = oriented.copy()
    bad[seed % 4, seed % 4] = np.nan
    _raises(ValueError, "NaN", attacks.calibrate_threshold, bad, keep)
    _raises(ValueError, "NaN", attack, [np.nan])
    _raises(ValueError, "NaN", attack, target_values[:4], bad[:, :4], keep[:, :4])
    _raises(ValueError, "NaN", attack, target_values, bad[:, :5], keep[:, :5])
    _raises(ValueError, r"must be \(k, n\)", attacks.calibrate_threshold, oriented[0], keep[0])
    _raises(ValueError, "must have shape", attacks.calibrate_threshold, oriented, keep[:, :5])
    _raises(
        ValueError, "pool must be", attacks.calibrate_threshold, oriented, keep, pool=keep[0, :5]
    )
    _raises(ValueError, "0/1", attacks.calibrate_threshold, oriented, keep * 2)
    _raises(
        ValueError,
        "both members and non-members",
        attacks.calibrate_threshold,
        oriented,
        keep | True,
    )
    _raises(ValueError, "shadow statistics", attack, target_values, shadow_values, keep)


# --------------------------------------------------------------------------- LiRA

K, M = 4, 6
phis = hnp.arrays(np.float32, (K, M), elements=small)
LIRA = {True: attacks.lira_online, False: attacks.lira_offline}


@pytest.mark.slow
@JIT
@given(
    hnp.arrays(np.float32, M, elements=small),
    phis,
    st.integers(0, 100),
    st.sampled_from(
        [(True, "per_example"), (True, "global"), (False, "per_example"), (False, "global")]
    ),
)
def test_lira_scores_are_finite(target, shadow_phi, seed, variant):
    online, variance = variant
    keep = splits.balanced_keep(K, M, seed=seed)
    s = np.asarray(LIRA[online](target, shadow_phi, keep, variance=variance))
    assert s.shape == (M,) and s.dtype == np.float32 and np.isfinite(s).all()
    s2 = LIRA[online](target[:, None], shadow_phi[..., None], keep, variance=variance)
    np.testing.assert_allclose(s2, s, rtol=1e-6)  # (m,) is (m, 1)
    s3 = LIRA[online](target, shadow_phi, keep.astype(np.int32), variance=variance)
    np.testing.assert_array_equal(s3, s)  # 0/1 integers are bool


@JIT
@given(
    hnp.arrays(np.float32, M, elements=small),
    phis,
    st.integers(0, M - 1),
    st.sampled_from([np.nan, np.inf, -np.inf]),
    st.booleans(),
)
def test_lira_rejects_non_finite_and_mismatched_inputs(target, shadow_phi, i, bad, in_target):
    keep = splits.balanced_keep(K, M, seed=i)
    bad_target, bad_shadow = target.copy(), shadow_phi.copy()
    if in_target:
        bad_target[i] = bad
    else:
        bad_shadow[i % K, i] = bad
    lira = attacks.lira_online
    _raises(attacks.LiRAError, "NaN or infinite", lira, bad_target, bad_shadow, keep)
    _raises(attacks.LiRAError, "does not match", lira, target[:-1], shadow_phi, keep)
    _raises(attacks.LiRAError, "does not match", lira, np.stack([target] * 2, 1), shadow_phi, keep)
    _raises(attacks.LiRAError, "must", lira, target, shadow_phi, keep[:, :-1])
    _raises(attacks.LiRAError, "must be", lira, target, shadow_phi[0], keep[0])
    _raises(attacks.LiRAError, "0/1", lira, target, shadow_phi, keep * 3)
    _raises(attacks.LiRAError, "0/1", lira, target, shadow_phi, keep * 0.5)
    _raises(attacks.LiRAError, "variance must be", lira, target, shadow_phi, keep, variance="x")
    # Two models, one per side: too few for per-example variances, and none IN offline.
    _raises(
        attacks.LiRAError,
        "at least 2 OUT",
        lira,
        target,
        shadow_phi[:2],
        keep[:2],
        variance="per_example",
    )
    no_in = np.zeros_like(keep)
    _raises(attacks.LiRAError, "IN model", lira, target, shadow_phi, no_in, variance="global")
    assert lira(target[:0], shadow_phi[:, :0], keep[:, :0]).shape == (0,)


# --------------------------------------------------------------------------- RMIA

log_probs = st.floats(-30, 0, width=32, allow_subnormal=False)  # XLA flushes subnormals


def _rmia(lx, lz, rx, kx, rz, kz, *, online=True, a=0.3, gamma=2.0):
    """RMIA through the public protocol: Attack-P when there is no reference model."""
    if rx is None:
        return attacks.attack_p(lx, target_log_p_z=lz, gamma=gamma)
    kw = dict(target_log_p_z=lz, ref_log_p_z=rz, keep_z=kz, gamma=gamma)
    if online:
        return attacks.rmia_online(lx, rx, kx, **kw)
    return attacks.rmia_offline(lx, rx, kx, a=a, **kw)


@FAST
@given(
    hnp.arrays(np.float32, M, elements=log_probs),
    hnp.arrays(np.float32, 5, elements=log_probs),
    hnp.arrays(np.float32, (K, M), elements=log_probs),
    hnp.arrays(np.float32, (K, 5), elements=log_probs),
    st.integers(0, 100),
    st.booleans(),
    st.floats(0, 1),
)
def test_rmia_scores(lx, lz, rx, rz, seed, online, a):
    kx, kz = splits.balanced_keep(K, M, seed=seed), splits.balanced_keep(K, 5, seed=seed + 1)
    for s in (
        _rmia(lx, lz, None, None, None, None),
        _rmia(lx, lz, rx, kx, rz, kz, online=online, a=a),
    ):
        s = np.asarray(s)
        assert s.shape == (M,) and s.dtype == np.float32
        assert np.all(s >= 0) and np.all(s < 1 + 1 / 5)
    # Attack-P ranks the candidates by their log-probability.
    s = np.asarray(_rmia(lx, lz, None, None, None, None))
    higher = lx[:, None] > lx[None]
    assert np.all(s[:, None] > s[None], where=higher)
    # Integer 0/1 keep matrices mean the same as bool ones.
    np.testing.assert_array_equal(
        _rmia(lx, lz, rx, kx.astype(int), rz, kz.astype(int), online=False),
        _rmia(lx, lz, rx, kx, rz, kz, online=False),
    )


@FAST
@given(st.integers(0, M - 1), st.sampled_from([np.nan, np.inf, -np.inf]), st.integers(0, 3))
def test_rmia_rejects_invalid_inputs(i, bad, where):
    lx, lz = np.full(M, -1.0), np.full(5, -2.0)
    rx, rz = np.full((K, M), -1.5), np.full((K, 5), -1.5)
    kx, kz = splits.balanced_keep(K, M), splits.balanced_keep(K, 5)
    args = [lx, lz, rx, kx, rz, kz]
    name = ["target_log_p", "target_log_p_z", "ref_log_p", "ref_log_p_z"][where]
    j = [0, 1, 2, 4][where]
    args[j] = args[j].copy()
    args[j].reshape(-1)[i % args[j].size] = bad
    _raises(ValueError, f"{name} has 1 NaN or infinite", _rmia, *args)
    _raises(ValueError, "at least one population record", _rmia, lx, lz[:0], None, None, None, None)
    _raises(ValueError, "1-D", _rmia, rx, lz, None, None, None, None)
    _raises(ValueError, "reference arrays must be", _rmia, lx, lz, rx[:, :-1], kx, rz, kz)
    _raises(ValueError, "reference arrays must be", _rmia, lx, lz, rx[:2], kx[:2], rz, kz)
    _raises(ValueError, "reference arrays must be", _rmia, lx, lz, rx[:0], kx[:0], rz[:0], kz[:0])
    _raises(ValueError, "OUT reference model", _rmia, lx, lz, rx, kx | True, rz, kz, online=False)
    _raises(ValueError, "0/1", _rmia, lx, lz, rx, kx * 2, rz, kz)
    _raises(ValueError, "keep_z must have shape", _rmia, lx, lz, rx, kx, rz, kz[:, :2])
    kz_one_in = kz.copy()
    kz_one_in[:, 2] = True  # one population record is a member of every reference model
    _raises(ValueError, "1 population record", _rmia, lx, lz, rx, kx, rz, kz_one_in, online=False)
    _rmia(lx, lz, rx, kx, rz, kz_one_in, online=True)  # online uses IN models too
    _raises(ValueError, "a must lie in", _rmia, lx, lz, rx, kx, rz, kz, online=False, a=1.5)
    _raises(ValueError, "gamma must be > 0", _rmia, lx, lz, None, None, None, None, gamma=np.nan)
    assert _rmia(lx[:0], lz, None, None, None, None).shape == (0,)


# --------------------------------------------------------------------------- perturbation


@st.composite
def probability_rows(draw, shapes=((5, 3), (2, 5, 3))):
    z = draw(hnp.arrays(np.float32, draw(st.sampled_from(shapes)), elements=small))
    return np.asarray(signals.probabilities(z))


@pytest.mark.slow
@JIT
@given(probability_rows(), st.integers(1, 3), st.integers(0, 4), st.floats(0, 1), st.integers(0, 9))
def test_perturbations(p, k, decimals, sigma, seed):
    top = np.asarray(perturbation.top_k_only(p, k))
    assert top.shape == p.shape and top.dtype == np.float32
    assert np.all((top == 0) | (top == p))
    assert np.all(np.sort(top, -1)[..., -k:] == np.sort(p, -1)[..., -k:])
    rounded = np.asarray(perturbation.round_probs(p, decimals))
    np.testing.assert_allclose(rounded, np.round(p, decimals), atol=1e-6)
    noisy = np.asarray(perturbation.gaussian_noise(p, sigma, jax.random.key(seed)))
    assert noisy.shape == p.shape and np.isfinite(noisy).all()
    assert np.all(noisy >= 0) and np.all(noisy <= 1)
    np.testing.assert_allclose(noisy.sum(-1), 1.0, rtol=1e-5)
    onehot = np.asarray(perturbation.label_only(p))
    assert np.array_equal(onehot.argmax(-1), p.argmax(-1)) and np.all(onehot.sum(-1) == 1)
    for kind in perturbation.KINDS:
        defence = perturbation.Perturbation(kind, k=k, decimals=decimals, sigma=sigma)
        seen = defence.apply(p, jax.random.key(seed))
        assert seen.shape == p.shape
        assert perturbation.access_level(defence) in threat_models.ACCESS_LEVELS


@JIT
@given(
    probability_rows(shapes=((5, 3),)), st.integers(0, 4), st.integers(4, 9) | st.integers(-3, 0)
)
def test_perturbations_reject_invalid_inputs(p, row, bad_k):
    p = p.copy()
    p[row, 0] = np.nan  # a NaN row stays NaN: never a plausible uniform vector
    noisy = np.asarray(perturbation.gaussian_noise(p, 0.1, jax.random.key(0)))
    assert np.isnan(noisy[row]).all() and np.isfinite(np.delete(noisy, row, 0)).all()
    _raises(ValueError, "k must be", perturbation.top_k_only, p, bad_k)
    for fn in (
        lambda q: perturbation.top_k_only(q, 1),
        lambda q: perturbation.round_probs(q, 1),
        lambda q: perturbation.gaussian_noise(q, 0.1, jax.random.key(0)),
        perturbation.label_only,
    ):
        _raises(ValueError, "c >= 1", fn, p[:, :0])
        _raises(ValueError, "c >= 1", fn, p[0, 0])
    _raises(ValueError, "sigma must be", perturbation.Perturbation, "noise", sigma=-0.1 * (row + 1))


# --------------------------------------------------------------------------- label-only, Shokri


@JIT
@given(
    hnp.arrays(np.int32, (4, 5), elements=st.integers(0, 2)),
    hnp.arrays(np.int32, 5, elements=st.integers(0, 2)),
    st.sampled_from([math.inf, -1, 1.5]),
)
def test_label_only_scores_and_checks(pred, y, bad_shift):
    correct = (pred == y).T  # (m=5, q=4)
    s = np.asarray(attacks.label_only(correct))
    assert s.shape == (5,)
    np.testing.assert_allclose(s, (pred == y).mean(0), rtol=1e-6)
    np.testing.assert_array_equal(attacks.label_only(correct.astype(np.int8)), s)
    _raises(ValueError, "q >= 1", attacks.label_only, correct[:, :0])
    _raises(ValueError, "0/1", attacks.label_only, pred.T + 2)  # labels, not answers
    images = np.zeros((2, 3, 3, 1), np.float32)
    _raises(
        ValueError,
        "whole number of pixels",
        attacks.perturb_inputs,
        images,
        jax.random.key(0),
        n_queries=2,
        kind="shift",
        strength=bad_shift,
    )


@FAST
@given(hnp.arrays(np.int64, 4, elements=st.integers(-3, 6)))
def test_shokri_features_check_labels(labels):
    sig = {"loss": np.ones((2, 4), np.float32)}
    if labels.min() < 0 or labels.max() >= 3:
        _raises(
            ValueError,
            r"labels must be in \[0, 3\)",
            classifier.feature_matrix,
            sig,
            ["loss"],
            labels,
            3,
        )
    else:
        x = classifier.feature_matrix(sig, ["loss"], labels, 3)
        assert x.shape == (2, 4, 4)
        np.testing.assert_array_equal(x[..., 1:].argmax(-1), np.broadcast_to(labels, (2, 4)))


# --------------------------------------------------------------------------- datasets

X_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.uint8, np.bool_]
Y_DTYPES = [np.int64, np.int32, np.uint8, np.float64, np.bool_]


@st.composite
def npz_contents(draw):
    """Arrays ``x`` and ``y`` as a user might save them, often broken in one way."""
    n = draw(st.integers(0, 6))
    n_y = draw(st.sampled_from([n, n, n, max(n - 1, 0), n + 1]))
    feature_shape = draw(st.sampled_from([(), (3,), (2, 2), (0,)]))
    x_dtype = draw(st.sampled_from(X_DTYPES))
    x = draw(hnp.arrays(x_dtype, (n, *feature_shape)))  # NaN, inf, extremes included
    y_dtype = draw(st.sampled_from(Y_DTYPES))
    if y_dtype == np.float64:
        y = draw(hnp.arrays(y_dtype, n_y, elements=st.sampled_from([0.0, 1.0, 2.0, 0.5, np.nan])))
    else:
        y = draw(hnp.arrays(y_dtype, n_y))
    return x, y


def _expected_error(x, y) -> str | None:
    """Why :func:`datasets.load` must refuse ``x`` and ``y`` (``None`` if it must not)."""
    if len(x) != len(y):
        return "mismatched lengths"
    if len(x) == 0:
        return "empty dataset"
    if x.ndim > 1 and x[0].size == 0:
        return "no features"
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        return "NaN or infinite"
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and np.all(y == np.round(y))):
        return "labels are not integers"
    if len(np.unique(y)) < 2:
        return "at least 2 classes"
    if x.ndim > 2 and x.dtype == np.float64 and np.abs(x).max() > np.finfo(np.float32).max:
        return "overflow float32"  # images are not standardised, only cast
    return None


@FAST
@given(npz_contents())
def test_load_npz_accepts_or_refuses_clearly(contents):
    x, y = contents
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "data.npz"
        np.savez(path, x=x, y=y)
        expected = _expected_error(x, y)
        if expected is not None:
            _raises(datasets.DatasetError, expected, datasets.load, path)
            return
        ds = datasets.load(path)
    assert ds.x.dtype == np.float32 and np.isfinite(ds.x).all()
    assert ds.x.shape == (len(y), *(x.shape[1:] or (1,)))
    assert ds.y.dtype == np.int32 and ds.y.shape == (len(y),)
    assert ds.num_classes == len(np.unique(y)) >= 2
    assert ds.y.min() == 0 and ds.y.max() == ds.num_classes - 1
    # The label remap keeps the order of the original labels.
    assert np.array_equal(np.argsort(ds.y, kind="stable"), np.argsort(y, kind="stable"))
    if x.ndim <= 2:  # tables: columns in [0, 1] are kept, the others standardised
        cols = x.reshape(len(x), -1).astype(np.float64)
        out = ds.x.reshape(len(x), -1)
        for j in range(cols.shape[1]):
            if cols[:, j].min() >= 0 and cols[:, j].max() <= 1:
                np.testing.assert_array_equal(out[:, j], cols[:, j].astype(np.float32))
            elif np.ptp(cols[:, j]) > 1e-200:  # varies (well above the subnormal range)
                assert abs(out[:, j].mean()) < 1e-3 and abs(out[:, j].std() - 1) < 1e-3


@FAST
@given(st.binary(max_size=64) | st.integers(0, 200), st.sampled_from(["x", "y", "z"]))
def test_load_npz_refuses_broken_files(content, name):
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "data.npz"
        if isinstance(content, int):  # a valid archive cut short
            np.savez(path, **{name: np.arange(40)})
            path.write_bytes(path.read_bytes()[:content])
        else:
            path.write_bytes(content)
        _raises(datasets.DatasetError, "cannot read|not an .npz|no array", datasets.load, path)


# --------------------------------------------------------------------------- shadow engine

N_TRAIN, D, C = 8, 3, 3
FACTORY = models.mlp((4,), C, D)
TX = engine.adam(1e-2)  # one factory and one optimizer: compiled functions are reused


def _train(x, y, keep, **kwargs):
    kwargs = {"epochs": 1, "batch_size": N_TRAIN, "optimizer": TX, **kwargs}
    return engine.train(FACTORY, x, y, keep, **kwargs)


train_x = hnp.arrays(np.float32, (N_TRAIN, D), elements=st.floats(-3, 3, width=32))


@st.composite
def keep_matrices(draw):
    k = draw(st.sampled_from([1, 2]))
    keep = draw(hnp.arrays(bool, (k, N_TRAIN)))
    keep[np.arange(k), draw(st.integers(0, N_TRAIN - 1))] = True  # no empty row
    return keep


@pytest.mark.slow
@TRAIN
@given(
    train_x,
    hnp.arrays(np.int32, N_TRAIN, elements=st.integers(0, C - 1)) | st.just(np.zeros(N_TRAIN, int)),
    keep_matrices(),
    st.sampled_from([0, 1]),
)
def test_train_returns_a_consistent_pool(x, y, keep, epochs):
    pool = _train(x, y, keep[0] if len(keep) == 1 else keep, epochs=epochs)
    k = len(keep)
    assert pool.k == k and np.array_equal(pool.keep, keep)
    assert pool.losses.shape == (epochs, k) and np.isfinite(pool.losses).all()
    assert pool.logits.shape == (k, N_TRAIN, C) and np.isfinite(pool.logits).all()
    assert np.all((pool.train_accuracy >= 0) & (pool.train_accuracy <= 1))
    held = (~keep).any(axis=1)
    assert np.all(np.isnan(pool.test_accuracy) == ~held)
    np.testing.assert_allclose(engine.predict(pool, x), pool.logits, rtol=1e-5, atol=1e-6)


@st.composite
def broken_training_inputs(draw):
    """``(x, y, keep, kwargs, message)``: valid inputs with one defect."""
    x = draw(train_x)
    y = draw(hnp.arrays(np.int64, N_TRAIN, elements=st.integers(0, C - 1)))
    keep = np.ones((2, N_TRAIN), bool)
    keep[0, 0] = False
    i = draw(st.integers(0, N_TRAIN - 1))
    kind = draw(
        st.sampled_from(
            [
                "nan x",
                "huge x",
                "label too big",
                "negative label",
                "float labels",
                "keep dtype",
                "keep shape",
                "empty row",
                "no models",
                "features",
                "epochs",
                "batch size",
                "labels 2-D",
            ]
        )
    )
    kwargs = {}
    if kind == "nan x":
        x[i, i % D] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return x, y, keep, kwargs, "NaN or infinite"
    if kind == "huge x":  # finite in float64, not in float32
        x = x.astype(np.float64)
        x[i, i % D] = 1e300
        return x, y, keep, kwargs, "NaN or infinite"
    if kind == "label too big":
        y[i] = draw(st.integers(C, 100))
        return x, y, keep, kwargs, f"labels must be < {C}"
    if kind == "negative label":
        y[i] = draw(st.integers(-100, -1))
        return x, y, keep, kwargs, "labels must be >= 0"
    if kind == "float labels":
        return x, y.astype(np.float64), keep, kwargs, "labels must be integers"
    if kind == "keep dtype":  # 0/1 integers are a keep matrix (issue 12); 0/2 or floats not
        bad = draw(st.sampled_from([keep.astype(np.int64) * 2, keep.astype(np.float32)]))
        return x, y, bad, kwargs, "bools or 0/1 integers"
    if kind == "keep shape":
        keep = draw(st.sampled_from([keep[:, 1:], keep[None], np.ones((2, N_TRAIN + 1), bool)]))
        return x, y, keep, kwargs, "keep|mismatched lengths"
    if kind == "empty row":
        keep[draw(st.integers(0, 1))] = False
        return x, y, keep, kwargs, "no training examples"
    if kind == "no models":
        return x, y, keep[:0], kwargs, "no rows"
    if kind == "features":
        x = draw(st.sampled_from([x[:, :2], np.ones((N_TRAIN, D + 1), np.float32), x[:, 0]]))
        return x, y, keep, kwargs, "does not take inputs shaped"
    if kind == "epochs":
        kwargs["epochs"] = draw(st.integers(-5, -1) | st.just(1.5) | st.just(2.0))
        return x, y, keep, kwargs, "epochs >= 0"
    if kind == "batch size":
        kwargs["batch_size"] = draw(st.integers(-5, 0) | st.just(2.5))
        return x, y, keep, kwargs, "batch_size >= 1"
    return x, y[:, None], keep, kwargs, "y shaped"


@_settings(40)
@given(broken_training_inputs())
def test_train_refuses_broken_inputs_before_writing(data):
    x, y, keep, kwargs, pattern = data
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = pathlib.Path(tmp) / "pool"
        _raises(ValueError, pattern, _train, x, y, keep, checkpoint=checkpoint, **kwargs)
        assert not checkpoint.exists()  # nothing half-written
