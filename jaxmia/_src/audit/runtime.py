"""What a ``jaxmia`` command sets up in its own process: one XLA device per CPU core
(:func:`use_cpu_cores`, before JAX is imported), JAX's persistent compilation cache on disk
(:func:`use_compilation_cache`, :func:`repair_compilation_cache`) and training progress on
stderr (:class:`Progress`). :mod:`jaxmia.cli` runs them; nothing here imports JAX at
module level, so the command line starts without it.
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

__all__ = [
    "COMPILATION_CACHE_BYTES",
    "Progress",
    "repair_compilation_cache",
    "use_compilation_cache",
    "use_cpu_cores",
]


class Progress:
    """Training progress on stderr (:data:`jaxmia.engine.ProgressFn`): one updating line
    on a terminal, a line per quarter otherwise. Each training run (the target, then
    the shadow pool) starts a new line, after the log line that names it."""

    def __init__(self, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.tty = self.stream.isatty()
        self.last: tuple[float, int] | None = None
        self.called = time.perf_counter()

    def __call__(self, done: float, total: int, loss: float | None) -> None:
        now = time.perf_counter()
        if self.last is None or done < self.last[0] or total != self.last[1]:
            # a new training run, which began about when the last one reported
            self.start, self.last_quarter = self.called, -1
        self.last, self.called = (done, total), now
        if loss is None:  # models read from the pool directory (NaN: diverged in training)
            print(f"  {int(done)}/{total} shadow models read from the pool", file=self.stream)
            return
        elapsed = now - self.start
        line = f"  training {done / total:4.0%}"
        if total > 1:
            line += f"  {int(done)}/{total} models"
        line += f"  loss {loss:.4f}  {elapsed:.1f}s"
        if 0 < done < total:
            line += f", about {elapsed * (total - done) / done:.0f}s left"
        if self.tty:
            self.stream.write("\r" + line.ljust(72) + ("\n" if done >= total else ""))
            self.stream.flush()
            return
        quarter = int(4 * done // total)
        if quarter != self.last_quarter:
            self.last_quarter = quarter
            print(line, file=self.stream, flush=True)


def use_cpu_cores() -> None:
    """Splits the CPU into one XLA device per core, so that the shadow engine shards
    the models over the cores (measured faster than one multi-threaded device; see
    benchmarks/README.md). Only when the user has not set ``XLA_FLAGS`` and JAX is not
    imported yet; ``JAXMIA_CPU_DEVICES=N`` chooses N devices (1 turns it off)."""
    if "XLA_FLAGS" in os.environ or "jax" in sys.modules:
        return
    count = os.environ.get("JAXMIA_CPU_DEVICES") or str(os.cpu_count() or 1)
    if count.isdigit() and int(count) > 1:
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"


COMPILATION_CACHE_BYTES = 2 * 2**30
"""Size of the compilation cache; JAX evicts the least recently used programs beyond it
(a default audit adds about 20 MiB)."""


def use_compilation_cache() -> None:
    """Keeps XLA's compiled programs in JAX's persistent compilation cache on disk, so a
    later run (an audit rerun from its saved pool, the next audit of a study) skips most
    compilation. The cache is ``$XDG_CACHE_HOME/jaxmia/xla`` (``~/.cache/jaxmia/xla``);
    ``JAXMIA_COMPILATION_CACHE=DIR`` chooses another directory and ``=0`` turns it off. A
    cache the user configured for JAX (``JAX_COMPILATION_CACHE_DIR``) is left alone."""
    setting = os.environ.get("JAXMIA_COMPILATION_CACHE", "")
    if setting == "0" or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = setting or os.path.join(base, "jaxmia", "xla")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:  # no writable cache directory: compile every time
        return
    repair_compilation_cache(path)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_BYTES)


def repair_compilation_cache(path: str | os.PathLike) -> list[str]:
    """Removes the entries of a size-capped JAX compilation cache that a killed process
    left half-written, and returns their names.

    JAX's capped cache writes each program as ``KEY-cache`` and then its access time as
    ``KEY-atime``, under the lock ``.lockfile``. A process killed in between (Ctrl-C or
    SIGKILL during an audit's first compilations) leaves a ``-cache`` file, possibly
    truncated, without its ``-atime``; from then on every write to the cache fails with
    a ``FileNotFoundError`` warning, because the eviction scan reads every entry's
    access time, and nothing more is cached. An entry without ``-atime`` is therefore
    unfinished, and removing it (under JAX's lock, so a writer in another process is
    never cut off) costs one recompilation."""
    import filelock

    path = pathlib.Path(path)
    removed = []
    try:
        with filelock.FileLock(path / ".lockfile", timeout=10):
            for entry in path.glob("*-cache"):
                key = entry.name.removesuffix("-cache")
                if not (path / f"{key}-atime").exists():
                    entry.unlink(missing_ok=True)
                    removed.append(key)
    except (OSError, filelock.Timeout):  # unreadable or busy: JAX copes or warns itself
        pass
    return removed
