"""The default audit, as the README's quick start runs it (about a minute on 2 cores)."""

import json
import time

import pytest

from jaxmia import cli


@pytest.mark.slow
def test_default_audit_on_location30(tmp_path, capsys):
    start = time.perf_counter()
    rc = cli.main(["audit", "-o", str(tmp_path), "-q"])
    elapsed = time.perf_counter() - start
    assert rc == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["config"]["num_shadows"] == 64 and m["config"]["dataset"] == "location30"
    assert m["n_candidates"] == 5010
    attacks = m["attacks"]
    assert attacks["shokri"]["auc"] >= 0.80, attacks["shokri"]["auc"]
    assert attacks["loss"]["auc"] >= 0.75, attacks["loss"]["auc"]
    print(
        f"default audit: {elapsed:.1f} s; "
        + ", ".join(f"{k} AUC {v['auc']:.3f}" for k, v in attacks.items())
    )
