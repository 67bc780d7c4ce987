"""Flax NNX models for targets and shadow models.

The shadow engine accepts any *model factory*: a callable ``factory(rngs=rngs) -> nnx.Module``
whose module maps a batch of inputs ``(b, *input_shape)`` to logits ``(b, c)``. A Flax NNX
class whose constructor takes ``rngs=`` works through :func:`functools.partial`, so users
can bring their own architecture; the engine never looks inside the module. The module
gets ``params``, ``dropout`` and ``default`` RNG streams (any other stream name, e.g.
``rngs.noise()``, falls back to ``default`` in Flax NNX).

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

__all__ = ["ACTIVATIONS", "CNN", "MLP", "ModelFactory", "cnn", "mlp"]

ModelFactory = Callable[..., nnx.Module]
"""A callable that builds a fresh model when called as ``factory(rngs=nnx.Rngs(...))``."""

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "sigmoid": jax.nn.sigmoid,
    "elu": jax.nn.elu,
}
"""The activations :class:`MLP` and :class:`CNN` accept, by name."""


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
        """Logits ``(b, num_classes)`` of inputs ``(b, ...)`` (flattened to ``(b, d)``)."""
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
        """Logits ``(b, num_classes)`` of images ``(b, h, w, ch)``."""
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
    """A factory ``rngs -> MLP``: inputs ``(b, in_features)``, hidden widths ``hidden``,
    logits ``(b, num_classes)``.

    Equal layouts give equal factories (``functools.partial`` of :class:`MLP`); the
    shadow engine caches its compiled programs by structure, so they share them.
    """
    _activation(activation)
    return functools.partial(
        MLP,
        in_features=int(in_features),
        hidden=tuple(int(h) for h in hidden),
        num_classes=int(num_classes),
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
    """A factory ``rngs -> CNN`` for images ``(b, h, w, ch)`` of ``input_shape``, logits
    ``(b, num_classes)``; equal layouts give equal factories."""
    return functools.partial(
        CNN,
        input_shape=tuple(input_shape),
        num_classes=int(num_classes),
        channels=tuple(channels),
        hidden=int(hidden),
        dropout=dropout,
    )
