"""Poisson-sampled DP-SGD batches and the white-box Dirac canary, for the kernel.

**Poisson sampling** (Abadi et al. 2016, the sampling the DP-SGD accountants analyse;
Chua et al. 2024, "How Private are DP-SGD Implementations?", on why shuffled batches are
not covered): at every step each member of a model enters the batch independently with
probability ``q = batch_size / members`` (its own member count; ``q = 1`` when it has
fewer members than ``batch_size``). The draws come from the model's key,
``fold_in(fold_in(fold_in(model_key, SAMPLING_STREAM), epoch), step)``, one uniform per
position of the ``n`` records, so a model trained inside a pool equals the model trained
alone. The sampled members are gathered into a fixed batch of :func:`max_batch_size`
slots (fixed shapes under ``jit``/``vmap``), padding weighted 0. A batch larger than that
(probability below :data:`OVERFLOW_TAIL` per step, by the Chernoff bound) keeps its
first members in index order; the dropped members are counted (``Pool.dp_overflow``). A
model takes ``ceil(members / batch_size)`` steps per epoch, as with shuffling, and its
noised sum of clipped gradients is divided by the expected batch size
``q * members = batch_size`` (not by the drawn size): the standard unbiased
normalisation, under which a sampled example's weight does not depend on the others.

**Dirac canary** (Jagielski et al. 2020, "Auditing Differentially Private Machine
Learning"; Nasr et al. 2023, "Tight Auditing of Differentially Private Machine
Learning"): a crafted clipped gradient, 0 everywhere except ``l2_clip`` at one coordinate
of one parameter leaf, added to the summed clipped gradients (before the noise) of the
models that hold it, at each step where it is sampled: independently with probability
``q`` under Poisson sampling
(key ``fold_in(fold_in(fold_in(model_key, CANARY_STREAM), epoch), step)``), and under
shuffling once per epoch at a uniformly random step
(key ``fold_in(fold_in(model_key, CANARY_STREAM), epoch)``), as one more record would be.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxmia._src.engine.dpsgd import NOISE_STREAM, private_grads
from jaxmia._src.engine.kernel import KernelSpec, batch_loss, epoch_one, member_order
from jaxmia._src.engine.store.checkpointing import leaf_name

__all__ = [
    "CANARY_STREAM",
    "COUNTS",
    "OVERFLOW_TAIL",
    "SAMPLING_STREAM",
    "DPPlan",
    "DiracCanary",
    "canary_gradient",
    "check_canary",
    "check_canary_args",
    "chernoff_tail",
    "counted_epoch",
    "dp_epoch_one",
    "max_batch_size",
    "param_names",
    "plain_counts",
    "poisson_batch",
]

SAMPLING_STREAM = 0x5A3B1E
"""``fold_in`` constant that derives a model's Poisson batch key from its model key."""
CANARY_STREAM = 0xCA4A7
"""``fold_in`` constant that derives a model's canary-inclusion key from its model key."""
OVERFLOW_TAIL = 1e-9
"""Bound on the probability, per model and step, that a Poisson batch overflows."""
COUNTS = ("steps", "sampled", "overflow", "canary")
"""What the DP epoch counts per model (``Pool.dp_counts``): optimizer steps taken,
members sampled into batches, members dropped from overflowing batches, and steps that
included the canary."""


@dataclasses.dataclass(frozen=True)
class DiracCanary:
    """A white-box Dirac gradient canary (Nasr et al. 2023; Jagielski et al. 2020).

    Attributes:
      leaf: the parameter leaf, as its ``"/"``-joined ``nnx.State`` path, e.g.
        ``"hidden/0/kernel"`` for :func:`jaxmia.models.mlp`'s first layer
        (:func:`param_names` lists a factory's).
      index: the coordinate in that leaf, flat (row-major): ``kernel[i, j]`` of a
        ``(a, b)`` kernel is ``i * b + j``.
    """

    leaf: str
    index: int

    def __post_init__(self):
        if not isinstance(self.leaf, str) or not self.leaf:
            raise ValueError(f"DiracCanary.leaf must be a parameter's path, got {self.leaf!r}")
        if isinstance(self.index, bool) or not isinstance(self.index, int | np.integer):
            raise ValueError(f"DiracCanary.index must be an integer, got {self.index!r}")
        object.__setattr__(self, "index", int(self.index))  # JSON-able in a pool's spec


@dataclasses.dataclass(frozen=True)
class DPPlan:
    """The static settings of a DP epoch beyond :class:`~jaxmia._src.engine.kernel.KernelSpec`.

    Attributes:
      max_batch: slots of a Poisson batch (:func:`max_batch_size`); unused for shuffling.
      canary: the Dirac canary, or None.
    """

    max_batch: int
    canary: DiracCanary | None = None


def chernoff_tail(mu: float, a: float) -> float:
    """Chernoff bound on ``P(X >= a)`` for ``X`` a sum of independent Bernoullis of mean
    ``mu`` and ``a > mu``: ``exp(a - mu) * (mu / a) ** a`` (Mitzenmacher and Upfal,
    Theorem 4.4, with ``a = (1 + d) mu``). It holds for every number of members, so it
    bounds ``Binomial(m, batch_size / m)`` whatever ``m``."""
    if a <= mu:
        return 1.0
    return math.exp(a - mu + a * math.log(mu / a))


def max_batch_size(batch_size: int, members: int, tail: float = OVERFLOW_TAIL) -> int:
    """Slots of a Poisson batch: the least ``B >= mu`` with
    ``chernoff_tail(mu, B + 1) < tail``, ``mu = min(batch_size, members)`` the expected
    batch size, and at most ``members`` (the largest model's member count). E.g. 207 for
    batch size 128."""
    mu = min(batch_size, members)
    if mu <= 0:
        return 1
    b = math.ceil(mu)
    while b < members and chernoff_tail(mu, b + 1) >= tail:
        b += 1
    return max(1, min(b, members))


def poisson_batch(key: jax.Array, keep_row: jax.Array, q: jax.Array, max_batch: int):
    """One Poisson-sampled batch of a model's members.

    Args:
      key: this step's sampling key.
      keep_row: ``(n,)`` bool, the model's members.
      q: float scalar, the inclusion probability.
      max_batch: slots of the batch.

    Returns:
      ``(idx, weight, drawn)``: ``(max_batch,)`` int32 indices of the sampled members
      (in index order, then 0 for padding), ``(max_batch,)`` float32 weights (1 for the
      sampled members that fit, 0 for padding), and the int32 number sampled (more than
      ``max_batch`` when the batch overflowed).
    """
    include = keep_row & (jax.random.uniform(key, keep_row.shape) < q)
    drawn = jnp.sum(include, dtype=jnp.int32)
    idx = jnp.nonzero(include, size=max_batch, fill_value=0)[0].astype(jnp.int32)
    weight = (jnp.arange(max_batch) < drawn).astype(jnp.float32)
    return idx, weight, drawn


def _name(path) -> str:
    name = leaf_name(path)
    return name[: -len("/value")] if name.endswith("/value") else name


def param_names(params: Any) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of a parameter state's leaves, named as :class:`DiracCanary`
    reads them (``"hidden/0/kernel"``)."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {_name(path): tuple(leaf.shape) for path, leaf in flat}


def check_canary(canary: DiracCanary, params: Any) -> None:
    """Refuses a canary whose leaf is not a parameter of ``params`` (one model's state,
    or its shapes) or whose index is outside that leaf.

    Raises:
      ValueError: one line naming the leaf, the index and what exists.
    """
    names = param_names(params)
    if canary.leaf not in names:
        raise ValueError(
            f"DiracCanary leaf {canary.leaf!r} is not a parameter of the model; its "
            f"parameters are {', '.join(sorted(names))}"
        )
    size = math.prod(names[canary.leaf])
    if not 0 <= canary.index < size:
        raise ValueError(
            f"DiracCanary index {canary.index} is outside {canary.leaf!r}, which has {size} "
            f"coordinates (shape {names[canary.leaf]})"
        )


def check_canary_args(
    canary: DiracCanary | None, canary_keep: Any, dp: Any, k: int, model: Any
) -> np.ndarray:
    """The ``(k,)`` bool canary flags of a :func:`jaxmia.engine.train` call (all False
    without a canary), after checking the canary against the model (an ``nnx.Module``,
    abstract or not) and the DP-SGD settings.

    Raises:
      ValueError: a canary without DP-SGD, or not a :class:`DiracCanary`, flags without a
        canary or of another shape than ``(k,)`` or not bool, or a bad leaf or index.
    """
    if canary is None:
        if canary_keep is not None:
            raise ValueError("canary_keep was given without a canary")
        return np.zeros(k, bool)
    if not isinstance(canary, DiracCanary):
        raise ValueError(f"canary must be an engine.DiracCanary, got {type(canary).__name__}")
    if dp is None:
        raise ValueError(
            "a DiracCanary needs DP-SGD (dp=engine.DPConfig(...)): it is a clipped "
            "gradient added to the summed clipped gradients"
        )
    flags = np.asarray(canary_keep) if canary_keep is not None else None
    if flags is None or flags.shape != (k,) or flags.dtype != bool:
        shown = None if flags is None else f"{flags.dtype} {flags.shape}"
        raise ValueError(f"canary_keep must be a ({k},) bool array, one flag a model; got {shown}")
    check_canary(canary, nnx.state(model, nnx.Param))
    return flags


def canary_gradient(canary: DiracCanary, like: Any, value: jax.Array) -> Any:
    """A pytree like ``like`` (the parameters), 0 everywhere except ``value`` at the
    canary's coordinate (the Dirac gradient of Nasr et al. 2023 has ``value = l2_clip``)."""

    def one(path, leaf):
        if _name(path) != canary.leaf:
            return jnp.zeros_like(leaf)
        flat = jnp.zeros((leaf.size,), leaf.dtype).at[canary.index].set(value)
        return flat.reshape(leaf.shape)

    return jax.tree_util.tree_map_with_path(one, like)


def _dp_step(spec: KernelSpec, plan: DPPlan, x, y, draw, carry, s):
    """One DP-SGD step of :func:`dp_epoch_one`; ``draw(s)`` gives the batch's indices and
    weights, the normaliser, the canary's inclusion (0. or 1.), the step's noise key,
    whether the step is taken, and the members sampled and dropped."""
    params, rest, opt_state = carry
    idx, weight, denominator, with_canary, key, active, sampled, dropped = draw(s)
    extra = None
    if plan.canary is not None:
        extra = canary_gradient(plan.canary, params, with_canary * spec.dp.l2_clip)
    loss_of = functools.partial(batch_loss, spec.graphdef, spec.loss_fn)
    loss, grads = private_grads(
        loss_of,
        spec.dp,
        key,
        params,
        rest,
        x[idx],
        y[idx],
        weight,
        extra=extra,
        denominator=denominator,
    )
    updates, new_opt = spec.tx.update(grads, opt_state, params)
    new = (optax.apply_updates(params, updates), rest, new_opt)
    new = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, carry)
    counts = jnp.stack([jnp.int32(1), sampled, dropped, with_canary.astype(jnp.int32)])
    return new, (jnp.where(active, loss, 0.0), active * counts)


def _drawer(spec: KernelSpec, plan: DPPlan, model_key, epoch, keep_row, canary_flag):
    """``draw(s)`` of :func:`_dp_step` for one model and epoch (module docstring)."""
    n, b = keep_row.shape[0], spec.batch_size
    count = jnp.sum(keep_row, dtype=jnp.int32)
    n_steps = (count + b - 1) // b
    noise_key = jax.random.fold_in(jax.random.fold_in(model_key, NOISE_STREAM), epoch)
    canary_key = jax.random.fold_in(jax.random.fold_in(model_key, CANARY_STREAM), epoch)
    if spec.dp.sampling == "poisson":
        q = jnp.minimum(1.0, b / jnp.maximum(count, 1))
        batch_key = jax.random.fold_in(jax.random.fold_in(model_key, SAMPLING_STREAM), epoch)
        denominator = jnp.minimum(count, b).astype(jnp.float32)  # q * members

        def batch(s):
            idx, weight, drawn = poisson_batch(
                jax.random.fold_in(batch_key, s), keep_row, q, plan.max_batch
            )
            dropped = jnp.maximum(drawn - plan.max_batch, 0)
            with_canary = jax.random.uniform(jax.random.fold_in(canary_key, s)) < q
            return idx, weight, drawn - dropped, dropped, with_canary

    else:  # the batches of kernel.epoch_one
        data_key = jax.random.split(model_key, 3)[2]
        order = member_order(jax.random.fold_in(data_key, epoch), keep_row)
        order = jnp.concatenate([order, jnp.zeros((max(spec.steps * b - n, 0),), order.dtype)])
        canary_step = jax.random.randint(canary_key, (), 0, jnp.maximum(n_steps, 1))
        denominator = jnp.float32(b)

        def batch(s):
            idx = jax.lax.dynamic_slice(order, (s * b,), (b,))
            weight = (s * b + jnp.arange(b) < count).astype(jnp.float32)
            return idx, weight, jnp.sum(weight, dtype=jnp.int32), jnp.int32(0), s == canary_step

    def draw(s):
        idx, weight, sampled, dropped, with_canary = batch(s)
        with_canary = (canary_flag & with_canary).astype(jnp.float32)
        key = jax.random.fold_in(noise_key, s)
        return idx, weight, denominator, with_canary, key, s < n_steps, sampled, dropped

    return draw


def dp_epoch_one(
    spec: KernelSpec,
    plan: DPPlan,
    key_data,
    epoch,
    keep_row,
    canary_flag,
    params,
    rest,
    opt_state,
    x,
    y,
):
    """One DP-SGD epoch of one model, Poisson-sampled or shuffled, with the Dirac canary
    (pure; vmapped by the engine; see the module docstring for the draws).

    Args:
      spec: the static settings; ``spec.dp`` is set (its ``sampling`` decides the batches).
      plan: the Poisson batch's slots and the canary (:class:`DPPlan`).
      key_data: ``(2,)`` uint32 key data of the model's key.
      epoch: int32 scalar, the epoch's index.
      keep_row: ``(n,)`` bool, the model's members.
      canary_flag: bool scalar, whether this model holds the canary (ignored without one).
      params, rest, opt_state: the model's state.
      x: ``(n, *input_shape)`` float32 inputs; y: ``(n,)`` int32 labels.

    Returns:
      ``(params, rest, opt_state, mean_loss, counts)``: the state after the epoch, the
      mean over its steps of each batch's loss, and ``(4,)`` int32 :data:`COUNTS`.
    """
    model_key = jax.random.wrap_key_data(key_data)
    draw = _drawer(spec, plan, model_key, epoch, keep_row, canary_flag)
    step = functools.partial(_dp_step, spec, plan, x, y, draw)
    carry, (losses, counts) = jax.lax.scan(step, (params, rest, opt_state), jnp.arange(spec.steps))
    counts = jnp.sum(counts, axis=0)
    mean_loss = jnp.sum(losses) / jnp.maximum(counts[0], 1)
    return (*carry, mean_loss, counts)


def counted_epoch(
    spec: KernelSpec, key_data, epoch, keep_row, canary_flag, params, rest, opt_state, x, y
):
    """:func:`jaxmia._src.engine.kernel.epoch_one` (plain training, or DP-SGD over shuffled
    batches without a canary) with the signature and :data:`COUNTS` of
    :func:`dp_epoch_one`: ``ceil(members / batch_size)`` steps, every member once."""
    out = epoch_one(spec, key_data, epoch, keep_row, params, rest, opt_state, x, y)
    return (*out, plain_counts(keep_row, spec.batch_size))


def plain_counts(keep_row: jax.Array, batch_size: int) -> jax.Array:
    """The :data:`COUNTS` of an epoch that visits every member once in
    ``ceil(members / batch_size)`` steps, without overflow or canary: int32 ``(4,)``."""
    count = jnp.sum(keep_row, dtype=jnp.int32)
    steps = (count + batch_size - 1) // batch_size
    return jnp.stack([steps, count, jnp.int32(0), jnp.int32(0)])
