"""Running every attack against one target, from the shadow pool's signals."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from jaxmia import signals
from jaxmia.attacks import label_only, lira, rmia, shokri, threshold
from jaxmia.audit.config import (
    THRESHOLD_ATTACKS,
    AuditConfig,
    Log,
    _note,
    _silent,
    needs,
)


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
        returning the target's ``(n, c)`` and the shadows' ``(k, n, c)`` outputs on any
        inputs, and the records ``x``.

    Returns:
      ``{attack: (scores (m,), threshold or None)}``; a ``None`` threshold means the
      accuracy is reported at the best threshold on the target (optimistic).
    """
    out: dict[str, tuple[np.ndarray, float | None]] = {}
    k = shadows.keep.shape[0]
    keep_c = shadows.keep[:, candidates]
    variance = config.lira_variance
    if variance == "auto":
        variance = "per_example" if k >= 64 else "global"
    population = np.flatnonzero(shadows.pool)
    if config.population_size is not None and config.population_size < population.size:
        rng = np.random.default_rng([config.seed, 23])
        population = np.sort(rng.choice(population, config.population_size, replace=False))
    for name in attacks:
        log(f"attack: {name}")
        if name == "shokri":
            out[name] = shokri.attack(
                shadows.signals,
                shadows.keep,
                shadows.pool,
                labels,
                target_sig,
                labels[candidates],
                num_classes,
                config=shokri.ShokriConfig(
                    features=needs(name, config.effective_access), per_class=config.per_class
                ),
                seed=config.seed,
            )
        elif name == "label_only":
            target_query, shadow_query, x = queries
            out[name] = label_only.attack(
                target_query,
                shadow_query,
                x,
                labels,
                shadows.keep,
                shadows.pool,
                candidates,
                n_queries=config.label_queries,
                seed=config.seed,
            )
        elif name in THRESHOLD_ATTACKS:
            sig = THRESHOLD_ATTACKS[name]
            out[name] = threshold.attack(
                sig, shadows.signals[sig], shadows.keep, shadows.pool, target_sig[sig]
            )
        elif name.startswith("lira"):
            online = name == "lira_online"
            s = lira.scores(
                target_phi, shadows.phi[:, candidates], keep_c, online=online, variance=variance
            )
            out[name] = (s, None)
            _note(notes, f"LiRA variance: {variance} ({k} shadow models)")
        else:
            z = population
            if name == "rmia_offline":  # Pr_OUT(z) needs a reference model without z
                z = population[(~shadows.keep[:, population]).any(axis=0)]
                if z.size < population.size:
                    _note(
                        notes,
                        f"RMIA offline: {population.size - z.size} of {population.size} "
                        "population records are members of every shadow model and are "
                        "left out of the population",
                    )
            lp_x, lp_z, ref_x, ref_z, a = _rmia_inputs(
                name, shadows, target_all, target_logits_all, candidates, z, labels, config, notes
            )
            s = rmia.scores(
                lp_x,
                lp_z,
                ref_x,
                keep_c if ref_x is not None else None,
                ref_z,
                shadows.keep[:, z] if ref_z is not None else None,
                online=name == "rmia_online",
                a=a,
                gamma=config.rmia_gamma,
            )
            out[name] = (s, None)
    return out


RMIA_TEMPERATURES = (1.0, 1.5, 2.0, 3.0)
"""Softmax temperatures tried when RMIA is calibrated on the reference models."""


def _rmia_inputs(
    name, shadows, target_all, target_logits_all, candidates, population, labels, config, notes
):
    """RMIA's log-probabilities of the target and the references on candidates ``x``
    and population ``z`` at the temperature calibrated on the references, and ``a``."""
    if name == "attack_p":
        lp = -target_all["loss"]
        return lp[candidates], lp[population], None, None, 0.0
    online = name == "rmia_online"
    if shadows.logits is not None:

        def log_p_at(temperature, logits=shadows.logits):
            return -np.asarray(signals.loss(logits / temperature, labels))

        temperatures = RMIA_TEMPERATURES
    else:  # only the loss is visible: the temperature stays 1

        def log_p_at(temperature):
            return -shadows.signals["loss"]

        temperatures = (1.0,)
    pool = shadows.pool
    fixed_a = {} if config.rmia_a is None else {"a_grid": (config.rmia_a,)}
    temperature, a = rmia.calibrate(
        lambda t: log_p_at(t)[:, pool],
        shadows.keep[:, pool],
        online=online,
        temperatures=temperatures,
        **fixed_a,
    )
    notes_key = "online" if online else "offline"
    _note(
        notes,
        f"RMIA {notes_key}: softmax temperature {temperature}"
        + ("" if online else f", a = {a}")
        + " (calibrated on the reference models)",
    )
    ref = log_p_at(temperature)
    if target_logits_all is not None:
        lp = -np.asarray(signals.loss(target_logits_all / temperature, labels))
    else:
        lp = -target_all["loss"]
    return lp[candidates], lp[population], ref[:, candidates], ref[:, population], a
