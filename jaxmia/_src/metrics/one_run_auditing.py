"""The one-run privacy audit (Steinke, Nasr and Jagielski 2023, "Privacy Auditing with One
(1) Training Run"): ``m`` canaries, each included in one training run with probability
1/2, and an epsilon lower bound from how many of the most confident guesses of their
inclusion are right. NumPy float64 on the host.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

__all__ = ["OneRunBound", "epsilon_one_run"]


def _check_levels(delta: float, confidence: float) -> None:
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")


@dataclasses.dataclass(frozen=True)
class OneRunBound:
    """The one-run bound (:func:`epsilon_one_run`).

    Attributes:
      epsilon: the lower bound.
      guesses: how many canaries were guessed (the most confident ones).
      correct: how many of those guesses were right.
      canaries: ``m``, the canaries in the run.
    """

    epsilon: float
    guesses: int
    correct: int
    canaries: int


def _binomial_tails(r: int, q: float) -> np.ndarray:
    """``P(Binomial(r, q) >= j)`` for ``j = 0 .. r + 1`` (``(r + 2,)``), by summing the
    probability mass function from the top (float64; exact to rounding)."""
    j = np.arange(r + 1)
    log_choose = np.concatenate([[0.0], np.cumsum(np.log(r - j[:-1]) - np.log(j[1:]))])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pmf = log_choose + j * math.log(q) + (r - j) * math.log1p(-q)
    pmf = np.exp(np.nan_to_num(log_pmf, nan=-np.inf))
    return np.minimum(np.concatenate([np.cumsum(pmf[::-1])[::-1], [0.0]]), 1.0)


def _one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """Steinke, Nasr and Jagielski 2023, Theorem 5.2: the probability of ``v`` or more
    right among ``r`` guesses under (epsilon, delta)-DP, for ``m`` canaries."""
    tails = _binomial_tails(r, 1 / (1 + math.exp(-epsilon)))
    beta = float(tails[v])
    if delta == 0 or v == 0:
        return beta
    i = np.arange(1, v + 1)
    alpha = float(np.max((tails[v - i] - beta) / i, initial=0.0))
    return min(beta + alpha * delta * 2 * m, 1.0)


def _one_run_epsilon(m: int, r: int, v: int, significance: float, delta: float) -> float:
    """The largest epsilon the guesses reject at ``significance`` (0 if none)."""
    if r == 0 or _one_run_p_value(m, r, v, 0.0, delta) > significance:
        return 0.0
    lo, hi = 0.0, 1.0
    while _one_run_p_value(m, r, v, hi, delta) <= significance:
        lo, hi = hi, 2 * hi
        if hi > 1e3:
            return math.inf
    while hi - lo > 1e-7 * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _one_run_p_value(m, r, v, mid, delta) <= significance else (lo, mid)
    return lo


def epsilon_one_run(
    scores: npt.ArrayLike,
    included: npt.ArrayLike,
    *,
    delta: float,
    confidence: float = 0.95,
    guesses: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
    two_sided: bool = True,
) -> OneRunBound:
    """One-run epsilon lower bound (Steinke, Nasr and Jagielski 2023, "Privacy Auditing
    with One (1) Training Run").

    Each of ``m`` canaries was included in the one training run with probability 1/2. For
    each fraction ``f`` of ``guesses`` (fixed in advance), the attacker guesses the
    ``r = round(f m)`` most confident canaries: the highest-scoring half "included" and
    the lowest-scoring half "excluded" (``two_sided``; else the ``r`` highest
    "included"), and the bound is the largest epsilon whose p-value for that many right
    guesses is at most ``(1 - confidence) / len(guesses)`` (Bonferroni over the
    fractions).

    Args:
      scores: ``(m,)`` canary scores, higher = more likely included.
      included: ``(m,)`` bool, which canaries were in the run.
      delta: the DP delta.
      confidence: probability that the bound holds.
      guesses: fractions of ``m`` to guess.
      two_sided: guess at both ends of the scores.

    Returns:
      A :class:`OneRunBound` (the best fraction's).
    """
    s = np.asarray(scores, dtype=np.float64)
    inc = np.asarray(included)
    if s.ndim != 1 or inc.shape != s.shape or s.size < 2 or not np.isfinite(s).all():
        raise ValueError(
            f"scores must be (m,) finite numbers and included (m,) bools, got shapes "
            f"{s.shape} and {inc.shape}"
        )
    _check_levels(delta, confidence)
    fractions = tuple(float(f) for f in guesses)
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise ValueError(f"guesses must be fractions in (0, 1], got {guesses!r}")
    m = s.size
    order = np.argsort(-s, kind="stable")
    inc = inc.astype(bool)[order]
    significance = (1 - confidence) / len(fractions)
    best = OneRunBound(0.0, 0, 0, m)
    for f in fractions:
        r = max(1, round(f * m))
        top = (r + 1) // 2 if two_sided else r
        bottom = r - top
        v = int(inc[:top].sum()) + int((~inc[m - bottom :]).sum() if bottom else 0)
        eps = _one_run_epsilon(m, r, v, significance, delta)
        if eps > best.epsilon:
            best = OneRunBound(eps, r, v, m)
    return best
