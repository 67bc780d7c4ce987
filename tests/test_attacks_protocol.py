"""The attack protocol of jaxmia.attacks: one signature, traceable array cores, calibrations.

Every array-level attack is jitted and vmapped over targets and must equal one call per
target; NumPy and JAX inputs give the same scores; ``keep`` may be bool or 0/1 integers;
the calibrations match hand computations; a model that cannot leak gives chance AUC.
"""

from __future__ import annotations

import functools
import inspect
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmia import signals, splits
from jaxmia._src import attacks, metrics
from jaxmia._src.attacks import registry

T, K, M, NZ, Q = 8, 8, 40, 30, 4  # targets, shadow models, candidates, population, queries


def _make_pool():
    """Statistics of ``T`` targets, each with ``K`` shadow models of its own: members have
    a higher statistic by 1.5. ``(T, m)``, ``(T, K, m)`` and so on."""
    rng = np.random.default_rng(0)
    keep = np.stack([splits.balanced_keep(K, M, seed=t) for t in range(T)])
    keep_z = np.stack([splits.balanced_keep(K, NZ, seed=100 + t) for t in range(T)])
    target_member = rng.random((T, M)) < 0.5
    base = rng.normal(0, 1, M)  # per-example difficulty, shared by all models
    shadow = base + 1.5 * keep + rng.normal(0, 0.5, (T, K, M))
    target = base + 1.5 * target_member + rng.normal(0, 0.5, (T, M))
    log_p = lambda phi: -np.logaddexp(0, -phi)  # log sigmoid: a probability's log
    return dict(
        keep=keep,
        keep_z=keep_z,
        target=target.astype(np.float32),
        shadow=shadow.astype(np.float32),
        target_q=(target[..., None] + rng.normal(0, 0.3, (T, M, Q))).astype(np.float32),
        shadow_q=(shadow[..., None] + rng.normal(0, 0.3, (T, K, M, Q))).astype(np.float32),
        lp=log_p(target).astype(np.float32),
        ref=log_p(shadow).astype(np.float32),
        lp_z=log_p(rng.normal(0, 1, (T, NZ))).astype(np.float32),
        ref_z=log_p(rng.normal(0, 1, (T, K, NZ)) + 1.5 * keep_z).astype(np.float32),
        correct=rng.random((T, M, Q)) < 0.5 + 0.4 * target_member[..., None],
        shadow_correct=rng.random((T, K, M, Q)) < 0.5 + 0.4 * keep[..., None],
    )


@pytest.fixture(scope="module")
def pool():
    """The statistics of :func:`_make_pool`."""
    return _make_pool()


def _core_args(p, attack):
    """``(positional args, keyword args)`` (batched over targets) for ``attack.core``, by
    the kind of input it declares (:data:`jaxmia.attacks.registry.CORE_INPUTS`)."""
    if attack.core_input == "statistic":
        return (p["target"], p["shadow"], p["keep"]), {}
    if attack.core_input == "answers":
        return (p["correct"], p["shadow_correct"], p["keep"]), {}
    assert attack.core_input == "log_probability", attack.core_input
    population = dict(target_log_p_z=p["lp_z"], ref_log_p_z=p["ref_z"], keep_z=p["keep_z"])
    accepted = inspect.signature(attack.core).parameters
    return (p["lp"], p["ref"], p["keep"]), {k: v for k, v in population.items() if k in accepted}


def _cases(p):
    """``(name, attack, positional args (batched over targets), keyword args (batched))``:
    every registered attack with an array core, then variants of their options."""
    cases = []
    for name in registry.names():
        attack = registry.get(name)
        if attack.core is not None:
            cases.append((name, attack.core, *_core_args(p, attack)))
    stats = (p["target"], p["shadow"], p["keep"])
    for variance, combine in itertools.product(("global", "per_example"), ("mean",)):
        for name in ("lira_online", "lira_offline"):
            f = functools.partial(getattr(attacks, name), variance=variance, combine=combine)
            cases.append((f"{name}[{variance}]", f, stats, {}))
    q_stats = (p["target_q"], p["shadow_q"], p["keep"])
    with_q = functools.partial(attacks.lira_online, queries=Q)
    cases.append(("lira_online[q]", with_q, q_stats, {}))
    multi = functools.partial(attacks.lira_online, queries=Q, combine="multivariate")
    cases.append(("lira_online[multivariate]", multi, q_stats, {}))
    ref = (p["lp"], p["ref"], p["keep"])
    rmia_z = dict(target_log_p_z=p["lp_z"], ref_log_p_z=p["ref_z"], keep_z=p["keep_z"])
    offline = functools.partial(attacks.rmia_offline, a=0.4)
    cases.append(("rmia_offline[a=0.4]", offline, ref, rmia_z))
    return cases


def test_every_registered_attack_is_a_case_or_trains_a_model():
    """The protocol's cases come from the registry: each attack with an array core is a
    case under its name; the only one without (Shokri's, which trains a classifier) is
    checked in tests/test_attacks_classifier.py."""
    names = {c[0] for c in _cases(_make_pool())}
    without = [n for n in registry.names() if registry.get(n).core is None]
    assert without == ["shokri"]
    assert set(registry.names()) - set(without) <= names


CASE_NAMES = [c[0] for c in _cases(_make_pool())]


def _case(p, name):
    return next(c for c in _cases(p) if c[0] == name)


def _one(kwargs, t):
    return {k: v[t] for k, v in kwargs.items()}


@pytest.mark.parametrize("name", CASE_NAMES)
def test_jit_vmap_over_targets_equals_one_call_per_target(pool, name):
    _, attack, args, kwargs = _case(pool, name)
    batched = jax.jit(jax.vmap(attack))(*args, **kwargs)
    assert batched.shape == (T, M) and batched.dtype == jnp.float32
    for t in range(T):
        one = attack(*(a[t] for a in args), **_one(kwargs, t))
        assert one.shape == (M,)
        np.testing.assert_allclose(batched[t], one, rtol=1e-5, atol=1e-5, err_msg=name)
        jitted = jax.jit(attack)(*(a[t] for a in args), **_one(kwargs, t))
        np.testing.assert_allclose(jitted, one, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_numpy_and_jax_inputs_and_int_keep_give_the_same_scores(pool, name):
    _, attack, args, kwargs = _case(pool, name)
    args, kwargs = [a[0] for a in args], _one(kwargs, 0)
    want = np.asarray(attack(*args, **kwargs))
    as_jax = attack(*map(jnp.asarray, args), **{k: jnp.asarray(v) for k, v in kwargs.items()})
    assert isinstance(as_jax, jax.Array)
    np.testing.assert_array_equal(as_jax, want)
    ints = [a.astype(np.int32) if a.dtype == bool else a for a in args]
    int_kwargs = {k: v.astype(np.int8) if v.dtype == bool else v for k, v in kwargs.items()}
    np.testing.assert_array_equal(attack(*ints, **int_kwargs), want)
    bad = [a * 2 if a.dtype == bool else a for a in args]  # keep of 0/2: refused
    with pytest.raises(ValueError, match="bool or 0/1") as info:
        attack(*bad, **kwargs)
    assert "\n" not in str(info.value)
    floats = [a.astype(np.float32) if a.dtype == bool else a for a in args]
    with pytest.raises(ValueError, match="bool or 0/1"):
        attack(*floats, **kwargs)


def test_public_names_jit_directly_and_with_static_options(pool):
    t, s, keep = pool["target"][0], pool["shadow"][0], pool["keep"][0]
    want = attacks.lira_online(t, s, keep, variance="per_example")
    static = jax.jit(attacks.lira_online, static_argnames="variance")
    np.testing.assert_allclose(static(t, s, keep, variance="per_example"), want, rtol=1e-6)
    jitted = jax.jit(attacks.lira_online)(t, s, keep)
    np.testing.assert_allclose(jitted, attacks.lira_online(t, s, keep), rtol=1e-6)
    gamma = jax.jit(attacks.rmia_online)(  # gamma traced
        pool["lp"][0],
        pool["ref"][0],
        keep,
        target_log_p_z=pool["lp_z"][0],
        ref_log_p_z=pool["ref_z"][0],
        gamma=jnp.float32(2.0),
    )
    eager = attacks.rmia_online(
        pool["lp"][0],
        pool["ref"][0],
        keep,
        target_log_p_z=pool["lp_z"][0],
        ref_log_p_z=pool["ref_z"][0],
    )
    np.testing.assert_allclose(gamma, eager, atol=1e-6)
    # shape errors are caught while tracing too, in one line
    with pytest.raises(attacks.LiRAError, match="does not match"):
        jax.jit(attacks.lira_online)(t[:-1], s, keep)


@pytest.mark.slow
def test_lira_variance_auto_follows_the_pool_size():
    rng = np.random.default_rng(1)
    for k, resolved in ((16, "global"), (62, "global"), (64, "per_example"), (80, "per_example")):
        keep = splits.balanced_keep(k, 30, seed=k)
        shadow = rng.normal(0, 1, (k, 30)) + keep * rng.uniform(0.5, 3, 30)  # per-example gaps
        target = rng.normal(0.5, 1, 30)
        assert attacks.lira.resolve_variance("auto", k) == resolved
        for attack in (attacks.lira_online, attacks.lira_offline):
            auto = attack(target, shadow, keep)  # the library default is "auto"
            np.testing.assert_array_equal(auto, attack(target, shadow, keep, variance=resolved))
            other = "global" if resolved == "per_example" else "per_example"
            assert not np.allclose(auto, attack(target, shadow, keep, variance=other))


# --------------------------------------------------------------------------- calibrations


def test_calibrate_threshold_by_hand():
    scores = np.array([[0.9, 0.2, 0.6, 0.4], [0.8, 0.7, 0.1, 0.3]], np.float32)
    keep = np.array([[1, 0, 1, 0], [1, 1, 0, 0]])
    # members 0.9, 0.6, 0.8, 0.7; non-members 0.2, 0.4, 0.1, 0.3: "score >= 0.6" is always
    # right, and 0.6 is the highest observed score that is
    assert attacks.calibrate_threshold(scores, keep) == pytest.approx(0.6)
    # only the first two examples count: members 0.9, 0.8, 0.7, non-member 0.2 -> tau 0.7
    pool = np.array([True, True, False, False])
    assert attacks.calibrate_threshold(scores, keep, pool=pool) == pytest.approx(0.7)
    # the member scores lowest: predicting nobody (1/2 right) ties predicting everybody and
    # wins as the higher threshold, just above the maximum also when compared in float32
    s = np.array([[0.1, 0.9]], np.float32)
    tau = attacks.calibrate_threshold(s, np.array([[1, 0]]))
    assert not (s >= tau).any() and not (s.astype(np.float64) >= tau).any()
    assert tau == pytest.approx(0.9)
    with pytest.raises(ValueError, match="must have shape"):
        attacks.calibrate_threshold(scores, keep[:, :3])


def _auc_of(online, ref_lp, keep, t, a):
    """Hand RMIA: model ``t`` the pseudo-target, the others references, its records the
    population; ``Pr(x)`` from probabilities, count of dominated records plus tie-break."""
    others = np.arange(keep.shape[0]) != t
    p = np.exp(ref_lp[others].astype(np.float64))
    kp = keep[others]
    usable = np.ones(keep.shape[1], bool) if online else (~kp).any(axis=0)
    if online:
        prior = p.mean(0)
    else:
        out = np.array([p[~kp[:, j], j].mean() if usable[j] else 1.0 for j in range(p.shape[1])])
        prior = ((1 + a) * out + 1 - a) / 2
    ratio = (np.exp(ref_lp[t].astype(np.float64)) / prior)[usable]
    count = (ratio[:, None] / ratio[None] >= 2.0).sum(1)
    score = count + np.argsort(np.argsort(ratio)) / ratio.size  # the tie-break by the ratio
    return metrics.auc(keep[t, usable], score)


@pytest.mark.parametrize("online", [True, False])
def test_calibrate_rmia_by_hand(online):
    rng = np.random.default_rng(2)
    k, n, c = 6, 60, 4
    keep = splits.balanced_keep(k, n, seed=5)
    y = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (k, n, c)).astype(np.float32)
    logits[np.arange(k)[:, None], np.arange(n), y] += 2.0 * keep + rng.normal(0, 1, (k, n))
    temperatures, a_grid = (1.0, 2.0, 4.0), (0.0, 0.5, 1.0)
    grid = [(tt, a) for tt in temperatures for a in ((None,) if online else a_grid)]
    totals = []
    for tt, a in grid:
        lp = np.asarray(-signals.loss(logits / tt, y))
        totals.append(sum(_auc_of(online, lp, keep, t, a) for t in range(2)))
    want = grid[int(np.argmax(totals))]
    got = attacks.calibrate_rmia(
        logits,
        keep.astype(int),
        labels=y,
        online=online,
        temperatures=temperatures,
        a_grid=a_grid,
    )
    assert isinstance(got, attacks.RMIACalibration) and tuple(got) == want
    assert len(set(np.round(totals, 9))) > 1  # the grid is not degenerate
    # given log-probabilities (loss-only access), only temperature 1 is possible
    lp = np.asarray(attacks.log_probs(logits, y))
    fixed = attacks.calibrate_rmia(lp, keep, online=online, a_grid=a_grid)
    assert fixed.temperature == 1.0
    with pytest.raises(ValueError, match="temperatures other than 1"):
        attacks.calibrate_rmia(lp, keep, online=online, temperatures=(1.0, 2.0))
    np.testing.assert_allclose(
        attacks.log_probs(logits, y, temperature=2.0), -signals.loss(logits / 2, y), rtol=1e-6
    )


# --------------------------------------------------------------------------- controls


@pytest.mark.slow
def test_no_information_control_scores_at_chance():
    """Every model's statistic ignores its training set: no attack can beat chance."""
    rng = np.random.default_rng(3)
    k, n = 15, 4000  # and a target
    keep = splits.balanced_keep(k + 1, n, seed=7)
    base = rng.normal(0, 2, n)  # examples differ in difficulty, members do not
    phi = (base + rng.normal(0, 1, (k + 1, n))).astype(np.float32)
    lp = -np.logaddexp(0, -phi)
    member = keep[0]
    stats = (phi[0], phi[1:], keep[1:])
    scores = {
        "loss": attacks.loss(-lp[0]),
        "lira_online": attacks.lira_online(*stats),
        "lira_offline": attacks.lira_offline(*stats),
        "rmia_online": attacks.rmia_online(
            lp[0], lp[1:], keep[1:], target_log_p_z=lp[0], ref_log_p_z=lp[1:]
        ),
        "attack_p": attacks.attack_p(lp[0], target_log_p_z=lp[0]),
        "label_only": attacks.label_only(rng.random((n, 8)) < 0.7),
    }
    for name, s in scores.items():
        assert abs(metrics.auc(member, np.asarray(s)) - 0.5) < 0.03, name  # std ~0.009


# --------------------------------------------------------------------------- README

README_EXAMPLE = """
phi = signals.logit_scaled_confidence(logits, y)  # (k + 1, n): LiRA's statistic
lp = attacks.log_probs(logits, y)  # (k + 1, n): RMIA's, log Pr(y | x)
lira = attacks.lira_online(phi[0], phi[1:], keep[1:])  # model 0 is the target; (n,)
rmia = attacks.rmia_online(lp[0], lp[1:], keep[1:], target_log_p_z=lp[0], ref_log_p_z=lp[1:])
# every model the target in turn, the others its shadows (leave-one-out): one jitted call
others = np.array([np.delete(np.arange(len(keep)), t) for t in range(len(keep))])
loo = jax.jit(jax.vmap(attacks.lira_online))(phi, phi[others], keep[others])  # (k + 1, n)
"""


@pytest.mark.slow
def test_readme_example_lira_rmia_and_vmap_over_targets():
    rng = np.random.default_rng(4)
    k1, n, c = 10, 500, 5  # k + 1 models
    keep = splits.balanced_keep(k1, n, seed=8)
    y = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (k1, n, c)).astype(np.float32)
    base = rng.normal(1, 2, n)  # records differ in difficulty; members are more confident
    logits[np.arange(k1)[:, None], np.arange(n), y] += base + 2.0 * keep
    ns = dict(jax=jax, np=np, attacks=attacks, signals=signals, logits=logits, y=y, keep=keep)
    assert len(README_EXAMPLE.strip().splitlines()) < 10
    exec(README_EXAMPLE, ns)
    assert ns["lira"].shape == ns["rmia"].shape == (n,)
    assert metrics.auc(keep[0], np.asarray(ns["lira"])) > 0.75
    assert metrics.auc(keep[0], np.asarray(ns["rmia"])) > 0.75
    assert ns["loo"].shape == (k1, n)
    np.testing.assert_allclose(ns["loo"][0], ns["lira"], rtol=1e-5, atol=1e-5)
    phi = ns["phi"]
    for t in (3, 9):
        rest = np.arange(k1) != t
        one = attacks.lira_online(phi[t], phi[rest], keep[rest])
        np.testing.assert_allclose(ns["loo"][t], one, rtol=1e-5, atol=1e-5)
