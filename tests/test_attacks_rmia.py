"""RMIA and attack-P (jaxmia/attacks/rmia.py) against brute force."""

import numpy as np
import pytest

from jaxmia import attacks, splits


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
