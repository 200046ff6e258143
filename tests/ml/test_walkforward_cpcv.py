"""Combinatorial purged cross-validation: split and path counts, purge, embargo, full paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.cpcv import cpcv_path_count, cpcv_paths, cpcv_splits, run_cpcv
from ml.errors import SplitError
from ml.features import compute_features
from ml.labels import direction_labels
from ml.models import SmaCrossoverModel


@pytest.mark.parametrize(("n_groups", "k"), [(6, 2), (10, 2), (8, 3), (5, 1)])
def test_cpcv_path_count_when_n_groups_k_then_phi_is_k_over_n_times_binomial(n_groups, k):
    # Act
    phi = cpcv_path_count(n_groups, k)
    paths = cpcv_paths(n_groups, k)
    splits = cpcv_splits(600, n_groups=n_groups, n_test_groups=k, purge=2, embargo=1)
    # Assert: AFML ch. 12, phi[N, k] = k / N * C(N, k) (e.g. 5 paths for N=6, k=2)
    assert phi * n_groups == k * math.comb(n_groups, k)
    assert len(splits) == math.comb(n_groups, k)
    assert paths.shape == (phi, n_groups)
    # Every (split, test group) pair is used by exactly one path, and only where it tests g.
    used = {(int(paths[p, g]), g) for p in range(phi) for g in range(n_groups)}
    assert len(used) == phi * n_groups == sum(len(s.test_groups) for s in splits)
    assert all(g in splits[sid].test_groups for sid, g in used)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(120, 1500),
    n_groups=st.integers(3, 8),
    k=st.integers(1, 3),
    purge=st.integers(0, 6),
    embargo=st.integers(0, 6),
    start=st.integers(0, 50),
)
def test_cpcv_splits_when_any_sizes_then_no_train_row_inside_purge_or_embargo(
    n, n_groups, k, purge, embargo, start
):
    if k >= n_groups:
        k = n_groups - 1
    # Act
    splits = cpcv_splits(
        n, n_groups=n_groups, n_test_groups=k, purge=purge, embargo=embargo, start=start
    )
    # Assert
    for split in splits:
        train, test = split.train_idx, split.test_idx
        assert not np.intersect1d(train, test).size
        assert (train >= start).all()
        test_set = set(test.tolist())
        for i in train.tolist():
            # no test bar within `purge` bars after a training row (its label window) ...
            assert not any(j in test_set for j in range(i + 1, i + purge + 1))
            # ... nor within purge + embargo bars before it
            assert not any(j in test_set for j in range(i - purge - embargo, i))


def test_cpcv_splits_when_too_few_groups_then_split_error():
    with pytest.raises(SplitError, match="n_test_groups"):
        cpcv_splits(100, n_groups=4, n_test_groups=4, purge=1)


def test_run_cpcv_when_run_then_every_path_covers_every_post_warmup_bar_once(spx):
    # Arrange
    bars = spx.iloc[:900]
    feats = compute_features(bars)
    labels = direction_labels(bars, 1, k=0.3, fill="next_open")
    cols = ["sma_10_ratio", "sma_50_ratio", "rsi_14", "log_ret_1"]
    # Act
    result = run_cpcv(
        feats[[*cols, "warmup"]],
        labels,
        lambda p: SmaCrossoverModel(),
        n_groups=5,
        n_test_groups=2,
        embargo=2,
    )
    # Assert
    post = feats.index[~feats["warmup"].to_numpy()]
    assert len(result.paths) == cpcv_path_count(5, 2) == 4
    for path in result.paths:
        assert path.index.equals(post)
        np.testing.assert_allclose(path[["p_down", "p_flat", "p_up"]].sum(axis=1), 1.0)
    assert all(s.purge == labels.horizon == 2 for s in result.splits)
