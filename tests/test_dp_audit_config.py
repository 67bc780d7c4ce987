"""``jaxmia dp-audit --config FILE.toml`` and its settings, declared once
(jaxmia/audit/dp_audit.py's DPAuditConfig fields): TOML keys, flags, the command line
that reproduces a run, one-line errors before any training."""

import pytest
from helpers import run_cli

from jaxmia import cli
from jaxmia._src.audit import fields
from jaxmia._src.dp_audit import cli as dp_cli
from jaxmia._src.dp_audit import pipeline as dp_audit


def _parsed(words):
    return cli.build_parser().parse_args(["dp-audit", *words])


@pytest.mark.parametrize(
    "text",
    [
        "models = 16\nepsilons = [2, inf]\nrecords = 100\nbatch_size = 30\n",
        "[dp-audit]\nmodels = 16\nepsilons = [2.0, inf]\nrecords = 100\nbatch_size = 30\n",
    ],
)
def test_settings_from_toml_and_flags_win(text, tmp_path):
    toml = tmp_path / "dp.toml"
    toml.write_text(text)
    config = dp_cli.config_of(_parsed(["--config", str(toml), "--models", "32"]))
    assert config.models == 32  # the flag wins over the file
    assert config.epsilons == (2.0, float("inf")) and config.records == 100
    assert config.batch_size == 30 and config.hidden == 32  # the rest: defaults
    again = dp_cli.config_of(_parsed(dp_cli.command_for(config).split()[2:]))
    assert again == config  # the command line reproduces it


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("modelz = 16\n", "unknown option(s) modelz; valid options: batch_size"),
        ("models = 3\n", "models must be an integer >= 8, got 3"),
        ("models = true\n", "models must be an integer, got True"),
        ('epsilons = "two"\n', "epsilons must be a non-empty list of numbers (inf allowed)"),
        ("[dp-audit]\nmodels = 16\n[other]\nx = 1\n", "lie outside the [dp-audit] table"),
        ("dp-audit = 3\n", "dp-audit in"),
        ("models = \n", "cannot read config file"),
    ],
)
def test_bad_toml_is_refused_in_one_line_before_training(text, message, tmp_path, capsys):
    toml = tmp_path / "dp.toml"
    toml.write_text(text)
    rc, out, err = run_cli(["dp-audit", "--config", str(toml), "-o", str(tmp_path / "o")], capsys)
    assert rc == 2 and out == "" and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_every_setting_is_a_flag_and_a_key_in_declaration_order():
    names = [o.name for o in dp_cli.OPTIONS]
    assert names == list(dp_audit.DPAuditConfig.__dataclass_fields__)
    assert dp_cli.OPTIONS == fields.options_of(dp_audit.DPAuditConfig)
    help_text = (
        cli.build_parser(only="dp-audit")
        ._subparsers._group_actions[0]
        .choices["dp-audit"]
        .format_help()
    )
    for option in dp_cli.OPTIONS:
        assert option.flags[0] in help_text, option.name
