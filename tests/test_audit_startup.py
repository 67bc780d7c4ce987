"""What a rerun of ``jaxmia audit`` no longer does again: train the target (kept beside the
pool, keyed by everything that determines it), import what the command does not run, or
draw every vertex of a ROC curve."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from jaxmia import models, signals, threat_models
from jaxmia._src import engine
from jaxmia._src.audit import report, signal_cache, target_cache
from jaxmia._src.engine.store import files, pools


def _tiny():
    """A trained one-model pool on 20 records, its factory, optimizer and data."""
    import jax

    factory, tx = models.mlp((8,), 3, 4), engine.adam(1e-2)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 4)).astype(np.float32), np.arange(20) % 3
    keys = engine.model_keys(jax.random.key(0), 1)
    trained = engine.train(
        factory, x, y, np.arange(20) < 10, epochs=2, batch_size=4, optimizer=tx, keys=keys
    )
    return trained, factory, tx, x


@pytest.mark.slow
def test_a_kept_target_reads_back_as_trained_and_a_damaged_one_not(tmp_path):
    trained, factory, tx, x = _tiny()
    assert target_cache.save(tmp_path, "a" * 32, trained) is None  # not a pool: nothing
    assert list(tmp_path.iterdir()) == []
    (tmp_path / pools.MANIFEST).write_text("{}")  # as if the shadow pool were there
    file = target_cache.save(tmp_path, "a" * 32, trained)
    assert file == target_cache.path_of(tmp_path, "a" * 32) and file.name.startswith("target-")
    back = target_cache.load(tmp_path, "a" * 32, factory, tx)
    for name in ("keep", "losses", "train_accuracy", "test_accuracy", "logits"):
        np.testing.assert_array_equal(getattr(back, name), getattr(trained, name))
    np.testing.assert_array_equal(engine.predict(back, x), engine.predict(trained, x))
    assert target_cache.load(tmp_path, "b" * 32, factory, tx) is None  # another key
    assert target_cache.load(tmp_path, "a" * 32, models.mlp((9,), 3, 4), tx) is None
    file.write_bytes(file.read_bytes()[:-40])  # truncated: trained anew, never trusted
    assert target_cache.load(tmp_path, "a" * 32, factory, tx) is None


def test_the_target_key_covers_data_seed_keep_and_options():
    import jax

    factory = models.mlp((8,), 3, 4)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 4)).astype(np.float32), np.arange(20) % 3
    keep = np.arange(20) < 10
    keys = engine.model_keys(jax.random.key(0), 1)
    options = engine.TrainingSpec(epochs=2, batch_size=4, optimizer=engine.adam(1e-3))
    key = target_cache.target_key(factory, x, y, keep, keys, options, {"seed": 0})
    assert key == target_cache.target_key(factory, x, y, keep, keys, options.replace(), {"seed": 0})
    changed = [
        target_cache.target_key(factory, x + 1, y, keep, keys, options, {"seed": 0}),
        target_cache.target_key(factory, x, y, ~keep, keys, options, {"seed": 0}),
        target_cache.target_key(
            factory, x, y, keep, engine.model_keys(jax.random.key(1), 1), options, {"seed": 0}
        ),
        target_cache.target_key(factory, x, y, keep, keys, options.replace(epochs=3), {"seed": 0}),
        target_cache.target_key(
            factory, x, y, keep, keys, options.replace(optimizer=engine.adam(2e-3)), {"seed": 0}
        ),
        target_cache.target_key(models.mlp((9,), 3, 4), x, y, keep, keys, options, {"seed": 0}),
        target_cache.target_key(factory, x, y, keep, keys, options, {"seed": 1}),
    ]
    assert key not in changed and len(set(changed)) == len(changed)
    # every field of the spec enters the key: tests/test_engine_training_spec.py


def test_thin_roc_keeps_the_ends_and_stays_within_a_pixel():
    rng = np.random.default_rng(0)
    members = rng.random(5000) < 0.5
    scores = rng.normal(size=5000) + members
    order = np.argsort(-scores)
    fpr = np.concatenate([[0], np.cumsum(~members[order]) / (~members).sum()])
    tpr = np.concatenate([[0], np.cumsum(members[order]) / members.sum()])
    lo = 1e-4
    fpr, tpr = np.maximum(fpr, lo), np.maximum(tpr, lo)
    tf, tt = report.thin_roc(fpr, tpr, lo, pixels=500)
    assert tf.size < fpr.size / 2
    assert (tf[0], tt[0], tf[-1], tt[-1]) == (fpr[0], tpr[0], fpr[-1], tpr[-1])
    # every dropped vertex lies within one grid cell of the thinned polyline (log space)
    to_px = lambda v: (np.log10(v) - np.log10(lo)) / -np.log10(lo) * 500
    px, py, qx, qy = to_px(fpr), to_px(tpr), to_px(tf), to_px(tt)
    a = np.stack([qx[:-1], qy[:-1]], 1)
    b = np.stack([qx[1:], qy[1:]], 1)
    worst = 0.0
    for p in np.stack([px, py], 1)[::7]:
        d = b - a
        t = np.clip(((p - a) * d).sum(1) / np.maximum((d * d).sum(1), 1e-12), 0, 1)
        worst = max(worst, np.min(np.hypot(*(a + t[:, None] * d - p).T)))
    assert worst < np.sqrt(2)  # a cell's diagonal; a cell is under a pixel of the figure
    short = (np.array([1e-4, 1.0]), np.array([1e-4, 1.0]))
    assert all(
        np.array_equal(u, v) for u, v in zip(report.thin_roc(*short, lo), short, strict=True)
    )


def test_sorted_probabilities_on_the_host_equal_the_jitted_ones():
    logits = np.random.default_rng(0).normal(0, 4, (3, 50, 7)).astype(np.float32)
    labels = np.arange(50) % 7
    got = threat_models.observe(logits, labels, "probs", ["sorted_probabilities"])
    want = np.asarray(signals.sorted_probabilities(logits))
    assert got["sorted_probabilities"].tobytes() == np.ascontiguousarray(want).tobytes()


def _modules_after(code):
    env = {**os.environ, "JAXMIA_COMPILATION_CACHE": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return set(out.stdout.split())


def test_help_imports_no_jax_and_audit_help_no_study():
    show = "; import sys; print(*sorted(sys.modules))"
    top = _modules_after(
        "from jaxmia import cli\ntry: cli.main(['--help'])\nexcept SystemExit: pass" + show
    )
    assert "jax" not in top and "numpy" not in top and "matplotlib" not in top
    audit = _modules_after(
        "from jaxmia import cli\ntry: cli.main(['audit', '--help'])\nexcept SystemExit: pass" + show
    )
    assert "jaxmia._src.audit.config" in audit
    for lazy in ("jaxmia.study", "jaxmia.frontier", "jaxmia._src.dp_audit.pipeline", "matplotlib"):
        assert lazy not in audit, lazy


def test_signals_kept_in_the_pool_directory_read_back_bit_for_bit(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (4, 30, 5)).astype(np.float32)
    labels = np.arange(30) % 5
    names = ["loss", "modified_entropy", "sorted_probabilities", "correctness"]
    want = threat_models.observe(logits, labels, "probs", names)
    cache = signal_cache.SignalCache(tmp_path)
    assert all(
        np.array_equal(cache.observe(logits, labels, "probs", names)[n], want[n]) for n in names
    )
    cache.save()
    assert not (tmp_path / "answers").exists()  # no shadow pool there: nothing written
    (tmp_path / pools.MANIFEST).write_text("{}")
    cache.save()  # nothing new since the last save
    cache = signal_cache.SignalCache(tmp_path)
    cache.observe(logits, labels, "probs", names)
    cache.save()
    (file,) = (tmp_path / "answers").glob("signals-*.npz")
    assert files.is_own(file)  # pools.remove (--retrain) deletes it with the pool
    assert "sorted_probabilities" not in np.load(file).files  # (..., n, c): not kept

    computed = []
    observe = threat_models.observe
    spy = lambda lg, lb, a, n, **kw: computed.append(list(n)) or observe(lg, lb, a, n, **kw)
    monkeypatch.setattr(threat_models, "observe", spy)
    got = signal_cache.SignalCache(tmp_path).observe(logits, labels, "probs", names)
    assert computed == [["sorted_probabilities"]]  # the rest was read
    for n in names:
        assert got[n].tobytes() == want[n].tobytes() and got[n].dtype == want[n].dtype
    other = logits.copy()
    other[0, 0, 0] += 1e-3  # one value differs: another file, computed
    signal_cache.SignalCache(tmp_path).observe(other, labels, "probs", ["loss"])
    assert computed[-1] == ["loss"]
    file.write_bytes(file.read_bytes()[:-50])  # damaged: computed again, never trusted
    signal_cache.SignalCache(tmp_path).observe(logits, labels, "probs", ["loss"])
    assert computed[-1] == ["loss"]
    with pytest.raises(threat_models.AccessError):
        signal_cache.SignalCache(tmp_path).observe(logits, labels, "label", ["loss"])


@pytest.mark.slow
def test_a_cache_that_cannot_be_written_does_not_fail_the_audit(tmp_path, monkeypatch):
    (tmp_path / pools.MANIFEST).write_text("{}")

    def full(path, write):
        raise OSError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(files, "atomic_write", full)  # under both caches' write_checked
    trained = _tiny()[0]
    assert target_cache.save(tmp_path, "a" * 32, trained) is None
    cache = signal_cache.SignalCache(tmp_path)
    cache.observe(np.zeros((2, 3, 4), np.float32), np.arange(3), "probs", ["loss"])
    cache.save()  # nothing written, nothing raised
    assert not list(tmp_path.glob("**/*.npz"))
