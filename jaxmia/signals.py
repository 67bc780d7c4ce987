"""Per-example membership signals computed from model outputs.

Every function takes ``logits`` of shape ``(..., n, c)`` -- typically ``(k, n, c)`` for ``k``
(shadow) models, ``n`` examples and ``c`` classes, or ``(n, c)`` for a single model -- and,
where needed, integer ``labels`` of shape ``(n,)`` (any shape that broadcasts against the
leading axes ``logits.shape[:-1]`` works). Scalar signals return ``(..., n)``. Every signal
that takes labels raises a one-line ``ValueError`` for a label outside ``[0, c)`` when the
labels are concrete (NumPy or JAX arrays, also when the logits alone are traced, e.g. under
``jax.vmap`` over models); traced labels cannot be checked (inside a user's ``jax.jit`` with
the labels an argument), and there such a label gives NaN (``correctness``: 0).

All signals are computed from :func:`jax.nn.log_softmax` (never ``log(softmax(.))``) so that
huge logit gaps, where some probabilities round to exactly 0 or 1 in float32, still give finite
values with the right limits. Logits of a low-precision or integer dtype are promoted to at
least float32 first. Every public signal function is :func:`jax.jit`-compiled.

Black-box attackers that only see probability vectors (e.g. an API returning rounded softmax
scores, possibly with exact 0 and 1 entries) first map them to finite pseudo-logits with
:func:`log_probs_from_probs` and then use any signal unchanged::

    z = log_probs_from_probs(probs)        # (..., n, c), finite
    phi = logit_scaled_confidence(z, y)    # finite even for one-hot probs

or simply ``compute(name, probs, labels, from_probs=True)``.

Signals and references:

* ``confidence``, ``true_class_probability``, ``entropy``, ``correctness``: Yeom et al. 2018,
  "Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting" (CSF);
  Salem et al. 2019, "ML-Leaks" (NDSS); Song & Mittal 2021 (below).
* ``modified_entropy``: Song & Mittal 2021, "Systematic Evaluation of Privacy Risks of Machine
  Learning Models" (USENIX Security).
* ``loss``: Yeom et al. 2018; Sablayrolles et al. 2019, "White-box vs Black-box: Bayes Optimal
  Strategies for Membership Inference" (ICML).
* ``logit_scaled_confidence``: Carlini et al. 2022, "Membership Inference Attacks From First
  Principles" (IEEE S&P), the statistic LiRA fits Gaussians to.
* ``probabilities``, ``sorted_probabilities``, ``top_k_probabilities``: attack-model features of
  Shokri et al. 2017, "Membership Inference Attacks Against Machine Learning Models" (IEEE S&P)
  and Salem et al. 2019.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "MEMBER_SIGN",
    "PROB_FLOOR",
    "SCALAR_SIGNALS",
    "SIGNALS",
    "check_label_values",
    "compute",
    "confidence",
    "correctness",
    "entropy",
    "log_probs_from_probs",
    "logit_scaled_confidence",
    "loss",
    "modified_entropy",
    "probabilities",
    "sorted_probabilities",
    "top_k_probabilities",
    "true_class_probability",
]

PROB_FLOOR: float = float(jnp.finfo(jnp.float32).tiny)
"""Smallest probability kept by :func:`log_probs_from_probs`: float32 ``tiny`` (~1.18e-38,
the smallest *normal* float32, so it survives flush-to-zero on accelerators). Its log is
about -87.3, which bounds pseudo-logit gaps and keeps every signal finite."""

SIGNALS: tuple[str, ...] = (
    "probabilities",
    "sorted_probabilities",
    "top_k_probabilities",
    "confidence",
    "true_class_probability",
    "entropy",
    "modified_entropy",
    "loss",
    "logit_scaled_confidence",
    "correctness",
)
"""Names accepted by :func:`compute`."""

MEMBER_SIGN: dict[str, float] = {
    "confidence": 1.0,
    "true_class_probability": 1.0,
    "entropy": -1.0,
    "modified_entropy": -1.0,
    "loss": -1.0,
    "logit_scaled_confidence": 1.0,
    "correctness": 1.0,
}
"""For each scalar signal, the sign ``s`` such that ``s * signal`` is higher for members.

Threshold attacks predict "member" when ``MEMBER_SIGN[name] * signal >= tau``.
"""

SCALAR_SIGNALS: tuple[str, ...] = tuple(MEMBER_SIGN)
"""Signals returning one value per example, shape ``(..., n)``."""

_LABEL_FREE: frozenset[str] = frozenset(
    {"probabilities", "sorted_probabilities", "top_k_probabilities", "confidence", "entropy"}
)


# --------------------------------------------------------------------------- helpers


def _as_float(x: ArrayLike) -> jax.Array:
    """Promotes ``x`` to a floating dtype of at least float32 precision."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _class_axis(logits: jax.Array) -> jax.Array:
    """``logits``, checked to have a non-empty class axis."""
    if logits.ndim == 0 or logits.shape[-1] == 0:
        raise ValueError(f"logits must be shaped (..., n, c) with c >= 1, got {logits.shape}")
    return logits


def _as_logits(logits: ArrayLike) -> jax.Array:
    """``logits`` as floats (see ``_as_float``), checked to have a non-empty class axis."""
    return _class_axis(_as_float(logits))


def _as_labels(labels: ArrayLike, logits: jax.Array) -> jax.Array:
    """``labels`` checked to be integers that broadcast against ``logits.shape[:-1]``."""
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    try:
        jnp.broadcast_shapes(logits.shape[:-1], labels.shape)
    except ValueError:
        raise ValueError(
            f"labels of shape {labels.shape} do not match logits of shape {logits.shape}"
        ) from None
    return labels


def check_label_values(labels: ArrayLike, num_classes: int) -> None:
    """Raises if concrete ``labels`` lie outside ``[0, num_classes)`` (no-op when traced)."""
    if isinstance(labels, jax.core.Tracer):
        return
    labels = np.asarray(labels)
    if labels.size and labels.dtype.kind in "iu":
        lo, hi = labels.min(), labels.max()
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"labels must be in [0, {num_classes}) for {num_classes} classes, "
                f"got values from {lo} to {hi}"
            )


def _checks_labels(signal: Callable[[ArrayLike, ArrayLike], jax.Array]):
    """``signal(logits, labels)`` (a jitted function) preceded by
    :func:`check_label_values` against the logits' class count: the one check of every
    label-taking signal, outside the jit, where concrete labels can be read."""

    @functools.wraps(signal)
    def checked(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
        shape = np.shape(logits)
        if shape and shape[-1]:
            check_label_values(labels, shape[-1])
        return signal(logits, labels)

    for name in ("lower", "trace", "eval_shape", "clear_cache", "_cache_size"):
        if hasattr(signal, name):  # the jitted function's own (what it compiled)
            setattr(checked, name, getattr(signal, name))
    return checked


def _label_mask(labels: ArrayLike, num_classes: int) -> jax.Array:
    """One-hot boolean mask ``(..., n, c)`` of the labels (broadcasts against logits)."""
    labels = jnp.asarray(labels)
    return labels[..., None] == jnp.arange(num_classes)


def _gather(x: jax.Array, labels: ArrayLike) -> jax.Array:
    """Returns ``x[..., i, labels[i]]`` with shape ``broadcast(x.shape[:-1], labels.shape)``.

    Labels outside ``[0, c)`` give NaN (JAX's ``fill`` gather mode) rather than a silent value;
    negative labels are moved out of range first, so that they do not wrap around.
    """
    labels = jnp.asarray(labels)
    shape = jnp.broadcast_shapes(x.shape[:-1], labels.shape)
    x = jnp.broadcast_to(x, (*shape, x.shape[-1]))
    labels = jnp.where(labels < 0, x.shape[-1], labels)
    idx = jnp.broadcast_to(labels, shape)[..., None]
    return jnp.take_along_axis(x, idx, axis=-1)[..., 0]


def _log_probs(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Stable ``(log p_i, log(1 - p_i))`` for every class, each of shape ``(..., n, c)``.

    At most one class can have ``p_i > 1/2``. For it (the argmax) both values come from its
    logit gap ``g = z_max - logsumexp_{j != max}(z_j) = log(p_max / (1 - p_max))`` as
    ``log p_max = -softplus(-g)`` and ``log(1 - p_max) = -softplus(g)``: finite when ``p_max``
    rounds to 1 and accurate to float32 relative precision near 1 (members' regime), where
    ``z_max - logsumexp(z)`` would cancel. For the other classes ``p_i <= 1/2``, so
    ``log_softmax`` and ``log1p(-p_i)`` are accurate. Cost is ``O(c)`` per example.
    """
    c = logits.shape[-1]
    log_p = jax.nn.log_softmax(logits, axis=-1)
    is_max = jnp.argmax(logits, axis=-1)[..., None] == jnp.arange(c)
    z_max = jnp.max(logits, axis=-1, keepdims=True)
    lse_rest = jax.nn.logsumexp(jnp.where(is_max, -jnp.inf, logits), axis=-1, keepdims=True)
    gap = z_max - lse_rest
    log_p = jnp.where(is_max, -jax.nn.softplus(-gap), log_p)
    # Keep the unselected branch finite so gradients stay NaN-free.
    log1m_other = jnp.log1p(-jnp.exp(jnp.where(is_max, -1.0, log_p)))
    log1m_p = jnp.where(is_max, -jax.nn.softplus(gap), log1m_other)
    return log_p, log1m_p


def _logit_gap(logits: jax.Array, labels: ArrayLike) -> jax.Array:
    """``phi = z_y - logsumexp_{y' != y}(z_{y'}) = log(p_y / (1 - p_y))``, shape ``(..., n)``.

    Since ``p_y = sigmoid(phi)``, ``-log p_y = softplus(-phi)`` and ``-log(1 - p_y) =
    softplus(phi)``; both are accurate to float32 relative precision even when ``p_y`` is within
    an ulp of 1, where ``logsumexp(z) - z_y`` would lose all digits to cancellation.
    """
    is_label = _label_mask(labels, logits.shape[-1])
    lse_rest = jax.nn.logsumexp(jnp.where(is_label, -jnp.inf, logits), axis=-1)
    return _gather(logits, labels) - lse_rest


# --------------------------------------------------------------------------- input mapping


@jax.jit
def log_probs_from_probs(probs: ArrayLike, floor: ArrayLike = PROB_FLOOR) -> jax.Array:
    """Maps probability vectors to finite pseudo-logits ``log(clip(p, floor, 1))``.

    Lets every logit-based signal run on black-box probability outputs, including vectors with
    exact 0 and 1 entries (e.g. rounded or one-hot API responses). Since the signals apply
    ``log_softmax``, the result behaves as logits of the renormalised clipped probabilities; for
    vectors that already sum to 1 this is exact up to the floor. With the default floor
    (:data:`PROB_FLOOR`, float32 tiny, ``log`` ~ -87.3) a one-hot vector with ``p_y = 1`` over
    ``c`` classes gives a finite, large ``logit_scaled_confidence`` of about
    ``87.3 - log(c - 1)``, ``loss`` 0 and, for a wrong label, ``loss`` ~ 87.3.

    Args:
      probs: Probabilities, shape ``(..., n, c)``, entries in ``[0, 1]``.
      floor: Smallest probability kept (positive, representable in ``probs``' float dtype).

    Returns:
      Finite pseudo-logits, shape ``(..., n, c)``, float32 or wider.
    """
    p = _as_float(probs)
    return jnp.log(jnp.clip(p, jnp.asarray(floor, p.dtype), 1.0))


# --------------------------------------------------------------------------- vector signals


@jax.jit
def probabilities(logits: ArrayLike) -> jax.Array:
    """Softmax probabilities.

    Args:
      logits: Logits, shape ``(..., n, c)``.

    Returns:
      Probabilities, shape ``(..., n, c)``, summing to 1 over the last axis.
    """
    return jax.nn.softmax(_as_logits(logits), axis=-1)


@jax.jit
def sorted_probabilities(logits: ArrayLike) -> jax.Array:
    """Softmax probabilities sorted in descending order (label-free attack-model features).

    Sorting makes the feature vector class-agnostic, as in the single attack model of Salem et
    al. 2019 ("ML-Leaks", NDSS).

    Args:
      logits: Logits, shape ``(..., n, c)``.

    Returns:
      Sorted probabilities, shape ``(..., n, c)``, ``out[..., 0]`` the largest.
    """
    return jnp.flip(jnp.sort(probabilities(logits), axis=-1), axis=-1)


@functools.partial(jax.jit, static_argnames=("k",))
def top_k_probabilities(logits: ArrayLike, k: int) -> jax.Array:
    """The ``k`` largest softmax probabilities in descending order (Salem et al. 2019 use k=3).

    Args:
      logits: Logits, shape ``(..., n, c)``.
      k: Number of probabilities kept, ``1 <= k <= c`` (static).

    Returns:
      Top-k probabilities, shape ``(..., n, k)``.

    Raises:
      ValueError: If ``k`` is not an integer in ``[1, c]``.
    """
    logits = _as_logits(logits)
    c = logits.shape[-1]
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= c:
        raise ValueError(f"k must be an integer in [1, {c}] for {c} classes, got {k!r}")
    return jax.lax.top_k(probabilities(logits), k)[0]


# --------------------------------------------------------------------------- scalar signals


@jax.jit
def confidence(logits: ArrayLike) -> jax.Array:
    """Maximum softmax probability ``max_i p_i`` (higher for members).

    Args:
      logits: Logits, shape ``(..., n, c)``.

    Returns:
      Confidence, shape ``(..., n)``, in ``[1/c, 1]``.
    """
    return jnp.exp(jnp.max(_log_probs(_as_logits(logits))[0], axis=-1))


@_checks_labels
@jax.jit
def true_class_probability(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Probability of the true label ``p_y`` (higher for members).

    Args:
      logits: Logits, shape ``(..., n, c)``.
      labels: Integer labels in ``[0, c)``, shape ``(n,)`` (broadcast against ``(..., n)``).

    Returns:
      ``p_y``, shape ``(..., n)``.

    Raises:
      ValueError: If concrete labels lie outside ``[0, c)``.
    """
    logits = _as_logits(logits)
    labels = _as_labels(labels, logits)
    return jnp.exp(_gather(jax.nn.log_softmax(logits, axis=-1), labels))


@jax.jit
def entropy(logits: ArrayLike) -> jax.Array:
    """Shannon entropy ``-sum_i p_i log p_i`` in nats, with ``0 log 0 = 0`` (lower for members).

    Args:
      logits: Logits, shape ``(..., n, c)``; ``-inf`` entries (zero probability) are allowed.

    Returns:
      Entropy, shape ``(..., n)``, in ``[0, log c]``.
    """
    log_p = _log_probs(_as_logits(logits))[0]
    p = jnp.exp(log_p)
    safe_log_p = jnp.where(p > 0, log_p, 0.0)
    return -jnp.sum(p * safe_log_p, axis=-1)


@_checks_labels
@jax.jit
def modified_entropy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Modified entropy of Song & Mittal 2021 (USENIX Security), lower for members.

    ``Mentr(F(x), y) = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)``.

    Unlike the entropy it uses the label, so a confident wrong prediction scores high. Both
    ``log p`` and ``log(1 - p)`` are computed in log space (see ``_log_probs``), so the
    result is finite and exact in the limits: 0 for a correct one-hot prediction, and about
    ``(z_max - z_y) + (z_max - z_second)`` for a confidently wrong one.

    Args:
      logits: Logits, shape ``(..., n, c)``.
      labels: Integer labels in ``[0, c)``, shape ``(n,)`` (broadcast against ``(..., n)``).

    Returns:
      Modified entropy, shape ``(..., n)``, non-negative.

    Raises:
      ValueError: If concrete labels lie outside ``[0, c)``.
    """
    logits = _as_logits(logits)
    labels = _as_labels(labels, logits)
    log_p, log1m_p = _log_probs(logits)
    p = jnp.exp(log_p)
    is_label = _label_mask(labels, logits.shape[-1])
    phi = _logit_gap(logits, labels)
    # -(1 - p_y) log p_y with 1 - p_y = sigmoid(-phi) and -log p_y = softplus(-phi).
    label_term = jax.nn.sigmoid(-phi) * jax.nn.softplus(-phi)
    # For i != argmax, p_i <= 1/2 and log(1 - p_i) is finite, so p_i = 0 contributes exactly 0.
    other = jnp.where(is_label, 0.0, p * log1m_p)
    return label_term - jnp.sum(other, axis=-1)


@_checks_labels
@jax.jit
def loss(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Per-example cross-entropy loss ``-log p_y`` (lower for members; Yeom et al. 2018).

    Computed as ``softplus(-phi)`` with ``phi`` the logit-scaled confidence, which equals
    ``-log p_y`` exactly and keeps full relative precision for tiny losses
    (``logsumexp(z) - z_y`` cancels catastrophically there).

    Args:
      logits: Logits, shape ``(..., n, c)``.
      labels: Integer labels in ``[0, c)``, shape ``(n,)`` (broadcast against ``(..., n)``).

    Returns:
      Loss, shape ``(..., n)``, non-negative and finite for finite logits.

    Raises:
      ValueError: If concrete labels lie outside ``[0, c)``.
    """
    logits = _as_logits(logits)
    return jax.nn.softplus(-_logit_gap(logits, _as_labels(labels, logits)))


@_checks_labels
@jax.jit
def logit_scaled_confidence(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Logit-scaled confidence of Carlini et al. 2022 (IEEE S&P), higher for members.

    ``phi = log(p_y / (1 - p_y)) = log p_y - log sum_{y' != y} p_{y'}``. The softmax normaliser
    cancels, so it is computed directly as ``phi = z_y - logsumexp_{y' != y}(z_{y'})`` (the true
    logit masked to ``-inf``), which is exact and finite however large the logit gap: a gap of
    ``1e4`` gives ``phi ~ 1e4`` instead of ``inf``, where ``log(p/(1-p))`` from float32
    probabilities would saturate once ``p_y`` rounds to 1. This is the near-Gaussian statistic
    that LiRA models. Requires ``c >= 2``.

    Args:
      logits: Logits, shape ``(..., n, c)``.
      labels: Integer labels in ``[0, c)``, shape ``(n,)`` (broadcast against ``(..., n)``).

    Returns:
      ``phi``, shape ``(..., n)``.

    Raises:
      ValueError: If ``c < 2`` (``phi`` would be ``+inf``), or concrete labels lie
        outside ``[0, c)``.
    """
    logits = _as_logits(logits)
    if logits.shape[-1] < 2:
        raise ValueError(f"the logit-scaled confidence needs c >= 2 classes, got {logits.shape}")
    return _logit_gap(logits, _as_labels(labels, logits))


@_checks_labels
@jax.jit
def correctness(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Whether the prediction is correct, ``1[argmax_i z_i == y]`` (Yeom et al. 2018).

    Ties go to the lowest class index (``jnp.argmax``).

    Args:
      logits: Logits, shape ``(..., n, c)``.
      labels: Integer labels, shape ``(n,)`` (broadcast against ``(..., n)``).

    Returns:
      Float32 array of 0.0 / 1.0, shape ``(..., n)``.

    Raises:
      ValueError: If concrete labels lie outside ``[0, c)``.
    """
    logits = _class_axis(jnp.asarray(logits))
    labels = _as_labels(labels, logits)
    return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


# --------------------------------------------------------------------------- dispatch

_FUNCTIONS = {
    "probabilities": probabilities,
    "sorted_probabilities": sorted_probabilities,
    "confidence": confidence,
    "true_class_probability": true_class_probability,
    "entropy": entropy,
    "modified_entropy": modified_entropy,
    "loss": loss,
    "logit_scaled_confidence": logit_scaled_confidence,
    "correctness": correctness,
}


def compute(
    name: str,
    logits: ArrayLike,
    labels: ArrayLike | None = None,
    *,
    top_k: int = 3,
    from_probs: bool = False,
) -> jax.Array:
    """Computes a signal by name.

    A thin Python dispatcher over the jitted signal functions (it is itself traceable, so it can
    be called inside a user's ``jax.jit`` with ``name`` fixed).

    Args:
      name: One of :data:`SIGNALS`.
      logits: Logits, shape ``(..., n, c)``; probabilities if ``from_probs``.
      labels: Integer labels, shape ``(n,)``; may be ``None`` for label-free signals
        (``probabilities``, ``sorted_probabilities``, ``top_k_probabilities``, ``confidence``,
        ``entropy``).
      top_k: ``k`` for ``top_k_probabilities``.
      from_probs: Treat ``logits`` as probabilities and map them through
        :func:`log_probs_from_probs` first (black-box, probability-only access).

    Returns:
      The signal, shape ``(..., n)`` for scalar signals, ``(..., n, c)`` or ``(..., n, top_k)``
      for vector ones.

    Raises:
      ValueError: If ``name`` is unknown, ``labels`` is ``None`` for a label-based signal, or
        (when they are concrete, not traced) labels lie outside ``[0, c)``.
    """
    if name not in SIGNALS:
        raise ValueError(f"unknown signal {name!r}; valid names: {', '.join(SIGNALS)}")
    if from_probs:
        logits = log_probs_from_probs(logits)
    if name == "top_k_probabilities":
        return top_k_probabilities(logits, top_k)
    if name in _LABEL_FREE:
        return _FUNCTIONS[name](logits)
    if labels is None:
        raise ValueError(f"signal {name!r} needs labels")
    return _FUNCTIONS[name](logits, labels)
