"""How the models of a pool train: one frozen spec (:class:`TrainingSpec`).

Everything :func:`jaxmia.engine.train` needs besides the data, the architecture, the keys
and the layout: the optimizer, epochs and batch size, the loss, DP-SGD, a training
objective, adversarial regularisation and early stopping. The audit builds one for the
target and one for the shadow models, trains with them and describes training from them
(:meth:`TrainingSpec.describe`), so that what the report says and what ran cannot
disagree. A pool directory records the spec (:func:`pool_spec`)
and refuses a pool trained under another.

Settings that do not go together are :data:`COMBINATIONS`, each rule stated once beside
its concept; :func:`jaxmia.engine.train` and :class:`jaxmia.defences.Defence`
both refuse them through :func:`check_combinations`, each naming the settings its way.

Example::

    spec = engine.TrainingSpec(epochs=20, optimizer=optax.sgd(0.1, momentum=0.9),
                               optimizer_name="SGD 0.1, momentum 0.9")
    pool = engine.train(factory, ds.x, ds.y, keep, spec=spec)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import optax

from jaxmia._src.engine import adversarial
from jaxmia._src.engine.adversarial import ADV_REG_ALONE, AdvReg
from jaxmia._src.engine.dpsgd import DP_ALONE, DPConfig
from jaxmia._src.engine.fingerprint import (
    data_fingerprint,
    loss_digest,
    optimizer_digest,
    structure_digest,
)
from jaxmia._src.engine.kernel import LossFn, cross_entropy
from jaxmia._src.engine.objectives import DEFAULT_LOSS, PARTS, RELAXLOSS_ALONE, Objective
from jaxmia.models import ModelFactory
from jaxmia.settings import Rule, refuse_combinations

__all__ = [
    "COMBINATIONS",
    "DEFAULT_LEARNING_RATE",
    "NAMES",
    "TrainingSpec",
    "check_combinations",
    "early_stopping_spec",
    "pool_spec",
    "settings_on",
]

DEFAULT_LEARNING_RATE = 1e-3
"""The learning rate of the default optimizer, ``optax.adam``."""
COMBINATIONS: tuple[Rule, ...] = (RELAXLOSS_ALONE, DEFAULT_LOSS, DP_ALONE, ADV_REG_ALONE)
"""Every combination of settings the engine refuses (:class:`jaxmia.settings.Rule`), by
the keys ``dp``, ``dropout`` (the model has non-parameter state), ``loss_fn`` (a loss
other than the default), ``adv_reg`` and the objective's
:data:`jaxmia._src.engine.objectives.PARTS`."""
NAMES: Mapping[str, str] = {"dropout": "model state (dropout or other non-parameter variables)"}
"""How the engine names a key of :data:`COMBINATIONS` where the key is not its name."""


@dataclasses.dataclass(frozen=True, eq=False)
class TrainingSpec:
    """How each model of a pool trains.

    Attributes:
      epochs: passes over each model's members.
      batch_size: examples per step (see :func:`jaxmia.engine.train`).
      optimizer: any optax transformation; ``None``: ``optax.adam(1e-3)``.
      optimizer_name: how a report names the optimizer (``"Adam 0.001"``); ``None``: the
        default's name, or that of the transformation's type.
      loss_fn: per-example loss ``(logits (b, c), labels (b,)) -> (b,)``; ``None``:
        softmax cross-entropy.
      dp: DP-SGD (:class:`jaxmia.engine.DPConfig`), or ``None``.
      objective: label smoothing, mixup, RelaxLoss or adversarial training
        (:class:`jaxmia.engine.Objective`), or ``None``.
      adv_reg: adversarial regularisation (:class:`jaxmia.engine.AdvReg`), or ``None``.
      reference: ``(k, n)`` or ``(n,)`` bool, the reference records of ``adv_reg``.
      validation: ``(x_val, y_val)`` for early stopping, or ``None``.
      patience: stop once no model has improved on ``validation`` for this many epochs
        (0: no early stopping).
    """

    epochs: int = 30
    batch_size: int = 128
    optimizer: optax.GradientTransformation | None = None
    optimizer_name: str | None = None
    loss_fn: LossFn | None = None
    dp: DPConfig | None = None
    objective: Objective | None = None
    adv_reg: AdvReg | None = None
    reference: np.ndarray | None = None
    validation: tuple[np.ndarray, np.ndarray] | None = None
    patience: int = 0

    @property
    def tx(self) -> optax.GradientTransformation:
        """The optimizer that runs: :attr:`optimizer`, or ``optax.adam(1e-3)``."""
        if self.optimizer is None:
            return optax.adam(DEFAULT_LEARNING_RATE)
        return self.optimizer

    @property
    def loss(self) -> LossFn:
        """The loss that runs: :attr:`loss_fn`, or softmax cross-entropy."""
        return cross_entropy if self.loss_fn is None else self.loss_fn

    def adversarial_entry(self) -> dict | None:
        """The JSON-able record of adversarial regularisation in a pool's spec
        (:func:`jaxmia._src.engine.adversarial.spec_entry`), or ``None`` without it."""
        return adversarial.spec_entry(self.adv_reg, self.reference)

    def replace(self, **changes: Any) -> TrainingSpec:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """``"30 epochs, batch 128, Adam 0.001"``: the recipe as a report states it (the
        defences -- DP-SGD, objectives, regularisation, early stopping -- are stated by
        whoever chose them)."""
        name = self.optimizer_name
        if name is None:
            name = (
                f"Adam {DEFAULT_LEARNING_RATE}"
                if self.optimizer is None
                else f"optimizer given by the user ({type(self.optimizer).__name__})"
            )
        loss = "" if self.loss_fn is None else ", loss given by the user"
        return f"{self.epochs} epochs, batch {self.batch_size}, {name}{loss}"


def settings_on(spec: TrainingSpec, *, stateful: bool) -> dict[str, bool]:
    """Which settings of ``spec`` are on, by the keys of :data:`COMBINATIONS`;
    ``stateful``: whether the model has non-parameter state (dropout)."""
    parts = dict.fromkeys(PARTS, False) if spec.objective is None else spec.objective.parts
    return {
        "dp": spec.dp is not None,
        "dropout": stateful,
        "loss_fn": spec.loss is not cross_entropy,
        "adv_reg": spec.adv_reg is not None,
        **parts,
    }


def check_combinations(on: Mapping[str, bool], names: Mapping[str, str] | None = None) -> None:
    """Refuses settings ``on`` (which are on, by the keys of :data:`COMBINATIONS`) that
    break one of :data:`COMBINATIONS`, in a one-line
    :class:`jaxmia.settings.ConfigError` that names them by ``names`` (the caller's names
    where they are not the keys; default: the engine's, :data:`NAMES`)."""
    refuse_combinations(COMBINATIONS, on, NAMES if names is None else names)


def early_stopping_spec(validation, patience: int) -> dict[str, Any] | None:
    """The early-stopping part of a pool's spec: patience and the validation data's
    fingerprint (None when off)."""
    if validation is None or patience <= 0:
        return None
    x_val, y_val = validation
    return {"patience": patience, "validation": data_fingerprint(x_val, y_val)}


def pool_spec(
    factory: ModelFactory,
    x: np.ndarray,
    y: np.ndarray,
    spec: TrainingSpec,
    *,
    classes: int,
    extra: Mapping[str, Any] | None,
    canary: Any = None,
) -> dict[str, Any]:
    """The spec of a pool trained under ``spec`` (:class:`jaxmia.engine.TrainingSpec`):
    data and architecture fingerprints, optimizer digest, epochs, batch size, DP-SGD,
    early stopping, the loss (only when it is not the default cross-entropy, so that
    pools of the default loss keep their spec), the training objective (an inactive one
    is none), the Dirac canary and adversarial regularisation
    (:func:`jaxmia._src.engine.adversarial.spec_entry`) (each only when there is one) and
    ``extra``. DP-SGD over shuffled batches keeps the spec it had before Poisson sampling
    was added (its models are the same)."""
    dp, objective = spec.dp, spec.objective
    out = {
        "data": data_fingerprint(x, y),
        "architecture_sha256": structure_digest(factory),
        "optimizer_sha256": optimizer_digest(factory, spec.tx),
        "epochs": spec.epochs,
        "batch_size": spec.batch_size,
        "dp": None if dp is None else _dp_spec(dp),
        "early_stopping": early_stopping_spec(spec.validation, spec.patience),
    }
    if spec.loss is not cross_entropy:
        out["loss_sha256"] = loss_digest(spec.loss, classes)
    if objective is not None and objective.active:
        out["objective"] = dataclasses.asdict(objective)
    if canary is not None:
        out["canary"] = dataclasses.asdict(canary)
    adv_reg = spec.adversarial_entry()
    if adv_reg is not None:  # only then, so that other pools keep their spec
        out["adv_reg"] = dict(adv_reg)
    return {**out, **(extra or {})}


def _dp_spec(dp: DPConfig) -> dict[str, Any]:
    spec = dataclasses.asdict(dp)
    if spec["sampling"] == "shuffle":
        del spec["sampling"]
    return spec
