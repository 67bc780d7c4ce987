"""Every option of every command (``jaxmia audit``, ``study`` and ``dp-audit``), given a bad
value on the command line or in a TOML file: one line that names the setting as it was
given (its flag, or its key in the file), exit status 2, and no training started
(hypothesis draws option and value; a sweep runs them all)."""

import dataclasses
import json
import math
import pathlib
import tempfile

import pytest
from helpers import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxmia._src import engine
from jaxmia._src.attacks import registry
from jaxmia._src.audit import config
from jaxmia._src.dp_audit import cli as dp_cli
from jaxmia._src.dp_audit import pipeline as dp_audit

AUDIT_CLASSES = [*config.SECTIONS.values(), *registry.option_sections()]
"""The classes that declare the audit's settings: its sections and the attacks' options."""
COMMANDS = {
    "audit": (config.options(), AUDIT_CLASSES, "audit"),
    "study": (config.options(), AUDIT_CLASSES, "audit"),
    "dp-audit": (dp_cli.OPTIONS, [dp_audit.DPAuditConfig], "dp-audit"),
}
STUDY_ARGS = ["--factor", "epochs", "--values", "1,2"]


def _bounds(classes, name):
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.name == name:
                return f.metadata.get("bounds")
    return None


def _bad_values(option, classes) -> list:
    """Values the option must refuse, as Python values (TOML and the flag's text alike)."""
    if option.kind is bool:
        return ["yes"]  # TOML only: a switch on the command line takes no value
    if option.choices:
        return ["not_a_choice"]
    if option.kind is str:
        return [""]
    bad: list = ["abc", True] if option.kind is int else ["abc", True, math.nan]
    if option.kind is int:
        bad.append(1.5)
    bounds = _bounds(classes, option.name)
    if bounds is not None:
        bad.append(int(bounds.low) - 1 if option.kind is int else bounds.low - 1.0)
        if bounds.high is not None and math.isfinite(bounds.high):
            bad.append(bounds.high + 1)
    return bad


def _cases():
    cases = []
    for command, (options, classes, _) in COMMANDS.items():
        for option in options:
            if option.name == "output_dir":
                continue  # where the refusal's run would write: tested in test_cli.py
            for value in _bad_values(option, classes):
                cases.append((command, option, value))
    return cases


CASES = _cases()


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return json.dumps(value)


def _flag_text(option, value) -> str | None:
    if isinstance(value, bool) or option.kind is bool:
        return None  # a flag's text is never a bool; a switch takes no text
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return str(value)


@pytest.fixture(autouse=True)
def _no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training started before the options were checked")

    monkeypatch.setattr(engine, "train", refuse)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=st.sampled_from(CASES), through=st.sampled_from(["flag", "toml"]))
def test_a_bad_value_of_any_option_is_one_line_naming_it(case, through, capsys):
    command, option, value = case
    table = COMMANDS[command][2]
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "out"
        words = [command, "-o", str(out), *(STUDY_ARGS if command == "study" else [])]
        if through == "toml" or _flag_text(option, value) is None:
            toml = pathlib.Path(tmp) / "settings.toml"
            toml.write_text(f"[{table}]\n{option.name} = {_toml_value(value)}\n")
            words += ["--config", str(toml)]
            names = (option.name,)
        else:
            words += [option.flags[0], _flag_text(option, value)]
            names = (option.flags[0],)  # as given: by its flag
        rc, stdout, err = run_cli(words, capsys)
        assert rc == 2, (words, stdout, err)
        assert len(err.strip().splitlines()) == 1, err
        assert any(name in err for name in names), (names, err)
        assert "Traceback" not in err
        assert not out.exists() or not any(out.iterdir())


def test_every_option_of_every_command_has_a_bad_value():
    """The cases cover each option of each command (but output_dir)."""
    for command, (options, _, _) in COMMANDS.items():
        covered = {o.name for c, o, _ in CASES if c == command}
        assert covered == {o.name for o in options} - {"output_dir"}, command


def test_every_bad_value_both_ways(capsys):
    """The sweep of all cases (the hypothesis test above draws among them)."""
    for case in CASES:
        for through in ("flag", "toml"):
            test_a_bad_value_of_any_option_is_one_line_naming_it.hypothesis.inner_test(
                case=case, through=through, capsys=capsys
            )
