"""Running every attack against one target, from the shadow pool's signals."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Mapping

import numpy as np

from jaxmia import attacks as attacks_lib
from jaxmia.attacks import classifier, lira
from jaxmia.audit.config import (
    THRESHOLD_ATTACKS,
    AuditConfig,
    Log,
    _note,
    _silent,
    needs,
)

__all__ = [
    "BACKGROUND",
    "LABEL_CALIBRATION_MODELS",
    "LABEL_CALIBRATION_RECORDS",
    "RMIA_TEMPERATURES",
    "PoolSignals",
    "attack_target",
    "calibration_records",
    "fit_shokri",
    "known_without",
    "label_only_answers",
    "log_probs_of",
    "start_shokri",
    "start_shokri_fits",
]


@dataclasses.dataclass(frozen=True)
class PoolSignals:
    """The shadow pool's signals, computed once and read by every attack.

    Attributes:
      signals: ``{signal: (k, n, ...)}`` on all ``n`` records, through the access level.
      phi: ``(k, n, q)`` LiRA's logit-scaled confidence for ``q`` queries, or ``None``.
      logits: ``(k, n, c)`` the models' logits where the access level gives probability
        vectors and RMIA runs (for its softmax temperature), else ``None``.
      keep: ``(k, n)`` bool shadow membership.
      pool: ``(n,)`` bool records whose shadow outputs may be used.
    """

    signals: dict[str, np.ndarray]
    phi: np.ndarray | None
    logits: np.ndarray | None
    keep: np.ndarray
    pool: np.ndarray

    def without(self, t: int) -> PoolSignals:
        """The pool less model ``t`` (leave-one-out)."""
        rows = np.arange(self.keep.shape[0]) != t
        return PoolSignals(
            signals={k: v[rows] for k, v in self.signals.items()},
            phi=None if self.phi is None else self.phi[rows],
            logits=None if self.logits is None else self.logits[rows],
            keep=self.keep[rows],
            pool=self.pool,
        )


def attack_target(
    attacks: tuple[str, ...],
    shadows: PoolSignals,
    target_sig: Mapping[str, np.ndarray],
    target_phi: np.ndarray | None,
    target_all: Mapping[str, np.ndarray],
    target_logits_all: np.ndarray | None,
    candidates: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    config: AuditConfig,
    notes: list[str],
    log: Log = _silent,
    queries: tuple[Callable, Callable, np.ndarray] | None = None,
    seconds: dict[str, float] | None = None,
    shokri_fit: concurrent.futures.Future | None = None,
    known: Mapping | None = None,
) -> dict[str, tuple[np.ndarray, float | None]]:
    """Runs every attack against one target.

    Args:
      attacks: attack names.
      shadows: the shadow pool's signals (without the target).
      target_sig: ``{signal: (m, ...)}`` the target's signals on the candidates.
      target_phi: ``(m, q)`` the target's logit-scaled confidence per query, for LiRA.
      target_all: ``{signal: (n, ...)}`` the target's signals on every record (RMIA's
        population needs them).
      target_logits_all: ``(n, c)`` the target's logits where the access level gives
        probability vectors, for RMIA's temperature; else ``None``.
      candidates: ``(m,)`` candidate indices.
      labels: ``(n,)`` labels.
      num_classes: ``c``.
      config: the audit options.
      notes: receives the settings chosen on the way.
      log: progress lines.
      queries: ``(target_query, shadow_query, x)`` for the label-only attack: functions
        returning the target's ``(n, c)`` outputs and the shadows' ``(k, n)`` labels on any
        inputs (``shadow_query(x, models=m)``: the first ``m`` shadows' only), and the
        records ``x``.
      seconds: if given, each attack's wall time (calibration included) is added to
        ``seconds[attack]`` (the attacks of :data:`BACKGROUND` run in a thread alongside
        the others, so their time overlaps).
      shokri_fit: Shokri's classifier, training since :func:`start_shokri` (on these
        ``shadows``); its time is its training's, then its scoring's.
      known: what the attacks would otherwise compute, already computed by the caller
        (in leave-one-out, once for every target: :func:`known_without`).

    Returns:
      ``{attack: (scores (m,), threshold or None)}``; a ``None`` threshold means the
      accuracy is reported at the best threshold on the target (optimistic).
    """
    out: dict[str, tuple[np.ndarray, float | None]] = {}
    keep_c = shadows.keep[:, candidates]
    cache: dict = dict(known or {})  # what one attack computes and another reads again
    own_notes: dict[str, list[str]] = {name: [] for name in attacks}
    taken: dict[str, float] = {}

    def one(name: str) -> None:
        started = time.perf_counter()
        if name == "shokri" and shokri_fit is not None:  # trained since start_shokri
            fit, trained_s = shokri_fit.result()
            started = time.perf_counter() - trained_s  # not the wait for this turn
            cache["shokri_fit"] = fit
        _run_one(
            name,
            out,
            shadows,
            target_sig,
            target_phi,
            target_all,
            target_logits_all,
            candidates,
            labels,
            num_classes,
            config,
            own_notes[name],
            queries,
            keep_c,
            cache,
        )
        taken[name] = time.perf_counter() - started

    behind = [a for a in attacks if a in BACKGROUND] if len(attacks) > 1 else []
    executor = concurrent.futures.ThreadPoolExecutor(max(1, len(behind)), "jaxmia-attack")
    try:
        futures = []
        for name in behind:
            log(f"attack: {name} (in the background)")
            futures.append(executor.submit(one, name))
        # Shokri's classifier, still training in its thread, is scored last: the other
        # attacks go on meanwhile instead of waiting for it
        ahead = [a for a in attacks if a not in behind]
        if shokri_fit is not None and "shokri" in ahead:
            ahead = [a for a in ahead if a != "shokri"] + ["shokri"]
        for name in ahead:
            log(f"attack: {name}")
            one(name)
        for future in futures:
            future.result()  # raises what the attack raised
    finally:
        executor.shutdown(cancel_futures=True)
    for name in attacks:  # in the order of the attacks, whichever thread ran them
        for text in own_notes[name]:
            _note(notes, text)
        if seconds is not None:
            seconds[name] = seconds.get(name, 0.0) + taken[name]
    return {name: out[name] for name in attacks}


def fit_shokri(
    shadows: PoolSignals, labels: np.ndarray, num_classes: int, config: AuditConfig
) -> classifier.ShokriFit:
    """Shokri et al.'s attack classifier trained on the pool's signals, as the audit
    configures it (:func:`jaxmia.attacks.shokri_fit`)."""
    return attacks_lib.shokri_fit(
        shadows.signals,
        shadows.keep,
        labels=labels,
        num_classes=num_classes,
        pool=shadows.pool,
        config=classifier.ShokriConfig(
            features=needs("shokri", config.effective_access), per_class=config.per_class
        ),
        seed=config.seed,
    )


def start_shokri(
    shadows: PoolSignals, labels: np.ndarray, num_classes: int, config: AuditConfig
) -> concurrent.futures.Future:
    """:func:`fit_shokri` in a background (daemon) thread, started as soon as the pool's
    signals exist: the classifier needs nothing of the target, so it trains while the
    target's signals are computed and the other attacks run. The future holds
    ``(ShokriFit, seconds it trained)`` or the exception it raised."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        started = time.perf_counter()
        try:
            fit = fit_shokri(shadows, labels, num_classes, config)
            future.set_result((fit, time.perf_counter() - started))
        except BaseException as e:  # raised again by future.result()
            future.set_exception(e)

    threading.Thread(target=run, name="jaxmia-shokri", daemon=True).start()
    return future


def start_shokri_fits(
    pools: list[PoolSignals],
    labels: np.ndarray,
    num_classes: int,
    config: AuditConfig,
    workers: int,
) -> tuple[list[concurrent.futures.Future], concurrent.futures.ThreadPoolExecutor]:
    """:func:`fit_shokri` on each of ``pools`` (in leave-one-out, the pool without each
    target), ``workers`` at a time in background threads, all queued at once: the
    classifiers train while the targets' other attacks run, instead of one after another
    within each target's turn. Returns the futures, each holding
    ``(ShokriFit, seconds it trained)`` as :func:`start_shokri`'s does, and their executor
    (shut it down once they are read)."""
    executor = concurrent.futures.ThreadPoolExecutor(max(1, workers), "jaxmia-shokri")

    def fit(pool: PoolSignals) -> tuple[classifier.ShokriFit, float]:
        started = time.perf_counter()
        return fit_shokri(pool, labels, num_classes, config), time.perf_counter() - started

    return [executor.submit(fit, pool) for pool in pools], executor


BACKGROUND = ("shokri", "label_only")
"""Attacks that run in a background thread while the others run. Shokri's classifier
trains through thousands of small steps (3,000 of a 64-unit MLP) that keep one core busy
with little work each, and its program takes about a second to compile on a cold cache;
both overlap the other attacks' array work. Results do not depend on it (each attack is
a pure function of the pool's signals; XLA's results do not depend on what else runs),
only the wall time: its time in ``seconds`` overlaps the others'."""


def _run_one(
    name,
    out,
    shadows,
    target_sig,
    target_phi,
    target_all,
    target_logits_all,
    candidates,
    labels,
    num_classes,
    config,
    notes,
    queries,
    keep_c,
    cache,
) -> None:
    """Runs the attack ``name`` and stores its ``(scores, threshold)`` in ``out``."""
    if name == "shokri":
        prefit = cache.get("shokri_fit")
        fit = fit_shokri(shadows, labels, num_classes, config) if prefit is None else prefit
        scores = attacks_lib.shokri_score(fit, target_sig, labels[candidates])
        out[name] = (scores, classifier.THRESHOLD)
    elif name == "label_only":
        out[name] = _label_only(shadows, candidates, labels, config, queries, notes, cache)
    elif name in THRESHOLD_ATTACKS:
        sig = THRESHOLD_ATTACKS[name]
        attack = getattr(attacks_lib, name)
        tau = attacks_lib.calibrate_threshold(
            np.asarray(attack(shadows.signals[sig])), shadows.keep, pool=shadows.pool
        )
        out[name] = (_host(attack(target_sig[sig])), tau)
    elif name.startswith("lira"):
        k = shadows.keep.shape[0]
        variance = lira.resolve_variance(config.lira_variance, k)
        attack = attacks_lib.lira_online if name == "lira_online" else attacks_lib.lira_offline
        shadow_phi = shadows.phi[:, candidates]  # (k, m) or (k, m, q) with --augment
        queries = shadow_phi.shape[2] if shadow_phi.ndim == 3 else None
        s = attack(target_phi, shadow_phi, keep_c, queries=queries, variance=variance)
        out[name] = (_host(s), None)
        _note(notes, f"LiRA variance: {variance} ({k} shadow models)")
    else:
        scores = _rmia(
            name, shadows, target_all, target_logits_all, candidates, labels, config, notes, cache
        )
        out[name] = (scores, None)


def _host(scores) -> np.ndarray:
    """Scores as a float64 NumPy array, the form the metrics and the report keep."""
    return np.asarray(scores, dtype=np.float64)


LABEL_CALIBRATION_RECORDS = 8192
"""At most this many pool records calibrate the label-only threshold (a seeded random
subset of larger pools; smaller pools, the bundled 5,010 records among them, use every
record). ``tau`` is one scalar among the ``q + 1`` score values, chosen on ``k`` shadows
times these records; querying every record of a large pool ``q`` times through every
shadow model would cost more than the rest of the audit (16 shadows x 50,000 records x 16
queries of the default MLP: ~1.5 TFLOP)."""


LABEL_CALIBRATION_MODELS = 16
"""At most this many shadow models (the pool's first; shadows are exchangeable) calibrate
the label-only threshold, on :func:`calibration_records`. 16 models x 5,010 records are
80,160 labelled pairs for one scalar among ``q + 1`` values; the default audit's threshold
is the same from 4, 8, 16, 32 or all 64 shadows (0.9375), and the queries through all
64 cost four times as much (64 x 5,010 x 16 forward passes, ~0.6 TFLOP)."""


def calibration_records(pool: np.ndarray, seed: int) -> np.ndarray:
    """``(r,)`` sorted indices of the pool records (``pool`` ``(n,)`` bool) that calibrate
    the label-only threshold: all of them, or :data:`LABEL_CALIBRATION_RECORDS` drawn
    without replacement with ``numpy.random.default_rng([seed, 29])``."""
    cols = np.flatnonzero(pool)
    if cols.size <= LABEL_CALIBRATION_RECORDS:
        return cols
    rng = np.random.default_rng([seed, 29])
    return np.sort(rng.choice(cols, LABEL_CALIBRATION_RECORDS, replace=False))


def _label_only(shadows, candidates, labels, config, queries, notes, cache=None):
    """Label-only scores ``(m,)`` of the candidates and the threshold calibrated on the
    pool (:func:`calibration_records`); the target and the shadows answer the same
    copies, drawn once (or, in leave-one-out, for every target at once: ``cache`` then
    holds this target's answers, :func:`known_without`)."""
    target_query, shadow_query, x = queries
    cols = calibration_records(shadows.pool, config.seed)
    models = min(shadows.keep.shape[0], LABEL_CALIBRATION_MODELS)
    if cols.size < shadows.pool.sum() or models < shadows.keep.shape[0]:
        _note(
            notes,
            f"label-only: threshold calibrated on {models} of the {shadows.keep.shape[0]} "
            f"shadow models and {cols.size} of the {int(shadows.pool.sum())} pool records"
            + (" (a seeded random subset)" if cols.size < shadows.pool.sum() else ""),
        )
    if cache is not None and ("label_only", "target") in cache:
        target, shadow = cache["label_only", "target"], cache["label_only", "shadow"][:models]
    else:
        shadow_query = functools.partial(shadow_query, models=models)
        target, shadow = _answers(
            [target_query, shadow_query], x, labels, [candidates, cols], config
        )
    tau = attacks_lib.calibrate_threshold(
        np.asarray(attacks_lib.label_only(shadow), np.float64), shadows.keep[:models, cols]
    )
    return _host(attacks_lib.label_only(target)), tau


def _answers(predicts, x, labels, rows, config) -> list[np.ndarray]:
    """:func:`jaxmia.attacks.query_correctness_many` with the audit's label-only settings."""
    return attacks_lib.query_correctness_many(
        predicts, x, labels, rows=rows, n_queries=config.label_queries, seed=config.seed
    )


def label_only_answers(
    pool_labels: Callable,
    x: np.ndarray,
    labels: np.ndarray,
    shadows: PoolSignals,
    candidates: np.ndarray,
    config: AuditConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Whether each model of the pool answers each perturbed copy correctly, on the
    candidates ``(k, m, q)`` and on the calibration records ``(k, r, q)``: the
    label-only attack's queries for every leave-one-out target at once (each reads its
    rows, :func:`known_without`), where each target would draw the same copies again.

    Args:
      pool_labels: ``x (p, ...) -> (k, p)`` the pool's labels on any inputs.
      x: ``(n, ...)`` the records; labels: ``(n,)``.
      shadows: the whole pool's signals (its ``pool`` picks the calibration records).
      candidates: ``(m,)`` candidate indices.
      config: the audit options (queries, seed).
    """
    cols = calibration_records(shadows.pool, config.seed)
    on_candidates, on_cols = _answers([pool_labels] * 2, x, labels, [candidates, cols], config)
    return on_candidates, on_cols


def _population(name, shadows, config, notes) -> np.ndarray:
    """RMIA's population ``z``: pool records (subsampled to ``population_size``); offline,
    only those with an OUT reference model."""
    population = np.flatnonzero(shadows.pool)
    if config.population_size is not None and config.population_size < population.size:
        rng = np.random.default_rng([config.seed, 23])
        population = np.sort(rng.choice(population, config.population_size, replace=False))
    if name != "rmia_offline":
        return population
    z = population[(~shadows.keep[:, population]).any(axis=0)]
    if z.size < population.size:
        _note(
            notes,
            f"RMIA offline: {population.size - z.size} of {population.size} "
            "population records are members of every shadow model and are "
            "left out of the population",
        )
    return z


RMIA_TEMPERATURES = (1.0, 1.5, 2.0, 3.0)
"""Softmax temperatures tried when RMIA is calibrated on the reference models."""


def log_probs_of(logits: np.ndarray, labels: np.ndarray) -> dict[float, np.ndarray]:
    """RMIA's log-probabilities ``{T: (k, n)}`` of a pool's ``(k, n, c)`` ``logits`` at
    every temperature of :data:`RMIA_TEMPERATURES`, computed once for all leave-one-out
    targets (:func:`known_without` cuts each target's rows from them)."""
    return {
        t: np.asarray(attacks_lib.log_probs(logits, labels, temperature=t))
        for t in RMIA_TEMPERATURES
    }


def known_without(
    t: int,
    log_probs: Mapping[float, np.ndarray] | None = None,
    answers: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """The ``known`` of :func:`attack_target` with model ``t`` of the pool as the target
    and the others as references, from what was computed once for the whole pool:
    ``("ref", T)`` the other models' rows of :func:`log_probs_of`, ``("target", T)``
    model ``t``'s (each row's log-probabilities depend on its logits alone); and
    ``("label_only", "target" / "shadow")`` model ``t``'s and the others' rows of
    :func:`label_only_answers`. The same values as computing them for each target."""
    known: dict = {}
    for T, lp in (log_probs or {}).items():
        known["ref", T], known["target", T] = np.delete(lp, t, axis=0), lp[t]
    if answers is not None:
        on_candidates, on_cols = answers
        known["label_only", "target"] = on_candidates[t]
        known["label_only", "shadow"] = np.delete(on_cols, t, axis=0)
    return known


def _log_probs(cache: dict | None, who: str, logits, labels, temperature: float) -> np.ndarray:
    """``log_probs(logits, labels, temperature)`` on the host, computed once per
    ``(who, temperature)`` in ``cache`` (RMIA online and offline share them)."""
    if cache is None:
        cache = {}
    if (who, temperature) not in cache:
        cache[who, temperature] = np.asarray(
            attacks_lib.log_probs(logits, labels, temperature=temperature)
        )
    return cache[who, temperature]


def _rmia(
    name, shadows, target_all, target_logits_all, candidates, labels, config, notes, cache=None
):
    """RMIA (online, offline) or Attack-P scores of the candidates, with the softmax
    temperature and ``a`` calibrated on the reference models; ``cache`` keeps the
    log-probabilities of every temperature for the next RMIA attack."""
    z = _population(name, shadows, config, notes)
    gamma = config.rmia_gamma
    if name == "attack_p":
        lp = -target_all["loss"]
        return _host(attacks_lib.attack_p(lp[candidates], target_log_p_z=lp[z], gamma=gamma))
    online = name == "rmia_online"
    pool = shadows.pool
    if shadows.logits is not None:  # log-probabilities at every temperature, of all records
        temperatures = RMIA_TEMPERATURES
        ref_at = {t: _log_probs(cache, "ref", shadows.logits, labels, t) for t in temperatures}
    else:  # only the loss is visible: the temperature stays 1
        temperatures = (1.0,)
        ref_at = {1.0: -shadows.signals["loss"]}
    fixed_a = {} if config.rmia_a is None else {"a_grid": (config.rmia_a,)}
    temperature, a = attacks_lib.calibrate_rmia(
        {t: ref_at[t][:, pool] for t in temperatures},
        shadows.keep[:, pool],
        online=online,
        temperatures=temperatures,
        **fixed_a,
    )
    _note(
        notes,
        f"RMIA {'online' if online else 'offline'}: softmax temperature {temperature}"
        + ("" if online else f", a = {a}")
        + " (calibrated on the reference models)",
    )
    ref = ref_at[temperature]
    if target_logits_all is not None:
        lp = _log_probs(cache, "target", target_logits_all, labels, temperature)
    else:
        lp = -target_all["loss"]
    keep = shadows.keep
    kw = dict(target_log_p_z=lp[z], ref_log_p_z=ref[:, z], keep_z=keep[:, z], gamma=gamma)
    if online:
        s = attacks_lib.rmia_online(lp[candidates], ref[:, candidates], keep[:, candidates], **kw)
    else:
        s = attacks_lib.rmia_offline(
            lp[candidates], ref[:, candidates], keep[:, candidates], a=a, **kw
        )
    return _host(s)
