"""Float64 statistics for privacy audits: the normal distribution, the incomplete beta
function, one-sided Clopper-Pearson bounds on binomial rates, and the privacy curve of
Gaussian differential privacy.

NumPy float64 on the host, with the standard library's normal distribution and a continued
fraction for the incomplete beta function: JAX's float32 default is too coarse for tails of
1e-5, and scipy is not a dependency of jaxmia (tests compare with scipy).
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import numpy.typing as npt

__all__ = [
    "betainc",
    "binomial_sf",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "gdp_delta",
    "gdp_epsilon",
    "normal_cdf",
    "normal_ppf",
]

_NORMAL = statistics.NormalDist()
_TINY = 1e-300


# --------------------------------------------------------------------------------------
# Special functions (float64, vectorised)
# --------------------------------------------------------------------------------------


def normal_cdf(x: npt.ArrayLike) -> np.ndarray:
    """Standard normal CDF ``Phi(x)`` in float64, accurate in the lower tail (erfc)."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * np.vectorize(math.erfc, otypes=[np.float64])(-x / math.sqrt(2.0))


def normal_ppf(p: npt.ArrayLike) -> np.ndarray:
    """Standard normal quantile ``Phi^-1(p)`` in float64 (``-inf`` at 0, ``inf`` at 1)."""
    p = np.asarray(p, dtype=np.float64)

    def one(v: float) -> float:
        if v <= 0:
            return -math.inf
        if v >= 1:
            return math.inf
        return _NORMAL.inv_cdf(v)

    return np.vectorize(one, otypes=[np.float64])(p)


def _log_ndtr(x: float) -> float:
    """``log Phi(x)`` for a scalar, with the asymptotic series
    ``Phi(x) = phi(x) / -x * sum_n (-1)^n (2n - 1)!! / x^(2n)`` far in the lower tail
    (``x <= -30``: its terms shrink by ``(2n + 1) / x^2`` until ``n ~ x^2 / 2``; summed
    until they fall below float64 rounding)."""
    if x > -30:
        return math.log(0.5 * math.erfc(-x / math.sqrt(2.0)))
    x2 = x * x
    series, term, n = 1.0, 1.0, 1
    while abs(term) > 1e-17:
        term *= -(2 * n - 1) / x2
        series += term
        n += 1
    return -x2 / 2 - math.log(-x) - 0.5 * math.log(2 * math.pi) + math.log(series)


def _betacf(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Continued fraction of the incomplete beta function (modified Lentz), vectorised;
    converges for ``x < (a + 1) / (a + b + 2)`` in ``O(sqrt(max(a, b)))`` terms."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 - qab * x / qap
    d = 1.0 / np.where(np.abs(d) < _TINY, _TINY, d)
    h = d.copy()
    limit = 100 + 10 * int(math.sqrt(float(np.max(np.maximum(a, b), initial=1.0))))
    for m in range(1, limit + 1):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / np.where(np.abs(d) < _TINY, _TINY, d)
            c = 1.0 + aa / c
            c = np.where(np.abs(c) < _TINY, _TINY, c)
            step = d * c
            h = h * step
        if np.all(np.abs(step - 1.0) < 1e-15):
            break
    return h


def betainc(a: npt.ArrayLike, b: npt.ArrayLike, x: npt.ArrayLike) -> np.ndarray:
    """Regularised incomplete beta function ``I_x(a, b)`` in float64 (``a, b > 0``,
    ``0 <= x <= 1``), by its continued fraction (Numerical Recipes, section 6.4).

    Args:
      a, b, x: arrays that broadcast together.

    Returns:
      ``I_x(a, b)``, the CDF of Beta(a, b) at ``x``, with the broadcast shape.
    """
    a, b, x = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, x)))
    direct = x < (a + 1.0) / (a + b + 2.0)
    aa, bb, xx = np.where(direct, a, b), np.where(direct, b, a), np.where(direct, x, 1.0 - x)
    inner = (xx > 0) & (xx < 1)
    xs = np.where(inner, xx, 0.5)
    lgamma = np.vectorize(math.lgamma, otypes=[np.float64])
    log_front = lgamma(aa + bb) - lgamma(aa) - lgamma(bb) + aa * np.log(xs) + bb * np.log1p(-xs)
    part = np.where(inner, np.exp(log_front) * _betacf(aa, bb, xs) / aa, np.where(xx >= 1, 1, 0))
    return np.clip(np.where(direct, part, 1.0 - part), 0.0, 1.0)


def binomial_sf(k: npt.ArrayLike, n: npt.ArrayLike, p: npt.ArrayLike) -> np.ndarray:
    """``P(Binomial(n, p) >= k)`` in float64 (1 for ``k <= 0``, 0 for ``k > n``)."""
    k, n, p = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (k, n, p)))
    inside = (k >= 1) & (k <= n)
    value = betainc(np.where(inside, k, 1.0), np.where(inside, n - k + 1, 1.0), p)
    return np.where(inside, value, np.where(k <= 0, 1.0, 0.0))


def clopper_pearson_upper(
    successes: npt.ArrayLike, trials: npt.ArrayLike, alpha: float
) -> np.ndarray:
    """One-sided Clopper-Pearson upper bound on a binomial rate: the ``p`` with
    ``P(Binomial(trials, p) <= successes) = alpha`` (1 when ``successes == trials``), the
    ``1 - alpha`` quantile of Beta(successes + 1, trials - successes).

    Args:
      successes: ``(...)`` integer counts.
      trials: integer(s) broadcasting with ``successes``.
      alpha: one-sided error probability in ``(0, 1)``.

    Returns:
      Float64 upper bounds, covering the true rate with probability at least
      ``1 - alpha``.
    """
    k, n = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (successes, trials)))
    full = k >= n
    kk, nn = np.where(full, 0.0, k), np.where(full, 1.0, n)
    lo, hi = np.zeros_like(kk), np.ones_like(kk)
    for _ in range(64):  # P(X <= k) = 1 - I_p(k + 1, n - k) falls as p grows
        mid = 0.5 * (lo + hi)
        above = 1.0 - betainc(kk + 1.0, nn - kk, mid) > alpha
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return np.where(full, 1.0, hi)


def clopper_pearson_lower(
    successes: npt.ArrayLike, trials: npt.ArrayLike, alpha: float
) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound:
    ``1 - clopper_pearson_upper(trials - successes, trials, alpha)`` (0 when
    ``successes == 0``)."""
    k, n = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (successes, trials)))
    return 1.0 - clopper_pearson_upper(n - k, n, alpha)


# --------------------------------------------------------------------------------------
# Gaussian differential privacy
# --------------------------------------------------------------------------------------


def gdp_delta(mu: float, epsilon: float) -> float:
    """The delta of mu-GDP at ``epsilon`` (Dong, Roth and Su 2019, Corollary 2.13):
    ``Phi(-epsilon/mu + mu/2) - exp(epsilon) Phi(-epsilon/mu - mu/2)``, in log space."""
    if mu <= 0:
        return 0.0
    if math.isinf(mu):
        return 1.0
    la = _log_ndtr(-epsilon / mu + mu / 2)
    lb = epsilon + _log_ndtr(-epsilon / mu - mu / 2)
    return 0.0 if lb >= la else math.exp(la + math.log1p(-math.exp(lb - la)))


def gdp_epsilon(mu: float, delta: float) -> float:
    """The smallest epsilon at which mu-GDP is (epsilon, delta)-DP: the root of
    :func:`gdp_delta` (bisection to 1e-12; 0 for ``mu <= 0``, ``inf`` for ``mu = inf``).

    Example: ``gdp_epsilon(0.3, 1e-5)`` is 1.13.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if mu <= 0 or gdp_delta(mu, 0.0) <= delta:
        return 0.0
    if math.isinf(mu):
        return math.inf
    lo, hi = 0.0, 1.0
    while gdp_delta(mu, hi) > delta:
        lo, hi = hi, 2 * hi
    while hi - lo > 1e-12 * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if gdp_delta(mu, mid) > delta else (lo, mid)
    return hi
