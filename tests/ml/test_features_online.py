"""OnlineFeatures: the live plane's incremental features equal compute_features on every bar."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from ml.errors import FeatureInputError
from ml.features import FEATURE_COLUMNS, FeatureConfig, compute_features
from ml.online import OnlineFeatures
from tests.ml.conftest import synthetic_bars
from tests.ml.test_features import SMALL

RTOL = 1e-9
ATOL = 1e-9


DEFAULT = FeatureConfig()


def _online_rows(bars: pd.DataFrame, config: FeatureConfig = DEFAULT) -> np.ndarray:
    online = OnlineFeatures(config)
    rows = np.empty((len(bars), len(online.columns)))
    for i, (o, h, lo, c, v) in enumerate(
        bars[["open", "high", "low", "close", "volume"]].to_numpy()
    ):
        rows[i] = online.update(o, h, lo, c, v)
    return rows


def _assert_equal_on_every_bar(online: np.ndarray, batch: pd.DataFrame, cols) -> None:
    expected = batch[list(cols)].to_numpy()
    np.testing.assert_array_equal(np.isnan(online), np.isnan(expected))  # same warm-up per column
    np.testing.assert_allclose(online, expected, rtol=RTOL, atol=ATOL, equal_nan=True)
    np.testing.assert_array_equal(np.isnan(online).any(axis=1), batch["warmup"].to_numpy())


def test_online_features_when_replaying_spx_then_every_row_equals_batch(spx):
    # Arrange / Act: 5,031 daily bars, every feature, every bar (warm-up included).
    online = _online_rows(spx)
    # Assert
    _assert_equal_on_every_bar(online, compute_features(spx), FEATURE_COLUMNS)


@pytest.mark.parametrize(("n", "vol"), [(60_000, 1e-3), (20_000, 2e-5)])
def test_online_features_when_long_replay_then_no_drift_from_batch(n, vol):
    # Arrange: a long intraday-like walk, and a near-flat one (FX-like, 2e-5 per bar) where
    # running sums of squares would cancel.
    bars = synthetic_bars(n, seed=7, vol=vol)
    # Act
    online = _online_rows(bars)
    # Assert
    _assert_equal_on_every_bar(online, compute_features(bars), FEATURE_COLUMNS)


def test_online_features_when_short_config_and_zero_volume_bars_then_equal_batch():
    # Arrange: short lookbacks and stretches of zero volume (undefined volume features).
    bars = synthetic_bars(600, seed=3)
    bars.loc[100:140, "volume"] = 0.0
    # Act
    online = _online_rows(bars, SMALL)
    # Assert
    _assert_equal_on_every_bar(online, compute_features(bars, SMALL), OnlineFeatures(SMALL).columns)


def test_online_features_when_pickled_mid_replay_then_resumes_identically():
    # Arrange
    bars = synthetic_bars(900, seed=11)[["open", "high", "low", "close", "volume"]].to_numpy()
    first = OnlineFeatures()
    for row in bars[:500]:
        first.update(*row)
    # Act: what a Bytewax snapshot and resume do
    resumed = pickle.loads(pickle.dumps(first))
    for row in bars[500:]:
        a = first.update(*row).copy()
        b = resumed.update(*row)
        # Assert
        np.testing.assert_array_equal(a, b)
    assert resumed.bars == 900


@pytest.mark.parametrize(
    ("bar", "match"),
    [
        ((100.0, 101.0, 99.0, float("nan"), 1.0), "NaN"),
        ((100.0, 101.0, 99.0, -1.0, 1.0), "> 0"),
        ((100.0, 101.0, 99.0, 100.0, -5.0), "volume"),
        ((100.0, 99.0, 101.0, 100.0, 1.0), "high < low"),
    ],
)
def test_online_features_when_bar_is_invalid_then_feature_input_error(bar, match):
    with pytest.raises(FeatureInputError, match=match):
        OnlineFeatures().update(*bar)


def test_online_features_when_invalid_bar_mid_replay_then_state_is_untouched():
    # Arrange: the bar check runs inside the kernel, which must return before folding anything.
    bars = synthetic_bars(400, seed=5)[["open", "high", "low", "close", "volume"]].to_numpy()
    clean = OnlineFeatures()
    hit = OnlineFeatures()
    for row in bars[:300]:
        clean.update(*row)
        hit.update(*row)
    # Act
    with pytest.raises(FeatureInputError, match="infinite"):
        hit.update(100.0, float("inf"), 99.0, 100.0, 1.0)
    # Assert: the rest of the replay is the same as if the bad bar never came
    for row in bars[300:]:
        np.testing.assert_array_equal(hit.update(*row), clean.update(*row))
    assert hit.bars == clean.bars == 400
