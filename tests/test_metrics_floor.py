"""TPR at an FPR below 1 / non-members (issue 13, item 7): with 5 records the audit
reported TPR@0.1%FPR = 1.000 from 3 non-members."""

import json

import numpy as np
from helpers import run_cli

from jaxmia import metrics


def test_tpr_below_the_fpr_floor_is_flagged():
    m = metrics.evaluate([1, 1, 0, 0, 0], [5, 4, 3, 2, 1], fprs=(0.001, 0.5), n_boot=0)
    assert m.tpr_at_fpr[0.001] == 1.0  # read at FPR 0: perfectly separated
    assert m.unmeasurable_fprs == [0.001]
    assert m.to_dict()["tpr_at_fpr_unmeasurable"] == ["0.001"]
    table = metrics.format_table({"loss": m})
    assert "1.0000*" in table and "0.5000*" not in table and "1/3" in table.splitlines()[-1]
    assert "1/3" in metrics.markdown_table({"loss": m}).splitlines()[-1]


def test_nothing_is_flagged_with_enough_non_members():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    m = metrics.evaluate(y, rng.normal(size=2000) + y, n_boot=0)
    assert m.unmeasurable_fprs == [] and "tpr_at_fpr_unmeasurable" not in m.to_dict()
    assert "*" not in metrics.format_table({"x": m})


def test_an_audit_of_few_records_flags_them(tmp_path, capsys, small_digits):
    path = tmp_path / "few.npz"
    idx = np.arange(40)
    np.savez(path, x=small_digits.x[idx], y=small_digits.y[idx])
    args = ["audit", "--dataset", str(path), "--shadows", "4", "--epochs", "2", "--n-boot", "0"]
    rc, out, err = run_cli([*args, "--attacks", "loss", "-q", "-o", str(tmp_path / "o")], capsys)
    assert rc == 0, err
    assert "*" in out and "not measurable" in out
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["attacks"]["loss"]["tpr_at_fpr_unmeasurable"] == ["0.001", "0.01"]
    assert any("not measurable with 20 non-members" in n for n in m["notes"])
    report = (tmp_path / "o" / "report.md").read_text()
    assert "not measurable" in report
