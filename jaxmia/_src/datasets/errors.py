"""The error every dataset loader raises, and the one-line cause it quotes."""

from __future__ import annotations

__all__ = ["DatasetError", "short"]

_MAX_CAUSE_CHARS = 200


class DatasetError(ValueError):
    """A dataset cannot be found, read, or turned into features and integer labels."""


def short(e: BaseException) -> str:
    """One line of at most 200 characters describing ``e``."""
    text = " ".join(str(e).split()) or type(e).__name__
    if len(text) > _MAX_CAUSE_CHARS:
        text = text[: _MAX_CAUSE_CHARS - 3] + "..."
    return text
