"""DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy") for the kernel.

Per-example gradients are clipped to an L2 norm, summed, noised with Gaussian noise and
averaged before the optimizer sees them. Each model of a pool draws its noise from its
own key, unlike ``optax.contrib.differentially_private_aggregate``, whose key in the
optimizer state would be shared by every vmapped model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxmia.settings import NAT, POSITIVE_REAL, Rule, Section, opt

__all__ = ["DP_ALONE", "NOISE_STREAM", "SAMPLINGS", "DPConfig", "dp_noise", "private_grads"]

NOISE_STREAM = 0x5EED
"""``fold_in`` constant that derives a model's noise key from its model key."""
SAMPLINGS = ("poisson", "shuffle")
"""How DP-SGD draws its batches (:class:`DPConfig`)."""
DP_ALONE = Rule(
    "dp", ("dropout", "label_smoothing", "mixup", "relaxloss", "adv_eps", "adv_reg"), "DP-SGD"
)
"""DP-SGD clips and noises per-example gradients of the plain loss of a model without
state: not with dropout (key ``dropout``: any non-parameter state of the model), a
training objective (:data:`jaxmia._src.engine.objectives.PARTS`) or adversarial
regularisation (``adv_reg``)."""


@dataclasses.dataclass(frozen=True)
class DPConfig(Section):
    """DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy").

    Every example's gradient is clipped to L2 norm ``l2_clip``, the clipped gradients are
    summed, Gaussian noise of standard deviation ``noise_multiplier * l2_clip`` is added,
    and the sum is divided by the (expected) batch size before the optimizer sees it.
    Each model of a pool draws its noise from its own key (``fold_in(model_key, ...)``
    per epoch and step), unlike ``optax.contrib.differentially_private_aggregate``, whose
    key in the optimizer state would be shared by every vmapped model.

    ``sampling``: ``"poisson"`` (the default) draws each step's batch by independent
    inclusion of each member with probability ``batch_size / members``, the sampling
    that the accountant (``jaxmia.defences.dp_epsilon``) analyses
    (:mod:`jaxmia._src.engine.sampling`); ``"shuffle"`` visits the members in a random order
    each epoch, in fixed-size batches, which that accountant does not cover (Chua et
    al. 2024, "How Private are DP-SGD Implementations?").

    Each value is checked (:class:`jaxmia.settings.Section`); a bad one raises a one-line
    :class:`jaxmia.settings.ConfigError` that names the field.
    """

    l2_clip: float = opt(1.0, "per-example L2 clipping norm", b=POSITIVE_REAL)
    noise_multiplier: float = opt(1.0, "the noise's standard deviation relative to l2_clip", b=NAT)
    sampling: str = opt("poisson", "how batches are drawn", c=SAMPLINGS)


def dp_noise(key: jax.Array, like: Any, std: float) -> Any:
    """Gaussian noise of standard deviation ``std`` with the structure of ``like``.

    Args:
      key: PRNG key, split once per leaf of ``like``.
      like: a pytree of arrays (the summed gradients).
      std: the noise's standard deviation.

    Returns:
      A pytree like ``like`` of normal draws, each leaf of that leaf's shape and dtype.
    """
    leaves, treedef = jax.tree.flatten(like)
    keys = jax.random.split(key, len(leaves))
    noise = [
        std * jax.random.normal(k, leaf.shape, leaf.dtype)
        for k, leaf in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, noise)


def private_grads(
    batch_loss: Callable,
    dp: DPConfig,
    key: jax.Array,
    params,
    rest,
    xb,
    yb,
    weight,
    *,
    extra: Any = None,
    denominator: jax.Array | float | None = None,
) -> tuple[jax.Array, Any]:
    """Clipped, summed, noised and averaged per-example gradients (DP-SGD).

    Args:
      batch_loss: ``(params, rest, xb, yb, weight) -> (loss, rest)``, the kernel's
        weighted mean loss of a batch (called here on one example at a time).
      dp: the clipping norm and noise multiplier.
      key: this step's noise key.
      params: one model's parameters.
      rest: its other variables (no state that changes: DP-SGD refuses dropout).
      xb: ``(b, *input_shape)`` inputs.
      yb: ``(b,)`` labels.
      weight: ``(b,)`` float32, 1 for the batch's members and 0 for padding.
      extra: a pytree like ``params`` added to the summed clipped gradients before the
        noise (the Dirac canary of :mod:`jaxmia._src.engine.sampling`), or None.
      denominator: what the noised sum is divided by (default ``b``; Poisson sampling
        divides by the expected batch size).

    Returns:
      ``(loss, grads)``: the weighted mean loss and the noised gradient average (the
      sum divided by ``denominator``), a pytree like ``params``.
    """

    def one(p, xi, yi):
        return batch_loss(p, rest, xi[None], yi[None], jnp.ones((1,), jnp.float32))[0]

    losses, g = jax.vmap(jax.value_and_grad(one), in_axes=(None, 0, 0))(params, xb, yb)
    sq = sum(jnp.sum(leaf.reshape(leaf.shape[0], -1) ** 2, axis=1) for leaf in jax.tree.leaves(g))
    scale = weight * jnp.minimum(1.0, dp.l2_clip / (jnp.sqrt(sq) + 1e-12))
    summed = jax.tree.map(lambda leaf: jnp.tensordot(scale, leaf, axes=1), g)
    if extra is not None:
        summed = jax.tree.map(jnp.add, summed, extra)
    noise = dp_noise(key, summed, dp.noise_multiplier * dp.l2_clip)
    denominator = xb.shape[0] if denominator is None else denominator
    grads = jax.tree.map(lambda a, b: (a + b) / denominator, summed, noise)
    loss = jnp.sum(losses * weight) / jnp.maximum(jnp.sum(weight), 1.0)
    return loss, grads
