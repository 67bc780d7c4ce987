"""Poisson-sampled DP-SGD and the white-box Dirac canary (jaxmia/engine/sampling.py): the
vmapped pool equals each model alone, the inclusion rate is q, the accountant gets the
steps and rate that ran, the batch bound holds and overflow is counted, and the canary
moves its coordinate by exactly -lr C / batch_size per inclusion."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import tree_max_diff
from scipy import stats

from jaxmia import cli, study
from jaxmia._src import audit, engine
from jaxmia._src.audit.training import privacy_spent
from jaxmia._src.defences import training as defences
from jaxmia._src.engine import sampling
from jaxmia._src.engine.store import pools

LEAF, UNIT, INPUT = "hidden/0/kernel", 5, 0  # digits pixel 0 is 0 in every image
CANARY = engine.DiracCanary(LEAF, INPUT * 16 + UNIT)  # kernel[0, 5] of a (64, 16) kernel
BATCH, EPOCHS, LR, CLIP = 8, 3, 0.5, 2.0


@pytest.fixture(scope="module")
def case(tiny):
    """Four models of different sizes on the 64 tiny digits (pixel 0 always 0), SGD."""
    assert (tiny.ds.x[:, INPUT] == 0).all()
    keep = np.zeros((4, 64), bool)
    for i, m in enumerate((40, 33, 24, 17)):
        keep[i, np.random.default_rng(i).permutation(64)[:m]] = True
    return tiny, keep


def _train(tiny, keep, dp, **kw):
    kw = (
        dict(
            epochs=EPOCHS,
            batch_size=BATCH,
            optimizer=optax.sgd(LR),
            seed=3,
            mesh=None,
            chunk_size=None,
            dp=dp,
        )
        | kw
    )
    return engine.train(tiny.factory, tiny.ds.x, tiny.ds.y, keep, **kw)


def _rates(keep):
    members = keep.sum(axis=1)
    return members, np.minimum(1.0, BATCH / members), -(-members // BATCH)


def _drawn_sizes(keep, seed, epochs):
    """Batch sizes the documented draws give: ``(k, epochs, steps)`` (0 past a model's
    steps), from ``fold_in(fold_in(fold_in(key, SAMPLING_STREAM), epoch), step)``."""
    _, q, steps = _rates(keep)
    keys = engine.model_keys(seed, keep.shape[0])
    out = np.zeros((keep.shape[0], epochs, steps.max()), np.int64)
    for i in range(keep.shape[0]):
        base = jax.random.fold_in(keys[i], sampling.SAMPLING_STREAM)
        for e in range(epochs):
            for s in range(steps[i]):
                u = jax.random.uniform(jax.random.fold_in(jax.random.fold_in(base, e), s), (64,))
                out[i, e, s] = int(np.sum(keep[i] & (np.asarray(u) < q[i])))
    return out


def _canary_draws(keep, flags, seed, epochs):
    """``(k,)`` times each model included the canary, recomputed from the documented keys
    ``fold_in(fold_in(fold_in(key, CANARY_STREAM), epoch), step)``: uniform < q."""
    _, q, steps = _rates(keep)
    keys = engine.model_keys(seed, keep.shape[0])
    count = np.zeros(keep.shape[0], np.int64)
    for i in np.flatnonzero(flags):
        base = jax.random.fold_in(keys[i], sampling.CANARY_STREAM)
        for e in range(epochs):
            for s in range(steps[i]):
                u = jax.random.uniform(jax.random.fold_in(jax.random.fold_in(base, e), s))
                count[i] += bool(u < q[i])
    return count


DP0 = engine.DPConfig(l2_clip=CLIP, noise_multiplier=0.0)  # one compiled program for most
FLAGS = np.array([True, False, True, True])


@pytest.fixture(scope="module")
def marked(case):
    """The four models with Poisson DP-SGD (noise 0) and the canary in ``FLAGS``' models."""
    tiny, keep = case
    return _train(tiny, keep, DP0, canary=CANARY, canary_keep=FLAGS)


@pytest.fixture(scope="module")
def plain(case):
    """The same models and draws without a canary."""
    tiny, keep = case
    return _train(tiny, keep, DP0)


@pytest.mark.slow
def test_poisson_dp_sgd_under_vmap_equals_each_model_alone_with_the_canary(case, marked):
    """Kills: draws from a key shared across the vmapped models, or that depend on the
    pool (the largest model's steps); the counts are those of the documented draws.
    (Noise 0 here, to share compiled programs; each model's own noise key is checked in
    test_engine_dpsgd.py.)"""
    tiny, keep = case
    pool = marked
    alone = _train(tiny, keep, DP0, canary=CANARY, canary_keep=FLAGS, mode="sequential")
    assert tree_max_diff(pool.params, alone.params) < 1e-5
    for name in sampling.COUNTS:
        np.testing.assert_array_equal(pool.dp_counts[name], alone.dp_counts[name])
    steps = _rates(keep)[2]
    np.testing.assert_array_equal(pool.dp_counts["steps"], EPOCHS * steps)
    np.testing.assert_array_equal(
        pool.dp_counts["sampled"], _drawn_sizes(keep, 3, EPOCHS).sum(axis=(1, 2))
    )
    np.testing.assert_array_equal(pool.dp_overflow, 0)
    np.testing.assert_array_equal(pool.dp_counts["canary"], _canary_draws(keep, FLAGS, 3, EPOCHS))


@pytest.mark.slow
def test_dirac_canary_moves_its_coordinate_by_lr_clip_over_batch_per_inclusion(case, marked, plain):
    """Noise 0, SGD(lr): pixel 0 is 0 in every image, so the data's gradient at
    kernel[0, 5] is 0 and that weight does not change the outputs; the canary's
    coordinate therefore moves by exactly -lr C / batch_size per inclusion (the count
    recomputed from the documented keys), and nothing else moves; the models without
    the canary equal those of a run without one. Kills: canary added after the division
    or with another normaliser, added when not sampled, to the wrong coordinate, or to
    the models without it."""
    _, keep = case
    count = _canary_draws(keep, FLAGS, 3, EPOCHS)
    assert count[FLAGS].min() > 0 and count[~FLAGS].max() == 0
    np.testing.assert_array_equal(marked.dp_counts["canary"], count)
    shift = np.array(
        marked.params["hidden"][0]["kernel"][...] - plain.params["hidden"][0]["kernel"][...]
    ).reshape(4, -1)
    np.testing.assert_allclose(shift[:, CANARY.index], -LR * CLIP / BATCH * count, rtol=1e-5)
    shift[:, CANARY.index] = 0
    assert np.abs(shift).max() == 0.0
    assert tree_max_diff(marked.params["head"], plain.params["head"]) == 0.0
    np.testing.assert_array_equal(marked.dp_counts["sampled"], plain.dp_counts["sampled"])


@pytest.mark.slow
def test_dirac_canary_under_shuffling_enters_once_per_epoch(case):
    """With ``sampling="shuffle"`` the canary is sampled once per epoch; and with no model
    holding it, the canary's epoch equals the plain shuffled DP epoch."""
    tiny, keep = case
    dp = engine.DPConfig(l2_clip=CLIP, noise_multiplier=0.0, sampling="shuffle")
    flags = np.array([False, True, False, True])
    plain = _train(tiny, keep, dp)
    marked = _train(tiny, keep, dp, canary=CANARY, canary_keep=flags)
    np.testing.assert_array_equal(marked.dp_counts["canary"], EPOCHS * flags)
    shift = np.array(
        marked.params["hidden"][0]["kernel"][...] - plain.params["hidden"][0]["kernel"][...]
    ).reshape(4, -1)
    np.testing.assert_allclose(shift[:, CANARY.index], -LR * CLIP / BATCH * EPOCHS * flags)
    unmarked = _train(tiny, keep, dp, canary=CANARY, canary_keep=np.zeros(4, bool))
    assert tree_max_diff(unmarked.params, plain.params) < 1e-6
    members, _, steps = _rates(keep)
    np.testing.assert_array_equal(plain.dp_counts["sampled"], EPOCHS * members)
    np.testing.assert_array_equal(unmarked.dp_counts["steps"], EPOCHS * steps)


@pytest.mark.slow
def test_inclusion_rate_and_batch_sizes_match_binomial():
    """The kernel's draws over S = 4,000 steps of a model with m = 500 members, q = 0.1:
    the inclusion rate against q and the batch sizes' mean and variance against
    Binomial(m, q). Each check fails by chance with probability below 1e-6 (normal
    bounds at z = 5.33: the total of S m Bernoulli(q); the sample variance of S near-normal
    draws has standard error sigma^2 sqrt(2 / (S - 1)) up to the binomial's tiny excess
    kurtosis); every member's own rate is checked at 1e-6 / m each."""
    m, n, steps, max_batch = 500, 800, 4000, 100
    keep = jnp.arange(n) < m
    q = 0.1
    base = jax.random.fold_in(jax.random.key(11), sampling.SAMPLING_STREAM)

    def one(s):
        idx, weight, drawn = sampling.poisson_batch(jax.random.fold_in(base, s), keep, q, max_batch)
        hits = jnp.zeros(n, jnp.int32).at[idx].add(weight.astype(jnp.int32))
        return drawn, hits

    drawn, hits = jax.jit(jax.vmap(one))(jnp.arange(steps))
    drawn, hits = np.asarray(drawn), np.asarray(hits)
    assert drawn.max() <= max_batch  # (no overflow here: hits are every sampled member)
    z = stats.norm.isf(1e-6 / 2)
    total = drawn.sum()
    assert abs(total - steps * m * q) <= z * math.sqrt(steps * m * q * (1 - q))
    np.testing.assert_array_equal(hits.sum(axis=1), drawn)  # the batch holds what was drawn
    assert hits[:, m:].max() == 0  # never a non-member
    var = m * q * (1 - q)
    assert abs(drawn.mean() - m * q) <= z * math.sqrt(var / steps)
    assert abs(drawn.var(ddof=1) - var) <= z * var * math.sqrt(2 / (steps - 1)) * 1.05
    per_member = hits[:, :m].sum(axis=0)
    z_each = stats.norm.isf(1e-6 / (2 * m))
    assert np.abs(per_member - steps * q).max() <= z_each * math.sqrt(steps * q * (1 - q))


def test_batch_bound_holds_and_overflow_is_rare_by_simulation():
    """The Chernoff bound is above the exact binomial tail; the engine's slots keep the
    overflow probability below 1e-9 exactly; and with a bound loosened to 1e-2, the
    simulated overflow frequency of 20,000 batches stays below it (and near the exact
    tail): a binomial test at 1e-6."""
    for b, m in [(8, 64), (32, 300), (128, 5000), (128, 10**6)]:
        for a in range(b + 1, 4 * b):
            exact = stats.binom.sf(a - 1, m, b / m)  # P(X >= a)
            assert sampling.chernoff_tail(b, a) >= exact * (1 - 1e-9)
        slots = sampling.max_batch_size(b, m)
        assert stats.binom.sf(slots, m, b / m) < sampling.OVERFLOW_TAIL
        assert sampling.chernoff_tail(b, slots) >= sampling.OVERFLOW_TAIL  # the least such
    assert sampling.max_batch_size(128, 5000) == 207
    assert sampling.max_batch_size(8, 6) == 6  # never more slots than members
    m, b, draws = 200, 20, 20000
    slots = sampling.max_batch_size(b, m, tail=1e-2)
    exact = stats.binom.sf(slots, m, b / m)
    keep = jnp.ones(m, bool)
    key = jax.random.key(5)
    drawn = jax.jit(
        jax.vmap(
            lambda s: sampling.poisson_batch(jax.random.fold_in(key, s), keep, b / m, slots)[2]
        )
    )(jnp.arange(draws))
    over = int(np.sum(np.asarray(drawn) > slots))
    assert exact < 1e-2
    assert over <= stats.binom.isf(1e-6, draws, 1e-2)
    assert (
        stats.binom.cdf(over, draws, exact) > 1e-6 and stats.binom.sf(over - 1, draws, exact) > 1e-6
    )


@pytest.mark.slow
def test_overflow_is_counted_when_forced(case, monkeypatch):
    """Two slots for batches of mean 8: the extra members are dropped and counted, and
    the drawn sizes (documented keys) split into kept + dropped; the audit notes it."""
    tiny, keep = case
    monkeypatch.setattr(sampling, "max_batch_size", lambda b, m, tail=0: 2)
    pool = _train(tiny, keep, DP0, epochs=1)
    sizes = _drawn_sizes(keep, 3, 1)
    np.testing.assert_array_equal(pool.dp_overflow, np.maximum(sizes - 2, 0).sum(axis=(1, 2)))
    np.testing.assert_array_equal(pool.dp_counts["sampled"], np.minimum(sizes, 2).sum(axis=(1, 2)))
    assert pool.dp_overflow.min() > 0
    config = audit.AuditConfig(dp_noise=0.5, dp_clip=CLIP, batch_size=BATCH, epochs=1)
    assert privacy_spent(config, pool)["overflow"] == int(pool.dp_overflow.sum())


@pytest.mark.slow
def test_accountant_gets_the_steps_and_rate_that_ran(case, plain):
    """privacy_spent's steps and sample rate are the engine's counted steps and b / m of
    the model with the largest epsilon; under shuffling it says plainly that the
    accountant does not cover the batches."""
    _, keep = case
    pool = plain  # EPOCHS epochs
    members, q, steps = _rates(keep)
    steps = EPOCHS * steps
    np.testing.assert_array_equal(pool.dp_counts["steps"], steps)
    config = audit.AuditConfig(dp_noise=1.0, dp_clip=CLIP, batch_size=BATCH, epochs=EPOCHS)
    privacy = privacy_spent(config, pool.select(slice(0, 1)))  # one model, e.g. a target
    assert privacy["steps"] == int(pool.dp_counts["steps"][0]) == steps[0]
    assert privacy["sample_rate"] == pytest.approx(BATCH / members[0]) == q[0]
    assert privacy["epsilon"] == defences.dp_epsilon(1.0, q[0], steps[0], 1e-5)
    assert privacy["sampling"] == "poisson" and "does not cover" not in privacy["accounting"]
    shuffled = privacy_spent(config.replace(dp_sampling="shuffle"), pool)
    assert "does not cover" in shuffled["accounting"] and "no guarantee" in shuffled["accounting"]
    # several models: the largest epsilon (the smallest model: highest rate, fewest steps)
    eps = [defences.dp_epsilon(1.0, q[i], steps[i], 1e-5) for i in range(4)]
    privacy4 = privacy_spent(config, pool)
    assert privacy4["epsilon"] == pytest.approx(max(eps))
    assert privacy4["steps"] == steps[int(np.argmax(eps))]
    assert privacy4["sample_rate"] == q[int(np.argmax(eps))]


@pytest.mark.slow
def test_canary_pool_is_saved_and_resumed_and_another_canary_is_refused(case, tmp_path):
    tiny, keep = case
    kw = dict(canary=CANARY, canary_keep=FLAGS, checkpoint=tmp_path / "pool")
    first = _train(tiny, keep, DP0, **kw)
    again = _train(tiny, keep, DP0, **kw)  # read back
    assert tree_max_diff(first.params, again.params) == 0.0
    for name in sampling.COUNTS:
        np.testing.assert_array_equal(first.dp_counts[name], again.dp_counts[name])
    spec = pools.read_manifest(tmp_path / "pool")["spec"]
    assert spec["canary"] == {"leaf": LEAF, "index": CANARY.index}
    assert spec["dp"]["sampling"] == "poisson"
    with pytest.raises(pools.PoolError, match="canary in other models"):
        _train(tiny, keep, DP0, **{**kw, "canary_keep": ~FLAGS})
    with pytest.raises(pools.PoolError):  # another canary: another spec
        _train(tiny, keep, DP0, **{**kw, "canary": engine.DiracCanary(LEAF, CANARY.index + 1)})


def test_shuffled_dp_pool_spec_is_unchanged():
    """A shuffled DP-SGD pool keeps the spec it had before Poisson sampling (same models)."""
    spec = engine.training_spec._dp_spec(engine.DPConfig(1.0, 2.0, sampling="shuffle"))
    assert spec == {"l2_clip": 1.0, "noise_multiplier": 2.0}


def test_bad_canary_and_sampling_settings_are_refused_in_one_line(case):
    tiny, keep = case
    dp = engine.DPConfig(l2_clip=CLIP, noise_multiplier=0.5)
    flags = np.ones(4, bool)
    cases = [
        (dict(dp=None, canary=CANARY, canary_keep=flags), "needs DP-SGD"),
        (
            dict(dp=dp, canary=engine.DiracCanary("hidden/0/bias/x", 0), canary_keep=flags),
            "not a parameter of the model; its parameters are head/bias, head/kernel",
        ),
        (
            dict(dp=dp, canary=engine.DiracCanary(LEAF, 1024), canary_keep=flags),
            "index 1024 is outside 'hidden/0/kernel', which has 1024 coordinates",
        ),
        (dict(dp=dp, canary=CANARY, canary_keep=np.ones(3, bool)), r"must be a \(4,\) bool"),
        (dict(dp=dp, canary=CANARY, canary_keep=np.ones(4, int)), r"must be a \(4,\) bool"),
        (dict(dp=dp, canary=CANARY), r"must be a \(4,\) bool array, one flag a model; got None"),
        (dict(dp=dp, canary_keep=flags), "canary_keep was given without a canary"),
        (dict(dp=dp, canary=("hidden/0/kernel", 3), canary_keep=flags), "engine.DiracCanary"),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            _train(tiny, keep, **kw)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="sampling must be one of poisson, shuffle; got 'uniform'"):
        engine.DPConfig(sampling="uniform")
    for bad in ({"leaf": "", "index": 0}, {"leaf": LEAF, "index": 1.5}):
        with pytest.raises(ValueError, match="DiracCanary"):
            engine.DiracCanary(**bad)
    with pytest.raises(audit.ConfigError, match="dp_sampling must be one of poisson, shuffle"):
        audit.AuditConfig(dp_noise=1.0, dp_sampling="uniform")


def test_dp_sampling_is_a_flag_and_reaches_the_engine():
    args = cli.build_parser().parse_args(["audit", "--dp-noise", "1", "--dp-sampling", "shuffle"])
    config = cli._config(args)
    assert config.dp_sampling == "shuffle"
    assert config.defence.dp == engine.DPConfig(1.0, 1.0, sampling="shuffle")
    assert audit.AuditConfig(dp_noise=1.0).defence.dp.sampling == "poisson"
    assert "shuffled batches" in config.defence.describe()


def test_a_study_over_shuffled_dp_says_its_epsilon_is_not_covered():
    rows = [
        dict(value=v, attack="loss", auc=0.6, target_test_acc=0.5, epsilon=e)
        for v, e in ((None, None), (1.0, 9.3))
    ]
    base = audit.AuditConfig(dp_sampling="shuffle")
    shuffled = study.StudyResult("dp_noise", [None, 1.0], rows, base)
    assert "does not cover" in study.table(shuffled).splitlines()[-1]
    assert "not covered" in study._x(dataclasses.replace(shuffled, rows=rows[1:]), "loss")[1]
    poisson = study.StudyResult("dp_noise", [None, 1.0], rows, audit.AuditConfig())
    assert "cover" not in study.table(poisson)
