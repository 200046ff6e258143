"""User feature functions: referenced by import path, added to the built-ins in batch and live,
checked at load and by the features asset's no-look-ahead probe."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import pytest

from assets import _research_core as core
from execution.signal import bars_from_frame
from infra.config import CandleflowConfig, ConfigFileError
from ml.bundle import ModelBundle
from ml.features import (
    FeatureConfig,
    builtin_feature_columns,
    compute_features,
    feature_columns,
    required_history,
)
from ml.labels import direction_labels
from ml.pipeline import ResearchConfig
from streaming.models import LocalBundleProvider
from streaming.steps import Arrival, feature_step
from tests.streaming.conftest import spx_bars

REF = "examples.user_feature:range_position"
BAD = "tests.examples.bad_features"
USER_COLS = ["range_pos_20", "open_gap"]


def test_compute_features_when_user_feature_configured_then_its_columns_follow_the_builtins():
    bars = spx_bars(400)
    cfg = FeatureConfig(user_features=(REF,), feature_window=60)

    feats = compute_features(bars, cfg)

    assert list(feats.columns) == [*builtin_feature_columns(cfg), *USER_COLS, "warmup"]
    assert list(feature_columns(cfg)) == list(feats.columns[:-1])
    expected = (bars["close"] - bars["low"].rolling(20).min()) / (
        bars["high"].rolling(20).max() - bars["low"].rolling(20).min()
    )
    assert feats["range_pos_20"].to_numpy() == pytest.approx(expected.to_numpy(), nan_ok=True)
    assert required_history(cfg) >= 60
    assert list(compute_features(bars).columns) == [*builtin_feature_columns(), "warmup"]


def test_research_config_when_features_in_file_then_recipe_carries_them(tmp_path):
    path = tmp_path / "candleflow.toml"
    path.write_text(f'[research]\nfeatures = ["{REF}"]\nfeature_window = 120\n')

    cfg = CandleflowConfig.from_file(path)

    assert cfg.research.features == (REF,)
    assert cfg.research.recipe.feature_config == FeatureConfig(
        user_features=(REF,), feature_window=120
    )
    assert CandleflowConfig.from_json(cfg.to_json()).research.recipe == cfg.research.recipe


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (f"{BAD}:clashing", "'rsi_14' is a built-in feature name"),
        (f"{BAD}:wrong_index", "index that differs"),
        (f"{BAD}:NOT_CALLABLE", "is not a function"),
        (f"{BAD}:nope", "has no attribute"),
        ("examples.nope:f", "cannot import"),
    ],
)
def test_config_load_when_user_feature_unusable_then_refused_naming_it(ref, expected):
    with pytest.raises(ConfigFileError, match=expected):
        CandleflowConfig.from_mapping({"research": {"features": [ref]}})


def _probe(ref: str, window: int = 250) -> dict:
    bars = spx_bars(900)
    cfg = ResearchConfig(features=(ref,), feature_window=window)
    feats = core.features_of(bars, cfg)
    return core.look_ahead_probe(bars, feats, feature_config=cfg.feature_config)


def test_look_ahead_probe_when_user_feature_reads_next_bar_then_fails_naming_the_column():
    look = _probe(f"{BAD}:peek_next_close")

    assert look["passed"] is False
    assert look["columns"] == ["next_ret"]
    assert "look-ahead" in look["reason"] and "next_ret" in look["reason"]


def test_look_ahead_probe_when_user_feature_reads_beyond_feature_window_then_fails():
    look = _probe(f"{BAD}:expanding_mean", window=100)

    assert look["passed"] is False
    assert "feature_window=100" in look["reason"]


def test_look_ahead_probe_when_causal_windowed_user_feature_then_passes():
    look = _probe(REF, window=60)

    assert look["passed"] is True and look["cut_points"] > 0


def test_feature_step_when_bundle_has_user_features_then_live_equals_batch_on_replay():
    from ml.models import XGBoostModel

    bars = spx_bars(700)
    cfg = FeatureConfig(user_features=(REF,), feature_window=60)
    feats = compute_features(bars.iloc[:400], cfg)
    labels = direction_labels(bars.iloc[:400], horizon=1).values
    ok = (~feats["warmup"]) & labels.notna()
    # The model reads the user columns only: live predictions equal batch only if their
    # live values do.
    model = XGBoostModel(n_estimators=20, max_depth=3, n_jobs=1, seed=0)
    model.fit(feats.loc[ok, USER_COLS], labels[ok])
    bundle = ModelBundle(model=model, feature_config=cfg, columns=tuple(USER_COLS), name="x")
    batch = bundle.predict_frame(bars)

    state, live = None, {}
    provider = LocalBundleProvider(bundle)
    for bar in bars_from_frame(bars):
        state, scored = feature_step(state, Arrival(bar, time.perf_counter_ns()), provider)
        if scored is not None and scored.prediction is not None:
            p = scored.prediction
            live[pd.Timestamp(bar.ts)] = (p.p_down, p.p_flat, p.p_up)

    live_frame = pd.DataFrame.from_dict(live, orient="index", columns=list(batch.columns))
    assert len(live_frame) == len(batch) > 400
    assert live_frame.to_numpy() == pytest.approx(batch.to_numpy(), rel=0, abs=1e-9)
    assert np.unique(batch["p_up"].round(6)).size > 5  # the user columns move the model


def test_bundle_when_saved_with_user_features_then_reloads_the_same_columns(tmp_path):
    from ml.bundle import load_bundle
    from ml.pipeline import fit_deployable_on, research_labels

    bars = spx_bars(600)
    cfg = ResearchConfig(models=("xgboost",), baselines=(), features=(REF,), feature_window=60,
                         xgb_estimators=10)
    feats = compute_features(bars, cfg.feature_config)
    bundle = fit_deployable_on(feats, research_labels(bars, cfg).values, cfg)
    again = load_bundle(bundle.save(tmp_path / "b"))

    assert set(USER_COLS) <= set(again.columns)
    assert again.feature_config == dataclasses.replace(FeatureConfig(), user_features=(REF,),
                                                       feature_window=60)
    assert np.allclose(again.predict_frame(bars).to_numpy(), bundle.predict_frame(bars).to_numpy())


def test_live_user_row_when_replayed_through_the_feature_ring_then_values_equal_batch():
    from ml.user_features import live_user_row
    from streaming.steps import FeatureState

    bars = spx_bars(500)
    cfg = FeatureConfig(user_features=(REF,), feature_window=60)
    batch = compute_features(bars, cfg)[USER_COLS].to_numpy()
    state = FeatureState("SPX")
    live = []
    for bar in bars_from_frame(bars):
        ohlcv = (bar.open, bar.high, bar.low, bar.close, bar.volume)
        state.remember(pd.Timestamp(bar.ts).value, ohlcv, required_history(cfg))
        live.append(live_user_row(state.recent_frame(), cfg).copy())

    assert np.array_equal(np.isnan(batch), np.isnan(np.asarray(live)))
    assert np.asarray(live) == pytest.approx(batch, rel=0, abs=1e-12, nan_ok=True)
