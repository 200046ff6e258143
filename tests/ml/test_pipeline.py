"""The research recipe and the deployable bundle the live plane loads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.bundle import load_bundle
from ml.errors import ConfigError, ModelError
from ml.features import compute_features
from ml.pipeline import ResearchConfig, fit_deployable, research_folds, research_labels, run_family

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
