"""RMIA and attack-P (jaxmia/attacks/rmia.py) against brute force."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmia import signals, splits
from jaxmia._src import attacks
from jaxmia._src.attacks import rmia


def brute_force_rmia(lp_x, lp_z, ref_x, keep_x, ref_z, keep_z, online, a, gamma):
    def prior(lp, keep):
        p = np.exp(lp)
        if online:
            return p.mean(0)
        return 0.5 * (
            (1 + a) * np.array([p[~keep[:, j], j].mean() for j in range(p.shape[1])]) + 1 - a
        )

    rx = np.exp(lp_x) / prior(ref_x, keep_x)
    rz = np.exp(lp_z) / prior(ref_z, keep_z)
    return np.array([np.mean([x / z >= gamma for z in rz]) for x in rx]), rx


@pytest.mark.parametrize("online,a", [(True, 0.3), (False, 0.0), (False, 0.6)])
def test_rmia_matches_brute_force(online, a):
    rng = np.random.default_rng(1)
    k, m, nz = 6, 40, 30
    keep_x = splits.balanced_keep(k, m, seed=2)
    keep_z = splits.balanced_keep(k, nz, seed=3)
    lp = lambda *s: np.log(rng.uniform(0.05, 1.0, s))
    lp_x, lp_z, ref_x, ref_z = lp(m), lp(nz), lp(k, m), lp(k, nz)
    want, ratio = brute_force_rmia(lp_x, lp_z, ref_x, keep_x, ref_z, keep_z, online, a, 2.0)
    kw = dict(target_log_p_z=lp_z, ref_log_p_z=ref_z, keep_z=keep_z, gamma=2.0)
    if online:
        got = attacks.rmia_online(lp_x, ref_x, keep_x, **kw)
    else:
        got = attacks.rmia_offline(lp_x, ref_x, keep_x, a=a, **kw)
    got = np.asarray(got, np.float64)
    np.testing.assert_allclose(np.floor(got * nz + 1e-6) / nz, want, atol=1e-9)
    # ties in the count are broken by the continuous ratio, never across counts
    for i in range(m):
        for j in range(m):
            if want[i] == want[j] and ratio[i] > ratio[j] * (1 + 1e-5):
                assert got[i] > got[j]
            if want[i] > want[j]:
                assert got[i] > got[j]


def test_attack_p_is_population_baseline():
    lp_x = np.log([0.9, 0.5, 0.1])
    lp_z = np.log([0.2, 0.3, 0.6, 0.95])
    got = np.asarray(attacks.attack_p(lp_x, target_log_p_z=lp_z, gamma=1.0), np.float64)
    np.testing.assert_array_equal(np.floor(got * 4 + 1e-9), [3, 2, 0])


def test_rmia_counts_population_records_exactly_at_gamma():
    """Kills: ``>=`` turned ``>`` in the comparison with gamma. With Pr(x) = 1/2 and
    population Pr(z) = 1/4, 1/2, 1/8, the ratios are exactly 2 (= gamma), 1 and 4."""
    lx = np.log(np.float32([0.5]))
    lz = np.log(np.float32([0.25, 0.5, 0.125]))
    brute = np.mean(lx[0] - lz >= np.float32(np.log(2.0)))  # ties count
    assert brute == 2 / 3
    assert float(attacks.attack_p(lx, target_log_p_z=lz, gamma=2.0)[0]) == pytest.approx(brute)


def _log_ratios(rng, kind, m, nz):
    """Candidates' and population's float32 log-ratios: continuous, many ties (also
    between x and z), or with -0.0 and 0.0 mixed."""
    if kind == "normal":
        return rng.normal(size=m).astype(np.float32), rng.normal(size=nz).astype(np.float32)
    if kind == "ties":
        x = rng.integers(-4, 4, m).astype(np.float32) * np.float32(np.log(2.0))
        return x, np.concatenate([x, x])[rng.integers(0, 2 * m, nz)]
    x, z = (np.log(rng.uniform(0.01, 1, n)).astype(np.float32) for n in (m, nz))
    x[: m // 3], x[m // 3 : m // 2], z[: nz // 4] = 0.0, -0.0, -0.0
    return x, z


@pytest.mark.parametrize("kind", ["normal", "ties", "zeros"])
def test_sorted_counting_on_the_host_is_the_jitted_count_bit_for_bit(kind):
    """The host path (NumPy sorts, the float32 arithmetic in the same XLA program) gives
    the bits of the jitted sort + searchsorted + double argsort, and of the dense count
    ``#{z : lx - lz >= log gamma}`` plus the rank tie-break; its order sorts the scores."""
    rng = np.random.default_rng(["normal", "ties", "zeros"].index(kind))
    for m, nz in [(1, 1), (7, 3), (300, 301), (1000, 257)]:
        x, z = _log_ratios(rng, kind, m, nz)
        for gamma in (0.5, 1.0, 2.0):
            lg = float(np.log(gamma))
            jitted = np.asarray(rmia._dominance(jnp.asarray(x), jnp.asarray(z), lg))
            host, order = rmia._dominance_host(x, z, lg)
            assert host.dtype == np.float32
            np.testing.assert_array_equal(host.view(np.uint32), jitted.view(np.uint32))
            dense = (x[:, None] - np.float32(lg) >= z[None, :]).sum(1)
            rank = np.argsort(np.argsort(x, kind="stable"), kind="stable") / m
            np.testing.assert_allclose(host, (dense + rank) / nz, rtol=1e-6, atol=0)
            assert np.all(np.diff(host[order]) >= 0)
            np.testing.assert_array_equal(order, np.argsort(x, kind="stable"))


def test_rmia_traced_and_concrete_agree():
    """Under ``jax.jit`` the sorts stay in XLA; concrete calls sort in NumPy: same bits."""
    rng = np.random.default_rng(4)
    k, m, nz = 6, 60, 80
    keep, keep_z = splits.balanced_keep(k, m, seed=1), splits.balanced_keep(k, nz, seed=2)
    lp = lambda *s: np.log(rng.uniform(0.05, 1.0, s)).astype(np.float32)
    args = (lp(m), lp(k, m), keep)
    kw = dict(target_log_p_z=lp(nz), ref_log_p_z=lp(k, nz), keep_z=keep_z)
    for attack in (attacks.rmia_online, attacks.rmia_offline):
        concrete = np.asarray(attack(*args, **kw))
        traced = np.asarray(jax.jit(lambda *a, attack=attack: attack(*a, **kw))(*args))
        np.testing.assert_array_equal(concrete.view(np.uint32), traced.view(np.uint32))


def test_calibrate_rmia_from_log_probs_per_temperature():
    """``{T: log_probs(logits, y, T)}`` calibrates as the logits do; a missing
    temperature, labels with log-probabilities, or mixed shapes are refused."""
    rng = np.random.default_rng(5)
    k, n, c = 6, 80, 4
    keep = splits.balanced_keep(k, n, seed=6)
    y = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (k, n, c)).astype(np.float32)
    logits[np.arange(k)[:, None], np.arange(n), y] += 2.0 * keep
    temperatures = (1.0, 2.0, 4.0)
    per_t = {t: np.asarray(attacks.log_probs(logits, y, temperature=t)) for t in temperatures}
    for online in (True, False):
        kw = dict(online=online, temperatures=temperatures)
        want = attacks.calibrate_rmia(logits, keep, labels=y, **kw)
        assert attacks.calibrate_rmia(per_t, keep, **kw) == want
    with pytest.raises(attacks.AttackInputError, match=r"temperature\(s\) \[4.0\]"):
        attacks.calibrate_rmia({1.0: per_t[1.0], 2.0: per_t[2.0]}, keep, **kw)
    with pytest.raises(attacks.AttackInputError, match="labels go with logits"):
        attacks.calibrate_rmia(per_t, keep, labels=y, **kw)
    with pytest.raises(attacks.AttackInputError, match="one \\(k, n\\) shape"):
        attacks.calibrate_rmia({**per_t, 4.0: per_t[4.0][:, :5]}, keep, **kw)


def test_offline_priors_of_a_grid_are_log_prior_bit_for_bit():
    """Pr_OUT once, then every ``a`` at once (the calibration's path): the bits of one
    :func:`log_prior` call per ``a``, records without OUT models included."""
    rng = np.random.default_rng(7)
    grid = jnp.asarray(rmia.A_GRID, jnp.float32)
    for k, n in [(1, 5), (15, 2000), (63, 301)]:
        lp = jnp.asarray(np.log(rng.uniform(1e-6, 1, (k, n))).astype(np.float32) * 3)
        keep = rng.random((k, n)) < 0.5
        keep[:, :3] = True  # members of every model
        keep = jnp.asarray(keep)
        many = np.asarray(rmia._offline_priors(rmia._log_mean_out(lp, keep), grid))
        for j, a in enumerate(rmia.A_GRID):
            one = np.asarray(rmia.log_prior(lp, keep, False, a))
            np.testing.assert_array_equal(many[j].view(np.uint32), one.view(np.uint32))
    with pytest.raises(attacks.AttackInputError, match=r"a must lie in \[0, 1\], got 1.5"):
        attacks.calibrate_rmia(np.asarray(lp), keep, online=False, a_grid=(0.5, 1.5))


def _small_rmia(seed=0, k=4, m=6, nz=10):
    rng = np.random.default_rng(seed)
    lp, ref = -rng.random(m), -rng.random((k, m))
    lp_z, ref_z = -rng.random(nz), -rng.random((k, nz))
    keep = splits.balanced_keep(k, m, seed=seed)
    keep_z = splits.balanced_keep(k, nz, seed=seed + 1)
    return [a.astype(np.float32) for a in (lp, ref, lp_z, ref_z)] + [keep, keep_z]


def test_rmia_gradient_is_zero_as_documented():
    assert "gradient is zero" in rmia.__doc__ and "gradient is" in attacks.rmia_online.__doc__
    lp, ref, lp_z, ref_z, keep, keep_z = _small_rmia()
    online = jax.grad(
        lambda x, r: attacks.rmia_online(x, r, keep, target_log_p_z=lp_z, ref_log_p_z=ref_z).sum(),
        argnums=(0, 1),
    )(lp, ref)
    offline = jax.grad(
        lambda z: attacks.rmia_offline(
            lp, ref, keep, target_log_p_z=z, ref_log_p_z=ref_z, keep_z=keep_z
        ).sum()
    )(lp_z)
    for g in (*online, offline):
        np.testing.assert_array_equal(g, 0.0)


def test_rmia_accepts_low_precision_floats():
    lp, ref, lp_z, ref_z, keep, keep_z = _small_rmia()

    def scores(x, r, z, rz):
        return (
            attacks.rmia_online(x, r, keep, target_log_p_z=z, ref_log_p_z=rz),
            attacks.rmia_offline(x, r, keep, target_log_p_z=z, ref_log_p_z=rz, keep_z=keep_z),
            attacks.attack_p(x, target_log_p_z=z),
        )

    for dtype in (jnp.bfloat16, jnp.float16):
        low = [np.asarray(jnp.asarray(a, dtype)) for a in (lp, ref, lp_z, ref_z)]
        want = scores(*(a.astype(np.float32) for a in low))
        for got, expected in zip(scores(*low), want, strict=True):
            assert got.dtype == jnp.float32
            np.testing.assert_array_equal(got, expected)


def test_log_probs_divide_the_logits_by_the_temperature():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]], np.float32)
    labels = np.array([0, 2])
    for t in (0.5, 2.0):
        want = -np.asarray(signals.loss(logits / t, labels))
        np.testing.assert_array_equal(attacks.log_probs(logits, labels, temperature=t), want)
