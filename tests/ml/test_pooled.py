"""Pooled walk-forward: one model per fold across every series, folds on the shared time axis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.errors import ModelError
from ml.features import compute_features
from ml.pipeline import ResearchConfig, make_factory, research_labels
from ml.pooled import pooled_time_axis, run_pooled_walk_forward
from tests.ml.conftest import synthetic_bars

CFG = ResearchConfig(models=("xgboost",), n_folds=3, xgb_estimators=10)
N_FOLDS = 3


@pytest.fixture(scope="module")
def universe():
    series = {}
    for seed, key in enumerate(["AAA@1h", "BBB@1h", "CCC@1h"]):
        bars = synthetic_bars(1200, seed=seed)
        if key == "CCC@1h":  # a series with gaps: its label windows span more shared-axis rows
            keep = np.random.default_rng(7).random(len(bars)) > 0.3
            bars = bars[keep].reset_index(drop=True)
        series[key] = (compute_features(bars), research_labels(bars, CFG))
    return {k: v[0] for k, v in series.items()}, {k: v[1] for k, v in series.items()}


def _run(universe, factory, embargo=CFG.embargo):
    features, labels = universe
    return run_pooled_walk_forward(
        features, labels, factory, n_folds=N_FOLDS, purge=CFG.horizon + 1, embargo=embargo
    )


def test_pooled_when_several_series_then_one_fit_per_fold_not_per_series(universe):
    # Arrange: count the models built and fitted
    built = []
    base = make_factory("xgboost", CFG)

    def factory(params):
        built.append(1)
        return base(params)

    # Act
    result = _run(universe, factory)
    # Assert
    assert len(built) == len(result.models) == len(result.folds) == N_FOLDS
    assert list(result.fold_metrics.index) == list(range(N_FOLDS))


def test_pooled_when_trained_then_no_label_reads_a_bar_of_any_series_in_the_test_window(
    universe,
):
    # Act: no embargo, so the purge alone stands between training labels and the test window
    features, labels = universe
    result = _run(universe, make_factory("xgboost", CFG), embargo=0)
    # Assert: every trained row's label window (its series' next `horizon` bars) ends before
    # the first test bar of the fold on the shared axis, for every series
    for k, fold in enumerate(result.folds):
        for key, feats in features.items():
            trained = result.train_ts[key][k]
            assert len(trained) > 0
            pos = feats.index.get_indexer(trained)
            ends = feats.index[pos + labels[key].horizon]
            assert ends.max() < fold.test_start
            assert trained.max() <= fold.train_end


def test_pooled_when_predicted_then_each_series_gets_its_own_oos_rows_by_fold(universe):
    # Act
    features, labels = universe
    result = _run(universe, make_factory("xgboost", CFG))
    axis = pooled_time_axis(features)
    # Assert: predictions per series, only its own test-window rows, probabilities sum to 1
    assert set(result.predictions) == set(features)
    oos_start = result.folds[0].test_start
    for key, pred in result.predictions.items():
        assert pred.index.isin(features[key].index).all()
        assert pred.index.min() >= oos_start and pred.index.is_monotonic_increasing
        assert set(pred["fold"]) == set(range(N_FOLDS))
        np.testing.assert_allclose(pred[["p_down", "p_flat", "p_up"]].sum(axis=1), 1.0)
        expected = features[key].index[
            (features[key].index >= oos_start) & ~features[key]["warmup"].to_numpy()
        ]
        assert pred.index.equals(expected)
        pd.testing.assert_series_equal(
            pred["label"], labels[key].values.loc[pred.index], check_names=False
        )
    assert axis.is_monotonic_increasing and axis.is_unique


def test_pooled_when_series_names_disagree_then_refused(universe):
    # Arrange
    features, labels = universe
    # Act / Assert
    with pytest.raises(ModelError, match="same series"):
        run_pooled_walk_forward(
            features, {k: labels[k] for k in list(labels)[:2]}, make_factory("xgboost", CFG),
            n_folds=N_FOLDS, purge=CFG.horizon + 1,
        )
