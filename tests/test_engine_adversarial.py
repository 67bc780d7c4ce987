"""Adversarial regularisation (Nasr, Shokri and Houmansadr, CCS 2018): the update rules
against a hand computation of the paper's formulas, pool against models one by one, and
one-line errors for bad settings."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxmia import cli, models
from jaxmia._src import audit, engine
from jaxmia._src.audit import config as cfg
from jaxmia._src.defences import training as defences
from jaxmia._src.engine import adversarial, training


def _data(n=12, d=3, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), (np.arange(n) % c).astype(np.int32)


def _mlp_hand(p, x):
    """``models.mlp((4,), ...)`` by hand: tanh hidden layer, linear head."""
    h = jnp.tanh(x @ p["hidden"][0]["kernel"] + p["hidden"][0]["bias"])
    return h @ p["head"]["kernel"] + p["head"]["bias"]


def _h_hand(p, probs, onehot):
    """The inference model by hand: ReLU MLP on ``[probs, onehot]``, logit of member."""
    z = jnp.concatenate([probs, onehot], axis=-1)
    z = jax.nn.relu(z @ p["layers"][0]["kernel"] + p["layers"][0]["bias"])
    return (z @ p["out"]["kernel"] + p["out"]["bias"])[:, 0]


def _adam_step(lr, params, grads):
    tx = optax.adam(lr)
    updates, _ = tx.update(grads, tx.init(params), params)
    return optax.apply_updates(params, updates)


def _close(a, b, tol=1e-5):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


@pytest.mark.slow
def test_one_step_is_the_papers_h_ascent_then_classifier_descent():
    # 4 members, 4 reference records, batch 4, k = 1: each step sees every member and
    # every reference record once, so the means do not depend on the batches' order
    x, y = _data(n=12)
    keep = np.zeros(12, bool)
    keep[:4] = True
    ref = np.zeros(12, bool)
    ref[6:10] = True
    reg = adversarial.AdvReg(strength=2.0, hidden=(5,), learning_rate=0.01, steps=1)
    factory = models.mlp((4,), 3, 3)
    tx = optax.adam(1e-3)
    ce = engine.kernel.cross_entropy
    init, epoch = training.compiled(
        factory, tx, 4, 1, 1, False, None, None, ce, adv_reg=reg, classes=3
    )
    key = jnp.asarray(jax.random.key_data(jax.random.key(7)))
    params, rest, state = init(key)
    f0 = jax.tree.map(np.array, nnx.to_pure_dict(params))  # copies: the epoch donates
    h0 = jax.tree.map(np.array, nnx.to_pure_dict(state[1]))
    rows = jnp.asarray(np.stack([keep, ref]))
    p1, _, s1, _, _ = epoch(key, jnp.int32(0), rows, False, params, rest, state, x, y)

    onehot = jax.nn.one_hot(y, 3)
    pm, pr = jax.nn.softmax(_mlp_hand(f0, x[keep])), jax.nn.softmax(_mlp_hand(f0, x[ref]))

    def gain(hp):  # mean log h(f(x), y) + mean log(1 - h(f(x'), y'))
        hm = jax.nn.sigmoid(_h_hand(hp, pm, onehot[keep]))
        hr = jax.nn.sigmoid(_h_hand(hp, pr, onehot[ref]))
        return jnp.mean(jnp.log(hm)) + jnp.mean(jnp.log(1 - hr))

    # the hand steps run jitted, one program each, rather than op by op
    h1 = jax.jit(lambda h: _adam_step(0.01, h, jax.grad(lambda hp: -gain(hp))(h)))(h0)
    _close(nnx.to_pure_dict(s1[1]), h1)

    def loss(fp):  # CE + lambda * mean log h(f(x), y), h fixed
        logits = _mlp_hand(fp, x[keep])
        ce = -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * onehot[keep], axis=-1))
        hm = jax.nn.sigmoid(_h_hand(h1, jax.nn.softmax(logits), onehot[keep]))
        return ce + 2.0 * jnp.mean(jnp.log(hm))

    f1 = jax.jit(lambda f: _adam_step(1e-3, f, jax.grad(loss)(f)))(f0)
    _close(nnx.to_pure_dict(p1), f1)


def _pool_settings():
    """``(x, y, keep, ref, factory)`` of the pool test, shared with the pool-refusal test
    (which so reuses its compiled programs)."""
    x, y = _data(n=24, d=4)
    keep = np.zeros((3, 24), bool)
    keep[0, :12], keep[1, 6:14], keep[2, 20:] = True, True, True  # unequal: masked steps
    ref = ~keep & (np.arange(24) % 2 == 0)
    return x, y, keep, ref, models.mlp((4,), 3, 4)


@pytest.mark.slow
def test_a_vmapped_pool_equals_models_trained_one_by_one():
    x, y, keep, ref, factory = _pool_settings()
    reg = adversarial.AdvReg(strength=1.0, hidden=(6,), steps=2)
    kw = dict(epochs=2, batch_size=4, seed=3, adv_reg=reg, reference=ref)
    pool = engine.train(factory, x, y, keep, mode="vmap", chunk_size=None, **kw)
    one = engine.train(factory, x, y, keep, mode="sequential", **kw)
    _close(pool.params, one.params)
    np.testing.assert_allclose(pool.losses, one.losses, rtol=1e-5, atol=1e-5)
    # h has its own stream: the classifier starts where plain training starts
    plain = engine.train(factory, x, y, keep, epochs=0, seed=3)
    first = engine.train(factory, x, y, keep, **{**kw, "epochs": 0})
    _close(first.params, plain.params, tol=0)


def test_lambda_zero_is_refused_by_the_engine_and_off_in_the_defence():
    with pytest.raises(ValueError, match=r"^strength must be a finite number > 0, got 0\.0$"):
        adversarial.AdvReg(strength=0.0)
    assert defences.Defence(adv_reg=0.0).adversarial is None
    assert defences.Defence(adv_reg=2.5).adversarial == engine.AdvReg(strength=2.5)
    assert "lambda 2.5" in defences.Defence(adv_reg=2.5).describe()


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(strength=-1.0), "^strength must be a finite number > 0, got -1.0$"),
        (dict(strength=True), "^strength must be a finite number, got True$"),
        (dict(strength=float("nan")), "^strength must be a finite number, got nan$"),
        (dict(learning_rate=0.0), "^learning_rate must be a finite number > 0, got 0.0$"),
        (dict(steps=0), "^steps must be an integer >= 1, got 0$"),
        (dict(hidden=(0,)), r"^hidden must be a list of integers >= 1, got \(0,\)$"),
        (dict(hidden=(True,)), r"^hidden must be a list of integers, got \(True,\)$"),
    ],
)
def test_bad_settings_are_refused_in_one_line(kw, message):
    with pytest.raises(ValueError, match=message) as e:
        adversarial.AdvReg(**kw)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("value", [-1.0, True, float("nan"), float("inf")])
def test_the_defence_refuses_bad_lambdas(value):
    with pytest.raises(ValueError, match="adv_reg must be a finite number"):
        defences.Defence(adv_reg=value)


def test_the_defence_refuses_lambda_with_dp_sgd():
    with pytest.raises(ValueError, match=r"^dp_noise \(DP-SGD\) does not combine with adv_reg$"):
        defences.Defence(adv_reg=1.0, dp_noise=1.0)


def test_train_refuses_bad_references_in_one_line():
    x, y = _data(n=12)
    keep = np.arange(12) < 6
    factory = models.mlp((4,), 3, 3)
    reg = engine.AdvReg()
    cases = [
        (dict(adv_reg=reg, reference=np.ones(12, bool)), "must not be members: model 0"),
        (dict(adv_reg=reg), "adv_reg needs reference"),
        (dict(reference=~keep), "only used with adv_reg"),
        (dict(adv_reg=reg, reference=np.zeros(12, bool)), "no reference records"),
        (dict(adv_reg=reg, reference=~keep[:5]), "reference must have shape"),
        (
            dict(adv_reg=reg, reference=~keep, dp=engine.DPConfig(1.0, 1.0)),
            r"^dp \(DP-SGD\) does not combine with adv_reg$",
        ),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message) as e:
            engine.train(factory, x, y, keep, epochs=1, **kw)
        assert "\n" not in str(e.value)


@pytest.mark.slow
def test_a_pool_trained_without_adv_reg_is_refused(tmp_path):
    x, y, keep, ref, factory = _pool_settings()  # the pool test's plain programs
    engine.train(factory, x, y, keep, epochs=0, seed=3, checkpoint=tmp_path / "p")
    with pytest.raises(engine.pools.PoolError, match="adv_reg"):
        engine.train(
            factory,
            x,
            y,
            keep,
            epochs=0,
            seed=3,
            checkpoint=tmp_path / "p",
            adv_reg=engine.AdvReg(),
            reference=ref,
        )


def test_the_audit_trains_defended_models_against_half_their_non_members():
    config = audit.AuditConfig(dataset="digits", num_shadows=4, adv_reg=2.0, defend_shadows=True)
    setup = audit.setup.prepare(config)
    target, shadows = setup.target_spec, setup.shadow_spec
    assert target.adv_reg == shadows.adv_reg == engine.AdvReg(strength=2.0)
    split = setup.split
    assert not (target.reference & split.target_keep).any()
    assert not (shadows.reference & split.shadow_keep).any()
    share = target.reference.sum() / (~split.target_keep).sum()
    assert 0.4 < share < 0.6
    undefended = audit.setup.training_spec(setup, False, shadows=True)
    assert undefended.adv_reg is None and undefended.reference is None


@pytest.mark.parametrize(
    "value, message",
    [("-1", "--adv-reg must be a finite number >= 0"), ("nan", "--adv-reg must be a finite")],
)
def test_the_cli_refuses_bad_lambdas_in_one_line(value, message, capsys, monkeypatch):
    monkeypatch.setattr(audit, "run", lambda *a, **k: pytest.fail("trained"))
    rc = cli.main(["audit", "--adv-reg", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


def test_the_cli_refuses_lambda_with_dp_sgd(capsys, monkeypatch):
    monkeypatch.setattr(audit, "run", lambda *a, **k: pytest.fail("trained"))
    rc = cli.main(["audit", "--adv-reg", "1", "--dp-noise", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "DP-SGD" in err[0], err


def test_adv_reg_is_a_flag_of_audit_and_study_and_a_toml_key(tmp_path):
    args = cli.build_parser().parse_args(["audit", "--adv-reg", "2.5", "--defend-shadows"])
    config = cli._config(args)
    assert config.adv_reg == 2.5 and config.defence.adversarial.strength == 2.5
    assert "--adv-reg 2.5" in cfg.command_for(config)
    path = tmp_path / "a.toml"
    path.write_text("[audit]\nadv_reg = 1.5\n")
    assert cfg.read_toml(path) == {"adv_reg": 1.5}
    assert audit.AuditConfig.from_dict(cfg.read_toml(path)).adv_reg == 1.5
    words = ["study", "--factor", "epochs", "--values", "1,2", "--adv-reg", "0.5"]
    base = cli._config(cli.build_parser().parse_args(words))
    assert base.adv_reg == 0.5  # a study's base setting


def _adv_spec(factory, tx, batch_size, steps, reg, classes=3) -> adversarial.AdvSpec:
    train_gd, eval_gd = engine.kernel.graphdefs(factory)
    kernel = engine.kernel.KernelSpec(train_gd, tx, batch_size, steps, steps, None)
    h_gd = adversarial.h_graphdef(classes, reg.hidden)
    return adversarial.AdvSpec(kernel, eval_gd, h_gd, reg, classes)


def _random_states(factory, seed: int):
    """Random ``(params, rest)`` of the classifier and random parameters of ``h`` (3
    classes, hidden (5,)), from shapes alone: no init program to compile."""
    rng = np.random.default_rng(seed)
    fill = lambda state: jax.tree.map(lambda a: rng.normal(size=a.shape).astype(a.dtype), state)
    _, params, rest = nnx.split(nnx.eval_shape(lambda: factory(rngs=nnx.Rngs(0))), nnx.Param, ...)
    h = nnx.eval_shape(lambda: adversarial.InferenceModel(3, (5,), rngs=nnx.Rngs(0)))
    return fill(params), rest, fill(nnx.split(h, nnx.Param)[1])


def test_classifier_loss_of_a_padded_batch_is_the_loss_of_its_real_rows():
    # the engine pads a model's last batch (weight 0); padding enters neither the task
    # loss nor the privacy term, whatever the padding rows hold
    x, y = _data(n=12)
    factory = models.mlp((4,), 3, 3)
    reg = adversarial.AdvReg(strength=2.0, hidden=(5,))
    spec = _adv_spec(factory, optax.sgd(0.1), 5, 1, reg)
    params, rest, h_params = _random_states(factory, 1)
    loss = jax.jit(functools.partial(adversarial.classifier_loss, spec))
    real, _ = loss(h_params, params, rest, x[:3], y[:3], np.ones(3, np.float32))
    for pad in (x[[0, 0]], x[[7, 9]] * 5):  # the engine's padding (record 0), or any rows
        xb, yb = np.concatenate([x[:3], pad]), np.concatenate([y[:3], y[[1, 2]]])
        padded, _ = loss(h_params, params, rest, xb, yb, np.array([1, 1, 1, 0, 0], np.float32))
        np.testing.assert_allclose(padded, real, rtol=1e-6)


@pytest.mark.slow
def test_h_batches_are_the_documented_draws():
    # 4 members and 5 reference records at batch 2, k = 2 steps of h per classifier step,
    # 2 classifier steps: h step j of classifier step s reads positions
    # (s * k + j) * 2 + [0, 2) of the member and the reference orders, wrapping around,
    # each order drawn from its own key. The classifier's learning rate is 0, so h's four
    # steps are rebuilt from those keys alone and must give h's parameters. The epoch
    # runs 3 steps, as in a pool whose largest model has 6 members: the third must
    # leave h as it is.
    x, y = _data(n=12)
    keep, ref = np.zeros(12, bool), np.zeros(12, bool)
    keep[[0, 2, 4, 6]], ref[[1, 3, 5, 9, 11]] = True, True
    reg = adversarial.AdvReg(strength=1.0, hidden=(5,), learning_rate=0.05, steps=2)
    factory, tx, b = models.mlp((4,), 3, 3), optax.sgd(0.0), 2
    spec = _adv_spec(factory, tx, b, 2, reg)
    ce = engine.kernel.cross_entropy
    epoch = training.compiled(factory, tx, b, 3, 2, False, None, None, ce, adv_reg=reg, classes=3)[
        1
    ]
    params, rest, h = _random_states(factory, 2)
    h_opt = spec.h_tx.init(h)

    @jax.jit
    def h_orders(key):  # the documented draws: fold_in(fold_in(h data key, epoch), 0 or 1)
        data_key = jax.random.split(jax.random.fold_in(key, adversarial.ADV_STREAM))[1]
        epoch_key = jax.random.fold_in(data_key, 0)
        members = engine.kernel.member_order(jax.random.fold_in(epoch_key, 0), keep)
        return members, engine.kernel.member_order(jax.random.fold_in(epoch_key, 1), ref)

    @jax.jit
    def h_step(h, h_opt, xm, ym, xr, yr):  # adversarial.inference_gain ascended by Adam
        f = nnx.merge(spec.eval_graphdef, params, rest)
        pm, pr = jax.nn.softmax(f(xm)), jax.nn.softmax(f(xr))
        gain = lambda hp: adversarial.inference_gain(spec.h_graphdef, hp, pm, ym, pr, yr)
        updates, h_opt = spec.h_tx.update(jax.grad(lambda hp: -gain(hp))(h), h_opt, h)
        return optax.apply_updates(h, updates), h_opt

    key = jax.random.key(7)
    members, references = (np.asarray(o) for o in h_orders(key))
    members, references = members[: keep.sum()], references[: ref.sum()]
    want = (h, h_opt)
    for t in range(2 * reg.steps):
        pos = t * b + np.arange(b)
        m, r = members[pos % len(members)], references[pos % len(references)]
        want = h_step(*want, x[m], y[m], x[r], y[r])

    key_data, rows = jnp.asarray(jax.random.key_data(key)), jnp.asarray(np.stack([keep, ref]))
    state = (tx.init(params), h, h_opt)
    got = epoch(key_data, jnp.int32(0), rows, False, params, rest, state, x, y)[2][1]
    _close(got, want[0])
