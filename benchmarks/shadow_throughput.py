"""Shadow-model training throughput: the vmapped engine against sequential baselines.

Trains the same pool of ``k`` shadow MLPs (balanced keep matrix, Adam 1e-3, batch 128)
four ways and reports wall time, examples per second and achieved GFLOP/s against the
machine's measured float32 matmul peak:

* ``vmap``: ``engine.train(..., mode="vmap")``, the engine (all models in one jitted,
  vmapped epoch function).
* ``sequential-jit``: ``engine.train(..., mode="sequential")``, the same jitted
  per-model epoch function called in a Python loop over models.
* ``sequential-step``: typical hand-written JAX code: Python loops over models, epochs
  and steps around a jitted single training step (one model, one batch), with the
  batches gathered on the host by NumPy indexing.
* ``torch-loop``: the same MLP in PyTorch, one model at a time, as ML Privacy Meter and
  ART train shadow models (skipped when torch is not installed).
* ``torch-vmap``: what a PyTorch user who trains ensembles would write: the k models'
  state stacked (``torch.func.stack_module_state``), one ``functional_call`` vmapped
  over models (``torch.func.vmap`` of ``torch.func.grad_and_value``) on each model's own
  batch of its own members (padded to the longest model's batches with zero weights), and
  Adam written on the stacked parameters (same betas, eps and bias correction as
  ``torch.optim.Adam``; a model whose batch is empty skips its step, as in the engine).

Run ``python benchmarks/shadow_throughput.py --help`` for the options; see
``benchmarks/README.md`` for the results on the reference machine.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.resources
import itertools
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from jaxmia.cli import use_cpu_cores

use_cpu_cores()  # one XLA CPU device per core, as `jaxmia audit` does (before JAX loads)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from jaxmia import (  # noqa: E402
    engine,
    models,
    splits,
)

MODES = ("vmap", "sequential-jit", "sequential-step", "torch-loop", "torch-vmap")
SLOW_MODES = ("sequential-step", "torch-loop")
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
SEED = 0

# name -> (file in jaxmia/data, divisor to [0, 1], hidden widths, classes, epochs, k)
WORKLOADS = {
    "location30": ("location30.npz", 1.0, (128,), 30, 30, 64),
    "digits": ("sklearn_digits.npz", 16.0, (128,), 10, 50, 64),
}


# --------------------------------------------------------------------------- data, FLOPs


def load_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Bundled ``(x float32 in [0, 1], y int32)``, read straight from the npz."""
    file, scale = WORKLOADS[name][:2]
    with importlib.resources.as_file(importlib.resources.files("jaxmia") / "data" / file) as p:
        with np.load(p) as d:
            x, y = d["x"], d["y"]
    return (x.astype(np.float32) / np.float32(scale)), y.astype(np.int32)


def layer_widths(in_features: int, hidden: Sequence[int], classes: int) -> list[int]:
    return [in_features, *hidden, classes]


def train_flops_per_example(widths: Sequence[int]) -> int:
    """Training FLOPs per example: 3 x forward, forward = 2 * sum(in * out) of the layers."""
    forward = 2 * sum(a * b for a, b in itertools.pairwise(widths))
    return 3 * forward


# --------------------------------------------------------------------------- peak matmul


def measure_peak_gflops(sizes: Sequence[int], repeats: int) -> dict[str, float]:
    """Median float32 GFLOP/s of jitted square matmuls for each size: one ``jnp.dot`` on
    one device (``"<n>"``) and, with several devices, one dot per device at once, sharded
    (``"<n>x<devices>"``). The machine's peak is the best of all of them."""
    dot = jax.jit(jnp.dot)
    batched = jax.jit(jnp.matmul)
    d = jax.device_count()
    out = {}
    for n in sizes:
        key_a, key_b = jax.random.split(jax.random.key(n))
        a = jax.random.normal(key_a, (n, n), jnp.float32)
        b = jax.random.normal(key_b, (n, n), jnp.float32)
        cases = [(str(n), dot, (a, b), 1)]
        if d > 1:
            mesh = engine.model_mesh()
            sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("models"))
            pair = [jax.device_put(jnp.broadcast_to(m, (d, n, n)), sharding) for m in (a, b)]
            cases.append((f"{n}x{d}", batched, tuple(pair), d))
        for name, fn, args, count in cases:
            fn(*args).block_until_ready()  # compile and warm up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn(*args).block_until_ready()
                times.append(time.perf_counter() - t0)
            out[name] = count * 2.0 * n**3 / statistics.median(times) / 1e9
    return out


# --------------------------------------------------------------------------- the modes
#
# Every runner trains the k models of one workload once and returns
# (train_seconds, wall_seconds, mean_final_epoch_loss, models_trained, epoch_seconds).
# train_seconds covers the epochs only (no model init, no evaluation); wall_seconds
# covers the whole call; epoch_seconds (engine modes only, else None) is the wall time of
# each epoch summed over models, the first including compilation.

RunResult = tuple[float, float, float, int, Sequence[float] | None]


def engine_runner(mode: str, factory, tx, x, y, keep, epochs: int) -> Callable[[], RunResult]:
    engine_mode = "vmap" if mode == "vmap" else "sequential"

    def run() -> RunResult:
        t0 = time.perf_counter()
        pool = engine.train(
            factory,
            x,
            y,
            keep,
            epochs=epochs,
            batch_size=BATCH_SIZE,
            optimizer=tx,
            seed=SEED,
            mode=engine_mode,
        )
        wall = time.perf_counter() - t0  # train() returns host arrays: everything is done
        loss = float(pool.losses[-1].mean())
        return float(sum(pool.epoch_seconds)), wall, loss, keep.shape[0], pool.epoch_seconds

    return run


def step_runner(factory, tx, x, y, keep, epochs: int, models_timed: int):
    """Typical user code: a jitted single step inside Python loops over models and steps.

    Returns ``(warm_up, run)``: ``warm_up()`` compiles the step for every batch shape the
    run will meet (the full batch and each model's partial last batch) and returns its
    seconds; ``run()`` then trains without compiling.
    """
    graphdef, params0, rest0 = nnx.split(factory(rngs=nnx.Rngs(0)), nnx.Param, ...)

    def loss_fn(params, xb, yb):
        logits = nnx.merge(graphdef, params, rest0)(xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    @jax.jit
    def train_step(params, opt_state, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    members = [np.flatnonzero(row) for row in keep[:models_timed]]

    def warm_up() -> float:
        sizes = {BATCH_SIZE} | {len(m) % BATCH_SIZE for m in members} - {0}
        opt_state = tx.init(params0)
        t0 = time.perf_counter()
        for b in sorted(sizes):
            jax.block_until_ready(train_step(params0, opt_state, x[:b], y[:b]))
        return time.perf_counter() - t0

    def run() -> RunResult:
        t_wall = time.perf_counter()
        train_s, final = 0.0, []
        for i, idx in enumerate(members):
            model = factory(rngs=nnx.Rngs(params=SEED * 1_000_003 + i))
            _, params, _ = nnx.split(model, nnx.Param, ...)
            opt_state = tx.init(params)
            rng = np.random.default_rng([SEED, i])
            jax.block_until_ready((params, opt_state))
            t0 = time.perf_counter()
            for _ in range(epochs):
                order = rng.permutation(idx)
                epoch_losses = []
                for s in range(0, len(order), BATCH_SIZE):
                    batch = order[s : s + BATCH_SIZE]
                    params, opt_state, loss = train_step(params, opt_state, x[batch], y[batch])
                    epoch_losses.append(loss)
            jax.block_until_ready(params)
            train_s += time.perf_counter() - t0
            final.append(float(np.mean(np.asarray(epoch_losses))))
        return train_s, time.perf_counter() - t_wall, float(np.mean(final)), len(members), None

    return warm_up, run


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_device(name: str):
    """``(device, sync)``: the torch device ``name`` (``"auto"``: CUDA where there is one,
    else the CPU) and a function that waits for its queued work (timings end with it)."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    return device, sync


def torch_mlp(widths: Sequence[int]):
    """The benchmark's MLP in PyTorch: tanh between the ``widths`` (a fresh init)."""
    from torch import nn

    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths[:-1]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers)


def torch_runner(
    widths: Sequence[int], x, y, keep, epochs: int, models_timed: int, threads: int,
    device: str = "auto",
):  # fmt: skip
    """PyTorch, one model at a time, batches by tensor indexing (no DataLoader overhead),
    on ``device`` (:func:`torch_device`; the data lives there).

    Returns ``(warm_up, run)`` like :func:`step_runner`.
    """
    import torch
    from torch.nn import functional

    torch.set_num_threads(threads)
    dev, sync = torch_device(device)
    xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y.astype(np.int64)).to(dev)
    members = [torch.from_numpy(np.flatnonzero(row)).to(dev) for row in keep[:models_timed]]

    def warm_up() -> None:
        """A few steps of a throwaway model (thread pool, allocator); nothing compiles."""
        model = torch_mlp(widths).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        for _ in range(10):
            opt.zero_grad(set_to_none=True)
            functional.cross_entropy(model(xt[:BATCH_SIZE]), yt[:BATCH_SIZE]).backward()
            opt.step()
        sync()

    def run() -> RunResult:
        t_wall = time.perf_counter()
        train_s, final = 0.0, []
        for i, idx in enumerate(members):
            torch.manual_seed(SEED * 1_000_003 + i)
            model = torch_mlp(widths).to(dev)
            opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
            gen = torch.Generator().manual_seed(SEED * 1_000_003 + i)
            sync()
            t0 = time.perf_counter()
            for _ in range(epochs):
                order = idx[torch.randperm(len(idx), generator=gen).to(dev)]
                epoch_losses = []
                for s in range(0, len(order), BATCH_SIZE):
                    batch = order[s : s + BATCH_SIZE]
                    opt.zero_grad(set_to_none=True)
                    loss = functional.cross_entropy(model(xt[batch]), yt[batch])
                    loss.backward()
                    opt.step()
                    epoch_losses.append(loss.detach())
            sync()
            train_s += time.perf_counter() - t0
            final.append(float(torch.stack(epoch_losses).mean()))
        return train_s, time.perf_counter() - t_wall, float(np.mean(final)), len(members), None

    return warm_up, run


def torch_vmap_runner(
    widths: Sequence[int], x, y, keep, epochs: int, threads: int, device: str = "auto"
):
    """PyTorch with ``torch.func``: every model at once, vmapped over stacked state, on
    ``device`` (:func:`torch_device`; the data and the batches' indices live there).

    Returns ``(warm_up, run)`` like :func:`step_runner`.
    """
    import torch
    from torch.func import functional_call, grad_and_value, stack_module_state, vmap
    from torch.nn import functional

    torch.set_num_threads(threads)
    dev, sync = torch_device(device)
    xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y.astype(np.int64)).to(dev)
    members = [torch.from_numpy(np.flatnonzero(row)) for row in keep]
    k, longest = len(members), max(len(m) for m in members)
    steps = -(-longest // BATCH_SIZE)

    base = torch_mlp(widths).to("meta")

    def loss_one(params, xb, yb, wb):
        ce = functional.cross_entropy(functional_call(base, params, (xb,)), yb, reduction="none")
        return (ce * wb).sum() / wb.sum().clamp(min=1.0)

    step_grads = vmap(grad_and_value(loss_one))
    b1, b2, eps = 0.9, 0.999, 1e-8

    def train(epochs_run: int) -> tuple[float, float]:
        torch.manual_seed(SEED)
        params, _ = stack_module_state([torch_mlp(widths).to(dev) for _ in range(k)])
        params = {n: p.detach() for n, p in params.items()}
        m = {n: torch.zeros_like(p) for n, p in params.items()}
        v = {n: torch.zeros_like(p) for n, p in params.items()}
        count = torch.zeros(k, device=dev)
        gen = torch.Generator().manual_seed(SEED)
        sync()
        t0, losses = time.perf_counter(), []
        for _ in range(epochs_run):
            idx = torch.zeros(k, steps * BATCH_SIZE, dtype=torch.int64)
            w = torch.zeros(k, steps * BATCH_SIZE)
            for i, own in enumerate(members):
                idx[i, : len(own)] = own[torch.randperm(len(own), generator=gen)]
                w[i, : len(own)] = 1.0
            idx, w = idx.to(dev), w.to(dev)
            for s in range(steps):
                bi, bw = idx[:, s * BATCH_SIZE : (s + 1) * BATCH_SIZE], w[:, s * BATCH_SIZE :]
                bw = bw[:, :BATCH_SIZE]
                grads, loss = step_grads(params, xt[bi], yt[bi], bw)
                active = (bw.sum(1) > 0).float()
                count += active
                c1, c2 = 1 - b1 ** count.clamp(min=1), 1 - b2 ** count.clamp(min=1)
                for n, g in grads.items():
                    shape = (k,) + (1,) * (g.dim() - 1)
                    a = active.view(shape)
                    m[n] = torch.where(a > 0, b1 * m[n] + (1 - b1) * g, m[n])
                    v[n] = torch.where(a > 0, b2 * v[n] + (1 - b2) * g * g, v[n])
                    step = (
                        LEARNING_RATE
                        * (m[n] / c1.view(shape))
                        / ((v[n] / c2.view(shape)).sqrt() + eps)
                    )
                    params[n] = params[n] - a * step
                losses.append(loss.mean())
        sync()
        return time.perf_counter() - t0, float(torch.stack(losses[-steps:]).mean())

    def warm_up() -> None:
        """One epoch of the whole pool (thread pool, allocator); nothing compiles."""
        train(1)

    def run() -> RunResult:
        t_wall = time.perf_counter()
        train_s, final = train(epochs)
        return train_s, time.perf_counter() - t_wall, final, k, None

    return warm_up, run


# --------------------------------------------------------------------------- driver


def warm_up_mode(run: Callable[[], RunResult], warm_up: Callable[[], float | None] | None):
    """Compiles (and warms) one mode; returns ``(first_seconds, compile_epoch_s)``.

    With ``warm_up`` given, ``first_seconds`` is what it returns (compile seconds, or None
    where nothing compiles); otherwise it is the wall time of one full run, and
    ``compile_epoch_s`` the excess of that run's first epoch over its other epochs (the
    engine's epoch-function compilation alone).
    """
    if warm_up is not None:
        return warm_up(), None
    _, wall, _, _, epochs = run()
    if epochs is not None and len(epochs) > 1:
        return wall, max(epochs[0] - statistics.median(epochs[1:]), 0.0)
    return wall, None


def summarise(runs: Sequence[RunResult], first: float | None, from_full_run: bool, epoch_c):
    """Median over the timed runs; ``compile_s`` = warm-up run wall minus median wall."""
    train = [r[0] for r in runs]
    wall = statistics.median(r[1] for r in runs)
    if from_full_run:
        compile_s = max(first - wall, 0.0)
    else:
        compile_s = first
    return {
        "seconds": statistics.median(train),
        "seconds_all": train,
        "wall_s": wall,
        "compile_s": compile_s,
        "compile_epoch_s": epoch_c,
        "final_loss": runs[-1][2],
        "models_timed": runs[-1][3],
        "repeats": len(runs),
    }


def run_workload(name: str, args, modes: Sequence[str], peak: float) -> dict:
    """Warms up every mode, then times them in interleaved rounds.

    Round ``r`` runs every mode that still needs an ``r``-th repeat, so load from other
    processes on a shared machine falls on all modes alike rather than on one.
    """
    file, _, hidden, classes, epochs, k = WORKLOADS[name]
    k = args.k if args.k is not None else k
    epochs = args.epochs if args.epochs is not None else epochs
    x, y = load_data(name)
    n, d = x.shape
    keep = splits.balanced_keep(k, n, seed=SEED)
    counts = keep.sum(axis=1)
    widths = layer_widths(d, hidden, classes)
    flops_ex = train_flops_per_example(widths)
    factory = models.mlp(hidden, classes, d, activation="tanh")
    tx = optax.adam(LEARNING_RATE)  # one object: the engine's compiled functions are reused
    slow_k = min(k, args.slow_models) if args.slow_models else k
    config = {
        "data": file,
        "n": int(n),
        "k": int(k),
        "epochs": int(epochs),
        "batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE,
        "layers": widths,
        "activation": "tanh",
        "members_mean": float(counts.mean()),
        "members_min": int(counts.min()),
        "members_max": int(counts.max()),
        "train_flops_per_example": flops_ex,
        "total_examples": int(counts.sum()) * epochs,
        "total_gflop": flops_ex * int(counts.sum()) * epochs / 1e9,
    }
    print(
        f"\n== {name}: MLP {'-'.join(map(str, widths))}, k={k}, epochs={epochs}, "
        f"~{counts.mean():.0f} members/model",
        flush=True,
    )
    results: dict[str, dict] = {}
    plan = {}  # mode -> (run, repeats, first, full-run warm-up?, compile_epoch_s)
    for mode in modes:
        slow = mode in SLOW_MODES
        repeats = args.slow_repeats if slow else args.repeats
        timed_k = slow_k if slow else k
        if mode == "sequential-jit" and args.sequential_models:  # a loop: linear in models
            timed_k = min(k, args.sequential_models)
        if mode in ("vmap", "sequential-jit"):
            run, warm = engine_runner(mode, factory, tx, x, y, keep[:timed_k], epochs), None
        elif mode == "sequential-step":
            warm, run = step_runner(factory, tx, x, y, keep, epochs, timed_k)
        elif mode == "torch-vmap" and torch_available():
            warm, run = torch_vmap_runner(
                widths, x, y, keep, epochs, args.torch_threads, args.torch_device
            )
        elif torch_available():
            warm, run = torch_runner(
                widths, x, y, keep, epochs, timed_k, args.torch_threads, args.torch_device
            )
        else:
            print(f"  {mode}: skipped (torch is not installed)", flush=True)
            results[mode] = {"skipped": "torch is not installed"}
            continue
        t0 = time.perf_counter()
        first, epoch_c = warm_up_mode(run, warm)
        print(f"  warm-up {mode:16s} {time.perf_counter() - t0:8.2f} s", flush=True)
        plan[mode] = (run, repeats, first, warm is None, epoch_c)
    runs: dict[str, list[RunResult]] = {mode: [] for mode in plan}
    load: dict[str, list] = {mode: [] for mode in plan}
    for rnd in range(max((p[1] for p in plan.values()), default=0)):
        for mode, (run, repeats, *_) in plan.items():
            if rnd < repeats:
                runs[mode].append(run())
                load[mode].append(load_average())
                print(
                    f"  round {rnd + 1} {mode:16s} {runs[mode][-1][0]:8.2f} s "
                    f"(load {load[mode][-1]})",
                    flush=True,
                )
    for mode, (_, _, first, full, epoch_c) in plan.items():
        r = summarise(runs[mode], first, full, epoch_c)
        r["load_average_after_runs"] = load[mode]
        measured = r["seconds"]
        examples = int(counts[: r["models_timed"]].sum()) * epochs
        r["seconds_measured"] = measured
        r["extrapolated"] = r["models_timed"] < k
        if r["extrapolated"]:  # linear in the number of models, by member count
            r["seconds"] = measured * int(counts.sum()) * epochs / examples
        r["examples_per_s"] = examples / measured
        r["gflops_achieved"] = flops_ex * examples / measured / 1e9
        r["fraction_of_peak"] = r["gflops_achieved"] / peak
        results[mode] = r
    results = {mode: results[mode] for mode in modes if mode in results}
    speedups = {}
    if "seconds" in results.get("vmap", {}):
        for mode, r in results.items():
            if mode != "vmap" and "seconds" in r:
                r["speedup_vmap_vs"] = r["seconds"] / results["vmap"]["seconds"]
                speedups[mode] = r["speedup_vmap_vs"]
    return {"config": config, "modes": results, "speedup_vmap_vs": speedups}


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: other work on the machine skews every timing."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    def version(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(dev) for dev in jax.devices()],
        "versions": {p: version(p) for p in ("jax", "jaxlib", "flax", "optax", "numpy", "torch")},
    }


def format_table(out: dict) -> str:
    header = (
        f"{'workload':11s} {'mode':16s} {'seconds':>9s} {'compile_s':>9s} {'models':>6s} "
        f"{'examples/s':>11s} {'GFLOP/s':>8s} {'% peak':>7s} {'vmap x':>7s} {'loss':>7s}"
    )
    lines = [f"peak float32 matmul: {out['peak_gflops']:.1f} GFLOP/s", header, "-" * len(header)]
    for name, w in out["workloads"].items():
        for mode, r in w["modes"].items():
            if "skipped" in r:
                lines.append(f"{name:11s} {mode:16s} skipped: {r['skipped']}")
                continue
            comp = "-" if r["compile_s"] is None else f"{r['compile_s']:.2f}"
            models = f"{r['models_timed']}/{w['config']['k']}"
            speed = f"{r['speedup_vmap_vs']:.2f}" if "speedup_vmap_vs" in r else "1.00"
            if mode != "vmap" and "speedup_vmap_vs" not in r:
                speed = "-"
            lines.append(
                f"{name:11s} {mode:16s} {r['seconds']:9.3f} {comp:>9s} {models:>6s} "
                f"{r['examples_per_s']:11.4g} {r['gflops_achieved']:8.2f} "
                f"{100 * r['fraction_of_peak']:6.1f}% {speed:>7s} {r['final_loss']:7.4f}"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", choices=sorted(WORKLOADS), help="one workload (default: all)")
    p.add_argument("--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES))
    p.add_argument("--repeats", type=int, default=3, help="timed runs of vmap, sequential-jit")
    p.add_argument("--slow-repeats", type=int, default=1, help="timed runs of the slow modes")
    p.add_argument(
        "--slow-models",
        type=int,
        default=None,
        help="time only this many models in the slow modes and extrapolate (default: all)",
    )
    p.add_argument(
        "--sequential-models",
        type=int,
        default=None,
        help="time only this many models in sequential-jit and extrapolate (default: all)",
    )
    p.add_argument(
        "--torch-device",
        default="auto",
        help="device of the torch modes: cpu, cuda, ... (default: cuda where there is one)",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch.set_num_threads for torch-loop (default: all CPUs)",
    )
    p.add_argument("--k", type=int, help="override the number of models")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--quick", action="store_true", help="tiny run: k=4, epochs=1, repeats=1")
    p.add_argument("--json", type=pathlib.Path, help="write all results to this file")
    args = p.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        p.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    args.modes = [m for m in MODES if m in modes]
    if args.quick:
        args.k = args.k or 4
        args.epochs = args.epochs or 1
        args.repeats = args.slow_repeats = 1
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    load_start = load_average()
    if load_start and load_start[0] > 0.5 * (os.cpu_count() or 1):
        print(
            f"warning: load average {load_start[0]:.2f} on {os.cpu_count()} CPUs; other work "
            "on the machine skews the timings (torch-loop worst: its OpenMP threads spin)",
            flush=True,
        )
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.perf_counter()
    sizes, peak_repeats = ((256, 512), 2) if args.quick else ((1024, 2048, 4096), 5)
    peak_by_size = measure_peak_gflops(sizes, peak_repeats)
    peak = max(peak_by_size.values())
    print(f"peak float32 matmul: {peak:.1f} GFLOP/s ({peak_by_size})", flush=True)
    names = [args.workload] if args.workload else list(WORKLOADS)
    out = {
        "command": [sys.executable, *(sys.argv if argv is None else ["<main>", *argv])],
        "date": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "modes": args.modes,
            "repeats": args.repeats,
            "slow_repeats": args.slow_repeats,
            "slow_models": args.slow_models,
            "sequential_models": args.sequential_models,
            "torch_device": args.torch_device,
            "torch_threads": args.torch_threads,
            "quick": args.quick,
            "seconds": "median training time of the k models over all epochs; "
            "excludes compilation, model init and evaluation",
        },
        "load_average_start": load_start,
        "peak_gflops": peak,
        "peak_gflops_by_size": peak_by_size,
        "workloads": {name: run_workload(name, args, args.modes, peak) for name in names},
    }
    out["load_average_end"] = load_average()
    out["total_runtime_s"] = time.perf_counter() - t0
    print("\n" + format_table(out), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return out


if __name__ == "__main__":
    main()
