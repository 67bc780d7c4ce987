"""LiRA (jaxmia/attacks/lira.py) against direct NumPy/SciPy computations, and its views."""

import numpy as np
import pytest
import scipy.stats

from jaxmia import attacks, splits


def small_case(seed=0, k=8, m=6, q=1):
    rng = np.random.default_rng(seed)
    keep = splits.balanced_keep(k, m, seed=seed)
    shadow_phi = rng.normal(0, 1, (k, m, q)) + 2.0 * keep[..., None]
    target_phi = rng.normal(1, 1, (m, q))
    return target_phi, shadow_phi, keep


@pytest.mark.parametrize("q", [1, 3])
@pytest.mark.parametrize("variance", ["per_example", "global"])
def test_lira_matches_scipy(variance, q):
    target_phi, shadow_phi, keep = small_case(q=q)
    m = shadow_phi.shape[1]
    ins = [shadow_phi[keep[:, j], j] for j in range(m)]
    outs = [shadow_phi[~keep[:, j], j] for j in range(m)]
    eps = 1e-6  # lira adds this to every variance (documented)
    if variance == "global":
        sd_in = np.sqrt(np.concatenate(ins).var(axis=0, ddof=1) + eps)
        sd_out = np.sqrt(np.concatenate(outs).var(axis=0, ddof=1) + eps)
    online, offline = [], []
    for j in range(m):
        mu_in, mu_out = np.median(ins[j], axis=0), np.median(outs[j], axis=0)
        if variance == "per_example":
            sd_in = np.sqrt(((ins[j] - mu_in) ** 2).sum(0) / (len(ins[j]) - 1) + eps)
            sd_out = np.sqrt(((outs[j] - mu_out) ** 2).sum(0) / (len(outs[j]) - 1) + eps)
        x = target_phi[j]
        online.append(
            np.mean(
                scipy.stats.norm.logpdf(x, mu_in, sd_in)
                - scipy.stats.norm.logpdf(x, mu_out, sd_out)
            )
        )
        offline.append(np.mean(-scipy.stats.norm.logsf(x, mu_out, sd_out)))
    got_on = attacks.lira_online(target_phi, shadow_phi, keep, variance=variance)
    got_off = attacks.lira_offline(target_phi, shadow_phi, keep, variance=variance)
    np.testing.assert_allclose(got_on, online, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(got_off, offline, rtol=2e-4, atol=2e-4)


def test_lira_multivariate_matches_scipy():
    target_phi, shadow_phi, keep = small_case(q=2, k=10, m=5)
    m = keep.shape[1]
    mask = np.broadcast_to(keep[..., None], shadow_phi.shape)

    def fit(side):
        mu = np.stack([np.median(shadow_phi[side[:, j], j], axis=0) for j in range(m)])
        r = np.concatenate([shadow_phi[side[:, j], j] - mu[j] for j in range(m)])
        return mu, r.T @ r / (len(r) - 1)

    mu_in, cov_in = fit(keep)
    mu_out, cov_out = fit(~keep)
    want = [
        scipy.stats.multivariate_normal.logpdf(target_phi[j], mu_in[j], cov_in)
        - scipy.stats.multivariate_normal.logpdf(target_phi[j], mu_out[j], cov_out)
        for j in range(m)
    ]
    got = attacks.lira_online(target_phi, shadow_phi, keep, combine="multivariate")
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    assert mask.any()


def test_lira_refuses_pools_it_cannot_use():
    target_phi, shadow_phi, keep = small_case(k=2)
    with pytest.raises(attacks.LiRAError, match="at least 2 OUT"):
        attacks.lira_online(target_phi, shadow_phi, keep, variance="per_example")
    assert attacks.lira_online(target_phi, shadow_phi, keep, variance="global").shape == (6,)
    assert attacks.lira_online(target_phi, shadow_phi, keep).shape == (6,)  # auto: global
    no_in = np.zeros_like(keep)
    with pytest.raises(attacks.LiRAError, match="online LiRA"):
        attacks.lira_online(target_phi, shadow_phi, no_in, variance="global")
    assert np.isfinite(attacks.lira_offline(target_phi, shadow_phi, no_in, variance="global")).all()


def test_augment_images():
    x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 1)
    views = attacks.augment_images(x)
    assert views.shape == (6, 2, 3, 3, 1)
    np.testing.assert_array_equal(views[0], x)
    np.testing.assert_array_equal(views[1], x[:, :, ::-1])
    np.testing.assert_array_equal(views[2][:, 1:], x[:, :-1])  # shifted down by one row
    assert (views[2][:, 0] == 0).all()
