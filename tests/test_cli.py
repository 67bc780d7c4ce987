"""``jaxmia audit``: outputs, config files, one-line errors."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import run_cli

from jaxmia import cli, splits, study
from jaxmia._src import audit
from jaxmia._src.attacks import registry
from jaxmia._src.engine.store import pools

QUICK = ["--dataset", "digits", "--shadows", "4", "--epochs", "3", "--n-boot", "20", "-q"]


@pytest.mark.slow
def test_audit_writes_every_output(tmp_path, capsys):
    rc, out, err = run_cli(["audit", *QUICK, "-o", str(tmp_path)], capsys)
    assert rc == 0, err
    assert "shokri" in out and "AUC" in out
    for name in ("metrics.json", "scores.npz", "roc.png", "signals.png", "report.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert list(m["attacks"]) == list(registry.names(default_only=True))
    for attack in m["attacks"].values():
        assert {"auc", "tpr_at_fpr", "accuracy", "precision", "recall", "advantage"} <= set(attack)
        assert set(attack["tpr_at_fpr"]) == {"0.001", "0.01"}
        assert attack["auc_ci"][0] <= attack["auc"] <= attack["auc_ci"][1]
    assert {"train", "test"} == set(m["target_accuracy"])
    assert {"train_shadows", "train_target", "signals"} <= set(m["timings_s"])
    assert set(m["timings_s_by_attack"]) == set(m["attacks"])  # per-attack timings
    # the attacks in the main thread run one after another within the attack phase; the
    # background ones overlap them (Shokri's classifier from the signals phase on)
    by_attack, phases = m["timings_s_by_attack"], m["timings_s"]
    behind = [name for name in by_attack if registry.get(name).background]
    assert behind == ["shokri", "label_only"]
    front = [t for name, t in by_attack.items() if name not in behind]
    assert sum(front) <= phases["attacks"] + 0.01
    for name in behind:
        assert by_attack[name] <= phases["signals"] + phases["attacks"] + 0.01
    assert "Attack timings (seconds): shokri " in (tmp_path / "report.md").read_text()
    assert m["versions"]["jax"] and m["config"]["num_shadows"] == 4
    scores = np.load(tmp_path / "scores.npz")
    assert scores["index"].shape == scores["membership"].shape == scores["score_loss"].shape
    report = (tmp_path / "report.md").read_text()
    assert "![ROC](roc.png)" in report and "| loss |" in report


def test_config_file_and_flag_precedence(tmp_path, capsys):
    config = tmp_path / "audit.toml"
    config.write_text(
        '[audit]\ndataset = "digits"\nnum_shadows = 2\nepochs = 2\nattacks = ["loss"]\n'
        f'n_boot = 0\noutput_dir = "{tmp_path / "out"}"\n'
    )
    rc, _, err = run_cli(["audit", "--config", str(config), "--epochs", "1", "-q"], capsys)
    assert rc == 0, err
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(m["attacks"]) == ["loss"]
    assert m["config"]["epochs"] == 1 and m["config"]["num_shadows"] == 2


@pytest.mark.parametrize(
    "args,message",
    [
        (["audit", "--bogus"], "unrecognized arguments: --bogus"),
        (["audit", "--shadows", "many"], "invalid int value"),
        (["audit", "--dataset", "missing.csv"], "no such file: missing.csv"),
        (["audit", "--dataset", "nosuchname"], "unknown dataset"),
        (["audit", "--access", "everything"], "unknown access level"),
        (["audit", "--attacks", "magic"], "unknown attack(s) magic"),
        (["audit", "--access", "label", "--attacks", "loss"], "does not provide"),
        (["audit", "--shadows", "3"], "even number of models"),
        (["audit", "--epochs", "0"], "epochs must be an integer >= 1"),
        (["audit", "--config", "nope.toml"], "no such config file"),
        (["audit", "--fprs", "0.01,,0.1"], "--fprs: empty item in '0.01,,0.1'"),
        (["audit", "--hidden", "64,"], "--hidden: empty item in '64,'"),
        (["audit", "--attacks", "loss,,loss"], "--attacks: empty item in 'loss,,loss'"),
        (
            ["study", "--factor", "shadows", "--values", "2,4", "--coordinator", "h:1"],
            "unrecognized arguments: --coordinator",
        ),  # jaxmia study runs on one host
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(args, message, capsys, tmp_path):
    rc, _, err = run_cli([*args, "-o", str(tmp_path)], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxmia: error:") and message in lines[0]
    assert "Traceback" not in err


def test_unwritable_output_dir_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rc, _, err = run_cli(["audit", *QUICK, "-o", str(blocker / "sub")], capsys)
    assert rc == 2
    assert err.strip().startswith("jaxmia: error: cannot write to output directory")
    assert len(err.strip().splitlines()) == 1


def test_bad_config_key(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("shadows = 4\n")
    rc, _, err = run_cli(["audit", "--config", str(config)], capsys)
    assert rc == 2 and "unknown option(s) shadows" in err


@pytest.mark.slow
def test_audit_saves_its_pool_and_reruns_from_it_exactly(tmp_path, capsys):
    args = ["audit", "--dataset", "digits", "--shadows", "4", "--epochs", "2", "--n-boot", "0"]
    rc, _, err = run_cli([*args, "-o", str(tmp_path / "a")], capsys)
    assert rc == 0 and (tmp_path / "a" / "pool" / "manifest.json").exists(), err
    first = json.loads((tmp_path / "a" / "metrics.json").read_text())["attacks"]
    pool = str(tmp_path / "a" / "pool")
    rc, _, err = run_cli([*args, "--pool", pool, "-o", str(tmp_path / "b")], capsys)
    assert rc == 0 and "4/4 shadow models read from the pool" in err, err
    kept = list((tmp_path / "a" / "pool").glob("target-*.npz"))  # the target, beside it
    assert len(kept) == 1 and f"target read from {kept[0]}" in err, err
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["attacks"] == first
    # a pool of other settings is refused in one line, never mixed
    rc, _, err = run_cli([*args, "--seed", "1", "--pool", pool, "-o", str(tmp_path / "c")], capsys)
    assert rc == 2 and "trained with other settings (seed: pool 0, this command 1" in err, err
    rc, _, err = run_cli(
        [*args, "--epochs", "3", "--pool", pool, "-o", str(tmp_path / "c")], capsys
    )
    assert rc == 2 and "epochs: pool 2, this command 3" in err, err
    rc, out, _ = run_cli(["pool", "info", pool], capsys)
    assert rc == 0 and "models:        4 in" in out and "dataset:" in out
    # the implicit OUTPUT_DIR/pool says how to choose another
    rc, _, err = run_cli([*args, "--epochs", "3", "-o", str(tmp_path / "a")], capsys)
    assert rc == 2 and "choose another with --pool DIR or --output-dir DIR" in err, err


@pytest.mark.slow
def test_pool_grows_by_a_balanced_block_and_serves_its_blocks(tmp_path, capsys):
    pool = str(tmp_path / "pool")
    base = ["--dataset", "digits", "--epochs", "2", "--pool", pool, "-q"]
    rc, out, err = run_cli(["pool", "train", *base, "--shadows", "4"], capsys)
    assert rc == 0 and "models:        4 in" in out, err
    rc, out, err = run_cli(["pool", "train", *base, "--shadows", "8"], capsys)
    assert rc == 0 and "models:        8 in" in out and "blocks:        [4, 8]" in out, err
    stored = pools.load(pool)
    keep = stored.arrays["keep"]
    assert (keep.sum(axis=0) == 4).all()  # still balanced: every record in half the models
    np.testing.assert_array_equal(keep[:4], splits.balanced_keep(4, keep.shape[1], seed=0))
    # the first block alone still serves a 4-shadow audit; a size inside a block does not
    audit_args = ["audit", *base, "--attacks", "loss"]
    rc, _, err = run_cli([*audit_args, "--shadows", "4", "-o", str(tmp_path / "a")], capsys)
    assert rc == 0, err
    rc, _, err = run_cli([*audit_args, "--shadows", "6", "-o", str(tmp_path / "b")], capsys)
    assert rc == 2 and "blocks of models ending at 4, 8" in err


def test_pool_train_needs_a_directory_and_info_needs_a_pool(tmp_path, capsys):
    rc, _, err = run_cli(["pool", "train", "--dataset", "digits"], capsys)
    assert rc == 2 and "needs --pool DIR" in err
    rc, _, err = run_cli(["pool", "info", str(tmp_path)], capsys)
    assert rc == 2 and "manifest.json is missing" in err


def test_pool_train_over_processes_joins_them_and_process_0_reports(tmp_path, capsys, monkeypatch):
    """``jaxmia pool train --coordinator``: JAX's multi-process runtime starts with the
    flags given, every process trains, and only process 0 removes the pool (``--retrain``)
    and describes it."""
    from jaxmia._src.engine import distributed

    joined, trained, removed = [], [], []
    monkeypatch.setattr(distributed, "initialize", lambda *a: joined.append(a))
    monkeypatch.setattr(audit, "train_pool", lambda config, pool, **kw: trained.append(pool))
    monkeypatch.setattr(pools, "remove", lambda path: removed.append(path))
    monkeypatch.setattr(pools, "info", lambda path: f"POOL {path}")
    pool = str(tmp_path / "pool")
    flags = ["pool", "train", "--dataset", "digits", "--pool", pool, "--retrain"]
    flags += ["--coordinator", "h0:1234", "--num-processes", "2"]
    for pid in (1, 0):
        monkeypatch.setattr(distributed, "is_main_process", lambda pid=pid: pid == 0)
        rc, out, err = run_cli([*flags, "--process-id", str(pid)], capsys)
        assert rc == 0, err
        assert (f"POOL {pool}" in out) == (pid == 0)
    assert joined == [("h0:1234", 2, 1), ("h0:1234", 2, 0)]
    assert trained == [pool, pool] and removed == [pool]


def test_one_pool_serves_leave_one_out_targets(tmp_path, capsys):
    pool = str(tmp_path / "pool")
    base = ["--dataset", "digits", "--epochs", "2", "--shadows", "4", "--pool", pool]
    rc, _, err = run_cli(["pool", "train", *base, "-q"], capsys)
    assert rc == 0, err
    args = ["audit", *base, "--targets", "2", "--attacks", "loss,lira_online", "--n-boot", "0"]
    rc, _, err = run_cli([*args, "-o", str(tmp_path / "a")], capsys)
    assert rc == 0 and "4/4 shadow models read from the pool" in err, err
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["n_targets"] == 2 and len(m["per_target"]["loss"]) == 2


def test_study_keeps_a_pool_per_value_and_a_rerun_trains_nothing(tmp_path, capsys, monkeypatch):
    args = [
        "study",
        "--factor",
        "epochs",
        "--values",
        "1,2",
        "--dataset",
        "digits",
        "--shadows",
        "2",
        "--attacks",
        "loss",
        "--n-boot",
        "0",
        "-q",
        "-o",
        str(tmp_path),
    ]
    rc, first, err = run_cli(args, capsys)
    assert rc == 0, err
    assert pools.read_manifest(tmp_path / "pools" / "epochs-1")["k"] == 2
    assert pools.read_manifest(tmp_path / "pools" / "epochs-2")["spec"]["epochs"] == 2
    saved = []
    monkeypatch.setattr(pools.ChunkStore, "save_chunk", lambda *a, **k: saved.append(a))
    rc, again, err = run_cli(args, capsys)  # e.g. after an interruption: nothing retrained
    assert rc == 0 and saved == [] and again == first, err


@pytest.mark.slow
def test_a_half_written_compilation_cache_entry_is_removed(tmp_path):
    # a process killed between writing KEY-cache and KEY-atime broke every later cache
    # write (JAX warned "Error writing persistent compilation cache entry" and cached
    # nothing more); the next run removes such entries first
    cache = tmp_path / "xla"
    script = (
        "import sys\n"
        "from jaxmia import cli\n"
        "cli.use_compilation_cache()\n"
        "import jax, jax.numpy as jnp\n"
        "print(jax.jit(lambda x: x * float(sys.argv[1]))(jnp.ones(2)).sum())\n"
    )
    env = {**os.environ, "JAXMIA_COMPILATION_CACHE": str(cache)}

    def run(factor):
        done = subprocess.run(
            [sys.executable, "-c", script, factor], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done

    run("2")
    entries = sorted(p.name.removesuffix("-atime") for p in cache.glob("*-atime"))
    assert entries and all((cache / f"{key}-cache").exists() for key in entries)
    (cache / f"{entries[0]}-atime").unlink()  # as if killed before the access time
    (cache / f"{entries[0]}-cache").write_bytes(b"trunc")  # ... mid-way through the file
    assert cli.repair_compilation_cache(cache) == [entries[0]]
    assert not (cache / f"{entries[0]}-cache").exists()
    (cache / f"{entries[1]}-atime").unlink()
    done = run("3")  # a new program is written to the cache, without a warning
    assert "persistent compilation cache" not in done.stderr, done.stderr
    # the removed entry was compiled again and written whole, with its access time
    assert (cache / f"{entries[1]}-atime").exists()
    assert len(list(cache.glob("*-cache"))) == len(list(cache.glob("*-atime"))) > len(entries) - 2


@pytest.mark.parametrize(
    "args, meant",
    [
        (["audit", "--num-shadows", "3"], "--shadows"),  # the setting's name
        (["audit", "--learning-rate=0.1"], "--lr"),
        (["pool", "train", "--chunksize", "3"], "--chunk-size"),  # a near spelling
    ],
)
def test_an_unknown_option_names_the_one_meant(args, meant, capsys):
    rc, _, err = run_cli(args, capsys)
    assert rc == 2 and f"did you mean {meant}?" in err, err
    command = " ".join(w for w in args if not w.startswith("-") and not w[0].isdigit())
    assert f"(see 'jaxmia {command} --help')" in err, err  # the subcommand's own help
    rc, _, err = run_cli(["audit", "--zzzz-qqqq", "1"], capsys)
    assert rc == 2 and "unrecognized arguments: --zzzz-qqqq 1 (see 'jaxmia audit" in err, err


@pytest.mark.slow
def test_a_defence_study_trains_its_shadow_pool_once(tmp_path, capsys, monkeypatch):
    # the target's weight decay leaves the (undefended) shadows unchanged: one pool
    saved = []
    original = pools.ChunkStore.save_chunk

    def spy(self, *a, **k):
        saved.append(self.path)
        return original(self, *a, **k)

    monkeypatch.setattr(pools.ChunkStore, "save_chunk", spy)
    args = [
        "study",
        "--factor",
        "weight_decay",
        "--values",
        "0,0.01,0.1",
        "--dataset",
        "digits",
        "--shadows",
        "2",
        "--epochs",
        "2",
        "--attacks",
        "loss",
        "--n-boot",
        "0",
        "-q",
        "-o",
        str(tmp_path),
    ]
    rc, _, err = run_cli(args, capsys)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "pools").iterdir()) == ["weight_decay-all"]
    assert len(saved) == 1  # one chunk of 2 models, trained for the first value only
    # defended shadows differ per value: one pool each
    rc, _, err = run_cli([*args[:-1], str(tmp_path / "d"), "--defend-shadows"], capsys)
    assert rc == 0, err
    assert len(list((tmp_path / "d" / "pools").iterdir())) == 3


def test_pool_name_shares_only_pools_that_cannot_differ():
    base = audit.AuditConfig()
    assert study.pool_name("access", "label", base) == "access-all"
    assert study.pool_name("perturbation", "round", base) == "perturbation-all"
    assert study.pool_name("dp_noise", 1.0, base) == "dp_noise-all"
    defended = audit.AuditConfig(defend_shadows=True)
    assert study.pool_name("dp_noise", 1.0, defended) == "dp_noise-1.0"
    assert study.pool_name("dropout", 0.5, audit.AuditConfig(targets=2)) == "dropout-0.5"
    assert study.pool_name("target_size", 100, base) == "target_size-all"
    disjoint = audit.AuditConfig(scheme="disjoint")
    assert study.pool_name("target_size", 100, disjoint) == "target_size-100"
    for factor in ("shadows", "epochs", "width", "classes"):
        assert study.pool_name(factor, 8, base) == f"{factor}-8"


def test_retrain_replaces_a_pool_of_other_settings(tmp_path, capsys):
    out = str(tmp_path / "o")
    rc, _, err = run_cli(["audit", *QUICK, "--attacks", "loss", "-o", out], capsys)
    assert rc == 0, err
    rc, _, err = run_cli(["audit", *QUICK, "--attacks", "loss", "--epochs", "4", "-o", out], capsys)
    assert rc == 2 and "epochs: pool 3, this command 4" in err and "--retrain" in err, err
    rc, _, err = run_cli(
        ["audit", *QUICK, "--attacks", "loss", "--epochs", "4", "--retrain", "-o", out], capsys
    )
    assert rc == 0, err
    assert pools.read_manifest(tmp_path / "o" / "pool")["spec"]["epochs"] == 4


def test_pools_remove_deletes_only_a_pool(tmp_path):
    leaves = [("params/w", "param", np.zeros((1, 1)))]
    store = pools.ChunkStore(tmp_path / "p", {"a": 1})
    store.save_chunk(
        0,
        leaves,
        {
            "keep": np.ones((1, 3), bool),
            "keys": np.zeros((1, 2), np.uint32),
            "losses": np.zeros((1, 1)),
            "logits": np.zeros((1, 3, 4), np.float32),
            "loss": np.zeros((1, 3)),
            "logit_scaled_confidence": np.zeros((1, 3)),
        },
    )
    (tmp_path / "p" / pools.ANSWERS).mkdir()
    (tmp_path / "p" / pools.ANSWERS / f"labels-{'a' * 32}.npz").write_bytes(b"x")
    (tmp_path / "p" / "notes.txt").write_text("mine")
    with pytest.raises(pools.PoolError, match=r"notes\.txt"):
        pools.remove(tmp_path / "p")
    assert pools.load(tmp_path / "p").count == 1  # nothing was deleted
    (tmp_path / "p" / "notes.txt").unlink()
    assert pools.remove(tmp_path / "p") and not (tmp_path / "p").exists()
    assert not pools.remove(tmp_path / "p")  # no pool: nothing to do
    # a directory with someone else's manifest.json is not a pool
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(pools.PoolError, match="not a jaxmia shadow pool"):
        pools.remove(tmp_path / "q")
    assert (tmp_path / "q" / "manifest.json").exists()
    # a damaged manifest beside pool files is the pool's own: removed
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "manifest.json").write_text("{trunc")
    (tmp_path / "r" / "chunk-000000-000001.npz").write_bytes(b"x")
    assert pools.remove(tmp_path / "r") and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_study_retrain_replaces_its_pools(tmp_path, capsys):
    args = [
        "study",
        "--factor",
        "epochs",
        "--values",
        "1,2",
        "--dataset",
        "digits",
        "--shadows",
        "2",
        "--attacks",
        "loss",
        "--n-boot",
        "0",
        "-q",
        "-o",
        str(tmp_path),
    ]
    assert run_cli(args, capsys)[0] == 0
    (tmp_path / "pools" / "other").mkdir()  # not this study's: left alone
    rc, _, err = run_cli([*args, "--lr", "0.01"], capsys)
    assert rc == 2 and "learning_rate" in err and "--retrain" in err, err
    rc, _, err = run_cli([*args, "--lr", "0.01", "--retrain"], capsys)
    assert rc == 0, err
    for value in (1, 2):
        manifest = pools.read_manifest(tmp_path / "pools" / f"epochs-{value}")
        assert manifest["spec"]["learning_rate"] == 0.01
    assert (tmp_path / "pools" / "other").is_dir()


@pytest.mark.parametrize(
    "toml, message",
    [
        ('learning_rate = "0.01"\n', "learning_rate must be a finite number, got '0.01'"),
        ("audit = 5\n", "must be a table ([audit]), got 5"),
        ('epochs = 2\n[audit]\ndataset = "digits"\n', "key(s) epochs in"),
        ('per_class = "no"\n', "per_class must be true or false, got 'no'"),
        ("learning_rate = true\n", "learning_rate must be a finite number, got True"),
        ("hidden = [1.5]\n", "hidden must be a non-empty list of integers, got [1.5]"),
        ("attacks = [1, 2]\n", "attacks must be a non-empty list of non-empty strings"),
        ("dataset = 5\n", "dataset must be a non-empty string, got 5"),
    ],
)
def test_config_file_values_of_wrong_types_exit_2_before_training(
    toml, message, tmp_path, capsys, monkeypatch
):
    # these crashed with a TypeError traceback, or were accepted (per_class="no" turned
    # per-class on, learning_rate=true trained at 1.0, hidden=[1.5] gave width 1, keys
    # beside an [audit] table were ignored)
    monkeypatch.setattr(audit, "run", lambda *a, **k: pytest.fail("trained"))
    config = tmp_path / "c.toml"
    config.write_text(toml)
    rc, _, err = run_cli(["audit", "--config", str(config), "-o", str(tmp_path / "o")], capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and message in lines[0], err


def test_a_flag_turns_off_a_switch_of_the_config_file(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("per_class = true\naugment = true\n")
    args = cli.build_parser().parse_args(["audit", "--config", str(config), "--no-per-class"])
    settings = cli._config(args)
    assert settings.per_class is False and settings.augment is True


@pytest.mark.parametrize("command", [["audit"], ["study"], ["pool", "train"]])
def test_help_shows_every_setting_with_its_default(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([*command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--shadows NUM_SHADOWS number of shadow models k (default: 64)" in out
    assert "--lr LEARNING_RATE Adam learning rate (default: 0.001)" in out
    assert "--fprs FPRS FPRs for TPR@FPR, e.g. 0.001,0.01 (default: 0.001,0.01)" in out
    assert "--output-dir OUTPUT_DIR, -o OUTPUT_DIR" in out and "--defend-shadows" in out


def test_cli_progress_lines():
    out = io.StringIO()
    progress = cli.Progress(out)
    for done in (0.5, 1):  # the target
        progress(done, 1, 0.25)
    for done in (1.0, 2, 3.0, 4):  # then the shadow pool
        progress(done, 4, 0.5)
    progress(4, 4, None)  # a pool read back
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("  training  50%  loss 0.2500") and "left" in lines[0]
    assert lines[1].startswith("  training 100%  loss 0.2500") and "left" not in lines[1]
    assert [line.split("models")[0].split()[-1] for line in lines[2:6]] == [
        "1/4",
        "2/4",
        "3/4",
        "4/4",
    ]
    assert lines[6] == "  4/4 shadow models read from the pool"


@pytest.mark.slow
def test_the_label_column_is_named_on_the_command_line_and_in_toml(tmp_path, capsys):
    """A CSV with its label in ``income`` failed with "name one with label_column=", an
    option neither the CLI, the TOML config nor audit.run had."""
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 120
    df = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n).astype(float),
            "job": rng.choice(["clerk", "farmer", "nurse"], n),
            "income": rng.choice(["<=50K", ">50K"], n),
        }
    )
    df.to_csv(data := tmp_path / "adult.csv", index=False)
    args = ["audit", "--dataset", str(data), "--shadows", "4", "--epochs", "2", "--n-boot", "0"]
    rc, _, err = run_cli([*args, "--attacks", "loss", "-q", "-o", str(tmp_path / "a")], capsys)
    assert rc == 2 and "no label column" in err
    rc, _, err = run_cli(
        [*args, "--label-column", "income", "--attacks", "loss", "-o", str(tmp_path / "a")],
        capsys,
    )
    assert rc == 0, err
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["config"]["label_column"] == "income" and "2 classes" in m["dataset"]
    report = (tmp_path / "a" / "report.md").read_text()
    assert "--label-column income" in report and "(data given in Python)" not in report
    (toml := tmp_path / "audit.toml").write_text('[audit]\nlabel_column = "income"\n')
    assert audit.AuditConfig.from_dict(audit.config.read_toml(str(toml))).label_column == "income"


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--access", "topk", "--top-k", "99"], "top_k is 99, more than the 10 classes"),
        (["--population-size", "100000"], "population_size is 100000, more than the 1797"),
    ],
)
def test_settings_the_data_refutes_are_refused_before_training(tmp_path, capsys, flags, match):
    """``--top-k 99`` was refused only once training had started; ``--population-size
    100000`` on 1,797 records was accepted silently."""
    rc, _, err = run_cli(["audit", *QUICK, *flags, "-o", str(tmp_path)], capsys)
    assert rc == 2 and match in err and err.count("\n") == 1
    assert not (tmp_path / "pool").exists()  # nothing trained


def test_progress_tells_a_diverged_model_from_one_read_from_the_pool():
    """A diverged target's progress (NaN loss) said "1/1 shadow models read from the
    pool"."""
    import io

    stream = io.StringIO()
    progress = cli.Progress(stream)
    progress(1, 1, float("nan"))
    assert "read from the pool" not in stream.getvalue() and "loss nan" in stream.getvalue()
    progress(4, 4, None)
    assert "4/4 shadow models read from the pool" in stream.getvalue()


@pytest.mark.parametrize("after", [0.3, 1.5])
def test_ctrl_c_at_any_moment_is_one_line(tmp_path, after):
    """Ctrl-C in the first second (while JAX was still being imported) printed a 40-line
    KeyboardInterrupt traceback."""
    import signal
    import time

    env = {**os.environ, "JAXMIA_COMPILATION_CACHE": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxmia.cli", "audit", *QUICK, "-o", str(tmp_path)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "jaxmia: interrupted" and "Traceback" not in err


@pytest.mark.slow
def test_the_command_splits_the_cpu_into_one_device_per_core(tmp_path):
    """``build_parser()`` imported JAX before ``use_cpu_cores()`` ran, so every report said
    ``device_count 1`` and the per-core sharding never reached ``jaxmia audit``."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXMIA_CPU_DEVICES")}
    code = (
        "from jaxmia import cli\n"
        f"cli.main(['pool', 'info', {str(tmp_path / 'none')!r}])\n"
        "import jax\n"
        "print(jax.device_count())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert int(done.stdout.split()[-1]) == (os.cpu_count() or 1)
