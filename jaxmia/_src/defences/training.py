"""Training-time defences and their privacy accounting.

* **L2 weight decay** and **dropout**: regularisers that shrink the generalisation gap
  membership inference feeds on (Shokri et al. 2017; Nasr et al. 2018).
* **Early stopping**: stop each model when its validation loss stops improving
  (:func:`jaxmia.engine.train` with ``validation=`` and ``patience=``).
* **L1** penalty ``lambda * sum |w|`` over the weight matrices (:func:`l1_penalty`).
* **Label smoothing**, **mixup**, **RelaxLoss** and **adversarial training** (FGSM/PGD):
  objectives of :mod:`jaxmia._src.engine.objectives` (:attr:`Defence.objective`).
* **DP-SGD** (Abadi et al. 2016): per-example clipping and Gaussian noise
  (:class:`jaxmia.engine.DPConfig`), with the privacy budget epsilon at a given delta
  computed by Google's ``dp-accounting`` (``pip install 'jaxmia[dp]'``).
* **Adversarial regularisation** (Nasr, Shokri and Houmansadr, CCS 2018): each model
  trains against its own inference model, which learns to tell the model's members from
  reference records; the classifier's loss adds lambda times that model's gain
  (:mod:`jaxmia._src.engine.adversarial`). In an audit the reference records are a fixed half
  of each model's non-members (:func:`jaxmia._src.audit.setup.training_spec`).

:class:`Defence` bundles the settings; :func:`optimizer` and :attr:`Defence.dp`
turn them into what the shadow engine takes.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import optax

from jaxmia._src import engine
from jaxmia.settings import BELOW_ONE, NAT, Range, Section, opt, opt_like

__all__ = ["Defence", "dp_epsilon", "l1_penalty", "optimizer"]


_P = "defended"
"""A defence changes the shadow pool where the shadows are defended (``pool`` metadata,
:mod:`jaxmia._src.audit.config`)."""
_dp_field = functools.partial(opt_like, engine.DPConfig, pool=_P)
"""A defended setting that takes the values of a :class:`jaxmia.engine.DPConfig` field."""
_objective_field = functools.partial(opt_like, engine.Objective, pool=_P)
"""A defended setting that takes the values of a :class:`jaxmia.engine.Objective` field."""
_ENGINE_NAMES = {"dp": "dp_noise", "adv_eps": "adv_train"}
"""A :class:`Defence` field by the key of the engine's combination rules
(:data:`jaxmia._src.engine.training_spec.COMBINATIONS`) where the two differ."""


@dataclasses.dataclass(frozen=True)
class Defence(Section):
    """Training-time defences of a model (the ``defence`` section of
    :class:`jaxmia.audit.AuditConfig`); each field's ``metadata["help"]`` says what it does.

    Every value is checked whatever the others are (:class:`jaxmia.settings.Section`:
    finite real numbers, never a bool, in range; the bounds of a setting that the engine
    takes are the engine's field's), then the combinations, by the engine's rules
    (:func:`jaxmia._src.engine.training_spec.check_combinations`: DP-SGD without dropout,
    training objectives or adversarial regularisation; RelaxLoss alone; adversarial
    regularisation without training objectives). A :class:`jaxmia.settings.ConfigError`
    (a ``ValueError``) names the setting and the value.
    """

    weight_decay: float = opt(0.0, "defence: L2 weight decay of the target (AdamW)", _P, b=NAT)
    dropout: float = opt(
        0.0, "defence: dropout rate of the target's hidden layers", _P, b=BELOW_ONE
    )
    early_stopping: int = opt(
        0, "defence: patience in epochs on a validation split of non-members (0: off)", _P, b=NAT
    )
    dp_noise: float | None = _dp_field(
        "noise_multiplier", None, "defence: DP-SGD noise multiplier (default: no DP-SGD)"
    )
    dp_clip: float = _dp_field("l2_clip", 1.0, "DP-SGD per-example L2 clipping norm")
    dp_delta: float = opt(
        1e-5, "delta at which the DP-SGD epsilon is reported", "never", b=Range(0, 1, True, True)
    )
    dp_sampling: str = _dp_field(
        "sampling",
        "poisson",
        "DP-SGD batches: poisson (what the epsilon accountant assumes) or shuffle (not "
        "covered by it)",
    )
    l1: float = opt(0.0, "defence: L1 penalty lambda * sum |w| over weight matrices", _P, b=NAT)
    label_smoothing: float = _objective_field(
        "label_smoothing", 0.0, "defence: label smoothing eps in [0, 1) (0: off)"
    )
    mixup: float = _objective_field(
        "mixup", 0.0, "defence: mixup alpha of Beta(alpha, alpha) (0: off)"
    )
    relaxloss: float = _objective_field(
        "relaxloss", 0.0, "defence: RelaxLoss target loss alpha (0: off)"
    )
    adv_train: float = _objective_field(
        "adv_eps", 0.0, "defence: adversarial training L-inf radius eps in input units (0: off)"
    )
    adv_train_steps: int = _objective_field(
        "adv_steps", 1, "adversarial training steps (1: FGSM, more: PGD)"
    )
    adv_reg: float = opt(
        0.0,
        "defence: adversarial regularisation strength lambda (Nasr et al. 2018; 0: off)",
        _P,
        b=NAT,
    )

    def __post_init__(self):
        super().__post_init__()  # each value alone
        parts = engine.objectives.PARTS
        on = {
            "dp": self.dp_noise is not None,
            "dropout": bool(self.dropout),
            "adv_reg": bool(self.adv_reg),
            **{part: bool(getattr(self, _ENGINE_NAMES.get(part, part))) for part in parts},
        }
        engine.training_spec.check_combinations(on, _ENGINE_NAMES)

    @property
    def dp(self) -> engine.DPConfig | None:
        """The engine's DP-SGD settings, or ``None`` without DP-SGD."""
        if self.dp_noise is None:
            return None
        return engine.DPConfig(
            l2_clip=self.dp_clip, noise_multiplier=self.dp_noise, sampling=self.dp_sampling
        )

    @property
    def objective(self) -> engine.Objective | None:
        """The engine's training objective (label smoothing, mixup, RelaxLoss, adversarial
        training), or ``None`` when all are off."""
        objective = engine.Objective(
            label_smoothing=self.label_smoothing,
            mixup=self.mixup,
            relaxloss=self.relaxloss,
            adv_eps=self.adv_train,
            adv_steps=self.adv_train_steps,
        )
        return objective if objective.active else None

    @property
    def adversarial(self) -> engine.AdvReg | None:
        """The engine's adversarial-regularisation settings (lambda ``adv_reg``, the
        inference model's defaults), or ``None`` when ``adv_reg`` is 0."""
        return engine.AdvReg(strength=float(self.adv_reg)) if self.adv_reg else None

    def describe(self) -> str:
        """The defences in words, e.g. ``"L2 weight decay 0.01, dropout 0.5"`` (``"none"``)."""
        parts = []
        if self.weight_decay:
            parts.append(f"L2 weight decay {self.weight_decay:g}")
        if self.dropout:
            parts.append(f"dropout {self.dropout:g}")
        if self.early_stopping:
            parts.append(f"early stopping (patience {self.early_stopping})")
        if self.dp_noise is not None:
            shuffled = ", shuffled batches" if self.dp_sampling == "shuffle" else ""
            parts.append(f"DP-SGD (noise {self.dp_noise:g}, clip {self.dp_clip:g}{shuffled})")
        if self.l1:
            parts.append(f"L1 {self.l1:g}")
        if self.label_smoothing:
            parts.append(f"label smoothing {self.label_smoothing:g}")
        if self.mixup:
            parts.append(f"mixup (alpha {self.mixup:g})")
        if self.relaxloss:
            parts.append(f"RelaxLoss (alpha {self.relaxloss:g})")
        if self.adv_train:
            steps = self.adv_train_steps
            kind = "FGSM" if steps == 1 else f"PGD, {steps} steps"
            parts.append(f"adversarial training ({kind}, eps {self.adv_train:g})")
        if self.adv_reg:
            parts.append(f"adversarial regularisation (lambda {self.adv_reg:g})")
        return ", ".join(parts) or "none"


def l1_penalty(strength: float) -> optax.GradientTransformation:
    """The gradient of the L1 penalty ``strength * sum |w|``: adds ``strength * sign(w)``
    to the gradient of every weight matrix (parameters of 2 or more dimensions: dense and
    convolution kernels; biases are not penalised, as with L1 in Keras' kernel_regularizer).

    Chained before the optimizer, ``optax.chain(l1_penalty(lam), optax.adam(lr))`` equals
    Adam on the gradient of ``loss + lam * sum |w|`` (``sign(0) = 0``, the subgradient
    ``jax.grad`` takes of ``|w|`` at 0).

    Args:
      strength: lambda >= 0.

    Returns:
      A stateless optax transformation; it needs ``params`` in ``update``.
    """

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("l1_penalty needs the parameters (tx.update(grads, state, params))")
        add = lambda g, w: g + strength * jnp.sign(w) if w.ndim >= 2 else g
        return jax.tree.map(add, updates, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def optimizer(
    learning_rate: float, weight_decay: float = 0.0, l1: float = 0.0
) -> optax.GradientTransformation:
    """Adam, or AdamW when ``weight_decay > 0``, after :func:`l1_penalty` when ``l1 > 0``
    (one object per setting, however the call spells it, so the engine's compiled
    functions are reused)."""
    return _optimizer(float(learning_rate), float(weight_decay), float(l1))


@functools.cache
def _optimizer(
    learning_rate: float, weight_decay: float, l1: float
) -> optax.GradientTransformation:
    if weight_decay:
        tx = optax.adamw(learning_rate, weight_decay=weight_decay)
    else:
        tx = engine.adam(learning_rate)
    return optax.chain(l1_penalty(l1), tx) if l1 else tx


def dp_epsilon(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float = 1e-5
) -> float:
    """Epsilon of DP-SGD at ``delta``, by ``dp-accounting``'s RDP accountant.

    The accountant composes ``steps`` Poisson-subsampled Gaussian mechanisms at
    ``sample_rate`` = batch size / training-set size, the standard analysis of DP-SGD,
    which describes the engine's default Poisson-sampled batches
    (:mod:`jaxmia._src.engine.sampling`) when given the steps and rate that ran
    (``Pool.dp_counts``). It does not cover shuffled batches (``dp_sampling="shuffle"``;
    Chua et al. 2024), and every report that quotes epsilon for them says so.

    Args:
      noise_multiplier: sigma of the Gaussian noise relative to the clipping norm.
      sample_rate: expected fraction of the training set in one batch.
      steps: number of noisy gradient steps.
      delta: the target delta.

    Returns:
      epsilon (``inf`` without noise).
    """
    if noise_multiplier <= 0:
        return math.inf
    try:
        import dp_accounting
        from dp_accounting import rdp
    except ImportError:
        raise ImportError(
            "epsilon needs the dp-accounting package: pip install 'jaxmia[dp]'"
        ) from None
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            min(sample_rate, 1.0), dp_accounting.GaussianDpEvent(noise_multiplier)
        ),
        int(steps),
    )
    accountant = rdp.RdpAccountant()
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))
