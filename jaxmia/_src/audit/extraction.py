"""The audit's signal phase (:func:`extract`): what the attacker observes of the target
and of every shadow model, through the access level and the target's output interface.

The signals are computed once on all ``n`` records: ``(k, n, ...)`` for the pool
(:class:`jaxmia.attacks.PoolSignals`) and ``(n, ...)`` for the target
(:class:`TargetSignals`); the attacks then read the candidates' rows.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from collections.abc import Callable

import jax
import numpy as np

from jaxmia import signals, threat_models
from jaxmia._src import engine
from jaxmia._src.attacks import PoolSignals, registry
from jaxmia._src.audit import shadow_config
from jaxmia._src.audit.attacking import start_fits
from jaxmia._src.audit.config import ConfigError
from jaxmia._src.audit.setup import Setup
from jaxmia._src.audit.signal_cache import SignalCache
from jaxmia._src.audit.training import Shadows, TargetRun, predict_known
from jaxmia._src.engine.store import pools

__all__ = ["Extracted", "PoolLabels", "TargetSignals", "extract", "through_interface"]


@dataclasses.dataclass(frozen=True)
class TargetSignals:
    """The target's signals on all ``n`` records.

    Attributes:
      all: ``{signal: (n, ...)}`` through the access level.
      phi: ``(n, q)`` LiRA's logit-scaled confidence per query, or ``None``.
      logits: ``(n, c)`` logits where RMIA needs them under ``probs`` access, else ``None``.
      query: ``x (b, ...) -> (b, c)`` the target's outputs as its interface returns them
        (the label-only attack's queries).
    """

    all: dict[str, np.ndarray]
    phi: np.ndarray | None
    logits: np.ndarray | None
    query: Callable[[np.ndarray], np.ndarray]


class PoolLabels:
    """``x (p, ...) -> (k, p)`` the pool's predicted labels on the label-only queries:
    computed once per input, and kept in the pool directory when the outputs are
    unperturbed (:func:`jaxmia._src.engine.store.pools.cached_labels`). ``models=m`` asks only the
    pool's first ``m`` models, ``(m, p)``."""

    def __init__(self, setup: Setup, shadows: Shadows, predict: Callable[[np.ndarray], np.ndarray]):
        self._pool, self._rows, self._predict = shadows.pool, shadows.rows, predict
        self._dir, self._perturbed = setup.pool_dir, setup.config.interface.kind != "none"
        self._inputs = shadow_config.shadow_inputs(setup.config) or (lambda x: x)
        self._answered: dict[str, np.ndarray] = {}

    def __call__(self, x: np.ndarray, models: int | None = None) -> np.ndarray:
        if self._perturbed:  # the interface's noise is drawn for the whole pool at once
            return self._labels(x, None)[:models]
        return self._labels(x, models)

    def _labels(self, x: np.ndarray, models: int | None) -> np.ndarray:
        rows = self._rows[:models]
        key = pools.answers_key(x, rows)
        if key not in self._answered:
            pool = self._pool if models is None else _first(self._pool, models)
            if self._perturbed:
                self._answered[key] = np.asarray(self._predict(x)).argmax(-1)
            elif self._dir is None:
                self._answered[key] = engine.predict(pool, self._inputs(x), labels=True)
            else:
                compute = lambda x: engine.predict(pool, self._inputs(x), labels=True)
                self._answered[key] = pools.cached_labels(self._dir, x, rows, compute, key=key)
        return self._answered[key]


def _first(pool: engine.Pool, models: int) -> engine.Pool:
    """The pool's first ``models`` models (:meth:`jaxmia.engine.Pool.select`), on host
    copies of the parameters: slicing the sharded device arrays would compile a gather
    for every parameter's shape."""
    host = dataclasses.replace(
        pool, params=jax.tree.map(np.asarray, pool.params), rest=jax.tree.map(np.asarray, pool.rest)
    )
    return host.select(slice(0, models))


@dataclasses.dataclass(frozen=True)
class Extracted:
    """Every signal the attacks read.

    Attributes:
      shadows: the pool's signals (:class:`PoolSignals`, ``(k, n, ...)``).
      target: the target's (:class:`TargetSignals`), or ``None`` in leave-one-out.
      plot_signals: the signals the report plots (confidence, loss) where provided.
      pool_labels: the pool's labels on any queries (:class:`PoolLabels`).
      fits: ``{attack: future}`` the attacks' work on the pool alone (Shokri's
        classifier), running in the background since the pool's signals were ready
        (:func:`jaxmia._src.audit.attacking.start_fits`); empty in leave-one-out (one per
        target).
    """

    shadows: PoolSignals
    target: TargetSignals | None
    plot_signals: frozenset[str]
    pool_labels: PoolLabels
    fits: dict[str, concurrent.futures.Future] = dataclasses.field(default_factory=dict)


def through_interface(
    setup: Setup, predict: Callable[[np.ndarray], np.ndarray]
) -> Callable[[np.ndarray], np.ndarray]:
    """``predict`` as the target's query interface returns it (as log-probabilities):
    the config's output perturbation with the key ``fold_in(root, 3)``."""
    iface = setup.config.interface
    if iface.kind == "none":
        return predict
    key = jax.random.fold_in(setup.root, 3)
    return lambda x: np.asarray(
        signals.log_probs_from_probs(iface.apply(jax.nn.softmax(predict(x)), key))
    )


def _phi(
    predict: Callable[[np.ndarray], np.ndarray],
    views: np.ndarray,
    y: np.ndarray,
    access: str,
    first: np.ndarray,
    cache: SignalCache,
) -> np.ndarray:
    """``(..., n, q)`` logit-scaled confidence of the outputs on every view; ``first``
    holds the outputs on ``views[0]`` (the records themselves), already computed."""
    outputs = [first, *(predict(v) for v in views[1:])]
    name = "logit_scaled_confidence"
    return np.stack([cache.observe(o, y, access, [name])[name] for o in outputs], axis=-1)


def extract(setup: Setup, target: TargetRun | None, shadows: Shadows) -> Extracted:
    """The pool's and the target's signals on all records, as the attacks need them.

    Raises:
      ConfigError: the target's outputs are not finite (it diverged in training).
    """
    config, ds = setup.config, setup.ds
    access = config.effective_access
    attacks = [registry.get(name) for name in setup.attacks]
    needed = {s for a in attacks for s in a.needs(access)}
    plot_signals = {"confidence", "loss"} & threat_models.PROVIDES[access]
    use_lira = any("phi" in a.reads for a in attacks)
    keep_logits = access == "probs" and any("logits" in a.reads for a in attacks)
    inputs = shadow_config.shadow_inputs(config)  # the shadows' view of a query
    pool_predict = through_interface(setup, predict_known(shadows.pool, ds.x, inputs))
    shadow_logits = pool_predict(ds.x)
    cache = SignalCache(setup.pool_dir)  # the signals a rerun computed before
    observed = cache.observe(
        shadow_logits,
        ds.y,
        access,
        needed | (plot_signals if setup.loo else set()),
        top_k=config.top_k,
    )
    keep, pool = shadows.split.shadow_keep, shadows.split.shadow_pool
    fits = {}
    if not setup.loo:  # leave-one-out: one fit per target (scoring.attack_all)
        early = PoolSignals(signals=observed, phi=None, logits=None, keep=keep, pool=pool)
        fits = start_fits(setup.attacks, early, ds.y, ds.num_classes, config)
    pool_signals = PoolSignals(
        signals=observed,
        phi=_phi(pool_predict, setup.views, ds.y, access, shadow_logits, cache)
        if use_lira
        else None,
        logits=shadow_logits if keep_logits else None,
        keep=keep,
        pool=pool,
    )
    target_signals = None
    if target is not None:
        predict = through_interface(setup, target.predict)
        logits = predict(ds.x)[0]
        if not np.isfinite(logits).all():
            raise ConfigError(
                "the target model's outputs are not finite: it diverged in training "
                "(try a lower --lr)"
            )
        target_signals = TargetSignals(
            all=cache.observe(logits, ds.y, access, needed | plot_signals, top_k=config.top_k),
            phi=_phi(predict, setup.views, ds.y, access, logits[None], cache)[0]
            if use_lira
            else None,
            logits=logits if keep_logits else None,
            query=lambda x: predict(x)[0],
        )
    cache.save()
    return Extracted(
        shadows=pool_signals,
        target=target_signals,
        plot_signals=frozenset(plot_signals),
        pool_labels=PoolLabels(setup, shadows, pool_predict),
        fits=fits,
    )
