"""Several studies in one figure (jaxmia/multiples.py, ``jaxmia plot-studies``): small
multiples from study directories, and one-line errors for a missing directory or
study.json."""

import os

import pytest

from jaxmia import multiples, study
from jaxmia._src import audit
from tests.helpers import run_cli

pytest.importorskip("matplotlib")


def _study(factor, values, aucs):
    """A StudyResult of two attacks without running audits (the figure reads only rows)."""
    rows = [
        {
            "value": v,
            "attack": attack,
            "auc": auc - 0.01 * i,
            "tpr@0.001": (auc - 0.5) / 10,
            "tpr@0.01": (auc - 0.5) / 5,
            "target_train_acc": 1.0,
            "target_test_acc": 0.6,
            "epsilon": None,
            "seconds": 1.0,
        }
        for v, auc in zip(values, aucs, strict=True)
        for i, attack in enumerate(("lira_online", "rmia_online"))
    ]
    return study.StudyResult(factor, list(values), rows, audit.AuditConfig(dataset="digits"))


@pytest.fixture
def two_dirs(tmp_path):
    dirs = [tmp_path / "width", tmp_path / "access"]
    study.write(_study("width", [16, 64, 256], [0.6, 0.7, 0.8]), dirs[0])
    study.write(_study("access", ["probs", "label"], [0.8, 0.6]), dirs[1])
    return dirs


@pytest.mark.slow
def test_small_multiples_from_two_study_dirs(two_dirs, tmp_path, capsys):
    out = tmp_path / "factors.png"
    rc, stdout, err = run_cli(["plot-studies", str(out), *map(str, two_dirs)], capsys)
    assert rc == 0 and stdout.strip() == f"wrote {out}", err
    first = out.read_bytes()
    assert first.startswith(b"\x89PNG") and len(first) > 5000
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file
    assert multiples.write(out, two_dirs[:1]) == str(out)  # replaced, atomically
    assert out.read_bytes() != first


def test_sizes_are_drawn_on_a_log_scale_and_categories_as_such():
    assert multiples._log_scale([16, 64, 256]) and multiples._log_scale([2, 4, 8, 16])
    assert not multiples._log_scale([1, 2, 3]) and not multiples._log_scale([0, 8, 64])
    assert not multiples._log_scale(["probs", "label"]) and not multiples._log_scale([None, 1])
    offline = _study("epochs", [1, 2], [0.6, 0.7])
    for r in offline.rows:
        r["attack"] = r["attack"].replace("online", "offline")
    assert multiples._attacks(offline) == ["lira_offline", "rmia_offline"]


def test_errors_name_the_directory_in_one_line(two_dirs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "study.json").write_text("{not json")
    cases = [
        ([str(tmp_path / "nope")], "no such study directory"),
        ([str(empty)], f"{empty} holds no study.json"),
        ([str(broken)], "cannot read"),
    ]
    for dirs, message in cases:
        rc, _, err = run_cli(["plot-studies", str(tmp_path / "f.png"), *dirs], capsys)
        assert rc == 2 and message in err and err.count("\n") == 1, err
    rc, _, err = run_cli(["plot-studies", str(tmp_path / "f.pdf"), str(two_dirs[0])], capsys)
    assert rc == 2 and "writes a .png image" in err
    assert not os.path.exists(tmp_path / "f.png")
    with pytest.raises(study.StudyError, match="at least one study directory"):
        multiples.load_studies([])
