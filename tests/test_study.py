"""Studies (jaxmia/study.py): one factor varied, a table and a plot written."""

import json

import numpy as np
import pytest

from jaxmia import study
from jaxmia._src import audit, datasets

STUDY_BASE = audit.AuditConfig(
    dataset="digits", num_shadows=2, epochs=2, n_boot=0, attacks=("loss", "lira_offline")
)


@pytest.mark.parametrize(
    "factor,values",
    [
        ("shadows", [2, 4]),
        ("epochs", [1, 3]),
        pytest.param("width", [16, 32], marks=pytest.mark.slow),
        pytest.param("classes", [2, 5], marks=pytest.mark.slow),
        pytest.param("dp_noise", ["none", 2.0], marks=pytest.mark.slow),
    ],
)
def test_each_study_writes_its_table_and_plot(factor, values, tmp_path):
    result = study.run(factor, values, STUDY_BASE)
    written = study.write(result, tmp_path)
    data = json.loads((tmp_path / "study.json").read_text())
    assert data["factor"] == factor and len(data["rows"]) == 2 * len(values)
    assert (tmp_path / "study.csv").read_text().count("\n") == 2 * len(values) + 1
    assert (tmp_path / "study.png").stat().st_size > 1000 and "plot" in written
    assert {r["attack"] for r in data["rows"]} == {"loss", "lira_offline"}
    if factor == "dp_noise":
        eps = [r["epsilon"] for r in data["rows"]]
        assert eps[0] is None and eps[-1] > 0
    assert factor in study.table(result)


def test_study_refuses_bad_factor():
    with pytest.raises(study.StudyError, match="unknown factor"):
        study.parse_values("colour", [1])
    with pytest.raises(study.StudyError, match="bad value"):
        study.parse_values("shadows", ["many"])


@pytest.mark.parametrize("values", ["3,,4", "3,4,", ",3"])
def test_study_refuses_an_empty_value_in_one_line(values):
    """Issue 23: ``--values 3,,4`` ran the study over 3 and 4, the empty item dropped."""
    with pytest.raises(study.StudyError) as e:
        study.parse_values("epochs", values, STUDY_BASE)
    assert (
        str(e.value) == f"--values: empty item in {values!r}; separate the items by single commas"
    )


def test_a_class_subset_keeps_the_label_column():
    ds = datasets.Dataset(np.zeros((4, 1), np.float32), np.arange(4), 4, "t", label_column="y")
    subset = study._subset_classes(ds, 2)
    assert (subset.n, subset.num_classes, subset.name, subset.label_column) == (2, 2, "t[:2]", "y")
