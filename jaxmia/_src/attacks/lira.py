"""LiRA: the Likelihood Ratio Attack of Carlini et al. 2022.

Carlini, Chien, Nasr, Song, Terzis & Tramèr, "Membership Inference Attacks From First
Principles" (IEEE S&P 2022). For every candidate ``x`` the attack looks at the
logit-scaled confidence ``phi = log p_y - log(1 - p_y)`` of ``x`` under every shadow model
(:func:`jaxmia.signals.logit_scaled_confidence`), fits a Gaussian to the values of the
models that trained on ``x`` (IN) and one to those that did not (OUT), and compares the
target's ``phi``:

* **online**: ``log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2)``;
* **offline** (OUT models only): the one-sided test ``-log Pr[Z > phi]`` with
  ``Z ~ N(mu_out, s_out^2)``, large when ``phi`` is improbably high for a non-member.

Means are per-example medians, as in the paper's code. Variances are per example, or
*global* (the variance of all IN, resp. OUT, values over every example and model: the
paper's "fixed variance", recommended below ~64 shadow models; it is what makes the
attack work with 2 models); the default ``variance="auto"`` takes per-example variances from
64 shadow models on and global ones below, as the audit does. With several queries per
example (augmentations such as flips and shifts, ``q`` of them), the per-query scores are
averaged (``combine="mean"``, the paper's choice), or the queries are treated as one
``q``-dimensional Gaussian with a pooled covariance (``combine="multivariate"``); the query
axis is declared (``queries=q``), so that logits ``(k, m, c)`` given in place of ``phi`` are
refused rather than scored as ``c`` queries.

A variance floor of ``1e-6`` is added to every fitted variance (and to the diagonal of a
pooled covariance) so that models that agree exactly do not give infinite scores.
:func:`lira_online` and :func:`lira_offline` take NumPy or JAX arrays and return float32 JAX
arrays; the scoring is a jitted float32 core, and both trace under ``jax.jit`` and
``jax.vmap``::

    scores = attacks.lira_online(target_phi, shadow_phi, keep)            # (m,)
    per_target = jax.vmap(attacks.lira_online)(phis, shadow_phis, keeps)  # (t, m)
    augmented = attacks.lira_online(target_phi_q, shadow_phi_q, keep, queries=q)

The scores are differentiable in the target's ``phi`` (:func:`lira_online`); a pool closed
over in a jitted function is fitted eagerly, not folded into the compiled program.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr
from jax.typing import ArrayLike

from jaxmia._src.attacks import checks, registry
from jaxmia.settings import Section, opt

__all__ = [
    "ATTACKS",
    "AUTO_PER_EXAMPLE",
    "COMBINES",
    "VARIANCES",
    "LiRAError",
    "LiRAOptions",
    "augment_images",
    "lira_offline",
    "lira_online",
    "resolve_variance",
]

VARIANCES: tuple[str, ...] = ("auto", "per_example", "global")
"""Variance estimates of LiRA's Gaussians; ``"auto"`` picks by the number of models."""
COMBINES: tuple[str, ...] = ("mean", "multivariate")
"""Ways to combine the ``q`` queries of a candidate."""
AUTO_PER_EXAMPLE = 64
"""From this many shadow models on, ``variance="auto"`` uses per-example variances."""
_EPS = 1e-6


class LiRAError(checks.AttackInputError):
    """The shadow pool cannot support the requested LiRA variant."""


def _masked_median(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Median over axis 0 of ``values`` where ``mask`` (``(k, n, q) -> (n, q)``)."""
    return jnp.nanmedian(jnp.where(mask, values, jnp.nan), axis=0)


def _variance(values, mask, center, variance):
    """Per-example variance ``(n, q)`` around ``center``, or the global variance of all
    masked values of every example (the paper's "fixed variance", which also works with
    one model per side), broadcast to ``(n, q)``."""
    count = jnp.sum(mask, axis=0)
    if variance == "global":
        total = jnp.sum(count, axis=0)
        mean = jnp.sum(jnp.where(mask, values, 0.0), axis=(0, 1)) / total
        ss = jnp.sum(jnp.where(mask, (values - mean) ** 2, 0.0), axis=(0, 1))
        return jnp.broadcast_to(ss / jnp.maximum(total - 1, 1), center.shape)
    r2 = jnp.where(mask, (values - center[None]) ** 2, 0.0)
    return jnp.sum(r2, axis=0) / jnp.maximum(count - 1, 1)


def _pooled_cov(values, mask, center):
    """``(q, q)`` covariance of residuals pooled over examples and models."""
    r = jnp.where(mask, values - center[None], 0.0)  # (k, n, q)
    count = jnp.sum(mask[..., 0])
    cov = jnp.einsum("kni,knj->ij", r, r) / jnp.maximum(count - 1, 1)
    return cov + _EPS * jnp.eye(cov.shape[0])


def _mvn_logpdf(x, mean, cov):
    """``log N(x; mean, cov)`` for ``x, mean`` of shape ``(n, q)`` and one ``cov``."""
    chol = jnp.linalg.cholesky(cov)
    z = jax.scipy.linalg.solve_triangular(chol, (x - mean).T, lower=True)  # (q, n)
    logdet = 2 * jnp.sum(jnp.log(jnp.diag(chol)))
    q = x.shape[-1]
    return -0.5 * (jnp.sum(z**2, axis=0) + logdet + q * jnp.log(2 * jnp.pi))


def _as_3d(x):
    x = jnp.asarray(x, jnp.float32)
    return x[..., None] if x.ndim == 2 else x


def _fit(shadow_phi, keep, online, variance, combine) -> tuple[jax.Array, ...]:
    """The Gaussians fitted to the shadow models' ``phi`` ``(k, n, q)``: ``(mu_out,
    spread_out)``, then ``(mu_in, spread_in)`` when ``online``; means ``(n, q)``, spreads
    standard deviations ``(n, q)`` (``combine="mean"``) or one ``(q, q)`` covariance
    (``"multivariate"``)."""
    mask_in = jnp.broadcast_to(keep[..., None], shadow_phi.shape)
    sides = (~mask_in, mask_in) if online else (~mask_in,)
    fit = []
    for mask in sides:
        mu = _masked_median(shadow_phi, mask)
        if combine == "multivariate":
            spread = _pooled_cov(shadow_phi, mask, mu)
        else:
            spread = jnp.sqrt(_variance(shadow_phi, mask, mu, variance) + _EPS)
        fit += [mu, spread]
    return tuple(fit)


def _score_fit(target_phi, fit, online, combine) -> jax.Array:
    """``(n,)`` scores of the target's ``phi`` ``(n,)`` or ``(n, q)`` under :func:`_fit`'s
    Gaussians."""
    target_phi = target_phi if target_phi.ndim == 2 else target_phi[:, None]
    if combine == "multivariate":
        lp_out = _mvn_logpdf(target_phi, fit[0], fit[1])
        if not online:
            return -lp_out  # how improbable the target's outputs are for a non-member
        return _mvn_logpdf(target_phi, fit[2], fit[3]) - lp_out
    mu_out, sd_out = fit[:2]
    if not online:
        z = (target_phi - mu_out) / sd_out
        return jnp.mean(-log_ndtr(-z), axis=-1)
    lp_in = jax.scipy.stats.norm.logpdf(target_phi, fit[2], fit[3])
    lp_out = jax.scipy.stats.norm.logpdf(target_phi, mu_out, sd_out)
    return jnp.mean(lp_in - lp_out, axis=-1)


@functools.partial(jax.jit, static_argnames=("online", "variance", "combine"))
def _scores(target_phi, shadow_phi, keep, online, variance, combine):
    fit = _fit(shadow_phi, keep, online, variance, combine)
    return _score_fit(target_phi, fit, online, combine)


_fitted = jax.jit(_fit, static_argnames=("online", "variance", "combine"))
_scored = jax.jit(_score_fit, static_argnames=("online", "combine"))


def resolve_variance(variance: str, num_shadows: int) -> str:
    """``"auto"`` resolved for ``num_shadows`` models: ``"per_example"`` from
    :data:`AUTO_PER_EXAMPLE` models on, ``"global"`` below (Carlini et al. 2022 recommend
    the fixed, global variance for small pools); other values are returned as they are."""
    if variance not in VARIANCES:
        raise LiRAError(f"variance must be one of {', '.join(VARIANCES)}, got {variance!r}")
    if variance == "auto":
        return "per_example" if num_shadows >= AUTO_PER_EXAMPLE else "global"
    return variance


def _check_counts(keep: np.ndarray, online: bool, variance: str, combine: str) -> None:
    """Refuses candidates with too few IN/OUT models for the variant (concrete keep)."""
    need = 2 if variance == "per_example" and combine == "mean" else 1
    n_out = int((~keep).sum(axis=0).min())
    n_in = int(keep.sum(axis=0).min())
    if n_out < need:
        raise LiRAError(
            f"LiRA ({variance} variance) needs at least {need} OUT model(s) for every "
            f"candidate; some have {n_out}"
        )
    if online and n_in < need:
        raise LiRAError(
            f"online LiRA ({variance} variance) needs at least {need} IN model(s) for every "
            f"candidate, some have {n_in}: use a balanced shadow pool or the offline attack"
        )


def _lira(target_phi, shadow_phi, keep, *, queries, online, variance, combine) -> jax.Array:
    """Checks (shapes always, values when concrete), then the jitted float32 core.

    A concrete pool (``shadow_phi`` and ``keep``) is converted, checked and fitted eagerly
    (``jax.ensure_compile_time_eval``), also when the target is traced: a pool closed over
    in a user's ``jax.jit`` then enters the traced program as its fitted Gaussians, not as
    constants whose median sorts XLA would fold at compile time (seconds at a few hundred
    shadow models, and pages of ``slow_operation_alarm``).
    """
    if combine not in COMBINES:
        raise LiRAError(f"combine must be one of {', '.join(COMBINES)}, got {combine!r}")
    s_shape, t_shape = np.shape(shadow_phi), np.shape(target_phi)
    if len(s_shape) not in (2, 3):
        raise LiRAError(f"shadow_phi must be (k, m) or (k, m, q), got shape {s_shape}")
    m, q = s_shape[1], (s_shape[2] if len(s_shape) == 3 else 1)
    _check_queries(queries, s_shape)
    if t_shape != (m, q) and (q > 1 or t_shape != (m,)):
        raise LiRAError(
            f"target_phi {t_shape} does not match shadow_phi {s_shape}: "
            f"expected ({m}, {q})" + (f" or ({m},)" if q == 1 else "")
        )
    concrete_pool = checks.is_concrete(shadow_phi, keep)
    with jax.ensure_compile_time_eval() if concrete_pool else contextlib.nullcontext():
        keep = checks.as_keep("keep", keep, s_shape[:2], LiRAError)
        variance = resolve_variance(variance, s_shape[0])
        target_phi = checks.as_float("target_phi", target_phi, LiRAError)
        shadow_phi = _as_3d(checks.as_float("shadow_phi", shadow_phi, LiRAError))
        if m == 0:
            return jnp.zeros(0, jnp.float32)
        if concrete_pool:
            _check_counts(np.asarray(keep), online, variance, combine)
            if not checks.is_concrete(target_phi):
                fit = _fitted(shadow_phi, keep, online, variance, combine)
                return _scored(target_phi, fit, online, combine)
        return _scores(target_phi, shadow_phi, keep, online, variance, combine)


def _check_queries(queries: int | None, s_shape: tuple[int, ...]) -> None:
    """Refuses a query axis ``q > 1`` (3-D ``shadow_phi``) that ``queries`` does not
    declare: logits ``(k, m, c)`` given for ``phi`` would otherwise pass as ``c`` queries."""
    if queries is not None and (
        isinstance(queries, bool) or not isinstance(queries, numbers.Integral)
    ):
        raise LiRAError(f"queries must be an int (the length of the query axis), got {queries!r}")
    if len(s_shape) == 2:
        if queries not in (None, 1):
            raise LiRAError(
                f"queries={queries} but shadow_phi {s_shape} has no query axis: give "
                f"(k, m, {queries}) and (m, {queries})"
            )
    elif queries is None and s_shape[2] != 1:
        raise LiRAError(
            f"shadow_phi {s_shape} has a query axis of {s_shape[2]}: pass queries="
            f"{s_shape[2]} if every candidate was queried {s_shape[2]} times (LiRA takes "
            "the logit-scaled confidence, signals.logit_scaled_confidence, not logits)"
        )
    elif queries not in (None, s_shape[2]):
        raise LiRAError(f"queries={queries} but shadow_phi {s_shape} has {s_shape[2]} queries")


def lira_online(
    target_phi: ArrayLike,
    shadow_phi: ArrayLike,
    keep: ArrayLike,
    *,
    queries: int | None = None,
    variance: str = "auto",
    combine: str = "mean",
) -> jax.Array:
    """Online LiRA (Carlini et al. 2022): IN and OUT Gaussians per candidate.

    Score ``log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2)`` (averaged over the
    ``q`` queries, or one ``q``-dimensional Gaussian with ``combine="multivariate"``).
    Accepts NumPy or JAX arrays of any floating dtype (``bfloat16`` and ``float16``
    included), computed in float32; traces under ``jax.jit`` and ``jax.vmap`` (e.g. over
    targets; pass ``queries``/``variance``/``combine`` with ``functools.partial`` or as
    static arguments). Value checks run only on concrete inputs.

    The score is differentiable in ``target_phi``: ``jax.grad`` of a score (or their sum)
    gives the Gaussians' log-density slope, finite wherever the score is (the fitted
    means and variances do not depend on the target).

    Pass the pool (``shadow_phi``, ``keep``) to a jitted function as arguments rather
    than closing over it. A closed-over pool is safe here (it is fitted eagerly, and the
    traced program holds only the fitted Gaussians), but a constant pool in code of your
    own (e.g. :func:`jax.numpy.nanmedian` of it) is folded by XLA at compile time, which
    can take seconds.

    Args:
      target_phi: ``(m,)`` or ``(m, q)`` the target's logit-scaled confidence on the
        candidates (:func:`jaxmia.signals.logit_scaled_confidence`; ``q`` queries per
        candidate, e.g. augmentations), not its logits.
      shadow_phi: ``(k, m)`` or ``(k, m, q)`` the same statistic under each shadow model.
      keep: ``(k, m)`` bool or 0/1, which shadow models trained on each candidate.
      queries: ``q``, required with a query axis of ``q > 1`` (3-D ``shadow_phi``), so
        that logits ``(k, m, c)`` given by mistake are refused, not read as ``c`` queries.
      variance: ``"auto"`` (per example from 64 shadow models on, global below),
        ``"per_example"`` (needs two models per side) or ``"global"``.
      combine: ``"mean"`` or ``"multivariate"`` over the ``q`` queries.

    Returns:
      ``(m,)`` float32 scores, higher = more likely a member.

    Raises:
      LiRAError: if the shapes do not match, a query axis is not declared by ``queries``,
        a value is NaN or infinite, ``keep`` is not bool or 0/1, or some candidate has too
        few IN/OUT models for the variant.
    """
    return _lira(
        target_phi,
        shadow_phi,
        keep,
        queries=queries,
        online=True,
        variance=variance,
        combine=combine,
    )


def lira_offline(
    target_phi: ArrayLike,
    shadow_phi: ArrayLike,
    keep: ArrayLike,
    *,
    queries: int | None = None,
    variance: str = "auto",
    combine: str = "mean",
) -> jax.Array:
    """Offline LiRA (Carlini et al. 2022): OUT models only.

    Score ``-log Pr[Z > phi]`` with ``Z ~ N(mu_out, s_out^2)``, large when ``phi`` is
    improbably high for a non-member (with ``combine="multivariate"``,
    ``-log N(phi; mu_out, cov_out)``). The same arguments, shapes, dtypes, tracing and gradient as
    :func:`lira_online`; the IN models in ``keep`` are ignored.

    Args:
      target_phi: ``(m,)`` or ``(m, q)`` the target's logit-scaled confidence.
      shadow_phi: ``(k, m)`` or ``(k, m, q)`` the shadow models' statistic.
      keep: ``(k, m)`` bool or 0/1 shadow membership.
      queries: ``q``, required with a query axis.
      variance: ``"auto"``, ``"per_example"`` or ``"global"``.
      combine: ``"mean"`` or ``"multivariate"``.

    Returns:
      ``(m,)`` float32 scores, higher = more likely a member.

    Raises:
      LiRAError: as :func:`lira_online` (only OUT models are counted).
    """
    return _lira(
        target_phi,
        shadow_phi,
        keep,
        queries=queries,
        online=False,
        variance=variance,
        combine=combine,
    )


def augment_images(
    x: np.ndarray, *, flip: bool = True, shifts: tuple[int, ...] = (1,)
) -> np.ndarray:
    """Query augmentations of images ``(n, h, w, c)``: identity, horizontal flip and
    shifts by ``s`` pixels in four directions (edges padded with zeros), as in
    Carlini et al. 2022.

    Returns:
      ``(q, n, h, w, c)``: the identity first.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"augmentations need images shaped (n, h, w, c), got {x.shape}")
    views = [x]
    if flip:
        views.append(x[:, :, ::-1])
    for s in shifts:
        for axis, step in ((1, s), (1, -s), (2, s), (2, -s)):
            shifted = np.roll(x, step, axis=axis)
            index = [slice(None)] * 4
            index[axis] = slice(0, step) if step > 0 else slice(step, None)
            shifted[tuple(index)] = 0
            views.append(shifted)
    return np.stack(views)


@dataclasses.dataclass(frozen=True)
class LiRAOptions(Section):
    """The audit's settings of LiRA online and offline
    (:attr:`jaxmia.attacks.Attack.options`; each a flat audit setting, ``--lira-variance``,
    ``--augment``). ``augment`` is read where the queries are extracted
    (:mod:`jaxmia._src.audit.setup`), ``lira_variance`` by the score."""

    lira_variance: str = opt(
        "auto", "LiRA variance (auto: per example from 64 shadows on)", c=VARIANCES
    )
    augment: bool = opt(False, "query LiRA with flipped and shifted images (image data only)")


def _scorer(online: bool):
    """The audit's :attr:`jaxmia.attacks.Attack.score` of LiRA: the candidates' ``phi``
    (one per query view) against the shadows', the variance resolved from the settings'
    ``lira_variance`` for the pool size."""

    def score(inputs: registry.AttackInputs) -> registry.Scores:
        attack = lira_online if online else lira_offline
        k = inputs.shadows.keep.shape[0]
        variance = resolve_variance(inputs.settings.lira_variance, k)
        shadow_phi = inputs.shadows.phi[:, inputs.candidates]  # (k, m) or (k, m, q)
        queries = shadow_phi.shape[2] if shadow_phi.ndim == 3 else None
        target_phi = inputs.target_phi[inputs.candidates]
        s = attack(target_phi, shadow_phi, inputs.keep, queries=queries, variance=variance)
        inputs.note(f"LiRA variance: {variance} ({k} shadow models)")
        return registry.Scores(np.asarray(s, dtype=np.float64), None)

    return score


_CARLINI = "Carlini et al. 2022"
ATTACKS: tuple[registry.Attack, ...] = (
    registry.Attack(
        name="lira_online",
        score=_scorer(online=True),
        signals=("logit_scaled_confidence",),
        reads=frozenset({"phi"}),
        online=True,
        statistic="logit-scaled confidence",
        paper=_CARLINI,
        core=lira_online,
        core_input="statistic",
        options=LiRAOptions,
    ),
    registry.Attack(
        name="lira_offline",
        score=_scorer(online=False),
        signals=("logit_scaled_confidence",),
        reads=frozenset({"phi"}),
        statistic="logit-scaled confidence",
        paper=_CARLINI,
        core=lira_offline,
        core_input="statistic",
        options=LiRAOptions,
    ),
)
"""LiRA online and offline as the audit runs them (:mod:`jaxmia.attacks.registry`)."""
