"""The example notebooks run top to bottom, and are stored without outputs."""

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = (
    "01_quickstart.ipynb",
    "02_audit_your_own_model.ipynb",
    "03_defence_study.ipynb",
)


def _read(name):
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_clean(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [], f"{name}: commit notebooks with outputs cleared"
        assert cell.execution_count is None


@pytest.fixture(scope="module")
def shared_compilation_cache(tmp_path_factory):
    """One persistent XLA cache for the three notebooks' kernels, which compile many of
    the same programs (results are the same whether a program is compiled or loaded)."""
    return str(tmp_path_factory.mktemp("notebook-xla"))


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch, shared_compilation_cache):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", shared_compilation_cache)
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    nb = _read(name)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "stream" and o.name == "stdout" for o in outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was shown"
    # Reports go to temporary directories, never to the working directory.
    assert list(tmp_path.iterdir()) == []
