"""Auditing a model the user trained (:func:`audit_model`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jaxmia import datasets, engine, models, splits
from jaxmia.audit.config import AuditConfig, ConfigError, Log, _silent
from jaxmia.audit.pipeline import run
from jaxmia.audit.report import AuditReport
from jaxmia.audit.target import _as_function, _xy, query_model


def audit_model(
    model: Any,
    members: tuple[np.ndarray, np.ndarray],
    nonmembers: tuple[np.ndarray, np.ndarray],
    population: tuple[np.ndarray, np.ndarray],
    *,
    factory: models.ModelFactory | None = None,
    config: AuditConfig = AuditConfig(num_shadows=16, dataset="user data"),
    outputs: str = "auto",
    log: Log = _silent,
    progress: engine.ProgressFn | None = None,
    pool_dir: str | os.PathLike | None = None,
) -> AuditReport:
    """Audits a model the user trained: how well does each attack tell its members apart?

    jaxmia trains the shadow/reference pool with the named architecture on the
    population data and the candidate records (the auditor knows the candidates; with
    ``config.scheme="disjoint"`` the shadows train on the population only and the online
    attacks are skipped), then runs every attack the access level allows against
    ``model``. Inputs are used as given (no normalisation), so pass them preprocessed the
    way the model expects.

    Args:
      model: a Flax NNX module (evaluated in eval mode) or any function mapping a batch
        ``(b, *input_shape)`` to logits or probabilities ``(b, c)``.
      members: ``(x, y)`` records the model was trained on.
      nonmembers: ``(x, y)`` records it was not trained on.
      population: ``(x, y)`` further records from the same distribution.
      factory: the shadow architecture, ``factory(rngs=...) -> nnx.Module``; default:
        an MLP with ``config.hidden``.
      config: audit options (``dataset`` is only a label here).
      outputs: what ``model`` returns: ``logits``, ``probs`` or ``auto``.
      log, progress: as in :func:`run`.
      pool_dir: keep the shadow pool there (as in :func:`run`): auditing another model
        on the same records (a retrained or defended version) then reuses it.

    Returns:
      An :class:`AuditReport` over the member and non-member candidates.
    """
    fn = _as_function(model)
    parts = [_xy(n, d) for n, d in (("members", members), ("nonmembers", nonmembers))]
    parts.append(_xy("population", population))
    shapes = {p[0].shape[1:] for p in parts}
    if len(shapes) != 1:
        raise ConfigError(f"members, nonmembers and population differ in input shape: {shapes}")
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts]).astype(np.int32)
    if not np.isfinite(x).all():
        raise ConfigError("inputs contain NaN or infinite values")
    n_m, n_nm = len(parts[0][0]), len(parts[1][0])
    probe = query_model(fn, x[:2], outputs=outputs)
    num_classes = max(int(y.max()) + 1, probe.shape[1])
    ds = datasets.Dataset(x=x, y=y, num_classes=num_classes, name=config.dataset)
    n, m = len(x), n_m + n_nm
    membership = np.arange(m) < n_m
    target_keep = np.zeros(n, bool)
    target_keep[:n_m] = True
    if config.scheme == "balanced":
        shadow_keep = splits.balanced_keep(config.num_shadows, n, seed=config.seed)
        pool = np.ones(n, bool)
    else:
        shadow_keep = np.zeros((config.num_shadows, n), bool)
        shadow_keep[:, m:] = splits.balanced_keep(config.num_shadows, n - m, seed=config.seed)
        pool = np.arange(n) >= m
    split = splits.AuditSplit(
        target_keep=target_keep,
        candidates=np.arange(m),
        membership=membership,
        shadow_keep=shadow_keep,
        shadow_pool=pool,
        scheme=config.scheme,
    )
    return run(
        config,
        log=log,
        progress=progress,
        dataset=ds,
        split=split,
        target_fn=lambda b: query_model(fn, b, outputs=outputs),
        factory=factory,
        pool_dir=pool_dir,
    )
