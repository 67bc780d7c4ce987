"""LiRA and RMIA against direct NumPy/SciPy computations, controls, and the user-model audit."""

import numpy as np
import pytest
import scipy.stats

from jaxmia import attacks, audit, datasets, engine, models, splits


def small_case(seed=0, k=8, m=6, q=1):
    rng = np.random.default_rng(seed)
    keep = splits.balanced_keep(k, m, seed=seed)
    shadow_phi = rng.normal(0, 1, (k, m, q)) + 2.0 * keep[..., None]
    target_phi = rng.normal(1, 1, (m, q))
    return target_phi, shadow_phi, keep


@pytest.mark.parametrize("q", [1, 3])
@pytest.mark.parametrize("variance", ["per_example", "global"])
def test_lira_matches_scipy(variance, q):
    target_phi, shadow_phi, keep = small_case(q=q)
    m = shadow_phi.shape[1]
    ins = [shadow_phi[keep[:, j], j] for j in range(m)]
    outs = [shadow_phi[~keep[:, j], j] for j in range(m)]
    eps = 1e-6  # lira adds this to every variance (documented)
    if variance == "global":
        sd_in = np.sqrt(np.concatenate(ins).var(axis=0, ddof=1) + eps)
        sd_out = np.sqrt(np.concatenate(outs).var(axis=0, ddof=1) + eps)
    online, offline = [], []
    for j in range(m):
        mu_in, mu_out = np.median(ins[j], axis=0), np.median(outs[j], axis=0)
        if variance == "per_example":
            sd_in = np.sqrt(((ins[j] - mu_in) ** 2).sum(0) / (len(ins[j]) - 1) + eps)
            sd_out = np.sqrt(((outs[j] - mu_out) ** 2).sum(0) / (len(outs[j]) - 1) + eps)
        x = target_phi[j]
        online.append(
            np.mean(
                scipy.stats.norm.logpdf(x, mu_in, sd_in)
                - scipy.stats.norm.logpdf(x, mu_out, sd_out)
            )
        )
        offline.append(np.mean(-scipy.stats.norm.logsf(x, mu_out, sd_out)))
    got_on = attacks.lira_online(target_phi, shadow_phi, keep, variance=variance)
    got_off = attacks.lira_offline(target_phi, shadow_phi, keep, variance=variance)
    np.testing.assert_allclose(got_on, online, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(got_off, offline, rtol=2e-4, atol=2e-4)


def test_lira_multivariate_matches_scipy():
    target_phi, shadow_phi, keep = small_case(q=2, k=10, m=5)
    m = keep.shape[1]
    mask = np.broadcast_to(keep[..., None], shadow_phi.shape)

    def fit(side):
        mu = np.stack([np.median(shadow_phi[side[:, j], j], axis=0) for j in range(m)])
        r = np.concatenate([shadow_phi[side[:, j], j] - mu[j] for j in range(m)])
        return mu, r.T @ r / (len(r) - 1)

    mu_in, cov_in = fit(keep)
    mu_out, cov_out = fit(~keep)
    want = [
        scipy.stats.multivariate_normal.logpdf(target_phi[j], mu_in[j], cov_in)
        - scipy.stats.multivariate_normal.logpdf(target_phi[j], mu_out[j], cov_out)
        for j in range(m)
    ]
    got = attacks.lira_online(target_phi, shadow_phi, keep, combine="multivariate")
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    assert mask.any()


def test_lira_refuses_pools_it_cannot_use():
    target_phi, shadow_phi, keep = small_case(k=2)
    with pytest.raises(attacks.LiRAError, match="at least 2 OUT"):
        attacks.lira_online(target_phi, shadow_phi, keep, variance="per_example")
    assert attacks.lira_online(target_phi, shadow_phi, keep, variance="global").shape == (6,)
    assert attacks.lira_online(target_phi, shadow_phi, keep).shape == (6,)  # auto: global
    no_in = np.zeros_like(keep)
    with pytest.raises(attacks.LiRAError, match="online LiRA"):
        attacks.lira_online(target_phi, shadow_phi, no_in, variance="global")
    assert np.isfinite(attacks.lira_offline(target_phi, shadow_phi, no_in, variance="global")).all()


def test_augment_images():
    x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 1)
    views = attacks.augment_images(x)
    assert views.shape == (6, 2, 3, 3, 1)
    np.testing.assert_array_equal(views[0], x)
    np.testing.assert_array_equal(views[1], x[:, :, ::-1])
    np.testing.assert_array_equal(views[2][:, 1:], x[:, :-1])  # shifted down by one row
    assert (views[2][:, 0] == 0).all()


def brute_force_rmia(lp_x, lp_z, ref_x, keep_x, ref_z, keep_z, online, a, gamma):
    def prior(lp, keep):
        p = np.exp(lp)
        if online:
            return p.mean(0)
        return 0.5 * (
            (1 + a) * np.array([p[~keep[:, j], j].mean() for j in range(p.shape[1])]) + 1 - a
        )

    rx = np.exp(lp_x) / prior(ref_x, keep_x)
    rz = np.exp(lp_z) / prior(ref_z, keep_z)
    return np.array([np.mean([x / z >= gamma for z in rz]) for x in rx]), rx


@pytest.mark.parametrize("online,a", [(True, 0.3), (False, 0.0), (False, 0.6)])
def test_rmia_matches_brute_force(online, a):
    rng = np.random.default_rng(1)
    k, m, nz = 6, 40, 30
    keep_x = splits.balanced_keep(k, m, seed=2)
    keep_z = splits.balanced_keep(k, nz, seed=3)
    lp = lambda *s: np.log(rng.uniform(0.05, 1.0, s))
    lp_x, lp_z, ref_x, ref_z = lp(m), lp(nz), lp(k, m), lp(k, nz)
    want, ratio = brute_force_rmia(lp_x, lp_z, ref_x, keep_x, ref_z, keep_z, online, a, 2.0)
    kw = dict(target_log_p_z=lp_z, ref_log_p_z=ref_z, keep_z=keep_z, gamma=2.0)
    if online:
        got = attacks.rmia_online(lp_x, ref_x, keep_x, **kw)
    else:
        got = attacks.rmia_offline(lp_x, ref_x, keep_x, a=a, **kw)
    got = np.asarray(got, np.float64)
    np.testing.assert_allclose(np.floor(got * nz + 1e-6) / nz, want, atol=1e-9)
    # ties in the count are broken by the continuous ratio, never across counts
    for i in range(m):
        for j in range(m):
            if want[i] == want[j] and ratio[i] > ratio[j] * (1 + 1e-5):
                assert got[i] > got[j]
            if want[i] > want[j]:
                assert got[i] > got[j]


def test_attack_p_is_population_baseline():
    lp_x = np.log([0.9, 0.5, 0.1])
    lp_z = np.log([0.2, 0.3, 0.6, 0.95])
    got = np.asarray(attacks.attack_p(lp_x, target_log_p_z=lp_z, gamma=1.0), np.float64)
    np.testing.assert_array_equal(np.floor(got * 4 + 1e-9), [3, 2, 0])


# ----------------------------------------------------------------- on real data


@pytest.fixture(scope="module")
def location():
    return datasets.load("location30")


def test_online_beats_offline_beats_loss_on_overfit_target(location):
    names = ("loss", "lira_online", "lira_offline", "rmia_online", "rmia_offline")
    report = audit.run(
        audit.AuditConfig(num_shadows=16, epochs=25, n_boot=0, attacks=names), dataset=location
    )
    auc = {name: m.auc for name, m in report.metrics.items()}
    assert auc["lira_online"] > auc["lira_offline"] > auc["loss"], auc
    assert auc["rmia_online"] > auc["loss"] and auc["rmia_offline"] > auc["loss"], auc
    tpr = {name: m.tpr_at_fpr[0.01] for name, m in report.metrics.items()}
    assert tpr["lira_online"] > tpr["lira_offline"] > tpr["loss"], tpr


def test_leave_one_out_uses_only_the_other_models(monkeypatch, tmp_path):
    ds = datasets.load("digits")
    seen = []
    original = attacks.lira_online

    def spy(target_phi, shadow_phi, keep, **kw):
        seen.append(np.asarray(keep).copy())
        return original(target_phi, shadow_phi, keep, **kw)

    monkeypatch.setattr(attacks, "lira_online", spy)
    config = audit.AuditConfig(
        dataset="digits", num_shadows=6, targets=3, epochs=3, n_boot=0, attacks=("lira_online",)
    )
    report = audit.run(config, dataset=ds)
    full = splits.balanced_keep(6, ds.n, seed=config.seed)
    assert len(seen) == 3
    for t, keep in enumerate(seen):
        np.testing.assert_array_equal(keep, np.delete(full, t, axis=0))
        rows = report.target_index == t
        np.testing.assert_array_equal(report.membership[rows], full[t])
    assert len(report.per_target["lira_online"]) == 3
    assert report.candidates.size == 3 * ds.n
    written = report.write(tmp_path)
    assert "Per target (leave-one-out)" in (tmp_path / "report.md").read_text()
    assert "signals" in written


def test_audit_a_users_own_model(location, tmp_path):
    rng = np.random.default_rng(0)
    perm = rng.permutation(location.n)
    members, nonmembers, population = perm[:1000], perm[1000:2000], perm[2000:]
    factory = models.mlp((128,), 30, 446)
    # the user's model: trained elsewhere; here with the engine for brevity
    keep = np.zeros(location.n, bool)
    keep[members] = True
    user = engine.train(factory, location.x, location.y, keep, epochs=40, seed=123).model(0)
    pair = lambda idx: (location.x[idx], location.y[idx])
    config = audit.AuditConfig(num_shadows=8, epochs=40, n_boot=0, dataset="user location30")
    report = audit.audit_model(
        user,
        pair(members),
        pair(nonmembers),
        pair(population),
        factory=factory,
        config=config,
        pool_dir=tmp_path / "pool",
    )
    assert report.target_accuracy["train"] > 0.95
    assert set(report.metrics) >= {"shokri", "loss", "lira_online", "rmia_online"}
    assert report.metrics["lira_online"].auc > 0.8
    # a plain function returning probabilities works the same
    import jax

    probs = lambda x: jax.nn.softmax(user(x))
    seen = []
    again = audit.audit_model(
        probs,
        pair(members),
        pair(nonmembers),
        pair(population),
        factory=factory,
        config=dataclass_replace(config, attacks=("loss",)),
        pool_dir=tmp_path / "pool",  # the same records: the pool is reused, not retrained
        progress=lambda *a: seen.append(a),
    )
    assert seen[0][:2] == (8, 8) and len(seen) == 1
    assert again.metrics["loss"].auc == pytest.approx(report.metrics["loss"].auc, abs=1e-3)
    with pytest.raises(audit.ConfigError, match="differ in input shape"):
        audit.audit_model(
            user, pair(members), (location.x[:5, :10], location.y[:5]), pair(population)
        )


def dataclass_replace(config, **kw):
    import dataclasses

    return dataclasses.replace(config, **kw)


def test_offline_rmia_leaves_out_population_records_without_out_models():
    # one disjoint shadow: its members are IN every reference model, so Pr_OUT(z) is
    # unknown for them and they cannot serve as population records
    config = audit.AuditConfig(
        dataset="digits", scheme="disjoint", num_shadows=1, epochs=2, n_boot=0,
        attacks=("rmia_offline",),
    )  # fmt: skip
    report = audit.run(config, dataset=datasets.load("digits"))
    split = splits.make_split(1797, 1, scheme="disjoint", seed=config.seed)
    members = int(split.shadow_keep.sum())
    note = f"RMIA offline: {members} of {int(split.shadow_pool.sum())} population records"
    assert any(n.startswith(note) for n in report.notes), report.notes
    assert np.isfinite(report.scores["rmia_offline"]).all()
