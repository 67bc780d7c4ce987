"""Training objectives (jaxmia/engine/objectives.py): each update rule against a hand
computation of its paper's formula, a vmapped pool against models trained alone, the
randomness of mixup and PGD, and the defaults-off path."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxmia import models
from jaxmia._src import engine
from jaxmia._src.engine import kernel, objectives
from jaxmia._src.engine.store import pools
from jaxmia.settings import ConfigError
from tests.helpers import tree_max_diff

N, D, C, LR = 12, 5, 3, 0.1


@pytest.fixture(scope="module")
def toy():
    """Binary features (as Location-30's) and labels of ``N`` records."""
    rng = np.random.default_rng(0)
    x = (rng.random((N, D)) < 0.4).astype(np.float32)
    y = rng.integers(0, C, N).astype(np.int32)
    return x, y


FACTORY = models.mlp((6,), C, D)


def one_epoch(toy, objective, epochs=1):
    """``(params before, params after, apply, xb)`` of one model trained for ``epochs``
    full-batch SGD steps (every record a member), and its first epoch's batch order."""
    x, y = toy
    keys = engine.model_keys(3, 1)
    tx = optax.sgd(LR)
    key_data = jax.random.key_data(keys)[0]
    params0, rest, _ = kernel.init_one(FACTORY, tx, key_data)
    pool = engine.train(
        FACTORY,
        x,
        y,
        np.ones(N, bool),
        epochs=epochs,
        batch_size=N,
        optimizer=tx,
        keys=keys,
        objective=objective,
    )
    after = jax.tree.map(lambda a: a[0], pool.params)
    graphdef = kernel.graphdefs(FACTORY)[0]
    apply = lambda p, xb: nnx.merge(graphdef, p, rest)(xb)
    data_key = jax.random.split(keys[0], 3)[2]
    order = kernel.member_order(jax.random.fold_in(data_key, 0), jnp.ones(N, bool))
    return params0, after, apply, np.asarray(order)


@pytest.fixture(scope="module")
def plain(toy):
    """:func:`one_epoch` without an objective, shared: its compiled programs are those of
    every plain run of the hand-computation configuration (one model, full batch)."""
    return one_epoch(toy, None)


def sgd(params, grad_fn):
    """One hand SGD step ``p - LR * grad``, jitted as one program (not op by op)."""
    step = lambda q: jax.tree.map(lambda p, d: p - LR * d, q, jax.grad(grad_fn)(q))
    return jax.jit(step)(params)


def ce(logits, labels):
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]


@pytest.mark.slow
def test_label_smoothing_step_is_the_smoothed_cross_entropy(toy, plain):
    x, y = toy
    eps = 0.2
    p0, p1, apply, _ = one_epoch(toy, engine.Objective(label_smoothing=eps))
    targets = (1 - eps) * np.eye(C)[y] + eps / C

    def loss(p):
        return jnp.mean(-jnp.sum(targets * jax.nn.log_softmax(apply(p, x)), axis=1))

    assert tree_max_diff(p1, sgd(p0, loss)) < 1e-6
    assert tree_max_diff(p1, plain[1]) > 1e-4  # it changed the step


@pytest.mark.slow
def test_mixup_step_is_the_mixed_loss(toy):
    x, y = toy
    alpha = 0.4
    p0, p1, apply, order = one_epoch(toy, engine.Objective(mixup=alpha))
    xb, yb = x[order], y[order]
    key = objectives.step_key(engine.model_keys(3, 1)[0], 0, 0)
    lam, perm = objectives.mixup_draw(jax.random.split(key)[0], jnp.ones(N), alpha)
    lam, perm = float(lam), np.asarray(perm)
    assert 0 < lam < 1 and sorted(perm) == list(range(N)) and (perm != np.arange(N)).any()
    mixed = lam * xb + (1 - lam) * xb[perm]

    def loss(p):
        logits = apply(p, mixed)
        return jnp.mean(lam * ce(logits, yb) + (1 - lam) * ce(logits, yb[perm]))

    assert tree_max_diff(p1, sgd(p0, loss)) < 1e-6


def flattening(logits, labels):
    """RelaxLoss's posterior flattening written out (Chen et al. 2022, official code)."""
    p = jax.nn.softmax(logits)
    py = jax.lax.stop_gradient(p[jnp.arange(len(labels)), labels])
    soft = jnp.repeat(((1 - py) / (C - 1))[:, None], C, axis=1)
    soft = soft.at[jnp.arange(len(labels)), labels].set(py)
    ce_soft = -jnp.sum(soft * jnp.log(p), axis=1)
    correct = (jnp.argmax(logits, 1) == labels).astype(jnp.float32)
    return jnp.mean((1 - correct) * ce_soft - ce(logits, labels))


@pytest.mark.slow
def test_relaxloss_steps_descend_ascend_and_flatten(toy):
    # one alpha (one compiled program) between the first two epochs' losses: epoch 0
    # descends (loss above alpha), epoch 1 flattens (below, odd), epoch 2 ascends (below, even)
    x, y = toy
    alpha = 1.11
    objective = engine.Objective(relaxloss=alpha)
    p0, p_desc, apply, _ = one_epoch(toy, objective)
    mean_ce = lambda p: jnp.mean(ce(apply(p, x), y))
    assert float(mean_ce(p0)) > alpha  # above alpha: plain descent
    assert tree_max_diff(p_desc, sgd(p0, mean_ce)) < 1e-6
    assert float(mean_ce(p_desc)) < alpha  # below alpha: epoch 1 flattens
    _, p_two, _, _ = one_epoch(toy, objective, epochs=2)
    expected = sgd(p_desc, lambda p: flattening(apply(p, x), y))
    assert tree_max_diff(p_two, expected) < 1e-6
    assert float(mean_ce(p_two)) < alpha  # below alpha: epoch 2 ascends |L - alpha|
    _, p_asc, _, _ = one_epoch(toy, objective, epochs=3)
    assert tree_max_diff(p_asc, sgd(p_two, lambda p: jnp.abs(mean_ce(p) - alpha))) < 1e-6
    assert tree_max_diff(p_asc, sgd(p_two, lambda p: -mean_ce(p))) < 1e-6  # gradient ascent


@pytest.mark.slow
def test_relaxloss_switches_at_alpha_and_on_epoch_parity():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(8, C)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, C, 8))
    w = jnp.ones(8)
    mean_ce = float(jnp.mean(ce(logits, labels)))
    f = jax.jit(objectives.relaxloss_loss)  # one program, not op-by-op dispatch
    for epoch in (0, 1, 2, 3):
        assert float(f(logits, labels, w, mean_ce - 1e-3, epoch)) == pytest.approx(mean_ce)
    above = mean_ce + 0.5
    assert float(f(logits, labels, w, above, 0)) == pytest.approx(0.5, abs=1e-5)
    assert float(f(logits, labels, w, above, 2)) == pytest.approx(0.5, abs=1e-5)
    flat = float(flattening(logits, labels))
    assert float(f(logits, labels, w, above, 1)) == pytest.approx(flat, abs=1e-5)
    assert float(f(logits, labels, w, above, 3)) == pytest.approx(flat, abs=1e-5)
    # padding (weight 0) takes no part in the threshold's batch mean
    padded = f(
        jnp.concatenate([logits, 100 * logits]),
        jnp.concatenate([labels, labels]),
        jnp.concatenate([w, 0 * w]),
        mean_ce - 1e-3,
        0,
    )
    assert float(padded) == pytest.approx(mean_ce)


def fgsm_by_hand(apply, p, x, y, eps, lo=0.0, hi=1.0):
    g = jax.grad(lambda xx: jnp.sum(ce(apply(p, xx), y)))(jnp.asarray(x))
    return jnp.clip(x + eps * jnp.sign(g), lo, hi)


@pytest.mark.slow
def test_fgsm_adversarial_training_step(toy):
    x, y = toy
    eps = 0.25
    p0, p1, apply, order = one_epoch(toy, engine.Objective(adv_eps=eps))
    xb, yb = x[order], y[order]
    adv = fgsm_by_hand(apply, p0, xb, yb, eps)
    assert float(jnp.abs(adv - xb).max()) == pytest.approx(eps)  # some feature moved
    assert tree_max_diff(p1, sgd(p0, lambda p: jnp.mean(ce(apply(p, adv), yb)))) < 1e-6


@pytest.mark.slow
def test_pgd_adversarial_training_step(toy):
    x, y = toy
    eps, steps = 0.3, 2  # a random start and two projected steps
    p0, p1, apply, order = one_epoch(toy, engine.Objective(adv_eps=eps, adv_steps=steps))
    xb, yb = x[order], y[order]
    key = objectives.step_key(engine.model_keys(3, 1)[0], 0, 0)
    start = jax.random.uniform(jax.random.split(key)[1], xb.shape, jnp.float32, -eps, eps)
    adv = jnp.clip(xb + start, 0, 1)
    for _ in range(steps):  # step eps / 4, projected on the ball and the data range
        g = jax.grad(lambda xx: jnp.sum(ce(apply(p0, xx), yb)))(adv)
        adv = jnp.clip(jnp.clip(adv + eps / 4 * jnp.sign(g), xb - eps, xb + eps), 0, 1)
    assert tree_max_diff(p1, sgd(p0, lambda p: jnp.mean(ce(apply(p, adv), yb)))) < 1e-6


@pytest.mark.slow
def test_adversarial_examples_stay_in_the_ball_and_the_range(toy, plain):
    x, y = toy
    p0, _, apply, _ = plain
    loss = lambda xx: jnp.sum(ce(apply(p0, xx), y))
    for steps, start in ((1, False), (7, True)):
        adv = objectives.adversarial_examples(
            loss,
            x,
            jax.random.key(0),
            eps=0.3,
            steps=steps,
            step_size=0.1,
            random_start=start,
            x_range=(0.0, 1.0),
        )
        assert float(jnp.abs(adv - x).max()) <= 0.3 + 1e-6
        assert float(adv.min()) >= 0 and float(adv.max()) <= 1
        assert float(jnp.abs(adv - x).max()) > 0.05
    # PGD of one step of size eps without a random start is FGSM
    pgd1 = objectives.adversarial_examples(
        loss,
        x,
        jax.random.key(0),
        eps=0.3,
        steps=1,
        step_size=0.3,
        random_start=False,
        x_range=(0.0, 1.0),
    )
    np.testing.assert_array_equal(pgd1, fgsm_by_hand(apply, p0, x, y, 0.3))


@pytest.mark.slow
def test_mixup_draw_permutes_only_real_examples():
    weight = jnp.asarray([1, 1, 0, 1, 1, 1, 0, 0], jnp.float32)  # padding inside, too
    real = np.flatnonzero(np.asarray(weight))
    moved = 0
    for s in range(30):
        lam, perm = objectives.mixup_draw(jax.random.key(s), weight, 0.2)
        perm = np.asarray(perm)
        assert 0.0 <= float(lam) <= 1.0
        assert sorted(perm[real]) == list(real)
        np.testing.assert_array_equal(perm[[2, 6, 7]], [2, 6, 7])
        moved += (perm[real] != real).any()
    assert moved >= 25
    # the same draws as a vmap over these keys, without compiling a batched Beta sampler
    keys = jax.random.split(jax.random.key(0), 200)
    lams = jnp.asarray([objectives.mixup_draw(k, weight, 0.05)[0] for k in keys])
    assert float(jnp.mean((lams < 0.05) | (lams > 0.95))) > 0.7  # Beta(0.05, 0.05): U-shaped


# PGD of 2 steps (a random start, then iterated and projected steps) compiles faster than 3
COMBINED = engine.Objective(adv_eps=0.1, adv_steps=2, mixup=0.2, label_smoothing=0.1)


def pool_settings():
    """``(keep, kw)`` of the pool tests: rows of unequal size (masked steps and padded
    batches), shared so that the pool-refusal test reuses the compiled programs."""
    keep = np.zeros((3, N), bool)
    keep[0, :9], keep[1, 2:7], keep[2, ::2] = True, True, True
    kw = dict(
        epochs=2, batch_size=4, optimizer=optax.adam(0.01), seed=5, chunk_size=None, mesh=None
    )
    return keep, kw


@pytest.mark.slow
@pytest.mark.parametrize(
    "objective",
    [engine.Objective(relaxloss=1.0), engine.Objective(adv_eps=0.1), COMBINED],
    ids=["relaxloss", "fgsm", "pgd+mixup+smoothing"],
)
def test_vmapped_pool_equals_models_trained_alone(toy, objective):
    x, y = toy
    keep, kw = pool_settings()
    pool = engine.train(FACTORY, x, y, keep, objective=objective, **kw)
    alone = engine.train(FACTORY, x, y, keep, objective=objective, **{**kw, "mode": "sequential"})
    assert tree_max_diff(pool.params, alone.params) < 1e-5
    np.testing.assert_allclose(pool.losses, alone.losses, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_defaults_off_are_bit_identical(toy, plain):
    # the configuration of ``plain`` (compiled once): one model, full batches, two epochs
    x, y = toy
    kw = dict(epochs=2, batch_size=N, optimizer=optax.sgd(LR), keys=engine.model_keys(3, 1))
    before = engine.train(FACTORY, x, y, np.ones(N, bool), **kw)
    for objective in (None, engine.Objective()):
        after = engine.train(FACTORY, x, y, np.ones(N, bool), objective=objective, **kw)
        assert tree_max_diff(before.params, after.params) == 0
        np.testing.assert_array_equal(before.losses, after.losses)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"label_smoothing": 1.0}, "label_smoothing must be a finite number in [0, 1), got 1.0"),
        ({"label_smoothing": -0.1}, "label_smoothing must be a finite number in [0, 1)"),
        ({"mixup": float("nan")}, "mixup must be a finite number, got nan"),
        ({"mixup": True}, "mixup must be a finite number, got True"),
        ({"relaxloss": -1.0}, "relaxloss must be a finite number >= 0, got -1.0"),
        ({"adv_eps": float("inf")}, "adv_eps must be a finite number, got inf"),
        ({"adv_steps": 0}, "adv_steps must be an integer >= 1, got 0"),
        ({"adv_steps": 2.0}, "adv_steps must be an integer, got 2.0"),
        ({"adv_step_size": 0.0}, "adv_step_size must be a finite number > 0, got 0.0"),
        ({"x_range": (1.0, 0.0)}, "x_range must be a pair (min, max), min <= max"),
        ({"x_range": (0.0, float("inf"))}, "x_range must be a non-empty list of finite"),
        ({"relaxloss": 1.0, "mixup": 0.2}, "relaxloss does not combine with mixup"),
    ],
)
def test_bad_objectives_are_refused_in_one_line(settings, message):
    with pytest.raises(ValueError) as e:
        engine.Objective(**settings)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert isinstance(e.value, ConfigError)


def test_objectives_refused_with_dp_sgd_or_another_loss(toy):
    x, y = toy
    with pytest.raises(ValueError, match=r"^dp \(DP-SGD\) does not combine with mixup$"):
        engine.train(
            FACTORY,
            x,
            y,
            np.ones(N, bool),
            epochs=1,
            dp=engine.DPConfig(),
            objective=engine.Objective(mixup=0.2),
        )
    other = lambda logits, labels: 2 * kernel.cross_entropy(logits, labels)
    with pytest.raises(
        ValueError,
        match=r"^loss_fn \(not softmax cross-entropy\) does not combine with label_smoothing$",
    ):
        engine.train(
            FACTORY,
            x,
            y,
            np.ones(N, bool),
            epochs=1,
            loss_fn=other,
            objective=engine.Objective(label_smoothing=0.1),
        )
    with pytest.raises(ValueError, match=r"must be an engine\.Objective"):
        engine.train(FACTORY, x, y, np.ones(N, bool), epochs=1, objective={"mixup": 0.2})


@pytest.mark.slow
def test_a_pool_of_another_objective_is_refused(toy, tmp_path):
    # the settings of the pool tests' combined objective (its programs are compiled once)
    x, y = toy
    keep, kw = pool_settings()
    kw = {**kw, "epochs": 1, "checkpoint": tmp_path / "pool"}
    engine.train(FACTORY, x, y, keep, objective=COMBINED, **kw)
    again = engine.train(FACTORY, x, y, keep, objective=COMBINED, **kw)
    assert again.k == 3
    for other in (None, dataclasses.replace(COMBINED, mixup=0.3)):
        with pytest.raises(pools.PoolError):
            engine.train(FACTORY, x, y, keep, objective=other, **kw)


def test_the_objective_is_static_and_hashable():
    a = engine.Objective(mixup=0.2, adv_eps=0.1)
    assert hash(a) == hash(dataclasses.replace(a)) and a == engine.Objective(mixup=0.2, adv_eps=0.1)
    assert not engine.Objective().active and a.active and not a.needs_cross_entropy
