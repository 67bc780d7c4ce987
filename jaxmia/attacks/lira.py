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
attack work with 2 models). With several queries per
example (augmentations such as flips and shifts, ``q`` of them), the per-query scores are
averaged (``combine="mean"``, the paper's choice), or the queries are treated as one
``q``-dimensional Gaussian with a pooled covariance (``combine="multivariate"``).

A variance floor of ``1e-6`` is added to every fitted variance (and to the diagonal of a
pooled covariance) so that models that agree exactly do not give infinite scores. All
inputs are arrays; the scoring is jitted.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr

VARIANCES = ("per_example", "global")
COMBINES = ("mean", "multivariate")
_EPS = 1e-6


class LiRAError(ValueError):
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


@functools.partial(jax.jit, static_argnames=("online", "variance", "combine"))
def _scores(target_phi, shadow_phi, keep, online, variance, combine):
    target_phi = target_phi if target_phi.ndim == 2 else target_phi[:, None]
    mask_in = jnp.broadcast_to(keep[..., None], shadow_phi.shape)
    mask_out = ~mask_in
    mu_out = _masked_median(shadow_phi, mask_out)
    if combine == "multivariate":
        lp_out = _mvn_logpdf(target_phi, mu_out, _pooled_cov(shadow_phi, mask_out, mu_out))
        if not online:
            return -lp_out  # how improbable the target's outputs are for a non-member
        mu_in = _masked_median(shadow_phi, mask_in)
        lp_in = _mvn_logpdf(target_phi, mu_in, _pooled_cov(shadow_phi, mask_in, mu_in))
        return lp_in - lp_out
    sd_out = jnp.sqrt(_variance(shadow_phi, mask_out, mu_out, variance) + _EPS)
    if not online:
        z = (target_phi - mu_out) / sd_out
        return jnp.mean(-log_ndtr(-z), axis=-1)
    mu_in = _masked_median(shadow_phi, mask_in)
    sd_in = jnp.sqrt(_variance(shadow_phi, mask_in, mu_in, variance) + _EPS)
    lp_in = jax.scipy.stats.norm.logpdf(target_phi, mu_in, sd_in)
    lp_out = jax.scipy.stats.norm.logpdf(target_phi, mu_out, sd_out)
    return jnp.mean(lp_in - lp_out, axis=-1)


def scores(
    target_phi: np.ndarray,
    shadow_phi: np.ndarray,
    keep: np.ndarray,
    *,
    online: bool = True,
    variance: str = "per_example",
    combine: str = "mean",
) -> np.ndarray:
    """LiRA membership scores of the target's candidates.

    Args:
      target_phi: ``(m,)`` or ``(m, q)`` the target's logit-scaled confidence on the
        candidates (``q`` queries per candidate, e.g. augmentations).
      shadow_phi: ``(k, m)`` or ``(k, m, q)`` the same statistic under each shadow model.
      keep: ``(k, m)`` bool, which shadow models trained on each candidate.
      online: use IN and OUT models (needs at least one of each per candidate);
        ``False`` is the offline attack (OUT models only).
      variance: ``"per_example"`` (needs two models per side) or ``"global"``.
      combine: ``"mean"`` or ``"multivariate"`` over the ``q`` queries.

    Returns:
      ``(m,)`` float64 scores, higher = more likely a member.

    Raises:
      LiRAError: if the shapes do not match, a value is NaN or infinite, or some
        candidate has too few IN/OUT models for the variant.
    """
    if variance not in VARIANCES:
        raise LiRAError(f"variance must be one of {', '.join(VARIANCES)}, got {variance!r}")
    if combine not in COMBINES:
        raise LiRAError(f"combine must be one of {', '.join(COMBINES)}, got {combine!r}")
    keep = np.asarray(keep, bool)
    shadow_phi = np.asarray(shadow_phi, np.float32)
    if keep.ndim != 2 or shadow_phi.ndim not in (2, 3) or shadow_phi.shape[:2] != keep.shape:
        raise LiRAError(
            f"shadow_phi {shadow_phi.shape} must be (k, m) or (k, m, q) for keep (k, m), "
            f"got keep {keep.shape}"
        )
    shadow_phi = _as_3d(shadow_phi)
    target_phi = np.asarray(target_phi, np.float32)
    m, q = shadow_phi.shape[1:]
    if target_phi.shape != (m, q) and (q > 1 or target_phi.shape != (m,)):
        raise LiRAError(
            f"target_phi {target_phi.shape} does not match shadow_phi {shadow_phi.shape}: "
            f"expected ({m}, {q})" + (f" or ({m},)" if q == 1 else "")
        )
    for name, values in (("target_phi", target_phi), ("shadow_phi", shadow_phi)):
        bad = int(np.size(values) - np.isfinite(values).sum())
        if bad:
            raise LiRAError(f"{name} has {bad} NaN or infinite value(s)")
    if m == 0:
        return np.zeros(0)
    need = 2 if variance == "per_example" and combine == "mean" else 1
    n_out = (~keep).sum(axis=0).min()
    n_in = keep.sum(axis=0).min()
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
    out = _scores(
        jnp.asarray(target_phi),
        shadow_phi,
        jnp.asarray(keep),
        online,
        variance,
        combine,
    )
    return np.asarray(out, dtype=np.float64)


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
