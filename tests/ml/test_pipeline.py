"""The research recipe and the deployable bundle the live plane loads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.bundle import load_bundle
from ml.errors import ConfigError, ModelError
from ml.features import compute_features
from ml.pipeline import (
    ResearchConfig,
    feature_importance,
    fit_deployable,
    research_folds,
    research_labels,
    run_family,
)

FAST = ResearchConfig(models=("xgboost",), n_folds=2, xgb_estimators=20)


def test_research_config_when_unknown_key_then_rejected():
    with pytest.raises(ConfigError, match="unknown ResearchConfig keys"):
        ResearchConfig.from_mapping({"n_folds": 3, "n_fold": 3})


def test_research_config_when_unknown_family_then_rejected():
    with pytest.raises(ConfigError, match="unknown model families"):
        ResearchConfig(models=("random_forest",))


def test_bundle_when_saved_and_loaded_then_predictions_identical(spx, tmp_path):
    bars = spx.iloc[:1500]
    bundle = fit_deployable(bars, FAST)

    before = bundle.predict_frame(bars)
    loaded = load_bundle(bundle.save(tmp_path / "b"))
    after = loaded.predict_frame(bars)

    pd.testing.assert_frame_equal(before, after)
    assert np.allclose(after.sum(axis=1), 1.0)
    assert loaded.columns == bundle.columns


def test_bundle_when_buffer_holds_history_bars_then_last_prediction_equals_batch(spx):
    bars = spx.iloc[:1500].reset_index(drop=True)
    bundle = fit_deployable(bars, FAST)
    full = bundle.predict_frame(bars)

    for end in (1200, 1499):
        buffer = bars.iloc[end + 1 - bundle.history : end + 1]
        live = bundle.predict_frame(buffer).iloc[-1]
        np.testing.assert_allclose(live.to_numpy(), full.loc[bars["ts"].iloc[end]].to_numpy(),
                                   rtol=1e-7, atol=1e-9)


def test_load_bundle_when_directory_is_not_a_bundle_then_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not a model bundle"):
        load_bundle(tmp_path)


def test_run_family_when_walk_forward_then_predictions_only_after_training_rows(spx):
    bars = spx.iloc[:1500]
    feats = compute_features(bars)
    labels = research_labels(bars, FAST)
    folds = research_folds(feats, FAST)

    result = run_family("xgboost", feats, labels, folds, FAST)

    for fold in result.folds:
        assert fold.train_idx.max() + FAST.horizon < fold.test_idx.min()
    assert result.predictions.index.min() > feats.index[folds[0].train_idx.max()]


def test_run_family_when_tuning_then_trials_run_inside_training_folds_only(spx):
    cfg = ResearchConfig(models=("xgboost",), n_folds=2, xgb_estimators=10, tune_trials=2)
    bars = spx.iloc[:1200]
    feats = compute_features(bars)

    labels, folds = research_labels(bars, cfg), research_folds(feats, cfg)

    result = run_family("xgboost", feats, labels, folds, cfg)

    for tuning, fold in zip(result.tuning, result.folds, strict=True):
        assert tuning is not None
        assert tuning.n_trials == 2
        assert set(tuning.best_params) == {"max_depth", "learning_rate", "min_child_weight"}
        assert fold.train_idx.max() < fold.test_idx.min()


def test_feature_importance_when_tree_family_then_named_by_feature_columns(spx):
    bars = spx.iloc[:1200]
    feats = compute_features(bars)
    labels, folds = research_labels(bars, FAST), research_folds(feats, FAST)
    result = run_family("xgboost", feats, labels, folds, FAST)

    imp = feature_importance(result, [c for c in feats.columns if c != "warmup"])

    assert imp is not None
    assert set(imp.index) <= set(feats.columns)
    assert imp.is_monotonic_decreasing


def test_predict_last_when_buffer_grows_then_equals_predict_frame_last_row(spx):
    bars = spx.iloc[:800].set_index("ts")
    bundle = fit_deployable(spx.iloc[:800], FAST)
    frame = bundle.predict_frame(bars)

    assert bundle.predict_last(bars.iloc[:100]) is None  # still in warm-up
    for end in (700, 800):
        got = bundle.predict_last(bars.iloc[:end])
        np.testing.assert_array_equal(got, frame.loc[bars.index[end - 1]].to_numpy())
