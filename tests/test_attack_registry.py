"""The attack registry (jaxmia/attacks/registry.py): an attack registered from outside the
package runs through ``jaxmia.audit.run``, ``jaxmia audit`` (flags and TOML) and a study,
and a package's entry point registers one without any import by the user."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import run_cli

from jaxmia._src import attacks, audit
from jaxmia._src.attacks import registry
from jaxmia._src.audit import attacking

FIT_CALLS: list[int] = []


def _fit(shadows, labels, num_classes, settings):
    """The toy's work on the pool alone: the number of shadow models it saw."""
    FIT_CALLS.append(shadows.keep.shape[0])
    return shadows.keep.shape[0]


def _score(inputs: attacks.AttackInputs) -> attacks.Scores:
    """The loss attack written as a user would: ``-loss`` of the candidates."""
    inputs.note(f"my_loss: fitted on {inputs.fitted} shadow models")
    return attacks.Scores(-inputs.target["loss"][inputs.candidates], threshold=None)


MY_LOSS = attacks.Attack(
    name="my_loss",
    score=_score,
    signals=("loss",),
    default=False,
    fit=_fit,
    statistic="cross-entropy loss",
    paper="none (a test)",
)


@pytest.fixture
def my_loss():
    """``my_loss`` registered for one test, then removed."""
    attacks.register(MY_LOSS)
    FIT_CALLS.clear()
    try:
        yield MY_LOSS
    finally:
        attacks.unregister("my_loss")


TINY = dict(dataset="digits", num_shadows=4, epochs=2, n_boot=0)


@pytest.mark.slow
def test_an_attack_registered_from_outside_runs_through_audit_run(my_loss, digits):
    """Its scores are the built-in loss attack's, bit for bit; its fit ran once, on the
    pool; it reports no threshold, so it is marked optimistic; it is not run by default."""
    config = audit.AuditConfig(**TINY, attacks=("my_loss", "loss"))
    report = audit.run(config, dataset=digits)
    assert list(report.metrics) == ["my_loss", "loss"]
    np.testing.assert_array_equal(report.scores["my_loss"], report.scores["loss"])
    assert report.metrics["my_loss"].auc == report.metrics["loss"].auc
    assert FIT_CALLS == [4] and "my_loss: fitted on 4 shadow models" in report.notes
    assert report.optimistic == ("my_loss",)
    assert "my_loss" not in audit.select_attacks(audit.AuditConfig(**TINY))


def test_an_attack_registered_from_outside_runs_through_the_cli_and_toml(my_loss, tmp_path, capsys):
    """``--attacks`` and a TOML ``attacks`` list accept it; ``jaxmia audit --help`` lists
    it; a name not registered is refused in one line that lists it among the choices."""
    flags = ["--dataset", "digits", "--shadows", "4", "--epochs", "2", "--n-boot", "0", "-q"]
    rc, out, err = run_cli(["audit", *flags, "--attacks", "my_loss", "-o", str(tmp_path)], capsys)
    assert rc == 0, err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics["attacks"]) == ["my_loss"]
    report = (tmp_path / "report.md").read_text()  # the registry's description of it
    assert "- my_loss: cross-entropy loss; none (a test)" in report
    toml = tmp_path / "audit.toml"
    toml.write_text('attacks = ["my_loss", "loss"]\n')
    assert audit.AuditConfig.from_dict(audit.config.read_toml(str(toml))).attacks == (
        "my_loss",
        "loss",
    )
    rc, out, _ = run_cli(["audit", "--help"], capsys)
    assert rc == 0 and "my_loss" in out
    rc, out, err = run_cli(["audit", *flags, "--attacks", "nope", "-o", str(tmp_path)], capsys)
    assert rc != 0 and "unknown attack(s) nope" in err and "my_loss" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_an_attack_registered_from_outside_runs_through_a_study(my_loss, tmp_path, capsys):
    flags = ["--dataset", "digits", "--shadows", "2", "--n-boot", "0", "-q"]
    args = ["study", "--factor", "epochs", "--values", "1,2", "--attacks", "my_loss,loss"]
    rc, _, err = run_cli([*args, *flags, "-o", str(tmp_path)], capsys)
    assert rc == 0, err
    rows = json.loads((tmp_path / "study.json").read_text())["rows"]
    assert [r["attack"] for r in rows] == ["my_loss", "loss"] * 2
    for mine, theirs in zip(rows[::2], rows[1::2], strict=True):
        assert mine["auc"] == theirs["auc"]


def test_registration_errors_are_one_line():
    with pytest.raises(ValueError, match="registered already"):
        attacks.register(attacks.Attack("loss", _score, signals=("loss",)))
    with pytest.raises(ValueError, match="must be an identifier"):
        attacks.Attack("my loss", _score, signals=("loss",))
    with pytest.raises(ValueError, match="unknown reads weights"):
        attacks.Attack("mine", _score, signals=("loss",), reads={"weights"})
    with pytest.raises(ValueError, match="core_input must be one of"):
        attacks.Attack("mine", _score, signals=("loss",), core=abs, core_input="pixels")
    with pytest.raises(ValueError, match="register takes an Attack"):
        attacks.register("my_loss")
    with pytest.raises(KeyError, match="no attack named 'mine'"):
        attacks.unregister("mine")
    with pytest.raises(KeyError, match="unknown attack 'mine'; choose from shokri, loss"):
        registry.get("mine")


@pytest.mark.parametrize(
    "returned,message",
    [
        (lambda m: (np.zeros(m + 1), None), r"returned scores of shape \(\d+,\), expected"),
        (lambda m: (np.zeros(m), 0.5), "does not declare a calibrated threshold but returned 0.5"),
    ],
)
def test_an_attack_that_breaks_its_declaration_is_named(returned, message):
    """Scores of another shape, or a threshold the attack does not declare, are refused
    naming the attack (not somewhere in the metrics)."""
    m, k = 5, 3
    broken = attacks.Attack("broken", lambda inputs: returned(m), signals=("loss",))
    attacks.register(broken)
    try:
        keep = np.zeros((k, 10), bool)
        keep[:, :5] = True
        shadows = attacks.PoolSignals({}, None, None, keep, np.ones(10, bool))
        args = (shadows, {}, None, None, np.arange(m), np.zeros(10, int), 2)
        with pytest.raises(ValueError, match=message):
            attacking.attack_target(("broken",), *args, audit.AuditConfig(), [])
    finally:
        attacks.unregister("broken")


PLUGIN = """
import dataclasses
import numpy as np
from jaxmia import attacks, settings

@dataclasses.dataclass(frozen=True)
class PlugOptions(settings.Section):
    plug_scale: int = settings.opt(1, "plug_loss's scale", b=settings.POS)

PLUG_LOSS = attacks.Attack(
    "plug_loss",
    lambda inputs: attacks.Scores(-inputs.target["loss"][inputs.candidates], None),
    signals=("loss",),
    default=False,
    options=PlugOptions,
)
NOT_AN_ATTACK = 3
"""


def _plugin_env(tmp_path, value: str) -> dict:
    """A directory on ``PYTHONPATH`` with the module ``plug`` and a distribution whose
    ``jaxmia.attacks`` entry point is ``value``, as ``pip install`` would leave them."""
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "plug.py").write_text(PLUGIN)
    info = tmp_path / "plug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[jaxmia.attacks]\nplug_loss = {value}\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    return os.environ | {"PYTHONPATH": path}


def test_an_installed_packages_entry_point_registers_its_attack(tmp_path):
    """Without any import by the user: an audit config accepts it and its option (the
    entry point loaded by that first read of the registry, after the config module was
    imported), the registry lists it, the command line has the option's flag."""
    code = textwrap.dedent(
        """
        from jaxmia import audit, cli
        from jaxmia.attacks import registry
        config = audit.AuditConfig(attacks=("plug_loss",), plug_scale=2)
        print(config.attacks, config.plug_scale)
        print(registry.names()[-1], registry.get("plug_loss").default)
        args = cli.build_parser(only="audit").parse_args(["audit", "--plug-scale", "3"])
        print(cli._config(args).plug_scale)
        """
    )
    env = _plugin_env(tmp_path, "plug:PLUG_LOSS")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["('plug_loss',) 2", "plug_loss False", "3"]


@pytest.mark.slow
def test_a_broken_entry_point_is_named_in_one_line(tmp_path):
    """``jaxmia audit`` names the entry point and what is wrong with it, in one line."""
    code = "import sys; from jaxmia import cli; sys.exit(cli.main(['audit', '--help']))"
    for value, message in (
        ("plug:NOT_AN_ATTACK", "is not an Attack: 3"),
        ("plug:MISSING", "failed to load: AttributeError"),
    ):
        env = _plugin_env(tmp_path / value.replace(":", "-"), value)
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
        assert f"entry point 'plug_loss' of 'jaxmia.attacks' ({value})" in done.stderr
        assert message in done.stderr
