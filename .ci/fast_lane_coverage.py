"""Does the fast lane (``pytest -m "not slow"``) exercise every module of ``jaxmia``?

Runs the fast lane under coverage.py (``pip install coverage``; xdist workers and the
subprocesses tests start are measured too, through coverage's ``patch = subprocess``),
then checks every ``jaxmia/**/*.py``: it must have been imported, and, where it defines
functions, at least one of them must have run (a module only imported, its ``def``
lines executed, does not count). Prints one line per module and exits 1 when a module
is not exercised.

    python .ci/fast_lane_coverage.py                 # the fast lane, as CI's workers run it
    python .ci/fast_lane_coverage.py -m slow         # or any other pytest selection
    python .ci/fast_lane_coverage.py --json out.json # also keep coverage's JSON report

Arguments other than ``--json PATH`` go to pytest; without any, ``-m "not slow"``.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxmia"

RC = """\
[run]
source = jaxmia
parallel = true
patch = subprocess
concurrency = thread, multiprocessing
data_file = {data}
"""


def main(argv: list[str]) -> int:
    keep_json = None
    if "--json" in argv:
        i = argv.index("--json")
        keep_json = argv[i + 1]
        argv = argv[:i] + argv[i + 2 :]
    selection = argv or ["-m", "not slow"]
    with tempfile.TemporaryDirectory(prefix="jaxmia-fast-lane-") as tmp:
        tmp = pathlib.Path(tmp)
        rc_file = tmp / "coveragerc"
        rc_file.write_text(RC.format(data=tmp / ".coverage"))
        env = {**os.environ, "COVERAGE_RCFILE": str(rc_file)}
        cov = [sys.executable, "-m", "coverage"]
        start = time.perf_counter()
        tests = subprocess.run(
            [*cov, "run", "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection],
            cwd=ROOT,
            env=env,
        )
        wall = time.perf_counter() - start
        subprocess.run([*cov, "combine", "-q"], cwd=ROOT, env=env, check=True)
        report = tmp / "coverage.json"
        subprocess.run(
            [*cov, "json", "-q", "-o", str(report)],
            cwd=ROOT,
            env=env,
            check=True,
        )
        data = json.loads(report.read_text())
        if keep_json:
            pathlib.Path(keep_json).write_text(json.dumps(data))
    files = {str((ROOT / name).resolve()): entry for name, entry in data["files"].items()}
    missing = []
    print(f"\npytest {' '.join(selection)}: exit {tests.returncode}, {wall:.0f} s under coverage")
    print(f"{'module':44} {'lines':>11} {'functions run':>14}")
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(ROOT))
        entry = files.get(str(path.resolve()))
        if entry is None or not entry["executed_lines"]:
            missing.append(f"{name}: never imported")
            print(f"{name:44} {'-':>11} {'-':>14}  NOT IMPORTED")
            continue
        summary = entry["summary"]
        functions = {k: v for k, v in entry.get("functions", {}).items() if k}
        ran = sum(bool(f["executed_lines"]) for f in functions.values())
        lines = f"{summary['covered_lines']}/{summary['num_statements']}"
        note = ""
        if functions and not ran:
            missing.append(f"{name}: imported, none of its {len(functions)} functions ran")
            note = "  NO FUNCTION RAN"
        print(f"{name:44} {lines:>11} {f'{ran}/{len(functions)}':>14}{note}")
    total = data["totals"]
    print(
        f"total: {total['covered_lines']}/{total['num_statements']} lines "
        f"({total['percent_covered']:.1f}%)"
    )
    if missing:
        print("\nnot exercised:\n  " + "\n  ".join(missing))
        return 1
    print("every module of jaxmia is exercised")
    return tests.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
