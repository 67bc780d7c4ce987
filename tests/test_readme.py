"""README.md's library examples run as written (in a temporary directory): the engine
and audit example, then LiRA and RMIA on its logits with jax.vmap over targets."""

import pathlib
import re

import pytest

pytestmark = pytest.mark.slow  # the README's example trains 64 Location-30 shadows, about a minute

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_library_examples_run_as_written(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    example, on_arrays = blocks[0], blocks[1]
    assert "engine.train(" in example and "audit.run(" in example
    assert "attacks.lira_online" in on_arrays and "jax.vmap" in on_arrays
    assert len(on_arrays.strip().splitlines()) <= 12  # imports + under ten lines of attack
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["logits"].shape == (64, 5010, 30)
    assert namespace["pool"].k == 64
    assert "lira_online" in capsys.readouterr().out
    assert (tmp_path / "audit-out" / "metrics.json").exists()
    exec(compile(on_arrays, "README.md", "exec"), namespace)
    lira_auc, rmia_auc = map(float, capsys.readouterr().out.split())
    assert lira_auc > 0.85 and rmia_auc > 0.85, (lira_auc, rmia_auc)  # model 0 leaks
    assert namespace["loo"].shape == (64, 5010)
