"""Attack options (:attr:`jaxmia.attacks.Attack.options`): an attack declares its own
settings beside its code, and they become settings of the audit everywhere (``AuditConfig``,
the flag, the TOML key, ``metrics.json``'s ``"config"``, :func:`command_for`, a study
factor), checked before any training, and reach the attack's ``score``. jaxmia's own
attacks declare theirs the same way, with today's names, flags, defaults and order."""

import dataclasses
import json
import pathlib
import shlex

import numpy as np
import pytest
from helpers import run_cli

from jaxmia import cli, settings, study
from jaxmia._src import attacks, audit
from jaxmia._src.attacks import registry
from jaxmia._src.audit import config

SEEN: list[int] = []
"""The ``query_budget`` each call of the toy's score read from its settings."""


@dataclasses.dataclass(frozen=True)
class BudgetOptions(settings.Section):
    """The toy attack's one setting."""

    query_budget: int = settings.opt(3, "queries of the toy attack", b=settings.Range(1, 10))


def _score(inputs: attacks.AttackInputs) -> attacks.Scores:
    """``query_budget`` times the loss attack's scores (a positive scale: same AUC)."""
    budget = inputs.settings.query_budget
    SEEN.append(budget)
    return attacks.Scores(-inputs.target["loss"][inputs.candidates] * budget, threshold=None)


TOY = attacks.Attack("toy", _score, signals=("loss",), default=False, options=BudgetOptions)


@pytest.fixture
def toy():
    """``toy`` registered for one test, from outside the package, then removed."""
    attacks.register(TOY)
    SEEN.clear()
    try:
        yield TOY
    finally:
        attacks.unregister("toy")


TINY = ["--dataset", "digits", "--shadows", "4", "--epochs", "2", "--n-boot", "0", "-q"]


def test_an_attacks_option_is_a_setting_of_the_audit(toy, tmp_path):
    """Flat in AuditConfig (default 3), after jaxmia's own options with its flag and help,
    in to_dict, command_for (parsed back), a TOML key, a flag and a study factor; a config
    built before the attack registered reads its default."""
    c = audit.AuditConfig(query_budget=5, attacks="toy")
    assert c.query_budget == 5 and audit.AuditConfig().query_budget == 3
    assert c.attack.options[-1] == BudgetOptions(query_budget=5)
    names = [o.name for o in config.options()]
    assert names[names.index("label_queries") + 1] == "query_budget"
    option = next(o for o in config.options() if o.name == "query_budget")
    assert option.flags == ("--query-budget",) and option.section == "attack"
    assert option.help == "queries of the toy attack" and option.default == 3
    assert c.to_dict()["query_budget"] == 5 and audit.AuditConfig.from_dict(c.to_dict()) == c
    command = config.command_for(c)
    assert "--query-budget 5" in command
    args = cli.build_parser().parse_args(shlex.split(command)[1:])
    assert cli._config(args) == c
    toml = tmp_path / "audit.toml"
    toml.write_text("query_budget = 7\n")
    assert audit.AuditConfig.from_dict(config.read_toml(str(toml))).query_budget == 7
    assert study.factors()["query_budget"] == "query_budget"
    assert study.parse_values("query_budget", "1,4", c) == [1, 4]
    assert study.pool_name("query_budget", 4, c) == "query_budget-all"  # one pool
    assert c.replace(query_budget=2).query_budget == 2


def test_a_config_built_before_the_attack_registered_reads_its_default():
    before = audit.AuditConfig(seed=1)
    attacks.register(TOY)
    try:
        assert before.query_budget == 3 and before.to_dict()["query_budget"] == 3
        assert before.replace(query_budget=4).query_budget == 4
    finally:
        attacks.unregister("toy")
    assert "query_budget" not in audit.AuditConfig().to_dict()
    with pytest.raises(audit.ConfigError, match="unknown option"):
        audit.AuditConfig(query_budget=4)


@pytest.mark.parametrize(
    "words, message",
    [
        (["--query-budget", "0"], "--query-budget must be an integer in [1, 10], got 0"),
        (["--query-budget", "11"], "--query-budget must be an integer in [1, 10], got 11"),
        (["--config", "BAD_TOML"], "query_budget must be an integer in [1, 10], got 12"),
        (["--rmia-gamma", "0"], "--rmia-gamma must be a finite number > 0, got 0.0"),
    ],
)
def test_a_bad_value_is_refused_in_one_line_before_training(toy, tmp_path, capsys, words, message):
    toml = tmp_path / "bad.toml"
    toml.write_text("query_budget = 12\n")
    words = [str(toml) if w == "BAD_TOML" else w for w in words]
    out = tmp_path / "out"
    rc, _, err = run_cli(["audit", *TINY, "--attacks", "toy", *words, "-o", str(out)], capsys)
    assert rc == 2 and err.strip() == f"jaxmia: error: {message}"
    assert not out.exists()  # refused before anything was trained or written
    with pytest.raises(audit.ConfigError, match="query_budget must be an integer"):
        audit.AuditConfig(query_budget=True)


def test_a_bad_study_value_is_refused_in_one_line_before_training(toy, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["study", "--factor", "query_budget", "--values", "2,0", "--attacks", "toy"]
    rc, _, err = run_cli([*args, *TINY, "-o", str(out)], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "query_budget=0: query_budget must be an integer in [1, 10], got 0" in err
    assert not out.exists()


@pytest.mark.slow
def test_the_option_reaches_the_score_through_audit_run(toy, digits):
    """Its value reaches ``score``; the toy's scores are the loss attack's times it."""
    c = audit.AuditConfig(
        dataset="digits", num_shadows=4, epochs=2, n_boot=0, attacks=("toy", "loss"), query_budget=4
    )
    report = audit.run(c, dataset=digits)
    assert SEEN == [4]
    np.testing.assert_array_equal(report.scores["toy"], 4 * report.scores["loss"])
    assert report.to_dict()["config"]["query_budget"] == 4


@pytest.mark.slow
def test_the_option_reaches_the_score_through_the_cli_toml_and_a_study(toy, tmp_path, capsys):
    """The flag and the TOML key through ``jaxmia audit`` (one pool, kept), the values of a
    study whose factor is the option (one pool for all of them)."""
    pool = ["--pool", str(tmp_path / "pool")]
    out = tmp_path / "flag"
    rc, _, err = run_cli(
        ["audit", *TINY, *pool, "--attacks", "toy", "--query-budget", "2", "-o", str(out)], capsys
    )
    assert rc == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["query_budget"] == 2
    assert "--query-budget 2" in (out / "report.md").read_text()
    toml = tmp_path / "audit.toml"
    toml.write_text('attacks = ["toy"]\nquery_budget = 8\n')
    rc, _, err = run_cli(
        ["audit", *TINY, *pool, "--config", str(toml), "-o", str(tmp_path / "t")], capsys
    )
    assert rc == 0, err
    assert SEEN == [2, 8]
    SEEN.clear()
    args = ["study", "--factor", "query_budget", "--values", "1,5", "--attacks", "toy,loss"]
    rc, _, err = run_cli([*args, *TINY, "-o", str(tmp_path / "study")], capsys)
    assert rc == 0, err
    assert SEEN == [1, 5]
    rows = json.loads((tmp_path / "study" / "study.json").read_text())["rows"]
    assert [(r["value"], r["attack"]) for r in rows] == [
        (1, "toy"),
        (1, "loss"),
        (5, "toy"),
        (5, "loss"),
    ]
    assert [p.name for p in (tmp_path / "study" / "pools").iterdir()] == ["query_budget-all"]


@dataclasses.dataclass(frozen=True)
class GammaOptions(settings.Section):
    """Another class declaring RMIA's setting: another meaning of the same name."""

    rmia_gamma: float = settings.opt(1.0, "a gamma of mine", b=settings.POSITIVE_REAL)


@dataclasses.dataclass(frozen=True)
class SeedOptions(settings.Section):
    """An option named like a setting of the audit."""

    seed: int = settings.opt(0, "my seed")


def test_options_are_refused_at_declaration_and_registration():
    """Not a Section, a default its bounds refuse, a name another attack declares in
    another class: refused in one line naming the attack; sharing RMIA's class is fine; a
    name the audit holds already is refused when the settings are read, naming the
    class."""

    @dataclasses.dataclass(frozen=True)
    class BadDefault(settings.Section):
        n: int = settings.opt(0, "a count", b=settings.POS)

    @dataclasses.dataclass
    class Mutable(settings.Section):
        n: int = settings.opt(1, "a count")

    for options, message in (
        (int, "must be a frozen dataclass inheriting jaxmia.settings.Section"),
        (Mutable, "must be a frozen dataclass"),
        (BadDefault, "the defaults of BadDefault: n must be an integer >= 1, got 0"),
    ):
        with pytest.raises(ValueError, match=f"attack 'mine': options.*{message}"):
            attacks.Attack("mine", _score, signals=("loss",), options=options)
    gamma = attacks.Attack("mine", _score, signals=("loss",), options=GammaOptions)
    with pytest.raises(ValueError, match="option 'rmia_gamma' is declared already by attack"):
        attacks.register(gamma)
    assert "mine" not in registry.names()
    rmia_options = registry.get("rmia_online").options
    shared = attacks.Attack("mine", _score, signals=("loss",), options=rmia_options)
    attacks.register(shared)
    try:
        assert registry.option_sections().count(rmia_options) == 1
    finally:
        attacks.unregister("mine")
    attacks.register(attacks.Attack("mine", _score, signals=("loss",), options=SeedOptions))
    try:
        with pytest.raises(audit.ConfigError, match=r"SeedOptions.s setting seed .* clashes"):
            audit.AuditConfig()
    finally:
        attacks.unregister("mine")


TODAY = (
    "dataset label_column num_shadows scheme seed target_size shadow_size targets model "
    "hidden activation epochs batch_size learning_rate chunk_size defend_shadows "
    "weight_decay dropout early_stopping dp_noise dp_clip dp_delta dp_sampling l1 "
    "label_smoothing mixup relaxloss adv_train adv_train_steps adv_reg access top_k "
    "perturbation decimals noise_sigma attacks per_class lira_variance augment rmia_a "
    "rmia_gamma population_size label_queries fprs n_boot output_dir shadow_width "
    "shadow_depth shadow_epochs shadow_lr shadow_data_size shadow_shift "
    "shadow_shift_kind"
).split()
"""The settings in the order ``metrics.json`` and ``command_for`` list them before the
attacks declared their options."""

BUILT_IN = {
    "per_class": ("--per-class", False, "one Shokri attack model per class"),
    "lira_variance": (
        "--lira-variance",
        "auto",
        "LiRA variance (auto: per example from 64 shadows on)",
    ),
    "augment": ("--augment", False, "query LiRA with flipped and shifted images (image data only)"),
    "rmia_a": ("--rmia-a", None, "offline RMIA's a (default: calibrated)"),
    "rmia_gamma": ("--rmia-gamma", 2.0, "RMIA's likelihood-ratio threshold gamma"),
    "population_size": ("--population-size", None, "RMIA population records z (default: all)"),
    "label_queries": ("--label-queries", 16, "perturbed queries of the label-only attack"),
}
"""jaxmia's attack options: flag, default and help, as before the attacks declared them."""


def test_jaxmias_attack_options_keep_their_names_flags_defaults_and_order():
    """As before, and as the committed results' ``metrics.json`` lists them (its sections'
    order is older; the attack options' order within it and the defaults are the same)."""
    options = config.options()
    assert [o.name for o in options] == TODAY
    assert [o.name for o in config.attack_options()] == list(BUILT_IN)
    for o in config.attack_options():
        assert (o.flags[0], o.default, o.help, o.section) == (*BUILT_IN[o.name], "attack")
    committed = pathlib.Path(__file__).parents[1] / "results/location30-default/metrics.json"
    recorded = json.loads(committed.read_text())["config"]
    assert set(recorded) == set(TODAY)
    assert [name for name in recorded if name in BUILT_IN] == list(BUILT_IN)
    assert all(recorded[name] == default for name, (_, default, _) in BUILT_IN.items())
    by_name = {o.name: o for o in options}
    assert by_name["lira_variance"].choices == ("auto", "per_example", "global")
    defaults = audit.AuditConfig().to_dict()
    assert {k: defaults[k] for k in BUILT_IN} == {k: v[1] for k, v in BUILT_IN.items()}
