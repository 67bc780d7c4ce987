"""Adversarial regularisation: a classifier trained against its own membership inference.

Nasr, Shokri and Houmansadr, "Machine Learning with Membership Privacy using Adversarial
Regularization", CCS 2018, Algorithm 1. Training is the min-max game

    min_f max_h  L_D(f) + lambda * G(f, h),
    G(f, h) = mean_{(x, y) in D} log h(f(x), y) + mean_{(x', y') in D'} log(1 - h(f(x'), y')),

over the classifier ``f`` and an inference model ``h`` that tells the classifier's members
``D`` from reference records ``D'`` (held out from ``f``'s training). Each classifier step
is preceded by ``k`` steps of ``h`` ascending ``G`` (on a batch of members and an
equal-size batch of reference records, both drawn afresh), then one step of ``f`` on its
member batch with loss ``CE + lambda * mean log h(f(x), y)`` (``h`` fixed).

Here ``h`` is a small MLP on the concatenation of the classifier's softmax output
``(c,)`` and the one-hot label ``(c,)`` (the paper's attack model takes the same two
inputs through separate sub-networks before joining them); its output is the logit of
"member", so ``log h = log_sigmoid(z)`` and ``log(1 - h) = log_sigmoid(-z)``. ``h`` sees
the classifier in evaluation mode (as an attacker does) while ``f`` trains in train mode.

Randomness: model ``i`` with key ``key_i`` keeps the kernel's streams (init, dropout,
member order: :mod:`jaxmia._src.engine.kernel`), so its classifier batches are the plain
kernel's. ``fold_in(key_i, ADV_STREAM)`` is split into ``h``'s init key and its data key;
epoch ``e`` orders the members by ``member_order(fold_in(fold_in(data_key, e), 0), members)``
and the reference records by ``member_order(fold_in(fold_in(data_key, e), 1), references)``
(:func:`jaxmia._src.engine.kernel.member_order`: two independent permutations), and ``h`` step
``j`` of classifier step ``s`` reads positions ``(s * k + j) * batch_size + [0, batch_size)``
of each, modulo its number of records (wrapping around: consecutive steps read consecutive,
not overlapping, stretches). Every model of a pool has its own ``h`` and optimizer state; a
model's steps beyond its own members (in a pool of unequal models) leave ``f`` and ``h``
unchanged, so a pooled model equals the same model trained alone.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxmia._src.engine.kernel import KernelSpec, as_mask, graphdefs, init_one, member_order
from jaxmia._src.engine.sampling import plain_counts
from jaxmia.models import ModelFactory
from jaxmia.settings import POS, POSITIVE_REAL, Rule, Section, opt

__all__ = [
    "ADV_REG_ALONE",
    "ADV_STREAM",
    "AdvReg",
    "AdvSpec",
    "InferenceModel",
    "adv_epoch_one",
    "adv_init_one",
    "check_reference",
    "classifier_loss",
    "counted_epoch",
    "h_graphdef",
    "inference_gain",
    "programs",
    "reference_digest",
    "spec_entry",
]

ADV_STREAM = 0xAD7E6
"""``fold_in`` constant that derives a model's inference-model stream from its key."""


ADV_REG_ALONE = Rule(
    "adv_reg", ("label_smoothing", "mixup", "relaxloss", "adv_eps"), "adversarial regularisation"
)
"""Adversarial regularisation trains the classifier on its own loss
(:func:`classifier_loss`): not with a training objective
(:data:`jaxmia._src.engine.objectives.PARTS`), which it would ignore."""


@dataclasses.dataclass(frozen=True)
class AdvReg(Section):
    """Settings of adversarial regularisation (Nasr et al. 2018, Algorithm 1); each
    field's ``metadata["help"]`` says what it does, and a bad value raises a one-line
    :class:`jaxmia.settings.ConfigError` that names the field.

    ``strength`` is of order 1 in the paper; on Location-30, lambda 3 with k = 1 leaves
    0.35 test accuracy. ``steps`` is 3 by default: on Location-30 at lambda 1, k = 3
    costs 0.046 test accuracy and lowers LiRA-online AUC by 0.118, where k = 1 costs
    0.068 for 0.110, and trains about 1.5x longer.
    """

    strength: float = opt(
        1.0,
        "lambda, the weight of the inference model's gain in the classifier's loss",
        b=POSITIVE_REAL,
    )
    hidden: tuple[int, ...] = opt(
        (64,), "widths of the inference model's hidden layers (none: linear)", b=POS, empty=True
    )
    learning_rate: float = opt(1e-3, "Adam learning rate of the inference model", b=POSITIVE_REAL)
    steps: int = opt(3, "k, inference-model steps per classifier step", b=POS)


class InferenceModel(nnx.Module):
    """The inference model ``h``: an MLP on ``[softmax f(x), one-hot y]`` ``(b, 2c)``
    with ReLU hidden layers; returns ``(b,)`` logits of "member"."""

    def __init__(self, num_classes: int, hidden: Sequence[int], *, rngs: nnx.Rngs):
        widths = [2 * num_classes, *hidden]
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(widths)])
        self.out = nnx.Linear(widths[-1], 1, rngs=rngs)

    def __call__(self, probs: jax.Array, onehot: jax.Array) -> jax.Array:
        z = jnp.concatenate([probs, onehot], axis=-1)
        for layer in self.layers:
            z = jax.nn.relu(layer(z))
        return self.out(z)[..., 0]


@dataclasses.dataclass(frozen=True)
class AdvSpec:
    """What an adversarial epoch needs besides :class:`KernelSpec` (static under jit).

    Attributes:
      kernel: the classifier's kernel settings.
      eval_graphdef: the classifier's eval-mode ``nnx.GraphDef`` (what ``h`` sees).
      h_graphdef: the inference model's ``nnx.GraphDef``.
      reg: the :class:`AdvReg` settings.
      num_classes: ``c``, the classifier's output width.
    """

    kernel: KernelSpec
    eval_graphdef: object
    h_graphdef: object
    reg: AdvReg
    num_classes: int

    @property
    def h_tx(self) -> optax.GradientTransformation:
        """The inference model's optimizer, ``optax.adam(reg.learning_rate)``."""
        return optax.adam(self.reg.learning_rate)


def _h_model(num_classes: int, hidden: tuple[int, ...], key) -> InferenceModel:
    return InferenceModel(num_classes, hidden, rngs=nnx.Rngs(params=key))


@functools.cache
def h_graphdef(num_classes: int, hidden: tuple[int, ...]):
    """The ``nnx.GraphDef`` of the inference model (cached)."""
    abstract = nnx.eval_shape(lambda: _h_model(num_classes, hidden, jax.random.key(0)))
    return nnx.split(abstract, nnx.Param)[0]


def _keys(key_data: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(h init key, h data key)`` of the model with key data ``key_data``."""
    adv = jax.random.fold_in(jax.random.wrap_key_data(key_data), ADV_STREAM)
    init_key, data_key = jax.random.split(adv)
    return init_key, data_key


def adv_init_one(factory: ModelFactory, spec: AdvSpec, key_data: jax.Array):
    """``(params, rest, (opt_state, h_params, h_opt_state))`` of one fresh model: the
    classifier exactly as :func:`jaxmia._src.engine.kernel.init_one`, and its own ``h``."""
    params, rest, opt_state = init_one(factory, spec.kernel.tx, key_data)
    h = _h_model(spec.num_classes, spec.reg.hidden, _keys(key_data)[0])
    h_params = nnx.split(h, nnx.Param)[1]
    return params, rest, (opt_state, h_params, spec.h_tx.init(h_params))


def programs(factory: ModelFactory, kernel: KernelSpec, reg: AdvReg, num_classes: int):
    """Unjitted per-model ``(init, epoch)``: :func:`adv_init_one` and :func:`adv_epoch_one`
    with their static settings bound (the epoch takes ``(2, n)`` member and reference rows
    where the plain kernel takes a keep row, and its optimizer state carries ``h``)."""
    eval_graphdef = graphdefs(factory)[1]
    spec = AdvSpec(kernel, eval_graphdef, h_graphdef(num_classes, reg.hidden), reg, num_classes)
    return functools.partial(adv_init_one, factory, spec), functools.partial(adv_epoch_one, spec)


def inference_gain(h_graphdef, h_params, probs, labels, ref_probs, ref_labels) -> jax.Array:
    """The gain ``G`` that ``h`` ascends: ``mean log h(p, y) + mean log(1 - h(p', y'))``.

    Args:
      h_graphdef, h_params: the inference model.
      probs: ``(b, c)`` softmax outputs on members; labels: ``(b,)`` int labels.
      ref_probs: ``(b', c)`` softmax outputs on reference records; ref_labels: ``(b',)``.

    Returns:
      scalar gain (<= 0).
    """
    h = nnx.merge(h_graphdef, h_params)
    c = probs.shape[-1]
    member = h(probs, jax.nn.one_hot(labels, c))
    reference = h(ref_probs, jax.nn.one_hot(ref_labels, c))
    return jnp.mean(jax.nn.log_sigmoid(member)) + jnp.mean(jax.nn.log_sigmoid(-reference))


def classifier_loss(spec: AdvSpec, h_params, params, rest, xb, yb, weight):
    """``(loss, rest)``: the classifier's ``weight``-ed mean loss on a member batch plus
    ``strength * `` the ``weight``-ed mean of ``log h(softmax f(x), y)`` (``h`` fixed)."""
    k = spec.kernel
    rest = jax.tree.map(lambda a: a, rest)
    model = nnx.merge(k.graphdef, params, rest)
    logits = model(xb)
    denom = jnp.maximum(jnp.sum(weight), 1.0)
    task = jnp.sum(k.loss_fn(logits, yb) * weight) / denom
    h = nnx.merge(spec.h_graphdef, jax.lax.stop_gradient(h_params))
    z = h(jax.nn.softmax(logits), jax.nn.one_hot(yb, spec.num_classes))
    privacy = jnp.sum(jax.nn.log_sigmoid(z) * weight) / denom
    return task + spec.reg.strength * privacy, nnx.split(model, nnx.Param, ...)[2]


def _h_step(spec: AdvSpec, x, y, orders, counts, params, rest, h_state, t):
    """One ascent step of ``h`` on wrapped batch ``t`` of the member and reference orders."""
    h_params, h_opt = h_state
    b = spec.kernel.batch_size
    pos = t * b + jnp.arange(b)
    idx = orders[0][pos % jnp.maximum(counts[0], 1)]
    ref = orders[1][pos % jnp.maximum(counts[1], 1)]
    f = nnx.merge(spec.eval_graphdef, params, rest)
    probs = jax.lax.stop_gradient(jax.nn.softmax(f(jnp.concatenate([x[idx], x[ref]]))))
    loss = lambda hp: -inference_gain(spec.h_graphdef, hp, probs[:b], y[idx], probs[b:], y[ref])
    grads = jax.grad(loss)(h_params)
    updates, h_opt = spec.h_tx.update(grads, h_opt, h_params)
    return optax.apply_updates(h_params, updates), h_opt


def _adv_step(spec: AdvSpec, x, y, order, count, orders, counts, carry, s, masked: bool):
    """``k`` steps of ``h``, then one classifier step on batch ``s`` of ``order``; with
    ``masked``, a no-op for a model whose members are used up."""
    params, rest, (opt_state, h_params, h_opt) = carry
    k = spec.kernel
    h_step = functools.partial(_h_step, spec, x, y, orders, counts, params, rest)
    ts = s * spec.reg.steps + jnp.arange(spec.reg.steps)
    h_state = jax.lax.scan(lambda c, t: (h_step(c, t), None), (h_params, h_opt), ts)[0]
    start = s * k.batch_size
    idx = jax.lax.dynamic_slice(order, (start,), (k.batch_size,))
    weight = (start + jnp.arange(k.batch_size) < count).astype(jnp.float32)
    loss_of = functools.partial(classifier_loss, spec, h_state[0])
    (loss, new_rest), grads = jax.value_and_grad(loss_of, has_aux=True)(
        params, rest, x[idx], y[idx], weight
    )
    updates, new_opt = k.tx.update(grads, opt_state, params)
    new = (optax.apply_updates(params, updates), new_rest, (new_opt, *h_state))
    if masked:
        active = start < count
        new = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, carry)
        return new, (jnp.where(active, loss, 0.0), active)
    return new, (loss, jnp.bool_(True))


def adv_epoch_one(spec: AdvSpec, key_data, epoch, rows, params, rest, state, x, y):
    """One epoch of adversarial regularisation of one model (pure; vmapped by the engine).

    Args:
      spec: the static settings (:class:`AdvSpec`).
      key_data: ``(2,)`` uint32 key data of the model's key.
      epoch: int32 scalar, the epoch's index.
      rows: ``(2, n)`` bool: the model's members and its reference records.
      params, rest: the classifier's state; state: ``(opt_state, h_params, h_opt_state)``.
      x: ``(n, *input_shape)`` float32 inputs; y: ``(n,)`` int32 labels.

    Returns:
      ``(params, rest, state, mean_loss)``; ``mean_loss`` is the mean over the model's
      steps of the classifier's objective ``CE + strength * mean log h`` (may be < 0).

    The classifier's member batches are the plain kernel's
    (:func:`jaxmia._src.engine.kernel.epoch_one`): same order, same masking.
    """
    k = spec.kernel
    keep_row, ref_row = rows[0], rows[1]
    n = keep_row.shape[0]
    data_key = jax.random.split(jax.random.wrap_key_data(key_data), 3)[2]
    order = member_order(jax.random.fold_in(data_key, epoch), keep_row)
    pad = k.steps * k.batch_size - n
    if pad > 0:
        order = jnp.concatenate([order, jnp.zeros((pad,), order.dtype)])
    h_key = jax.random.fold_in(_keys(key_data)[1], epoch)
    orders = (
        member_order(jax.random.fold_in(h_key, 0), keep_row),
        member_order(jax.random.fold_in(h_key, 1), ref_row),
    )
    counts = (jnp.sum(keep_row), jnp.sum(ref_row))
    step = functools.partial(_adv_step, spec, x, y, order, counts[0], orders, counts)
    carry, (losses, _) = jax.lax.scan(
        functools.partial(step, masked=False), (params, rest, state), jnp.arange(k.full_steps)
    )
    total, count_steps = jnp.sum(losses), k.full_steps
    if k.steps > k.full_steps:
        carry, (tail, active) = jax.lax.scan(
            functools.partial(step, masked=True), carry, jnp.arange(k.full_steps, k.steps)
        )
        total, count_steps = total + jnp.sum(tail), count_steps + jnp.sum(active)
    return (*carry, total / jnp.maximum(count_steps, 1))


def check_reference(adv_reg, reference, keep: np.ndarray) -> np.ndarray | None:
    """The ``(k, n)`` reference records of :func:`jaxmia.engine.train`, checked: given
    exactly when ``adv_reg`` is, disjoint from each model's members, at least one per
    model. Raises a one-line ``ValueError`` otherwise."""
    if adv_reg is None:
        if reference is not None:
            raise ValueError("reference records are only used with adv_reg")
        return None
    if not isinstance(adv_reg, AdvReg):
        raise ValueError(f"adv_reg must be an AdvReg, got {type(adv_reg).__name__}")
    if reference is None:
        raise ValueError("adv_reg needs reference= records held out from each model")
    ref = as_mask(reference, "reference")
    if ref.shape not in (keep.shape, keep.shape[1:]):
        want = f"{keep.shape} or {keep.shape[1:]}"
        raise ValueError(f"reference must have shape {want}, got {ref.shape}")
    ref = np.broadcast_to(ref, keep.shape)
    both = np.flatnonzero((ref & keep).any(axis=1))
    if both.size:
        raise ValueError(f"reference records must not be members: model {both[0]} has some in both")
    empty = np.flatnonzero(~ref.any(axis=1))
    if empty.size:
        raise ValueError(f"model {empty[0]} has no reference records")
    return np.ascontiguousarray(ref)


def reference_digest(reference: np.ndarray) -> str:
    """sha256 of a ``(k, n)`` bool reference matrix (for a pool's spec)."""
    packed = np.packbits(np.asarray(reference, bool), axis=-1)
    return hashlib.sha256(repr(reference.shape).encode() + packed.tobytes()).hexdigest()


def spec_entry(adv_reg: AdvReg | None, reference: np.ndarray | None) -> dict | None:
    """The JSON-able ``adv_reg`` entry of a pool's spec: the settings and the reference
    matrix's digest (``None`` without adversarial regularisation)."""
    if adv_reg is None:
        return None
    entry = {**dataclasses.asdict(adv_reg), "hidden": list(adv_reg.hidden)}
    return {**entry, "reference_sha256": reference_digest(reference)}


def counted_epoch(
    adv_epoch, batch_size: int, key_data, epoch, rows, canary_flag, params, rest, opt_state, x, y
):
    """``adv_epoch`` (:func:`programs`' epoch) with the signature and counts of
    :func:`jaxmia._src.engine.sampling.dp_epoch_one`, as the engine calls every epoch:
    ``canary_flag`` is unused (no DP-SGD here) and the counts are
    :func:`jaxmia._src.engine.sampling.plain_counts` of the members."""
    del canary_flag
    out = adv_epoch(key_data, epoch, rows, params, rest, opt_state, x, y)
    return (*out, plain_counts(rows[0], batch_size))
