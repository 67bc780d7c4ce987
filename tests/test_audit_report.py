"""The report (jaxmia/audit/report.py): report.md and metrics.json say only what is true."""

import dataclasses
import json

import numpy as np
import pytest

from jaxmia._src import audit, metrics
from jaxmia._src.audit import outputs
from jaxmia._src.audit import report as report_module


def make_report(n_boot: int, **changes) -> audit.AuditReport:
    """A report of two attacks on 200 synthetic candidates (no training)."""
    rng = np.random.default_rng(0)
    membership = np.arange(200) < 100
    scores = {"loss": rng.normal(size=200) + membership, "confidence": rng.normal(size=200)}
    config = audit.AuditConfig(dataset="digits", num_shadows=4, n_boot=n_boot)
    evaluated = {
        name: metrics.evaluate(membership, s, fprs=config.fprs, n_boot=n_boot)
        for name, s in scores.items()
    }
    base = audit.AuditReport(
        config=config,
        dataset="digits: 1797 examples, input shape (64,), 10 classes",
        model="MLP(hidden=(128,))",
        metrics=evaluated,
        scores=scores,
        candidates=np.arange(200),
        membership=membership,
        target_index=np.zeros(200, int),
        per_target={},
        target_accuracy={"train": 1.0, "test": 0.9},
        shadow_accuracy={"train_mean": 1.0, "train_std": 0.0, "test_mean": 0.9, "test_std": 0.0},
        target_signals={},
        privacy={"defence": "none", "interface": "none"},
        notes=[],
        timings={"load": 0.1},
        versions={"jax": "x"},
        data={"name": "digits", "records": 1797},
        target="trained by jaxmia: MLP(hidden=(128,)); 30 epochs, batch 128, Adam 0.001",
        shadows="4 shadow models: MLP(hidden=(128,)); 30 epochs, batch 128, Adam 0.001",
    )
    return dataclasses.replace(base, **changes)


def test_bootstrap_intervals_are_mentioned_only_when_computed():
    without = report_module.markdown(make_report(0), {})
    assert "bootstrap" not in without and "AUC [" not in without
    with_ci = report_module.markdown(make_report(20), {})
    assert "95% bootstrap intervals" in with_ci and "- loss: AUC [" in with_ci


def test_command_line_only_where_the_cli_reproduces_the_audit():
    assert "Command: `jaxmia audit --dataset digits" in report_module.markdown(make_report(0), {})
    hidden = report_module.markdown(make_report(0, reproducible=False), {})
    assert "Command:" not in hidden and "## Run" in hidden and "Config:" in hidden


def test_setting_names_target_and_shadows(tmp_path):
    report = make_report(0)
    text = report_module.markdown(report, {})
    assert f"- target: {report.target}; train accuracy 1.000" in text
    assert f"- shadows: {report.shadows}; train accuracy 1.000" in text
    report.write(tmp_path)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["target"] == report.target and m["shadows"] == report.shadows
    assert m["data"] == {"name": "digits", "records": 1797}


def test_unwritable_output_dir_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="cannot write to output directory"):
        outputs.prepare_output_dir(blocker / "out")


CALIBRATED = "are at the threshold calibrated on the shadow models"
BEST = "at the best threshold on the target's own scores (optimistic)"


@pytest.mark.parametrize(
    ("optimistic", "says"),
    [
        ((), f"{CALIBRATED}."),
        (("confidence",), f"{CALIBRATED}, except for confidence: {BEST}."),
        (("loss", "confidence"), f"are {BEST}."),
    ],
    ids=["calibrated", "one optimistic", "all optimistic"],
)
def test_the_table_says_which_threshold_each_accuracy_is_at(optimistic, says):
    text = report_module.markdown(make_report(20, optimistic=optimistic), {})
    header = next(line for line in text.splitlines() if line.startswith("Scores are oriented"))
    assert header == (
        "Scores are oriented so that higher means member; AUC 0.5 is chance. Accuracy, "
        f"precision and recall {says} Brackets: 95% bootstrap intervals."
    )


def test_the_config_block_shows_the_settings_that_applied(tmp_path):
    applied = {"learning_rate": "user optimizer", "model": "user model factory"}
    report = make_report(0, applied=applied, reproducible=False)
    report.write(tmp_path / "elsewhere")
    text = (tmp_path / "elsewhere" / "report.md").read_text()
    config = json.loads(text.split("```json")[1].split("```")[0])
    m = json.loads((tmp_path / "elsewhere" / "metrics.json").read_text())
    assert (
        config
        == m["config"]
        == report.config.to_dict() | applied | {"output_dir": str(tmp_path / "elsewhere")}
    )
    assert report.config.output_dir == "jaxmia-audit"  # where it did not go


def test_the_shadows_defences_beside_a_target_whose_defences_are_unknown():
    privacy = {
        "defence": "not known to jaxmia (the user's own model)",
        "interface": "none",
        "shadow_defence": "L2 weight decay 0.5",
    }
    config = audit.AuditConfig(dataset="digits", weight_decay=0.5, defend_shadows=True)
    text = report_module.markdown(make_report(0, privacy=privacy, config=config), {})
    assert (
        "- defences of the target: not known to jaxmia (the user's own model); the shadows "
        "trained with L2 weight decay 0.5\n" in text
    )
    trained = make_report(0, privacy={"defence": "L2 weight decay 0.5"}, config=config)
    text = report_module.markdown(trained, {})
    assert "- defences of the target: L2 weight decay 0.5 (shadows trained alike)\n" in text
