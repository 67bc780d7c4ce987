"""Tests for jaxmia.metrics.privacy_auditing, one_run_auditing and intervals: the special
functions against scipy, the GDP curve against dp-accounting, every epsilon bound against
simulations of mechanisms whose epsilon is known (randomized response, Gaussian shifts of
known mu), and against jax_privacy 2.0.0 where it is installed (its sound parts agree;
its ``epsilon_from_gdp`` is shown unsound)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats

from jaxmia.metrics import intervals as iv
from jaxmia.metrics import one_run_auditing as orun
from jaxmia.metrics import privacy_auditing as pa

DELTA = 1e-5


def test_betainc_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.5, 5000, 300), rng.uniform(0.5, 5000, 300)
    x = rng.uniform(0, 1, 300)
    np.testing.assert_allclose(iv.betainc(a, b, x), scipy.special.betainc(a, b, x), atol=1e-11)
    assert iv.betainc(2.0, 3.0, 0.0) == 0 and iv.betainc(2.0, 3.0, 1.0) == 1


@pytest.mark.parametrize("alpha", [0.025, 1e-6])
def test_clopper_pearson_matches_scipy_and_closed_forms(alpha):
    n = 777
    k = np.array([0, 1, 3, 50, 388, 700, 776, 777])
    inside = k < n
    expected = np.where(inside, scipy.stats.beta.ppf(1 - alpha, k + 1, np.maximum(n - k, 1)), 1)
    np.testing.assert_allclose(iv.clopper_pearson_upper(k, n, alpha), expected, atol=1e-13)
    lower = np.where(k > 0, scipy.stats.beta.ppf(alpha, np.maximum(k, 1), n - k + 1), 0)
    np.testing.assert_allclose(iv.clopper_pearson_lower(k, n, alpha), lower, atol=1e-13)
    # no successes: P(Bin(n, p) = 0) = (1 - p)^n = alpha
    assert iv.clopper_pearson_upper(0, n, alpha) == pytest.approx(1 - alpha ** (1 / n), rel=1e-9)


def test_binomial_sf_matches_scipy():
    k = np.arange(-1, 52)
    np.testing.assert_allclose(
        iv.binomial_sf(k, 50, 0.3), scipy.stats.binom.sf(k - 1, 50, 0.3), atol=1e-13
    )


def test_normal_functions_match_scipy():
    x = np.array([-35.0, -8, -1, 0, 0.5, 6])
    np.testing.assert_allclose(iv.normal_cdf(x), scipy.stats.norm.cdf(x), rtol=1e-12)
    p = np.array([1e-12, 1e-5, 0.3, 0.5, 0.999])
    np.testing.assert_allclose(iv.normal_ppf(p), scipy.stats.norm.ppf(p), rtol=1e-9)
    assert iv.normal_ppf(0.0) == -np.inf and iv.normal_ppf(1.0) == np.inf


def test_gdp_epsilon_inverts_the_gaussian_mechanism_of_dp_accounting():
    dp_accounting = pytest.importorskip("dp_accounting")
    for eps in (0.3, 1.13, 4.0, 8.0, 20.0):
        sigma = dp_accounting.get_sigma_gaussian(eps, DELTA)  # sensitivity 1: mu = 1/sigma
        assert iv.gdp_epsilon(1 / sigma, DELTA) == pytest.approx(eps, rel=1e-6)
    assert iv.gdp_epsilon(0.3, DELTA) == pytest.approx(1.13, abs=0.005)  # the number
    mu = 1.7
    assert iv.gdp_delta(mu, iv.gdp_epsilon(mu, DELTA)) == pytest.approx(DELTA, rel=1e-6)
    assert iv.gdp_epsilon(0.0, DELTA) == 0 and iv.gdp_epsilon(math.inf, DELTA) == math.inf


def _randomized_response(rng, eps, n, reps):
    """False-negative and false-positive counts of the test "output 1" on randomized
    response, which is exactly eps-DP: (reps,) each."""
    p = 1 / (1 + math.exp(-eps))
    return rng.binomial(n, 1 - p, reps), rng.binomial(n, 1 - p, reps)


def test_clopper_pearson_bound_keeps_its_confidence_on_a_tight_mechanism():
    # Randomized response meets its eps with equality, so the bound exceeds eps exactly
    # when a confidence interval fails: at most 5% of 4,000 repetitions (+3 sd), and
    # not far below (an interval at alpha instead of alpha / 2 fails about 10%).
    rng = np.random.default_rng(1)
    eps, n, reps = 2.0, 1000, 4000
    fn, fp = _randomized_response(rng, eps, n, reps)
    bound, *_ = pa.epsilon_at_counts(fn, fp, n, n, delta=0.0 + DELTA, alpha=0.05)
    above = np.mean(bound > eps)
    assert above <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)
    assert np.median(bound) > 0.88 * eps  # tight with 1,000 runs a side


def test_gdp_mu_bound_keeps_its_confidence():
    # Gaussian shift mu, test "score >= 0.5": FNR = Phi(0.5 - mu), FPR = Phi(-0.5).
    rng = np.random.default_rng(2)
    mu, n, reps = 1.0, 1000, 4000
    fn = rng.binomial(n, float(iv.normal_cdf(0.5 - mu)), reps)
    fp = rng.binomial(n, float(iv.normal_cdf(-0.5)), reps)
    _, mus, *_ = pa.epsilon_at_counts(fn, fp, n, n, delta=DELTA, alpha=0.05)
    assert np.mean(mus > mu) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)
    assert np.median(mus) > 0.8 * mu


@pytest.mark.parametrize("method", ["clopper_pearson", "gdp"])
def test_bounds_below_the_true_epsilon_of_gaussian_shifts(method):
    bound = pa.epsilon_gdp if method == "gdp" else pa.epsilon_clopper_pearson
    rng = np.random.default_rng(3)
    for mu in (0.5, 2.0):
        true = iv.gdp_epsilon(mu, DELTA)
        got = [
            bound(rng.normal(mu, 1, 1024), rng.normal(0, 1, 1024), delta=DELTA, seed=s)
            for s in range(12)
        ]
        eps = np.array([g.epsilon for g in got])
        assert np.mean(eps <= true) >= 0.95 - 0.1
        assert all(g.trials == (512, 512) and g.tests == 1 for g in got)
        assert all(g.orientation == 1 for g in got if g.epsilon > 0)
        if method == "gdp":
            assert np.mean([g.mu <= mu for g in got]) >= 0.85


def test_gdp_bound_is_close_to_the_truth_with_many_trials():
    rng = np.random.default_rng(4)
    mu, n = 1.0, 100_000
    got = pa.epsilon_gdp(rng.normal(mu, 1, n), rng.normal(0, 1, n), delta=DELTA)
    true = iv.gdp_epsilon(mu, DELTA)
    assert 0.9 * true < got.epsilon <= true
    assert 0.97 * mu < got.mu <= mu


def test_orientation_and_swapped_roles():
    # Canary runs scoring lower (a loss) are found with orientation -1.
    rng = np.random.default_rng(5)
    c, n = rng.normal(-2, 1, 600), rng.normal(0, 1, 600)
    hi = pa.epsilon_clopper_pearson(-c, -n, delta=DELTA)
    lo = pa.epsilon_clopper_pearson(c, n, delta=DELTA)
    assert lo.orientation == -1 and hi.orientation == 1
    assert lo.epsilon == pytest.approx(hi.epsilon) and lo.epsilon > 0.5


def test_fixed_thresholds_are_bonferroni_corrected():
    rng = np.random.default_rng(6)
    c, n = rng.normal(1, 1, 2000), rng.normal(0, 1, 2000)
    one = pa.epsilon_clopper_pearson(c, n, delta=DELTA, threshold=[1.5])
    many = pa.epsilon_clopper_pearson(c, n, delta=DELTA, threshold=[1.5, 0.3, 2.0])
    assert one.tests == 2 and many.tests == 6 and one.trials == (2000, 2000)
    fn, fp = np.sum(c < 1.5), np.sum(n >= 1.5)
    expected, *_ = pa.epsilon_at_counts(fn, fp, 2000, 2000, delta=DELTA, alpha=0.05 / 2)
    assert one.epsilon == pytest.approx(float(expected[0]), rel=1e-12)


def test_fixed_threshold_matches_jax_privacy():
    auditing = pytest.importorskip("jax_privacy.auditing")
    rng = np.random.default_rng(7)
    c, n = rng.normal(1, 1, 2000), rng.normal(0, 1, 2000)
    auditor = auditing.CanaryScoreAuditor(c, n)
    for t in (0.5, 1.5, 2.5):
        ours = pa.epsilon_clopper_pearson(c, n, delta=DELTA, threshold=[t]).epsilon
        # two tests (both orientations) at 0.05 / 2 each; jax_privacy's two-sided bound
        # uses the same two intervals at significance / 2
        theirs = auditor.epsilon_clopper_pearson(
            0.025, DELTA, one_sided=False, threshold_strategy=auditing.Explicit(t)
        )
        assert ours == pytest.approx(theirs, rel=1e-9)


def test_jax_privacy_epsilon_from_gdp_is_unsound_and_ours_is_not():
    # The simulation: 1,024 + 1,024 draws of a Gaussian shift of 0.3 (true eps
    # 1.13 at delta 1e-5). jax_privacy 2.0.0 takes |mu| over all thresholds and reports
    # about 4-5 on average; our GDP bound stays below the truth.
    auditing = pytest.importorskip("jax_privacy.auditing")
    true = iv.gdp_epsilon(0.3, DELTA)
    theirs, ours = [], []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        c, n = rng.normal(0.3, 1, 1024), rng.normal(0, 1, 1024)
        theirs.append(auditing.CanaryScoreAuditor(c, n).epsilon_from_gdp(0.05, DELTA))
        ours.append(pa.epsilon_gdp(c, n, delta=DELTA, seed=seed).epsilon)
    assert np.mean(theirs) > 2.5 * true
    assert np.mean(np.array(theirs) > true) > 0.5
    assert max(ours) <= true


def test_ceiling_is_the_bound_of_perfect_separation():
    alpha = 0.05
    edge = (alpha / 2) ** (1 / 512)  # CP bounds of 0 errors in 512 evaluation runs
    cp = math.log((edge - DELTA) / (1 - edge))
    assert pa.epsilon_ceiling(1024, 1024, delta=DELTA) == pytest.approx(cp, rel=1e-9)
    gdp = iv.gdp_epsilon(-2 * float(iv.normal_ppf(1 - edge)), DELTA)
    assert pa.epsilon_ceiling(1024, 1024, delta=DELTA, method="gdp") == pytest.approx(gdp)
    assert pa.epsilon_ceiling(4096, 4096, delta=DELTA) > cp  # more trials, higher ceiling


def test_one_run_bound_matches_jax_privacy_p_values():
    auditing = pytest.importorskip("jax_privacy.auditing")
    for m, r, v, alpha, delta in [(1000, 100, 80, 0.05, DELTA), (200, 20, 15, 0.05, DELTA),
                                  (1000, 50, 49, 0.01, 0.0)]:  # fmt: skip
        ours = orun._one_run_epsilon(m, r, v, alpha, delta)
        assert ours == pytest.approx(auditing._epsilon_one_run(0, m, r, v, alpha, delta), rel=1e-6)


def test_one_run_bound_is_valid_and_grows_with_epsilon():
    # m canaries through randomized response at eps: each canary's output is eps-DP.
    rng = np.random.default_rng(8)
    m = 1000
    for eps in (1.0, 4.0):
        p = 1 / (1 + math.exp(-eps))
        got = []
        for _ in range(6):
            inc = rng.random(m) < 0.5
            scores = (rng.random(m) < np.where(inc, p, 1 - p)) + 1e-3 * rng.normal(size=m)
            got.append(orun.epsilon_one_run(scores, inc, delta=DELTA))
        assert all(g.epsilon <= eps for g in got)
        assert np.median([g.epsilon for g in got]) > 0.5 * eps
        assert all(0 < g.correct <= g.guesses <= m for g in got)


def test_one_run_with_perfect_guesses_and_no_signal():
    m = 1000
    inc = np.arange(m) % 2 == 0
    perfect = orun.epsilon_one_run(inc.astype(float), inc, delta=DELTA)
    assert perfect.epsilon > 3 and perfect.correct == perfect.guesses
    none = orun.epsilon_one_run(np.random.default_rng(0).normal(size=m), inc, delta=DELTA)
    assert none.epsilon < 0.5


def test_dirac_mechanism_scores_have_the_exact_moments():
    rng = np.random.default_rng(9)
    steps, q, sigma, n = 40, 0.1, 0.8, 200_000
    c, z = pa.dirac_mechanism_scores(rng, n, n, steps=steps, sample_rate=q, noise_multiplier=sigma)
    assert c.mean() == pytest.approx(steps * q, abs=0.03)
    assert c.var() == pytest.approx(steps * q * (1 - q) + steps * sigma**2, rel=0.02)
    assert z.mean() == pytest.approx(0, abs=0.03) and z.var() == pytest.approx(
        steps * sigma**2, rel=0.02
    )
    c0, z0 = pa.dirac_mechanism_scores(rng, 5, 5, steps=50, sample_rate=0.5, noise_multiplier=0)
    assert (z0 == 0).all() and (c0 >= 1).all()


def test_ideal_reference_is_below_the_accountant():
    dp_accounting = pytest.importorskip("dp_accounting")
    from dp_accounting import rdp

    steps, q, sigma = 60, 0.1, 1.0
    accountant = rdp.RdpAccountant()
    accountant.compose(
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
        )
    )
    eps = accountant.get_epsilon(DELTA)
    ref = pa.ideal_reference(
        1024, 1024, steps=steps, sample_rate=q, noise_multiplier=sigma, delta=DELTA,
        repetitions=6,
    )  # fmt: skip
    assert set(ref) == {"clopper_pearson", "gdp"} and ref["gdp"].shape == (6,)
    assert (ref["clopper_pearson"] <= eps).all() and (ref["gdp"] <= eps).all()
    assert (ref["clopper_pearson"] > 0).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(delta=0.0), "delta"),
        (dict(delta=DELTA, confidence=1.0), "confidence"),
        (dict(delta=DELTA, threshold="best"), "threshold"),
        (dict(delta=DELTA, split=1.0), "split"),
        (dict(delta=DELTA, threshold=[np.nan]), "thresholds"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pa.epsilon_clopper_pearson(np.ones(10), np.zeros(10), **kwargs)


def test_bad_scores_are_errors():
    with pytest.raises(ValueError, match="1-D"):
        pa.epsilon_gdp(np.ones((3, 2)), np.zeros(5), delta=DELTA)
    with pytest.raises(ValueError, match="finite"):
        pa.epsilon_gdp(np.array([1.0, np.nan]), np.zeros(5), delta=DELTA)
    with pytest.raises(ValueError, match="guesses"):
        orun.epsilon_one_run(np.ones(10), np.ones(10, bool), delta=DELTA, guesses=(0.0,))
    with pytest.raises(ValueError, match="method"):
        pa.epsilon_at_counts([0], [0], 5, 5, delta=DELTA, alpha=0.05, method="rdp")
