"""Training objectives other than the plain mean loss: the kernel's batch loss under a
defence that changes what a step minimises.

* **Label smoothing** (Szegedy et al. 2016, "Rethinking the Inception Architecture"):
  cross-entropy against ``(1 - eps) * onehot + eps / c``.
* **Mixup** (Zhang et al., ICLR 2018): ``lambda ~ Beta(alpha, alpha)`` per batch,
  ``x~ = lambda x + (1 - lambda) x[perm]``, loss ``lambda l(y) + (1 - lambda) l(y[perm])``,
  ``perm`` a random permutation of the batch's real (weight 1) examples.
* **RelaxLoss** (Chen, Yu and Fritz, ICLR 2022, Algorithm 1): descent while the batch's
  mean cross-entropy is above ``alpha``; below it, gradient ascent on even epochs and
  posterior flattening on odd ones (:func:`relaxloss_loss`).
* **Adversarial training** (Madry et al., ICLR 2018): train on FGSM (one step) or PGD
  examples in input space under an L-infinity ball of radius ``eps``
  (:func:`adversarial_examples`). Song, Shokri and Mittal (CCS 2019) report that it
  *increases* membership-inference leakage.

Everything random (mixup's ``lambda`` and permutation, PGD's random start) is drawn from
``fold_in(fold_in(fold_in(model_key, OBJECTIVE_STREAM), epoch), step)``, so a model
trained in a pool equals the same model trained alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxmia.settings import (
    BELOW_ONE,
    NAT,
    POS,
    POSITIVE_REAL,
    ConfigError,
    Rule,
    Section,
    opt,
    refuse_combinations,
)

__all__ = [
    "DEFAULT_LOSS",
    "OBJECTIVE_STREAM",
    "PARTS",
    "RELAXLOSS_ALONE",
    "Objective",
    "adversarial_examples",
    "check_objective",
    "mixup_draw",
    "objective_loss",
    "relaxloss_loss",
    "smooth_targets",
    "step_key",
]

OBJECTIVE_STREAM = 0x0B1EC7
"""``fold_in`` constant that derives a model's objective key (mixup, PGD start) from its key."""


PARTS = ("label_smoothing", "mixup", "relaxloss", "adv_eps")
"""The parts of an :class:`Objective`, each off at 0 (the keys of combination rules)."""
RELAXLOSS_ALONE = Rule("relaxloss", ("label_smoothing", "mixup", "adv_eps"))
"""RelaxLoss defines its own loss and schedule: no other part of an objective with it."""
DEFAULT_LOSS = Rule("loss_fn", ("label_smoothing", "relaxloss"), "not softmax cross-entropy")
"""Label smoothing and RelaxLoss define their own cross-entropy: not with another
``loss_fn`` (key ``loss_fn``: a loss other than the default is given)."""


@dataclasses.dataclass(frozen=True)
class Objective(Section):
    """What a training step minimises besides the plain mean loss (static under ``jit``).

    Each field's ``metadata["help"]`` says what it does; every value is checked
    (:class:`jaxmia.settings.Section`) and :data:`RELAXLOSS_ALONE` kept, each refusal a
    one-line :class:`jaxmia.settings.ConfigError` that names the field.

    Label smoothing and mixup combine with each other and with adversarial training (the
    adversarial examples are drawn first, against the smoothed loss, and then mixed).
    Label smoothing and RelaxLoss define their own cross-entropy and so need the default
    loss (:data:`DEFAULT_LOSS`); mixup and adversarial training use the engine's
    ``loss_fn``.
    """

    label_smoothing: float = opt(
        0.0, "label smoothing eps: targets (1 - eps) * onehot + eps / c (0: off)", b=BELOW_ONE
    )
    mixup: float = opt(0.0, "mixup alpha of Beta(alpha, alpha) (0: off)", b=NAT)
    relaxloss: float = opt(0.0, "RelaxLoss target loss alpha (0: off)", b=NAT)
    adv_eps: float = opt(
        0.0, "adversarial training L-infinity radius in input units (0: off)", b=NAT
    )
    adv_steps: int = opt(1, "adversarial training steps: 1 for FGSM, more for PGD", b=POS)
    adv_step_size: float | None = opt(
        None, "PGD's step (default adv_eps / 4; FGSM steps adv_eps)", b=POSITIVE_REAL
    )
    x_range: tuple[float, float] | None = opt(
        None,
        "(min, max) the adversarial inputs are clipped to; jaxmia.engine.train fills in "
        "the training data's range when it is None",
    )

    def __post_init__(self):
        super().__post_init__()
        if self.x_range is not None and not (
            len(self.x_range) == 2 and self.x_range[0] <= self.x_range[1]
        ):
            raise ConfigError(
                f"x_range must be a pair (min, max), min <= max, got {self.x_range!r}"
            )
        refuse_combinations((RELAXLOSS_ALONE,), self.parts)

    @property
    def parts(self) -> dict[str, bool]:
        """Which of :data:`PARTS` are on."""
        return {part: bool(getattr(self, part)) for part in PARTS}

    @property
    def active(self) -> bool:
        """Whether any part is on (an all-off objective trains like none)."""
        return any(self.parts.values())

    @property
    def needs_cross_entropy(self) -> bool:
        """Whether it defines its own cross-entropy (label smoothing, RelaxLoss: the parts
        that :data:`DEFAULT_LOSS` keeps from another loss)."""
        return any(self.parts[part] for part in DEFAULT_LOSS.others)


def step_key(model_key: jax.Array, epoch: jax.Array, step: jax.Array) -> jax.Array:
    """The objective's key of one step:
    ``fold_in(fold_in(fold_in(model_key, OBJECTIVE_STREAM), epoch), step)``."""
    key = jax.random.fold_in(jax.random.fold_in(model_key, OBJECTIVE_STREAM), epoch)
    return jax.random.fold_in(key, step)


def smooth_targets(labels: jax.Array, num_classes: int, eps: float) -> jax.Array:
    """``(b, c)`` label-smoothed targets ``(1 - eps) * onehot(labels) + eps / c``
    (Szegedy et al. 2016) of ``(b,)`` integer labels."""
    return (1.0 - eps) * jax.nn.one_hot(labels, num_classes) + eps / num_classes


def mixup_draw(key: jax.Array, weight: jax.Array, alpha: float) -> tuple[jax.Array, jax.Array]:
    """Mixup's ``(lambda, perm)`` of one batch (Zhang et al., ICLR 2018).

    Args:
      key: PRNG key of the step.
      weight: ``(b,)`` 1 for the batch's real examples, 0 for padding.
      alpha: the Beta distribution's parameter.

    Returns:
      ``lambda`` (scalar in ``[0, 1]``, from ``Beta(alpha, alpha)``) and ``perm``
      ``(b,)`` int32: a uniformly random permutation of the real positions among
      themselves; padding positions map to themselves.
    """
    lam_key, perm_key = jax.random.split(key)
    lam = jax.random.beta(lam_key, alpha, alpha)
    b = weight.shape[0]
    real = weight > 0
    position = jnp.arange(b, dtype=jnp.float32)
    shuffled = jnp.argsort(jnp.where(real, jax.random.uniform(perm_key, (b,)), 2.0 + position))
    slots = jnp.argsort(jnp.where(real, 0.0, 1.0 + position))  # real positions, then padding
    perm = jnp.zeros((b,), jnp.int32).at[slots].set(shuffled.astype(jnp.int32))
    return lam, perm


def adversarial_examples(
    loss_of_x: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    key: jax.Array,
    *,
    eps: float,
    steps: int,
    step_size: float,
    random_start: bool,
    x_range: tuple[float, float],
) -> jax.Array:
    """L-infinity adversarial examples by projected gradient ascent (Madry et al. 2018).

    ``x' = clip(proj_eps(x' + step_size * sign(grad_x loss(x'))), min, max)``, ``steps``
    times, from ``x`` (FGSM, Goodfellow et al. 2015, is
    ``steps=1, step_size=eps, random_start=False``) or from ``x + U(-eps, eps)`` (PGD's
    random start).

    For binary features (Location-30's 0/1 check-ins) a perturbation lives in the
    continuous relaxation ``[0, 1]``: a feature moves by at most ``eps`` towards the other
    value and the model trains on fractional inputs; nothing is rounded back to 0/1.

    Args:
      loss_of_x: ``(b, ...) -> scalar`` the loss to increase (a sum over examples, so that
        each example's gradient is its own; padding examples get zero gradient).
      x: ``(b, ...)`` clean inputs.
      key: PRNG key of the random start.
      eps, steps, step_size, random_start: the attack.
      x_range: ``(min, max)`` of valid inputs.

    Returns:
      ``(b, ...)`` inputs with ``|x' - x| <= eps`` and ``min <= x' <= max`` elementwise
      (no gradient flows through them).
    """
    lo, hi = x_range
    x = jax.lax.stop_gradient(x)
    adv = x
    if random_start:
        adv = jnp.clip(x + jax.random.uniform(key, x.shape, x.dtype, -eps, eps), lo, hi)
    for _ in range(steps):
        g = jax.grad(loss_of_x)(adv)
        adv = jnp.clip(adv + step_size * jnp.sign(g), x - eps, x + eps)
        adv = jnp.clip(adv, lo, hi)
    return jax.lax.stop_gradient(adv)


def _mean(values: jax.Array, weight: jax.Array) -> jax.Array:
    """The ``weight``-ed mean, as the kernel's plain batch loss takes it."""
    return jnp.sum(values * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def relaxloss_loss(
    logits: jax.Array, labels: jax.Array, weight: jax.Array, alpha: float, epoch: jax.Array
) -> jax.Array:
    """RelaxLoss's batch loss (Chen, Yu and Fritz, ICLR 2022, Algorithm 1).

    With ``ce`` the per-example cross-entropy and ``L`` its (weighted) batch mean:
    ``L`` when ``L > alpha`` (plain descent); otherwise, on even epochs ``|L - alpha|``
    (gradient ascent towards alpha), on odd epochs posterior flattening: soft targets
    that keep the true class's confidence ``p_y`` (clamped to ``[0, 1]``, no gradient
    through it) and spread ``1 - p_y`` uniformly over the other ``c - 1`` classes, and the
    loss ``mean((1 - correct) * CE(soft) - ce)``, ``correct`` whether the argmax is the
    label. Taken from the paper: the threshold and the alternation of ascent and
    flattening by epoch parity; from the official code (DingfanChen/RelaxLoss,
    ``relaxloss.py``): the ``|L - alpha|`` form, the ``(1 - correct) * CE_soft - ce``
    loss, the clamp (upper bound 1, the code's default) and that the threshold is tested
    on the batch mean.

    Args:
      logits: ``(b, c)``; labels: ``(b,)`` int; weight: ``(b,)`` 1 real, 0 padding.
      alpha: the target loss.
      epoch: int scalar, the epoch's index (0-based).

    Returns:
      The scalar loss to minimise.
    """
    c = logits.shape[-1]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    mean_ce = _mean(ce, weight)
    onehot = jax.nn.one_hot(labels, c)
    conf = jnp.sum(jax.nn.softmax(logits) * onehot, axis=-1, keepdims=True)
    conf = jax.lax.stop_gradient(jnp.clip(conf, 0.0, 1.0))
    soft = onehot * conf + (1.0 - onehot) * (1.0 - conf) / (c - 1)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype)
    flatten = _mean((1.0 - correct) * optax.softmax_cross_entropy(logits, soft) - ce, weight)
    below = jnp.where(epoch % 2 == 0, jnp.abs(mean_ce - alpha), flatten)
    return jnp.where(mean_ce > alpha, mean_ce, below)


def objective_loss(
    objective: Objective,
    graphdef,
    loss_fn,
    key: jax.Array,
    epoch: jax.Array,
    params,
    rest,
    xb,
    yb,
    weight,
):
    """``(loss, rest)``: the batch loss under ``objective``, in the place of the kernel's
    :func:`jaxmia._src.engine.kernel.batch_loss` (differentiated with respect to ``params``).

    Args:
      objective: the :class:`Objective` (static).
      graphdef: the model's train-mode ``nnx.GraphDef``.
      loss_fn: the per-example loss ``(logits (b, c), labels (b,)) -> (b,)`` (mixup and
        adversarial training without label smoothing).
      key: this step's key (:func:`step_key`).
      epoch: int scalar, the epoch's index (RelaxLoss).
      params, rest: the model's state.
      xb: ``(b, ...)`` inputs; yb: ``(b,)`` labels; weight: ``(b,)`` 1 real, 0 padding.

    The loss returned (and logged as the epoch's mean loss) is the value minimised:
    RelaxLoss's is ``|L - alpha|`` or the flattening loss, which may be negative.

    Adversarial examples are drawn against the model with ``rest`` as it is before the
    step (with dropout, the same masks as the training pass), and no gradient flows
    through them (Danskin's theorem, as Madry et al. train).
    """
    rest = jax.tree.map(lambda a: a, rest)  # as batch_loss: stateful layers update a copy

    def per_example(p, x):
        return _loss(objective, loss_fn, nnx.merge(graphdef, p, rest)(x), yb)

    mix_key, adv_key = jax.random.split(key)
    if objective.adv_eps:
        eps = objective.adv_eps
        pgd = objective.adv_steps > 1
        step_size = eps if not pgd else objective.adv_step_size or eps / 4
        p0 = jax.lax.stop_gradient(params)
        x_range = objective.x_range or (-jnp.inf, jnp.inf)
        xb = adversarial_examples(
            lambda x: jnp.sum(per_example(p0, x) * weight),
            xb,
            adv_key,
            eps=eps,
            steps=objective.adv_steps,
            step_size=step_size,
            random_start=pgd,
            x_range=x_range,
        )
    model = nnx.merge(graphdef, params, rest)
    if objective.mixup:
        lam, perm = mixup_draw(mix_key, weight, objective.mixup)
        mixed = lam * xb + (1.0 - lam) * xb[perm]
        logits = model(mixed)
        per = lam * _loss(objective, loss_fn, logits, yb)
        per = per + (1.0 - lam) * _loss(objective, loss_fn, logits, yb[perm])
        loss = _mean(per, weight)
    elif objective.relaxloss:
        loss = relaxloss_loss(model(xb), yb, weight, objective.relaxloss, epoch)
    else:
        loss = _mean(_loss(objective, loss_fn, model(xb), yb), weight)
    return loss, nnx.split(model, nnx.Param, ...)[2]


def _loss(objective: Objective, loss_fn, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``(b,)`` per-example loss: label-smoothed cross-entropy, or ``loss_fn``."""
    if objective.label_smoothing:
        targets = smooth_targets(labels, logits.shape[-1], objective.label_smoothing)
        return optax.softmax_cross_entropy(logits, targets)
    return loss_fn(logits, labels)


def check_objective(objective: Objective | None, x) -> Objective | None:
    """The objective the kernel gets: None when off, with adversarial training's input
    range filled in from ``x`` (its combinations with other settings are
    :func:`jaxmia._src.engine.training_spec.check_combinations`')."""
    if objective is not None and not isinstance(objective, Objective):
        raise ValueError(f"objective must be an engine.Objective, got {objective!r}")
    if objective is None or not objective.active:
        return None
    if objective.adv_eps and objective.x_range is None:
        objective = dataclasses.replace(objective, x_range=(float(x.min()), float(x.max())))
    return objective
