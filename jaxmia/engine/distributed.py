"""Several hosts: one shadow pool over every device of every process.

JAX's own multi-process runtime (:func:`jax.distributed.initialize`) joins the
processes; :func:`jaxmia.engine.train` then shards the ``k`` models over the global mesh
of all their devices, and every process ends with the whole pool. Run the same command
on each host, with the same data, seed and options, changing only ``process_id``::

    jaxmia audit --coordinator host0:1234 --num-processes 2 --process-id 0   # on host 0
    jaxmia audit --coordinator host0:1234 --num-processes 2 --process-id 1   # on host 1

Only process 0 writes the report. On CPU the processes talk through JAX's gloo
collectives.
"""

from __future__ import annotations

import jax

__all__ = ["initialize", "is_main_process"]


def initialize(coordinator: str, num_processes: int, process_id: int) -> None:
    """Joins this process to a multi-process JAX runtime.

    Args:
      coordinator: ``host:port`` of process 0, reachable from every process.
      num_processes: total number of processes.
      process_id: this process's index, ``0 <= process_id < num_processes``.
    """
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(
            f"need 0 <= process_id < num_processes, got {process_id} and {num_processes}"
        )
    if ":" not in coordinator:
        raise ValueError(f"coordinator must be host:port, got {coordinator!r}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )


def is_main_process() -> bool:
    """Whether this process writes outputs (process 0, or the only one)."""
    return jax.process_index() == 0
