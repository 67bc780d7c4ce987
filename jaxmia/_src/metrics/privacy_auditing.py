"""Empirical lower bounds on the epsilon of differentially private training (privacy audits),
and the Gaussian-DP estimate next to them.

An audit trains models with and without a *canary* and scores how visible the canary is in
each final model: ``canary`` scores ``(m_in,)`` of the runs that had it and ``null`` scores
``(m_out,)`` of the runs that did not. If training is (epsilon, delta)-DP, every test
"canary present when score >= t" obeys ``TPR <= exp(epsilon) FPR + delta`` (and the same
with the two runs' roles swapped), so confidence intervals on TPR and FPR bound epsilon
from below at a stated confidence:

* :func:`epsilon_clopper_pearson`: ``epsilon >= log((TPR_lo - delta) / FPR_hi)`` with
  Clopper-Pearson intervals (Jagielski et al. 2020, "Auditing Differentially Private
  Machine Learning: How Private is Private SGD?"; Nasr et al. 2021, "Adversary
  Instantiation: Lower Bounds for Differentially Private Machine Learning"): a lower
  bound for every mechanism;
* :func:`jaxmia.metrics.epsilon_one_run`: the one-run bound of Steinke,
  Nasr and Jagielski 2023 ("Privacy Auditing with One (1) Training Run"): a lower bound
  for every mechanism.

:func:`epsilon_gdp_estimate` is **not** a bound: ``Phi^-1(TPR_lo) - Phi^-1(FPR_hi)``
bounds the mu of every mu-GDP guarantee the training has (Nasr et al. 2023, "Tight
Auditing of Differentially Private Machine Learning"), but turning that mu into epsilon
through the Gaussian trade-off curve (:func:`jaxmia._src.metrics.intervals.gdp_epsilon`)
assumes that the privacy curve *is* Gaussian. (epsilon, delta)-DP does not imply it:
on randomized response, exactly 1-DP, 1,024 + 1,024 trials give GDP estimates near 4
(tests/test_metrics_privacy_auditing.py). It is an estimate under that assumption.

Threshold choice keeps the confidence: by default (``threshold="split"``) a seeded random
part of each side chooses the threshold and the direction, and the rest bounds epsilon at
that one threshold; or the caller fixes thresholds in advance and a Bonferroni correction
covers them all. (jax_privacy 2.0.0's ``CanaryScoreAuditor.epsilon_from_gdp`` takes the
largest ``|mu|`` over all thresholds, upper confidence bounds where lower ones are needed
for negative ``mu``, and returns values far above the true epsilon even of a Gaussian
mechanism; see tests/test_metrics_privacy_auditing.py.)

:func:`dirac_mechanism_scores` draws the exact output distribution of the white-box Dirac
canary's statistic under DP-SGD, :func:`ideal_reference` applies the same estimators to it
(what they reach on that statistic with this many trials: the part of the gap to the
accountant's epsilon that the trial count explains), and :func:`dirac_statistic_epsilon`
is that statistic's exact epsilon (what any audit of it could show with unlimited trials).

Everything here is NumPy float64 on the host (:mod:`jaxmia._src.metrics.intervals`).
"""

from __future__ import annotations

import dataclasses
import math
import statistics

import numpy as np
import numpy.typing as npt

from jaxmia._src.metrics.intervals import (
    clopper_pearson_upper,
    gdp_epsilon,
    normal_cdf,
    normal_ppf,
)

__all__ = [
    "METHODS",
    "EpsilonBound",
    "GDPEstimate",
    "dirac_mechanism_scores",
    "dirac_statistic_epsilon",
    "epsilon_at_counts",
    "epsilon_ceiling",
    "epsilon_clopper_pearson",
    "epsilon_gdp_estimate",
    "ideal_reference",
]

METHODS = ("clopper_pearson", "gdp_estimate")
"""The many-run estimators: the Clopper-Pearson lower bound and the Gaussian-DP estimate."""

_NORMAL = statistics.NormalDist()
_CANDIDATES = 512  # thresholds tried on the selection part


# --------------------------------------------------------------------------------------
# Many-run bounds from canary and null scores
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EpsilonBound:
    """A Clopper-Pearson epsilon lower bound from canary and null scores.

    Attributes:
      epsilon: the lower bound (0 when nothing is shown).
      threshold: the threshold of the test on the oriented scores.
      orientation: ``+1`` when the canary runs score higher, ``-1`` when lower (the test
        is ``orientation * score >= threshold``).
      fnr_upper, fpr_upper: the confidence bounds on the test's false-negative and
        false-positive rates (each at ``(1 - confidence) / 2 / tests``).
      trials: ``(canary, null)`` runs that the bound was computed on.
      tests: how many tests a Bonferroni correction covered (1 with ``"split"``).
    """

    epsilon: float
    threshold: float
    orientation: int
    fnr_upper: float
    fpr_upper: float
    trials: tuple[int, int]
    tests: int


@dataclasses.dataclass(frozen=True)
class GDPEstimate:
    """An epsilon *estimate* under the assumption that the privacy curve is Gaussian
    (:func:`epsilon_gdp_estimate`): not a lower bound on epsilon.

    Attributes:
      epsilon_estimate: :func:`jaxmia._src.metrics.intervals.gdp_epsilon` of ``mu_lower``
        (0 when ``mu_lower`` is 0).
      mu_lower: a lower bound (at the stated confidence) on the mu of every mu-GDP
        guarantee the mechanism has.
      threshold, orientation, fnr_upper, fpr_upper, trials, tests: the test, as in
        :class:`EpsilonBound`.
    """

    epsilon_estimate: float
    mu_lower: float
    threshold: float
    orientation: int
    fnr_upper: float
    fpr_upper: float
    trials: tuple[int, int]
    tests: int


def _checked(canary: npt.ArrayLike, null: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(canary, dtype=np.float64)
    n = np.asarray(null, dtype=np.float64)
    if c.ndim != 1 or n.ndim != 1 or c.size < 2 or n.size < 2:
        raise ValueError(
            f"canary and null scores must be 1-D with at least 2 runs each, got shapes "
            f"{c.shape} and {n.shape}"
        )
    if not (np.isfinite(c).all() and np.isfinite(n).all()):
        raise ValueError("canary and null scores must be finite")
    return c, n


def _check_levels(delta: float, confidence: float) -> None:
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")


def _cp_epsilon(fnr_hi: np.ndarray, fpr_hi: np.ndarray, delta: float) -> np.ndarray:
    """``max(log((1 - FNR_hi - delta) / FPR_hi), log((1 - FPR_hi - delta) / FNR_hi), 0)``:
    the canary test and the same test with the two runs' roles swapped."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(np.maximum(1 - fnr_hi - delta, 0)) - np.log(fpr_hi)
        b = np.log(np.maximum(1 - fpr_hi - delta, 0)) - np.log(fnr_hi)
    return np.nan_to_num(np.maximum(np.maximum(a, b), 0.0), nan=0.0, posinf=np.inf)


def _gdp_mu(fnr_hi: np.ndarray, fpr_hi: np.ndarray) -> np.ndarray:
    """``max(Phi^-1(1 - FNR_hi) - Phi^-1(FPR_hi), 0)``: the trade-off curve of mu-GDP is
    symmetric, so this also covers the swapped test."""
    return np.maximum(-normal_ppf(fnr_hi) - normal_ppf(fpr_hi), 0.0)


def _counts(c: np.ndarray, n: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False negatives ``#(c < t)`` and false positives ``#(n >= t)`` at each threshold."""
    fn = np.searchsorted(np.sort(c), thresholds, side="left")
    fp = n.size - np.searchsorted(np.sort(n), thresholds, side="left")
    return fn, fp


def _wilson_upper(k: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Wilson score upper bound: a closed-form stand-in for Clopper-Pearson used only to
    choose the threshold (any choice made without the evaluation part keeps validity)."""
    z = _NORMAL.inv_cdf(1 - alpha)
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.minimum((centre + spread) / (1 + z * z / n), 1.0)


def _choose(
    c: np.ndarray, n: np.ndarray, delta: float, alpha: float, method: str
) -> tuple[int, float]:
    """The orientation and threshold that score best on the selection part. Candidates are
    midpoints between consecutive distinct scores (at most :data:`_CANDIDATES`, evenly
    spaced in rank), so that a gap that separates the selection part's scores also
    separates unseen scores that fall inside it."""
    best = (-1.0, 1, math.inf)
    for orientation in (1, -1):
        cs, ns = orientation * c, orientation * n
        distinct = np.unique(np.concatenate([cs, ns]))
        if distinct.size < 2:
            continue
        pooled = (distinct[:-1] + distinct[1:]) / 2
        if pooled.size > _CANDIDATES:
            pooled = pooled[np.unique(np.linspace(0, pooled.size - 1, _CANDIDATES).astype(int))]
        fn, fp = _counts(cs, ns, pooled)
        fnr_hi = _wilson_upper(fn, cs.size, alpha / 2)
        fpr_hi = _wilson_upper(fp, ns.size, alpha / 2)
        if method == "gdp_estimate":
            value = _gdp_mu(fnr_hi, fpr_hi)
        else:
            value = _cp_epsilon(fnr_hi, fpr_hi, delta)
        i = int(np.argmax(value))
        if value[i] > best[0]:
            best = (float(value[i]), orientation, float(pooled[i]))
    return best[1], best[2]


def _split(
    x: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(x.size)
    cut = min(max(round(fraction * x.size), 1), x.size - 1)
    return x[perm[:cut]], x[perm[cut:]]


def _best_test(
    canary: npt.ArrayLike,
    null: npt.ArrayLike,
    *,
    delta: float,
    confidence: float,
    threshold: str | npt.ArrayLike,
    split: float,
    seed: int,
    method: str,
) -> tuple[float, float, dict]:
    """``(epsilon, mu, test)`` of the best test (``"split"``: the chosen one; thresholds:
    the best after Bonferroni); ``test`` holds the fields that the two result types share."""
    c, n = _checked(canary, null)
    _check_levels(delta, confidence)
    alpha = 1 - confidence
    if isinstance(threshold, str):
        if threshold != "split":
            raise ValueError(f"threshold must be 'split' or thresholds, got {threshold!r}")
        if not 0 < split < 1:
            raise ValueError(f"split must be in (0, 1), got {split!r}")
        rng = np.random.default_rng(seed)
        (c_sel, c), (n_sel, n) = _split(c, split, rng), _split(n, split, rng)
        orientation, t = _choose(c_sel, n_sel, delta, alpha, method)
        tests = [(orientation, t)]
    else:
        grid = np.atleast_1d(np.asarray(threshold, dtype=np.float64))
        if grid.ndim != 1 or grid.size == 0 or not np.isfinite(grid).all():
            raise ValueError("thresholds must be a non-empty 1-D array of finite numbers")
        tests = [(o, o * float(t)) for o in (1, -1) for t in grid]
    orient = np.array([o for o, _ in tests])
    ts = np.array([t for _, t in tests])
    counts = [_counts(o * c, o * n, np.array([t])) for o, t in tests]
    fn = np.array([f[0] for f, _ in counts])
    fp = np.array([f[0] for _, f in counts])
    eps, mu, fnr_hi, fpr_hi = epsilon_at_counts(
        fn, fp, c.size, n.size, delta=delta, alpha=alpha / len(tests), method=method
    )
    i = int(np.argmax(eps))
    test = dict(
        threshold=float(ts[i]),
        orientation=int(orient[i]),
        fnr_upper=float(fnr_hi[i]),
        fpr_upper=float(fpr_hi[i]),
        trials=(int(c.size), int(n.size)),
        tests=len(tests),
    )
    return float(eps[i]), float(mu[i]), test


def epsilon_at_counts(
    false_negatives: npt.ArrayLike,
    false_positives: npt.ArrayLike,
    canary_trials: int,
    null_trials: int,
    *,
    delta: float,
    alpha: float,
    method: str = "clopper_pearson",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Epsilon lower bounds (or GDP estimates) of tests fixed in advance, from their error
    counts.

    Args:
      false_negatives: ``(t,)`` canary runs the test missed, of ``canary_trials``.
      false_positives: ``(t,)`` null runs it flagged, of ``null_trials``.
      delta: the DP delta.
      alpha: error probability of each test's bound: the two one-sided
        Clopper-Pearson bounds ``FNR_hi`` and ``FPR_hi`` are at ``alpha / 2`` each.
      method: ``"clopper_pearson"``: the lower bound
        ``max(log((1 - FNR_hi - delta) / FPR_hi), log((1 - FPR_hi - delta) / FNR_hi), 0)``;
        ``"gdp_estimate"``: the estimate :func:`gdp_epsilon` of
        ``mu = max(Phi^-1(1 - FNR_hi) - Phi^-1(FPR_hi), 0)``, valid only for a Gaussian
        privacy curve.

    Returns:
      ``(epsilon, mu, fnr_upper, fpr_upper)``, each ``(t,)`` (``mu`` also for
      Clopper-Pearson).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    fn = np.atleast_1d(np.asarray(false_negatives))
    fp = np.atleast_1d(np.asarray(false_positives))
    sizes = np.concatenate([np.full(fn.size, canary_trials), np.full(fp.size, null_trials)])
    bounds = clopper_pearson_upper(np.concatenate([fn, fp]), sizes, alpha / 2)
    fnr_hi, fpr_hi = bounds[: fn.size], bounds[fn.size :]
    mu = _gdp_mu(fnr_hi, fpr_hi)
    if method == "gdp_estimate":
        eps = np.array([gdp_epsilon(float(m), delta) for m in mu])
    else:
        eps = _cp_epsilon(fnr_hi, fpr_hi, delta)
    return eps, mu, fnr_hi, fpr_hi


def epsilon_clopper_pearson(
    canary: npt.ArrayLike,
    null: npt.ArrayLike,
    *,
    delta: float,
    confidence: float = 0.95,
    threshold: str | npt.ArrayLike = "split",
    split: float = 0.5,
    seed: int = 0,
) -> EpsilonBound:
    """Clopper-Pearson epsilon lower bound (Jagielski et al. 2020; Nasr et al. 2021).

    At a threshold ``t`` on the oriented scores, with one-sided Clopper-Pearson upper
    bounds ``FNR_hi`` and ``FPR_hi`` (each at ``(1 - confidence) / 2``), the bound is
    ``max(log((1 - FNR_hi - delta) / FPR_hi), log((1 - FPR_hi - delta) / FNR_hi), 0)``:
    the test "canary when score >= t" and the same test with the runs' roles swapped.
    It holds for every (epsilon, delta)-DP mechanism.

    Args:
      canary: ``(m_in,)`` scores of the runs with the canary.
      null: ``(m_out,)`` scores of the runs without it.
      delta: the DP delta.
      confidence: probability that the bound holds (is below the true epsilon).
      threshold: ``"split"``: a random ``split`` part of each side chooses the
        orientation and threshold, the rest gives the bound at that one test; or an
        array of thresholds fixed in advance: every threshold in both orientations,
        Bonferroni-corrected.
      split: the part of each side that chooses the threshold.
      seed: the split's random seed.

    Returns:
      An :class:`EpsilonBound`.
    """
    eps, _, test = _best_test(
        canary,
        null,
        delta=delta,
        confidence=confidence,
        threshold=threshold,
        split=split,
        seed=seed,
        method="clopper_pearson",
    )
    return EpsilonBound(epsilon=eps, **test)


def epsilon_gdp_estimate(
    canary: npt.ArrayLike,
    null: npt.ArrayLike,
    *,
    delta: float,
    confidence: float = 0.95,
    threshold: str | npt.ArrayLike = "split",
    split: float = 0.5,
    seed: int = 0,
) -> GDPEstimate:
    """Gaussian-DP epsilon *estimate* (Nasr et al. 2023, "Tight Auditing of Differentially
    Private Machine Learning"): not a lower bound on epsilon.

    ``mu_lower = Phi^-1(1 - FNR_hi) - Phi^-1(FPR_hi)`` with the Clopper-Pearson bounds of
    :func:`epsilon_clopper_pearson` at one test (chosen as there) bounds from below the mu
    of every mu-GDP guarantee the mechanism has. The estimate is :func:`gdp_epsilon` of
    that mu at ``delta``: the epsilon the mechanism would have *if its privacy curve were
    Gaussian* (the Gaussian mechanism; close for DP-SGD with many steps, Dong, Roth and Su
    2019). For other mechanisms it can exceed the true epsilon by far (randomized
    response, exactly 1-DP: about 4 from 1,024 + 1,024 trials). Arguments as
    :func:`epsilon_clopper_pearson`.

    Returns:
      A :class:`GDPEstimate`.
    """
    eps, mu, test = _best_test(
        canary,
        null,
        delta=delta,
        confidence=confidence,
        threshold=threshold,
        split=split,
        seed=seed,
        method="gdp_estimate",
    )
    return GDPEstimate(epsilon_estimate=eps, mu_lower=mu, **test)


def epsilon_ceiling(
    canary_trials: int,
    null_trials: int,
    *,
    delta: float,
    confidence: float = 0.95,
    method: str = "clopper_pearson",
    split: float = 0.5,
) -> float:
    """The largest value ``canary_trials`` and ``null_trials`` runs allow: that of
    perfectly separated scores (a mechanism without noise), with the same split. For
    Clopper-Pearson the most any mechanism can be shown to have with this many trials;
    for the GDP estimate an artefact of the Gaussian conversion (perfect separation of
    512 + 512 runs is no evidence of epsilon 32)."""
    ones, zeros = np.ones(canary_trials), np.zeros(null_trials)
    kw = dict(delta=delta, confidence=confidence, split=split)
    if method == "gdp_estimate":
        return epsilon_gdp_estimate(ones, zeros, **kw).epsilon_estimate
    if method != "clopper_pearson":
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return epsilon_clopper_pearson(ones, zeros, **kw).epsilon


# --------------------------------------------------------------------------------------
# The ideal mechanism of the Dirac canary
# --------------------------------------------------------------------------------------


def dirac_mechanism_scores(
    rng: np.random.Generator,
    canary_trials: int,
    null_trials: int,
    *,
    steps: int,
    sample_rate: float,
    noise_multiplier: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws from the exact output distribution of the white-box Dirac canary under
    DP-SGD with Poisson sampling and SGD, in units of the clipping norm ``C``.

    The canary's coordinate receives ``C`` each step the canary is sampled (probability
    ``sample_rate``) plus Gaussian noise of standard deviation ``noise_multiplier * C``,
    and no data gradient, so its total change over ``steps`` steps is (up to the sign and
    scale of the learning rate) ``Binomial(steps, q) + N(0, steps sigma^2)`` with the
    canary and ``N(0, steps sigma^2)`` without.

    Returns:
      ``(canary (canary_trials,), null (null_trials,))`` float64 scores.
    """
    sd = noise_multiplier * math.sqrt(steps)
    canary = rng.binomial(steps, sample_rate, canary_trials) + sd * rng.normal(size=canary_trials)
    null = sd * rng.normal(size=null_trials)
    return canary.astype(np.float64), null


def _log_binomial_pmf(steps: int, q: float) -> np.ndarray:
    """``(steps + 1,)`` ``log P(Binomial(steps, q) = k)``."""
    k = np.arange(steps + 1, dtype=np.float64)
    lgamma = np.vectorize(math.lgamma, otypes=[np.float64])
    choose = math.lgamma(steps + 1) - lgamma(k + 1) - lgamma(steps - k + 1)
    with np.errstate(divide="ignore"):
        return choose + k * np.log(q) + (steps - k) * np.log1p(-q)


def _bisect(f, lo: float, hi: float, iterations: int = 200) -> float:
    """The root of an increasing ``f`` in ``[lo, hi]`` (``f(lo) <= 0 <= f(hi)``)."""
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def _dirac_deltas(log_b: np.ndarray, s: float, epsilon: float) -> tuple[float, float]:
    """The deltas at ``epsilon`` of ``P = sum_k b_k N(k, s^2)`` against ``Q = N(0, s^2)``
    and of ``Q`` against ``P``: ``int (p - e^eps q)_+`` and ``int (q - e^eps p)_+``. The
    privacy loss ``L(x) = log(p(x) / q(x)) = logsumexp_k(log b_k + (k x - k^2 / 2) / s^2)``
    increases in ``x``, so each region is a half-line whose end solves ``L = +-epsilon``."""
    k = np.arange(log_b.size, dtype=np.float64)
    finite = np.isfinite(log_b)
    k, log_b = k[finite], log_b[finite]

    def loss(x: float) -> float:
        z = log_b + (k * x - k * k / 2) / (s * s)
        top = float(np.max(z))
        return top + math.log(float(np.sum(np.exp(z - top))))

    span = 40 * s + float(k.max())
    lo, hi = -span, span
    # P against Q: the region x > x0 with L(x0) = epsilon
    x0 = _bisect(lambda x: loss(x) - epsilon, lo, hi)
    p_tail = float(np.sum(np.exp(log_b) * normal_cdf((k - x0) / s)))
    d_pq = max(p_tail - math.exp(epsilon) * float(normal_cdf(-x0 / s)), 0.0)
    # Q against P: the region x < x1 with L(x1) = -epsilon (none when L > -epsilon)
    if loss(lo) >= -epsilon:
        return d_pq, 0.0
    x1 = _bisect(lambda x: loss(x) + epsilon, lo, hi)
    p_head = float(np.sum(np.exp(log_b) * normal_cdf((x1 - k) / s)))
    d_qp = max(float(normal_cdf(x1 / s)) - math.exp(epsilon) * p_head, 0.0)
    return d_pq, d_qp


def dirac_statistic_epsilon(
    steps: int, sample_rate: float, noise_multiplier: float, delta: float
) -> float:
    """The exact epsilon at ``delta`` of the white-box Dirac canary's statistic
    (:func:`dirac_mechanism_scores`): ``Binomial(steps, q) + N(0, steps sigma^2)`` with the
    canary against ``N(0, steps sigma^2)`` without, in both directions.

    No audit of that statistic can show more, whatever its trial count; the accountant's
    epsilon covers every output of training (every step's noisy gradient), so it is at
    least this. With ``steps = 1`` it is the exact epsilon of one step of the Poisson
    subsampled Gaussian mechanism. Bisection in float64 (to about 1e-9 relative).

    Returns:
      The smallest epsilon >= 0 at which both directions' delta is at most ``delta``
      (``inf`` without noise and ``sample_rate > 0``).
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if not 0 <= sample_rate <= 1 or steps < 1 or noise_multiplier < 0:
        raise ValueError(
            f"need steps >= 1, sample_rate in [0, 1] and noise_multiplier >= 0, got {steps}, "
            f"{sample_rate}, {noise_multiplier}"
        )
    if sample_rate == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    log_b = _log_binomial_pmf(steps, sample_rate)
    s = noise_multiplier * math.sqrt(steps)

    def excess(eps: float) -> float:
        return max(_dirac_deltas(log_b, s, eps)) - delta

    if excess(0.0) <= 0:
        return 0.0
    hi = 1.0
    while excess(hi) > 0:
        hi *= 2
    return _bisect(lambda e: -excess(e), 0.0, hi, iterations=60)


def ideal_reference(
    canary_trials: int,
    null_trials: int,
    *,
    steps: int,
    sample_rate: float,
    noise_multiplier: float,
    delta: float,
    confidence: float = 0.95,
    repetitions: int = 20,
    seed: int = 0,
    split: float = 0.5,
) -> dict[str, np.ndarray]:
    """The same estimators on ``repetitions`` simulated audits of the ideal Dirac
    mechanism (:func:`dirac_mechanism_scores`) with this many trials: what they reach on
    the exact distribution of the white-box statistic, so that the gap between the
    statistic's exact epsilon (:func:`dirac_statistic_epsilon`) and them is the price of
    the trial count (and of the estimator), not of the training code.

    Returns:
      ``{"clopper_pearson": lower bounds, "gdp_estimate": estimates}``, each
      ``(repetitions,)``.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {method: [] for method in METHODS}
    for r in range(repetitions):
        c, n = dirac_mechanism_scores(
            rng,
            canary_trials,
            null_trials,
            steps=steps,
            sample_rate=sample_rate,
            noise_multiplier=noise_multiplier,
        )
        kw = dict(delta=delta, confidence=confidence, split=split, seed=seed + r)
        out["clopper_pearson"].append(epsilon_clopper_pearson(c, n, **kw).epsilon)
        out["gdp_estimate"].append(epsilon_gdp_estimate(c, n, **kw).epsilon_estimate)
    return {k: np.asarray(v) for k, v in out.items()}
