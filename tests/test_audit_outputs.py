"""Output directories (issue 13, item 2): written as one consistent set, the previous
run intact after a failed write, nothing of the user's overwritten, one run at a time."""

import hashlib
import json
import os
import resource
import subprocess
import sys

import pytest
from helpers import run_cli

from jaxmia._src.audit import outputs

QUICK = ["--dataset", "digits", "--shadows", "4", "--epochs", "3", "--n-boot", "0", "-q"]


def digests(d) -> dict[str, str]:
    return {
        f.name: hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(d.iterdir())
        if f.is_file() and not f.name.startswith(".")
    }


@pytest.mark.slow
def test_a_failed_write_leaves_the_previous_run_intact_and_names_the_file(tmp_path, capsys):
    """With a file-size limit during the report (``ulimit -f 60``), the previous run's
    scores.npz was left truncated beside a new metrics.json and the old report.md."""
    out = tmp_path / "run"
    args = ["audit", *QUICK, "--attacks", "loss,lira_offline", "-o", str(out)]
    rc, _, err = run_cli(args, capsys)
    assert rc == 0, err
    before = digests(out)
    assert set(json.loads((out / outputs.RUN_RECORD).read_text())["files"]) == {
        "metrics.json",
        "scores.npz",
        "roc.png",
        "signals.png",
        "report.md",
        "vulnerable.csv",
        "vulnerable_classes.csv",
        "vulnerable.png",
    }
    sizes = sorted(f.stat().st_size for f in out.iterdir() if f.is_file())
    cap = sizes[-1] - 1  # every file of the run fits but the largest

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap, resource.RLIM_INFINITY))

    env = {**os.environ, "JAXMIA_COMPILATION_CACHE": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "jaxmia.cli", *args, "--pool", str(out / "pool")],
        env=env,
        preexec_fn=limit,
        capture_output=True,
        text=True,
    )  # it reads the pool: only the report is written
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("jaxmia: error: cannot write ") and str(out) in last, last
    assert digests(out) == before  # every file of the previous run, byte for byte
    assert not [f.name for f in out.iterdir() if f.name.endswith(".jaxmia-tmp")]


def test_write_set_replaces_only_its_own_files(tmp_path):
    outputs.write_set(tmp_path, {"a.json": b"1", "b.png": b"2"})
    outputs.write_set(tmp_path, {"a.json": b"3"})  # b.png is not drawn this time
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.json", outputs.RUN_RECORD]
    (tmp_path / "a.json").write_bytes(b"edited by the user")
    with pytest.raises(OSError, match=r"a\.json was not written by jaxmia"):
        outputs.write_set(tmp_path, {"a.json": b"4"})
    assert (tmp_path / "a.json").read_bytes() == b"edited by the user"


def test_a_users_report_is_not_overwritten(tmp_path, capsys):
    """A user-owned report.md in -o was overwritten without a word; now the audit stops
    before training."""
    (tmp_path / "report.md").write_text("my notes")
    rc, _, err = run_cli(["audit", *QUICK, "-o", str(tmp_path)], capsys)
    assert rc == 2 and "report.md was not written by jaxmia" in err and err.count("\n") == 1
    assert (tmp_path / "report.md").read_text() == "my notes"
    assert not (tmp_path / "pool").exists()  # refused before any training


def test_two_runs_on_one_output_directory_do_not_both_write(tmp_path, capsys):
    """Two audits on one -o (with different --pool) both succeeded, the last writer
    winning; the second now fails at once."""
    with outputs.claim(tmp_path):
        rc, _, err = run_cli(
            ["audit", *QUICK, "-o", str(tmp_path), "--pool", str(tmp_path / "p2")], capsys
        )
    assert rc == 2 and "another jaxmia run is writing to" in err
    assert not (tmp_path / "p2").exists()
