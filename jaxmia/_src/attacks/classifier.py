"""The shadow-model attack of Shokri et al. 2017.

Shokri, Stronati, Song & Shmatikov, "Membership Inference Attacks against Machine
Learning Models" (IEEE S&P 2017): a binary *attack classifier* learns to tell members
from non-members from the outputs of shadow models whose training sets are known, and is
then applied to the target's outputs on candidate records.

Features default to the sorted probability vector (on a log scale, where the gap between
0.999 and 0.99999 becomes visible) plus the one-hot true label; any of the signals of
:mod:`jaxmia.signals` that the access level provides can be used instead. With
``per_class=True`` one attack model per class is trained, as in the original paper; the
class models are trained simultaneously by the shadow engine (``vmap`` over classes). The
training rows are balanced: for every shadow model as many non-members as members.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
from jax.typing import ArrayLike

from jaxmia import models, signals
from jaxmia._src import engine
from jaxmia._src.attacks import checks, registry
from jaxmia.settings import Section, opt

__all__ = [
    "ATTACK",
    "FEATURES_BY_ACCESS",
    "PROBABILITY_SIGNALS",
    "THRESHOLD",
    "ShokriConfig",
    "ShokriFit",
    "ShokriOptions",
    "feature_matrix",
    "shokri",
    "shokri_fit",
    "shokri_score",
]

PROBABILITY_SIGNALS = frozenset(
    {
        "probabilities",
        "sorted_probabilities",
        "top_k_probabilities",
        "confidence",
        "true_class_probability",
    }
)
"""Signals that enter the attack features on a log scale."""
LOG_FLOOR = 1e-30
THRESHOLD = 0.0
"""The attack classifier's decision threshold on its log-odds (probability 1/2)."""


@dataclasses.dataclass(frozen=True)
class ShokriConfig:
    """Settings of the attack classifier.

    Attributes:
      features: signals fed to the classifier, in order.
      include_label: append the one-hot true label (ignored with ``per_class``).
      per_class: one attack model per class (Shokri et al.'s design).
      hidden: hidden widths of the attack MLP.
      steps: optimizer steps of the attack MLP (rounded up to whole epochs), so that
        small and large shadow pools are trained alike.
      batch_size: its batch size.
      learning_rate: its Adam learning rate.
      max_rows: at most this many balanced training rows (subsampled), to bound time.
    """

    features: tuple[str, ...] = ("sorted_probabilities",)
    include_label: bool = True
    per_class: bool = False
    hidden: tuple[int, ...] = (64,)
    steps: int = 3000
    batch_size: int = 512
    learning_rate: float = 1e-3
    max_rows: int = 200_000


def feature_matrix(
    sig: Mapping[str, np.ndarray],
    names: Sequence[str],
    labels: np.ndarray | None,
    num_classes: int,
) -> np.ndarray:
    """Stacks signals into attack features ``(..., n, d)``.

    Probability signals enter as ``log(max(p, 1e-30))``; scalar signals as they are;
    ``labels`` (``(n,)``), if given, as a one-hot block.
    """
    cols = []
    for name in names:
        v = np.asarray(sig[name], dtype=np.float32)
        if name in PROBABILITY_SIGNALS:
            v = np.log(np.maximum(v, LOG_FLOOR))
        cols.append(v[..., None] if name in signals.SCALAR_SIGNALS else v)
    if labels is not None:
        labels = np.asarray(labels)
        signals.check_label_values(labels, num_classes)
        lead = cols[0].shape[:-1]
        onehot = np.eye(num_classes, dtype=np.float32)[labels]
        cols.append(np.broadcast_to(onehot, (*lead, num_classes)))
    return np.concatenate(cols, axis=-1)


def _balanced_rows(keep: np.ndarray, pool: np.ndarray, rng: np.random.Generator):
    """(model, example) index pairs, as many non-members as members per model."""
    models_idx, examples_idx = [], []
    for i in range(keep.shape[0]):
        members = np.flatnonzero(keep[i] & pool)
        others = np.flatnonzero(~keep[i] & pool)
        m = min(members.size, others.size)
        chosen = np.concatenate(
            [rng.choice(members, m, replace=False), rng.choice(others, m, replace=False)]
        )
        models_idx.append(np.full(chosen.size, i))
        examples_idx.append(chosen)
    return np.concatenate(models_idx), np.concatenate(examples_idx)


def shokri(
    target_signals: Mapping[str, ArrayLike],
    shadow_signals: Mapping[str, ArrayLike],
    keep: ArrayLike,
    *,
    labels: ArrayLike,
    target_labels: ArrayLike,
    num_classes: int,
    pool: ArrayLike | None = None,
    config: ShokriConfig = ShokriConfig(),
    seed: int = 0,
) -> np.ndarray:
    """The attack of Shokri et al. 2017: an attack classifier trained on shadow outputs.

    Trains the attack MLP (Flax, through :func:`jaxmia.engine.train`) on the shadow
    models' signals of their members and non-members, then scores the target's
    candidates. Its decision threshold is :data:`THRESHOLD` (predicted probability 1/2).
    Runs on the host and trains a model, so it is not traceable by ``jax.jit``. The same
    as :func:`shokri_fit` followed by :func:`shokri_score`.

    Args:
      target_signals: ``{signal: (m, ...)}`` the target's signals on the candidates
        (at least the signals of ``config.features``).
      shadow_signals: ``{signal: (k, n, ...)}`` shadow-model signals on all ``n`` examples.
      keep: ``(k, n)`` bool or 0/1 shadow membership.
      labels: ``(n,)`` true labels of the shadow examples.
      target_labels: ``(m,)`` true labels of the candidates.
      num_classes: number of classes ``c``.
      pool: ``(n,)`` bool examples usable for training (default all).
      config: :class:`ShokriConfig`.
      seed: seeds row sampling and the attack model.

    Returns:
      ``(m,)`` float64 member log-odds from the attack classifier, higher = member.

    Raises:
      AttackInputError: if ``keep`` is not a ``(k, n)`` bool or 0/1 array.
    """
    fit = shokri_fit(
        shadow_signals,
        keep,
        labels=labels,
        num_classes=num_classes,
        pool=pool,
        config=config,
        seed=seed,
    )
    return shokri_score(fit, target_signals, target_labels)


@dataclasses.dataclass(frozen=True)
class ShokriFit:
    """A trained attack classifier of :func:`shokri_fit`.

    Attributes:
      models: the attack MLPs, a :class:`jaxmia.engine.Pool` of 1 (or ``c`` per class).
      mean, std: ``(d,)`` the feature standardisation of the training rows.
      config: the :class:`ShokriConfig` it was trained with.
      num_classes: ``c``.
    """

    models: engine.Pool
    mean: np.ndarray
    std: np.ndarray
    config: ShokriConfig
    num_classes: int


def shokri_fit(
    shadow_signals: Mapping[str, ArrayLike],
    keep: ArrayLike,
    *,
    labels: ArrayLike,
    num_classes: int,
    pool: ArrayLike | None = None,
    config: ShokriConfig = ShokriConfig(),
    seed: int = 0,
) -> ShokriFit:
    """Trains Shokri et al.'s attack classifier on the shadow models' signals of their
    members and non-members (balanced rows; the arguments as in :func:`shokri`). It needs
    nothing of the target, so it can train before the target's signals exist."""
    labels = np.asarray(labels)
    keep = np.asarray(checks.as_keep("keep", keep, (*np.shape(keep)[:1], *labels.shape)))
    pool = np.ones(keep.shape[1], bool) if pool is None else np.asarray(pool, bool)
    rng = np.random.default_rng([seed, 17])
    mi, ei = _balanced_rows(keep, pool, rng)
    if mi.size > config.max_rows:
        sub = rng.choice(mi.size, config.max_rows, replace=False)
        mi, ei = mi[sub], ei[sub]
    use_label = config.include_label and not config.per_class
    rows = {name: np.asarray(shadow_signals[name])[mi, ei] for name in config.features}
    x = feature_matrix(rows, config.features, labels[ei] if use_label else None, num_classes)
    y = keep[mi, ei].astype(np.int32)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    x = (x - mean) / std
    if config.per_class:
        group = labels[ei]
        attack_keep = np.arange(num_classes)[:, None] == group[None]
        present = attack_keep.any(axis=1)
        attack_keep[~present, 0] = True  # a class without rows trains on one row; unused
    else:
        attack_keep = np.ones((1, x.shape[0]), bool)
    factory = models.mlp(config.hidden, 2, x.shape[1], activation="relu")
    pool_models = engine.train(
        factory,
        x,
        y,
        attack_keep,
        epochs=math.ceil(config.steps / math.ceil(attack_keep.sum(1).max() / config.batch_size)),
        batch_size=config.batch_size,
        optimizer=engine.adam(config.learning_rate),
        seed=seed,
    )
    return ShokriFit(pool_models, mean, std, config, num_classes)


def shokri_score(
    fit: ShokriFit, target_signals: Mapping[str, ArrayLike], target_labels: ArrayLike
) -> np.ndarray:
    """``(m,)`` float64 member log-odds of the target's candidates (``target_signals``
    ``{signal: (m, ...)}``, ``target_labels`` ``(m,)``) from a :func:`shokri_fit`."""
    config = fit.config
    use_label = config.include_label and not config.per_class
    xt = feature_matrix(
        target_signals, config.features, target_labels if use_label else None, fit.num_classes
    )
    xt = (xt - fit.mean) / fit.std
    logits = engine.predict(fit.models, xt)  # (1 or c, m, 2)
    which = np.asarray(target_labels) if config.per_class else np.zeros(len(xt), int)
    chosen = logits[which, np.arange(len(xt))]
    return (chosen[:, 1] - chosen[:, 0]).astype(np.float64)


FEATURES_BY_ACCESS: Mapping[str, tuple[str, ...]] = {
    "probs": ("sorted_probabilities",),
    "topk": ("top_k_probabilities",),
    "label": ("correctness",),
    "loss": ("loss",),
}
"""The audit's attack-classifier features under each access level."""


@dataclasses.dataclass(frozen=True)
class ShokriOptions(Section):
    """The audit's settings of Shokri et al.'s attack (:attr:`jaxmia.attacks.Attack.options`;
    each a flat audit setting, ``--per-class``)."""

    per_class: bool = opt(False, "one Shokri attack model per class")


def _fit(shadows: registry.PoolSignals, labels, num_classes: int, settings) -> ShokriFit:
    """The audit's :attr:`jaxmia.attacks.Attack.fit`: the classifier trained on the pool's
    signals, features by access level (:data:`FEATURES_BY_ACCESS`), one per class with
    the setting ``per_class``."""
    features = FEATURES_BY_ACCESS[settings.effective_access]
    return shokri_fit(
        shadows.signals,
        shadows.keep,
        labels=labels,
        num_classes=num_classes,
        pool=shadows.pool,
        config=ShokriConfig(features=features, per_class=settings.per_class),
        seed=settings.seed,
    )


def _score(inputs: registry.AttackInputs) -> registry.Scores:
    """The candidates' member log-odds under the classifier (trained here unless
    :attr:`jaxmia.attacks.AttackInputs.fitted` holds it), decided at :data:`THRESHOLD`."""
    fit = inputs.fitted
    if fit is None:
        fit = _fit(inputs.shadows, inputs.labels, inputs.num_classes, inputs.settings)
    x = inputs.candidates
    target = {name: inputs.target[name][x] for name in fit.config.features}
    return registry.Scores(shokri_score(fit, target, inputs.labels[x]), THRESHOLD)


ATTACK = registry.Attack(
    name="shokri",
    score=_score,
    signals=lambda access: FEATURES_BY_ACCESS[access],
    calibrated=True,
    background=True,
    fit=_fit,
    statistic="signals (features of an attack MLP)",
    paper="Shokri et al. 2017",
    options=ShokriOptions,
)
"""Shokri et al.'s attack classifier as the audit runs it (:mod:`jaxmia.attacks.registry`)."""
