"""LiRA (jaxmia/attacks/lira.py) against direct NumPy/SciPy computations, and its views."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxmia import splits
from jaxmia._src import attacks


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
    got_on = attacks.lira_online(target_phi, shadow_phi, keep, queries=q, variance=variance)
    got_off = attacks.lira_offline(target_phi, shadow_phi, keep, queries=q, variance=variance)
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
    got = attacks.lira_online(target_phi, shadow_phi, keep, queries=2, combine="multivariate")
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


# --------------------------------------------------------------------------- issue 23


def test_lira_refuses_logits_given_for_phi_unless_the_queries_are_declared():
    # A user's logits (m, c) and pool logits (k, m, c) where phi belongs would be read as
    # c = 10 queries per candidate; a query axis must be declared.
    rng = np.random.default_rng(0)
    keep = splits.balanced_keep(4, 6, seed=0)
    logits, pool_logits = rng.normal(size=(6, 10)), rng.normal(size=(4, 6, 10))
    for attack in (attacks.lira_online, attacks.lira_offline):
        with pytest.raises(attacks.LiRAError, match="query axis of 10: pass queries=10"):
            attack(logits, pool_logits, keep)
        with pytest.raises(attacks.LiRAError, match="queries=3 but shadow_phi"):
            attack(logits, pool_logits, keep, queries=3)
        with pytest.raises(attacks.LiRAError, match="no query axis"):
            attack(logits[:, 0], pool_logits[..., 0], keep, queries=10)
    # declared, the queries are scored (a query axis of 1 needs no declaration)
    assert attacks.lira_online(logits, pool_logits, keep, queries=10).shape == (6,)


def test_lira_is_differentiable_in_the_target_phi():
    assert "differentiable" in attacks.lira_online.__doc__  # documented
    target_phi, shadow_phi, keep = small_case()
    scores = attacks.lira_online(target_phi, shadow_phi, keep)
    total, grad = jax.value_and_grad(lambda x: attacks.lira_online(x, shadow_phi, keep).sum())(
        target_phi
    )
    np.testing.assert_allclose(total, scores.sum(), rtol=1e-5)
    assert np.isfinite(grad).all() and np.abs(grad).min() > 0
    h = 1e-2  # score j depends on phi_j alone: central differences, elementwise
    up, down = (np.asarray(attacks.lira_online(target_phi + d, shadow_phi, keep)) for d in (h, -h))
    np.testing.assert_allclose(grad[:, 0], (up - down) / (2 * h), rtol=2e-3, atol=2e-3)


def test_a_closed_over_pool_is_fitted_before_tracing_not_folded_by_xla():
    # Closing over the pool in a jitted function used to leave LiRA's median sorts on
    # constants for XLA to fold at compile time (11 s and slow_operation_alarm at a few
    # hundred shadows). The pool is now fitted eagerly: no sort in the traced program.
    target_phi, shadow_phi, keep = small_case()
    sort = re.compile(r"stablehlo\.sort\b")
    closed = jax.jit(lambda x: attacks.lira_online(x, shadow_phi, keep))
    assert not sort.search(closed.lower(target_phi).as_text())
    as_arguments = jax.jit(attacks.lira_online).lower(target_phi, shadow_phi, keep)
    assert sort.search(as_arguments.as_text())  # the pool traced: its medians in the program
    # the closed-over pool's values are checked too (traced, they went unchecked)
    everyone = np.ones_like(keep)
    with pytest.raises(attacks.LiRAError, match="OUT model"):
        jax.jit(lambda x: attacks.lira_offline(x, shadow_phi, everyone))(target_phi)


def test_lira_accepts_low_precision_floats():
    target_phi, shadow_phi, keep = small_case()
    for dtype in (jnp.bfloat16, jnp.float16):
        low_t, low_s = jnp.asarray(target_phi, dtype), jnp.asarray(shadow_phi, dtype)
        as_f32 = (np.asarray(low_t, np.float32), np.asarray(low_s, np.float32))
        for attack in (attacks.lira_online, attacks.lira_offline):
            want = np.asarray(attack(*as_f32, keep))
            for given in ((low_t, low_s), (np.asarray(low_t), np.asarray(low_s))):
                got = attack(*given, keep)  # JAX, then NumPy (ml_dtypes) arrays
                assert got.dtype == jnp.float32
                np.testing.assert_array_equal(got, want)  # in float32, the same computation
