"""The defences that change the training objective (jaxmia/defences/training.py): L1 against
autodiff of the penalised loss, the ``Defence`` fields, their one-line errors in the library
and on the command line, and their way into the target's and the shadows' training."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxmia import models
from jaxmia._src import audit, engine
from jaxmia._src.audit import config as audit_config
from jaxmia._src.audit import setup as audit_setup
from jaxmia._src.audit import training as audit_training
from jaxmia._src.defences import training as defences
from jaxmia._src.engine import fingerprint, kernel
from tests.helpers import run_cli, tree_max_diff

FACTORY = models.mlp((6,), 3, 5)


def penalty(params, lam):
    """``lam * sum |w|`` over the weight matrices (biases not penalised)."""
    return lam * sum(jnp.sum(jnp.abs(w)) for w in jax.tree.leaves(params) if w.ndim >= 2)


def test_l1_gradient_is_autodiff_of_the_penalty():
    params = nnx.state(FACTORY(rngs=nnx.Rngs(0)), nnx.Param)
    lam = 0.05
    tx = defences.optimizer(1e-2, 0.0, lam)
    adam = optax.adam(1e-2)

    @jax.jit  # one compiled program instead of op-by-op dispatch
    def updates(params):
        grads = jax.tree.map(lambda a: jnp.full_like(a, 0.3), params)
        got, _ = tx.update(grads, tx.init(params), params)
        with_penalty = jax.tree.map(jnp.add, grads, jax.grad(penalty)(params, lam))
        want, _ = adam.update(with_penalty, adam.init(params), params)
        return got, want

    got, want = updates(params)
    assert tree_max_diff(got, want) < 1e-7
    biases = [g for g in jax.tree.leaves(got) if g.ndim == 1]
    assert biases and all(np.allclose(b, biases[0].ravel()[0]) for b in biases)  # untouched


@pytest.mark.slow
def test_one_training_step_with_l1_is_sgd_on_the_penalised_loss(small_digits):
    x = (small_digits.x[:12, :5] > 0).astype(np.float32)
    y = (small_digits.y[:12] % 3).astype(np.int32)
    lam, lr = 0.1, 0.1
    tx = optax.chain(defences.l1_penalty(lam), optax.sgd(lr))
    keys = engine.model_keys(2, 1)
    p0, rest, _ = kernel.init_one(FACTORY, tx, jax.random.key_data(keys)[0])
    pool = engine.train(
        FACTORY, x, y, np.ones(12, bool), epochs=1, batch_size=12, optimizer=tx, keys=keys
    )
    graphdef = kernel.graphdefs(FACTORY)[0]

    def loss(p):
        logits = nnx.merge(graphdef, p, rest)(x)
        return jnp.mean(kernel.cross_entropy(logits, y)) + penalty(p, lam)

    sgd_step = jax.jit(lambda p0: jax.tree.map(lambda p, g: p - lr * g, p0, jax.grad(loss)(p0)))
    want = sgd_step(p0)  # one compiled program instead of op-by-op dispatch
    assert tree_max_diff(jax.tree.map(lambda a: a[0], pool.params), want) < 1e-6


@pytest.mark.slow
def test_the_optimizer_stays_cached_and_distinguishes_l1():
    assert defences.optimizer(1e-3, 0.0, 0.01) is defences.optimizer(1e-3, 0.0, 0.01)
    assert defences.optimizer(1e-3, 0.0, 0.0) is not defences.optimizer(1e-3, 0.0, 0.01)
    digests = {
        fingerprint.optimizer_digest(FACTORY, defences.optimizer(1e-3, wd, l1))
        for wd, l1 in ((0.0, 0.0), (0.0, 0.01), (0.0, 0.02), (0.01, 0.01))
    }
    assert len(digests) == 4


FIELDS = ("l1", "label_smoothing", "mixup", "relaxloss", "adv_train")
BOUNDS = {name: ">= 0" for name in FIELDS} | {"label_smoothing": "in [0, 1)"}


@pytest.mark.parametrize(
    "settings, message",
    [
        *[({name: -1.0}, f"{name} must be a finite number {BOUNDS[name]}") for name in FIELDS],
        *[({name: float("nan")}, f"{name} must be a finite number, got nan") for name in FIELDS],
        *[({name: float("inf")}, f"{name} must be a finite number, got inf") for name in FIELDS],
        *[({name: True}, f"{name} must be a finite number, got True") for name in FIELDS],
        ({"label_smoothing": 1.0}, "label_smoothing must be a finite number in [0, 1), got 1.0"),
        ({"adv_train_steps": 0}, "adv_train_steps must be an integer >= 1, got 0"),
        ({"adv_train_steps": 1.5}, "adv_train_steps must be an integer, got 1.5"),
        ({"adv_train_steps": True}, "adv_train_steps must be an integer, got True"),
        ({"relaxloss": 1.0, "mixup": 0.2}, "relaxloss does not combine with mixup"),
        ({"relaxloss": 1.0, "adv_train": 0.1}, "relaxloss does not combine with adv_train"),
        (
            {"dp_noise": 1.0, "label_smoothing": 0.1},
            "dp_noise (DP-SGD) does not combine with label_smoothing",
        ),
        ({"dp_noise": 1.0, "adv_train": 0.1}, "dp_noise (DP-SGD) does not combine with adv_train"),
        (
            {"adv_reg": 1.0, "mixup": 0.2},
            "adv_reg (adversarial regularisation) does not combine with mixup",
        ),
    ],
)
def test_bad_values_are_refused_in_one_line(settings, message):
    with pytest.raises(ValueError) as e:
        defences.Defence(**settings)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    # AuditConfig checks the type first (a NaN is "not a finite number"), then the Defence
    first = message.split(" must ")[0] + " must " if " must " in message else message
    with pytest.raises(audit.ConfigError, match=f"^{re.escape(first)}[^\n]*$"):
        audit.AuditConfig(**settings)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--l1", "-0.5"], "--l1 must be a finite number >= 0"),
        (["--label-smoothing", "1.5"], "--label-smoothing must be a finite number in [0, 1)"),
        (["--mixup", "nan"], "--mixup must be a finite number"),
        (["--relaxloss", "inf"], "--relaxloss must be a finite number"),
        (["--adv-train", "-1"], "--adv-train must be a finite number >= 0"),
        (["--adv-train-steps", "0"], "--adv-train-steps must be an integer >= 1"),
        (["--adv-train-steps", "two"], "invalid int value"),
        (["--relaxloss", "1", "--mixup", "0.2"], "--relaxloss does not combine with mixup"),
        (["--dp-noise", "1", "--mixup", "0.2"], "--dp-noise (DP-SGD) does not combine with mixup"),
    ],
)
def test_cli_refuses_bad_values_in_one_line(args, message, capsys, tmp_path):
    rc, _, err = run_cli(["audit", *args, "-o", str(tmp_path)], capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert lines[0].startswith("jaxmia: error:") and message in lines[0]


def test_the_options_are_flags_and_toml_keys(capsys, tmp_path):
    rc, out, _ = run_cli(["audit", "--help"], capsys)
    assert rc == 0
    for flag in (
        "--l1",
        "--label-smoothing",
        "--mixup",
        "--relaxloss",
        "--adv-train",
        "--adv-train-steps",
    ):
        assert flag in out
    toml = tmp_path / "c.toml"
    toml.write_text("mixup = 0.2\nadv_train = 0.05\nadv_train_steps = 3\nl1 = 1e-4\n")
    config = audit.AuditConfig.from_dict(audit_config.read_toml(str(toml)))
    assert config.defence == defences.Defence(mixup=0.2, adv_train=0.05, adv_train_steps=3, l1=1e-4)
    command = audit_config.command_for(config)
    assert "--mixup 0.2 --adv-train 0.05 --adv-train-steps 3" in command and "--l1" in command


def test_describe_and_objective():
    assert defences.Defence().objective is None and defences.Defence().describe() == "none"
    assert defences.Defence(l1=0.01).objective is None  # L1 lives in the optimizer
    d = defences.Defence(l1=0.01, label_smoothing=0.1, mixup=0.2, adv_train=0.1, adv_train_steps=5)
    assert d.objective == engine.Objective(label_smoothing=0.1, mixup=0.2, adv_eps=0.1, adv_steps=5)
    assert d.describe() == (
        "L1 0.01, label smoothing 0.1, mixup (alpha 0.2), adversarial training (PGD, 5 steps, "
        "eps 0.1)"
    )
    r = defences.Defence(relaxloss=1.5, adv_train_steps=3)
    assert r.objective == engine.Objective(relaxloss=1.5, adv_steps=3)
    assert r.describe() == "RelaxLoss (alpha 1.5)"
    assert "FGSM" in defences.Defence(adv_train=0.1).describe()


class Stop(Exception):
    pass


def test_the_defence_reaches_the_target_and_defended_shadows(small_digits, monkeypatch):
    calls = []

    def fake_train(*args, **kw):
        calls.append(kw)
        raise Stop

    monkeypatch.setattr(engine, "train", fake_train)
    config = audit.AuditConfig(num_shadows=2, epochs=1, mixup=0.2, l1=0.01, n_boot=0)
    for defend in (False, True):
        setup = audit_setup.prepare(config.replace(defend_shadows=defend), dataset=small_digits)
        for phase in (audit_training.train_target, audit_training.train_shadows):
            with pytest.raises(Stop):
                phase(setup)
    target, shadows, target_again, defended = calls
    for kw in (target, target_again, defended):
        assert kw["spec"].objective == engine.Objective(mixup=0.2)
        assert kw["spec"].optimizer is defences.optimizer(config.learning_rate, 0.0, 0.01)
    assert shadows["spec"].objective is None
    assert shadows["spec"].optimizer is defences.optimizer(config.learning_rate, 0.0)
    assert "mixup (alpha 0.2)" in defended["checkpoint_spec"]["defence"]
