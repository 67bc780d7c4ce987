"""Tests for jaxmia.metrics against scikit-learn and brute force."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import METRIC_CALLS, run_cli
from sklearn import metrics as skm

from jaxmia._src import metrics as M


def _data(seed: int, n: int, *, tied: bool, p_member: float = 0.5, shift: float = 0.7):
    """Random membership and scores; members score higher on average."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < p_member
    y[0], y[1] = True, False  # both classes present
    s = rng.normal(size=n) + shift * y
    if tied:
        s = np.clip(np.round(s + 2), 0, 4)  # integers 0..4
    return y, s


CASES = [(seed, n, tied) for seed in range(3) for n in (2, 7, 50, 1000) for tied in (False, True)]


def _brute_tpr_at_fpr(y, s, target):
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    return max(t for f, t in zip(fpr, tpr, strict=True) if f <= target)


@pytest.mark.parametrize(("seed", "n", "tied"), CASES)
def test_roc_curve_matches_sklearn(seed, n, tied):
    y, s = _data(seed, n, tied=tied)
    fpr, tpr, thr = M.roc_curve(y, s)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_array_equal(thr, sk_thr)
    np.testing.assert_allclose(fpr, sk_fpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tpr, sk_tpr, rtol=0, atol=1e-15)
    assert thr[0] == np.inf and fpr[0] == 0 and tpr[0] == 0
    assert fpr[-1] == 1 and tpr[-1] == 1
    assert len(thr) == len(np.unique(s)) + 1


@pytest.mark.parametrize(("seed", "n", "tied"), CASES)
def test_auc_matches_sklearn(seed, n, tied):
    y, s = _data(seed, n, tied=tied)
    assert M.auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    # Integer (0/1) membership and integer scores are accepted too.
    assert M.auc(y.astype(int), s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


def test_auc_unbalanced_and_integer_scores():
    y, s = _data(11, 3000, tied=True, p_member=0.05)
    assert M.auc(y, s.astype(np.int64)) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize(("seed", "n", "tied"), CASES)
def test_auc_with_a_known_order_is_the_same(seed, n, tied):
    """``order`` (any permutation sorting the scores, ties in any order) skips the sort
    and gives the same float, bit for bit; one that does not sort them is refused."""
    y, s = _data(seed, n, tied=tied)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(n), s))  # ascending, ties shuffled
    assert M.auc(y, s, order=order) == M.auc(y, s)
    if n > 2 and np.unique(s).size > 1:
        with pytest.raises(ValueError, match="does not sort"):
            M.auc(y, s, order=order[::-1])
    with pytest.raises(ValueError, match="permutation"):
        M.auc(y, s, order=np.zeros(n, int))


@pytest.mark.parametrize(("seed", "n", "tied"), CASES)
def test_tpr_at_fpr_brute_force(seed, n, tied):
    y, s = _data(seed, n, tied=tied)
    n_neg = int((~y).sum())
    targets = [0.0, 0.001, 0.01, 0.1, 0.5, 1.0, 1 / n_neg, min(1.0, 2 / n_neg)]
    for t in targets:
        expected = _brute_tpr_at_fpr(y, s, t)
        got = M.tpr_at_fpr(y, s, t)
        assert isinstance(got, float)
        assert got == pytest.approx(expected, abs=1e-15)
    arr = M.tpr_at_fpr(y, s, targets)
    assert isinstance(arr, np.ndarray) and arr.shape == (len(targets),)
    np.testing.assert_allclose(arr, [_brute_tpr_at_fpr(y, s, t) for t in targets], atol=1e-15)


def test_tpr_at_fpr_exact_budget_is_admissible():
    # 1000 non-members, exactly 10 above every member except one: FPR 1% is attainable.
    y = np.r_[np.ones(100, bool), np.zeros(1000, bool)]
    s = np.r_[np.full(99, 5.0), [-10.0], np.full(10, 6.0), np.zeros(990)]
    assert M.tpr_at_fpr(y, s, 0.01) == pytest.approx(0.99)
    assert M.tpr_at_fpr(y, s, 0.0099) == 0.0
    assert M.tpr_at_fpr(y, s, 0.0) == 0.0


@pytest.mark.parametrize(("seed", "n", "tied"), CASES)
def test_advantage_brute_force(seed, n, tied):
    y, s = _data(seed, n, tied=tied)
    n_pos, n_neg = y.sum(), (~y).sum()
    best = 0.0
    for t in np.r_[np.inf, np.unique(s)]:
        pred = s >= t
        best = max(best, (pred & y).sum() / n_pos - (pred & ~y).sum() / n_neg)
    assert M.advantage(y, s) == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize(("seed", "n", "tied"), [c for c in CASES if c[1] >= 7])
def test_threshold_metrics_match_sklearn(seed, n, tied):
    y, s = _data(seed, n, tied=tied)
    for t in [*np.quantile(s, [0.1, 0.5, 0.9]), s.max() + 1, s.min(), -np.inf]:
        tm = M.threshold_metrics(y, s, t)
        pred = s >= t
        assert set(tm) == {"accuracy", "precision", "recall", "fpr", "balanced_accuracy"}
        assert tm["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
        assert tm["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
        assert tm["recall"] == pytest.approx(skm.recall_score(y, pred))
        assert tm["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
        assert tm["fpr"] == pytest.approx((pred & ~y).sum() / (~y).sum())


def test_threshold_metrics_nothing_predicted():
    y, s = _data(0, 100, tied=False)
    tm = M.threshold_metrics(y, s, np.inf)
    assert tm["precision"] == 0.0 and tm["recall"] == 0.0 and tm["fpr"] == 0.0
    assert tm["accuracy"] == pytest.approx((~y).mean())


@pytest.mark.parametrize(("seed", "n", "tied"), CASES)
def test_best_threshold_maximises_accuracy(seed, n, tied):
    y, s = _data(seed, n, tied=tied)
    t = M.best_threshold(y, s)
    candidates = np.r_[np.unique(s), np.inf]
    best_acc = ((s[None, :] >= candidates[:, None]) == y).mean(axis=1).max()
    assert M.threshold_metrics(y, s, t)["accuracy"] == pytest.approx(best_acc)
    assert np.isfinite(t)


def test_best_threshold_predict_nobody():
    # Members score lower than non-members and are the minority: predicting nobody wins.
    y = np.r_[np.ones(3, bool), np.zeros(10, bool)]
    s = np.r_[np.zeros(3), np.ones(10)]
    t = M.best_threshold(y, s)
    assert t > 1 and np.isfinite(t)
    assert M.threshold_metrics(y, s, t)["accuracy"] == pytest.approx(10 / 13)


def test_orientation():
    y = np.r_[np.ones(20, bool), np.zeros(30, bool)]
    s = np.r_[np.linspace(1, 2, 20), np.linspace(-2, 0, 30)]
    assert M.auc(y, s) == 1.0
    assert M.auc(y, -s) == 0.0
    assert M.advantage(y, s) == 1.0
    assert M.advantage(y, -s) == 0.0
    assert M.tpr_at_fpr(y, s, 0.0) == 1.0
    assert M.tpr_at_fpr(y, -s, 0.5) == 0.0
    assert M.threshold_metrics(y, s, M.best_threshold(y, s))["accuracy"] == 1.0
    assert M.auc(y, np.zeros(50)) == 0.5


def test_infinite_scores_are_ties():
    y = np.array([1, 1, 0, 0, 1, 0], bool)
    s = np.array([np.inf, np.inf, np.inf, -np.inf, 0.0, -np.inf])
    fpr, tpr, thr = M.roc_curve(y, s)
    assert len(thr) == 4
    np.testing.assert_allclose(fpr, [0, 1 / 3, 1 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 2 / 3, 1, 1])
    assert M.auc(y, s) == pytest.approx(skm.roc_auc_score(y, np.nan_to_num(s)))


def test_bootstrap_matches_loop():
    # The vectorised bootstrap equals point metrics on explicit resamples.
    y, s = _data(3, 300, tied=True)
    fprs = np.array([0.0, 0.01, 0.1])
    aucs, tprs = M.bootstrap._bootstrap_stats(y, s, fprs, 20, seed=5)
    idx = M.bootstrap._stratified_bootstrap_indices(y, 20, np.random.default_rng(5))
    assert idx.shape == (20, 300)
    for b in range(20):
        yb, sb = y[idx[b]], s[idx[b]]
        assert yb.sum() == y.sum()
        assert aucs[b] == pytest.approx(M.auc(yb, sb), abs=1e-12)
        np.testing.assert_allclose(tprs[b], M.tpr_at_fpr(yb, sb, fprs), atol=1e-15)


def _each_resample_exact(y, s, fprs, n_boot, seed):
    """The vectorised bootstrap's AUC and TPRs, asserted equal, bit for bit, to the point
    metrics on each explicit resample (seeded with ``SeedSequence(seed)``)."""
    aucs, tprs = M.bootstrap._bootstrap_stats(y, s, fprs, n_boot, seed=np.random.SeedSequence(seed))
    idx = M.bootstrap._stratified_bootstrap_indices(
        y, n_boot, np.random.default_rng(np.random.SeedSequence(seed))
    )
    for b in range(n_boot):
        yb, sb = y[idx[b]], s[idx[b]]
        assert aucs[b] == M.auc(yb, sb)
        np.testing.assert_array_equal(tprs[b], M.tpr_at_fpr(yb, sb, fprs))
    return aucs, tprs


@pytest.mark.parametrize("kind", ["distinct", "levels", "all_tied", "signed_zeros"])
def test_bootstrap_equals_each_resample_bit_for_bit(kind, monkeypatch):
    """Every resample's AUC and TPR (at FPR 0, the smallest nonzero, 0.5 and 1) equal the
    point metrics on that explicit resample exactly, whatever the ties between members and
    non-members; and the same with the draw counts held as int32 instead of uint8."""
    rng = np.random.default_rng(["distinct", "levels", "all_tied", "signed_zeros"].index(kind))
    n = 400
    y = rng.random(n) < 0.4
    s = {
        "distinct": rng.normal(size=n) + y,
        "levels": rng.integers(0, 4, n) + 1.0 * y * (rng.random(n) < 0.5),
        "all_tied": np.zeros(n),
        "signed_zeros": np.where(rng.random(n) < 0.5, -0.0, rng.integers(-1, 2, n) * 1.0),
    }[kind]
    fprs = np.array([0.0, 1 / (~y).sum(), 0.5, 1.0])
    aucs, tprs = _each_resample_exact(y, s, fprs, 15, 3)
    draw = M.bootstrap._draw_counts
    assert all(c.dtype == np.uint8 for c in draw(y, 2, np.random.default_rng(0)))
    wide = lambda *a: tuple(c.astype(np.int32) for c in draw(*a))  # counts past 255
    monkeypatch.setattr(M.bootstrap, "_draw_counts", wide)
    again = M.bootstrap._bootstrap_stats(y, s, fprs, 15, seed=np.random.SeedSequence(3))
    np.testing.assert_array_equal(again[0], aucs)
    np.testing.assert_array_equal(again[1], tprs)


def test_bootstrap_matches_loop_past_int32_counts():
    """Two score levels over 200,000 examples: ~70,000 resampled members of the top group
    times ~70,000 non-members below it pass 2**31 (int32), and the AUC's sums are still
    exact; with distinct scores too (no grouping). Equal to the point metrics, bit for
    bit, on each explicit resample."""
    rng = np.random.default_rng(9)
    n = 200_000
    y = rng.random(n) < 0.5
    fprs = np.array([0.001, 0.1])
    for s in (np.where(rng.random(n) < 0.3 + 0.4 * y, 1.0, 0.0), rng.normal(size=n) + y):
        _each_resample_exact(y, s, fprs, 3, 4)


def test_bootstrap_ci_properties():
    y, s = _data(0, 2000, tied=False, shift=1.0)
    ci = M.bootstrap_ci(y, s, fprs=(0.01, 0.1), n_boot=200, seed=1)
    assert set(ci) == {"auc", "tpr_at_fpr"} and set(ci["tpr_at_fpr"]) == {0.01, 0.1}
    lo, hi = ci["auc"]
    assert lo < M.auc(y, s) < hi
    for f, (tlo, thi) in ci["tpr_at_fpr"].items():
        assert tlo <= M.tpr_at_fpr(y, s, f) <= thi
    # Reproducible with the same seed, different with another.
    assert M.bootstrap_ci(y, s, fprs=(0.01, 0.1), n_boot=200, seed=1) == ci
    assert M.bootstrap_ci(y, s, fprs=(0.01, 0.1), n_boot=200, seed=2) != ci
    # Narrower with more data.
    y_small, s_small = _data(0, 200, tied=False, shift=1.0)
    lo_s, hi_s = M.bootstrap_ci(y_small, s_small, n_boot=200, seed=1)["auc"]
    assert hi - lo < 0.6 * (hi_s - lo_s)
    # Higher level -> wider interval.
    lo99, hi99 = M.bootstrap_ci(y, s, n_boot=200, level=0.99, seed=1)["auc"]
    assert lo99 <= lo and hi99 >= hi


def test_evaluate_and_to_dict():
    y, s = _data(4, 1500, tied=False)
    m = M.evaluate(y, s, n_boot=50)
    assert m.auc == pytest.approx(skm.roc_auc_score(y, s))
    assert m.tpr_at_fpr == {0.001: M.tpr_at_fpr(y, s, 0.001), 0.01: M.tpr_at_fpr(y, s, 0.01)}
    assert m.advantage == pytest.approx(M.advantage(y, s))
    assert m.threshold == M.best_threshold(y, s)
    assert m.n_members == y.sum() and m.n_nonmembers == (~y).sum()
    assert m.auc_ci is not None and m.auc_ci[0] <= m.auc <= m.auc_ci[1]
    assert m.tpr_at_fpr_ci is not None and set(m.tpr_at_fpr_ci) == {0.001, 0.01}
    with pytest.raises(AttributeError):
        m.auc = 0.0  # type: ignore[misc]

    d = m.to_dict()
    assert set(d["tpr_at_fpr"]) == {"0.001", "0.01"}
    assert isinstance(d["auc_ci"], list) and len(d["auc_ci"]) == 2
    assert json.loads(json.dumps(d, allow_nan=False)) == d

    # Explicit (calibrated) threshold and no bootstrap.
    m2 = M.evaluate(y, s, threshold=0.3, fprs=[0.05], n_boot=0)
    tm = M.threshold_metrics(y, s, 0.3)
    assert m2.accuracy == tm["accuracy"] and m2.precision == tm["precision"]
    assert m2.recall == tm["recall"] and m2.balanced_accuracy == tm["balanced_accuracy"]
    assert m2.auc_ci is None and m2.tpr_at_fpr_ci is None
    assert m2.to_dict()["tpr_at_fpr_ci"] is None
    json.dumps(m2.to_dict(), allow_nan=False)


def test_tables():
    y, s = _data(0, 3000, tied=False)  # over 1000 non-members: TPR@0.1%FPR is measurable
    results = {
        "loss": M.evaluate(y, s, n_boot=0),
        "lira-offline": M.evaluate(y, 2 * s, n_boot=0),
    }
    text = M.format_table(results)
    lines = text.splitlines()
    assert len(lines) == 4
    for col in ("attack", "AUC", "TPR@0.1%FPR", "TPR@1%FPR", "advantage", "accuracy"):
        assert col in lines[0]
    assert lines[2].startswith("loss") and lines[3].startswith("lira-offline")
    assert len({len(line) for line in lines}) == 1  # aligned
    assert f"{results['loss'].auc:.4f}" in lines[2]

    md = M.markdown_table(results)
    md_lines = md.splitlines()
    assert len(md_lines) == 4
    assert md_lines[0] == ("| attack | AUC | TPR@0.1%FPR | TPR@1%FPR | advantage | accuracy |")
    assert md_lines[1].startswith("| :---")
    assert all(line.startswith("| ") and line.endswith(" |") for line in md_lines)
    assert md_lines[2].count("|") == 7


@pytest.mark.parametrize(
    ("membership", "scores", "match"),
    [
        ([1, 0, 1], [0.1, 0.2], "mismatched lengths"),
        ([1, 0, 1], [0.1, np.nan, 0.3], "NaN"),
        ([1, 0, 2], [0.1, 0.2, 0.3], "binary"),
        ([0.5, 0, 1], [0.1, 0.2, 0.3], "binary"),
        (["a", "b", "a"], [0.1, 0.2, 0.3], "binary"),
        ([1, 1, 1], [0.1, 0.2, 0.3], "both members and non-members"),
        ([False, False], [0.1, 0.2], "both members and non-members"),
        ([], [], "both members and non-members"),
        ([[1, 0]], [[0.1, 0.2]], "1-D"),
    ],
)
def test_validation_errors(membership, scores, match):
    for fn in METRIC_CALLS:
        with pytest.raises(ValueError, match=match):
            fn(membership, scores)


def test_argument_errors():
    y, s = _data(0, 50, tied=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.tpr_at_fpr(y, s, 1.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.tpr_at_fpr(y, s, [0.01, -0.1])
    with pytest.raises(ValueError, match="NaN"):
        M.threshold_metrics(y, s, np.nan)
    with pytest.raises(ValueError, match="n_boot"):
        M.bootstrap_ci(y, s, n_boot=0)
    with pytest.raises(ValueError, match="level"):
        M.bootstrap_ci(y, s, level=1.0)


def test_infinite_best_threshold_is_written_as_null():
    y = np.array([True, True, False, False])
    s = np.array([np.inf, np.inf, 0.0, 1.0])  # the best threshold lies at +inf
    m = M.evaluate(y, s, n_boot=0)
    d = m.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["threshold"] is None or np.isfinite(d["threshold"])
    assert M.evaluate(y, s, threshold=np.inf, n_boot=0).to_dict()["threshold"] is None


def test_plot_roc_draws_one_curve_per_attack_on_log_axes():
    from matplotlib.figure import Figure

    y, s = _data(0, 400, tied=False)
    ax = Figure().subplots()
    scores = {"good": s, "reversed": -s, "tied": np.round(s)}
    out = M.plot_roc(y, scores, ax=ax)
    assert out is ax
    assert ax.get_xscale() == ax.get_yscale() == "log"
    lines = ax.get_lines()
    labels = [line.get_label() for line in lines]
    assert labels == [f"{k} (AUC {M.auc(y, v):.3f})" for k, v in scores.items()] + ["chance"]
    floor = 1.0 / (2 * int((~y).sum()))
    for line, v in zip(lines, scores.values(), strict=False):
        fpr, tpr, _ = M.roc_curve(y, v)
        np.testing.assert_array_equal(line.get_xdata(), np.maximum(fpr, floor))
        np.testing.assert_array_equal(line.get_ydata(), np.maximum(tpr, floor))
    chance = lines[-1]
    np.testing.assert_array_equal(chance.get_xdata(), chance.get_ydata())
    assert ax.get_xlim() == pytest.approx((floor, 1.0))


def test_plot_roc_without_axes_makes_a_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y, s = _data(1, 50, tied=False)
    ax = M.plot_roc(y, {"loss": s})
    try:
        assert ax.figure is not None and len(ax.get_lines()) == 2
    finally:
        plt.close(ax.figure)


def test_plot_roc_rejects_bad_input_in_one_line():
    y, s = _data(2, 20, tied=False)
    with pytest.raises(ValueError, match="empty"):
        M.plot_roc(y, {})
    with pytest.raises(ValueError, match="mismatched lengths"):
        M.plot_roc(y, {"a": s, "b": s[:-1]})


def test_metrics_is_a_package_of_concept_modules():
    names = {"roc", "bootstrap", "evaluation", "plotting"}
    assert names <= set(M.__all__)
    for name in M.__all__:
        obj = getattr(M, name)
        home = getattr(obj, "__module__", None)
        if name not in names and home is not None and callable(obj):
            assert home.startswith("jaxmia._src.metrics."), (name, home)


def test_metrics_load_without_jax():
    """The metrics are host NumPy: importing them (and jaxmia) must not pull in JAX."""
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(M.__file__).parents[2]
    code = "import sys; from jaxmia import metrics; print('jax' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_bootstrap_resamples_non_members():
    """Kills: non-members permuted instead of resampled. With constant member scores
    only the non-members' resampling moves the AUC, so its interval has positive width."""
    rng = np.random.default_rng(0)
    membership = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    scores = np.r_[np.full(50, 0.5), rng.uniform(0, 1, 50)]
    ci = M.bootstrap_ci(membership, scores, n_boot=200, seed=0)
    low, high = ci["auc"]
    assert high - low > 0.05, (low, high)


def test_best_threshold_ties_go_to_the_highest_threshold():
    """Kills: a tie in accuracy going to the lowest threshold. Thresholds 4 and 2 both
    classify 3 of 4 right; the highest wins."""
    assert M.best_threshold([1, 0, 1, 0], [4, 3, 2, 1]) == 4.0


# TPR at an FPR below 1 / non-members (issue 13, item 7): with 5 records the audit
# reported TPR@0.1%FPR = 1.000 from 3 non-members.


def test_tpr_below_the_fpr_floor_is_flagged():
    m = M.evaluate([1, 1, 0, 0, 0], [5, 4, 3, 2, 1], fprs=(0.001, 0.5), n_boot=0)
    assert m.tpr_at_fpr[0.001] == 1.0  # read at FPR 0: perfectly separated
    assert m.unmeasurable_fprs == [0.001]
    assert m.to_dict()["tpr_at_fpr_unmeasurable"] == ["0.001"]
    table = M.format_table({"loss": m})
    assert "1.0000*" in table and "0.5000*" not in table and "1/3" in table.splitlines()[-1]
    assert "1/3" in M.markdown_table({"loss": m}).splitlines()[-1]


def test_nothing_is_flagged_with_enough_non_members():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    m = M.evaluate(y, rng.normal(size=2000) + y, n_boot=0)
    assert m.unmeasurable_fprs == [] and "tpr_at_fpr_unmeasurable" not in m.to_dict()
    assert "*" not in M.format_table({"x": m})


@pytest.mark.slow
def test_an_audit_of_few_records_flags_them(tmp_path, capsys, small_digits):
    path = tmp_path / "few.npz"
    idx = np.arange(40)
    np.savez(path, x=small_digits.x[idx], y=small_digits.y[idx])
    args = ["audit", "--dataset", str(path), "--shadows", "4", "--epochs", "2", "--n-boot", "0"]
    rc, out, err = run_cli([*args, "--attacks", "loss", "-q", "-o", str(tmp_path / "o")], capsys)
    assert rc == 0, err
    assert "*" in out and "not measurable" in out
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["attacks"]["loss"]["tpr_at_fpr_unmeasurable"] == ["0.001", "0.01"]
    assert any("not measurable with 20 non-members" in n for n in m["notes"])
    report = (tmp_path / "o" / "report.md").read_text()
    assert "not measurable" in report


def test_bootstrap_fpr_bound_is_the_float_test_of_every_count():
    """The largest false-positive count whose FPR passes ``fps / n_neg <= target`` in
    float64, by brute force over every count (targets on and between the FPR grid)."""
    for n_neg in (1, 3, 7, 1000, 2505):
        grid = np.arange(n_neg + 1) / n_neg
        for target in (0.0, 0.001, 0.01, 1 / n_neg, 0.1, 1 / 3, 0.5, 0.999, 1.0, *grid[::97]):
            want = int(np.flatnonzero(np.arange(n_neg + 1) / n_neg <= target).max())
            assert M.bootstrap._max_count(float(target), n_neg) == want, (n_neg, target)


# --------------------------------------------------------------------------- issue 23


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_metrics_accept_low_precision_float_scores(dtype):
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.5
    low = np.asarray(jnp.asarray(rng.normal(size=200) + y, dtype))  # ml_dtypes for bfloat16
    wide = low.astype(np.float64)
    assert M.auc(y, low) == M.auc(y, wide)
    assert M.auc(y.astype(low.dtype), wide) == M.auc(y, wide)  # 0/1 membership in bfloat16
    assert M.tpr_at_fpr(y, jnp.asarray(low), 0.1) == M.tpr_at_fpr(y, wide, 0.1)
    for a, b in zip(M.roc_curve(y, low), M.roc_curve(y, wide), strict=True):
        np.testing.assert_array_equal(a, b)
    assert M.bootstrap_ci(y, low, n_boot=20) == M.bootstrap_ci(y, wide, n_boot=20)
    assert M.evaluate(y, low, n_boot=0).to_dict() == M.evaluate(y, wide, n_boot=0).to_dict()


def test_bootstrap_draws_every_example_of_each_class_about_once_per_resample():
    from jaxmia._src.metrics import bootstrap

    y = np.zeros(31, bool)
    y[[0, 3, 4, 8, 15, 16, 23, 29]] = True  # the last member (29) is not the last index
    n_boot = 4000
    idx = bootstrap._stratified_bootstrap_indices(y, n_boot, np.random.default_rng(0))
    per_example = np.bincount(idx.ravel(), minlength=y.size) / n_boot
    members, counts = bootstrap._draw_counts(y, n_boot, np.random.default_rng(0))
    for got in (per_example, (members.astype(int) + counts).mean(0)):
        np.testing.assert_allclose(got, 1.0, atol=0.1)  # binomial mean 1, sd <= 0.016
        assert got[29] > 0.9 and got[30] > 0.9  # the last member, the last non-member
    assert (idx[:, :8] < 31).all() and y[idx[:, :8]].all() and not y[idx[:, 8:]].any()


@pytest.mark.parametrize("last", ["member", "non-member"])
def test_bootstrap_interval_sees_the_last_example_of_a_class(last):
    # one misranked example, the last of its class: resamples that draw it (about 64% of
    # them) have AUC < 1, so the interval's lower end is below 1
    y = np.array([1, 0] * 10, bool)
    s = np.where(y, 1.0, 0.0)
    if last == "member":
        s[18] = -1.0  # the last member, below every non-member
    else:
        s[19] = 2.0  # the last non-member, above every member
    lo, hi = M.bootstrap_ci(y, s, n_boot=200)["auc"]
    assert lo < 0.95 and hi == 1.0


def test_metrics_refuse_scores_that_are_not_real_numbers():
    import ml_dtypes

    y = np.array([0, 1, 0, 1], bool)
    for scores in (
        np.array([0.1, 0.9, 0.2, 0.8]) * (1 + 1j),  # complex
        np.array(["a", "b", "c", "d"]),  # strings
        np.zeros(4, "V4"),  # raw bytes, a "V" dtype like bfloat16's
    ):
        with pytest.raises(ValueError, match=r"^scores must be real numbers; got dtype"):
            M.auc(y, scores)
    assert M.auc(y, np.array([0, 3, 1, 2]).astype(ml_dtypes.int4)) == 1.0  # ml_dtypes' ints
