"""README.md's library examples run as written (in a temporary directory): the engine
and audit example, then LiRA and RMIA on its logits with jax.vmap over targets.

They run in a Python process of their own, as a reader runs them: it compiles at XLA's
default level, where the example's 64 Location-30 models train in about half the time
they take in the test process (tests/conftest.py compiles unoptimised)."""

import json
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # the README's example trains 64 Location-30 shadows, about 30 s

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"

BETWEEN = "--- the example on arrays ---"

RUN = f"""
import json, pathlib, re, sys

blocks = re.findall(r"```python\\n(.*?)```", pathlib.Path(sys.argv[1]).read_text(), re.S)
namespace = {{}}
exec(compile(blocks[0], "README.md", "exec"), namespace)
print({BETWEEN!r}, flush=True)
exec(compile(blocks[1], "README.md", "exec"), namespace)
shapes = {{name: list(namespace[name].shape) for name in ("logits", "loo")}}
print(json.dumps({{**shapes, "k": namespace["pool"].k}}))
"""
"""Runs the README's first two Python blocks in one namespace, then prints the shapes
and the pool size the test checks."""


def test_readme_library_examples_run_as_written(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    example, on_arrays = blocks[0], blocks[1]
    assert "engine.train(" in example and "audit.run(" in example
    assert "attacks.lira_online" in on_arrays and "jax.vmap" in on_arrays
    assert len(on_arrays.strip().splitlines()) <= 12  # imports + under ten lines of attack
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(README)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = done.stdout.split(BETWEEN + "\n")
    assert "lira_online" in first  # the audit's table
    assert (tmp_path / "audit-out" / "metrics.json").exists()
    aucs, facts = second.strip().splitlines()
    lira_auc, rmia_auc = map(float, aucs.split())
    assert lira_auc > 0.85 and rmia_auc > 0.85, (lira_auc, rmia_auc)  # model 0 leaks
    assert json.loads(facts) == {"logits": [64, 5010, 30], "loo": [64, 5010], "k": 64}
