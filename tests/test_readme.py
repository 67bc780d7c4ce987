"""README.md's library example runs as written (in a temporary directory)."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_library_example_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    example = blocks[0]
    assert "engine.train(" in example and "audit.run(" in example
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["logits"].shape == (64, 5010, 30)
    assert namespace["pool"].k == 64
    assert "lira_online" in capsys.readouterr().out
    assert (tmp_path / "audit-out" / "metrics.json").exists()
