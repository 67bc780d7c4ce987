"""Scaling sweep of the shadow engine: throughput and peak memory versus k and width.

Every point runs in its own process, so that its peak resident memory (``ru_maxrss``) is
its own and the XLA device count can differ between points. Modes:

* ``vmap``: the engine as shipped (``chunk_size="auto"``, models sharded over one XLA
  CPU device per core);
* ``vmap-1chunk``: the engine with all ``k`` models in one chunk (``chunk_size=None``);
* ``vmap-1dev``: the engine on a single XLA device (``JAXMIA_CPU_DEVICES=1``);
* ``sequential-jit``: the same jitted per-model epoch function in a Python loop.

Sweeps: ``k`` in 1, 4, 16, 64, 256 (Location-30 MLP 446-128-30), MLP width 64..512 at
``k = 64``, and a CNN workload on the first 2000 images of the bundled MNIST test
split. Steady-state seconds per epoch are the median over epochs after the first; the
first epoch's excess is reported as ``compile_s``.

    python benchmarks/scaling_sweep.py --json benchmarks/results/scaling-cpu-2core.json \\
        --plot benchmarks/results/scaling-cpu-2core.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

MODES = ("vmap", "vmap-1chunk", "vmap-1dev", "sequential-jit")


def run_point(workload: str, mode: str, k: int, width: int, epochs: int) -> dict:
    """Trains one pool in this process and returns its timings (called in a child)."""
    if mode == "vmap-1dev":
        os.environ["JAXMIA_CPU_DEVICES"] = "1"
    from jaxmia.cli import use_cpu_cores

    use_cpu_cores()
    import jax
    import numpy as np

    from jaxmia import datasets, engine, models, splits

    if workload == "mnist-cnn":
        ds = datasets.load("mnist").subset(np.arange(2000))
        factory = models.cnn(ds.input_shape, ds.num_classes, channels=(16, 32), hidden=width)
        h, w, _ = ds.input_shape
        fwd = 2 * (h * w * 16 * 9 + (h // 2) * (w // 2) * 32 * 16 * 9)
        fwd += 2 * ((h // 4) * (w // 4) * 32 * width + width * ds.num_classes)
    else:
        ds = datasets.load(workload)
        d = int(np.prod(ds.input_shape))
        factory = models.mlp((width,), ds.num_classes, d)
        fwd = 2 * (d * width + width * ds.num_classes)
    keep = (
        splits.balanced_keep(k, ds.n, seed=0)
        if k > 1
        else np.random.default_rng(0).random((1, ds.n)) < 0.5
    )
    chunk = {"vmap": "auto", "vmap-1chunk": None, "vmap-1dev": "auto"}.get(mode, None)
    pool = engine.train(
        factory,
        ds.x,
        ds.y,
        keep,
        epochs=epochs,
        batch_size=128,
        seed=0,
        chunk_size=chunk,
        mode="sequential" if mode == "sequential-jit" else "vmap",
    )
    steady = float(np.median(pool.epoch_seconds[1:]))
    examples = float(keep.sum())  # per epoch, over all models
    return {
        "workload": workload,
        "mode": mode,
        "k": k,
        "width": width,
        "epochs": epochs,
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
        "chunk": engine.auto_chunk_size(factory, ds.input_shape, 128, k)
        if chunk == "auto"
        else chunk,
        "epoch_s": steady,
        "compile_s": float(pool.epoch_seconds[0] - steady),
        "examples_per_s": examples / steady,
        "gflops": 3 * fwd * examples / steady / 1e9,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child(spec: dict) -> dict:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    out = subprocess.run(
        [sys.executable, __file__, "--point", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"point {spec} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def plan(
    quick: bool,
    ks: tuple[int, ...] | None = None,
    modes: tuple[str, ...] = MODES,
    cnn_k: int = 4,
    widths: tuple[int, ...] = (64, 256, 512),
) -> list[dict]:
    """The points: ``k`` in ``ks`` (default 1, 4, 16, 64, 256; 1, 4 with ``quick``) for
    each of ``modes`` on Location-30, then (unless ``quick``) the MLP ``widths`` at
    ``k = 64`` and the MNIST CNN at ``k = cnn_k`` (none for 0)."""
    points = []
    ks = ks or ((1, 4) if quick else (1, 4, 16, 64, 256))
    epochs = 2 if quick else 4
    for k in ks:
        for mode in modes:
            if mode == "vmap-1chunk" and k > 64:
                continue  # 256 models in one chunk: the memory figure of the 64 case says why
            points.append(dict(workload="location30", mode=mode, k=k, width=128, epochs=epochs))
    if not quick:
        for width in widths:
            for mode in ("vmap", "sequential-jit"):
                if mode in modes:
                    points.append(
                        dict(workload="location30", mode=mode, k=64, width=width, epochs=4)
                    )
        for mode in ("vmap", "vmap-1chunk", "sequential-jit"):
            if mode in modes and cnn_k:
                points.append(dict(workload="mnist-cnn", mode=mode, k=cnn_k, width=64, epochs=3))
    return points


def table(rows: list[dict]) -> str:
    header = (
        "| workload | k | width | mode | devices | chunk | s/epoch | examples/s | GFLOP/s "
        "| vs sequential-jit | peak RSS MB |"
    )
    lines = [header, "|" + "---|" * 11]
    seq = {
        (r["workload"], r["k"], r["width"]): r["epoch_s"]
        for r in rows
        if r["mode"] == "sequential-jit"
    }
    for r in rows:
        base = seq.get((r["workload"], r["k"], r["width"]))
        ratio = f"{base / r['epoch_s']:.2f}x" if base else "-"
        lines.append(
            f"| {r['workload']} | {r['k']} | {r['width']} | {r['mode']} | {r['devices']} "
            f"| {r['chunk'] or 'all'} | {r['epoch_s']:.3f} | {r['examples_per_s']:.3g} "
            f"| {r['gflops']:.1f} | {ratio} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    for mode in MODES:
        pts = sorted(
            (r["k"], r["examples_per_s"])
            for r in rows
            if r["mode"] == mode and r["workload"] == "location30" and r["width"] == 128
        )
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=mode)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("number of models k")
    ax.set_ylabel("training examples / s")
    where = f"{os.cpu_count()}-core CPU" if rows[0].get("backend", "cpu") == "cpu" else "GPU"
    ax.set_title(f"Location-30 MLP 446-128-30, {where}")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--point", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--plot", help="write throughput versus k here (PNG)")
    parser.add_argument("--quick", action="store_true", help="k in 1, 4 only, 2 epochs")
    parser.add_argument("--ks", help="comma list of k (default 1,4,16,64,256)")
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES)
    )
    parser.add_argument("--cnn-k", type=int, default=4, help="models of the CNN points (0: none)")
    parser.add_argument("--widths", default="64,256,512", help="MLP widths at k = 64")
    args = parser.parse_args(argv)
    if args.point:
        print(json.dumps(run_point(**json.loads(args.point))))
        return 0
    modes = tuple(m for m in args.modes.split(",") if m)
    if set(modes) - set(MODES):
        parser.error(f"unknown mode(s) {sorted(set(modes) - set(MODES))}; choose from {MODES}")
    ks = tuple(int(k) for k in args.ks.split(",")) if args.ks else None
    widths = tuple(int(w) for w in args.widths.split(",") if w)
    rows = []
    for spec in plan(args.quick, ks, modes, args.cnn_k, widths):
        t0 = time.perf_counter()
        rows.append(child(spec))
        print(
            f"{spec} -> {rows[-1]['epoch_s']:.3f} s/epoch ({time.perf_counter() - t0:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    print(table(rows))
    if args.json:
        meta = {
            "command": [os.path.basename(sys.executable), *sys.argv],
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
