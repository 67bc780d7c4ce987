"""How an audit's phases grow with the number of records n (issue 17, item 5).

Location-30 (5,010 records of 446 binary features) is tiled to n records: copy t > 0 of
every record flips each feature with probability ``--flip`` (seeded), labels unchanged.
Each n is audited by ``jaxmia audit --dataset tiled.npz --shadows K --n-boot B`` in its
own process (a fresh compilation cache per run unless ``--warm``), and the per-phase
timings are read from its ``metrics.json``; the peak resident memory is the whole
process's (``/usr/bin/time -f %M``: phases are not measured apart).

    python benchmarks/scaling_n.py --sizes 5010,10020,25050,50100 --shadows 16 \\
        --out benchmarks/results/scaling-n-cpu-2core.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiled(n: int, flip: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(x (n, 446), y (n,))``: Location-30 tiled to ``n`` records, every copy after the
    first with each binary feature flipped with probability ``flip``."""
    with np.load(ROOT / "jaxmia" / "data" / "location30.npz") as data:
        x0, y0 = data["x"].astype(np.float32), data["y"].astype(np.int32)
    rng = np.random.default_rng(seed)
    copies = -(-n // x0.shape[0])
    xs, ys = [x0], [y0]
    for _ in range(1, copies):
        flips = rng.random(x0.shape) < flip
        xs.append(np.where(flips, 1.0 - x0, x0).astype(np.float32))
        ys.append(y0)
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def audit(data: pathlib.Path, shadows: int, out: pathlib.Path, cache: str, n_boot: int) -> dict:
    """One ``jaxmia audit`` of ``data`` in its own process: wall time, peak memory and the
    per-phase timings of its ``metrics.json``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAXMIA_COMPILATION_CACHE": cache}
    command = [sys.executable, "-m", "jaxmia.cli", "audit", "--dataset", str(data), "--shadows",
               str(shadows), "--n-boot", str(n_boot), "-q", "-o", str(out)]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *command], env=env, check=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    peak_kib = int(done.stderr.strip().splitlines()[-1])
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "phases_s": metrics["timings_s"],
        "attacks_s": metrics.get("timings_s_by_attack", {}),
        "lira_online_auc": metrics["attacks"].get("lira_online", {}).get("auc"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5010,10020,25050,50100")
    parser.add_argument("--shadows", type=int, default=16)
    parser.add_argument("--flip", type=float, default=0.02)
    parser.add_argument("--warm", action="store_true", help="one compilation cache for all")
    parser.add_argument("--n-boot", type=int, default=0, help="bootstrap resamples (metrics)")
    parser.add_argument("--out", default="benchmarks/results/scaling-n-cpu-2core.json")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = pathlib.Path(tmp)
        for i, n in enumerate(sizes):  # a size may repeat: each run on its own
            x, y = tiled(n, args.flip)
            data = tmp_path / f"location30x{n}.npz"
            np.savez(data, x=x, y=y)
            cache = str(tmp_path / ("xla" if args.warm else f"xla-{i}"))
            out = tmp_path / f"audit-{i}"
            row = {"n": n, **audit(data, args.shadows, out, cache, args.n_boot)}
            results.append(row)
            phases = ", ".join(f"{k} {v:.2f}" for k, v in row["phases_s"].items())
            print(f"n={n}: {row['wall_s']:.1f} s, peak {row['peak_rss_mib']:.0f} MiB; {phases}")
    record = {
        "command": " ".join([os.path.relpath(__file__, ROOT), *(argv or sys.argv[1:])]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "shadows": args.shadows,
        "flip": args.flip,
        "n_boot": args.n_boot,
        "compilation_cache": "shared" if args.warm else "cold per run",
        "peak_memory": "the audit process's peak RSS (/usr/bin/time %M); not per phase",
        "results": results,
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
