"""``jaxmia dp-audit``: empirical lower bounds on the epsilon of DP-SGD, next to the
accountant's epsilon.

For each accountant epsilon (at delta), the noise multiplier is calibrated with
dp-accounting's RDP accountant for Poisson sampling at the rate and the number of steps
that run (:func:`calibrate_noise`); then ``k`` models are trained at once on a fixed small
data set ``D`` (Jagielski et al. 2020; Nasr et al. 2021 and 2023):

* **white-box Dirac canary**: a random half of the models add a gradient of norm ``C`` (the
  clipping norm) on one parameter coordinate whenever the canary is Poisson-sampled
  (:class:`jaxmia.engine.DiracCanary`): the first-layer weight of an input feature that is
  0 in every record, so that no data gradient ever touches it. With plain SGD the
  coordinate's final change is the sum of those shifts and the noise, and the statistic
  is that change;
* **black-box input canary**: a mislabelled record in another random half of the models;
  statistic: its loss on the final model (:func:`jaxmia.attacks.loss`; LiRA's
  logit-scaled confidence is a monotone function of the same probability: same bound);
* **one-run audit** (Steinke, Nasr and Jagielski 2023): ``m`` mislabelled records, each
  in the training set of one further model with probability 1/2, at the same epsilon.

The Clopper-Pearson and one-run lower bounds and the Gaussian-DP estimate
(:mod:`jaxmia._src.metrics.privacy_auditing`; an estimate under a Gaussian-trade-off assumption,
not a bound) sit next to what explains the gap to the accountant's epsilon: the same
epsilon by the PLD accountant (:func:`pld_epsilon`; the RDP accountant's slack), the exact
epsilon of the white-box statistic
(:func:`jaxmia._src.metrics.privacy_auditing.dirac_statistic_epsilon`; what observing only the
final weight costs), the ideal-mechanism reference (the same estimators on draws from that
statistic's exact distribution with the same number of trials) and the Clopper-Pearson
ceiling that the trial count allows (perfectly separated scores). The engine samples at
``q = batch_size / members``: the models with the black-box canary (one more member)
sample at a slightly lower rate, so the reported accountant epsilon is the largest over
the models (that of ``D``), and the ideal reference uses ``D``'s rate.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax

from jaxmia import models, settings, signals
from jaxmia._src import attacks, datasets, engine
from jaxmia._src.defences import training as defence_training
from jaxmia._src.engine.store import pools
from jaxmia._src.engine.store.files import inside
from jaxmia._src.engine.store.manifest import MANIFEST
from jaxmia._src.metrics import one_run_auditing, privacy_auditing

__all__ = [
    "DEFAULT_EPSILONS",
    "AuditData",
    "DPAuditConfig",
    "DPAuditError",
    "audit_data",
    "calibrate_noise",
    "dp_epsilon",
    "pld_epsilon",
    "run",
    "run_setting",
]

DEFAULT_EPSILONS = (1.0, 2.0, 4.0, 8.0, math.inf)
"""Accountant epsilons audited by default; ``inf`` is training without noise."""
SEED_MAX = 2**32 - 1
"""The largest seed (the one-run model's engine seed ``7919 seed + i`` stays an int64)."""
MIN_NOISE = 0.05
"""The smallest noise multiplier :func:`calibrate_noise` tries: an epsilon that needs less
is refused (audit it as ``inf``, no noise)."""
_REMOVE = "use another --pool directory, or remove {path} to train it anew"


class DPAuditError(ValueError):
    """A bad ``dp-audit`` setting (one line, no traceback on the command line)."""


@dataclasses.dataclass(frozen=True)
class DPAuditConfig(settings.Section):
    """The settings of ``jaxmia dp-audit``: each a flag (``--batch-size``) and a TOML key
    (``batch_size``, top level or in a ``[dp-audit]`` table), checked here with the audit's
    settings machinery (:mod:`jaxmia._src.audit.fields`), each in one line naming it.

    Attributes:
      epsilons: accountant epsilons to audit at ``delta`` (``inf``: no noise).
      delta: the DP delta of the accountant and the bounds.
      models: models trained per epsilon (half with each canary).
      dataset: a bundled dataset (:data:`jaxmia.datasets.BUNDLED`) with an input feature
        that is 0 in every record (digits: the corner pixels).
      records: size of the fixed training set ``D`` (a seeded random subset).
      hidden: width of the MLP's hidden layer.
      epochs: passes over ``D`` (``epochs * ceil(records / batch_size)`` steps); enough
        that without noise every canary model samples the Dirac canary at least once
        (probability ``1 - (1 - q)^steps``, about ``1 - exp(-epochs)``).
      batch_size: expected batch (Poisson rate ``q = batch_size / records``).
      learning_rate: plain SGD's step size; clip: DP-SGD's L2 clipping norm ``C``.
      canaries: ``m``, the input canaries of the one-run audit.
      confidence: probability that each lower bound holds.
      repetitions: simulated audits of the ideal mechanism per epsilon.
      seed: the seed of the data subset, canaries, keep rows and model keys.
      output_dir: where dp_audit.json, report.md and dp_audit.png go.
    """

    epsilons: tuple[float, ...] = settings.opt(
        DEFAULT_EPSILONS,
        "comma-separated accountant epsilons to audit (inf: no noise)",
        b=settings.POSITIVE_REAL,
        distinct=True,
        infinite=True,
    )
    delta: float = settings.opt(
        1e-5, "DP delta of the accountant and the bounds", b=settings.Range(0, 1, True, True)
    )
    models: int = settings.opt(
        2048, "models trained per epsilon, half with each canary", b=settings.Range(8)
    )
    dataset: str = settings.opt(
        "digits",
        "bundled dataset with an input feature that is 0 in every record",
        c=tuple(datasets.BUNDLED),
    )
    records: int = settings.opt(
        250, "size of the fixed training set (a seeded random subset)", b=settings.Range(10)
    )
    hidden: int = settings.opt(32, "hidden units of the MLP", b=settings.POS)
    epochs: int = settings.opt(12, "passes over the training set", b=settings.POS)
    batch_size: int = settings.opt(
        32, "expected batch size (Poisson rate batch_size / records)", b=settings.POS
    )
    learning_rate: float = settings.opt(0.5, "plain SGD step size", b=settings.POSITIVE_REAL)
    clip: float = settings.opt(1.0, "DP-SGD per-example L2 clipping norm", b=settings.POSITIVE_REAL)
    canaries: int = settings.opt(1000, "input canaries of the one-run audit", b=settings.POS)
    confidence: float = settings.opt(
        0.95, "probability that each lower bound holds", b=settings.Range(0.5, 1, open_high=True)
    )
    repetitions: int = settings.opt(
        20, "simulated audits of the ideal mechanism per epsilon", b=settings.POS
    )
    seed: int = settings.opt(
        0, "seed of the data subset, canaries and models", b=settings.Range(0, SEED_MAX)
    )
    output_dir: str = settings.opt(
        "jaxmia-dp-audit",
        "where to write dp_audit.json, report.md and dp_audit.png",
        f=("--output-dir", "-o"),
    )

    def __post_init__(self):
        try:
            super().__post_init__()
        except settings.ConfigError as e:
            raise DPAuditError(str(e)) from None
        object.__setattr__(self, "epsilons", tuple(float(e) for e in self.epsilons))
        if self.batch_size > self.records or self.records % self.batch_size == 0:
            raise DPAuditError(
                f"batch_size ({self.batch_size}) must be below records ({self.records}) and "
                "not divide it (the black-box canary's models would take one more step an "
                "epoch than the others)"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DPAuditConfig:
        """A config from flat settings (a TOML table); unknown keys are refused."""
        if not isinstance(values, Mapping):
            raise DPAuditError(f"dp-audit settings must be a table, got {values!r}")
        try:
            settings.refuse_unknown(values, (f.name for f in dataclasses.fields(cls)))
        except settings.ConfigError as e:
            raise DPAuditError(str(e)) from None
        return cls(**values)

    @property
    def sample_rate(self) -> float:
        """The Poisson sampling rate ``q = batch_size / records``."""
        return self.batch_size / self.records


@dataclasses.dataclass(frozen=True)
class AuditData:
    """The records of an audit.

    Attributes:
      x, y: ``(n, d)`` float32 and ``(n,)`` int32, the fixed training set ``D``.
      canary_x, canary_y: ``(1, d)`` and ``(1,)`` the black-box canary (mislabelled).
      one_run_x, one_run_y: ``(m, d)`` and ``(m,)`` the one-run canaries (mislabelled).
      feature: the input feature that is 0 in every record above (the Dirac canary's).
      classes: number of classes.
    """

    x: np.ndarray
    y: np.ndarray
    canary_x: np.ndarray
    canary_y: np.ndarray
    one_run_x: np.ndarray
    one_run_y: np.ndarray
    feature: int
    classes: int


def audit_data(config: DPAuditConfig) -> AuditData:
    """Draws ``D``, the black-box canary and the one-run canaries from disjoint records of
    the dataset, and finds the Dirac canary's feature: the first one that is 0 in all of
    them (so that no data gradient touches its first-layer weights).

    Raises:
      DPAuditError: too few records, or no feature that is 0 everywhere.
    """
    ds = datasets.load(config.dataset)
    x = ds.x.reshape(ds.n, -1)
    need = config.records + 1 + config.canaries
    if need > ds.n:
        raise DPAuditError(
            f"records + 1 + canaries = {need} exceeds the {ds.n} records of {config.dataset}"
        )
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(ds.n)[:need]
    zero = np.flatnonzero((x[order] == 0).all(axis=0))
    if zero.size == 0:
        raise DPAuditError(f"{config.dataset} has no input feature that is 0 in every record")
    # mislabel: a label drawn uniformly among the other classes
    wrong = (ds.y[order] + rng.integers(1, ds.num_classes, need)) % ds.num_classes
    d, c = order[: config.records], order[config.records :]
    return AuditData(
        x=x[d],
        y=ds.y[d],
        canary_x=x[c[:1]],
        canary_y=wrong[config.records : config.records + 1],
        one_run_x=x[c[1:]],
        one_run_y=wrong[config.records + 1 :],
        feature=int(zero[0]),
        classes=int(ds.num_classes),
    )


def _steps(config: DPAuditConfig, members: int) -> int:
    """DP-SGD steps of a model with ``members`` records (those that run)."""
    return config.epochs * int(engine.steps_per_epoch(np.ones(members, bool), config.batch_size)[0])


def dp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """:func:`jaxmia.defences.dp_epsilon` (RDP accountant, Poisson sampling;
    ``inf`` without noise) without dp-accounting's warnings about fractional RDP orders
    that it skips, which would flood the progress lines during calibration."""
    if noise_multiplier <= 0:
        return math.inf
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        return defence_training.dp_epsilon(noise_multiplier, sample_rate, steps, delta)
    finally:
        absl.setLevel(level)


def pld_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """The epsilon of the same DP-SGD run by dp-accounting's PLD accountant (Poisson
    sampled Gaussian; its discretisation of 1e-3 is pessimistic by about 3e-5 at the
    default setting, against 2e-5), against which the RDP accountant's :func:`dp_epsilon`
    is loose; ``inf`` without noise."""
    if noise_multiplier <= 0:
        return math.inf
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant

    accountant = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-3)
    step = dp_accounting.PoissonSampledDpEvent(
        sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
    )
    accountant.compose(dp_accounting.SelfComposedDpEvent(step, steps))
    return float(accountant.get_epsilon(delta))


def _check_floor(epsilon: float, sample_rate: float, steps: int, delta: float) -> None:
    """Refuses a finite ``epsilon`` above that of the least noise, :data:`MIN_NOISE`."""
    if math.isinf(epsilon):
        return
    floor = dp_epsilon(MIN_NOISE, sample_rate, steps, delta)
    if floor < epsilon:
        raise DPAuditError(
            f"epsilon {epsilon:g} is not reachable: the least noise audited "
            f"({MIN_NOISE:g}) already gives epsilon {floor:.4g} at rate {sample_rate:.4g} "
            f"over {steps} steps; audit inf for training without noise"
        )


def calibrate_noise(epsilon: float, sample_rate: float, steps: int, delta: float) -> float:
    """The smallest noise multiplier (to 0.1%) whose RDP epsilon under Poisson sampling
    (:func:`dp_epsilon`) is at most ``epsilon``; 0 for ``inf``.

    Raises:
      DPAuditError: ``epsilon`` needs less noise than :data:`MIN_NOISE` (it would not be
        the accountant epsilon of the run) or more than 10,000.
    """
    if math.isinf(epsilon):
        return 0.0
    _check_floor(epsilon, sample_rate, steps, delta)
    lo, hi = MIN_NOISE, 1.0
    while dp_epsilon(hi, sample_rate, steps, delta) > epsilon:
        lo, hi = hi, 2 * hi
        if hi > 1e4:
            raise DPAuditError(f"no noise multiplier reaches epsilon {epsilon:g}")
    while hi / lo > 1.001:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if dp_epsilon(mid, sample_rate, steps, delta) > epsilon else (lo, mid)
    return hi


def _half(rng: np.random.Generator, k: int) -> np.ndarray:
    """``(k,)`` bool, exactly ``k // 2`` True at random positions."""
    bits = np.zeros(k, bool)
    bits[rng.permutation(k)[: k // 2]] = True
    return bits


def _dirac_statistic(pool: engine.Pool, factory, tx, keys, leaf: str, index: int) -> np.ndarray:
    """``(k,)`` initial minus final value of the canary coordinate (the canary's SGD steps
    push it down, so it is higher with the canary)."""
    init = jax.vmap(lambda kd: engine.kernel.init_one(factory, tx, kd)[0])
    first = init(jax.random.key_data(keys))

    def coordinate(params) -> np.ndarray:
        for path, value in jax.tree_util.tree_flatten_with_path(params)[0]:
            if engine.checkpointing.leaf_name(path).removesuffix("/value") == leaf:
                return np.asarray(value).reshape(value.shape[0], -1)[:, index].astype(np.float64)
        raise KeyError(leaf)

    return coordinate(first) - coordinate(pool.params)


def _canary_loss(pool: engine.Pool, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(k, m)`` each model's loss on records ``x`` with labels ``y``."""
    logits = engine.predict(pool, x)
    return np.asarray(jax.vmap(signals.loss, in_axes=(0, None))(logits, y), np.float64)


@dataclasses.dataclass(frozen=True)
class _Trained:
    """The many-run pool of one epsilon and what it was trained with."""

    pool: engine.Pool
    factory: Any
    tx: Any
    keys: jax.Array
    dirac_in: np.ndarray
    input_in: np.ndarray


_LEAF = "hidden/0/kernel"  # the MLP's first layer, (features, hidden)


def _pool_settings(config: DPAuditConfig) -> dict[str, Any]:
    """The settings that decide the trained models (a pool of other ones is refused)."""
    skip = {"output_dir", "confidence", "repetitions", "epsilons"}
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in skip}


def _train(checkpoint: str | None, **kwargs: Any) -> engine.Pool:
    """:func:`jaxmia.engine.train` into ``checkpoint``, with a refused pool's advice
    pointing at what dp-audit offers (it has no ``--retrain``)."""
    try:
        return engine.train(checkpoint=checkpoint, **kwargs)
    except pools.PoolError as e:
        advice = _REMOVE.format(path=checkpoint)
        raise DPAuditError(str(e).replace(pools.RETRAIN, advice)) from None


def _check_pool_dir(pool_dir: str | None) -> None:
    """Refuses a ``--pool`` that is a shadow pool of ``jaxmia audit`` (its manifest at the
    top), into which dp-audit would write its ``epsilon-*`` pools."""
    if pool_dir is not None and os.path.lexists(os.path.join(pool_dir, MANIFEST)):
        raise DPAuditError(
            f"--pool {pool_dir} holds a shadow pool of jaxmia audit ({MANIFEST}); dp-audit "
            "keeps its models in epsilon-*/ and one-run-*/ of a directory of its own: use "
            "another --pool directory"
        )


def _train_pool(config, data, epsilon, sigma, index, pool_dir, progress) -> _Trained:
    """``config.models`` models on ``D``: a random half with the Dirac canary, another
    random half with the black-box canary (the last record)."""
    n, k = data.x.shape[0], config.models
    rng = np.random.default_rng([config.seed, index])
    dirac_in, input_in = _half(rng, k), _half(rng, k)
    factory = models.mlp((config.hidden,), data.classes, data.x.shape[1])
    tx = optax.sgd(config.learning_rate)
    keys = engine.model_keys(jax.random.fold_in(jax.random.key(config.seed), index), k)
    pool = _train(
        None if pool_dir is None else inside(pool_dir, f"epsilon-{epsilon:g}"),
        factory=factory,
        x=np.concatenate([data.x, data.canary_x]),
        y=np.concatenate([data.y, data.canary_y]),
        keep=np.concatenate([np.ones((k, n), bool), input_in[:, None]], axis=1),
        epochs=config.epochs,
        batch_size=config.batch_size,
        optimizer=tx,
        keys=keys,
        dp=engine.DPConfig(l2_clip=config.clip, noise_multiplier=sigma),
        canary=engine.DiracCanary(_LEAF, data.feature * config.hidden),
        canary_keep=dirac_in,
        progress=progress,
        checkpoint_spec={"dp_audit": _pool_settings(config) | {"epsilon": epsilon}},
    )
    return _Trained(pool, factory, tx, keys, dirac_in, input_in)


def _accountant(pool: engine.Pool, sigma: float, config: DPAuditConfig) -> float:
    """The accountant's epsilon of the steps and sample rates that ran (the largest over
    the models: ``q = batch_size / members``)."""
    members = pool.keep.sum(axis=1)
    ran = {
        (config.batch_size / int(m), int(t))
        for m, t in zip(members, pool.dp_counts["steps"], strict=True)
    }
    return max(dp_epsilon(sigma, q, t, config.delta) for q, t in ran)


def run_setting(
    config: DPAuditConfig,
    data: AuditData,
    epsilon: float,
    *,
    index: int = 0,
    pool_dir: str | None = None,
    log: Callable[[str], None] = lambda _: None,
    progress: engine.ProgressFn | None = None,
) -> dict[str, Any]:
    """Audits one accountant epsilon: trains the many-run pool and the one-run model and
    returns the row of :func:`run` (bounds, ideal reference, accuracy, seconds).

    Raises:
      RuntimeError: the engine ran other steps than the accountant was given.
    """
    start = time.perf_counter()
    q, steps = config.sample_rate, _steps(config, data.x.shape[0])
    sigma = calibrate_noise(epsilon, q, steps, config.delta)
    log(
        f"epsilon {epsilon:g}: noise multiplier {sigma:.4g} (Poisson rate {q:.4g}, "
        f"{steps} steps), {config.models} models"
    )
    t = _train_pool(config, data, epsilon, sigma, index, pool_dir, progress)
    counts = t.pool.dp_counts
    if not (counts["steps"] == steps).all():
        raise RuntimeError(f"the engine ran {set(counts['steps'].tolist())} steps, not {steps}")
    white = _dirac_statistic(t.pool, t.factory, t.tx, t.keys, _LEAF, data.feature * config.hidden)
    loss = _canary_loss(t.pool, data.canary_x, data.canary_y)[:, 0]
    black = np.asarray(attacks.threshold.loss(loss), np.float64)
    kw = dict(delta=config.delta, confidence=config.confidence, seed=config.seed)
    c_in, c_out = int(t.dirac_in.sum()), int((~t.dirac_in).sum())
    ideal = privacy_auditing.ideal_reference(
        c_in,
        c_out,
        steps=steps,
        sample_rate=q,
        noise_multiplier=sigma,
        delta=config.delta,
        confidence=config.confidence,
        repetitions=config.repetitions,
        seed=config.seed,
    )
    return {
        "accountant_epsilon": _accountant(t.pool, sigma, config),
        "target_epsilon": epsilon,
        "pld_epsilon": pld_epsilon(sigma, q, steps, config.delta),
        "statistic_epsilon": privacy_auditing.dirac_statistic_epsilon(
            steps, q, sigma, config.delta
        ),
        "noise_multiplier": sigma,
        "sample_rate": q,
        "steps": steps,
        "models": config.models,
        "canary_models": c_in,
        "canary_inclusions": float(np.mean(counts["canary"][t.dirac_in])),
        "overflow": int(np.sum(counts["overflow"])),
        "white_box": _bounds(white[t.dirac_in], white[~t.dirac_in], kw),
        "black_box": _bounds(black[t.input_in], black[~t.input_in], kw),
        "ideal": {name: _spread(v) for name, v in ideal.items()},
        "train_accuracy": float(np.mean(t.pool.train_accuracy)),
        "one_run": _one_run(config, data, epsilon, index, pool_dir, log),
        "seconds": time.perf_counter() - start,
    }


def _spread(values: np.ndarray) -> dict[str, Any]:
    return {
        "median": float(np.median(values)),
        "p10": float(np.percentile(values, 10)),
        "values": [float(e) for e in values],
    }


def _bounds(canary: np.ndarray, null: np.ndarray, kw: dict) -> dict[str, float]:
    """The Clopper-Pearson lower bound, the GDP estimate and its lower bound on mu."""
    cp = privacy_auditing.epsilon_clopper_pearson(canary, null, **kw)
    gdp = privacy_auditing.epsilon_gdp_estimate(canary, null, **kw)
    return {
        "clopper_pearson": cp.epsilon,
        "gdp_estimate": gdp.epsilon_estimate,
        "gdp_mu_lower": gdp.mu_lower,
    }


def _one_run_plan(
    config: DPAuditConfig, data: AuditData, index: int
) -> tuple[np.ndarray, float, int]:
    """The one-run audit of the ``index``-th epsilon: ``(included (m,), q, steps)``, which
    canaries are in, its Poisson rate and its step count."""
    n, m = data.x.shape[0], data.one_run_x.shape[0]
    rng = np.random.default_rng([config.seed, index, 1])
    included = rng.random(m) < 0.5
    members = n + int(included.sum())
    return included, config.batch_size / members, _steps(config, members)


def _check_reachable(config: DPAuditConfig, data: AuditData) -> None:
    """Refuses, before any training, an epsilon that the least noise does not reach, in
    the many-run or the one-run setting (:func:`calibrate_noise` would refuse it later)."""
    steps = _steps(config, data.x.shape[0])
    for index, epsilon in enumerate(config.epsilons):
        _check_floor(epsilon, config.sample_rate, steps, config.delta)
        _, q, one_run_steps = _one_run_plan(config, data, index)
        _check_floor(epsilon, q, one_run_steps, config.delta)


def _one_run(config, data, epsilon, index, pool_dir, log) -> dict[str, Any]:
    """The one-run audit: one model on ``D`` plus each one-run canary with probability
    1/2, its noise calibrated to ``epsilon`` for its own steps and rate."""
    n, m = data.x.shape[0], data.one_run_x.shape[0]
    included, q, steps = _one_run_plan(config, data, index)
    sigma = calibrate_noise(epsilon, q, steps, config.delta)
    keep = np.concatenate([np.ones(n, bool), included])[None]
    factory = models.mlp((config.hidden,), data.classes, data.x.shape[1])
    pool = _train(
        None if pool_dir is None else inside(pool_dir, f"one-run-{epsilon:g}"),
        factory=factory,
        x=np.concatenate([data.x, data.one_run_x]),
        y=np.concatenate([data.y, data.one_run_y]),
        keep=keep,
        epochs=config.epochs,
        batch_size=config.batch_size,
        optimizer=optax.sgd(config.learning_rate),
        seed=config.seed * 7919 + index,
        dp=engine.DPConfig(l2_clip=config.clip, noise_multiplier=sigma),
        checkpoint_spec={"dp_audit": _pool_settings(config) | {"epsilon": epsilon}},
    )
    loss = _canary_loss(pool, data.one_run_x, data.one_run_y)[0]
    scores = np.asarray(attacks.threshold.loss(loss), np.float64)
    bound = one_run_auditing.epsilon_one_run(
        scores, included, delta=config.delta, confidence=config.confidence
    )
    log(f"  one run: {m} canaries, {bound.correct}/{bound.guesses} guesses right")
    return {
        "epsilon": bound.epsilon,
        "guesses": bound.guesses,
        "correct": bound.correct,
        "canaries": m,
        "noise_multiplier": sigma,
        "accountant_epsilon": dp_epsilon(sigma, q, steps, config.delta),
        "sample_rate": q,
        "steps": steps,
    }


def run(
    config: DPAuditConfig,
    *,
    pool_dir: str | None = None,
    log: Callable[[str], None] = lambda _: None,
    progress: engine.ProgressFn | None = None,
) -> dict[str, Any]:
    """Runs the whole audit: every epsilon of ``config`` (:func:`run_setting`).

    Returns:
      ``{"config", "data", "ceiling", "rows", "seconds"}``: ``rows`` one dict per
      epsilon; ``ceiling`` the Clopper-Pearson bound and the GDP estimate of perfectly
      separated scores at the white-box trial counts (the GDP one an artefact of the
      Gaussian conversion).

    Raises:
      DPAuditError: ``pool_dir`` is a pool of ``jaxmia audit``, an epsilon is not
        reachable (:func:`calibrate_noise`), or a pool in ``pool_dir`` was trained with
        other settings.
    """
    start = time.perf_counter()
    try:
        import dp_accounting  # noqa: F401
    except ImportError:
        raise DPAuditError(
            "jaxmia dp-audit needs dp-accounting: pip install 'jaxmia[dp]'"
        ) from None
    _check_pool_dir(pool_dir)
    for epsilon in config.epsilons if pool_dir is not None else ():
        for kind in ("epsilon", "one-run"):  # never a link: refused before any training
            inside(pool_dir, f"{kind}-{epsilon:g}")
    data = audit_data(config)
    _check_reachable(config, data)
    log(
        f"dp-audit: {config.dataset}, {data.x.shape[0]} records, Dirac canary on the "
        f"first-layer weights of feature {data.feature} (0 in every record)"
    )
    rows = []
    for i, epsilon in enumerate(config.epsilons):
        rows.append(
            run_setting(
                config, data, epsilon, index=i, pool_dir=pool_dir, log=log, progress=progress
            )
        )
    half = config.models // 2
    ceiling = {
        method: privacy_auditing.epsilon_ceiling(
            half,
            config.models - half,
            delta=config.delta,
            confidence=config.confidence,
            method=method,
        )
        for method in privacy_auditing.METHODS
    }
    return {
        "config": dataclasses.asdict(config),
        "data": {
            "records": int(data.x.shape[0]),
            "feature": data.feature,
            "canaries": int(data.one_run_x.shape[0]),
            "classes": data.classes,
        },
        "ceiling": ceiling,
        "rows": rows,
        "seconds": time.perf_counter() - start,
    }
