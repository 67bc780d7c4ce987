"""The audit's first phase: data, split, architecture and keys (:func:`prepare`).

Everything later phases read but never change is gathered in one frozen :class:`Setup`:
the dataset, the split (target and shadow keep matrices), the attacks to run, the
architecture, the validation records of early stopping, and the root PRNG key. The
helpers here turn a :class:`Setup` into what :func:`jaxmia.engine.train` takes (the
training specs of target and shadows, :func:`training_spec`; :func:`defended_factory`)
and into the descriptions a report prints (:func:`describe_model`,
:func:`describe_training`, from the same specs).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from jaxmia import models, splits
from jaxmia._src import datasets, engine
from jaxmia._src.attacks import lira, registry
from jaxmia._src.audit import shadow_config
from jaxmia._src.audit.config import AuditConfig, ConfigError, select_attacks, shadows_defended
from jaxmia._src.audit.log import Log, silent
from jaxmia._src.defences import training as defences
from jaxmia._src.engine.store import pools

__all__ = [
    "Setup",
    "ShadowTraining",
    "defended_factory",
    "describe_model",
    "describe_training",
    "model_factory",
    "prepare",
    "reference_records",
    "training_spec",
]


@dataclasses.dataclass(frozen=True)
class ShadowTraining:
    """How the shadow models train where the user says so (:func:`jaxmia.audit.audit_model`).

    Attributes:
      optimizer: the shadows' optax transformation instead of the config's Adam.
      loss_fn: the shadows' per-example loss instead of cross-entropy (passed to
        :func:`jaxmia.engine.train` only when given).
      pool: a :class:`jaxmia.engine.Pool` the user trained on the audit's ``n`` records
        (``keep`` of shape ``(k, n)``): used as the shadows instead of training them.
    """

    optimizer: optax.GradientTransformation | None = None
    loss_fn: Callable[..., Any] | None = None
    pool: engine.Pool | None = None


@dataclasses.dataclass(frozen=True)
class Setup:
    """What every phase of an audit reads (built once by :func:`prepare`).

    Attributes:
      config: the audit options.
      ds: the records: ``x`` ``(n, *input_shape)``, ``y`` ``(n,)``.
      split: target and shadow membership (``shadow_keep`` ``(k, n)``).
      attacks: the attacks to run (:func:`jaxmia.audit.select_attacks`).
      factory: the target/shadow architecture without training-time defences.
      user_factory: whether ``factory`` came from the caller (then no dropout variant).
      views: ``(q, n, ...)`` the inputs LiRA queries (the records, or augmentations).
      blocks: block ends of a balanced pool kept on disk (grown pools), else ``None``.
      validation: ``(x_val, y_val)`` for early stopping, else ``None``.
      root: the root PRNG key; ``fold_in(root, 1)`` the target's, ``2`` the shadows',
        ``3`` the output interface's.
      pool_dir: where the shadow pool is kept, or ``None``.
      shadow_training: the user's settings for the shadows (:class:`ShadowTraining`).
    """

    config: AuditConfig
    ds: datasets.Dataset
    split: splits.AuditSplit
    attacks: tuple[str, ...]
    factory: models.ModelFactory
    user_factory: bool
    views: np.ndarray
    blocks: list[int] | None
    validation: tuple[np.ndarray, np.ndarray] | None
    root: jax.Array
    pool_dir: str | os.PathLike | None
    shadow_training: ShadowTraining = ShadowTraining()

    @property
    def loo(self) -> bool:
        """Leave-one-out: the first ``config.targets`` shadow models are the targets."""
        return self.config.targets > 0

    @property
    def shadows_defended(self) -> bool:
        """Whether the shadows train with the target's defences (``defend_shadows``, or
        leave-one-out, where the pool holds the targets)."""
        return shadows_defended(self.config)

    @functools.cached_property
    def target_spec(self) -> engine.TrainingSpec:
        """How the target trains (:func:`training_spec`), built once: what trains it and
        what the report says of it."""
        return training_spec(self, True)

    @functools.cached_property
    def shadow_spec(self) -> engine.TrainingSpec:
        """How the shadow models train (:func:`training_spec`), built once."""
        return training_spec(self, self.shadows_defended, shadows=True)


def model_factory(
    config: AuditConfig,
    ds: datasets.Dataset,
    dropout: float = 0.0,
    hidden: tuple[int, ...] | None = None,
) -> models.ModelFactory:
    """The target/shadow architecture named by the config (with ``dropout``; an MLP with
    the ``hidden`` widths instead of ``config.hidden`` where given)."""
    kind = config.model
    if kind == "auto":
        kind = "cnn" if len(ds.input_shape) == 3 else "mlp"
    if kind == "cnn":
        if len(ds.input_shape) != 3:
            raise ConfigError(f"model 'cnn' needs images (h, w, channels), got {ds.input_shape}")
        return models.cnn(ds.input_shape, ds.num_classes, dropout=dropout)
    in_features = int(np.prod(ds.input_shape))
    hidden = config.hidden if hidden is None else hidden
    return models.mlp(
        hidden, ds.num_classes, in_features, activation=config.activation, dropout=dropout
    )


def describe_model(factory: models.ModelFactory) -> str:
    """``MLP(hidden=(128,), ...)``-style summary of a factory: the class or function name
    with the positional and keyword arguments a ``functools.partial`` binds
    (``partial(MyNet, 64, 128, 10)`` is ``MyNet(64, 128, 10)``)."""
    func = getattr(factory, "func", factory)
    args = [repr(a) for a in getattr(factory, "args", ()) or ()]
    kwargs = getattr(factory, "keywords", {}) or {}
    args += [f"{k}={v}" for k, v in kwargs.items()]
    return f"{getattr(func, '__name__', type(func).__name__)}({', '.join(args)})"


def defended_factory(setup: Setup, defended: bool, *, shadows: bool = False) -> models.ModelFactory:
    """The architecture with the defence's dropout where ``defended`` (config models); for
    the ``shadows``, with their widths (:func:`jaxmia._src.audit.shadow_config.shadow_hidden`)."""
    config, dropout = setup.config, setup.config.defence.dropout
    if setup.user_factory:
        return setup.factory
    hidden = shadow_config.shadow_hidden(config) if shadows else tuple(config.hidden)
    if hidden != tuple(config.hidden):
        return model_factory(config, setup.ds, dropout=dropout if defended else 0.0, hidden=hidden)
    if defended and dropout:
        return model_factory(config, setup.ds, dropout=dropout)
    return setup.factory


def training_spec(setup: Setup, defended: bool, *, shadows: bool = False) -> engine.TrainingSpec:
    """How the target (or the ``shadows``) trains: epochs, batch size, optimizer (Adam at
    the target's or the shadows' learning rate, with the defence's decay and L1 where
    ``defended``; the user's optimizer and loss for the shadows where
    :class:`ShadowTraining` gives them) and, where ``defended``, DP-SGD, early stopping,
    the training objective (label smoothing, mixup, RelaxLoss, adversarial training) and
    adversarial regularisation (with :func:`reference_records`). An audit builds each once
    (:attr:`Setup.target_spec`, :attr:`Setup.shadow_spec`), trains with it and describes
    training from it."""
    config, defence = setup.config, setup.config.defence
    user = setup.shadow_training if shadows else ShadowTraining()
    lr, epochs = config.learning_rate, config.epochs
    if shadows:
        lr, epochs = shadow_config.shadow_lr(config), shadow_config.shadow_epochs(config)
    tx, name = user.optimizer, None  # the user's: named by its type
    if tx is None:  # Adam at the target's or the shadows' rate, with the defence's decay
        decay, l1 = (defence.weight_decay, defence.l1) if defended else (0.0, 0.0)
        tx, name = defences.optimizer(lr, decay, l1), f"Adam {lr}"
    spec = engine.TrainingSpec(
        epochs=epochs,
        batch_size=config.batch_size,
        optimizer=tx,
        optimizer_name=name,
        loss_fn=user.loss_fn,
    )
    if not defended:
        return spec
    adversarial = defence.adversarial
    return spec.replace(
        dp=defence.dp,
        validation=setup.validation,
        patience=defence.early_stopping,
        objective=defence.objective,
        adv_reg=adversarial,
        reference=None if adversarial is None else reference_records(setup, shadows),
    )


def reference_records(setup: Setup, shadows: bool) -> np.ndarray:
    """The reference records of adversarial regularisation: ``(n,)`` for the target,
    ``(k, n)`` for the shadows; each model's non-members (in the shadows' pool of
    records) that fall in a fixed random half of the ``n`` records (drawn from the seed).

    The audit has no records besides those it evaluates, so the reference records are
    among the non-members the attacks score (the other half of them never reaches
    training); the inference model has seen those, which may flatter the defence.
    """
    split = setup.split
    half = np.random.default_rng([setup.config.seed, 47]).random(setup.ds.n) < 0.5
    if shadows:
        return half & split.shadow_pool & ~split.shadow_keep
    return half & ~split.target_keep


def describe_training(setup: Setup, *, shadows: bool = False) -> str:
    """``"MLP(...), 30 epochs, batch 128, Adam 0.001; seed 0"``: how the target (or the
    ``shadows``) trains, from the spec it trains with (:attr:`Setup.target_spec`,
    :attr:`Setup.shadow_spec`), and for the shadows their data and shift
    (:mod:`jaxmia._src.audit.shadow_config`)."""
    config, data = setup.config, ""
    spec = setup.shadow_spec if shadows else setup.target_spec
    if shadows:
        phrases = shadow_config.describe(config)
        data = "".join(f"; {phrases[k]}" for k in ("data_size", "shift") if k in phrases)
    defended = setup.shadows_defended if shadows else True
    model = describe_model(defended_factory(setup, defended, shadows=shadows))
    return f"{model}; {spec.describe()}; seed {config.seed}{data}"


def _check_against_data(config: AuditConfig, ds: datasets.Dataset) -> None:
    """Settings that only the data can refute, checked before any training."""
    topk = config.access == "topk" or config.perturbation == "topk"
    if topk and config.top_k > ds.num_classes:
        raise ConfigError(
            f"top_k is {config.top_k}, more than the {ds.num_classes} classes of {ds.name}"
        )
    if config.population_size is not None and config.population_size > ds.n:
        raise ConfigError(
            f"population_size is {config.population_size}, more than the {ds.n} records "
            f"of {ds.name}"
        )


def _check_shadow_settings(
    config: AuditConfig,
    ds: datasets.Dataset,
    factory: models.ModelFactory | None,
    shadow_training: ShadowTraining,
) -> None:
    """Shadow settings (:mod:`jaxmia._src.audit.shadow_config`) that the architecture or the
    user's shadows cannot honour, refused before any training."""
    differences = shadow_config.differences(config)
    if differences and shadow_training.pool is not None:
        raise ConfigError(
            f"shadow settings ({', '.join(differences)}) cannot apply to the user's own shadow pool"
        )
    if config.shadow_lr is not None and shadow_training.optimizer is not None:
        raise ConfigError("shadow_lr cannot apply to the user's own shadow optimizer")
    if "hidden" in differences:
        cnn = config.model == "cnn" or (config.model == "auto" and len(ds.input_shape) == 3)
        if factory is not None or cnn:
            raise ConfigError(
                "shadow_width and shadow_depth change the MLP's hidden layers; the model "
                "here is " + ("the user's own" if factory is not None else "a CNN")
            )


def prepare(
    config: AuditConfig,
    *,
    dataset: datasets.Dataset | None = None,
    split: splits.AuditSplit | None = None,
    factory: models.ModelFactory | None = None,
    pool_dir: str | os.PathLike | None = None,
    shadow_training: ShadowTraining = ShadowTraining(),
    log: Log = silent,
) -> Setup:
    """Loads the data, draws the split (or grows a kept pool's), picks the architecture,
    the early-stopping validation records and the root key.

    Args:
      config: the audit options.
      dataset: use this data instead of loading ``config.dataset``.
      split: use this split instead of drawing one.
      factory: the architecture instead of the config's.
      pool_dir: the pool directory (its saved blocks decide a grown balanced split).
      shadow_training: the user's settings for the shadows.
      log: receives the ``data: ...`` line.

    Returns:
      The :class:`Setup`.
    """
    attacks = select_attacks(config)
    ds = (
        datasets.load(config.dataset, label_column=config.label_column)
        if dataset is None
        else dataset
    )
    _check_against_data(config, ds)
    _check_shadow_settings(config, ds, factory, shadow_training)
    blocks = None
    if split is None and pool_dir is not None and (config.targets or config.scheme == "balanced"):
        blocks = _pool_blocks(pool_dir, config.num_shadows)
    if split is None:
        split = _draw_split(config, ds.n, blocks)
    keep = shadow_config.shadow_keep(config, split.shadow_keep, ds.y, ds.num_classes)
    if keep is not split.shadow_keep:  # the shadows train on less, or shifted, data
        online = any(registry.get(a).online for a in attacks)
        shadow_config.check_members(keep, split.candidates, online)
        split = dataclasses.replace(split, shadow_keep=keep)
    views = _queries(config, ds)
    log(f"data: {datasets.describe(ds)}; {split.scheme} split, {split.candidates.size} candidates")
    validation = None
    if config.defence.early_stopping:
        heldout = np.flatnonzero(~split.target_keep)
        rng = np.random.default_rng([config.seed, 31])
        val = np.sort(rng.choice(heldout, size=max(1, heldout.size // 10), replace=False))
        validation = (ds.x[val], ds.y[val])
    return Setup(
        config=config,
        ds=ds,
        split=split,
        attacks=attacks,
        factory=model_factory(config, ds) if factory is None else factory,
        user_factory=factory is not None,
        views=views,
        blocks=blocks,
        validation=validation,
        root=jax.random.key(config.seed),
        pool_dir=pool_dir,
        shadow_training=shadow_training,
    )


def _draw_split(config: AuditConfig, n: int, blocks: list[int] | None) -> splits.AuditSplit:
    """The split of ``n`` records: balanced over all of them in leave-one-out (the
    first model is the first target), else :func:`jaxmia.splits.make_split`; a grown
    balanced pool's keep matrix is its blocks'."""
    if config.targets:
        keep = splits.grown_balanced_keep(blocks or [config.num_shadows], n, seed=config.seed)
        return splits.AuditSplit(
            target_keep=keep[0],
            candidates=np.arange(n),
            membership=keep[0],
            shadow_keep=keep,
            shadow_pool=np.ones(n, bool),
            scheme="balanced",
        )
    split = splits.make_split(
        n,
        config.num_shadows,
        scheme=config.scheme,
        target_size=config.target_size,
        shadow_size=config.shadow_size,
        seed=config.seed,
    )
    if blocks is not None and len(blocks) > 1:
        keep = splits.grown_balanced_keep(blocks, n, seed=config.seed)
        split = dataclasses.replace(split, shadow_keep=keep)
    return split


def _pool_blocks(pool_dir: str | os.PathLike, k: int) -> list[int]:
    """Block ends of the balanced pool of ``k`` models kept in ``pool_dir``: ``[k]`` for a
    new pool; the saved blocks up to ``k``; or those plus a new block ending at ``k``."""
    path = pathlib.Path(pool_dir)
    if not (path / pools.MANIFEST).is_file():
        return [k]
    manifest = pools.read_manifest(path)
    if manifest["k"] == 0:
        return [k]
    blocks = [int(b) for b in manifest.get("meta", {}).get("blocks", [manifest["k"]])]
    if k in blocks:
        return [b for b in blocks if b <= k]
    if k > blocks[-1]:
        return [*blocks, k]
    raise ConfigError(
        f"the shadow pool at {path} holds balanced blocks of models ending at "
        f"{', '.join(map(str, blocks))}; ask for one of those numbers of shadows, or more "
        f"than {blocks[-1]} to grow it"
    )


def _queries(config: AuditConfig, ds: datasets.Dataset) -> np.ndarray:
    """``(q, n, ...)`` the inputs LiRA queries: the records, or their augmentations."""
    if not config.augment:
        return ds.x[None]
    if len(ds.input_shape) != 3:
        raise ConfigError(f"augment needs image data (h, w, channels), got {ds.input_shape}")
    return lira.augment_images(ds.x)
