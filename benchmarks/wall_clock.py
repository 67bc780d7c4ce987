"""The wall-clock budgets the test suite used to assert, measured here instead.

A test asserting "this takes under N seconds" fails on a loaded machine and passes on a
fast one whatever the code does, so the suite checks what these operations do and this
script measures how long they take (median of ``--repeats``), next to the budget the test
held, in a table and optionally a JSON file:

* ``bootstrap_ci``: ``metrics.bootstrap_ci`` of 10,000 scores, 200 resamples (budget 2 s;
  was ``tests/test_metrics.py::test_bootstrap_is_fast``);
* ``wide_csv``: ``datasets.load`` refusing a csv of 200,001 columns from its header (budget
  2 s; ``tests/test_datasets.py::test_a_table_too_wide_is_refused_from_its_header_before_reading``,
  which still checks that the rows are never read);
* ``hub_offline`` / ``hub_unreachable``: a fresh process loading ``hf:NAME`` with no route
  to the hub, with and without ``HF_HUB_OFFLINE=1``, until its one-line error (budget
  30 s; ``tests/test_datasets.py::test_hf_hub_unreachable_fails_fast_in_one_line``);
* with ``--audit``: the default ``jaxmia audit`` with an empty compilation cache, then its
  rerun from the pool it kept (budget: the rerun under half the first run, and its
  ``train_shadows`` phase under 2 s; ``tests/test_default_audit.py``, which still checks
  that the rerun reads the 64 models and gives the same metrics). One run of each: about
  25 s on 2 cores. ``benchmarks/audit_timing.py`` measures the audit in more detail.

    python benchmarks/wall_clock.py [--repeats 3] [--audit] [--json PATH] [--check]

``--check`` exits 1 when a figure is over its budget.
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
HUB_NAME = "jaxmia-test/does-not-exist"  # as tests/test_datasets.py


def _median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def bootstrap_ci(repeats: int) -> dict:
    import numpy as np

    from jaxmia import metrics

    rng = np.random.default_rng(0)  # 10,000 scores, drawn as tests/test_metrics.py's _data
    y = rng.random(10_000) < 0.5
    y[0], y[1] = True, False
    s = rng.normal(size=10_000) + 0.7 * y
    seconds, times = _median_time(lambda: metrics.bootstrap_ci(y, s, n_boot=200), repeats)
    return dict(seconds=seconds, runs=times, budget_s=2.0)


def wide_csv(repeats: int) -> dict:
    from jaxmia._src.datasets import DatasetError, load

    n = 2 * 10**5
    row = ",".join(["1"] * n)
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "wide.csv"
        path.write_text(",".join(f"f{i}" for i in range(n)) + ",label\n" + f"{row},0\n{row},1\n")

        def refuse():
            try:
                load(path)
            except DatasetError as e:
                assert "more than 16385 columns" in str(e), e
            else:
                raise AssertionError("the wide table was accepted")

        seconds, times = _median_time(refuse, repeats)
    return dict(seconds=seconds, runs=times, budget_s=2.0)


def hub(offline: bool, repeats: int) -> dict:
    code = (
        "from jaxmia.datasets import DatasetError, load\n"
        "try:\n"
        f"    load('hf:{HUB_NAME}')\n"
        "except DatasetError as e:\n"
        "    print(repr(str(e)))\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
        }
        env["HF_HOME"] = str(pathlib.Path(tmp) / "hf-home")  # nothing cached
        if offline:
            env["HF_HUB_OFFLINE"] = "1"

        def run():
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
            )
            assert out.returncode == 0 and "Hugging Face hub" in out.stdout, out.stderr[-2000:]

        seconds, times = _median_time(run, repeats)
    return dict(seconds=seconds, runs=times, budget_s=30.0)


def audit() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        env = {**os.environ, "JAXMIA_COMPILATION_CACHE": str(tmp / "xla")}
        env.pop("XLA_FLAGS", None)
        env["JAXMIA_CPU_DEVICES"] = "2"

        def jaxmia(*args):
            start = time.perf_counter()
            run = [sys.executable, "-m", "jaxmia.cli", *args]
            subprocess.run(run, env=env, check=True, stdout=subprocess.DEVNULL)
            return time.perf_counter() - start

        first = jaxmia("audit", "-o", str(tmp / "a"), "-q")
        rerun = jaxmia("audit", "--pool", str(tmp / "a" / "pool"), "-o", str(tmp / "b"), "-q")
        phases = json.loads((tmp / "b" / "metrics.json").read_text())["timings_s"]
    return dict(
        first_s=first,
        rerun_s=rerun,
        rerun_over_first=rerun / first,
        rerun_train_shadows_s=phases["train_shadows"],
        budget="rerun_over_first < 0.5 and rerun_train_shadows_s < 2.0",
        within=rerun < 0.5 * first and phases["train_shadows"] < 2.0,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--audit", action="store_true", help="also time the default audit")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--check", action="store_true", help="exit 1 when over a budget")
    args = parser.parse_args()
    results: dict = {
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
    }
    figures = {
        "bootstrap_ci": lambda: bootstrap_ci(args.repeats),
        "wide_csv": lambda: wide_csv(args.repeats),
        "hub_offline": lambda: hub(True, args.repeats),
        "hub_unreachable": lambda: hub(False, args.repeats),
    }
    over = []
    print(f"{'figure':18} {'median s':>9} {'budget s':>9}  runs")
    for name, measure in figures.items():
        r = results[name] = measure()
        r["within"] = r["seconds"] < r["budget_s"]
        runs = ", ".join(f"{t:.2f}" for t in r["runs"])
        flag = "" if r["within"] else "  OVER BUDGET"
        print(f"{name:18} {r['seconds']:9.2f} {r['budget_s']:9.1f}  {runs}{flag}")
        over += [] if r["within"] else [name]
    if args.audit:
        r = results["audit"] = audit()
        print(
            f"default audit {r['first_s']:.1f} s, rerun {r['rerun_s']:.1f} s "
            f"({r['rerun_over_first']:.2f} of it; budget 0.5), rerun's train_shadows "
            f"{r['rerun_train_shadows_s']:.2f} s (budget 2)" + ("" if r["within"] else "  OVER")
        )
        over += [] if r["within"] else ["audit"]
    results["load_after"] = os.getloadavg()
    print(f"load average before {results['load_before']}, after {results['load_after']}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 1 if args.check and over else 0


if __name__ == "__main__":
    sys.exit(main())
