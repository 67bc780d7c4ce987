"""The default audit, as the README's quick start runs it (about 20 s on 2 cores), its rerun
from the pool it saved, and the committed runs in ``results/`` reproduced from it. How
long they take is measured by ``benchmarks/wall_clock.py --audit`` (the rerun under half
of the first run) and ``benchmarks/audit_timing.py``, not asserted here."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "results"


def jaxmia(args, env) -> str:
    """Runs ``jaxmia ARGS``; its log (stderr)."""
    run = [sys.executable, "-m", "jaxmia.cli", *args]
    return subprocess.run(run, env=env, check=True, stderr=subprocess.PIPE, text=True).stderr


def assert_reproduces(name: str, got: dict, committed: dict) -> None:
    """``got`` (an attack's metrics) equals the committed ``committed`` bit for bit: the
    library redesign (issue 12) changed no arithmetic of any attack."""
    assert got == committed, name


def committed(run: str) -> dict:
    return json.loads((RESULTS / run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def xla_cache(tmp_path_factory) -> str:
    """A compilation cache of this module's own: empty for the first (timed) audit, whose
    programs the later ones reuse where their shapes agree."""
    return str(tmp_path_factory.mktemp("xla"))


@pytest.mark.slow
def test_default_audit_reproduces_the_committed_runs_and_reruns_from_its_pool(tmp_path, xla_cache):
    env = {**os.environ, "JAXMIA_COMPILATION_CACHE": xla_cache}
    env.pop("XLA_FLAGS", None)  # as a user runs it on the 2-core machine that made results/
    env["JAXMIA_CPU_DEVICES"] = "2"  # the floats depend on the device layout
    jaxmia(["audit", "-o", str(tmp_path / "a"), "-q"], env)
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["config"]["num_shadows"] == 64 and m["config"]["dataset"] == "location30"
    assert m["n_candidates"] == 5010
    attacks = m["attacks"]
    reference = committed("location30-default")["attacks"]
    assert attacks.keys() == reference.keys()
    for name in reference:
        assert_reproduces(name, attacks[name], reference[name])

    pool = str(tmp_path / "a" / "pool")
    log = jaxmia(["audit", "--pool", pool, "-o", str(tmp_path / "b")], env)  # not quiet: its log
    again = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert again["attacks"] == attacks  # every metric, bit for bit
    # read, not trained: the log names the pool's 64 models read, and no training of them
    assert f"reading the 64 shadow models from {pool}" in log, log[-2000:]
    assert "64/64 shadow models read from the pool" in log and "training 64" not in log

    # leave-one-out (results/location30-leave-one-out, 8 targets) serves each target from
    # the same pool; a target's metrics depend on it alone, so the first two reproduce
    jaxmia(["audit", "--pool", pool, "--targets", "2", "-o", str(tmp_path / "c"), "-q"], env)
    loo = json.loads((tmp_path / "c" / "metrics.json").read_text())["per_target"]
    reference = committed("location30-leave-one-out")["per_target"]
    assert loo.keys() == reference.keys()
    for name, per_target in reference.items():
        for t in range(2):
            assert_reproduces(name, loo[name][t], per_target[t])
    print("default audit: " + ", ".join(f"{k} AUC {v['auc']:.3f}" for k, v in attacks.items()))


@pytest.mark.slow
def test_the_four_shadow_audit_reproduces_its_committed_run(tmp_path, xla_cache):
    env = {**os.environ, "JAXMIA_COMPILATION_CACHE": xla_cache}
    env.pop("XLA_FLAGS", None)
    env["JAXMIA_CPU_DEVICES"] = "2"
    jaxmia(["audit", "--shadows", "4", "-o", str(tmp_path / "a"), "-q"], env)
    attacks = json.loads((tmp_path / "a" / "metrics.json").read_text())["attacks"]
    reference = committed("location30-4-shadows")["attacks"]
    assert attacks.keys() == reference.keys()
    for name in reference:
        assert_reproduces(name, attacks[name], reference[name])
