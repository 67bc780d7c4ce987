"""The audit's attack and metric phases: every attack against every target
(:func:`attack_all`), then the metrics of the pooled scores (:func:`evaluate`).

One target (the trained or the user's model) or, in leave-one-out, each of the first
``config.targets`` shadow models in turn against the others.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os

import numpy as np

from jaxmia._src import metrics
from jaxmia._src.attacks import AttackInputs, PoolSignals, Queries
from jaxmia._src.audit.attacking import attack_target, pool_wide, start_fits_per_target
from jaxmia._src.audit.extraction import Extracted, TargetSignals
from jaxmia._src.audit.log import Log, note, silent
from jaxmia._src.audit.setup import Setup
from jaxmia._src.audit.training import Shadows, TargetRun

__all__ = ["Scored", "attack_all", "evaluate", "evaluate_per_target", "optimistic"]


@dataclasses.dataclass(frozen=True)
class Scored:
    """Every attack's scores on every target's candidates.

    Attributes:
      scores: ``{attack: [(m,) scores per target]}``, higher = member.
      taus: ``{attack: [threshold per target]}``; ``None`` where none was calibrated.
      membership: ``[(m,) bool]`` per target, the candidates' true membership.
      candidates: ``[(m,)]`` per target, the candidates' record indices.
      accuracy: ``(t, 2)`` each target's train and test accuracy.
      plot: ``{signal: (m,)}`` the first target's confidence/loss on its candidates.
      seconds: ``{attack: seconds}`` each attack's wall time over all targets.
    """

    scores: dict[str, list[np.ndarray]]
    taus: dict[str, list[float | None]]
    membership: list[np.ndarray]
    candidates: list[np.ndarray]
    accuracy: np.ndarray
    plot: dict[str, np.ndarray]
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def target_index(self) -> np.ndarray:
        """``(t * m,)`` which target each pooled row was scored against."""
        return np.concatenate([np.full(c.size, t) for t, c in enumerate(self.candidates)])


@dataclasses.dataclass(frozen=True)
class _Target:
    """One target as :func:`attack_target` reads it."""

    others: PoolSignals
    membership: np.ndarray
    signals: TargetSignals
    accuracy: tuple[float, float]
    queries: Queries


def _targets(
    setup: Setup, extracted: Extracted, target: TargetRun | None, shadows: Shadows
) -> list[_Target]:
    """The targets: the audited model against the whole pool, or (leave-one-out) shadow
    model ``t`` against the others, for ``t < config.targets``."""
    pool, labels, x = extracted.shadows, extracted.pool_labels, setup.ds.x
    if not setup.loo:
        queries = Queries(extracted.target.query, labels, x)
        return [_Target(pool, setup.split.membership, extracted.target, target.accuracy, queries)]
    out = []
    for t in range(setup.config.targets):
        own = TargetSignals(
            all={name: v[t] for name, v in pool.signals.items()},
            phi=None if pool.phi is None else pool.phi[t],
            logits=None if pool.logits is None else pool.logits[t],
            query=lambda x, t=t: labels(x)[t],
        )
        others = lambda x, models=None, t=t: np.delete(labels(x), t, axis=0)[:models]
        queries = Queries(own.query, others, x)
        accuracy = (shadows.pool.train_accuracy[t], shadows.pool.test_accuracy[t])
        membership = shadows.split.shadow_keep[t, setup.split.candidates]
        out.append(_Target(pool.without(t), membership, own, accuracy, queries))
    return out


def attack_all(
    setup: Setup,
    extracted: Extracted,
    target: TargetRun | None,
    shadows: Shadows,
    notes: list[str],
    log: Log = silent,
) -> Scored:
    """Runs every attack (:func:`jaxmia._src.audit.attacking.attack_target`) against every
    target on its ``m`` candidates; ``notes`` receives the settings chosen on the way."""
    config, cand, ds = setup.config, setup.split.candidates, setup.ds
    if config.attacks is None and config.scheme != "balanced":
        notes.append("online LiRA/RMIA skipped: the disjoint scheme has no IN models")
    scores: dict[str, list[np.ndarray]] = {a: [] for a in setup.attacks}
    taus: dict[str, list[float | None]] = {a: [] for a in setup.attacks}
    seconds: dict[str, float] = {}
    targets = _targets(setup, extracted, target, shadows)
    # the attacks' work on each target's pool alone: the one target's since the signals
    fits: list = [extracted.fits]
    executor = known = None
    if setup.loo:  # every target's, a core each, from now; the pool-wide work once
        workers = min(len(targets), os.cpu_count() or 1)
        others = [one.others for one in targets]
        fits, executor = start_fits_per_target(
            setup.attacks, others, ds.y, ds.num_classes, config, workers
        )
        whole = AttackInputs(
            shadows=extracted.shadows,
            target={},
            target_phi=None,
            target_logits=None,
            candidates=cand,
            labels=ds.y,
            num_classes=ds.num_classes,
            settings=config,
            queries=Queries(None, extracted.pool_labels, ds.x),
            notes=notes,
        )
        known = pool_wide(setup.attacks, whole, seconds)
    try:
        _attack_each(setup, targets, fits, known, scores, taus, seconds, notes, log)
    finally:
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
    return Scored(
        scores=scores,
        taus=taus,
        membership=[one.membership for one in targets],
        candidates=[cand for _ in targets],
        accuracy=np.asarray([one.accuracy for one in targets], dtype=np.float64),
        plot={name: targets[0].signals.all[name][cand] for name in extracted.plot_signals},
        seconds={name: round(v, 3) for name, v in seconds.items()},
    )


def _attack_each(setup, targets, fits, known, scores, taus, seconds, notes, log) -> None:
    """:func:`attack_target` on each of ``targets`` in turn, with the attacks' fits from
    ``fits[t]`` (``{attack: future}``, or ``None`` to fit them there) and, in
    leave-one-out, ``known(t)`` (:func:`jaxmia._src.audit.attacking.pool_wide`); collects into
    ``scores``, ``taus`` and ``seconds``."""
    config, cand, ds = setup.config, setup.split.candidates, setup.ds
    for t, one in enumerate(targets):
        if setup.loo:
            log(f"target {t + 1}/{config.targets} (leave-one-out)")
        sig = one.signals
        results = attack_target(
            setup.attacks,
            one.others,
            sig.all,
            sig.phi,
            sig.logits,
            cand,
            ds.y,
            ds.num_classes,
            config,
            notes,
            log=log if t == 0 else silent,
            queries=one.queries,
            seconds=seconds,
            fits=fits[t],
            known=None if known is None else known(t),
        )
        for name, (s, tau) in results.items():
            scores[name].append(s)
            taus[name].append(tau)


def evaluate(setup: Setup, scored: Scored, notes: list[str]) -> dict[str, metrics.AttackMetrics]:
    """``{attack: AttackMetrics}`` of the scores pooled over the targets, at the median
    of the targets' calibrated thresholds, with ``config.n_boot`` bootstrap intervals."""
    config = setup.config
    membership = np.concatenate(scored.membership)

    def one(name: str) -> metrics.AttackMetrics:
        known = [t for t in scored.taus[name] if t is not None]
        return metrics.evaluate(
            membership,
            np.concatenate(scored.scores[name]),
            threshold=float(np.median(known)) if known else None,
            fprs=config.fprs,
            n_boot=config.n_boot,
            seed=config.seed,
        )

    # the attacks in threads: the bootstrap's NumPy work releases the GIL (1.5x on 2 cores)
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1, "jaxmia-metrics") as ex:
        results = dict(zip(scored.scores, ex.map(one, scored.scores), strict=True))
    for name in optimistic(scored):
        note(notes, f"{name}: accuracy at the best threshold on the target (optimistic)")
    low = sorted({f for m in results.values() for f in m.unmeasurable_fprs})
    if low:
        n_out = next(iter(results.values())).n_nonmembers
        shown = ", ".join(f"{f:g}" for f in low)
        note(
            notes,
            f"TPR at FPR {shown} is not measurable with {n_out} non-members (the smallest "
            f"nonzero FPR is 1/{n_out}): flagged '*' in the table and listed under "
            "tpr_at_fpr_unmeasurable in metrics.json",
        )
    return results


def optimistic(scored: Scored) -> tuple[str, ...]:
    """The attacks without a threshold calibrated on the shadows for any target: their
    accuracy, precision and recall are at the best threshold on the target's own scores
    (:func:`evaluate`)."""
    return tuple(a for a, taus in scored.taus.items() if all(t is None for t in taus))


def evaluate_per_target(setup: Setup, scored: Scored) -> dict[str, list[metrics.AttackMetrics]]:
    """``{attack: [AttackMetrics per target]}`` in leave-one-out (no intervals); ``{}``
    for a single target."""
    if not setup.loo:
        return {}
    fprs = setup.config.fprs
    return {
        name: [
            metrics.evaluate(member, s, threshold=tau, fprs=fprs, n_boot=0)
            for member, s, tau in zip(scored.membership, scores, scored.taus[name], strict=True)
        ]
        for name, scores in scored.scores.items()
    }
