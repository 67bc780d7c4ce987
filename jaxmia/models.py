"""Flax NNX models for targets and shadow models.

The shadow engine accepts any *model factory*: a callable ``factory(rngs=rngs) -> nnx.Module``
whose module maps a batch of inputs ``(b, *input_shape)`` to logits ``(b, c)``. A Flax NNX
class whose constructor takes ``rngs=`` works through :func:`functools.partial`, so users
can bring their own architecture; the engine never looks inside the module.

Example::

    factory = mlp((128,), num_classes=30, in_features=446)
    model = factory(rngs=nnx.Rngs(0))
    logits = model(x)  # (b, 30)
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

ModelFactory = Callable[..., nnx.Module]
"""A callable that builds a fresh model when called as ``factory(rngs=nnx.Rngs(...))``."""

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "sigmoid": jax.nn.sigmoid,
    "elu": jax.nn.elu,
}


def _activation(name: str) -> Callable[[jax.Array], jax.Array]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        ) from None


class MLP(nnx.Module):
    """Multi-layer perceptron for tabular data: ``(b, d) -> (b, num_classes)`` logits.

    Inputs with more than one feature axis are flattened, so the MLP also serves small
    images. Dropout (if ``dropout > 0``) follows every hidden activation and draws from
    the ``dropout`` RNG stream.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        num_classes: int,
        *,
        activation: str = "tanh",
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.act_name = activation
        self.act = _activation(activation)
        widths = [in_features, *hidden]
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(widths)])
        self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for layer in self.hidden:
            x = self.act(layer(x))
            if self.dropout is not None:
                x = self.dropout(x)
        return self.head(x)


class CNN(nnx.Module):
    """Small convolutional network for images ``(b, h, w, ch) -> (b, num_classes)``.

    Two 3x3 convolutions with 2x2 average pooling, then a dense hidden layer; no
    BatchNorm, so vmapping over models needs no care for running statistics.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        channels: Sequence[int] = (16, 32),
        hidden: int = 64,
        activation: str = "relu",
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        if len(input_shape) != 3:
            raise ValueError(f"CNN needs inputs shaped (h, w, channels), got {tuple(input_shape)}")
        h, w, ch = input_shape
        self.act = _activation(activation)
        convs = []
        for out in channels:
            convs.append(nnx.Conv(ch, out, kernel_size=(3, 3), rngs=rngs))
            ch = out
            h, w = h // 2, w // 2
        self.convs = nnx.List(convs)
        self.dense = nnx.Linear(h * w * ch, hidden, rngs=rngs)
        self.head = nnx.Linear(hidden, num_classes, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = self.act(conv(x))
            x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = self.act(self.dense(x.reshape(x.shape[0], -1)))
        if self.dropout is not None:
            x = self.dropout(x)
        return self.head(x)


def mlp(
    hidden: Sequence[int],
    num_classes: int,
    in_features: int,
    *,
    activation: str = "tanh",
    dropout: float = 0.0,
) -> ModelFactory:
    """Returns a factory ``rngs -> MLP`` with the given layout.

    Equal layouts return the same factory object, so the shadow engine reuses its
    compiled functions across calls.
    """
    _activation(activation)
    return _mlp(
        tuple(int(h) for h in hidden), int(num_classes), int(in_features), activation, dropout
    )


@functools.cache
def _mlp(hidden, num_classes, in_features, activation, dropout) -> ModelFactory:
    return functools.partial(
        MLP,
        in_features=in_features,
        hidden=hidden,
        num_classes=num_classes,
        activation=activation,
        dropout=dropout,
    )


def cnn(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    channels: Sequence[int] = (16, 32),
    hidden: int = 64,
    dropout: float = 0.0,
) -> ModelFactory:
    """Returns a factory ``rngs -> CNN`` for images of ``input_shape`` (h, w, ch); equal
    layouts return the same factory object."""
    return _cnn(tuple(input_shape), int(num_classes), tuple(channels), int(hidden), dropout)


@functools.cache
def _cnn(input_shape, num_classes, channels, hidden, dropout) -> ModelFactory:
    return functools.partial(
        CNN,
        input_shape=input_shape,
        num_classes=num_classes,
        channels=channels,
        hidden=hidden,
        dropout=dropout,
    )


def default_model(
    input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (128,)
) -> ModelFactory:
    """An MLP for flat inputs, a CNN for images (inputs of rank 3)."""
    if len(input_shape) == 3:
        return cnn(input_shape, num_classes)
    in_features = 1
    for s in input_shape:
        in_features *= int(s)
    return mlp(hidden, num_classes, in_features)
