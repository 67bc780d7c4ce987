"""jaxmia/audit/attacking.py: running every attack against one target."""

import dataclasses
import functools

import numpy as np
import pytest

from jaxmia import attacks, splits
from jaxmia.audit import AuditConfig, attacking


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
        attacking.attacks_lib,
        "calibrate_rmia",
        lambda *a, **kw: attacks.RMIACalibration(temperature=2.0, a=None),
    )
    shadows = attacking.PoolSignals(
        signals={}, phi=None, logits=ref_logits, keep=keep, pool=np.ones(n, bool)
    )
    candidates = np.arange(20)
    notes: list[str] = []
    got = attacking._rmia(
        "rmia_online", shadows, {}, target_logits, candidates, labels, AuditConfig(), notes
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
    """Pools up to LABEL_CALIBRATION_RECORDS records (the bundled 5,010 among them) use
    every record; larger ones a seeded, sorted subset of exactly that many pool records."""
    r = attacking.LABEL_CALIBRATION_RECORDS
    assert r >= 5010
    small = np.zeros(9000, bool)
    small[::2] = True
    np.testing.assert_array_equal(attacking.calibration_records(small, 0), np.flatnonzero(small))
    pool = np.ones(3 * r, bool)
    pool[:100] = False
    got = attacking.calibration_records(pool, 0)
    assert got.size == r and np.all(np.diff(got) > 0) and pool[got].all()
    np.testing.assert_array_equal(got, attacking.calibration_records(pool, 0))
    assert not np.array_equal(got, attacking.calibration_records(pool, 1))


def test_subsampled_label_only_threshold_is_close_to_the_full_one():
    """Where the pool is larger than LABEL_CALIBRATION_RECORDS, tau from the subset is
    within one score step of tau from every record, at nearly the same shadow accuracy.
    Scores take q + 1 = 17 values; members score higher on average."""
    rng = np.random.default_rng(3)
    k, n, q = 8, 4 * attacking.LABEL_CALIBRATION_RECORDS, 16
    keep = splits.balanced_keep(k, n, seed=4)
    p = np.where(keep, 0.93, 0.85) - 0.2 * rng.random(n)  # per-record difficulty
    scores = rng.binomial(q, p) / q
    full = attacks.calibrate_threshold(scores, keep)
    cols = attacking.calibration_records(np.ones(n, bool), 0)
    sub = attacks.calibrate_threshold(scores[:, cols], keep[:, cols])
    assert abs(sub - full) <= 1 / q
    accuracy = lambda tau: np.mean((scores >= tau) == keep)
    assert accuracy(sub) >= accuracy(full) - 0.005


def test_label_only_queries_the_shadows_on_the_subset_only():
    """The target answers every candidate, the shadows only the calibration records, on
    the same copies; the note says so."""
    rng = np.random.default_rng(5)
    n, k = attacking.LABEL_CALIBRATION_RECORDS + 500, 4
    x = (rng.random((n, 6)) < 0.5).astype(np.float32)
    labels = rng.integers(0, 2, n)
    w = rng.normal(size=(6, 2)).astype(np.float32)
    asked = []

    def shadow_query(v, models=None):
        asked.append((v.shape[0], models))  # fewer than LABEL_CALIBRATION_MODELS: all
        return np.stack([v @ w * (i + 1) for i in range(k)])

    keep = splits.balanced_keep(k, n, seed=6)
    shadows = attacking.PoolSignals(
        signals={}, phi=None, logits=None, keep=keep, pool=np.ones(n, bool)
    )
    config = AuditConfig(label_queries=3)
    notes: list[str] = []
    candidates = np.arange(0, n, 7)
    scores, tau = attacking._label_only(
        shadows, candidates, labels, config, (lambda v: v @ w, shadow_query, x), notes
    )
    cols = attacking.calibration_records(shadows.pool, config.seed)
    assert asked == [(cols.size, k)] * 3
    kw = dict(n_queries=3, seed=config.seed)
    target = attacks.query_correctness(lambda v: v @ w, x, labels, rows=candidates, **kw)
    np.testing.assert_array_equal(scores, np.asarray(attacks.label_only(target), np.float64))
    shadow = attacks.query_correctness(shadow_query, x, labels, rows=cols, **kw)
    shadow_scores = np.asarray(attacks.label_only(shadow), np.float64)
    assert tau == attacks.calibrate_threshold(shadow_scores, keep[:, cols])
    assert any(f"and {cols.size} of the {n} pool records" in note for note in notes)


def test_label_only_calibrates_on_the_first_shadow_models_only():
    """A pool of more than LABEL_CALIBRATION_MODELS shadows: only the first ones are
    asked (every record), tau is calibrated on their membership rows, the note says so;
    the target's scores do not depend on it."""
    rng = np.random.default_rng(8)
    n, m = 300, attacking.LABEL_CALIBRATION_MODELS
    k = m + 4
    x = rng.normal(size=(n, 5)).astype(np.float32)
    labels = rng.integers(0, 3, n)
    ws = rng.normal(size=(k, 5, 3)).astype(np.float32)
    asked = []

    def shadow_query(v, models=None):
        asked.append(models)
        return np.einsum("nf,kfc->knc", v, ws[:models]).argmax(-1)

    keep = splits.balanced_keep(k, n, seed=9)
    shadows = attacking.PoolSignals(
        signals={}, phi=None, logits=None, keep=keep, pool=np.ones(n, bool)
    )
    config = AuditConfig(label_queries=4)
    notes: list[str] = []
    target = lambda v: v @ ws[0]
    scores, tau = attacking._label_only(
        shadows, np.arange(n), labels, config, (target, shadow_query, x), notes
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
    shadows = attacking.PoolSignals(
        signals=signals, phi=None, logits=None, keep=keep, pool=np.ones(n, bool)
    )
    return shadows, rng.integers(0, c, n), c


def test_shokri_trained_in_the_background_scores_as_in_the_foreground():
    """start_shokri's classifier (a daemon thread, started before the target's signals)
    gives the attack the same scores, bit for bit, as training it in attack_target; the
    other attacks are unchanged; an error in the thread is raised by attack_target."""
    shadows, labels, c = _small_pool()
    cand = np.arange(0, 200, 2)
    target_all = {name: v[0] for name, v in shadows.signals.items()}
    target_sig = {name: v[cand] for name, v in target_all.items()}
    config = AuditConfig(seed=3)
    run = lambda **kw: attacking.attack_target(
        ("shokri", "loss"),
        shadows,
        target_sig,
        None,
        target_all,
        None,
        cand,
        labels,
        c,
        config,
        [],
        **kw,
    )
    plain = run()
    early = run(shokri_fit=attacking.start_shokri(shadows, labels, c, config))
    for name in ("shokri", "loss"):
        np.testing.assert_array_equal(plain[name][0], early[name][0])
        assert plain[name][1] == early[name][1]
    alone = attacks.shokri(
        target_sig,
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
        run(shokri_fit=attacking.start_shokri(broken, labels, c, config))


def test_leave_one_out_classifiers_trained_together_score_as_one_by_one(monkeypatch):
    """start_shokri_fits (every target's classifier queued at once, two threads) gives
    each target the scores of a classifier trained in its own turn, bit for bit (200
    steps each instead of 3,000, to keep the test short)."""
    short = functools.partial(attacking.classifier.ShokriConfig, steps=200)
    monkeypatch.setattr(attacking.classifier, "ShokriConfig", short)
    shadows, labels, c = _small_pool()
    cand = np.arange(0, 200, 2)
    config = AuditConfig(seed=3)
    pools = [shadows.without(t) for t in range(3)]
    fits, executor = attacking.start_shokri_fits(pools, labels, c, config, workers=2)
    try:
        for t, others in enumerate(pools):
            target_all = {name: v[t] for name, v in shadows.signals.items()}
            target_sig = {name: v[cand] for name, v in target_all.items()}
            args = (("shokri",), others, target_sig, None, target_all, None, cand, labels, c)
            seconds: dict[str, float] = {}
            early = attacking.attack_target(*args, config, [], shokri_fit=fits[t], seconds=seconds)
            plain = attacking.attack_target(*args, config, [])
            np.testing.assert_array_equal(early["shokri"][0], plain["shokri"][0])
            assert early["shokri"][1] == plain["shokri"][1] and seconds["shokri"] > 0
    finally:
        executor.shutdown()


def test_leave_one_out_reads_rmias_log_probabilities_computed_once():
    """known_without's rows of log_probs_of (the whole pool's log-probabilities, computed
    once) equal each target's own computation bit for bit, so RMIA scores each
    leave-one-out target alike with them and without; wrong rows (another target's)
    would change the scores."""
    rng = np.random.default_rng(4)
    k, n, c = 6, 60, 4
    keep = splits.balanced_keep(k, n, seed=5)
    labels = rng.integers(0, c, n)
    logits = rng.normal(0, 3, (k, n, c)).astype(np.float32)
    pool = attacking.PoolSignals(
        signals={}, phi=None, logits=logits, keep=keep, pool=np.ones(n, bool)
    )
    shared = attacking.log_probs_of(logits, labels)
    cand = np.arange(0, n, 2)
    for t in (0, 3):
        known = attacking.known_without(t, shared)
        for temperature in attacking.RMIA_TEMPERATURES:
            alone = attacks.log_probs(logits[np.arange(k) != t], labels, temperature=temperature)
            np.testing.assert_array_equal(known["ref", temperature], np.asarray(alone))
        args = (
            ("rmia_online", "rmia_offline"),
            pool.without(t),
            {},
            None,
            {},
            logits[t],
            cand,
            labels,
            c,
            AuditConfig(seed=1),
            [],
        )
        with_known = attacking.attack_target(*args, known=known)
        plain = attacking.attack_target(*args)
        for name in ("rmia_online", "rmia_offline"):
            np.testing.assert_array_equal(with_known[name][0], plain[name][0])
    wrong = attacking.attack_target(*args, known=attacking.known_without(0, shared))
    assert not np.array_equal(wrong["rmia_online"][0], plain["rmia_online"][0])


def test_leave_one_out_label_only_answered_once_scores_as_each_target_alone():
    """label_only_answers (the pool's answers to the perturbed copies, for every
    leave-one-out target at once) cut by known_without gives each target the label-only
    scores and threshold of asking the copies for that target alone, bit for bit."""
    rng = np.random.default_rng(6)
    k, n, d, c = 4, 80, 12, 3
    x = (rng.random((n, d)) < 0.5).astype(np.float32)
    y = rng.integers(0, c, n)
    weights = rng.normal(size=(k, d, c)).astype(np.float32)

    def labels(inputs, models=None):  # (k, p): each "model" a fixed linear map
        return np.argmax(np.einsum("pd,kdc->kpc", inputs, weights), axis=-1)[:models]

    keep = splits.balanced_keep(k, n, seed=7)
    pool = attacking.PoolSignals(
        signals={}, phi=None, logits=None, keep=keep, pool=np.ones(n, bool)
    )
    cand = np.arange(0, n, 3)
    config = AuditConfig(seed=2, label_queries=6)
    answers = attacking.label_only_answers(labels, x, y, pool, cand, config)
    for t in range(k):
        own = lambda inputs, t=t: labels(inputs)[t]
        others = lambda inputs, models=None, t=t: np.delete(labels(inputs), t, axis=0)[:models]
        args = (("label_only",), pool.without(t), {}, None, {}, None, cand, y, c, config, [])
        alone = attacking.attack_target(*args, queries=(own, others, x))["label_only"]
        once = attacking.attack_target(
            *args, queries=(own, others, x), known=attacking.known_without(t, answers=answers)
        )["label_only"]
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
    shadows = attacking.PoolSignals(
        signals={}, phi=phi, logits=None, keep=keep, pool=np.ones(n, bool)
    )
    candidates = np.arange(n)
    config = AuditConfig(lira_variance="global")
    for name, attack in (
        ("lira_online", attacks.lira_online),
        ("lira_offline", attacks.lira_offline),
    ):
        out: dict = {}
        attacking._run_one(
            name,
            out,
            shadows,
            {},
            target_phi,
            {},
            None,
            candidates,
            None,
            2,
            config,
            [],
            None,
            keep,
            {},
        )
        want = attack(target_phi, phi, keep, queries=q, variance="global")
        np.testing.assert_array_equal(out[name][0], np.asarray(want, np.float64))
