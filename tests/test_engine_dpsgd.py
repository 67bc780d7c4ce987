"""Tests that kill the mutants the hardening issue (13, item 11) found surviving; each
names the mutant it kills."""

import jax
import numpy as np
import optax
import pytest
from helpers import tree_max_diff

from jaxmia import engine, metrics, models, splits
from jaxmia.engine import pools


@pytest.fixture(scope="module")
def tiny(small_digits):
    ds = small_digits.subset(np.arange(64))
    return ds, models.mlp((16,), ds.num_classes, 64)


def _one_step(tiny, keep, *, lr, dp):
    """One optimizer step of SGD(lr) on the members of ``keep`` (a single batch)."""
    ds, factory = tiny
    kw = dict(epochs=1, batch_size=int(keep.sum()), seed=3, mesh=None, chunk_size=None)
    return engine.train(factory, ds.x, ds.y, keep, optimizer=optax.sgd(lr), dp=dp, **kw)


def _update_leaves(tiny, keep, dp):
    before = _one_step(tiny, keep, lr=0.0, dp=dp).params
    after = _one_step(tiny, keep, lr=1.0, dp=dp).params
    return np.concatenate(
        [
            np.ravel(a - b)
            for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before), strict=True)
        ]
    )


def test_dp_sgd_clips_each_example_gradient(tiny):
    """Kills: per-example clipping removed. Noise 0, clip C, SGD lr 1, one step over B
    members: the update is the mean of clipped gradients, of norm at most C."""
    clip = 1e-3  # far below any unclipped gradient norm of this model
    keep = np.zeros((1, 64), bool)
    keep[0, :8] = True
    update = _update_leaves(tiny, keep, engine.DPConfig(l2_clip=clip, noise_multiplier=0.0))
    norm = float(np.linalg.norm(update))
    assert 0 < norm <= clip * (1 + 1e-4), norm
    unclipped = _update_leaves(tiny, keep, engine.DPConfig(l2_clip=1e6, noise_multiplier=0.0))
    assert np.linalg.norm(unclipped) > 10 * clip  # clipping was active


def test_dp_sgd_noise_std_is_sigma_times_clip_over_batch(tiny):
    """Kills: noise std sigma instead of sigma * C. C = 0.1, sigma = 1000, B = 8: each
    coordinate of the update is N(mean of clipped gradients, (sigma C / B)^2); the clipped
    part is at most C / B = 0.0125 in norm, negligible against the noise (12.5 per
    coordinate). With about 1,200 coordinates the sample std lies within 6% of the truth
    with probability > 1 - 1e-6 (chi-square); the mutant gives 10x."""
    sigma, clip, batch = 1000.0, 0.1, 8
    keep = np.zeros((1, 64), bool)
    keep[0, :batch] = True
    update = _update_leaves(tiny, keep, engine.DPConfig(l2_clip=clip, noise_multiplier=sigma))
    expected = sigma * clip / batch
    assert update.size > 1000
    assert abs(update.std() / expected - 1) < 0.06, (update.std(), expected)


def test_non_members_never_reach_training(tiny):
    """Kills: a member-count comparison `<` turned `<=`, which trains on one non-member
    per epoch. Garbage features and labels on the non-members leave every parameter
    bit-identical."""
    ds, factory = tiny
    keep = splits.balanced_keep(2, ds.n, seed=1)
    kw = dict(epochs=3, batch_size=7, seed=5, mesh=None, chunk_size=None)
    clean = engine.train(factory, ds.x, ds.y, keep, **kw)
    out = ~keep[0]
    x, y = ds.x.copy(), ds.y.copy()
    rng = np.random.default_rng(0)
    x[out] = rng.normal(0, 100, x[out].shape).astype(np.float32)
    y[out] = rng.integers(0, ds.num_classes, out.sum())
    dirty = engine.train(factory, x, y, keep, **kw)  # model 1 trains on some of them
    first = lambda p: jax.tree.map(lambda a: a[:1], p)
    assert tree_max_diff(first(clean.params), first(dirty.params)) == 0.0
    assert tree_max_diff(clean.params, dirty.params) > 0  # the garbage was trained on


def test_bootstrap_resamples_non_members():
    """Kills: non-members permuted instead of resampled. With constant member scores
    only the non-members' resampling moves the AUC, so its interval has positive width."""
    rng = np.random.default_rng(0)
    membership = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    scores = np.r_[np.full(50, 0.5), rng.uniform(0, 1, 50)]
    ci = metrics.bootstrap_ci(membership, scores, n_boot=200, seed=0)
    low, high = ci["auc"]
    assert high - low > 0.05, (low, high)


def test_best_threshold_ties_go_to_the_highest_threshold():
    """Kills: a tie in accuracy going to the lowest threshold. Thresholds 4 and 2 both
    classify 3 of 4 right; the highest wins."""
    assert metrics.best_threshold([1, 0, 1, 0], [4, 3, 2, 1]) == 4.0


@pytest.fixture(scope="module")
def chunked_pool(tiny, tmp_path_factory):
    ds, factory = tiny
    path = tmp_path_factory.mktemp("pool")
    keep = splits.balanced_keep(4, ds.n, seed=2)
    kw = dict(epochs=1, batch_size=16, seed=1, chunk_size=2, checkpoint=path)
    engine.train(factory, ds.x, ds.y, keep, **kw)
    return path, keep


def test_loading_a_count_that_ends_mid_chunk(chunked_pool):
    """Kills: one model too many loaded when the count ends inside a chunk."""
    path, keep = chunked_pool
    stored = pools.load(path, 3)
    assert stored.count == 3
    assert stored.arrays["keep"].shape[0] == 3 and stored.arrays["logits"].shape[0] == 3
    assert all(v.shape[0] == 3 for v in stored.leaves.values())
    np.testing.assert_array_equal(stored.arrays["keep"], keep[:3])


def test_resume_refuses_keys_that_differ_only_in_the_last_stored_model(chunked_pool):
    """Kills: the resume check comparing the keys of all but the last stored model."""
    path, keep = chunked_pool
    store = pools.ChunkStore(path, pools.read_manifest(path)["spec"])
    keys = pools.load(path).arrays["keys"].copy()
    assert store.resume(keep, keys).count == 4
    keys[3, 1] ^= 1
    with pytest.raises(pools.PoolError, match="other model keys"):
        store.resume(keep, keys)
