"""Label-only attack (jaxmia/attacks/robustness.py): perturbed queries, correctness scores,
an overfit target and a control."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmia import models, splits
from jaxmia._src import attacks, datasets, engine, metrics
from jaxmia._src.attacks import robustness

# --------------------------------------------------------------------------- perturbations


def test_perturb_inputs_binary_flips_at_rate():
    x = (np.random.default_rng(0).random((400, 50)) < 0.3).astype(np.float32)
    out = np.asarray(attacks.perturb_inputs(x, jax.random.key(0), n_queries=5, strength=0.1))
    assert out.shape == (5, 400, 50)
    np.testing.assert_array_equal(out[0], x)
    assert set(np.unique(out)) <= {0.0, 1.0}
    rate = np.mean(out[1:] != x)
    assert abs(rate - 0.1) < 0.005  # 80,000 Bernoulli(0.1) draws: std ~0.001
    assert not np.array_equal(out[1], out[2])  # copies differ
    again = attacks.perturb_inputs(x, jax.random.key(0), n_queries=5, strength=0.1)
    np.testing.assert_array_equal(out, again)
    longer = attacks.perturb_inputs(x, jax.random.key(0), n_queries=7, strength=0.1)
    np.testing.assert_array_equal(out, np.asarray(longer)[:5])  # more queries extend
    other = attacks.perturb_inputs(x, jax.random.key(1), n_queries=5, strength=0.1)
    assert not np.array_equal(out[1:], np.asarray(other)[1:])


def test_perturb_inputs_gaussian():
    x = np.random.default_rng(1).standard_normal((300, 20)).astype(np.float32)
    assert robustness.resolve_kind("auto", x) == "gaussian"
    out = np.asarray(attacks.perturb_inputs(x, jax.random.key(0), n_queries=4, strength=0.3))
    assert out.shape == (4, 300, 20)
    np.testing.assert_array_equal(out[0], x)
    assert np.std(out[1:] - x) == pytest.approx(0.3, rel=0.03)
    assert abs(np.mean(out[1:] - x)) < 0.01


def test_perturb_inputs_images():
    x = np.random.default_rng(2).random((64, 8, 8, 1)).astype(np.float32)
    assert robustness.resolve_kind("auto", x) == "image"
    out = np.asarray(attacks.perturb_inputs(x, jax.random.key(0), n_queries=3, kind="shift"))
    assert out.shape == (3, 64, 8, 8, 1)
    np.testing.assert_array_equal(out[0], x)
    # Every copy is the image shifted by (dy, dx) in [-1, 1]^2, zero-padded.
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    shifts = [padded[:, 1 - dy : 9 - dy, 1 - dx : 9 - dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    for img, copy in enumerate(out[1:].reshape(-1, 8, 8, 1)):
        assert any(np.array_equal(copy, s[img % 64]) for s in shifts)
    mirrored = np.asarray(
        attacks.perturb_inputs(x, jax.random.key(0), n_queries=2, kind="image", strength=0)
    )
    flipped = [np.array_equal(m, xi[:, ::-1]) for m, xi in zip(mirrored[1], x, strict=True)]
    kept = [np.array_equal(m, xi) for m, xi in zip(mirrored[1], x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_queries": 0}, "n_queries must be an integer >= 1"),
        ({"n_queries": 2, "kind": "blur"}, "unknown perturbation kind"),
        ({"n_queries": 2, "strength": 1.5}, r"bit-flip probability must be in \[0, 1\]"),
        ({"n_queries": 2, "kind": "shift"}, "perturbs images"),
    ],
)
def test_perturb_inputs_validation(kwargs, match):
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=match):
        attacks.perturb_inputs(x, jax.random.key(0), **kwargs)


def test_label_only_scores_hand_example():
    correct = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 0], [1, 0, 1]])  # (m=4, q=3), 0/1 ints
    want = [1, 2 / 3, 1 / 3, 2 / 3]
    np.testing.assert_allclose(attacks.label_only(correct), want, rtol=1e-6)
    np.testing.assert_allclose(attacks.label_only(correct.astype(bool)), want, rtol=1e-6)
    pool = np.stack([correct, np.zeros_like(correct)])  # (k=2, m, q)
    np.testing.assert_allclose(attacks.label_only(pool), [want, [0, 0, 0, 0]], rtol=1e-6)
    keep = np.array([[1, 0, 1, 0], [0, 1, 0, 1]])
    np.testing.assert_allclose(attacks.label_only(correct, pool, keep), want, rtol=1e-6)
    # tau on the shadows' scores: model 0's members score 1 and 1/3, non-members 2/3
    tau = attacks.calibrate_threshold(attacks.label_only(pool), keep)
    assert tau == pytest.approx(1.0)  # accuracy 5/8 (only the 1 is called a member)
    with pytest.raises(ValueError, match="q >= 1"):
        attacks.label_only(correct[:, :0])
    with pytest.raises(ValueError, match="bool or 0/1"):
        attacks.label_only(correct * 2)
    with pytest.raises(ValueError, match="bool or 0/1"):
        attacks.label_only(correct, pool, keep * 0.5)
    with pytest.raises(ValueError, match="must have shape"):
        attacks.label_only(correct, pool[:, :3], keep)


def test_query_correctness_hand_example():
    x = np.eye(4, dtype=np.float32)
    y = np.array([0, 1, 2, 0])
    logits = lambda v: v * 10.0  # predicts argmax(v): right on rows 0-2, wrong on row 3
    got = attacks.query_correctness(logits, x, y, n_queries=1)
    np.testing.assert_array_equal(got, [[True], [True], [True], [False]])
    labels = lambda v: np.asarray(v.argmax(-1))  # a label-only interface
    rows = np.array([3, 1])
    got = attacks.query_correctness(labels, x, y, rows=rows, n_queries=3, strength=0.0)
    np.testing.assert_array_equal(got, [[False] * 3, [True] * 3])  # flips with rate 0
    pool = lambda v: np.stack([v * 10.0, -v * 10.0])  # (k=2, r, c)
    got = attacks.query_correctness(pool, x, y, n_queries=2, strength=0.0)
    assert got.shape == (2, 4, 2) and got[0, :3].all() and not got[1, :3].any()
    # an example's copies do not depend on which rows are queried
    xr = np.random.default_rng(0).standard_normal((50, 6)).astype(np.float32)
    yr = np.arange(50) % 6
    f = lambda v: np.asarray(v)
    full = attacks.query_correctness(f, xr, yr, n_queries=4, kind="gaussian", strength=1.0)
    part = attacks.query_correctness(
        f, xr, yr, rows=np.arange(50) % 3 == 0, n_queries=4, kind="gaussian", strength=1.0
    )
    np.testing.assert_array_equal(part, full[::3])
    with pytest.raises(ValueError, match="must return outputs"):
        attacks.query_correctness(lambda v: v[:, 0], x, y, n_queries=1)
    with pytest.raises(ValueError, match="row indices"):
        attacks.query_correctness(logits, x, y, rows=[7], n_queries=1)


def _flips_by_jax_random(x, key, i, rate):
    """Copy ``i`` of :func:`perturb_inputs` as ``jax.random.bernoulli`` draws it."""
    k = jax.random.fold_in(key, i)
    return np.asarray(jnp.where(jax.random.bernoulli(k, jnp.float32(rate), x.shape), 1 - x, x))


@pytest.mark.parametrize("shape", [(1, 1), (37, 446), (40, 5, 5, 2)])
def test_bit_flips_are_jax_randoms_bits_also_for_some_rows(shape):
    """The written-out Threefry draws exactly ``jax.random.bernoulli``'s flips, for all
    rows or only some (their bits do not depend on which rows are drawn)."""
    rng = np.random.default_rng(len(shape))
    x = (rng.random(shape) < 0.3).astype(np.float32)
    rows = np.sort(rng.choice(shape[0], max(1, shape[0] // 3), replace=False))
    for rate in (0.0, 0.02, 0.5):
        key = jax.random.key(3)
        whole = list(robustness._copies(x, key, 4, "flip", rate))
        part = list(robustness._copies(x, key, 4, "flip", rate, rows))
        for i in range(1, 4):
            want = _flips_by_jax_random(x, key, i, rate)
            np.testing.assert_array_equal(whole[i], want)
            np.testing.assert_array_equal(part[i], want[rows])


def test_other_random_number_generators_draw_through_jax_random():
    """Keys of another generator, or Threefry without ``jax_threefry_partitionable``, are
    drawn by ``jax.random`` itself (the written-out hash would give other bits)."""
    x = (np.random.default_rng(5).random((30, 7)) < 0.3).astype(np.float32)
    rows = np.array([2, 9, 29])
    for key in (jax.random.key(1, impl="rbg"), jax.random.key(1)):
        with jax.threefry_partitionable(str(jax.random.key_impl(key)) == "rbg"):
            assert not robustness._partitionable_threefry(key)
            part = list(robustness._copies(x, key, 3, "flip", 0.3, rows))
            np.testing.assert_array_equal(part[2], _flips_by_jax_random(x, key, 2, 0.3)[rows])


def test_threefry_and_flat_indices_beyond_32_bits():
    """The hash equals JAX's threefry primitive on any counters, and the flat indices of
    rows past 2**32 elements carry into the high half."""
    rng = np.random.default_rng(0)
    k1, k2, hi, lo = (
        jnp.asarray(rng.integers(0, 2**32, 64, dtype=np.uint64), jnp.uint32) for _ in range(4)
    )
    want = jax.extend.random.threefry2x32_p.bind(k1, k2, hi, lo)
    got = robustness._threefry2x32(k1, k2, hi, lo)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    rows, d = np.array([0, 9_630_000, 2**26 + 3]), 446  # row * d crosses 2**32
    start_hi, start_lo = robustness._row_starts(rows, d)
    h, lo_ = (np.asarray(a, np.uint64) for a in robustness._flat_halves(start_hi, start_lo, d))
    flat = (h << np.uint64(32)) | lo_
    want_flat = rows[:, None].astype(np.uint64) * np.uint64(d) + np.arange(d, dtype=np.uint64)
    np.testing.assert_array_equal(flat, want_flat)
    assert h.max() >= 1


def test_query_correctness_many_is_one_call_per_model():
    """Several models, each on its rows (indices, negative ones, a mask, all): the answers
    of one :func:`query_correctness` call each, with the copies drawn once."""
    rng = np.random.default_rng(1)
    x = (rng.random((60, 12)) < 0.5).astype(np.float32)
    y = rng.integers(0, 3, 60)
    w = rng.normal(size=(12, 3)).astype(np.float32)
    one = lambda v: np.asarray(v) @ w
    pool = lambda v: np.stack([np.asarray(v) @ w, -(np.asarray(v) @ w)])
    rows = [np.array([5, 1, 5, -1]), np.arange(60) % 4 == 0, None]
    kw = dict(n_queries=5, strength=0.2, seed=4)
    for predicts in ([one, pool, one], [pool, one, pool]):
        got = attacks.query_correctness_many(predicts, x, y, rows=rows, **kw)
        for g, predict, r in zip(got, predicts, rows, strict=True):
            np.testing.assert_array_equal(g, attacks.query_correctness(predict, x, y, rows=r, **kw))
    with pytest.raises(ValueError, match="one row selection per model"):
        attacks.query_correctness_many([one], x, y, rows=[None, None])


# --------------------------------------------------------------------------- end to end


class Overfit(NamedTuple):
    """Location-30: a target trained on half the data and 4 balanced shadow models."""

    ds: datasets.Dataset
    target: engine.Pool
    target_keep: np.ndarray
    pool: engine.Pool


@pytest.fixture(scope="module")
def overfit(location) -> Overfit:
    ds = location
    n = ds.n
    factory = models.mlp((128,), ds.num_classes, ds.x.shape[1])
    target_keep = np.zeros(n, bool)
    target_keep[np.random.default_rng(0).permutation(n)[: n // 2]] = True
    target = engine.train(factory, ds.x, ds.y, target_keep, epochs=40, seed=1)
    shadow_keep = splits.balanced_keep(4, n, seed=2)
    pool = engine.train(factory, ds.x, ds.y, shadow_keep, epochs=40, seed=3)
    assert target.train_accuracy[0] > 0.99 and target.test_accuracy[0] < 0.75  # overfit
    return Overfit(ds, target, target_keep, pool)


def _label_only(target_predict, pool_predict, ds, keep, candidates, n_queries):
    """Scores and the threshold calibrated on the pool, through the public protocol."""
    kw = dict(n_queries=n_queries)
    target = attacks.query_correctness(target_predict, ds.x, ds.y, rows=candidates, **kw)
    shadow = attacks.query_correctness(pool_predict, ds.x, ds.y, **kw)
    tau = attacks.calibrate_threshold(attacks.label_only(shadow), keep)
    return np.asarray(attacks.label_only(target), np.float64), tau


@pytest.mark.slow
def test_label_only_attack_on_overfit_target(overfit):
    predict_target = lambda x: engine.predict(overfit.target, x)[0]
    predict_labels = lambda x: engine.predict(overfit.target, x)[0].argmax(-1)  # a label-only API
    predict_pool = lambda x: engine.predict(overfit.pool, x)
    candidates = np.arange(overfit.ds.n)
    args = (
        overfit.ds,
        overfit.pool.keep.astype(int),
        candidates,
    )  # keep as 0/1 integers is accepted
    scores, tau = _label_only(predict_target, predict_pool, *args, n_queries=16)
    assert scores.shape == (overfit.ds.n,)
    np.testing.assert_allclose(scores * 16, np.round(scores * 16), atol=1e-5)
    auc = metrics.auc(overfit.target_keep, scores)
    assert auc > 0.72  # measured 0.806
    assert 0 < tau <= 1
    assert metrics.threshold_metrics(overfit.target_keep, scores, tau)["accuracy"] > 0.7  # 0.781
    same, _ = _label_only(predict_labels, predict_pool, *args, n_queries=16)
    np.testing.assert_array_equal(same, scores)
    # The perturbed queries add to the plain gap attack (q = 1, measured AUC 0.670).
    gap, _ = _label_only(predict_target, predict_pool, *args, n_queries=1)
    assert set(np.unique(gap)) <= {0.0, 1.0}
    assert auc > metrics.auc(overfit.target_keep, gap) + 0.05


@pytest.mark.slow
def test_label_only_attack_control_is_chance(overfit):
    """Candidates the target never saw, half of them labelled "member" at random."""
    candidates = np.flatnonzero(~overfit.target_keep)
    fake = np.random.default_rng(4).random(candidates.size) < 0.5
    scores, _ = _label_only(
        lambda x: engine.predict(overfit.target, x)[0],
        lambda x: engine.predict(overfit.pool, x),
        overfit.ds,
        overfit.pool.keep,
        candidates,
        n_queries=16,
    )
    assert abs(metrics.auc(fake, scores) - 0.5) < 0.05


def test_shift_offsets_cover_the_whole_range_both_ways():
    # one lit pixel per 8x8 image (the shape and shift of test_perturb_inputs_images, so
    # nothing new compiles): where it lands is the copy's offset, every (dy, dx) in
    # [-1, 1]^2 (+1 included, both axes drawn apart)
    x = np.zeros((64, 8, 8, 1), np.float32)
    x[:, 4, 4] = 1.0
    copies = np.asarray(attacks.perturb_inputs(x, jax.random.key(0), n_queries=4, kind="shift"))
    flat = copies[1:].reshape(-1, 64)  # 3 x 64 perturbed copies, the originals dropped
    assert (flat.max(-1) == 1).all()  # never shifted out of the frame
    dy, dx = flat.argmax(-1) // 8 - 4, flat.argmax(-1) % 8 - 4
    both = set(zip(dy.tolist(), dx.tolist(), strict=True))
    assert both == {(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)}  # independent axes
