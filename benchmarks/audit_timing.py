"""Wall time of the default ``jaxmia audit``: cold, rerun from its pool, and startup.

Every run is a fresh ``python -m jaxmia.cli`` process, timed from outside (process start,
imports, compilation and writing the outputs included):

* ``cold``: the default audit (Location-30, 64 shadows) with an empty compilation cache
  (``JAXMIA_COMPILATION_CACHE`` set to a new directory), a fresh output directory and a
  fresh pool directory: everything is trained and compiled (median of ``--cold-repeats``,
  each with its own empty cache and pool; the reruns use the last);
* ``rerun``: ``jaxmia audit --pool DIR`` again with the same pool and the now warm cache,
  into a fresh output directory each time (median of ``--repeats``);
* ``import``: ``python -c "import jaxmia.cli"`` and ``jaxmia audit --help`` (medians);
* ``compile``: one more rerun in a process that registers :mod:`jax.monitoring`
  listeners before it calls :func:`jaxmia.cli.main`, so the seconds JAX spends tracing,
  lowering, reading the persistent cache and compiling with a warm cache are summed per
  event, with the number of cache hits and misses.

Each audit's per-phase and per-attack timings are read from its ``metrics.json``, and every
run's attack metrics are checked to be identical to the cold run's (bit for bit), and the
cold run's to those of the committed default audit (``--expect``).

    python benchmarks/audit_timing.py --out benchmarks/results/audit-timing-cpu-2core.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

MONITOR = """
import collections, json, sys
from jaxmia import cli
cli.use_cpu_cores()  # as the CLI does, before JAX is imported
import jax.monitoring
seconds, counts = collections.Counter(), collections.Counter()
jax.monitoring.register_event_duration_secs_listener(
    lambda event, s, **kw: seconds.update({event: s}))
jax.monitoring.register_event_listener(lambda event, **kw: counts.update({event: 1}))
code = cli.main(sys.argv[2:])
pathlib = __import__("pathlib")
pathlib.Path(sys.argv[1]).write_text(json.dumps({"seconds": seconds, "counts": counts}))
sys.exit(code)
"""


def timed(command: list[str], env: dict) -> float:
    """Wall seconds of one process running ``command``."""
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - start


def attack_metrics(out: pathlib.Path) -> tuple[dict, dict]:
    """``(attacks, timings)`` of one audit's ``metrics.json``: the attack metrics (to
    compare across runs) and the per-phase and per-attack seconds."""
    metrics = json.loads((out / "metrics.json").read_text())
    timings = {"phases_s": metrics["timings_s"],
               "attacks_s": metrics.get("timings_s_by_attack", {})}  # fmt: skip
    return metrics["attacks"], timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="reruns from the pool")
    parser.add_argument("--cold-repeats", type=int, default=1, help="cold audits")
    parser.add_argument("--expect", default="results/location30-default/metrics.json",
                        help="metrics.json whose attack metrics every run must equal")  # fmt: skip
    parser.add_argument("--out", default="benchmarks/results/audit-timing-cpu-2core.json")
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    audit = [sys.executable, "-m", "jaxmia.cli", "audit", "-q"]
    record: dict = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = pathlib.Path(tmp)
        expected = json.loads((ROOT / args.expect).read_text())["attacks"]
        colds, cold_attacks, as_expected = [], [], True
        for i in range(args.cold_repeats):  # each with its own empty cache and pool
            env["JAXMIA_COMPILATION_CACHE"] = str(tmp_path / f"xla{i}")
            pool = str(tmp_path / f"pool{i}")
            colds.append(timed([*audit, "--pool", pool, "-o", str(tmp_path / f"c{i}")], env))
            reference, record["cold_timings"] = attack_metrics(tmp_path / f"c{i}")
            cold_attacks.append(record["cold_timings"]["phases_s"]["attacks"])
            as_expected = as_expected and reference == expected
            print(f"cold {i}: {colds[-1]:.2f} s; {record['cold_timings']['phases_s']}", flush=True)
        record["cold_s"] = [round(s, 2) for s in colds]
        record["cold_median_s"] = round(statistics.median(colds), 2)
        record["cold_attack_phase_median_s"] = round(statistics.median(cold_attacks), 3)
        record["cold_metrics_identical_to_expect"] = as_expected
        reruns, same = [], True
        for i in range(args.repeats):
            out = tmp_path / f"r{i}"
            reruns.append(timed([*audit, "--pool", pool, "-o", str(out)], env))
            attacks, timings = attack_metrics(out)
            same = same and attacks == reference
            print(f"rerun {i}: {reruns[-1]:.2f} s; {timings['phases_s']}", flush=True)
        record["rerun_s"] = [round(s, 2) for s in reruns]
        record["rerun_median_s"] = round(statistics.median(reruns), 2)
        record["rerun_timings"] = timings
        record["metrics_identical_to_cold"] = same
        imports = [timed([sys.executable, "-c", "import jaxmia.cli"], env) for _ in range(3)]
        helps = [timed([*audit, "--help"], env) for _ in range(3)]
        record["import_jaxmia_cli_s"] = round(statistics.median(imports), 3)
        record["audit_help_s"] = round(statistics.median(helps), 3)
        events = tmp_path / "events.json"
        monitored = [sys.executable, "-c", MONITOR, str(events), "audit", "-q", "--pool", pool,
                     "-o", str(tmp_path / "m")]  # fmt: skip
        record["monitored_rerun_s"] = round(timed(monitored, env), 2)
        seen = json.loads(events.read_text())
        record["warm_cache_jax_events_s"] = {
            k: round(v, 3) for k, v in sorted(seen["seconds"].items())
        }
        record["warm_cache_jax_event_counts"] = dict(sorted(seen["counts"].items()))
    record.update({
        "command": " ".join([os.path.relpath(__file__, ROOT), *(argv or sys.argv[1:])]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "load_after": os.getloadavg(),
    })  # fmt: skip
    print(f"cold median {record['cold_median_s']} s (attack phase "
          f"{record['cold_attack_phase_median_s']} s); rerun median {record['rerun_median_s']} s;"
          f" import {record['import_jaxmia_cli_s']} s; --help {record['audit_help_s']} s;"
          f" identical metrics: {same}, "
          f"cold = {args.expect}: {record['cold_metrics_identical_to_expect']}")  # fmt: skip
    for event, s in record["warm_cache_jax_events_s"].items():
        print(f"  {event}: {s} s")
    for event, n in record["warm_cache_jax_event_counts"].items():
        print(f"  {event}: {n}")
    out_path = pathlib.Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
