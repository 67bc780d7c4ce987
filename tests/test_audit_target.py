"""How a user's model's outputs are read (issue 13, item 5): probabilities that do not
sum exactly to 1 were read as logits by ``outputs="auto"``."""

import numpy as np
import pytest

from jaxmia import signals
from jaxmia._src.audit import ConfigError, target


@pytest.fixture
def probs():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (500, 30)).astype(np.float32)
    return np.asarray(signals.probabilities(logits)), logits


@pytest.mark.parametrize(
    "transform",
    [lambda p: p, lambda p: np.round(p, 2), lambda p: 0.98 * p, lambda p: np.float16(p)],
    ids=["exact", "rounded to 2 decimals", "scaled by 0.98", "float16"],
)
def test_probabilities_off_from_one_are_read_as_probabilities(probs, transform):
    p, _ = probs
    out = np.asarray(transform(p), np.float32)
    assert target.output_kind(out) == "probs"
    read = target.query_model(lambda x: out[: len(x)], np.zeros((500, 2)))
    np.testing.assert_allclose(read, signals.log_probs_from_probs(out), rtol=1e-6)


def test_logits_are_read_as_logits(probs):
    _, logits = probs
    assert target.output_kind(logits) == "logits"
    assert target.output_kind(np.abs(logits) + 2) == "logits"


def test_ambiguous_outputs_ask_for_the_reading():
    out = np.full((4, 10), 0.5, np.float32)  # in [0, 1], rows sum to 5
    with pytest.raises(ConfigError, match=r"rows sum to 5 .. 5.*outputs='probs'"):
        target.output_kind(out)
    assert target.output_kind(out, "logits") == "logits"


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (lambda b: np.ones((len(b), 3 + (len(b) < 4))), r"\(1, 3\) outputs .* got shape \(1, 4\)$"),
        (lambda b: np.ones(len(b)), r"\(4, classes\) outputs .* got shape \(4,\)$"),
        (lambda b: np.ones((len(b) + 1, 3)), r"\(4, 3\) outputs .* got shape \(5, 3\)$"),
    ],
    ids=["width changes between batches", "no class axis", "another number of rows"],
)
def test_outputs_of_another_shape_are_refused_in_one_line(outputs, message):
    with pytest.raises(ConfigError, match="^the model must return " + message):
        target.query_model(outputs, np.zeros((5, 2)), outputs="logits", batch_size=4)
