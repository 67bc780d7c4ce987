"""Membership splits: who trains on what.

Everything here is host-side NumPy bookkeeping, seeded for reproducibility. A *keep
matrix* ``keep`` of shape ``(k, n)`` and dtype bool says which of the ``n`` examples each of
``k`` models trains on; it is the one place membership lives, for the target (``k = 1``)
and for the shadow pool alike.

Two shadow schemes are provided:

* ``balanced`` (Carlini et al. 2022, "Membership Inference Attacks From First
  Principles"): every example is a member of exactly ``k / 2`` models, so per-example
  attacks (LiRA, RMIA) have IN and OUT models for every point.
* ``disjoint`` (Shokri et al. 2017, "Membership Inference Attacks against Machine
  Learning Models"): ``k`` shadow training sets of a given size drawn from data disjoint
  from the target's.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence

import numpy as np

__all__ = [
    "SCHEMES",
    "AuditSplit",
    "SplitError",
    "balanced_keep",
    "disjoint_keep",
    "grown_balanced_keep",
    "make_split",
]

SCHEMES = ("balanced", "disjoint")
"""The shadow schemes :func:`make_split` accepts (see the module docstring)."""


class SplitError(ValueError):
    """The data is too small, or the sizes asked for are inconsistent."""


def _integer(name: str, value: object) -> int:
    """``value`` as an int; a :class:`SplitError` if it is not a whole number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SplitError(f"{name} must be an integer, got {value!r}")
    return int(value)


def balanced_keep(k: int, n: int, *, seed: int | Sequence[int] = 0) -> np.ndarray:
    """Keep matrix in which each example is a member of exactly ``k / 2`` models.

    For every example independently, a uniformly random half of the ``k`` models is
    chosen (the construction of Carlini et al. 2022). Each model then trains on about
    ``n / 2`` examples.

    Args:
      k: number of models, even and at least 2.
      n: number of examples.
      seed: seed of the NumPy generator.

    Returns:
      ``(k, n)`` bool array whose every column sums to ``k / 2``.
    """
    k, n = _integer("the number of models", k), _integer("the number of examples", n)
    if k < 2 or k % 2:
        raise SplitError(f"the balanced scheme needs an even number of models >= 2, got {k}")
    if n < 2:
        raise SplitError(f"the balanced scheme needs at least 2 examples, got {n}")
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((k, n)), axis=0)
    return order < k // 2


def disjoint_keep(
    k: int, n: int, *, size: int, exclude: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Keep matrix of ``k`` shadow training sets drawn outside ``exclude``.

    Each row holds ``size`` examples drawn without replacement from the examples not in
    ``exclude`` (the target's data); different rows may overlap, as in Shokri et al.
    2017. At least one pool example is left out of every row so that each shadow model
    has non-members.

    Args:
      k: number of shadow models (>= 1).
      n: number of examples.
      size: training-set size of each shadow model.
      exclude: indices in ``[-n, n)`` (or a bool mask of length ``n``) no shadow model may
        train on.
      seed: seed of the NumPy generator.

    Returns:
      ``(k, n)`` bool array with ``size`` True entries per row and none in ``exclude``.
    """
    k, n = _integer("the number of shadow models", k), _integer("the number of examples", n)
    size = _integer("the shadow training-set size", size)
    if k < 1:
        raise SplitError(f"need at least one shadow model, got {k}")
    if n < 0:
        raise SplitError(f"the number of examples must be >= 0, got {n}")
    pool = np.ones(n, dtype=bool)
    if exclude is not None:
        exclude = np.asarray(exclude)
        if exclude.dtype == bool:
            if exclude.shape != (n,):
                raise SplitError(f"an exclude mask must have shape ({n},), got {exclude.shape}")
        else:
            exclude = exclude.reshape(-1).astype(np.intp) if exclude.size == 0 else exclude
            if exclude.dtype.kind not in "iu" or ((exclude < -n) | (exclude >= n)).any():
                raise SplitError(
                    f"exclude must hold indices in [-{n}, {n}) or be a bool mask, got "
                    f"{exclude.dtype} values {exclude.min()}..{exclude.max()}"
                )
        pool[exclude] = False
    available = np.flatnonzero(pool)
    if size < 1:
        raise SplitError(f"shadow training-set size must be >= 1, got {size}")
    if size >= available.size:
        raise SplitError(
            f"shadow training sets of {size} examples need more than {size} examples "
            f"outside the target's data; only {available.size} are available"
        )
    rng = np.random.default_rng(seed)
    keep = np.zeros((k, n), dtype=bool)
    for i in range(k):
        keep[i, rng.choice(available, size=size, replace=False)] = True
    return keep


@dataclasses.dataclass(frozen=True)
class AuditSplit:
    """Who trains on what in one audit.

    Attributes:
      target_keep: ``(n,)`` bool, the target model's training set.
      candidates: ``(m,)`` int indices of the records the attacks score against the
        target.
      membership: ``(m,)`` bool, the candidates' true membership, normally
        ``target_keep[candidates]`` (a control experiment may set it otherwise).
      shadow_keep: ``(k, n)`` bool, the shadow models' training sets.
      shadow_pool: ``(n,)`` bool, the examples whose shadow outputs may be used by the
        attacks (a shadow model's non-members are ``shadow_pool & ~shadow_keep[i]``).
      scheme: ``"balanced"`` or ``"disjoint"``.
    """

    target_keep: np.ndarray
    candidates: np.ndarray
    membership: np.ndarray
    shadow_keep: np.ndarray
    shadow_pool: np.ndarray
    scheme: str


def make_split(
    n: int,
    num_shadows: int,
    *,
    scheme: str = "balanced",
    target_size: int | None = None,
    shadow_size: int | None = None,
    seed: int = 0,
) -> AuditSplit:
    """Draws the target split and the shadow pool for an audit.

    ``balanced``: the target trains on ``target_size`` (default ``n // 2``) random
    examples, every example is a candidate, and the shadow pool is
    :func:`balanced_keep` over all ``n`` examples (the attacker knows the population
    the candidates come from, as in LiRA and RMIA).

    ``disjoint``: the examples are shuffled and cut in two halves. The target's half
    holds its ``target_size`` members (default: half of that half) and as many
    non-members, which are the candidates; the shadow models train on ``shadow_size``
    examples each (default ``target_size``) drawn from the other half only.

    Args:
      n: number of examples in the dataset.
      num_shadows: number of shadow models ``k``.
      scheme: ``"balanced"`` or ``"disjoint"``.
      target_size: size of the target's training set.
      shadow_size: size of each shadow training set (``disjoint`` only).
      seed: seed of the NumPy generators.

    Returns:
      An :class:`AuditSplit`.
    """
    if scheme not in SCHEMES:
        raise SplitError(f"unknown split scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    n = _integer("the number of examples", n)
    if n < 2:
        raise SplitError(f"an audit split needs at least 2 examples, got {n}")
    if target_size is not None:
        target_size = _integer("target_size", target_size)
    if shadow_size is not None:
        shadow_size = _integer("shadow_size", shadow_size)
    rng = np.random.default_rng([seed, 1])
    target_keep = np.zeros(n, dtype=bool)
    if scheme == "balanced":
        size = n // 2 if target_size is None else int(target_size)
        if not 1 <= size < n:
            raise SplitError(
                f"target training-set size must be between 1 and {n - 1} "
                f"for {n} examples, got {size}"
            )
        target_keep[rng.choice(n, size=size, replace=False)] = True
        return AuditSplit(
            target_keep=target_keep,
            candidates=np.arange(n),
            membership=target_keep.copy(),
            shadow_keep=balanced_keep(num_shadows, n, seed=seed),
            shadow_pool=np.ones(n, dtype=bool),
            scheme=scheme,
        )
    perm = rng.permutation(n)
    half = n // 2
    size = half // 2 if target_size is None else int(target_size)
    if not 1 <= size or 2 * size > half:
        raise SplitError(
            f"the disjoint scheme needs 2 x target_size <= {half} (half of {n} examples), "
            f"got target_size={size}"
        )
    target_part, shadow_part = perm[: 2 * size], perm[half:]
    target_keep[target_part[:size]] = True
    shadow_keep = disjoint_keep(
        num_shadows,
        n,
        size=size if shadow_size is None else int(shadow_size),
        exclude=perm[:half],
        seed=seed,
    )
    shadow_pool = np.zeros(n, dtype=bool)
    shadow_pool[shadow_part] = True
    candidates = np.sort(target_part)
    return AuditSplit(
        target_keep=target_keep,
        candidates=candidates,
        membership=target_keep[candidates],
        shadow_keep=shadow_keep,
        shadow_pool=shadow_pool,
        scheme=scheme,
    )


def grown_balanced_keep(blocks: Sequence[int], n: int, *, seed: int = 0) -> np.ndarray:
    """Keep matrix of a balanced pool grown in blocks (64 models, later 128, ...).

    Block ``[a, b)`` is ``balanced_keep(b - a, n)`` seeded with ``seed`` for the first
    block (so a pool of one block is the plain :func:`balanced_keep`) and ``[seed, a]``
    after it. Every block is balanced, so the whole matrix is too (every example is a
    member of exactly half of the models), and the first blocks never change when the
    pool grows.

    Args:
      blocks: increasing block ends, the last one the pool size ``k``.
      n: number of examples.
      seed: seed of the NumPy generators.

    Returns:
      ``(k, n)`` bool array.
    """
    blocks = list(blocks)
    if not blocks:
        raise SplitError("a grown pool needs at least one block")
    rows, start = [], 0
    for stop in blocks:
        stop = _integer("a pool block end", stop)
        if stop <= start:
            raise SplitError(f"pool blocks must increase, got {list(blocks)}")
        rows.append(balanced_keep(stop - start, n, seed=seed if start == 0 else [seed, start]))
        start = stop
    return np.concatenate(rows)
