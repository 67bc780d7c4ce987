"""Keep-matrix properties and split errors."""

import numpy as np
import pytest

from jaxmia import splits


@pytest.mark.parametrize("k,n", [(2, 10), (16, 101), (64, 500)])
def test_balanced_each_example_in_half_the_models(k, n):
    keep = splits.balanced_keep(k, n, seed=1)
    assert keep.shape == (k, n) and keep.dtype == bool
    np.testing.assert_array_equal(keep.sum(axis=0), k // 2)
    # rows are random halves, not a fixed pattern
    assert abs(keep.sum(axis=1).mean() - n / 2) < 1e-9
    assert len({tuple(r) for r in keep}) == k


def test_balanced_reproducible():
    np.testing.assert_array_equal(
        splits.balanced_keep(8, 50, seed=3), splits.balanced_keep(8, 50, seed=3)
    )
    assert (splits.balanced_keep(8, 50, seed=3) != splits.balanced_keep(8, 50, seed=4)).any()


def test_disjoint_never_touches_target_data():
    split = splits.make_split(1000, 10, scheme="disjoint", seed=0)
    target_data = np.zeros(1000, bool)
    target_data[split.candidates] = True
    assert not (split.shadow_keep & target_data).any()
    assert not (split.shadow_pool & target_data).any()
    np.testing.assert_array_equal(split.shadow_keep.sum(1), 250)
    assert split.membership.sum() == 250 and (~split.membership).sum() == 250
    assert (split.shadow_keep <= split.shadow_pool).all()


def test_balanced_split_target_half():
    split = splits.make_split(101, 4, scheme="balanced", seed=0)
    assert split.target_keep.sum() == 50
    assert split.candidates.size == 101
    np.testing.assert_array_equal(split.shadow_keep.sum(0), 2)


def test_errors_when_data_too_small():
    with pytest.raises(splits.SplitError, match="even number of models"):
        splits.balanced_keep(3, 10)
    with pytest.raises(splits.SplitError, match="only 5 are available"):
        splits.disjoint_keep(2, 10, size=5, exclude=np.arange(5))
    with pytest.raises(splits.SplitError, match="2 x target_size"):
        splits.make_split(20, 2, scheme="disjoint", target_size=8)
    with pytest.raises(splits.SplitError, match="between 1 and"):
        splits.make_split(20, 2, scheme="balanced", target_size=20)
    with pytest.raises(splits.SplitError, match="unknown split scheme"):
        splits.make_split(20, 2, scheme="random")
