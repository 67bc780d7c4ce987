"""The pool store: shadow pools on disk (pools), their manifest, checked atomic
files, cached label-only answers and what training writes there (checkpointing).
"""

__all__: list[str] = []
