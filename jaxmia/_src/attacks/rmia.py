"""RMIA: the Relative Membership Inference Attack of Zarifzadeh et al. 2024.

Zarifzadeh, Liu, Chang & Shokri, "Low-Cost High-Power Membership Inference Attacks"
(ICML 2024). With ``Pr(x | theta)`` the probability the target assigns to ``x``'s true
label and ``Pr(x)`` its average over reference models, the likelihood ratio of ``x``
against a population record ``z`` is

    LR(x, z) = (Pr(x | theta) / Pr(x)) / (Pr(z | theta) / Pr(z)),

and the score of ``x`` is the fraction of population records it dominates,
``Pr_z[LR(x, z) >= gamma]``.

* **online**: ``Pr(x)`` averages all reference models (IN and OUT for ``x``);
* **offline**: only OUT models, scaled as ``Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2``
  to account for the missing IN models (the paper's ``a``);
* **Attack-P** (the paper's population baseline, no reference models): ``Pr(x) = 1``.

The score is a count over a finite population, so many records tie (at the top most of
all, where TPR at low FPR is decided). Ties are broken by the continuous ratio
``Pr(x | theta) / Pr(x)``: the score is ``(count + rank) / |Z|`` with the rank of the ratio
scaled into ``[0, 1)``, which never reorders records with different counts. Without it,
a widely used implementation reports TPR 0 at 1% FPR on Location-30 at AUC 0.93.

Everything is computed from log-probabilities (``-loss``, :func:`log_probs`) in log space,
in float32; :func:`rmia_online`, :func:`rmia_offline` and :func:`attack_p` take NumPy or
JAX arrays and trace under ``jax.jit`` and ``jax.vmap`` (the population arrays are keyword
arguments, which ``jax.vmap`` maps along axis 0 like the positional ones). Every floating
dtype is accepted (``bfloat16`` and ``float16`` included) and computed in float32.

The score counts population records, so its gradient is zero almost everywhere: ``jax.grad``
of an RMIA score with respect to any log-probability returns zeros, not a signal to
optimise (use :func:`jaxmia.attacks.lira_online`, which is differentiable). Pass the
reference and population arrays to a jitted function as arguments, not closed-over
constants, which XLA would fold at compile time.
:func:`calibrate_rmia` chooses the softmax temperature and the offline ``a`` on the
reference models alone.

Example::

    lp = lambda logits: attacks.log_probs(logits, y)                 # (..., n)
    scores = attacks.rmia_online(lp(target_logits)[x], lp(ref_logits)[:, x], keep[:, x],
                                 target_log_p_z=lp(target_logits)[z],
                                 ref_log_p_z=lp(ref_logits)[:, z])
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxmia import signals
from jaxmia._src import metrics
from jaxmia._src.attacks import checks, registry
from jaxmia.settings import POS, POSITIVE_REAL, Range, Section, opt

__all__ = [
    "ATTACKS",
    "A_GRID",
    "TEMPERATURES",
    "RMIACalibration",
    "RMIAOptions",
    "attack_p",
    "calibrate_rmia",
    "log_prior",
    "log_probs",
    "log_probs_at_temperatures",
    "rmia_offline",
    "rmia_online",
]

A_GRID: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Values of the offline ``a`` tried by :func:`calibrate_rmia`."""


@functools.partial(jax.jit, static_argnames=("online",))
def log_prior(log_p_refs: jax.Array, keep: jax.Array, online: bool, a: float) -> jax.Array:
    """``log Pr(x)`` from the reference models' log-probabilities.

    Args:
      log_p_refs: ``(k, n)`` ``log Pr(x | theta_ref)`` of every reference model.
      keep: ``(k, n)`` bool, which reference models trained on each record.
      online: average all models; else only the OUT models, with the ``a`` scaling.
      a: offline scaling parameter in ``[0, 1]``.

    Returns:
      ``(n,)`` ``log Pr(x)``.
    """
    if online:
        return jax.nn.logsumexp(log_p_refs, axis=0) - jnp.log(log_p_refs.shape[0])
    out = ~keep
    n_out = jnp.maximum(jnp.sum(out, axis=0), 1)
    log_mean_out = jax.nn.logsumexp(jnp.where(out, log_p_refs, -jnp.inf), axis=0) - jnp.log(n_out)
    # log(((1 + a) * mean_out + (1 - a)) / 2), stable for a in [0, 1]
    return jnp.logaddexp(jnp.log1p(a) + log_mean_out, jnp.log1p(-a)) - jnp.log(2.0)


@jax.jit
def _log_mean_out(log_p_refs: jax.Array, keep: jax.Array) -> jax.Array:
    """``(n,)`` ``log Pr_OUT(x)``: the offline :func:`log_prior` before the ``a`` scaling."""
    out = ~keep
    n_out = jnp.maximum(jnp.sum(out, axis=0), 1)
    return jax.nn.logsumexp(jnp.where(out, log_p_refs, -jnp.inf), axis=0) - jnp.log(n_out)


@jax.jit
def _offline_priors(log_mean_out: jax.Array, a: jax.Array) -> jax.Array:
    """``(g, n)`` the offline :func:`log_prior` at each of ``g`` values ``a`` (float32),
    from :func:`_log_mean_out` computed once (the same bits as one call per ``a``)."""
    a = a[:, None]
    return jnp.logaddexp(jnp.log1p(a) + log_mean_out, jnp.log1p(-a)) - jnp.log(2.0)


@jax.jit
def _dominance(log_ratio_x: jax.Array, log_ratio_z: jax.Array, log_gamma: float) -> jax.Array:
    """``(count + tie-break) / |Z|`` where count = #{z : ratio_x / ratio_z >= gamma}."""
    sorted_z = jnp.sort(log_ratio_z)
    count = jnp.searchsorted(sorted_z, log_ratio_x - log_gamma, side="right")
    m = log_ratio_x.shape[0]
    rank = jnp.argsort(jnp.argsort(log_ratio_x)).astype(jnp.float32) / m  # in [0, 1)
    return (count + rank) / log_ratio_z.shape[0]


def _stable_order(v: np.ndarray) -> np.ndarray:
    """``np.argsort(v, kind="stable")`` of finite float32 ``v`` ``(m,)``, through one
    unstable sort of 64-bit keys (the value's order-preserving bits, then the index), 5-10x
    faster than NumPy's stable sort of floats; ``-0.0`` ties with ``0.0`` as there."""
    bits = (np.asarray(v, np.float32) + np.float32(0.0)).view(np.uint32)  # -0.0 -> 0.0
    ordered = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))  # monotone in v
    keys = (ordered.astype(np.uint64) << np.uint64(32)) | np.arange(bits.size, dtype=np.uint64)
    return (np.sort(keys) & np.uint64(0xFFFFFFFF)).astype(np.intp)


@functools.partial(jax.jit, static_argnames=("nz",))
def _tie_broken(count: jax.Array, inverse: jax.Array, nz: int) -> jax.Array:
    """``(count + inverse / m) / nz`` in float32: :func:`_dominance`'s arithmetic, in the
    same XLA program (constant divisors, fused), so that its bits are those of
    :func:`_dominance` on every CPU."""
    return (count + inverse.astype(jnp.float32) / inverse.shape[0]) / nz


def _dominance_host(
    log_ratio_x: np.ndarray, log_ratio_z: np.ndarray, log_gamma: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_dominance` with its sorts and counts in NumPy (XLA's sorts on the CPU are
    10-100x slower): the same integer counts and ranks, hence the same scores, bit for bit.
    Also returns the stable ascending order of ``log_ratio_x``, along which the scores do
    not decrease.

    Args:
      log_ratio_x: ``(m,)`` float32 candidates' log-ratios.
      log_ratio_z: ``(nz,)`` float32 population's log-ratios.
      log_gamma: ``log(gamma)``, rounded to float32 as in :func:`_dominance`.

    Returns:
      ``(scores (m,) float32, order (m,))``.
    """
    lx = np.asarray(log_ratio_x, np.float32)
    m, nz = lx.shape[0], np.shape(log_ratio_z)[0]
    order = _stable_order(lx)
    same = log_ratio_z is log_ratio_x  # candidates = population (the calibration)
    sorted_z = lx[order] if same else np.sort(np.asarray(log_ratio_z, np.float32))
    count = np.empty(m, np.int32)  # queries in ascending order: searchsorted walks forward
    count[order] = np.searchsorted(sorted_z, lx[order] - np.float32(log_gamma), side="right")
    inverse = np.empty(m, np.int32)  # = argsort(argsort(lx)) with the stable sort
    inverse[order] = np.arange(m, dtype=np.int32)
    return np.asarray(_tie_broken(count, inverse, nz)), order


def _dominate(log_ratio_x: ArrayLike, log_ratio_z: ArrayLike, log_gamma: ArrayLike) -> jax.Array:
    """:func:`_dominance`, on the host where the arrays are concrete (same bits)."""
    if checks.is_concrete(log_ratio_x, log_ratio_z, log_gamma):
        return jnp.asarray(_dominance_host(log_ratio_x, log_ratio_z, log_gamma)[0])
    return _dominance(log_ratio_x, log_ratio_z, log_gamma)


def log_probs(logits: ArrayLike, labels: ArrayLike, *, temperature: float = 1.0) -> jax.Array:
    """``log Pr(y | x)`` of the softmax at ``temperature``: RMIA's statistic.

    Args:
      logits: ``(..., n, c)`` model outputs.
      labels: ``(n,)`` true labels.
      temperature: the softmax temperature ``T`` (logits are divided by it).

    Returns:
      ``(..., n)`` float32 log-probabilities of the true labels (``-loss``).

    Raises:
      ValueError: if concrete ``labels`` lie outside ``[0, c)`` (through
        :func:`jaxmia.signals.loss`). Traced labels (an argument of a user's ``jax.jit``)
        cannot be checked; there such a label gives NaN.
    """
    return -signals.loss(logits / temperature, labels)


def _check_x_z(name: str, x: ArrayLike, z: ArrayLike, lead: tuple[int, ...]) -> None:
    """Static shape checks of a candidate array ``lead + (m,)`` and population ``lead + (nz,)``."""
    for which, a in ((name, x), (f"{name}_z", z)):
        if np.ndim(a) != len(lead) + 1 or np.shape(a)[:-1] != lead:
            want = "(k, ...)" if lead else "1-D"
            raise checks.AttackInputError(
                f"{which} must be {want} with shape {(*lead, 'n')}, got {np.shape(a)}"
            )


def _rmia(
    target_log_p, ref_log_p, keep, target_log_p_z, ref_log_p_z, keep_z, *, online, a, gamma
) -> jax.Array:
    """Checks (shapes always, values when concrete), then the jitted float32 pieces."""
    _check_x_z("target_log_p", target_log_p, target_log_p_z, ())
    if np.shape(target_log_p_z)[0] == 0:
        raise checks.AttackInputError("RMIA needs at least one population record z")
    if checks.is_concrete(a) and not 0.0 <= a <= 1.0:
        raise checks.AttackInputError(f"RMIA's a must lie in [0, 1], got {a}")
    if checks.is_concrete(gamma):
        if not gamma > 0:
            raise checks.AttackInputError(f"RMIA's gamma must be > 0, got {gamma}")
        log_gamma = float(np.log(gamma))
    else:
        log_gamma = jnp.log(gamma)
    lx = checks.as_float("target_log_p", target_log_p)
    lz = checks.as_float("target_log_p_z", target_log_p_z)
    if ref_log_p is None:
        return _dominate(lx, lz, log_gamma)
    k, m, nz = np.shape(ref_log_p)[0] if np.ndim(ref_log_p) else 0, lx.shape[0], lz.shape[0]
    if k == 0 or np.shape(ref_log_p) != (k, m) or np.shape(ref_log_p_z) != (k, nz):
        raise checks.AttackInputError(
            f"reference arrays must be (k, m) for m = {m} candidates and (k, nz) for "
            f"nz = {nz} population records, k >= 1; got ref_log_p {np.shape(ref_log_p)}, "
            f"ref_log_p_z {np.shape(ref_log_p_z)}"
        )
    kx = checks.as_keep("keep", keep, (k, m))
    kz = jnp.ones((k, nz), bool) if keep_z is None else checks.as_keep("keep_z", keep_z, (k, nz))
    rx = checks.as_float("ref_log_p", ref_log_p)
    rz = checks.as_float("ref_log_p_z", ref_log_p_z)
    if not online and checks.is_concrete(kx, kz):
        for what, kk in (("candidate", kx), ("population record", kz)):
            lacking = int(kk.shape[1] - np.asarray(~kk).any(axis=0).sum())
            if lacking:
                raise checks.AttackInputError(
                    f"offline RMIA needs at least one OUT reference model per {what}; "
                    f"{lacking} {what}(s) are members of every reference model"
                )
    lx = lx - log_prior(rx, kx, online, a)
    lz = lz - log_prior(rz, kz, online, a)
    return _dominate(lx, lz, log_gamma)


def rmia_online(
    target_log_p: ArrayLike,
    ref_log_p: ArrayLike,
    keep: ArrayLike,
    *,
    target_log_p_z: ArrayLike,
    ref_log_p_z: ArrayLike,
    keep_z: ArrayLike | None = None,
    gamma: float = 2.0,
) -> jax.Array:
    """Online RMIA (Zarifzadeh et al. 2024): ``Pr(x)`` averages all reference models.

    Args:
      target_log_p: ``(m,)`` ``log Pr(x | theta)`` of the target on the candidates
        (:func:`log_probs`, i.e. ``-loss``).
      ref_log_p: ``(k, m)`` the same under each reference (shadow) model.
      keep: ``(k, m)`` bool or 0/1 reference membership of the candidates (checked; the
        online prior uses every model).
      target_log_p_z: ``(nz,)`` the target on the population records ``z``.
      ref_log_p_z: ``(k, nz)`` the reference models on the population.
      keep_z: optional ``(k, nz)`` reference membership of the population (checked).
      gamma: likelihood-ratio threshold, ``> 0``.

    Returns:
      ``(m,)`` float32 scores in ``[0, 1 + 1/nz)`` (dominated population fraction plus the
      tie-break), higher = more likely a member. Piecewise constant: their gradient is
      zero (see the module's notes).

    Raises:
      AttackInputError: on mismatched shapes, no population record or reference model,
        NaN or infinite log-probabilities, a bad ``keep``, or ``gamma <= 0``.
    """
    return _rmia(
        target_log_p,
        ref_log_p,
        keep,
        target_log_p_z,
        ref_log_p_z,
        keep_z,
        online=True,
        a=0.0,
        gamma=gamma,
    )


def rmia_offline(
    target_log_p: ArrayLike,
    ref_log_p: ArrayLike,
    keep: ArrayLike,
    *,
    target_log_p_z: ArrayLike,
    ref_log_p_z: ArrayLike,
    keep_z: ArrayLike,
    a: float = 0.3,
    gamma: float = 2.0,
) -> jax.Array:
    """Offline RMIA (Zarifzadeh et al. 2024): OUT reference models only.

    ``Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2`` accounts for the missing IN models;
    choose ``a`` with :func:`calibrate_rmia`. Every candidate and population record needs
    at least one OUT reference model.

    Args:
      target_log_p: ``(m,)`` the target's ``log Pr(x | theta)`` on the candidates.
      ref_log_p: ``(k, m)`` the reference models on the candidates.
      keep: ``(k, m)`` bool or 0/1 reference membership of the candidates.
      target_log_p_z: ``(nz,)`` the target on the population.
      ref_log_p_z: ``(k, nz)`` the reference models on the population.
      keep_z: ``(k, nz)`` bool or 0/1 reference membership of the population.
      a: offline scaling of ``Pr_OUT(x)``, in ``[0, 1]``.
      gamma: likelihood-ratio threshold, ``> 0``.

    Returns:
      ``(m,)`` float32 scores, higher = more likely a member.

    Raises:
      AttackInputError: as :func:`rmia_online`, or ``a`` outside ``[0, 1]``, or a record
        without OUT reference models.
    """
    return _rmia(
        target_log_p,
        ref_log_p,
        keep,
        target_log_p_z,
        ref_log_p_z,
        keep_z,
        online=False,
        a=a,
        gamma=gamma,
    )


def attack_p(
    target_log_p: ArrayLike,
    ref_log_p: ArrayLike | None = None,
    keep: ArrayLike | None = None,
    *,
    target_log_p_z: ArrayLike,
    gamma: float = 2.0,
) -> jax.Array:
    """Attack-P (Ye et al. 2022, "Enhanced Membership Inference Attacks against Machine
    Learning Models", CCS): the population attack, RMIA's score with ``Pr(x) = 1``.

    No reference model: ``x`` scores the fraction of population records ``z`` with
    ``Pr(x | theta) / Pr(z | theta) >= gamma`` (ties broken as in RMIA).

    Args:
      target_log_p: ``(m,)`` the target's ``log Pr(x | theta)`` on the candidates.
      ref_log_p: unused (accepted so that every attack is called alike); must be ``None``
        or ``(k, m)``.
      keep: unused; ``None`` or ``(k, m)`` bool or 0/1.
      target_log_p_z: ``(nz,)`` the target on the population records.
      gamma: likelihood-ratio threshold, ``> 0``.

    Returns:
      ``(m,)`` float32 scores, higher = more likely a member.
    """
    m = np.shape(target_log_p)[:1]
    if ref_log_p is not None and (np.ndim(ref_log_p) != 2 or np.shape(ref_log_p)[1:] != m):
        raise checks.AttackInputError(f"ref_log_p must be (k, *{m}), got {np.shape(ref_log_p)}")
    if keep is not None:
        checks.as_keep("keep", keep, np.shape(ref_log_p) if ref_log_p is not None else None)
    return _rmia(
        target_log_p, None, None, target_log_p_z, None, None, online=True, a=0.0, gamma=gamma
    )


class RMIACalibration(NamedTuple):
    """RMIA's settings chosen on the reference models.

    Attributes:
      temperature: the softmax temperature.
      a: the offline scaling ``a`` (``None`` for the online attack, which has none).
    """

    temperature: float
    a: float | None


def _log_p_at(
    ref: ArrayLike | Mapping[float, ArrayLike],
    labels: ArrayLike | None,
    temperatures: tuple[float, ...],
):
    """``(T -> (k, n) log-probabilities, (k, n))``: of logits at ``T``, given ones
    (``T = 1``), or given ones per temperature."""
    if isinstance(ref, Mapping):
        if labels is not None:
            raise checks.AttackInputError("labels go with logits, not log-probabilities")
        missing = [t for t in temperatures if t not in ref]
        if missing:
            raise checks.AttackInputError(f"no log-probabilities at temperature(s) {missing}")
        shapes = {np.shape(ref[t]) for t in temperatures}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise checks.AttackInputError(
                f"log-probabilities per temperature must share one (k, n) shape, got {shapes}"
            )
        return (lambda t: np.asarray(ref[t])), next(iter(shapes))
    if labels is None:
        if np.ndim(ref) != 2:
            raise checks.AttackInputError(
                f"without labels, give (k, n) log-probabilities; got shape {np.shape(ref)}"
            )
        if tuple(temperatures) != (1.0,):
            raise checks.AttackInputError(
                "temperatures other than 1 need the reference logits (k, n, c) and labels"
            )
        return (lambda t: np.asarray(ref)), np.shape(ref)
    if np.ndim(ref) != 3:
        raise checks.AttackInputError(f"ref_logits must be (k, n, c), got {np.shape(ref)}")
    return (lambda t: np.asarray(log_probs(ref, labels, temperature=t))), np.shape(ref)[:2]


def calibrate_rmia(
    ref_logits: ArrayLike | Mapping[float, ArrayLike],
    keep: ArrayLike,
    *,
    labels: ArrayLike | None = None,
    online: bool,
    temperatures: tuple[float, ...] = (1.0,),
    a_grid: tuple[float, ...] = A_GRID,
    pseudo_targets: int = 2,
) -> RMIACalibration:
    """Chooses RMIA's softmax temperature and offline ``a`` on the reference models alone.

    As in Zarifzadeh et al. 2024 (who tune ``a`` this way), each of the first
    ``pseudo_targets`` reference models in turn plays the target and the others the
    references (its candidates also serve as the population); the setting with the highest
    mean AUC over the pseudo-targets wins (the first in grid order on ties). The target's
    own membership is never used. Host-side (NumPy); not traceable.

    Args:
      ref_logits: ``(k, n, c)`` reference logits with ``labels``; or ``(k, n)``
        log-probabilities with ``labels=None`` (then only ``T = 1`` is possible); or
        ``{T: (k, n)}`` log-probabilities at every temperature of ``temperatures``
        (:func:`log_probs`, computed once by a caller that needs them again).
      keep: ``(k, n)`` bool or 0/1 reference membership.
      labels: ``(n,)`` true labels, for logits.
      online: calibrate the online attack (temperature only) or the offline one.
      temperatures: candidate temperatures.
      a_grid: candidate values of ``a`` (offline only).
      pseudo_targets: how many reference models serve as pseudo-targets.

    Returns:
      :class:`RMIACalibration` ``(temperature, a)``; ``a`` is ``None`` when online.
    """
    log_p_at, shape = _log_p_at(ref_logits, labels, temperatures)
    keep = np.asarray(checks.as_keep("keep", keep, shape))
    bad = [a for a in a_grid if not 0.0 <= a <= 1.0]
    if bad and not online:
        raise checks.AttackInputError(f"RMIA's a must lie in [0, 1], got {bad[0]}")
    k = keep.shape[0]
    grid = [(t, a) for t in temperatures for a in ((None,) if online else a_grid)]
    if k < 2 or len(grid) == 1:
        return RMIACalibration(*grid[0])
    totals = np.zeros(len(grid))
    log_gamma = float(np.log(2.0))  # the attacks' default gamma
    for temperature in temperatures:
        log_p = np.asarray(checks.as_float("reference log-probabilities", log_p_at(temperature)))
        for t in range(min(pseudo_targets, k)):
            others = np.arange(k) != t
            usable = np.ones(keep.shape[1], bool) if online else (~keep[others]).any(axis=0)
            member = keep[t, usable]
            if member.all() or not member.any():
                continue
            pick = np.ix_(np.flatnonzero(others), np.flatnonzero(usable))
            # device_put, not jnp.asarray: the shapes differ per pseudo-target, and
            # jnp.asarray of a NumPy array compiles a copy for every shape
            lp = jax.device_put(np.asarray(log_p[pick], np.float32))
            kp, lt = jax.device_put(np.asarray(keep[pick], bool)), log_p[t, usable]
            cells = [j for j, (tj, _) in enumerate(grid) if tj == temperature]
            if online:
                priors = np.asarray(log_prior(lp, kp, True, 0.0))[None]
            else:  # Pr_OUT once, then every a
                a_values = jnp.asarray([grid[j][1] for j in cells], jnp.float32)
                priors = np.asarray(_offline_priors(_log_mean_out(lp, kp), a_values))
            for j, prior in zip(cells, priors, strict=True):
                # the pseudo-target's records are candidates and population at once: the
                # scores of rmia_online / rmia_offline(a=a) with x = z, from one sort
                ratio = lt - prior
                s, order = _dominance_host(ratio, ratio, log_gamma)
                totals[j] += metrics.auc(member, s.astype(np.float64), order=order)
    return RMIACalibration(*grid[int(np.argmax(totals))])


TEMPERATURES = (1.0, 1.5, 2.0, 3.0)
"""Softmax temperatures the audit tries when it calibrates RMIA on the reference models."""


def log_probs_at_temperatures(logits: np.ndarray, labels: np.ndarray) -> dict[float, np.ndarray]:
    """RMIA's log-probabilities ``{T: (k, n)}`` of a pool's ``(k, n, c)`` ``logits`` at
    every temperature of :data:`TEMPERATURES`, on the host: computed once for every
    leave-one-out target (each row depends on its own model's logits alone)."""
    return {t: np.asarray(log_probs(logits, labels, temperature=t)) for t in TEMPERATURES}


def _pool_wide(inputs: registry.AttackInputs):
    """Leave-one-out: the whole pool's log-probabilities at every temperature, computed
    once; target ``t`` reads its row as its own and the others' as the references."""
    if inputs.shadows.logits is None:
        return lambda t: {}
    lp = log_probs_at_temperatures(inputs.shadows.logits, inputs.labels)

    def cut(t: int) -> dict:
        known: dict = {}
        for T, values in lp.items():
            known["ref", T], known["target", T] = np.delete(values, t, axis=0), values[t]
        return known

    return cut


@dataclasses.dataclass(frozen=True)
class RMIAOptions(Section):
    """The audit's settings of RMIA online and offline and of Attack-P, shared by the three
    (:attr:`jaxmia.attacks.Attack.options`; each a flat audit setting, ``--rmia-gamma``)."""

    rmia_a: float | None = opt(None, "offline RMIA's a (default: calibrated)", b=Range(0, 1))
    rmia_gamma: float = opt(2.0, "RMIA's likelihood-ratio threshold gamma", b=POSITIVE_REAL)
    population_size: int | None = opt(None, "RMIA population records z (default: all)", b=POS)


def _population(online_or_offline: str, inputs: registry.AttackInputs) -> np.ndarray:
    """RMIA's population ``z``: pool records (a seeded subset of ``population_size``
    of them, if set); offline, only those with an OUT reference model."""
    shadows, settings = inputs.shadows, inputs.settings
    population = np.flatnonzero(shadows.pool)
    size = settings.population_size
    if size is not None and size < population.size:
        rng = np.random.default_rng([settings.seed, 23])
        population = np.sort(rng.choice(population, size, replace=False))
    if online_or_offline != "offline":
        return population
    z = population[(~shadows.keep[:, population]).any(axis=0)]
    if z.size < population.size:
        inputs.note(
            f"RMIA offline: {population.size - z.size} of {population.size} "
            "population records are members of every shadow model and are "
            "left out of the population"
        )
    return z


def _cached_log_probs(inputs: registry.AttackInputs, who: str, logits, temperature: float):
    """``log_probs(logits, labels, temperature)`` on the host, once per
    ``(who, temperature)`` in the target's cache (RMIA online and offline share them)."""
    cache = inputs.cache
    if (who, temperature) not in cache:
        cache[who, temperature] = np.asarray(
            log_probs(logits, inputs.labels, temperature=temperature)
        )
    return cache[who, temperature]


def _attack_p_score(inputs: registry.AttackInputs) -> registry.Scores:
    """The audit's Attack-P: the target's ``-loss`` against the population's."""
    z = _population("attack_p", inputs)
    lp = -inputs.target["loss"]
    s = attack_p(lp[inputs.candidates], target_log_p_z=lp[z], gamma=inputs.settings.rmia_gamma)
    return registry.Scores(np.asarray(s, dtype=np.float64), None)


def _scorer(online: bool):
    """The audit's :attr:`jaxmia.attacks.Attack.score` of RMIA: the softmax temperature
    (when the logits are visible) and the offline ``a`` calibrated on the reference
    models (:func:`calibrate_rmia`), then the candidates scored against the population."""

    def score(inputs: registry.AttackInputs) -> registry.Scores:
        shadows, settings = inputs.shadows, inputs.settings
        z = _population("online" if online else "offline", inputs)
        pool = shadows.pool
        if shadows.logits is not None:  # log-probabilities at every temperature
            temperatures = TEMPERATURES
            ref_at = {t: _cached_log_probs(inputs, "ref", shadows.logits, t) for t in temperatures}
        else:  # only the loss is visible: the temperature stays 1
            temperatures = (1.0,)
            ref_at = {1.0: -shadows.signals["loss"]}
        fixed_a = {} if settings.rmia_a is None else {"a_grid": (settings.rmia_a,)}
        temperature, a = calibrate_rmia(
            {t: ref_at[t][:, pool] for t in temperatures},
            shadows.keep[:, pool],
            online=online,
            temperatures=temperatures,
            **fixed_a,
        )
        inputs.note(
            f"RMIA {'online' if online else 'offline'}: softmax temperature {temperature}"
            + ("" if online else f", a = {a}")
            + " (calibrated on the reference models)"
        )
        ref = ref_at[temperature]
        if inputs.target_logits is not None:
            lp = _cached_log_probs(inputs, "target", inputs.target_logits, temperature)
        else:
            lp = -inputs.target["loss"]
        keep, x = shadows.keep, inputs.candidates
        population = dict(
            target_log_p_z=lp[z],
            ref_log_p_z=ref[:, z],
            keep_z=keep[:, z],
            gamma=settings.rmia_gamma,
        )
        if online:
            s = rmia_online(lp[x], ref[:, x], keep[:, x], **population)
        else:
            s = rmia_offline(lp[x], ref[:, x], keep[:, x], a=a, **population)
        return registry.Scores(np.asarray(s, dtype=np.float64), None)

    return score


_ZARIFZADEH = "Zarifzadeh et al. 2024"
_LOG_PROBABILITY = "log-probability (+ population z)"
ATTACKS: tuple[registry.Attack, ...] = (
    registry.Attack(
        name="rmia_online",
        score=_scorer(online=True),
        signals=("loss",),
        reads=frozenset({"logits"}),
        online=True,
        pool_wide=_pool_wide,
        statistic=_LOG_PROBABILITY,
        paper=_ZARIFZADEH,
        core=rmia_online,
        core_input="log_probability",
        options=RMIAOptions,
    ),
    registry.Attack(
        name="rmia_offline",
        score=_scorer(online=False),
        signals=("loss",),
        reads=frozenset({"logits"}),
        pool_wide=_pool_wide,
        statistic=_LOG_PROBABILITY,
        paper=_ZARIFZADEH,
        core=rmia_offline,
        core_input="log_probability",
        options=RMIAOptions,
    ),
    registry.Attack(
        name="attack_p",
        score=_attack_p_score,
        signals=("loss",),
        statistic=_LOG_PROBABILITY,
        paper="Ye et al. 2022",
        core=attack_p,
        core_input="log_probability",
        options=RMIAOptions,
    ),
)
"""RMIA online, offline and Attack-P as the audit runs them
(:mod:`jaxmia.attacks.registry`)."""
