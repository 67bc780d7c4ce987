"""The privacy-utility frontier (jaxmia/frontier.py and study's ``defence`` factor): named
settings parsed and checked before any audit, one row per setting and attack, shadows
defended as the target, one pool per setting, the frontier figure."""

import json

import pytest

from jaxmia import frontier, study
from jaxmia._src import audit
from jaxmia._src.audit import config
from jaxmia._src.engine.store import pools
from tests.helpers import run_cli

BASE = audit.AuditConfig(
    dataset="digits", num_shadows=2, epochs=1, n_boot=0, attacks=("lira_online", "rmia_online")
)


def test_inline_settings_take_each_option_type():
    found = frontier.parse_settings(
        "none; l2=weight_decay:5e-4; es=early_stopping:3,dropout:0.2; "
        "wide=hidden:64/32; dp=dp_noise:1,dp_clip:2; aug=augment:true"
    )
    assert [s.name for s in found] == ["none", "l2", "es", "wide", "dp", "aug"]
    assert found[0].changes == () and found[0].describe() == "none"
    assert found[1].changes == (("weight_decay", 5e-4),)
    assert found[2].changes == (("early_stopping", 3), ("dropout", 0.2))
    assert isinstance(found[2].changes[0][1], int)
    assert found[3].changes == (("hidden", (64, 32)),)
    assert found[4].changes == (("dp_noise", 1.0), ("dp_clip", 2.0))
    assert found[5].changes == (("augment", True),)
    assert found[2].describe() == "early_stopping:3,dropout:0.2"
    again = frontier.parse_settings("; ".join(f"{s.name}={s.describe()}" for s in found[1:]))
    assert again == found[1:]  # describe() is the inline syntax


def test_other_factors_take_one_comma_separated_string_too():
    assert study.parse_values("epochs", "1, 2") == [1, 2]  # what jaxmia study --values passes
    assert study.parse_values("access", "probs,label") == ["probs", "label"]


def test_every_defence_field_is_a_setting_key():
    """Keys come from the audit's options, not a list: a defence added to Defence (or any
    other audit option) is a frontier setting at once."""
    for option in config.options():
        if option.section != "defence":
            continue
        default = option.default
        text = "none" if default is None else str(default).lower()
        (setting,) = frontier.parse_settings(f"x={option.name}:{text}")
        assert setting.changes == ((option.name, default),)
        frontier.configure(setting, BASE)  # the audit accepts it


def test_settings_from_toml(tmp_path):
    path = tmp_path / "frontier.toml"
    path.write_text(
        '[[setting]]\nname = "none"\n\n[[setting]]\nname = "dp1"\ndp_noise = 1.0\n'
        '\n[[setting]]\nname = "wide"\nhidden = [64, 32]\n'
    )
    found = study.parse_values("defence", str(path), BASE)
    assert found == [
        frontier.Setting("none"),
        frontier.Setting("dp1", (("dp_noise", 1.0),)),
        frontier.Setting("wide", (("hidden", (64, 32)),)),
    ]


@pytest.mark.parametrize(
    "spec,message",
    [
        ("l2=weight_decy:1", "unknown key 'weight_decy'; did you mean weight_decay"),
        ("l2=colour:1", "unknown key 'colour'"),
        ("dp=dp_noise:abc", "bad value 'abc' for dp_noise (expected a number)"),
        ("es=early_stopping:2.5", "bad value '2.5' for early_stopping (expected an integer)"),
        ("aug=augment:maybe", "bad value 'maybe' for augment"),
        ("drop=dropout:1.5", "setting 'drop': dropout must be"),
        ("dpdrop=dp_noise:1,dropout:0.1", "setting 'dpdrop': dp_noise (DP-SGD) does not combine"),
        ("out=output_dir:x", "output_dir cannot be set per setting"),
        ("atk=defend_shadows:false", "defend_shadows cannot be set per setting"),
        ("none; a=dataset:mnist", "'a': dataset cannot be set per setting (a study loads"),
        ("a=label_column:y", "label_column cannot be set per setting"),
        ("none;;l2=weight_decay:1", "empty setting in 'none;;l2=weight_decay:1'"),
        ("none; l2=weight_decay:1;", "empty setting in"),
        ("../up=dropout:0.1", "bad setting name '../up'"),
        ("a b=dropout:0.1", "bad setting name 'a b'"),
        ("l2", "setting 'l2' has no changes"),
        ("none=dropout:0.1", "the setting named 'none' is the undefended one"),
        ("d=dropout0.1", "expected KEY:VALUE, got 'dropout0.1'"),
        ("d=dropout:0.1,dropout:0.2", "sets dropout twice"),
        ("d=dropout:0.1; D=dropout:0.2", "setting name(s) used twice: D, d"),
        (" ; ", "at least one setting"),
        ("missing.toml", "no such settings file: missing.toml"),
    ],
)
def test_bad_settings_are_refused_in_one_line_before_any_audit(spec, message, monkeypatch):
    monkeypatch.setattr(audit, "run", lambda *a, **k: pytest.fail("an audit ran"))
    with pytest.raises(study.StudyError) as e:
        study.run("defence", spec, BASE)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "text,message",
    [
        ('name = "x"', "must hold [[setting]] tables only; found name"),
        ("[[setting]]\ndropout = 0.1", "needs a name"),
        ("[[setting]]\nname = 'd'\ndropout = 'high'", "setting 'd': dropout"),
        ("[[setting]\n", "cannot read settings file"),
    ],
)
def test_bad_toml_settings_are_refused_in_one_line(text, message, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(study.StudyError) as e:
        study.parse_values("defence", str(path), BASE)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_frontier_records_one_row_per_setting_with_the_shadows_defended(tmp_path, monkeypatch):
    seen = []
    real = audit.run
    monkeypatch.setattr(audit, "run", lambda c, **k: seen.append(c) or real(c, **k))
    result = study.run(
        "defence", "none; l2=weight_decay:0.5; round=perturbation:round", BASE, pool_root=tmp_path
    )  # output perturbation retrains nothing new: two trainings to compile, not three
    assert result.values == ["none", "l2", "round"] and result.base.defend_shadows
    assert [c.defend_shadows for c in seen] == [True] * 3
    assert (seen[1].weight_decay, seen[2].perturbation) == (0.5, "round")
    assert len(result.rows) == 3 * 2 and result.attacks() == ["lira_online", "rmia_online"]
    keys = {"value", "setting", "attack", "auc", "tpr@0.001", "tpr@0.01", "target_train_acc"}
    assert all(keys | {"target_test_acc", "epsilon", "seconds"} <= set(r) for r in result.rows)
    assert [r["setting"] for r in result.rows[::2]] == [
        "none",
        "weight_decay:0.5",
        "perturbation:round",
    ]
    # each setting has its own pool, trained with its defence (independent of the rows)
    described = {
        name: pools.read_manifest(tmp_path / f"defence-{name}")["spec"]["defence"]
        for name in result.values
    }
    assert described == {"none": None, "l2": "L2 weight decay 0.5", "round": None}

    written = study.write(result, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "study.json").read_text())
    assert data["factor"] == "defence" and data["base_config"]["defend_shadows"] is True
    assert study.load(tmp_path / "out" / "study.json").values == ["none", "l2", "round"]
    assert "l2" in study.table(result)
    pytest.importorskip("matplotlib")
    assert "plot" in written and (tmp_path / "out" / "study.png").stat().st_size > 1000


def test_cli_refuses_a_bad_setting_before_training(tmp_path, capsys):
    out = tmp_path / "f"
    args = ["study", "--factor", "defence", "--values", "none; l2=wd:1", "--dataset", "digits"]
    rc, _, err = run_cli([*args, "-o", str(out)], capsys)
    assert rc == 2 and "unknown key 'wd'" in err and err.count("\n") == 1
    assert not (out / "pools").exists()


def test_cli_refuses_a_setting_of_other_data_before_training(tmp_path, capsys):
    """Issue 23: ``a=dataset:mnist`` was labelled "dataset:mnist" and ran on the study's
    digits (its metrics equal to ``none``'s)."""
    out = tmp_path / "f"
    args = ["study", "--factor", "defence", "--values", "none; a=dataset:mnist"]
    rc, _, err = run_cli([*args, "--dataset", "digits", "-o", str(out)], capsys)
    assert rc == 2 and "setting 'a': dataset cannot be set per setting" in err
    assert err.count("\n") == 1 and not (out / "pools").exists()
