"""Running the registry's attacks against one target, from the shadow pool's signals.

Each attack is an :class:`jaxmia.attacks.Attack` (:mod:`jaxmia.attacks.registry`); this
module only schedules them: the work an attack can do on the pool alone
(:attr:`~jaxmia.attacks.Attack.fit`, e.g. Shokri's classifier) starts as soon as the
pool's signals exist (:func:`start_fits`); in leave-one-out, what an attack computes on
the whole pool once is cut for each target (:func:`pool_wide`); attacks marked
``background`` run in a thread beside the others (:func:`attack_target`). Results do not
depend on the scheduling: each attack is a pure function of its inputs (and XLA's results
do not depend on what else runs), only the wall time does.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Mapping

import numpy as np

from jaxmia._src.attacks import registry
from jaxmia._src.attacks.registry import AttackInputs, PoolSignals, Queries, Scores
from jaxmia._src.audit.config import AuditConfig
from jaxmia._src.audit.log import Log, note, silent

__all__ = [
    "attack_target",
    "pool_wide",
    "start_fits",
    "start_fits_per_target",
]


def attack_target(
    attacks: tuple[str, ...],
    shadows: PoolSignals,
    target: Mapping[str, np.ndarray],
    target_phi: np.ndarray | None,
    target_logits: np.ndarray | None,
    candidates: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    config: AuditConfig,
    notes: list[str],
    log: Log = silent,
    queries: Queries | None = None,
    seconds: dict[str, float] | None = None,
    fits: Mapping[str, concurrent.futures.Future] | None = None,
    known: Mapping | None = None,
) -> dict[str, Scores]:
    """Runs every attack against one target.

    Args:
      attacks: attack names (:func:`jaxmia.attacks.registry.names`).
      shadows: the shadow pool's signals (without the target).
      target: ``{signal: (n, ...)}`` the target's signals on every record.
      target_phi: ``(n, q)`` the target's logit-scaled confidence per query, or ``None``.
      target_logits: ``(n, c)`` the target's logits under ``probs`` access where an
        attack reads them, else ``None``.
      candidates: ``(m,)`` candidate indices.
      labels: ``(n,)`` labels.
      num_classes: ``c``.
      config: the audit options.
      notes: receives the settings chosen on the way, in the order of ``attacks``.
      log: progress lines.
      queries: the label-only queries (:class:`jaxmia.attacks.Queries`).
      seconds: if given, each attack's wall time (its ``fit`` included) is added to
        ``seconds[attack]``; background attacks' times overlap the others'.
      fits: ``{attack: future}`` of its ``fit`` on these ``shadows``, started earlier
        (:func:`start_fits`), each holding ``(fitted, seconds it took)``.
      known: cache entries already computed by the caller (in leave-one-out, this
        target's cut of :func:`pool_wide`).

    Returns:
      ``{attack: Scores(scores (m,) float64, threshold or None)}``; a ``None`` threshold
      means the accuracy is reported at the best threshold on the target (optimistic).

    Raises:
      ValueError: an attack returned scores of another shape than ``(m,)``, or a
        threshold it does not declare (or none where it declares one).
    """
    fits = fits or {}
    out: dict[str, Scores] = {}
    cache: dict = dict(known or {})  # what one attack computes and another reads again
    own_notes: dict[str, list[str]] = {name: [] for name in attacks}
    taken: dict[str, float] = {}

    def one(name: str) -> None:
        attack = registry.get(name)
        started = time.perf_counter()
        fitted = None
        if name in fits:  # fitted since start_fits: its time, not the wait for this turn
            fitted, fit_s = fits[name].result()
            started = time.perf_counter() - fit_s
        elif attack.fit is not None:
            fitted = attack.fit(shadows, labels, num_classes, config)
        inputs = AttackInputs(
            shadows=shadows,
            target=target,
            target_phi=target_phi,
            target_logits=target_logits,
            candidates=candidates,
            labels=labels,
            num_classes=num_classes,
            settings=config,
            queries=queries,
            fitted=fitted,
            cache=cache,
            notes=own_notes[name],
        )
        out[name] = _checked(attack, attack.score(inputs), candidates.size)
        taken[name] = time.perf_counter() - started

    many = len(attacks) > 1
    behind = [a for a in attacks if many and registry.get(a).background]
    executor = concurrent.futures.ThreadPoolExecutor(max(1, len(behind)), "jaxmia-attack")
    try:
        futures = []
        for name in behind:
            log(f"attack: {name} (in the background)")
            futures.append(executor.submit(one, name))
        # an attack whose fit is still running in its thread is scored last: the other
        # attacks go on meanwhile instead of waiting for it
        ahead = [a for a in attacks if a not in behind]
        ahead = [a for a in ahead if a not in fits] + [a for a in ahead if a in fits]
        for name in ahead:
            log(f"attack: {name}")
            one(name)
        for future in futures:
            future.result()  # raises what the attack raised
    finally:
        executor.shutdown(cancel_futures=True)
    for name in attacks:  # in the order of the attacks, whichever thread ran them
        for text in own_notes[name]:
            note(notes, text)
        if seconds is not None:
            seconds[name] = seconds.get(name, 0.0) + taken[name]
    return {name: out[name] for name in attacks}


def _checked(attack: registry.Attack, result, m: int) -> Scores:
    """``result`` of ``attack.score`` as :class:`Scores` of float64 scores, checked
    against the attack's declaration (a third-party attack's mistake is named here, not
    in the metrics)."""
    scores, threshold = result
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (m,):
        raise ValueError(
            f"attack {attack.name!r} returned scores of shape {scores.shape}, expected ({m},)"
        )
    if (threshold is None) == attack.calibrated:
        declared = "declares" if attack.calibrated else "does not declare"
        raise ValueError(
            f"attack {attack.name!r} {declared} a calibrated threshold but returned {threshold!r}"
        )
    return Scores(scores, None if threshold is None else float(threshold))


def _fitter(attack: registry.Attack, shadows, labels, num_classes, config):
    """``() -> (fitted, seconds)``: ``attack.fit`` on ``shadows``, timed."""

    def fit():
        started = time.perf_counter()
        fitted = attack.fit(shadows, labels, num_classes, config)
        return fitted, time.perf_counter() - started

    return fit


def start_fits(
    attacks: tuple[str, ...],
    shadows: PoolSignals,
    labels: np.ndarray,
    num_classes: int,
    config: AuditConfig,
) -> dict[str, concurrent.futures.Future]:
    """The ``fit`` of each of ``attacks`` that has one, on ``shadows``, each in a
    background (daemon) thread, started as soon as the pool's signals exist: it needs
    nothing of the target, so it runs while the target's signals are computed and the
    other attacks run. Each future holds ``(fitted, seconds it took)`` or the exception
    it raised."""
    futures = {}
    for name in attacks:
        attack = registry.get(name)
        if attack.fit is None:
            continue
        future: concurrent.futures.Future = concurrent.futures.Future()
        fit = _fitter(attack, shadows, labels, num_classes, config)

        def run(fit=fit, future=future) -> None:
            try:
                future.set_result(fit())
            except BaseException as e:  # raised again by future.result()
                future.set_exception(e)

        threading.Thread(target=run, name=f"jaxmia-{name}", daemon=True).start()
        futures[name] = future
    return futures


def start_fits_per_target(
    attacks: tuple[str, ...],
    pools: list[PoolSignals],
    labels: np.ndarray,
    num_classes: int,
    config: AuditConfig,
    workers: int,
) -> tuple[list[dict[str, concurrent.futures.Future]], concurrent.futures.ThreadPoolExecutor]:
    """The ``fit`` of each of ``attacks`` on each of ``pools`` (in leave-one-out, the pool
    without each target), ``workers`` at a time in background threads, all queued at
    once: they run while the targets' other attacks run, instead of one after another
    within each target's turn. Returns one ``{attack: future}`` per pool, each future
    holding ``(fitted, seconds it took)``, and their executor (shut it down once they are
    read)."""
    executor = concurrent.futures.ThreadPoolExecutor(max(1, workers), "jaxmia-fit")
    fitted = [attack for attack in map(registry.get, attacks) if attack.fit is not None]
    futures = [
        {
            attack.name: executor.submit(_fitter(attack, pool, labels, num_classes, config))
            for attack in fitted
        }
        for pool in pools
    ]
    return futures, executor


def pool_wide(
    attacks: tuple[str, ...],
    inputs: AttackInputs,
    seconds: dict[str, float] | None = None,
):
    """Leave-one-out: each attack's :attr:`~jaxmia.attacks.Attack.pool_wide` work,
    computed once on the whole pool (``inputs`` without a target; a hook shared by
    several attacks runs once, timed to the first), as ``t -> known`` for
    :func:`attack_target`: target ``t``'s cache entries, the same values as computing
    them for ``t`` alone."""
    cuts, done = [], set()
    for name in attacks:
        hook = registry.get(name).pool_wide
        if hook is None or hook in done:
            continue
        done.add(hook)
        started = time.perf_counter()
        cuts.append(hook(inputs))
        if seconds is not None:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started

    def known(t: int) -> dict:
        return {key: value for cut in cuts for key, value in cut(t).items()}

    return known
