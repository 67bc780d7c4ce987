"""Output perturbation: defences that change what a target's query interface returns.

A deployed model rarely has to return its full, exact probability vector. The functions here
model the usual "confidence masking" defences applied to the API's answer, on probability
arrays ``probs`` of shape ``(..., n, c)`` -- ``(n, c)`` for one model, ``(k, n, c)`` for a pool
of ``k`` (shadow) models:

* :func:`top_k_only`: return only the ``k`` largest probabilities (Shokri et al. 2017,
  "Membership Inference Attacks Against Machine Learning Models", IEEE S&P, Sec. VIII;
  Salem et al. 2019, "ML-Leaks", NDSS);
* :func:`round_probs`: coarsen the probabilities to ``d`` decimals (Shokri et al. 2017);
* :func:`gaussian_noise`: add random noise to the vector (a non-adaptive stand-in for
  MemGuard, Jia et al. 2019, "MemGuard: Defending against Black-Box Membership Inference
  Attacks via Adversarial Examples", CCS, which crafts the noise instead);
* :func:`label_only`: return the predicted label only, the limit of all of the above.

Each is a pure, jitted function of the array (plus a PRNG key for the noise);
:class:`Perturbation` bundles one choice with its parameters for configuration files and
reports.

Perturbing the outputs also changes the *threat model*: an attacker behind the interface
effectively has the access level :func:`access_level` of :mod:`jaxmia.threat_models`. Rounded
or noisy vectors are still probability vectors (``"probs"``, degraded), a top-k interface is
``"topk"`` and a label-only one is ``"label"``. Attacks that need more than that level provides
are then refused by :func:`jaxmia.threat_models.require` -- e.g. the entropy threshold attack
or the Shokri attack model on ``sorted_probabilities`` behind a label-only interface -- while
the label-only attack of Choquette-Choo et al. 2021 ("Label-Only Membership Inference
Attacks", ICML; :func:`jaxmia.attacks.label_only`) still applies. Choquette-Choo et al.
show that such confidence masking alone gives little protection against it.

Signals can be computed from perturbed outputs with
``signals.compute(name, perturbed, labels, from_probs=True)``: exact 0 and 1 entries (top-k,
rounding, one-hot) are mapped to finite pseudo-logits by
:func:`jaxmia.signals.log_probs_from_probs`.

Example::

    probs = signals.probabilities(engine.predict(pool, x))         # (k, n, c)
    defence = Perturbation("round", decimals=1)
    seen = defence.apply(probs)                                      # what the API returns
    phi = signals.compute("loss", seen, y, from_probs=True)          # (k, n)
    threat_models.require(access_level(defence), ["loss"], "loss attack")  # allowed
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxmia.settings import NAT, POS, Section, check_field, opt

__all__ = [
    "ACCESS",
    "KINDS",
    "Perturbation",
    "access_level",
    "gaussian_noise",
    "label_only",
    "round_probs",
    "top_k_only",
]

KINDS: tuple[str, ...] = ("none", "topk", "round", "noise", "label")
"""Perturbation kinds accepted by :class:`Perturbation`."""

ACCESS: dict[str, str] = {
    "none": "probs",
    "topk": "topk",
    "round": "probs",
    "noise": "probs",
    "label": "label",
}
"""The :data:`jaxmia.threat_models.ACCESS_LEVELS` entry an attacker effectively has behind
each kind of interface (see :func:`access_level`)."""


def _as_float(x: ArrayLike) -> jax.Array:
    """Promotes ``x`` to a floating dtype of at least float32 precision."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _as_probs(probs: ArrayLike) -> jax.Array:
    """``probs`` as floats (see ``_as_float``), checked to have a non-empty class axis."""
    probs = _as_float(probs)
    if probs.ndim == 0 or probs.shape[-1] == 0:
        raise ValueError(f"probs must be shaped (..., n, c) with c >= 1, got {probs.shape}")
    return probs


# --------------------------------------------------------------------------- transforms


@functools.partial(jax.jit, static_argnames=("k",))
def _top_k_only(probs: jax.Array, k: int) -> jax.Array:
    idx = jax.lax.top_k(probs, k)[1]  # (..., n, k); equal values: lower index first
    kept = jnp.any(idx[..., None] == jnp.arange(probs.shape[-1]), axis=-2)
    return jnp.where(kept, probs, jnp.zeros((), probs.dtype))


def top_k_only(probs: ArrayLike, k: int) -> jax.Array:
    """Keeps the ``k`` largest probabilities of every row and zeroes the others.

    The kept values are returned unchanged, **not renormalised**, so a row sums to the
    probability mass of its top ``k`` classes (at most 1): this is what an API that lists
    only its ``k`` best classes with their scores reveals. Equal probabilities are kept in
    order of class index (:func:`jax.lax.top_k`), so exactly ``k`` entries per row are kept
    (fewer are non-zero only if some kept probabilities are themselves 0).

    Args:
      probs: Probabilities, shape ``(..., n, c)``.
      k: Number of classes kept, ``1 <= k <= c``.

    Returns:
      Masked probabilities, shape ``(..., n, c)``, float32 or wider.

    Raises:
      ValueError: If ``k`` is not an integer in ``[1, c]``.
    """
    probs = _as_probs(probs)
    c = probs.shape[-1]
    k = check_field(Perturbation, "k", k)
    if k > c:
        raise ValueError(f"k must be in [1, {c}] for {c} classes, got {k}")
    return _top_k_only(probs, k)


@functools.partial(jax.jit, static_argnames=("decimals",))
def _round_probs(probs: jax.Array, decimals: int) -> jax.Array:
    return jnp.round(probs, decimals)


def round_probs(probs: ArrayLike, decimals: int) -> jax.Array:
    """Rounds every probability to ``decimals`` decimal places (round half to even).

    Small probabilities become exactly 0 and large ones exactly 1, and rows need not sum to
    1 any more (e.g. three classes at 1/3 round to 0.33 each at two decimals; at zero
    decimals a row whose largest probability is below 0.5 becomes all zeros). Results are
    the nearest floats to the rounded decimals (``0.1`` is not exact in binary).

    Args:
      probs: Probabilities, shape ``(..., n, c)``.
      decimals: Number of decimal places, ``>= 0``.

    Returns:
      Rounded probabilities, shape ``(..., n, c)``, float32 or wider.

    Raises:
      ValueError: If ``decimals`` is not a non-negative integer.
    """
    return _round_probs(_as_probs(probs), check_field(Perturbation, "decimals", decimals))


@jax.jit
def _gaussian_noise(probs: jax.Array, sigma: jax.Array, key: jax.Array) -> jax.Array:
    noise = jax.random.normal(key, probs.shape, probs.dtype)
    noisy = jnp.clip(probs + sigma.astype(probs.dtype) * noise, 0.0, 1.0)
    total = jnp.sum(noisy, axis=-1, keepdims=True)
    uniform = jnp.full_like(noisy, 1.0 / probs.shape[-1])
    zero = total == 0  # not ``total > 0``: a NaN row stays NaN instead of turning uniform
    return jnp.where(zero, uniform, noisy / jnp.where(zero, 1.0, total))


def gaussian_noise(probs: ArrayLike, sigma: float, key: jax.Array) -> jax.Array:
    """Adds ``N(0, sigma^2)`` noise to every probability, clips to ``[0, 1]``, renormalises.

    ``p' = clip(p + sigma * eps, 0, 1) / sum_c clip(...)`` with ``eps`` standard normal, drawn
    independently for every entry of ``probs`` from the single ``key``: for a pool
    ``(k, n, c)`` each model's answers get independent noise, as if every model were queried
    separately (use the same key to reproduce the same answers). The output is again a
    probability vector (rows sum to 1); a row whose entries are all clipped to 0 becomes
    uniform ``1/c``. ``sigma = 0`` returns the renormalised input. Unlike MemGuard (Jia et al.
    2019) the noise is not adaptive and may change the predicted label.

    Args:
      probs: Probabilities, shape ``(..., n, c)``.
      sigma: Noise standard deviation, finite and ``>= 0``, in probability units.
      key: A JAX PRNG key (typed ``jax.random.key`` or raw ``PRNGKey``).

    Returns:
      Noisy probabilities, shape ``(..., n, c)``, float32 or wider, rows summing to 1.

    Raises:
      ValueError: If ``sigma`` is negative or not finite.
    """
    sigma = float(check_field(Perturbation, "sigma", sigma))
    return _gaussian_noise(_as_probs(probs), jnp.asarray(sigma), key)


@jax.jit
def label_only(probs: ArrayLike) -> jax.Array:
    """Replaces every probability vector with the one-hot vector of its predicted label.

    Equal maxima go to the lowest class index (:func:`jax.numpy.argmax`).

    Args:
      probs: Probabilities (or logits: only the argmax is used), shape ``(..., n, c)``.

    Returns:
      One-hot predictions, shape ``(..., n, c)``, float32 or wider.
    """
    probs = _as_probs(probs)
    return jax.nn.one_hot(jnp.argmax(probs, axis=-1), probs.shape[-1], dtype=probs.dtype)


# --------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class Perturbation(Section):
    """One output perturbation with its parameters (each field's ``metadata["help"]``
    says what it is).

    Every parameter is checked whatever the kind (:class:`jaxmia.settings.Section`), so a
    configuration cannot carry an invalid value that a later change of ``kind`` would
    expose; a bad one raises a one-line :class:`jaxmia.settings.ConfigError` naming it.
    The functions check their arguments as these fields (``top_k_only(probs, k)`` as
    ``k``), and a configuration that sets them takes their bounds with
    :func:`jaxmia.settings.opt_like`.
    """

    kind: str = opt(
        "none",
        "none (full probabilities), topk (top_k_only), round (round_probs), noise "
        "(gaussian_noise) or label (label_only)",
        c=KINDS,
    )
    k: int = opt(3, "classes kept by topk (at most c, checked in apply)", b=POS)
    decimals: int = opt(2, "decimal places kept by round", b=NAT)
    sigma: float = opt(0.0, "standard deviation of the noise added by noise", b=NAT)

    def apply(self, probs: ArrayLike, key: jax.Array | None = None) -> jax.Array:
        """What the perturbed interface returns for the probabilities ``probs``.

        Args:
          probs: Probabilities, shape ``(..., n, c)``.
          key: PRNG key, required by ``"noise"`` only (ignored otherwise).

        Returns:
          The perturbed probabilities, shape ``(..., n, c)``, float32 or wider.

        Raises:
          ValueError: If ``"noise"`` gets no key, or ``"topk"`` has ``k > c``.
        """
        if self.kind == "none":
            return _as_float(probs)
        if self.kind == "topk":
            return top_k_only(probs, self.k)
        if self.kind == "round":
            return round_probs(probs, self.decimals)
        if self.kind == "noise":
            if key is None:
                raise ValueError("the 'noise' perturbation needs a PRNG key")
            return gaussian_noise(probs, self.sigma, key)
        return label_only(probs)

    def describe(self) -> str:
        """A short human-readable description, e.g. ``'probabilities rounded to 2 decimals'``."""
        return {
            "none": "full probability vector",
            "topk": f"top-{self.k} probabilities (others zeroed)",
            "round": f"probabilities rounded to {self.decimals} decimals",
            "noise": f"probabilities + N(0, {self.sigma:g}^2) noise, renormalised",
            "label": "predicted label only",
        }[self.kind]


def access_level(p: Perturbation) -> str:
    """The threat-model access level an attacker has behind the perturbed interface.

    ``"none"``, ``"round"`` and ``"noise"`` still return a probability vector (``"probs"``,
    possibly degraded), ``"topk"`` gives ``"topk"`` and ``"label"`` gives ``"label"``; see
    :mod:`jaxmia.threat_models` for the signals each level provides.

    Args:
      p: The perturbation.

    Returns:
      One of :data:`jaxmia.threat_models.ACCESS_LEVELS`.
    """
    return ACCESS[p.kind]
