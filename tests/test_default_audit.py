"""The default audit, as the README's quick start runs it (about 40 s on 2 cores), and its
rerun from the pool it saved."""

import json
import os
import subprocess
import sys
import time

import pytest


def jaxmia(args, env) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jaxmia.cli", *args], env=env, check=True)
    return time.perf_counter() - start


@pytest.mark.slow
def test_default_audit_on_location30_and_its_rerun_from_the_saved_pool(tmp_path):
    env = {**os.environ, "JAXMIA_COMPILATION_CACHE": str(tmp_path / "xla")}
    env.pop("XLA_FLAGS", None)  # as a user runs it: one XLA device per core
    first = jaxmia(["audit", "-o", str(tmp_path / "a"), "-q"], env)
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["config"]["num_shadows"] == 64 and m["config"]["dataset"] == "location30"
    assert m["n_candidates"] == 5010
    attacks = m["attacks"]
    assert attacks["shokri"]["auc"] >= 0.80, attacks["shokri"]["auc"]
    assert attacks["loss"]["auc"] >= 0.75, attacks["loss"]["auc"]
    assert attacks["lira_online"]["auc"] >= 0.90, attacks["lira_online"]["auc"]

    pool = str(tmp_path / "a" / "pool")
    rerun = jaxmia(["audit", "--pool", pool, "-o", str(tmp_path / "b"), "-q"], env)
    again = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert again["attacks"] == attacks  # every metric, bit for bit
    assert again["timings_s"]["train_shadows"] < 2.0  # read, not trained
    assert rerun < 0.5 * first, (first, rerun)
    print(
        f"default audit: {first:.1f} s; rerun from its pool: {rerun:.1f} s; "
        + ", ".join(f"{k} AUC {v['auc']:.3f}" for k, v in attacks.items())
    )
