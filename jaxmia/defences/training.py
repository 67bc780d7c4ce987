"""Training-time defences and their privacy accounting.

* **L2 weight decay** and **dropout**: regularisers that shrink the generalisation gap
  membership inference feeds on (Shokri et al. 2017; Nasr et al. 2018).
* **Early stopping**: stop each model when its validation loss stops improving
  (:func:`jaxmia.engine.engine.train` with ``validation=`` and ``patience=``).
* **DP-SGD** (Abadi et al. 2016): per-example clipping and Gaussian noise
  (:class:`jaxmia.engine.engine.DPConfig`), with the privacy budget epsilon at a given delta
  computed by Google's ``dp-accounting`` (``pip install 'jaxmia[dp]'``).

:class:`Defence` bundles the settings; :func:`optimizer` and :func:`model_factory`
turn them into what the shadow engine takes.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import optax

from jaxmia import engine


@dataclasses.dataclass(frozen=True)
class Defence:
    """Training-time defences of a model.

    Attributes:
      weight_decay: L2 penalty coefficient (decoupled, as in AdamW); 0 for none.
      dropout: dropout rate of the MLP's hidden layers.
      early_stopping: patience in epochs (0: train every epoch).
      dp_noise: DP-SGD noise multiplier (``None``: no DP-SGD).
      dp_clip: DP-SGD per-example L2 clipping norm.
      dp_delta: the delta at which epsilon is reported.
    """

    weight_decay: float = 0.0
    dropout: float = 0.0
    early_stopping: int = 0
    dp_noise: float | None = None
    dp_clip: float = 1.0
    dp_delta: float = 1e-5

    def __post_init__(self):
        if self.weight_decay < 0 or not 0 <= self.dropout < 1 or self.early_stopping < 0:
            raise ValueError(
                "need weight_decay >= 0, 0 <= dropout < 1 and early_stopping >= 0, got "
                f"{self.weight_decay}, {self.dropout}, {self.early_stopping}"
            )
        if self.dp_noise is not None and self.dropout:
            raise ValueError("DP-SGD is supported for models without dropout")
        if not 0 < self.dp_delta < 1:
            raise ValueError(f"dp_delta must lie in (0, 1), got {self.dp_delta}")

    @property
    def active(self) -> bool:
        return bool(
            self.weight_decay or self.dropout or self.early_stopping or self.dp_noise is not None
        )

    @property
    def dp(self) -> engine.DPConfig | None:
        if self.dp_noise is None:
            return None
        return engine.DPConfig(l2_clip=self.dp_clip, noise_multiplier=self.dp_noise)

    def describe(self) -> str:
        parts = []
        if self.weight_decay:
            parts.append(f"L2 weight decay {self.weight_decay:g}")
        if self.dropout:
            parts.append(f"dropout {self.dropout:g}")
        if self.early_stopping:
            parts.append(f"early stopping (patience {self.early_stopping})")
        if self.dp_noise is not None:
            parts.append(f"DP-SGD (noise {self.dp_noise:g}, clip {self.dp_clip:g})")
        return ", ".join(parts) or "none"


@functools.cache
def optimizer(learning_rate: float, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """Adam, or AdamW when ``weight_decay > 0`` (one object per setting, so the engine's
    compiled functions are reused)."""
    if weight_decay:
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    return engine.adam(learning_rate)


def dp_epsilon(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float = 1e-5
) -> float:
    """Epsilon of DP-SGD at ``delta``, by ``dp-accounting``'s RDP accountant.

    The accountant assumes Poisson sampling at ``sample_rate`` = batch size / training-set
    size, the standard analysis of DP-SGD; the engine shuffles instead, as most DP-SGD
    implementations do (stated in every report that quotes epsilon).

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
