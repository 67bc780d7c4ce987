"""The audit configuration: generated flags and TOML keys, strict checks, pool specs."""

import dataclasses
import json
import math
import shlex

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxmia import cli, study
from jaxmia._src import audit
from jaxmia._src.attacks import registry
from jaxmia._src.audit import config as cfg
from jaxmia._src.defences import training as defences


def _declared() -> list[str]:
    """Every setting's name as declared: the sections' fields, the registered attacks'
    options after ``attacks`` (the attack section holds them, not as fields)."""
    names = []
    for cls in cfg.SECTIONS.values():
        names += [f.name for f in dataclasses.fields(cls) if "help" in f.metadata]
        if cls is cfg.AttackConfig:
            names += [f.name for c in registry.option_sections() for f in dataclasses.fields(c)]
    return names


def parse(words):
    """The flat settings that ``jaxmia audit WORDS`` gives."""
    args = cli.build_parser().parse_args(["audit", *words])
    return cli._config(args)


def test_the_parser_has_a_flag_for_every_field():
    parser = cli.build_parser()
    audit_parser = cli._Parser._subcommands(parser)["audit"]
    dests = {a.dest for a in audit_parser._actions}
    fields = set(_declared())
    assert fields == {o.name for o in cfg.options()} and fields <= dests
    assert len(fields) == 53  # 38; issue 14: 7 defences, 7 shadow settings; dp_sampling


@pytest.mark.parametrize(
    "words, field, value",
    [
        (["--shadows", "16"], "num_shadows", 16),
        (["--lr", "0.01"], "learning_rate", 0.01),
        (["--hidden", "256,128"], "hidden", (256, 128)),
        (["--fprs", "0.1,0.2"], "fprs", (0.1, 0.2)),
        (["-o", "out"], "output_dir", "out"),
        (["--output-dir", "out"], "output_dir", "out"),
        (["--per-class"], "per_class", True),
        (["--augment"], "augment", True),
        (["--defend-shadows"], "defend_shadows", True),
        (["--attacks", "loss,shokri"], "attacks", ("loss", "shokri")),
        (["--dp-noise", "1.5"], "dp_noise", 1.5),
        (["--batch-size", "64"], "batch_size", 64),
        (["--top-k", "2"], "top_k", 2),
        (["--n-boot", "0"], "n_boot", 0),
    ],
)
def test_old_flags_set_their_fields(words, field, value):
    assert getattr(parse(words), field) == value


def test_sections_and_flat_names_agree():
    c = audit.AuditConfig(num_shadows=16, epochs=20, weight_decay=0.1, perturbation="round")
    assert c.data.num_shadows == 16 and c.training.epochs == 20
    assert c.defence == defences.Defence(weight_decay=0.1)  # the section IS the Defence
    assert c.interface.kind == "round" and c.effective_access == "probs"
    assert c.replace(epochs=3).epochs == 3 and c.replace(epochs=3).num_shadows == 16
    assert cfg.dataclasses.replace(c, epochs=4).training.epochs == 4
    assert not hasattr(defences.Defence(), "active")
    with pytest.raises(audit.ConfigError, match="epochs must be an integer >= 1, got 0"):
        c.replace(epochs=0)


def test_numpy_numbers_are_stored_as_python_numbers():
    import numpy as np

    c = audit.AuditConfig(
        num_shadows=np.int64(8), learning_rate=np.float32(0.5), fprs=[np.float64(0.1)]
    )
    assert type(c.num_shadows) is int and type(c.learning_rate) is float
    assert json.dumps(c.to_dict())  # metrics.json can hold them
    with pytest.raises(audit.ConfigError, match="per_class must be true or false"):
        audit.AuditConfig(per_class=np.int64(1))


def test_to_dict_is_todays_flat_dict_and_round_trips():
    d = audit.AuditConfig().to_dict()
    assert list(d) == _declared()  # the order of declaration, section by section
    assert d["fprs"] == [0.001, 0.01] and d["hidden"] == [128]
    assert d["epochs"] == 30 and d["batch_size"] == 128 and d["dp_noise"] is None
    c = audit.AuditConfig(hidden=(64, 32), attacks=("loss",), dp_noise=1.0, seed=7)
    assert audit.AuditConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


@pytest.mark.parametrize(
    "c",
    [
        audit.AuditConfig(),
        audit.AuditConfig(num_shadows=16, hidden=(256, 128), learning_rate=0.01, per_class=True),
        audit.AuditConfig(attacks=("loss", "lira_online"), fprs=(0.05,), output_dir="a dir"),
        audit.AuditConfig(dp_noise=1.1, defend_shadows=True, dp_delta=1e-6, augment=True),
        audit.AuditConfig(scheme="disjoint", target_size=100, shadow_size=50, rmia_a=0.3),
        audit.AuditConfig(access="topk", top_k=2, perturbation="noise", noise_sigma=0.1),
    ],
)
def test_command_for_parses_back_to_the_config(c):
    words = shlex.split(cfg.command_for(c))
    assert words[:2] == ["jaxmia", "audit"]
    assert parse(words[2:]) == c


def test_pool_spec_is_what_the_pipeline_builds():
    model = "mlp(hidden=(128,))"
    assert cfg.pool_spec(audit.AuditConfig(), model=model) == {
        "model": model,
        "learning_rate": 0.001,
        "defence": None,
        "seed": 0,
        "split": {"scheme": "balanced"},
    }
    defended = audit.AuditConfig(weight_decay=0.01, defend_shadows=True, seed=3)
    assert cfg.pool_spec(defended, model=model)["defence"] == "L2 weight decay 0.01"
    assert cfg.pool_spec(audit.AuditConfig(weight_decay=0.01), model=model)["defence"] is None
    disjoint = audit.AuditConfig(scheme="disjoint", target_size=10)
    assert cfg.pool_spec(disjoint, model=model)["split"] == {
        "scheme": "disjoint",
        "target_size": 10,
        "shadow_size": None,
    }


def test_settings_that_never_change_a_pool_leave_its_spec_alone():
    base = audit.AuditConfig(defend_shadows=True)
    changed = {
        "access": "label",
        "perturbation": "round",
        "fprs": (0.1,),
        "n_boot": 3,
        "attacks": ("loss",),
        "dp_delta": 1e-3,
        "chunk_size": 2,
        "output_dir": "x",
    }
    for name, value in changed.items():
        assert not cfg.changes_pool(name, base), name
        spec = cfg.pool_spec(base.replace(**{name: value}), model="m")
        assert spec == cfg.pool_spec(base, model="m"), name
    for name in ("weight_decay", "dropout", "dp_noise", "dp_clip"):
        assert cfg.changes_pool(name, base) and not cfg.changes_pool(name, audit.AuditConfig())


@pytest.mark.parametrize(
    "values, key",
    [
        ({"learning_rate": "0.01"}, "learning_rate"),
        ({"fprs": "0.01"}, "fprs"),
        ({"dataset": 5}, "dataset"),
        ({"attacks": [1, 2]}, "attacks"),
        ({"per_class": "no"}, "per_class"),
        ({"learning_rate": True}, "learning_rate"),
        ({"hidden": [1.5]}, "hidden"),
        ({"weight_decay": math.nan}, "weight_decay"),
        ({"dp_noise": math.inf}, "dp_noise"),
        ({"dp_noise": -1.0}, "dp_noise"),
        ({"seed": 99999999999999999999}, "seed"),
        ({"seed": -1}, "seed"),
        ({"output_dir": ""}, "output_dir"),
        ({"epochs": 2.0}, "epochs"),
    ],
)
def test_wrong_values_are_refused_in_one_line_naming_the_key(values, key):
    with pytest.raises(audit.ConfigError) as e:
        audit.AuditConfig.from_dict(values)
    message = str(e.value)
    assert "\n" not in message and key in message and repr(values[key])[:8] in message


def write_toml(path, text):
    path.write_text(text)
    return str(path)


def test_toml_tables_are_strict(tmp_path):
    f = write_toml(tmp_path / "a.toml", "audit = 5\n")
    with pytest.raises(audit.ConfigError, match=r"audit in .* must be a table"):
        cfg.read_toml(f)
    f = write_toml(tmp_path / "b.toml", 'epochs = 3\n[audit]\ndataset = "digits"\n')
    with pytest.raises(audit.ConfigError, match=r"key.s. epochs in .* outside the .audit. table"):
        cfg.read_toml(f)
    f = write_toml(tmp_path / "c.toml", '[audit]\ndataset = "digits"\n')
    assert cfg.read_toml(f) == {"dataset": "digits"}


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {math.inf: "inf", -math.inf: "-inf"}.get(v, "nan" if v != v else repr(v))
    if isinstance(v, list):
        return "[" + ", ".join(map(toml_value, v)) + "]"
    return json.dumps(v)


_WRONG = {  # TOML values of a wrong type for each kind of setting
    bool: st.sampled_from([1, 0, "no", "true", 1.0, [True]]),
    int: st.sampled_from(["3", 1.5, 2.0, True, [3], math.nan, 2**64]),
    float: st.sampled_from(["0.01", True, [0.1], math.nan, math.inf, -math.inf]),
    str: st.sampled_from([5, 1.5, True, [], [["digits"]], ""]),
}


@st.composite
def wrong_setting(draw):
    option = draw(st.sampled_from(cfg.options()))
    wrong = draw(_WRONG[option.kind])
    if option.many:  # a list with a wrong element, or a wrong scalar
        wrong = [wrong] if isinstance(wrong, list) else draw(st.sampled_from([[wrong], wrong]))
    if option.kind is float and option.many and wrong in ([math.inf], math.inf):
        wrong = [2.0]  # out of (0, 1): refused too
    return option.name, wrong


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(setting=wrong_setting(), table=st.booleans())
def test_config_toml_of_wrong_types_gives_one_line_naming_the_key(
    setting, table, tmp_path, capsys, monkeypatch
):
    name, value = setting
    text = f"{name} = {toml_value(value)}\n"
    path = write_toml(tmp_path / "w.toml", "[audit]\n" + text if table else text)
    with pytest.raises(audit.ConfigError) as e:
        audit.AuditConfig.from_dict(cfg.read_toml(path))
    assert "\n" not in str(e.value) and name in str(e.value)
    trained = []
    monkeypatch.setattr(audit, "run", lambda *a, **k: trained.append(a))
    monkeypatch.setattr(audit, "train_pool", lambda *a, **k: trained.append(a))
    out = [] if name == "output_dir" else ["-o", str(tmp_path / "o")]  # -o would win
    rc = cli.main(["audit", "--config", path, *out])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and trained == [] and len(err) == 1 and err[0].startswith("jaxmia: error:")
    assert name in err[0]


@pytest.mark.parametrize(
    "words, message",
    [
        (["--seed", "99999999999999999999"], "--seed must be an integer in [0, "),
        (["-o", ""], "--output-dir must be a non-empty string"),
        (["--dp-noise", "inf"], "--dp-noise must be a finite number"),
        (["--dp-noise", "-1"], "--dp-noise must be a finite number >= 0"),
        (["--weight-decay", "nan"], "--weight-decay must be a finite number"),
    ],
)
def test_cli_refuses_bad_values_in_one_line_before_training(words, message, capsys, monkeypatch):
    monkeypatch.setattr(audit, "run", lambda *a, **k: pytest.fail("trained"))
    rc = cli.main(["audit", *words])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


def test_study_values_are_checked_before_the_first_audit(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(audit, "run", lambda *a, **k: pytest.fail("an audit ran"))
    base = audit.AuditConfig(dataset="digits")
    with pytest.raises(study.StudyError, match="repeats the value"):
        study.parse_values("epochs", ["2", "2"], base)
    with pytest.raises(study.StudyError, match=r"dp_noise=-1\.0: dp_noise must be"):
        study.parse_values("dp_noise", ["1", "-1"], base)
    with pytest.raises(study.StudyError, match="epochs=0"):
        study.run("epochs", [1, 0], base)
    with pytest.raises(study.StudyError, match="classes must lie in"):
        study.run("classes", [2, 99], base)
    args = [
        "study",
        "--factor",
        "dropout",
        "--values",
        "0.1,1.5",
        "--dataset",
        "digits",
        "-o",
        str(tmp_path),
    ]
    assert cli.main(args) == 2
    assert "dropout=1.5" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"weight_decay": 0.01, "defend_shadows": True},
        {"dropout": 0.2, "defend_shadows": True, "seed": 3},
        {"scheme": "disjoint", "target_size": 400, "shadow_size": 300},
    ],
)
def test_pool_spec_equals_the_spec_the_pipeline_writes(settings, tmp_path):
    from jaxmia._src.engine.store import pools

    c = audit.AuditConfig(dataset="digits", num_shadows=2, epochs=1, **settings)
    audit.train_pool(c, tmp_path / "pool")
    written = pools.read_manifest(tmp_path / "pool")["spec"]
    spec = cfg.pool_spec(c, model=written["model"])
    assert {k: written[k] for k in spec} == json.loads(json.dumps(spec))


def test_a_string_of_attacks_is_a_comma_separated_list_of_known_names(tmp_path):
    """Issue 23: ``attacks="nosuch"`` was accepted, and ``"loss,lira_online"`` stored as
    one name that ``audit.run`` met with a bare KeyError."""
    c = audit.AuditConfig(dataset="digits", attacks="loss, lira_online")
    assert c.attacks == ("loss", "lira_online") == audit.select_attacks(c)
    assert audit.AuditConfig(attacks="loss").attacks == ("loss",)
    with pytest.raises(audit.ConfigError, match=r"^attacks: unknown attack\(s\) nosuch; choose"):
        audit.AuditConfig(attacks="nosuch")
    with pytest.raises(audit.ConfigError, match=r"unknown attack\(s\) nosuch, bad; choose"):
        audit.AuditConfig(attacks="loss,nosuch,bad")
    with pytest.raises(audit.ConfigError, match=r"unknown attack\(s\) loss,lira_online"):
        audit.AuditConfig(attacks=("loss,lira_online",))  # in a list, a name is one name
    f = write_toml(tmp_path / "a.toml", 'attacks = "loss,lira_online"\n')
    assert audit.AuditConfig.from_dict(cfg.read_toml(f)).attacks == ("loss", "lira_online")


@pytest.mark.parametrize(
    "text, message",
    [
        ('attacks = "bogus"', "attacks: unknown attack(s) bogus"),
        ('attacks = "loss,,loss"', "attacks: empty item in 'loss,,loss'"),
        ('attacks = ["loss", "loss"]', "attacks repeats 'loss'"),
        ("fprs = [0.01, 0.01]", "fprs repeats 0.01"),
    ],
)
def test_toml_attacks_and_fprs_are_refused_in_one_line(text, message, tmp_path):
    """Issue 23: ``attacks = "bogus"`` or ``"loss,lira_online"`` in a config file gave a
    KeyError traceback."""
    path = write_toml(tmp_path / "c.toml", f'dataset = "digits"\n{text}\n')
    with pytest.raises(audit.ConfigError) as e:
        audit.AuditConfig.from_dict(cfg.read_toml(path))
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"attacks": "loss,,rmia_online"}, "attacks: empty item in 'loss,,rmia_online'"),
        ({"attacks": "loss,"}, "attacks: empty item in 'loss,'"),
        ({"attacks": ("loss", "shokri", "loss")}, "attacks repeats 'loss'"),
        ({"fprs": (0.1, 0.01, 0.1)}, "fprs repeats 0.1"),
    ],
)
def test_empty_and_repeated_items_are_refused_not_dropped(settings, message):
    """Issue 23: ``3,,4`` and ``loss,,loss`` lost their empty item silently. A list that
    is a set of choices (attacks, FPRs) may not repeat an item either; layer widths may."""
    with pytest.raises(audit.ConfigError) as e:
        audit.AuditConfig(**settings)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert audit.AuditConfig(hidden=(64, 64)).hidden == (64, 64)


@pytest.mark.parametrize(
    "words, message",
    [
        (["--attacks", "loss,loss"], "attacks repeats 'loss'"),
        (["--config", "bogus.toml"], "attacks: unknown attack(s) bogus"),
    ],
)
def test_cli_refuses_unknown_and_repeated_attacks(words, message, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(audit, "run", lambda *a, **k: pytest.fail("an audit ran"))
    write_toml(tmp_path / "bogus.toml", 'attacks = "bogus"\n')
    monkeypatch.chdir(tmp_path)
    rc = cli.main(["audit", "--dataset", "digits", *words])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


def test_leave_one_out_may_take_every_pool_model_as_a_target():
    """Issue 23, section 5 (config.py:320, ``>`` -> ``>=``): as many targets as models."""
    assert audit.AuditConfig(targets=8, num_shadows=8).targets == 8
    with pytest.raises(audit.ConfigError, match=r"targets \(9\) cannot exceed the pool size"):
        audit.AuditConfig(targets=9, num_shadows=8)


def test_open_bounds_are_open():
    """Issue 23, section 5 (fields.py:55, the open upper bound ignored): an FPR is in (0, 1)."""
    for fpr in (1.0, 0.0):
        with pytest.raises(
            audit.ConfigError, match=r"fprs must be .* in \(0, 1\), got \(1?0?\.0,\)"
        ):
            audit.AuditConfig(fprs=(fpr,))
    assert audit.AuditConfig(fprs=(0.999,)).fprs == (0.999,)
    assert 1.0 not in cfg.UNIT and 0.0 not in cfg.UNIT and 1.0 in cfg.Range(0, 1)
    assert 0.0 in cfg.Range(0, 1) and 0.0 not in cfg.POSITIVE_REAL and 5 in cfg.POSITIVE_REAL
