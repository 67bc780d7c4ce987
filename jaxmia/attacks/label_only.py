"""Label-only membership inference by robustness to input perturbations.

The attacker sees only the target's predicted labels (the ``"label"`` access level of
:mod:`jaxmia.threat_models`, e.g. behind :func:`jaxmia.defences.perturbation.label_only`). Following
Choquette-Choo et al. 2021, "Label-Only Membership Inference Attacks" (ICML), it queries the
target on ``q`` slightly perturbed copies of each candidate -- the original first, then
random bit flips, Gaussian noise or image augmentations (:func:`perturb_inputs`) -- and scores
the candidate by the fraction of copies that are still classified correctly
(:func:`correctness_scores`): a model tends to be right, and robustly right, around its
training points. With ``q = 1`` (no perturbation) this is the gap attack of Yeom et al. 2018
("Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting", CSF), whose
only information is whether the prediction is correct; the perturbed queries refine it.

The decision threshold is calibrated on shadow models exactly like
:mod:`jaxmia.attacks.threshold`: the shadow pool answers the same perturbed queries and the
threshold maximises the accuracy of ``fraction >= tau`` over the shadows' members and
non-members (:func:`jaxmia.metrics.best_threshold`).

Scores take only ``q + 1`` values ``0, 1/q, ..., 1``, so many candidates tie (most members
score exactly 1). Ties are kept, not broken by any other signal: the ROC then has at most
``q + 1`` vertices and the TPR at low FPR is coarse. More queries give a finer score.

Example::

    scores, tau = label_only.attack(
        lambda x: target_model(x),                # (n, c) outputs; only the argmax is used
        lambda x: engine.predict(pool, x),        # (k, n, c)
        ds.x, ds.y, pool.keep, None, candidates, n_queries=16,
    )
    auc = metrics.auc(membership, scores)
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxmia import metrics

__all__ = [
    "DEFAULT_STRENGTH",
    "KINDS",
    "NEEDS",
    "attack",
    "correctness_scores",
    "perturb_inputs",
    "resolve_kind",
]

KINDS: tuple[str, ...] = ("auto", "flip", "gaussian", "shift", "image")
"""Input perturbations of :func:`perturb_inputs`:

* ``"flip"``: binary features, each flipped (0 <-> 1) independently with probability
  ``strength``;
* ``"gaussian"``: continuous features plus ``N(0, strength^2)`` noise, in feature units (the
  bundled and loaded tables are standardised or in ``[0, 1]``, so ``strength`` is relative to
  the features' scale); values are not clipped;
* ``"shift"``: images ``(n, h, w, ch)`` translated by a random integer offset in
  ``[-strength, strength]`` pixels along each axis, zero-padded;
* ``"image"``: ``"shift"`` plus a horizontal flip with probability 1/2 -- the augmentations
  of Choquette-Choo et al. 2021. For data without mirror symmetry (digits) use ``"shift"``;
* ``"auto"``: ``"image"`` for 4-D inputs, ``"flip"`` when every value is 0 or 1,
  ``"gaussian"`` otherwise.
"""

DEFAULT_STRENGTH: dict[str, float] = {"flip": 0.02, "gaussian": 0.1, "shift": 1, "image": 1}
"""``strength`` used when none is given: flip probability, noise std in feature units, or
maximum shift in pixels."""

NEEDS: tuple[str, ...] = ("correctness",)
"""Signals of :mod:`jaxmia.signals` the attack uses: only whether the predicted label is
correct, which the ``"probs"`` and ``"label"`` access levels provide."""


# --------------------------------------------------------------------------- perturbations


@jax.jit
def _flip_bits(x: jax.Array, key: jax.Array, rate: jax.Array) -> jax.Array:
    flip = jax.random.bernoulli(key, rate, x.shape)
    return jnp.where(flip, 1 - x, x)


@jax.jit
def _add_noise(x: jax.Array, key: jax.Array, std: jax.Array) -> jax.Array:
    return x + std.astype(x.dtype) * jax.random.normal(key, x.shape, x.dtype)


@functools.partial(jax.jit, static_argnames=("max_shift", "mirror"))
def _shift_images(x: jax.Array, key: jax.Array, max_shift: int, mirror: bool) -> jax.Array:
    n, h, w, ch = x.shape
    k_shift, k_flip = jax.random.split(key)
    offsets = jax.random.randint(k_shift, (n, 2), -max_shift, max_shift + 1)
    padded = jnp.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))

    def one(img, off):  # output pixel (i, j) = input pixel (i - dy, j - dx), zero outside
        start = (max_shift - off[0], max_shift - off[1], 0)
        return jax.lax.dynamic_slice(img, start, (h, w, ch))

    out = jax.vmap(one)(padded, offsets)
    if mirror:
        flip = jax.random.bernoulli(k_flip, 0.5, (n, 1, 1, 1))
        out = jnp.where(flip, out[:, :, ::-1], out)
    return out


def resolve_kind(kind: str, x: ArrayLike) -> str:
    """The perturbation ``kind`` (one of :data:`KINDS`) with ``"auto"`` resolved for ``x``.

    Args:
      kind: A name in :data:`KINDS`.
      x: Inputs, shape ``(n, ...)``.

    Returns:
      ``"flip"``, ``"gaussian"``, ``"shift"`` or ``"image"``.

    Raises:
      ValueError: If ``kind`` is unknown, or an image kind gets inputs that are not 4-D.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown perturbation kind {kind!r}; choose one of {', '.join(KINDS)}")
    x = np.asarray(x)
    if kind == "auto":
        if x.ndim == 4:
            return "image"
        return "flip" if bool(np.all((x == 0) | (x == 1))) else "gaussian"
    if kind in ("shift", "image") and x.ndim != 4:
        raise ValueError(f"{kind!r} perturbs images shaped (n, h, w, ch), got shape {x.shape}")
    return kind


def _check_strength(kind: str, strength: float | None) -> float | int:
    if strength is None:
        return DEFAULT_STRENGTH[kind]
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real):
        raise ValueError(f"strength must be a number, got {strength!r}")
    if kind == "flip" and not 0 <= strength <= 1:
        raise ValueError(f"the bit-flip probability must be in [0, 1], got {strength!r}")
    if kind == "gaussian" and not (math.isfinite(strength) and strength >= 0):
        raise ValueError(f"the noise std must be finite and >= 0, got {strength!r}")
    if kind in ("shift", "image") and (
        not math.isfinite(strength) or int(strength) != strength or strength < 0
    ):
        raise ValueError(
            f"the maximum shift must be a whole number of pixels >= 0, got {strength!r}"
        )
    return int(strength) if kind in ("shift", "image") else float(strength)


def _copies(
    x: np.ndarray, key: jax.Array, n_queries: int, kind: str, strength: float | int
) -> Iterator[jax.Array]:
    """Yields the ``n_queries`` query copies of ``x``: ``x`` itself, then perturbations drawn
    with ``fold_in(key, i)`` for copy ``i``, so a larger ``n_queries`` only appends copies."""
    xd = jnp.asarray(x, jnp.float32)
    yield xd
    for i in range(1, n_queries):
        k = jax.random.fold_in(key, i)
        if kind == "flip":
            yield _flip_bits(xd, k, jnp.float32(strength))
        elif kind == "gaussian":
            yield _add_noise(xd, k, jnp.float32(strength))
        else:
            max_shift = min(int(strength), xd.shape[1], xd.shape[2])
            yield _shift_images(xd, k, max_shift, kind == "image")


def _check_queries(n_queries: int) -> int:
    if isinstance(n_queries, bool) or not isinstance(n_queries, numbers.Integral) or n_queries < 1:
        raise ValueError(f"n_queries must be an integer >= 1, got {n_queries!r}")
    return int(n_queries)


def perturb_inputs(
    x: ArrayLike,
    key: jax.Array,
    *,
    n_queries: int,
    kind: str = "auto",
    strength: float | None = None,
) -> jax.Array:
    """``n_queries`` query copies of the inputs: the original first, then random perturbations.

    See :data:`KINDS` for the perturbations. Copy ``i >= 1`` is drawn from
    ``jax.random.fold_in(key, i)`` independently for every example (and feature or image), so
    the same key reproduces the same copies and a larger ``n_queries`` extends a smaller one.

    Args:
      x: Inputs, shape ``(n, d)`` for tables or ``(n, h, w, ch)`` for images.
      key: A JAX PRNG key.
      n_queries: Number of copies ``q >= 1``, including the unperturbed original.
      kind: One of :data:`KINDS`.
      strength: Flip probability (``"flip"``), noise std in feature units (``"gaussian"``)
        or maximum shift in pixels (``"shift"``, ``"image"``); ``None`` takes
        :data:`DEFAULT_STRENGTH`.

    Returns:
      Float32 array of shape ``(q, n, ...)`` with ``out[0] == x``.

    Raises:
      ValueError: On an unknown kind, an invalid strength or ``n_queries < 1``.
    """
    n_queries = _check_queries(n_queries)
    x = np.asarray(x)
    kind = resolve_kind(kind, x)
    strength = _check_strength(kind, strength)
    return jnp.stack(list(_copies(x, key, n_queries, kind, strength)))


# --------------------------------------------------------------------------- scores


@jax.jit
def correctness_scores(pred_labels: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Fraction of the ``q`` queries whose predicted label is the true one.

    Args:
      pred_labels: Integer predicted labels, shape ``(q, ..., n)`` -- e.g. ``(q, n)`` for the
        target or ``(q, k, n)`` for a pool of ``k`` models.
      labels: True labels, shape ``(n,)`` (broadcast against ``(..., n)``).

    Returns:
      Float32 membership scores in ``{0, 1/q, ..., 1}``, shape ``(..., n)``; higher means
      more likely a member.

    Raises:
      ValueError: If there is no query (``q = 0``).
    """
    if jnp.ndim(pred_labels) == 0 or jnp.shape(pred_labels)[0] == 0:
        raise ValueError(
            f"need predictions shaped (q, ..., n), q >= 1, got {jnp.shape(pred_labels)}"
        )
    correct = jnp.asarray(pred_labels) == jnp.asarray(labels)
    return jnp.mean(correct, axis=0, dtype=jnp.float32)


def _predicted_labels(out: ArrayLike, shape: tuple[int, ...], who: str) -> np.ndarray:
    """Predicted labels of shape ``shape`` from outputs ``shape + (c,)`` or labels ``shape``."""
    out = np.asarray(out)
    if out.shape[:-1] == shape and out.ndim == len(shape) + 1:
        return out.argmax(axis=-1)
    if out.shape == shape and np.issubdtype(out.dtype, np.integer):
        return out
    raise ValueError(
        f"{who} must return outputs shaped {(*shape, 'c')} or integer labels shaped {shape}, "
        f"got {out.shape} {out.dtype}"
    )


def attack(
    target_predict: Callable[[np.ndarray], ArrayLike],
    shadow_predict: Callable[[np.ndarray], ArrayLike],
    x: ArrayLike,
    y: ArrayLike,
    keep: ArrayLike,
    pool: ArrayLike | None,
    candidates: ArrayLike,
    *,
    n_queries: int = 16,
    strength: float | None = None,
    kind: str = "auto",
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """Scores the target's candidates with the label-only attack of Choquette-Choo et al.

    Every example is queried ``n_queries`` times (:func:`perturb_inputs`, the same copies
    for the target and the shadows). The target's score of a candidate is the fraction of
    its copies it classifies correctly; the threshold is the accuracy-maximising one on the
    shadow models' fractions over the pool examples, against their membership ``keep``.

    Args:
      target_predict: ``x (m, ...) -> (m, c)`` outputs (logits or probabilities; only the
        argmax is used) or ``(m,)`` integer labels of the target.
      shadow_predict: ``x (p, ...) -> (k, p, c)`` outputs or ``(k, p)`` labels of the shadow
        pool, e.g. ``lambda x: engine.predict(pool, x)``.
      x: All examples, shape ``(n, ...)``.
      y: Their labels, shape ``(n,)``.
      keep: ``(k, n)`` bool shadow membership.
      pool: ``(n,)`` bool examples whose shadow answers calibrate the threshold, or ``None``
        for all.
      candidates: ``(m,)`` indices into ``x`` (or an ``(n,)`` bool mask) of the target's
        candidates.
      n_queries: Queries per example ``q >= 1``, the original included.
      strength: Perturbation strength (see :func:`perturb_inputs`); ``None`` for the default.
      kind: One of :data:`KINDS`.
      seed: Seed of the perturbations.

    Returns:
      ``(scores, tau)``: ``(m,)`` float64 fractions of correct answers (higher = member) and
      the calibrated threshold (``scores >= tau`` predicts "member").

    Raises:
      ValueError: On inconsistent shapes, invalid parameters, or predict functions that
        return neither outputs nor labels of the expected shape.
    """
    n_queries = _check_queries(n_queries)
    x, y, keep = np.asarray(x), np.asarray(y), np.asarray(keep)
    n = x.shape[0]
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold {n} integer labels, got {y.shape} {y.dtype}")
    if keep.ndim != 2 or keep.shape[1] != n or keep.dtype != bool:
        raise ValueError(f"keep must be a (k, {n}) bool array, got {keep.shape} {keep.dtype}")
    cols = np.arange(n) if pool is None else np.flatnonzero(np.broadcast_to(pool, (n,)))
    cand = np.asarray(candidates)
    cand = np.flatnonzero(cand) if cand.dtype == bool else cand.astype(np.int64).reshape(-1)
    if cand.size and (cand.min() < -n or cand.max() >= n):
        raise ValueError(f"candidate indices must be in [0, {n}), got {cand.min()}..{cand.max()}")
    kind = resolve_kind(kind, x)
    strength = _check_strength(kind, strength)

    k = keep.shape[0]
    target_pred = np.empty((n_queries, cand.size), np.int64)
    shadow_pred = np.empty((n_queries, k, cols.size), np.int64)
    key = jax.random.key(seed)
    for i, xq in enumerate(_copies(x, key, n_queries, kind, strength)):
        xq = np.asarray(xq)
        target_pred[i] = _predicted_labels(target_predict(xq[cand]), (cand.size,), "target")
        shadow_pred[i] = _predicted_labels(shadow_predict(xq[cols]), (k, cols.size), "shadow")
    scores = np.asarray(correctness_scores(target_pred, y[cand]), np.float64)
    shadow_scores = np.asarray(correctness_scores(shadow_pred, y[cols]), np.float64)
    tau = metrics.best_threshold(keep[:, cols].ravel(), shadow_scores.ravel())
    return scores, tau
