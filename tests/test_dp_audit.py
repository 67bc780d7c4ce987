"""Tests for ``jaxmia dp-audit`` (jaxmia._src.dp_audit: pipeline, report, cli): a tiny audit end
to end through the command line (bounds at or below the accountant's epsilon, the no-noise
ceiling, the outputs, a rerun from the pool), the white-box statistic against the engine's
own count of canary inclusions, the noise calibration, and one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
import math
import pathlib

import numpy as np
import pytest
from helpers import run_cli

from jaxmia import cli
from jaxmia._src.dp_audit import cli as dp_cli
from jaxmia._src.dp_audit import pipeline as dp_audit
from jaxmia._src.dp_audit import report as dp_report

TINY = dict(
    epsilons=(2.0, math.inf),
    models=32,
    records=99,
    batch_size=20,
    epochs=8,
    canaries=60,
    repetitions=3,
    hidden=8,
)
"""Small enough for seconds; 8 epochs at q = 0.2 (40 steps): a canary model misses the
canary with probability 0.8^40 = 1.3e-4, so without noise the scores separate."""


SMALL = [
    *("--models", "8", "--records", "99", "--batch-size", "20", "--epochs", "1"),
    *("--canaries", "10", "--repetitions", "1", "--hidden", "4"),
]
"""Settings that train in a second, for errors that must come before any training."""


def _args(config: dict, out, pool) -> list[str]:
    words = ["dp-audit", "-o", str(out), "--pool", str(pool)]
    for name, value in config.items():
        shown = ",".join(f"{v:g}" for v in value) if name == "epsilons" else str(value)
        words += ["--" + name.replace("_", "-"), shown]
    return words


def _main(words: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(words)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp-audit")
    out, pool = root / "out", root / "pool"
    rc, stdout, stderr = _main(_args(TINY, out, pool))
    assert rc == 0, stderr
    return out, pool, stdout, stderr, json.loads((out / "dp_audit.json").read_text())


def _bounds(row: dict) -> list[float]:
    """The lower bounds of a row, and the GDP estimates (a Gaussian-like mechanism: they
    stay below too)."""
    return [
        row["white_box"]["clopper_pearson"],
        row["white_box"]["gdp_estimate"],
        row["black_box"]["clopper_pearson"],
        row["black_box"]["gdp_estimate"],
        row["one_run"]["epsilon"],
        *row["ideal"]["clopper_pearson"]["values"],
        *row["ideal"]["gdp_estimate"]["values"],
    ]


def _eps(value) -> float:
    return math.inf if value == "inf" else float(value)


@pytest.mark.slow
def test_every_bound_is_at_most_the_accountant_epsilon(audited):
    *_, result = audited
    rows = result["rows"]
    assert [_eps(r["target_epsilon"]) for r in rows] == [2.0, math.inf]
    finite = rows[0]
    assert _eps(finite["accountant_epsilon"]) == pytest.approx(2.0, rel=0.01)
    assert _eps(finite["accountant_epsilon"]) <= 2.0 + 1e-9
    assert _eps(finite["one_run"]["accountant_epsilon"]) <= 2.0 + 1e-9
    for row in rows:
        assert all(b <= _eps(row["accountant_epsilon"]) for b in _bounds(row))
        # the gap's parts: RDP >= PLD >= the white-box statistic's exact epsilon
        pld, statistic = _eps(row["pld_epsilon"]), _eps(row["statistic_epsilon"])
        assert _eps(row["accountant_epsilon"]) >= pld >= statistic > 0
        assert row["white_box"]["clopper_pearson"] <= statistic
        assert row["models"] == 32 and row["canary_models"] == 16
        assert row["steps"] == 8 * 5 and row["overflow"] == 0


@pytest.mark.slow
def test_without_noise_the_white_box_bound_reaches_the_ceiling(audited):
    *_, result = audited
    row = result["rows"][1]
    assert row["noise_multiplier"] == 0 and row["accountant_epsilon"] == "inf"
    ceiling = result["ceiling"]
    assert row["white_box"]["clopper_pearson"] == pytest.approx(ceiling["clopper_pearson"])
    assert row["white_box"]["gdp_estimate"] == pytest.approx(ceiling["gdp_estimate"])
    assert ceiling["clopper_pearson"] == pytest.approx(
        dp_audit.privacy_auditing.epsilon_ceiling(16, 16, delta=1e-5)
    )
    # with noise (epsilon 2) 16 + 16 runs show nothing
    assert result["rows"][0]["white_box"]["clopper_pearson"] < ceiling["clopper_pearson"]


@pytest.mark.slow
def test_outputs_progress_and_table(audited):
    out, _, stdout, stderr, result = audited
    assert {p.name for p in out.iterdir()} >= {*dp_report.OUTPUTS, "jaxmia-run.json"}
    assert (out / "dp_audit.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "| accountant eps (RDP) | PLD eps | statistic eps | white-box CP |" in report
    assert "inf (no noise)" in report and "white-box GDP estimate" in report
    assert "Every bound holds" not in report and "best any audit" not in report
    assert "6 lower bounds on the trained models" in report  # 3 a row, 2 rows
    assert "## Where the gap comes from" in report and "PLD accountant gives" in report
    assert result["command"].startswith("jaxmia dp-audit --epsilons 2.0,inf --models 32")
    assert "white-box CP" in stdout and "wrote " in stdout
    assert "epsilon 2: noise multiplier" in stderr and "training" in stderr
    assert result["data"]["feature"] == 0 and result["config"]["models"] == 32


@pytest.mark.slow
def test_rerun_reads_the_pool_and_gives_the_same_audit(audited, tmp_path):
    _, pool, _, _, first = audited
    rc, _, stderr = _main(_args(TINY, tmp_path, pool))
    assert rc == 0
    assert "read from the pool" in stderr and "training  " not in stderr
    again = json.loads((tmp_path / "dp_audit.json").read_text())
    for a, b in zip(first["rows"], again["rows"], strict=True):
        assert a["white_box"] == b["white_box"] and a["black_box"] == b["black_box"]
        assert a["one_run"] == b["one_run"]


@pytest.mark.slow
def test_white_box_statistic_is_the_canary_count_without_noise(audited):
    # The coordinate's change is lr * C / batch_size per canary inclusion (the engine's
    # count), exactly 0 for the models without the canary: no data gradient reaches it.
    _, pool, *_ = audited
    config = dp_audit.DPAuditConfig(**TINY)
    data = dp_audit.audit_data(config)
    t = dp_audit._train_pool(config, data, math.inf, 0.0, 1, str(pool), None)  # from the pool
    stat = dp_audit._dirac_statistic(
        t.pool, t.factory, t.tx, t.keys, dp_audit._LEAF, data.feature * config.hidden
    )
    inclusions = t.pool.dp_counts["canary"]
    np.testing.assert_allclose(stat, inclusions * 0.5 * 1.0 / 20, rtol=1e-5, atol=1e-7)
    assert (stat[~t.dirac_in] == 0).all() and (inclusions[t.dirac_in] > 0).all()


@pytest.mark.slow
def test_white_box_noise_has_the_mechanism_scale(audited):
    # With noise, the statistic less the canary's shifts is lr / B times a sum of
    # ``steps`` Gaussians of sd sigma * C: sd 0.5 / 20 * sigma * sqrt(40) over the models.
    _, pool, _, _, result = audited
    config = dp_audit.DPAuditConfig(**TINY)
    data = dp_audit.audit_data(config)
    sigma = result["rows"][0]["noise_multiplier"]
    t = dp_audit._train_pool(config, data, 2.0, sigma, 0, str(pool), None)  # from the pool
    stat = dp_audit._dirac_statistic(
        t.pool, t.factory, t.tx, t.keys, dp_audit._LEAF, data.feature * config.hidden
    )
    noise = (stat - t.pool.dp_counts["canary"] * 0.5 / 20) / (0.5 / 20 * sigma * math.sqrt(40))
    assert abs(noise.mean()) < 4 / math.sqrt(32)  # 32 standard normals
    assert 0.5 < noise.std() < 1.5


def test_the_committed_dp_audit_reads_back_and_writes_the_same_json(tmp_path):
    """dp_report without an audit (the tests above train one): results/dp-audit's
    dp_audit.json read back (``"inf"`` as ``inf``) writes the same JSON, a report whose
    table has a row per audited row, and the plot."""
    committed = pathlib.Path(__file__).resolve().parents[1] / "results" / "dp-audit"
    result = dp_report.load(committed / "dp_audit.json")
    assert any(math.isinf(row["target_epsilon"]) for row in result["rows"])  # inf restored
    written = dp_report.write(result, tmp_path / "o", command=result["command"])
    assert json.loads((tmp_path / "o" / "dp_audit.json").read_text()) == json.loads(
        (committed / "dp_audit.json").read_text()
    )
    report = (tmp_path / "o" / "report.md").read_text()
    table_lines = [line for line in report.splitlines() if line.startswith("| ")]
    assert result["command"] in report and "| accountant eps (RDP) |" in report
    assert len(table_lines) >= len(result["rows"]) + 1  # the header and a row each
    assert len(dp_report.table(result).strip().splitlines()) == len(result["rows"]) + 2
    assert "dp_audit.png" not in written or (tmp_path / "o" / "dp_audit.png").stat().st_size


def test_audit_data_isolates_the_canary_feature():
    config = dp_audit.DPAuditConfig(**TINY)
    data = dp_audit.audit_data(config)
    assert data.x.shape == (99, 64) and data.one_run_x.shape == (60, 64)
    for x in (data.x, data.canary_x, data.one_run_x):
        assert (x[:, data.feature] == 0).all()
    rows = np.concatenate([data.x, data.canary_x, data.one_run_x])
    assert len(np.unique(rows, axis=0)) >= len(rows) - 5  # distinct records (few duplicates)
    from jaxmia._src import datasets

    ds = datasets.load("digits")
    index = {r.tobytes(): y for r, y in zip(ds.x.reshape(ds.n, -1), ds.y, strict=True)}
    true = np.array([index[r.tobytes()] for r in data.one_run_x])
    assert (true != data.one_run_y).all()  # mislabelled


def test_calibrated_noise_meets_the_epsilon():
    for eps in (4.0,):
        sigma = dp_audit.calibrate_noise(eps, 0.128, 96, 1e-5)
        assert dp_audit.dp_epsilon(sigma, 0.128, 96, 1e-5) <= eps
        assert dp_audit.dp_epsilon(sigma / 1.002, 0.128, 96, 1e-5) > eps
    assert dp_audit.calibrate_noise(math.inf, 0.1, 10, 1e-5) == 0


def test_command_for_round_trips():
    config = dp_audit.DPAuditConfig(**TINY)
    parser = cli.build_parser()
    args = parser.parse_args(dp_audit_command_words(config))
    given = {k: getattr(args, k) for k in TINY}
    assert dp_audit.DPAuditConfig(**given) == config


def dp_audit_command_words(config) -> list[str]:
    return dp_cli.command_for(config).split()[1:]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--models", "3"], "--models must be an integer >= 8"),
        (["--epsilons", "0,1"], "--epsilons must be a non-empty list of numbers (inf allowed) > 0"),
        (["--epsilons", "one"], "expected comma-separated numbers"),
        (["--epsilons", "1,,2"], "--epsilons: empty item in '1,,2'"),
        (["--epsilons", "1,2,1"], "--epsilons repeats 1.0 in (1.0, 2.0, 1.0); give each once"),
        (["--records", "100", "--batch-size", "20"], "must be below records (100) and not divide"),
        (["--dataset", "mnist2"], "--dataset must be one of location30, digits, mnist"),
        (["--confidence", "1"], "--confidence must be a finite number in [0.5, 1)"),
        (["--delta", "0"], "--delta must be a finite number in (0, 1)"),
        (["--records", "1700", "--canaries", "500"], "exceeds the 1797 records"),
        (["--seed", "99999999999999999999"], "--seed must be an integer in [0, 4294967295]"),
        (
            ["--epsilons", "2,1e9", *SMALL],
            "epsilon 1e+09 is not reachable: the least noise audited (0.05) already gives",
        ),
    ],
)
def test_bad_options_are_one_line_errors(words, message, tmp_path, capsys):
    rc, out, err = run_cli(["dp-audit", "-o", str(tmp_path / "o"), *words], capsys)
    assert rc == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_pool_of_jaxmia_audit_is_refused(tmp_path, capsys):
    """dp-audit would write its epsilon-*/ pools into a shadow pool of jaxmia audit."""
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "manifest.json").write_text('{"format": "jaxmia-pool"}')
    words = ["dp-audit", "-o", str(tmp_path / "o"), "--pool", str(pool), *SMALL]
    rc, _, err = run_cli(words, capsys)
    assert rc == 2 and "holds a shadow pool of jaxmia audit" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in pool.iterdir()) == ["manifest.json"]


@pytest.mark.slow
def test_pool_of_other_settings_is_refused_without_retrain_advice(audited, tmp_path):
    """dp-audit has no --retrain: a pool trained with other settings says what to do."""
    _, pool, *_ = audited
    other = dict(TINY, learning_rate=0.25)
    rc, out, err = _main(_args(other, tmp_path / "o", pool))
    assert rc == 2 and out == ""
    assert "--retrain" not in err and "use another --pool directory, or remove" in err
    assert str(pool / "epsilon-2") in err


def test_help_lists_the_options(capsys):
    rc, out, _ = run_cli(["dp-audit", "--help"], capsys)
    assert rc == 0 and "--epsilons" in out and "--pool" in out and "dp_audit.json" in out


def test_seed_range_edges():
    dp_audit.DPAuditConfig(seed=2**32 - 1)
    with pytest.raises(dp_audit.DPAuditError, match="seed must be an integer in"):
        dp_audit.DPAuditConfig(seed=2**32)
