"""One-line errors for what a caller of the engine gets wrong, raised before anything is
compiled: a model class passed where a factory belongs (told apart from a model that does
not take the inputs), inputs of another width than the pool's models take, a validation
set or logits of the wrong shape."""

import functools

import jax
import numpy as np
import pytest
from flax import nnx

from jaxmia._src import engine
from jaxmia._src.engine import training


class GeluNet(nnx.Module):
    """A user's model whose constructor needs its widths."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, dout, rngs=rngs)

    def __call__(self, x):
        return nnx.gelu(self.linear(x))


class BrokenNet(nnx.Module):
    """Takes ``rngs`` alone, but its own construction fails."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(64, rngs=rngs)

    def __call__(self, x):
        return self.linear(x)


@pytest.fixture
def no_compiling(monkeypatch):
    """Fails a test that gets as far as compiling training."""
    monkeypatch.setattr(training, "compiled", lambda *a, **k: pytest.fail("compiled"))


def _one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as e:
        call(*args, **kwargs)
    message = str(e.value)
    assert "\n" not in message, message
    return message


def test_a_class_needing_arguments_is_refused_as_a_factory_not_as_inputs(tiny, no_compiling):
    x, y = tiny.ds.x, tiny.ds.y
    keep = np.ones(len(y), bool)
    for factory in (GeluNet, functools.partial(GeluNet, 64)):
        message = _one_line_error(engine.train, factory, x, y, keep, epochs=1)
        assert "cannot be called as GeluNet(rngs=nnx.Rngs(...))" in message, message
        assert "missing 1 required positional argument" in message or "'din'" in message
        assert "functools.partial(GeluNet, ...)" in message and "lambda rngs:" in message
        assert "inputs" not in message
    model = nnx.eval_shape(lambda: GeluNet(64, 10, rngs=nnx.Rngs(0)))
    message = _one_line_error(engine.train, model, x, y, keep)
    assert message.startswith("got a model (GeluNet instance)"), message
    message = _one_line_error(engine.train, BrokenNet, x, y, keep, epochs=1)
    assert message.startswith("building the model with BrokenNet(rngs=...) failed: TypeError")
    message = _one_line_error(engine.train, lambda rngs: GeluNet(64, rngs=rngs), x, y, keep)
    assert message.startswith("building the model with <lambda>(rngs=...) failed"), message
    # a factory that builds, for inputs of another width: the inputs are named
    message = _one_line_error(engine.train, functools.partial(GeluNet, 60, 10), x, y, keep)
    assert message.startswith("the model does not take inputs shaped (64,)"), message


def _pool_of_shapes(factory, k: int) -> engine.Pool:
    """A pool of ``k`` models of ``factory`` with zero parameters, built without running
    anything (predict refuses bad inputs from shapes alone)."""
    _, params, rest = nnx.split(nnx.eval_shape(lambda: factory(rngs=nnx.Rngs(0))), nnx.Param, ...)
    params, rest = jax.tree.map(lambda a: np.zeros((k, *a.shape), a.dtype), (params, rest))
    graphdef = engine.kernel.graphdefs(factory)[1]
    nothing = np.zeros(k)
    return engine.Pool(
        graphdef, params, rest, np.ones((k, 1), bool), nothing, nothing, np.zeros((0, k)), ()
    )


def test_predict_names_the_width_the_models_take(tiny):
    x, pool = tiny.ds.x, _pool_of_shapes(tiny.factory, 2)
    for labels in (False, True):
        message = _one_line_error(engine.predict, pool, x[:, :60], labels=labels)
        assert message == "x has 60 features per example but the models take 64"
    message = _one_line_error(engine.predict, pool, x[:, :60, None])  # the MLP flattens
    assert message == "x holds inputs shaped (60, 1) but the models take (64,)"
    assert _one_line_error(engine.predict, pool, x.astype(str)).startswith("inputs must be numbers")
    assert _one_line_error(engine.predict, pool, np.float32(1.0)).startswith("inputs must be")
    assert engine.predict(pool, x[:0]).shape == (2, 0, 10)  # nothing to ask: nothing runs
    assert engine.predict(pool, x[:0], labels=True).shape == (2, 0)


def test_bad_validation_sets_and_logits_are_refused_in_one_line(tiny, no_compiling):
    x, y, factory = tiny.ds.x, tiny.ds.y, tiny.factory
    keep = np.ones(len(y), bool)
    for validation, expected in [
        ((x[:, :60], y), "validation must be x_val (v, *(64,)) and y_val (v,)"),
        ((x, y[:-1]), "validation must be x_val"),
        ((x, y + 10), "validation labels must be in [0, 10)"),
        ((x, np.where(y == 0, 10, y)), "validation labels must be in [0, 10)"),
        ((x, y - 1), "validation labels must be in [0, 10)"),
        ((x, y.astype(float)), "validation needs numeric x_val and integer y_val"),
        (x, "validation must be a pair"),
    ]:
        message = _one_line_error(
            engine.train, factory, x, y, keep, epochs=1, validation=validation, patience=1
        )
        assert message.startswith(expected), message
    logits = np.zeros((2, len(y), 10), np.float32)
    message = _one_line_error(engine.accuracies, logits, y[:-1], np.ones((2, len(y)), bool))
    assert message.startswith("need logits (k, n, c), y (n,) and keep (k, n)")
