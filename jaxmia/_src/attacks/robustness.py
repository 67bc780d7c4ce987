"""Label-only membership inference by robustness to input perturbations.

The attacker sees only the target's predicted labels (the ``"label"`` access level of
:mod:`jaxmia.threat_models`, e.g. behind :func:`jaxmia.defences.label_only`). Following
Choquette-Choo et al. 2021, "Label-Only Membership Inference Attacks" (ICML), it queries the
target on ``q`` slightly perturbed copies of each candidate -- the original first, then
random bit flips, Gaussian noise or image augmentations (:func:`perturb_inputs`) -- and scores
the candidate by the fraction of copies that are still classified correctly
(:func:`label_only`): a model tends to be right, and robustly right, around its
training points. With ``q = 1`` (no perturbation) this is the gap attack of Yeom et al. 2018
("Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting", CSF), whose
only information is whether the prediction is correct; the perturbed queries refine it.

The attack follows the protocol of :mod:`jaxmia.attacks` on arrays of answers:
:func:`query_correctness` asks a model (the target, or a shadow pool) the perturbed queries
and returns which answers are correct, ``(m, q)`` or ``(k, m, q)``; :func:`label_only` turns
the target's answers into scores. The decision threshold is calibrated on the shadow models
exactly like the threshold attacks (:func:`jaxmia.attacks.calibrate_threshold`): it
maximises the accuracy of ``fraction >= tau`` over the shadows' members and non-members.

Scores take only ``q + 1`` values ``0, 1/q, ..., 1``, so many candidates tie (most members
score exactly 1). Ties are kept, not broken by any other signal: the ROC then has at most
``q + 1`` vertices and the TPR at low FPR is coarse. More queries give a finer score.

Example::

    target = attacks.query_correctness(target_model, x, y, rows=candidates)   # (m, q)
    shadow = attacks.query_correctness(lambda v: engine.predict(pool, v), x, y)  # (k, n, q)
    scores = attacks.label_only(target)                                        # (m,)
    tau = attacks.calibrate_threshold(attacks.label_only(shadow), pool.keep)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxmia._src.attacks import checks, registry, threshold
from jaxmia.settings import POS, Section, opt

__all__ = [
    "ATTACK",
    "CALIBRATION_MODELS",
    "CALIBRATION_RECORDS",
    "DEFAULT_STRENGTH",
    "KINDS",
    "NEEDS",
    "LabelOnlyOptions",
    "calibration_records",
    "label_only",
    "perturb_inputs",
    "query_correctness",
    "query_correctness_many",
    "resolve_kind",
]

KINDS: tuple[str, ...] = ("auto", "flip", "gaussian", "shift", "image")
"""Input perturbations of :func:`perturb_inputs`:

* ``"flip"``: binary features, each flipped (0 <-> 1) independently with probability
  ``strength``;
* ``"gaussian"``: continuous features plus ``N(0, strength^2)`` noise, in feature units (the
  bundled and loaded tables are standardised or in ``[0, 1]``, so ``strength`` is relative to
  the features' scale); values are not clipped;
* ``"shift"``: images ``(n, h, w, ch)`` translated by a random integer offset in
  ``[-strength, strength]`` pixels along each axis, zero-padded;
* ``"image"``: ``"shift"`` plus a horizontal flip with probability 1/2 -- the augmentations
  of Choquette-Choo et al. 2021. For data without mirror symmetry (digits) use ``"shift"``;
* ``"auto"``: ``"image"`` for 4-D inputs, ``"flip"`` when every value is 0 or 1,
  ``"gaussian"`` otherwise.
"""

DEFAULT_STRENGTH: dict[str, float] = {"flip": 0.02, "gaussian": 0.1, "shift": 1, "image": 1}
"""``strength`` used when none is given: flip probability, noise std in feature units, or
maximum shift in pixels."""

NEEDS: tuple[str, ...] = ("correctness",)
"""Signals of :mod:`jaxmia.signals` the attack uses: only whether the predicted label is
correct, which the ``"probs"`` and ``"label"`` access levels provide."""


# --------------------------------------------------------------------------- perturbations


_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(k1: jax.Array, k2: jax.Array, x0: jax.Array, x1: jax.Array):
    """The Threefry-2x32 hash with 20 rounds (Salmon et al. 2011, "Parallel Random
    Numbers: As Easy as 1, 2, 3"), as ``jax.random``'s threefry computes it: exact uint32
    arithmetic, written out in one fusion (JAX lowers it on the CPU as a 5-step loop over
    the whole array, 10x slower)."""
    ks = (k1, k2, k1 ^ k2 ^ jnp.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = (x1 << jnp.uint32(r)) | (x1 >> jnp.uint32(32 - r))
            x1 = x0 ^ x1
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


@jax.jit
def _flip_rows(
    x: jax.Array, key: jax.Array, rate: jax.Array, start_hi: jax.Array, start_lo: jax.Array
) -> jax.Array:
    """``jnp.where(jax.random.bernoulli(key, rate, (n, d)), 1 - x_all, x_all)[rows]`` for
    rows ``x`` ``(r, d)`` of an ``(n, d)`` array, computing only those rows' random bits.

    With ``jax_threefry_partitionable`` (JAX's default), element ``(i, j)`` of a random
    array draws ``threefry2x32(key, (hi, lo))`` of its flat index ``i * d + j`` (split
    into 32-bit halves; ``bits = hi_out ^ lo_out``), and ``uniform`` keeps the top 23 bits
    as ``1.m - 1``: the same integer and float32 operations here give the same flips.
    ``start_hi``, ``start_lo`` ``(r,)`` uint32: the halves of each row's first flat index.
    """
    k1, k2 = jax.random.key_data(key)
    b0, b1 = _threefry2x32(k1, k2, *_flat_halves(start_hi, start_lo, x.shape[1]))
    bits = b0 ^ b1
    mantissa = (bits >> jnp.uint32(9)) | jnp.uint32(0x3F800000)  # uniform in [1, 2)
    uniform = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - jnp.float32(1.0)
    return jnp.where(uniform < rate, 1 - x, x)


@jax.jit
def _flip_bits(x: jax.Array, key: jax.Array, rate: jax.Array) -> jax.Array:
    flip = jax.random.bernoulli(key, rate, x.shape)
    return jnp.where(flip, 1 - x, x)


def _partitionable_threefry(key: jax.Array) -> bool:
    """Whether ``key`` draws with the partitionable Threefry-2x32 (JAX's default), whose
    bits :func:`_flip_rows` reproduces; other generators go through ``jax.random``."""
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    impl = str(jax.random.key_impl(key)) if typed else jax.config.jax_default_prng_impl
    return impl == "threefry2x32" and bool(jax.config.jax_threefry_partitionable)


def _flat_halves(start_hi: jax.Array, start_lo: jax.Array, d: int) -> tuple[jax.Array, jax.Array]:
    """``(r, d)`` uint32 halves ``(hi, lo)`` of the flat indices ``start + j`` of ``d``
    elements after each row start ``(start_hi, start_lo)`` ``(r,)``."""
    col = jnp.arange(d, dtype=jnp.uint32)[None, :]
    lo = start_lo[:, None] + col
    hi = start_hi[:, None] + (lo < col).astype(jnp.uint32)  # carry out of the low half
    return hi, lo


def _row_starts(rows: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """The 32-bit halves ``(hi, lo)`` of the flat index ``row * d`` of each row's first
    element (exact in int64 up to 2**63)."""
    start = rows.astype(np.int64) * np.int64(d)
    return (start >> 32).astype(np.uint32), (start & 0xFFFFFFFF).astype(np.uint32)


@jax.jit
def _add_noise(x: jax.Array, key: jax.Array, std: jax.Array) -> jax.Array:
    return x + std.astype(x.dtype) * jax.random.normal(key, x.shape, x.dtype)


@functools.partial(jax.jit, static_argnames=("max_shift", "mirror"))
def _shift_images(x: jax.Array, key: jax.Array, max_shift: int, mirror: bool) -> jax.Array:
    n, h, w, ch = x.shape
    k_shift, k_flip = jax.random.split(key)
    offsets = jax.random.randint(k_shift, (n, 2), -max_shift, max_shift + 1)
    padded = jnp.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))

    def one(img, off):  # output pixel (i, j) = input pixel (i - dy, j - dx), zero outside
        start = (max_shift - off[0], max_shift - off[1], 0)
        return jax.lax.dynamic_slice(img, start, (h, w, ch))

    out = jax.vmap(one)(padded, offsets)
    if mirror:
        flip = jax.random.bernoulli(k_flip, 0.5, (n, 1, 1, 1))
        out = jnp.where(flip, out[:, :, ::-1], out)
    return out


def resolve_kind(kind: str, x: ArrayLike) -> str:
    """The perturbation ``kind`` (one of :data:`KINDS`) with ``"auto"`` resolved for ``x``.

    Args:
      kind: A name in :data:`KINDS`.
      x: Inputs, shape ``(n, ...)``.

    Returns:
      ``"flip"``, ``"gaussian"``, ``"shift"`` or ``"image"``.

    Raises:
      ValueError: If ``kind`` is unknown, or an image kind gets inputs that are not 4-D.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown perturbation kind {kind!r}; choose one of {', '.join(KINDS)}")
    x = np.asarray(x)
    if kind == "auto":
        if x.ndim == 4:
            return "image"
        return "flip" if bool(np.all((x == 0) | (x == 1))) else "gaussian"
    if kind in ("shift", "image") and x.ndim != 4:
        raise ValueError(f"{kind!r} perturbs images shaped (n, h, w, ch), got shape {x.shape}")
    return kind


def _check_strength(kind: str, strength: float | None) -> float | int:
    if strength is None:
        return DEFAULT_STRENGTH[kind]
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real):
        raise ValueError(f"strength must be a number, got {strength!r}")
    if kind == "flip" and not 0 <= strength <= 1:
        raise ValueError(f"the bit-flip probability must be in [0, 1], got {strength!r}")
    if kind == "gaussian" and not (math.isfinite(strength) and strength >= 0):
        raise ValueError(f"the noise std must be finite and >= 0, got {strength!r}")
    if kind in ("shift", "image") and (
        not math.isfinite(strength) or int(strength) != strength or strength < 0
    ):
        raise ValueError(
            f"the maximum shift must be a whole number of pixels >= 0, got {strength!r}"
        )
    return int(strength) if kind in ("shift", "image") else float(strength)


def _copies(
    x: np.ndarray,
    key: jax.Array,
    n_queries: int,
    kind: str,
    strength: float | int,
    rows: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """Yields the ``n_queries`` query copies of ``x`` (of its ``rows`` only, if given) on
    the host: ``x`` itself, then perturbations drawn for all of ``x`` with
    ``fold_in(key, i)`` for copy ``i``, so a larger ``n_queries`` only appends copies.
    Bit flips are drawn for the ``rows`` alone (:func:`_flip_rows`), the same bits; the
    other kinds are drawn for all of ``x`` and then restricted to ``rows``."""
    x = np.asarray(x, np.float32)
    part = x if rows is None else x[rows]
    yield part
    # drawn on the last device, one copy ahead: the pool and the target answer on the
    # first device (and the pool on all), so drawing overlaps with answering
    device = jax.local_devices()[-1]
    written_out = kind == "flip" and _partitionable_threefry(key)
    if written_out:
        flat = part.reshape(part.shape[0], -1)
        starts = _row_starts(np.arange(x.shape[0]) if rows is None else rows, flat.shape[1])
        xd, hi, lo = jax.device_put((flat, *starts), device)
    else:
        xd = jax.device_put(x, device)

    def draw(i: int) -> jax.Array:
        k = jax.device_put(jax.random.fold_in(key, i), device)
        if written_out:
            return _flip_rows(xd, k, jnp.float32(strength), hi, lo)
        if kind == "flip":  # another random number generator: drawn by jax.random
            out = _flip_bits(xd, k, jnp.float32(strength))
        elif kind == "gaussian":
            out = _add_noise(xd, k, jnp.float32(strength))
        else:
            max_shift = min(int(strength), xd.shape[1], xd.shape[2])
            out = _shift_images(xd, k, max_shift, kind == "image")
        return out if rows is None else out[jax.device_put(rows, device)]

    pending = draw(1) if n_queries > 1 else None
    for i in range(1, n_queries):
        current, pending = pending, draw(i + 1) if i + 1 < n_queries else None
        yield np.asarray(current).reshape(part.shape)


def _check_queries(n_queries: int) -> int:
    if isinstance(n_queries, bool) or not isinstance(n_queries, numbers.Integral) or n_queries < 1:
        raise ValueError(f"n_queries must be an integer >= 1, got {n_queries!r}")
    return int(n_queries)


def perturb_inputs(
    x: ArrayLike,
    key: jax.Array,
    *,
    n_queries: int,
    kind: str = "auto",
    strength: float | None = None,
) -> jax.Array:
    """``n_queries`` query copies of the inputs: the original first, then random perturbations.

    See :data:`KINDS` for the perturbations. Copy ``i >= 1`` is drawn from
    ``jax.random.fold_in(key, i)`` independently for every example (and feature or image), so
    the same key reproduces the same copies and a larger ``n_queries`` extends a smaller one.

    Args:
      x: Inputs, shape ``(n, d)`` for tables or ``(n, h, w, ch)`` for images.
      key: A JAX PRNG key.
      n_queries: Number of copies ``q >= 1``, including the unperturbed original.
      kind: One of :data:`KINDS`.
      strength: Flip probability (``"flip"``), noise std in feature units (``"gaussian"``)
        or maximum shift in pixels (``"shift"``, ``"image"``); ``None`` takes
        :data:`DEFAULT_STRENGTH`.

    Returns:
      Float32 array of shape ``(q, n, ...)`` with ``out[0] == x``.

    Raises:
      ValueError: On an unknown kind, an invalid strength or ``n_queries < 1``.
    """
    n_queries = _check_queries(n_queries)
    x = np.asarray(x)
    kind = resolve_kind(kind, x)
    strength = _check_strength(kind, strength)
    return jnp.stack(list(_copies(x, key, n_queries, kind, strength)))


# --------------------------------------------------------------------------- scores


def _labels_of(out: ArrayLike, rows: int, who: str) -> np.ndarray:
    """Predicted labels ``(..., rows)`` from outputs ``(..., rows, c)`` or integer labels."""
    out = np.asarray(out)
    if np.issubdtype(out.dtype, np.integer) and out.ndim >= 1 and out.shape[-1] == rows:
        return out
    if np.issubdtype(out.dtype, np.floating) and out.ndim >= 2 and out.shape[-2] == rows:
        return out.argmax(axis=-1)
    raise ValueError(
        f"{who} must return outputs shaped (..., {rows}, c) or integer labels shaped "
        f"(..., {rows}), got {out.shape} {out.dtype}"
    )


def query_correctness(
    predict: Callable[[np.ndarray], ArrayLike],
    x: ArrayLike,
    y: ArrayLike,
    *,
    rows: ArrayLike | None = None,
    n_queries: int = 16,
    kind: str = "auto",
    strength: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Queries a model on perturbed copies of examples and records which answers are right.

    The copies are those of :func:`perturb_inputs` with ``jax.random.key(seed)``, drawn for
    *all* of ``x`` and then restricted to ``rows``, so an example's copies do not depend on
    which rows are queried: the target (on its candidates) and the shadow pool (on the
    calibration examples) answer the same copies (:func:`query_correctness_many` asks both
    while drawing the copies once).

    Args:
      predict: ``x (r, ...) -> (r, c)`` outputs (logits or probabilities; only the argmax
        is used) or ``(r,)`` integer labels; or, for a pool of ``k`` models,
        ``(k, r, c)`` / ``(k, r)``, e.g. ``lambda x: engine.predict(pool, x)``.
      x: all examples, ``(n, ...)``.
      y: their integer labels, ``(n,)``.
      rows: ``(r,)`` indices into ``x`` (or an ``(n,)`` bool mask) to query; default all.
      n_queries: queries per example ``q >= 1``, the original included.
      kind: one of :data:`KINDS`.
      strength: perturbation strength (see :func:`perturb_inputs`); ``None`` for the default.
      seed: seed of the perturbations.

    Returns:
      ``(..., r, q)`` bool: whether each copy was classified correctly (copy 0 = the
      original), ``(r, q)`` for one model or ``(k, r, q)`` for a pool.

    Raises:
      ValueError: on inconsistent shapes, invalid parameters, or a ``predict`` that returns
        neither outputs nor labels of the expected shape.
    """
    kw = dict(n_queries=n_queries, kind=kind, strength=strength, seed=seed)
    return query_correctness_many([predict], x, y, rows=[rows], **kw)[0]


def _row_indices(rows: ArrayLike | None, n: int) -> np.ndarray:
    """``(r,)`` int64 indices from ``rows`` (indices, an ``(n,)`` bool mask, or ``None``
    for all), checked to lie in ``[-n, n)``."""
    if rows is None:
        return np.arange(n)
    idx = np.asarray(rows)
    idx = np.flatnonzero(np.broadcast_to(idx, (n,))) if idx.dtype == bool else idx
    idx = idx.astype(np.int64).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise ValueError(f"row indices must be in [0, {n}), got {idx.min()}..{idx.max()}")
    return idx


def query_correctness_many(
    predicts: Sequence[Callable[[np.ndarray], ArrayLike]],
    x: ArrayLike,
    y: ArrayLike,
    *,
    rows: Sequence[ArrayLike | None],
    n_queries: int = 16,
    kind: str = "auto",
    strength: float | None = None,
    seed: int = 0,
) -> list[np.ndarray]:
    """:func:`query_correctness` of several models, each on its own rows, with every
    perturbed copy of ``x`` drawn once for all of them (drawing is a large share of the
    attack's time: one random number per feature of every record and copy).

    ``query_correctness_many(predicts, x, y, rows=rows, ...)[i]`` equals
    ``query_correctness(predicts[i], x, y, rows=rows[i], ...)``: the target on its
    candidates and the shadow pool on its calibration records answer the same copies.

    Args:
      predicts: ``p`` model functions, as ``predict`` of :func:`query_correctness`.
      x: all examples, ``(n, ...)``.
      y: their integer labels, ``(n,)``.
      rows: ``p`` row selections (indices, ``(n,)`` bool masks, or ``None`` for all).
      n_queries, kind, strength, seed: as :func:`query_correctness`.

    Returns:
      ``p`` bool arrays ``(..., r_i, q)``, as :func:`query_correctness` returns them.

    Raises:
      ValueError: as :func:`query_correctness`, or ``rows`` not one per model.
    """
    n_queries = _check_queries(n_queries)
    x, y = np.asarray(x), np.asarray(y)
    n = x.shape[0]
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold {n} integer labels, got {y.shape} {y.dtype}")
    if len(rows) != len(predicts):
        raise ValueError(f"give one row selection per model: {len(rows)} for {len(predicts)}")
    idxs = [_row_indices(r, n) for r in rows]
    kind = resolve_kind(kind, x)
    strength = _check_strength(kind, strength)
    union = np.unique(np.concatenate([i % n for i in idxs])) if n else np.arange(0)
    everything = union.size == n  # then the copies are whole and rows index them as given
    picks = [i if everything else np.searchsorted(union, i % n) for i in idxs]
    whole = [p.size == union.size and np.array_equal(p, np.arange(p.size)) for p in picks]
    answers: list[list[np.ndarray]] = [[] for _ in predicts]
    copies = _copies(
        x, jax.random.key(seed), n_queries, kind, strength, None if everything else union
    )
    for xq in copies:
        for out, predict, idx, pick, all_rows in zip(
            answers, predicts, idxs, picks, whole, strict=True
        ):
            answer = _labels_of(predict(xq if all_rows else xq[pick]), idx.size, "predict")
            out.append(answer == y[idx])
    return [np.stack(out, axis=-1) for out in answers]


def label_only(
    target_correct: ArrayLike,
    shadow_correct: ArrayLike | None = None,
    keep: ArrayLike | None = None,
) -> jax.Array:
    """The label-only attack of Choquette-Choo et al. 2021: fraction of correct answers.

    A candidate's score is the fraction of its ``q`` perturbed queries
    (:func:`query_correctness`) that the target classifies correctly. The shadow
    statistics do not change the scores; calibrate the threshold with
    ``attacks.calibrate_threshold(attacks.label_only(shadow_correct), keep)``. Traces
    under ``jax.jit`` and ``jax.vmap``.

    Args:
      target_correct: ``(m, q)`` bool or 0/1 (or ``(..., m, q)``): whether each query of
        each candidate was answered correctly.
      shadow_correct: optional ``(k, m, q)`` the same for the shadow models; only checked.
      keep: optional ``(k, m)`` bool or 0/1 shadow membership; only checked.

    Returns:
      ``(m,)`` float32 scores in ``{0, 1/q, ..., 1}``, higher = more likely a member.

    Raises:
      AttackInputError: on a ``target_correct`` without queries, mismatched shapes, or
        answers or ``keep`` that are not bool or 0/1.
    """
    shape = np.shape(target_correct)
    if len(shape) < 1 or shape[-1] == 0:
        raise checks.AttackInputError(f"need answers shaped (m, q), q >= 1, got {shape}")
    correct = checks.as_keep("target_correct", target_correct)
    if shadow_correct is not None or keep is not None:
        if shadow_correct is None or keep is None:
            raise checks.AttackInputError("give both shadow_correct and keep, or neither")
        k = np.shape(shadow_correct)[0] if np.ndim(shadow_correct) else 0
        checks.as_keep("shadow_correct", shadow_correct, (k, *shape))
        checks.as_keep("keep", keep, (k, *shape[:-1]))
    return jnp.mean(correct, axis=-1, dtype=jnp.float32)


# --------------------------------------------------------------------------- in the audit


CALIBRATION_RECORDS = 8192
"""At most this many pool records calibrate the audit's label-only threshold (a seeded
random subset of larger pools; smaller pools, the bundled 5,010 records among them, use
every record). ``tau`` is one scalar among the ``q + 1`` score values, chosen on ``k``
shadows times these records; querying every record of a large pool ``q`` times through
every shadow model would cost more than the rest of the audit (16 shadows x 50,000
records x 16 queries of the default MLP: ~1.5 TFLOP)."""


CALIBRATION_MODELS = 16
"""At most this many shadow models (the pool's first; shadows are exchangeable) calibrate
the audit's label-only threshold, on :func:`calibration_records`. 16 models x 5,010
records are 80,160 labelled pairs for one scalar among ``q + 1`` values; the default
audit's threshold is the same from 4, 8, 16, 32 or all 64 shadows (0.9375), and the
queries through all 64 cost four times as much (64 x 5,010 x 16 forward passes, ~0.6
TFLOP)."""


def calibration_records(pool: np.ndarray, seed: int) -> np.ndarray:
    """``(r,)`` sorted indices of the pool records (``pool`` ``(n,)`` bool) that calibrate
    the label-only threshold: all of them, or :data:`CALIBRATION_RECORDS` drawn without
    replacement with ``numpy.random.default_rng([seed, 29])``."""
    cols = np.flatnonzero(pool)
    if cols.size <= CALIBRATION_RECORDS:
        return cols
    rng = np.random.default_rng([seed, 29])
    return np.sort(rng.choice(cols, CALIBRATION_RECORDS, replace=False))


@dataclasses.dataclass(frozen=True)
class LabelOnlyOptions(Section):
    """The audit's settings of the label-only attack (:attr:`jaxmia.attacks.Attack.options`;
    each a flat audit setting, ``--label-queries``)."""

    label_queries: int = opt(16, "perturbed queries of the label-only attack", b=POS)


def _answers(predicts, inputs: registry.AttackInputs, rows) -> list[np.ndarray]:
    """:func:`query_correctness_many` with the audit's label-only settings."""
    settings = inputs.settings
    return query_correctness_many(
        predicts,
        inputs.queries.x,
        inputs.labels,
        rows=rows,
        n_queries=settings.label_queries,
        seed=settings.seed,
    )


def _score(inputs: registry.AttackInputs) -> registry.Scores:
    """The audit's label-only scores of the candidates, and the threshold calibrated on
    the first :data:`CALIBRATION_MODELS` shadows' answers on :func:`calibration_records`;
    the target and the shadows answer the same copies, drawn once (in leave-one-out the
    cache holds this target's answers, cut from :func:`_pool_wide`'s)."""
    shadows = inputs.shadows
    cols = calibration_records(shadows.pool, inputs.settings.seed)
    k = shadows.keep.shape[0]
    models = min(k, CALIBRATION_MODELS)
    if cols.size < shadows.pool.sum() or models < k:
        inputs.note(
            f"label-only: threshold calibrated on {models} of the {k} "
            f"shadow models and {cols.size} of the {int(shadows.pool.sum())} pool records"
            + (" (a seeded random subset)" if cols.size < shadows.pool.sum() else "")
        )
    cache = inputs.cache
    if ("label_only", "target") in cache:
        target, shadow = cache["label_only", "target"], cache["label_only", "shadow"][:models]
    else:
        shadow_query = functools.partial(inputs.queries.shadows, models=models)
        target_query = inputs.queries.target
        target, shadow = _answers([target_query, shadow_query], inputs, [inputs.candidates, cols])
    tau = threshold.calibrate_threshold(
        np.asarray(label_only(shadow), np.float64), shadows.keep[:models, cols]
    )
    return registry.Scores(np.asarray(label_only(target), dtype=np.float64), tau)


def _pool_wide(inputs: registry.AttackInputs):
    """Leave-one-out: whether each model of the pool answers each perturbed copy
    correctly, on the candidates ``(k, m, q)`` and on the calibration records
    ``(k, r, q)``, for every target at once (each would draw the same copies again);
    target ``t`` reads its row and the others'."""
    cols = calibration_records(inputs.shadows.pool, inputs.settings.seed)
    pool_labels = inputs.queries.shadows
    on_candidates, on_cols = _answers([pool_labels] * 2, inputs, [inputs.candidates, cols])

    def cut(t: int) -> dict:
        return {
            ("label_only", "target"): on_candidates[t],
            ("label_only", "shadow"): np.delete(on_cols, t, axis=0),
        }

    return cut


ATTACK = registry.Attack(
    name="label_only",
    score=_score,
    signals=NEEDS,
    reads=frozenset({"queries"}),
    calibrated=True,
    background=True,
    pool_wide=_pool_wide,
    statistic="correct answers to perturbed queries",
    paper="Choquette-Choo et al. 2021",
    core=label_only,
    core_input="answers",
    options=LabelOnlyOptions,
)
"""The label-only attack as the audit runs it (:mod:`jaxmia.attacks.registry`)."""
