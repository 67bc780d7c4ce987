"""Smoke test of benchmarks/shadow_throughput.py: a tiny run of every mode writes its JSON."""

import importlib.util
import json
import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "shadow_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("shadow_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_run_writes_positive_results(bench, tmp_path):
    modes = ["vmap", "sequential-jit", "sequential-step"]
    if bench.torch_available():
        modes.append("torch-loop")
    path = tmp_path / "bench.json"
    args = ["--quick", "--k", "2", "--workload", "digits", "--modes", ",".join(modes)]
    bench.main([*args, "--json", str(path)])

    out = json.loads(path.read_text())
    assert out["peak_gflops"] > 0
    for key in ("platform", "cpu_count", "versions"):
        assert key in out["machine"]
    for key in ("command", "date"):
        assert out[key]
    work = out["workloads"]["digits"]
    assert work["config"]["k"] == 2 and work["config"]["epochs"] == 1
    assert list(work["modes"]) == modes
    for mode, r in work["modes"].items():
        for key in ("seconds", "examples_per_s", "gflops_achieved", "fraction_of_peak"):
            assert r[key] > 0, (mode, key)
        assert r["models_timed"] == 2
        if mode in ("vmap", "sequential-jit", "sequential-step"):
            assert r["compile_s"] >= 0
        if mode != "vmap":
            assert r["speedup_vmap_vs"] > 0
            assert work["speedup_vmap_vs"][mode] == r["speedup_vmap_vs"]
