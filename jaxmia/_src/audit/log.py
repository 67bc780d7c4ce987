"""The audit's progress lines and notes: what a phase says as it goes (:data:`Log`) and
the settings it chose on the way (:func:`note`), which the report lists."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Log", "note", "silent"]

Log = Callable[[str], None]
"""Receives one progress line (the command line prints it; the library is silent)."""


def silent(_: str) -> None:
    """A :data:`Log` that drops every line."""


def note(notes: list[str], text: str) -> None:
    """Adds ``text`` to ``notes`` unless it is there already (notes are read once each)."""
    if text not in notes:
        notes.append(text)
