"""jaxmia/audit/attacking.py and the attacks' audit declarations: running every attack
of the registry against one target."""

import dataclasses
import functools

import numpy as np
import pytest

from jaxmia import splits
from jaxmia._src import attacks
from jaxmia._src.attacks import classifier, rmia, robustness
from jaxmia._src.audit import AuditConfig, attacking


def _inputs(shadows, candidates, labels, config=None, *, num_classes=3, **kw):
    """One target's :class:`jaxmia.attacks.AttackInputs` (no target signals unless given)."""
    kw.setdefault("target", {})
    kw.setdefault("target_phi", None)
    kw.setdefault("target_logits", None)
    return attacks.AttackInputs(
        shadows=shadows,
        candidates=candidates,
        labels=labels,
        num_classes=num_classes,
        settings=AuditConfig() if config is None else config,
        **kw,
    )


@pytest.mark.slow
def test_the_target_is_read_at_rmias_calibrated_temperature(monkeypatch):
    """Kills: the target's logits not divided by the calibrated temperature (the
    references still were). The calibration is forced to temperature 2, and the scores
    are checked against log-softmax at temperature 2 computed by hand."""
    rng = np.random.default_rng(1)
    k, n, c = 6, 50, 4
    keep = splits.balanced_keep(k, n, seed=2)
    labels = rng.integers(0, c, n)
    ref_logits = rng.normal(0, 3, (k, n, c)).astype(np.float32)
    target_logits = rng.normal(0, 3, (n, c)).astype(np.float32)
    monkeypatch.setattr(
        rmia,
        "calibrate_rmia",
        lambda *a, **kw: attacks.RMIACalibration(temperature=2.0, a=None),
    )
    shadows = attacks.PoolSignals(
        signals={}, phi=None, logits=ref_logits, keep=keep, pool=np.ones(n, bool)
    )
    candidates = np.arange(20)
    notes: list[str] = []
    got, _ = attacks.registry.get("rmia_online").score(
        _inputs(shadows, candidates, labels, target_logits=target_logits, notes=notes)
    )

    def log_p(logits):  # log softmax at temperature 2, by hand
        z = logits.astype(np.float64) / 2
        z = z - z.max(-1, keepdims=True)
        lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        return np.take_along_axis(lp, np.broadcast_to(labels, lp.shape[:-1])[..., None], -1)[..., 0]

    lp, ref = log_p(target_logits), log_p(ref_logits)
    want = attacks.rmia_online(
        lp[candidates],
        ref[:, candidates],
        keep[:, candidates],
        target_log_p_z=lp,
        ref_log_p_z=ref,
        keep_z=keep,
    )
    np.testing.assert_allclose(got, np.asarray(want), atol=1e-6)
    assert any("temperature 2.0" in note for note in notes)


def test_label_only_calibration_records_are_a_seeded_subset_of_large_pools():
    """Pools up to CALIBRATION_RECORDS records (the bundled 5,010 among them) use
    every record; larger ones a seeded, sorted subset of exactly that many pool records."""
    r = robustness.CALIBRATION_RECORDS
    assert r >= 5010
    small = np.zeros(9000, bool)
    small[::2] = True
    np.testing.assert_array_equal(robustness.calibration_records(small, 0), np.flatnonzero(small))
    pool = np.ones(3 * r, bool)
    pool[:100] = False
    got = robustness.calibration_records(pool, 0)
    assert got.size == r and np.all(np.diff(got) > 0) and pool[got].all()
    np.testing.assert_array_equal(got, robustness.calibration_records(pool, 0))
    assert not np.array_equal(got, robustness.calibration_records(pool, 1))


def test_subsampled_label_only_threshold_is_close_to_the_full_one():
    """Where the pool is larger than CALIBRATION_RECORDS, tau from the subset is
    within one score step of tau from every record, at nearly the same shadow accuracy.
    Scores take q + 1 = 17 values; members score higher on average."""
    rng = np.random.default_rng(3)
    k, n, q = 8, 4 * robustness.CALIBRATION_RECORDS, 16
    keep = splits.balanced_keep(k, n, seed=4)
    p = np.where(keep, 0.93, 0.85) - 0.2 * rng.random(n)  # per-record difficulty
    scores = rng.binomial(q, p) / q
    full = attacks.calibrate_threshold(scores, keep)
    cols = robustness.calibration_records(np.ones(n, bool), 0)
    sub = attacks.calibrate_threshold(scores[:, cols], keep[:, cols])
    assert abs(sub - full) <= 1 / q
    accuracy = lambda tau: np.mean((scores >= tau) == keep)
    assert accuracy(sub) >= accuracy(full) - 0.005


def test_label_only_queries_the_shadows_on_the_subset_only():
    """The target answers every candidate, the shadows only the calibration records, on
    the same copies; the note says so."""
    rng = np.random.default_rng(5)
    n, k = robustness.CALIBRATION_RECORDS + 500, 4
    x = (rng.random((n, 6)) < 0.5).astype(np.float32)
    labels = rng.integers(0, 2, n)
    w = rng.normal(size=(6, 2)).astype(np.float32)
    asked = []

    def shadow_query(v, models=None):
        asked.append((v.shape[0], models))  # fewer than CALIBRATION_MODELS: all
        return np.stack([v @ w * (i + 1) for i in range(k)])

    keep = splits.balanced_keep(k, n, seed=6)
    shadows = attacks.PoolSignals(
        signals={}, phi=None, logits=None, keep=keep, pool=np.ones(n, bool)
    )
    config = AuditConfig(label_queries=3)
    notes: list[str] = []
    candidates = np.arange(0, n, 7)
    queries = attacks.Queries(lambda v: v @ w, shadow_query, x)
    scores, tau = robustness.ATTACK.score(
        _inputs(shadows, candidates, labels, config, queries=queries, notes=notes)
    )
    cols = robustness.calibration_records(shadows.pool, config.seed)
    assert asked == [(cols.size, k)] * 3
    kw = dict(n_queries=3, seed=config.seed)
    target = attacks.query_correctness(lambda v: v @ w, x, labels, rows=candidates, **kw)
    np.testing.assert_array_equal(scores, np.asarray(attacks.label_only(target), np.float64))
    shadow = attacks.query_correctness(shadow_query, x, labels, rows=cols, **kw)
    shadow_scores = np.asarray(attacks.label_only(shadow), np.float64)
    assert tau == attacks.calibrate_threshold(shadow_scores, keep[:, cols])
    assert any(f"and {cols.size} of the {n} pool records" in note for note in notes)


def test_label_only_calibrates_on_the_first_shadow_models_only():
    """A pool of more than CALIBRATION_MODELS shadows: only the first ones are
    asked (every record), tau is calibrated on their membership rows, the note says so;
    the target's scores do not depend on it."""
    rng = np.random.default_rng(8)
    n, m = 300, robustness.CALIBRATION_MODELS
    k = m + 4
    x = rng.normal(size=(n, 5)).astype(np.float32)
    labels = rng.integers(0, 3, n)
    ws = rng.normal(size=(k, 5, 3)).astype(np.float32)
    asked = []

    def shadow_query(v, models=None):
        asked.append(models)
        return np.einsum("nf,kfc->knc", v, ws[:models]).argmax(-1)

    keep = splits.balanced_keep(k, n, seed=9)
    shadows = attacks.PoolSignals(
        signals={}, phi=None, logits=None, keep=keep, pool=np.ones(n, bool)
    )
    config = AuditConfig(label_queries=4)
    notes: list[str] = []
    target = lambda v: v @ ws[0]
    queries = attacks.Queries(target, shadow_query, x)
    scores, tau = robustness.ATTACK.score(
        _inputs(shadows, np.arange(n), labels, config, queries=queries, notes=notes)
    )
    assert asked == [m] * 4
    kw = dict(n_queries=4, seed=config.seed)
    shadow = attacks.query_correctness(lambda v: shadow_query(v, m), x, labels, **kw)
    expected = attacks.calibrate_threshold(
        np.asarray(attacks.label_only(shadow), np.float64), keep[:m]
    )
    assert tau == expected
    assert any(f"on {m} of the {k} shadow models" in note for note in notes)
    alone = attacks.query_correctness(target, x, labels, **kw)
    np.testing.assert_array_equal(scores, np.asarray(attacks.label_only(alone), np.float64))


def _small_pool(k=4, n=200, c=3, seed=11):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(c), size=(k, n)).astype(np.float32)
    keep = splits.balanced_keep(k, n, seed=seed)
    signals = {"sorted_probabilities": -np.sort(-probs, axis=-1), "loss": -np.log(probs[..., 0])}
    shadows = attacks.PoolSignals(
        signals=signals, phi=None, logits=None, keep=keep, pool=np.ones(n, bool)
    )
    return shadows, rng.integers(0, c, n), c


@pytest.mark.slow
def test_shokri_trained_in_the_background_scores_as_in_the_foreground():
    """start_fits's classifier (a daemon thread, started before the target's signals)
    gives the attack the same scores, bit for bit, as training it in attack_target; the
    other attacks are unchanged; an error in the thread is raised by attack_target."""
    shadows, labels, c = _small_pool()
    cand = np.arange(0, 200, 2)
    target_all = {name: v[0] for name, v in shadows.signals.items()}
    config = AuditConfig(seed=3)
    chosen = ("shokri", "loss")
    run = lambda **kw: attacking.attack_target(
        chosen, shadows, target_all, None, None, cand, labels, c, config, [], **kw
    )
    plain = run()
    early = run(fits=attacking.start_fits(chosen, shadows, labels, c, config))
    for name in ("shokri", "loss"):
        np.testing.assert_array_equal(plain[name][0], early[name][0])
        assert plain[name][1] == early[name][1]
    alone = attacks.shokri(
        {name: v[cand] for name, v in target_all.items()},
        shadows.signals,
        shadows.keep,
        labels=labels,
        target_labels=labels[cand],
        num_classes=c,
        pool=shadows.pool,
        seed=3,
        config=attacks.ShokriConfig(features=("sorted_probabilities",)),
    )
    np.testing.assert_array_equal(plain["shokri"][0], alone)
    broken = dataclasses.replace(shadows, keep=np.full((4, 7), 2))
    with pytest.raises(attacks.AttackInputError):
        run(fits=attacking.start_fits(chosen, broken, labels, c, config))


@pytest.mark.slow
def test_leave_one_out_classifiers_trained_together_score_as_one_by_one(monkeypatch):
    """start_fits_per_target (every target's classifier queued at once, two threads)
    gives each target the scores of a classifier trained in its own turn, bit for bit
    (200 steps each instead of 3,000, to keep the test short)."""
    short = functools.partial(classifier.ShokriConfig, steps=200)
    monkeypatch.setattr(classifier, "ShokriConfig", short)
    shadows, labels, c = _small_pool()
    cand = np.arange(0, 200, 2)
    config = AuditConfig(seed=3)
    pools = [shadows.without(t) for t in range(3)]
    fits, executor = attacking.start_fits_per_target(
        ("shokri", "loss"), pools, labels, c, config, workers=2
    )
    assert all(set(f) == {"shokri"} for f in fits)  # only the attacks that fit
    try:
        for t, others in enumerate(pools):
            target_all = {name: v[t] for name, v in shadows.signals.items()}
            args = (("shokri",), others, target_all, None, None, cand, labels, c, config, [])
            seconds: dict[str, float] = {}
            early = attacking.attack_target(*args, fits=fits[t], seconds=seconds)
            plain = attacking.attack_target(*args)
            np.testing.assert_array_equal(early["shokri"][0], plain["shokri"][0])
            assert early["shokri"][1] == plain["shokri"][1] and seconds["shokri"] > 0
    finally:
        executor.shutdown()


def _whole(pool, cand, labels, c, config, queries=None):
    """The whole pool as pool_wide reads it: no target."""
    return _inputs(pool, cand, labels, config, num_classes=c, queries=queries)


@pytest.mark.slow
def test_leave_one_out_reads_rmias_log_probabilities_computed_once():
    """pool_wide's cut of RMIA's log-probabilities (the whole pool's, computed once)
    equals each target's own computation bit for bit, so RMIA scores each leave-one-out
    target alike with them and without; wrong rows (another target's) would change the
    scores. RMIA online and offline share the hook: it runs once."""
    rng = np.random.default_rng(4)
    k, n, c = 6, 60, 4
    keep = splits.balanced_keep(k, n, seed=5)
    labels = rng.integers(0, c, n)
    logits = rng.normal(0, 3, (k, n, c)).astype(np.float32)
    pool = attacks.PoolSignals(
        signals={}, phi=None, logits=logits, keep=keep, pool=np.ones(n, bool)
    )
    cand = np.arange(0, n, 2)
    config = AuditConfig(seed=1)
    both = ("rmia_online", "rmia_offline")
    seconds: dict[str, float] = {}
    known = attacking.pool_wide(both, _whole(pool, cand, labels, c, config), seconds)
    assert set(seconds) == {"rmia_online"}  # one hook for both, timed to the first
    for t in (0, 3):
        own = known(t)
        for temperature in rmia.TEMPERATURES:
            alone = attacks.log_probs(logits[np.arange(k) != t], labels, temperature=temperature)
            np.testing.assert_array_equal(own["ref", temperature], np.asarray(alone))
        args = (both, pool.without(t), {}, None, logits[t], cand, labels, c, config, [])
        with_known = attacking.attack_target(*args, known=own)
        plain = attacking.attack_target(*args)
        for name in both:
            np.testing.assert_array_equal(with_known[name][0], plain[name][0])
    wrong = attacking.attack_target(*args, known=known(0))
    assert not np.array_equal(wrong["rmia_online"][0], plain["rmia_online"][0])


def test_leave_one_out_label_only_answered_once_scores_as_each_target_alone():
    """pool_wide's label-only answers (the pool's answers to the perturbed copies, for
    every leave-one-out target at once), cut per target, give each target the label-only
    scores and threshold of asking the copies for that target alone, bit for bit."""
    rng = np.random.default_rng(6)
    k, n, d, c = 4, 80, 12, 3
    x = (rng.random((n, d)) < 0.5).astype(np.float32)
    y = rng.integers(0, c, n)
    weights = rng.normal(size=(k, d, c)).astype(np.float32)

    def labels(inputs, models=None):  # (k, p): each "model" a fixed linear map
        return np.argmax(np.einsum("pd,kdc->kpc", inputs, weights), axis=-1)[:models]

    keep = splits.balanced_keep(k, n, seed=7)
    pool = attacks.PoolSignals(signals={}, phi=None, logits=None, keep=keep, pool=np.ones(n, bool))
    cand = np.arange(0, n, 3)
    config = AuditConfig(seed=2, label_queries=6)
    whole = _whole(pool, cand, y, c, config, queries=attacks.Queries(None, labels, x))
    known = attacking.pool_wide(("label_only",), whole)
    for t in range(k):
        own = lambda inputs, t=t: labels(inputs)[t]
        others = lambda inputs, models=None, t=t: np.delete(labels(inputs), t, axis=0)[:models]
        queries = attacks.Queries(own, others, x)
        args = (("label_only",), pool.without(t), {}, None, None, cand, y, c, config, [])
        alone = attacking.attack_target(*args, queries=queries)["label_only"]
        once = attacking.attack_target(*args, queries=queries, known=known(t))["label_only"]
        np.testing.assert_array_equal(once[0], alone[0])
        assert once[1] == alone[1]


@pytest.mark.parametrize("q", [1, 6])
def test_lira_reads_the_pools_query_axis(q):
    """With --augment the pool's phi holds q = 6 queries per record: the audit declares
    them to LiRA (which refuses an undeclared query axis); q = 1 without it."""
    rng = np.random.default_rng(3)
    k, n = 8, 40
    keep = splits.balanced_keep(k, n, seed=4)
    phi = rng.normal(0, 1, (k, n, q)).astype(np.float32)
    target_phi = rng.normal(0, 1, (n, q)).astype(np.float32)
    shadows = attacks.PoolSignals(
        signals={}, phi=phi, logits=None, keep=keep, pool=np.ones(n, bool)
    )
    candidates = np.arange(n)
    config = AuditConfig(lira_variance="global")
    for name, attack in (
        ("lira_online", attacks.lira_online),
        ("lira_offline", attacks.lira_offline),
    ):
        inputs = _inputs(shadows, candidates, None, config, num_classes=2, target_phi=target_phi)
        got, threshold = attacks.registry.get(name).score(inputs)
        want = attack(target_phi, phi, keep, queries=q, variance="global")
        np.testing.assert_array_equal(got, np.asarray(want, np.float64))
        assert threshold is None and inputs.notes == ["LiRA variance: global (8 shadow models)"]
