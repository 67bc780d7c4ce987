"""Threat models: what the attacker sees of the target.

An *access level* names the interface the target exposes to a query ``x`` with label
``y``:

* ``probs``: the full probability vector (black box, the usual MLaaS API);
* ``topk``: only the ``top_k`` largest probabilities, without the other classes;
* ``label``: only the predicted label;
* ``loss``: the loss of ``(x, y)`` (white box, or an API that returns it).

Each access level provides some :mod:`jaxmia.signals`. Every attack declares the signals
it needs; :func:`require` refuses, with a one-line error, an attack that the access level
cannot support. The attacker owns the shadow models and could see more of them, but their
signals are computed through the same interface so that the attack is trained on what it
will see at test time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from jaxmia import signals

__all__ = [
    "ACCESS_LEVELS",
    "PROVIDES",
    "AccessError",
    "allows",
    "check_access",
    "observe",
    "require",
]

ACCESS_LEVELS: tuple[str, ...] = ("probs", "topk", "label", "loss")
"""The access levels, from the most to the least revealing query interface (``loss``
aside, which is white-box)."""

PROVIDES: Mapping[str, frozenset[str]] = {
    "probs": frozenset(signals.SIGNALS),
    "topk": frozenset({"top_k_probabilities", "confidence"}),
    "label": frozenset({"correctness"}),
    "loss": frozenset({"loss", "true_class_probability", "logit_scaled_confidence"}),
}
"""The signals each access level gives the attacker. ``correctness`` compares the
predicted label with the true one; ``true_class_probability`` and the logit-scaled
confidence are functions of the loss alone (``p_y = exp(-loss)``)."""


class AccessError(ValueError):
    """An attack needs more than the access level provides."""


def check_access(access: str) -> str:
    """Returns ``access`` if it is one of :data:`ACCESS_LEVELS`.

    Raises:
      AccessError: naming the access levels, otherwise.
    """
    if access not in ACCESS_LEVELS:
        raise AccessError(
            f"unknown access level {access!r}; choose one of {', '.join(ACCESS_LEVELS)}"
        )
    return access


def allows(access: str, needed: Iterable[str]) -> bool:
    """Whether ``access`` provides every signal in ``needed``."""
    return set(needed) <= PROVIDES[check_access(access)]


def require(access: str, needed: Iterable[str], who: str) -> None:
    """Raises :class:`AccessError` unless ``access`` provides every signal in ``needed``."""
    missing = sorted(set(needed) - PROVIDES[check_access(access)])
    if missing:
        raise AccessError(
            f"{who} needs {', '.join(missing)}, which access level {access!r} does not "
            f"provide (it gives: {', '.join(sorted(PROVIDES[access]))})"
        )


def observe(
    logits: np.ndarray,
    labels: np.ndarray,
    access: str,
    names: Iterable[str],
    *,
    top_k: int = 3,
) -> dict[str, np.ndarray]:
    """Computes the signals ``names`` of ``logits`` as seen through ``access``.

    Args:
      logits: ``(..., n, c)`` model outputs (``(k, n, c)`` for a pool, ``(n, c)`` for the
        target).
      labels: ``(n,)`` true labels of the queries.
      access: one of :data:`ACCESS_LEVELS`.
      names: signals to compute (or one signal's name); all must be provided by ``access``.
      top_k: how many probabilities the ``topk`` interface returns.

    Returns:
      ``{name: array}`` with shapes ``(..., n)`` or ``(..., n, d)`` (NumPy, host).
    """
    names = (names,) if isinstance(names, str) else tuple(dict.fromkeys(names))
    require(access, names, "this query")
    return {name: _on_host(name, logits, labels, top_k) for name in names}


def _on_host(name: str, logits: np.ndarray, labels: np.ndarray, top_k: int) -> np.ndarray:
    """:func:`jaxmia.signals.compute` as a NumPy array. The sorted probabilities are the
    same values sorted by NumPy: XLA:CPU sorts the short rows ``(c,)`` of a ``(k, n, c)``
    pool about ten times slower (0.6 s against 0.05 s for 64 x 5,010 x 30), and a sort
    only permutes, so the result is bit for bit that of :func:`signals.sorted_probabilities`
    (probabilities hold no NaN or negative zero to order differently)."""
    if name == "sorted_probabilities":
        probs = np.asarray(signals.probabilities(logits))
        return np.flip(np.sort(probs, axis=-1), axis=-1)
    return np.asarray(signals.compute(name, logits, labels, top_k=top_k))
