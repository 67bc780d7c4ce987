"""Datasets of the Hugging Face hub (``hf:owner/name[:split]``), read through the
``datasets`` library after a short probe of the hub, so that an offline machine fails at
once, in one line; their columns are read as a table's (:mod:`jaxmia._src.datasets.tables`).
"""

from __future__ import annotations

import socket
import urllib.parse
import urllib.request

import numpy as np

from jaxmia._src.datasets import tables
from jaxmia._src.datasets.errors import DatasetError, short

__all__ = ["read_hub"]

_PROBE_TIMEOUT_S = 5.0


def read_hub(spec: str, label_column: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """The features, raw labels and label column of ``hf:owner/name[:split]`` (split
    ``train`` by default), after a short probe of the hub (an offline machine fails at
    once, in one line)."""
    repo, _, split = spec.removeprefix("hf:").partition(":")
    split = split or "train"
    if not repo:
        raise DatasetError(
            f"{spec!r} names no dataset; use 'hf:owner/name' or 'hf:owner/name:split'"
        )
    import datasets  # heavy: imported only when the hub is used

    advice = "download it and pass a local .csv/.parquet/.npz path instead"
    if not datasets.config.HF_HUB_OFFLINE:
        # The hub client retries a failed connection with backoff for ~25 s; a short
        # probe first lets an offline machine fail at once.
        cause = _hub_unreachable()
        if cause:
            raise DatasetError(
                f"cannot reach the Hugging Face hub to load {repo!r} (offline?): {cause}; "
                f"{advice} (or set HF_HUB_OFFLINE=1 to use a cached copy)"
            )
    try:
        hf_ds = datasets.load_dataset(repo, split=split)
    except Exception as e:  # the hub raises many unrelated types; report them all alike
        if isinstance(e, OSError) or any(
            word in type(e).__name__ for word in ("Connect", "Timeout", "Offline")
        ):
            raise DatasetError(
                f"cannot reach the Hugging Face hub to load {repo!r} (offline?): {short(e)}; "
                f"{advice}"
            ) from e
        raise DatasetError(
            f"cannot load {repo!r} (split {split!r}) from the Hugging Face hub: {short(e)}"
        ) from e
    return tables.to_arrays(hf_ds, label_column, spec)


def _hub_unreachable() -> str | None:
    """Why the hub endpoint cannot be reached by TCP, or None if it can (or a proxy is set)."""
    from huggingface_hub import constants

    url = urllib.parse.urlsplit(constants.ENDPOINT)
    if url.scheme in urllib.request.getproxies():
        return None  # the client goes through the proxy; let it decide
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=_PROBE_TIMEOUT_S):
            return None
    except OSError as e:
        return f"{url.hostname}:{port}: {short(e)}"
