"""compute_features: no look-ahead, batch == live with required_history, scale-free, correct."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from ml.errors import ConfigError, FeatureInputError
from ml.features import (
    FEATURE_COLUMNS,
    FeatureConfig,
    compute_features,
    feature_columns,
    required_history,
)
from tests.ml.conftest import synthetic_bars

# Short lookbacks so that a few hundred synthetic bars exercise every feature past warm-up.
SMALL = FeatureConfig(
    sma_periods=(5, 12),
    ema_periods=(6, 12),
    drawdown_window=40,
    autocorr_window=30,
    autocorr_lags=5,
    hurst_window=30,
    hurst_lags=(1, 2, 4),
    sharpe_window=25,
)
RTOL = 1e-9
ATOL = 1e-12


def _assert_rows_equal(left: pd.DataFrame, right: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(left, right, check_exact=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(60, 160),
    cut=st.floats(0.0, 1.0),
    vol=st.sampled_from([1e-4, 1e-2, 5e-2]),
)
def test_features_when_computed_on_prefix_then_equal_full_frame_rows(seed, n, cut, vol):
    # Arrange
    bars = synthetic_bars(n, seed, vol)
    t = int(cut * (n - 1))
    # Act
    full = compute_features(bars, SMALL)
    prefix = compute_features(bars.iloc[: t + 1], SMALL)
    # Assert
    _assert_rows_equal(prefix, full.iloc[: t + 1])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(60, 160),
    cut=st.floats(0.0, 0.95),
    shock=st.floats(-0.5, 2.0),
    extra=st.integers(1, 40),
)
def test_features_when_bars_after_t_change_or_are_appended_then_rows_up_to_t_unchanged(
    seed, n, cut, shock, extra
):
    # Arrange
    bars = synthetic_bars(n, seed)
    t = int(cut * (n - 1))
    perturbed = bars.copy()
    after = perturbed.index > t
    for col in ("open", "high", "low", "close"):
        perturbed.loc[after, col] *= np.exp(shock)
    perturbed.loc[after, "volume"] *= 3.0
    appended = pd.concat(
        [bars, synthetic_bars(extra, seed + 1, start="2030-01-01")], ignore_index=True
    )
    # Act
    base = compute_features(bars, SMALL)
    changed = compute_features(perturbed, SMALL)
    longer = compute_features(appended, SMALL)
    # Assert
    _assert_rows_equal(changed.iloc[: t + 1], base.iloc[: t + 1])
    _assert_rows_equal(longer.iloc[:n], base)


@pytest.mark.parametrize("end", [1500, 3200, 5031])
def test_features_when_live_buffer_has_required_history_then_last_row_equals_batch(spx, end):
    # Arrange
    history = spx.iloc[:end]
    buffer = history.iloc[-required_history() :]
    # Act
    batch = compute_features(history).iloc[-1]
    live = compute_features(buffer).iloc[-1]
    # Assert
    assert not batch["warmup"]
    assert not live["warmup"]
    cols = list(FEATURE_COLUMNS)
    np.testing.assert_allclose(
        live[cols].to_numpy(float), batch[cols].to_numpy(float), rtol=RTOL, atol=ATOL
    )


def test_features_when_live_buffer_is_too_short_then_last_row_differs(spx):
    # Arrange: proves the equality test above can fail (EMA-type features remember their seed).
    short = spx.iloc[-150:]
    # Act
    batch = compute_features(spx).iloc[-1][list(FEATURE_COLUMNS)].to_numpy(float)
    live = compute_features(short).iloc[-1][list(FEATURE_COLUMNS)].to_numpy(float)
    # Assert
    finite = np.isfinite(live)
    assert not np.allclose(live[finite], batch[finite], rtol=RTOL, atol=ATOL)


def test_required_history_when_default_config_then_covers_lookbacks_and_convergence():
    # Arrange / Act
    bars_needed = required_history()
    # Assert: the drawdown window (250) and ~400 bars of Wilder-14 convergence both fit.
    assert 400 < bars_needed < 1000
    assert required_history(FeatureConfig(convergence_tol=1e-6)) < bars_needed


def test_features_when_prices_rescaled_then_scale_free_features_unchanged(spx):
    # Arrange
    scaled = spx.copy()
    for col in ("open", "high", "low", "close"):
        scaled[col] = spx[col] * 37.5
    # Act
    base = compute_features(spx.iloc[-800:])
    other = compute_features(scaled.iloc[-800:])
    # Assert: everything but Amihud (return per unit of money traded) is price-scale free.
    cols = [c for c in FEATURE_COLUMNS if not c.startswith("amihud")]
    valid = ~base["warmup"]
    np.testing.assert_allclose(
        other.loc[valid, cols].to_numpy(float),
        base.loc[valid, cols].to_numpy(float),
        rtol=1e-7,
        atol=1e-9,
    )
    amihud = "amihud_20"
    shift = (base.loc[valid, amihud] - other.loc[valid, amihud]).to_numpy()
    np.testing.assert_allclose(shift, np.log(37.5), rtol=1e-9)


def test_features_when_computed_then_index_columns_and_warmup_as_documented(spx):
    # Arrange
    bars = spx.iloc[:600]
    snapshot = bars.copy()
    # Act
    feats = compute_features(bars)
    # Assert
    pd.testing.assert_frame_equal(bars, snapshot)  # the input is not mutated
    assert list(feats.columns) == [*feature_columns(), "warmup"]
    assert feats.index.equals(pd.DatetimeIndex(bars["ts"], name="ts"))
    assert str(feats.index.tz) == "UTC"
    warm = feats["warmup"].to_numpy()
    assert warm[:249].all()  # the 250-bar drawdown window is the longest NaN prefix
    assert not warm[250:].any()
    assert feats.loc[~feats["warmup"], list(FEATURE_COLUMNS)].notna().all().all()
    assert feats.loc[feats["warmup"], list(FEATURE_COLUMNS)].isna().any(axis=1).all()


def _window_returns(close: np.ndarray, i: int, w: int) -> np.ndarray:
    r = np.diff(np.log(close))
    return r[i - w : i]  # the w returns ending at row i (return j is row j + 1)


def test_statistical_features_when_compared_with_direct_formulas_then_match(spx):
    # Arrange
    bars = spx.iloc[:900]
    close = bars["close"].to_numpy()
    high = bars["high"].to_numpy()
    low = bars["low"].to_numpy()
    volume = bars["volume"].to_numpy()
    feats = compute_features(bars)
    for i in (400, 655, 899):
        row = feats.iloc[i]
        r20 = _window_returns(close, i, 20)
        r100 = _window_returns(close, i, 100)
        mu = r100.mean()
        var = r100.var()
        prev = np.diff(np.log(close))[i - 100 - 3 : i - 3]
        acf3 = (np.mean(r100 * prev) - mu * mu) / var
        window_close = close[i - 19 : i + 1]
        hl = np.log(high[i - 19 : i + 1] / low[i - 19 : i + 1])
        r_prev = np.diff(np.log(close))[i - 21 : i - 1]
        roll_cov = np.mean(r20 * r_prev) - r20.mean() * r_prev.mean()
        dollar = close[i - 19 : i + 1] * volume[i - 19 : i + 1]
        expected = {
            "ret_mean_20": r20.mean(),
            "ret_std_20": r20.std(),
            "ret_skew_20": stats.skew(r20, bias=True),
            "ret_kurt_20": stats.kurtosis(r20, bias=True),
            "ret_acf_3": acf3,
            "close_z_20": (close[i] - window_close.mean()) / window_close.std(),
            "rv_20": np.sqrt(np.mean(r20**2)),
            "parkinson_20": np.sqrt(np.mean(hl**2) / (4 * np.log(2))),
            "sharpe_60": _window_returns(close, i, 60).mean() / _window_returns(close, i, 60).std(),
            "drawdown_250": close[i] / close[i - 249 : i + 1].max() - 1,
            "log_ret_5": np.log(close[i] / close[i - 5]),
            "amihud_20": np.log(np.mean(np.abs(r20) / dollar)),
            "roll_spread_20": 2 * np.sqrt(max(-roll_cov, 0.0)),
            "vwap_20_ratio": close[i]
            / (
                np.sum((high + low + close)[i - 19 : i + 1] / 3 * volume[i - 19 : i + 1])
                / volume[i - 19 : i + 1].sum()
            )
            - 1,
        }
        # Act / Assert
        for name, value in expected.items():
            assert row[name] == pytest.approx(value, rel=1e-7, abs=1e-12), (i, name)


@pytest.mark.parametrize("lags", [(1, 2, 4, 8, 16), (1, 3, 5, 11)])
def test_hurst_when_compared_with_per_lag_regression_then_match(spx, lags):
    # Arrange: geometric lags take the one-log fast path, others the per-lag path.
    config = FeatureConfig(hurst_lags=lags)
    bars = spx.iloc[:700]
    log_close = np.log(bars["close"].reset_index(drop=True))
    x = np.log(np.asarray(lags, dtype=float))
    weights = (x - x.mean()) / ((x - x.mean()) ** 2).sum()
    expected = sum(
        wk * 0.5 * np.log(log_close.diff(k).rolling(100).var(ddof=0))
        for k, wk in zip(lags, weights, strict=True)
    )
    # Act
    hurst = compute_features(bars, config)["hurst_100"].to_numpy()
    # Assert
    start = 100 + max(lags) - 1
    assert np.isnan(hurst[:start]).all()
    np.testing.assert_allclose(hurst[start:], expected.to_numpy()[start:], rtol=1e-8, atol=1e-10)


def test_hurst_when_random_walk_then_near_half_and_when_trending_then_higher():
    # Arrange
    walk = synthetic_bars(3000, seed=11)
    rng = np.random.default_rng(5)
    # A persistent process: AR(1) returns with strong positive autocorrelation trend.
    r = np.zeros(3000)
    for t in range(1, 3000):
        r[t] = 0.8 * r[t - 1] + rng.normal(0, 0.005)
    trend = walk.copy()
    close = 100 * np.exp(np.cumsum(r))
    trend["close"] = close
    trend["open"] = np.concatenate([[100.0], close[:-1]])
    trend["high"] = np.maximum(trend["open"], close) * 1.001
    trend["low"] = np.minimum(trend["open"], close) * 0.999
    # Act
    h_walk = compute_features(walk)["hurst_100"].dropna()
    h_trend = compute_features(trend)["hurst_100"].dropna()
    # Assert
    assert abs(h_walk.mean() - 0.5) < 0.05
    assert h_trend.mean() > 0.65


def test_compute_features_when_bars_unsorted_then_feature_input_error(spx):
    bars = spx.iloc[:50].iloc[::-1]
    with pytest.raises(FeatureInputError, match="sorted"):
        compute_features(bars)


def test_compute_features_when_two_symbols_then_feature_input_error(spx):
    bars = spx.iloc[:50].copy()
    bars.loc[10, "symbol"] = "NDX"
    with pytest.raises(FeatureInputError, match="one symbol"):
        compute_features(bars)


def test_compute_features_when_naive_timestamps_then_feature_input_error(spx):
    bars = spx.iloc[:50].copy()
    bars["ts"] = bars["ts"].dt.tz_localize(None)
    with pytest.raises(FeatureInputError, match="tz-aware"):
        compute_features(bars)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 25])
def test_compute_features_when_fewer_bars_than_lookbacks_then_all_rows_warmup(n):
    # Arrange
    bars = synthetic_bars(max(n, 1), seed=4).iloc[:n]
    # Act
    feats = compute_features(bars)
    # Assert
    assert len(feats) == n
    assert feats["warmup"].all()
    assert feats["sma_50_ratio"].isna().all()


def test_feature_config_when_duplicate_periods_then_config_error():
    with pytest.raises(ConfigError, match="sma_periods must be distinct"):
        FeatureConfig(sma_periods=(10, 10))


def test_feature_config_when_unknown_key_then_config_error():
    with pytest.raises(ConfigError, match="unknown FeatureConfig keys: rsi_len"):
        FeatureConfig.from_mapping({"rsi_len": 14})


def test_feature_config_when_from_mapping_with_lists_then_tuples():
    config = FeatureConfig.from_mapping({"sma_periods": [5, 20], "rsi_period": 7})
    assert config.sma_periods == (5, 20)
    assert "rsi_7" in feature_columns(config)


def _stress_bars(n: int, seed: int) -> pd.DataFrame:
    """High price level, tiny moves, a flat stretch and zero-volume bars: hard cases for sums."""
    bars = synthetic_bars(n, seed, vol=2e-4)
    for col in ("open", "high", "low", "close"):
        bars[col] *= 250.0
    bars.loc[n // 3 : n // 3 + 30, "volume"] = 0.0
    flat = bars.loc[n // 2, "close"]
    bars.loc[n // 2 : n // 2 + 120, ["open", "high", "low", "close"]] = flat
    return bars


def _pandas_reference(bars: pd.DataFrame) -> dict[str, pd.Series]:
    """The statistical features from plain pandas rolling windows (default config)."""
    close = bars["close"].reset_index(drop=True)
    volume = bars["volume"].reset_index(drop=True)
    hl = np.log(bars["high"] / bars["low"]).reset_index(drop=True)
    r = np.log(close).diff()
    w = 20
    mean = r.rolling(w).mean()
    var = r.rolling(w).var(ddof=0)
    ref = {"ret_mean_20": mean, "ret_std_20": np.sqrt(var)}
    # pandas gives the bias-corrected skew / excess kurtosis; undo the corrections.
    ref["ret_skew_20"] = r.rolling(w).skew() * (w - 2) / np.sqrt(w * (w - 1))
    g2 = r.rolling(w).kurt() * (w - 2) * (w - 3) / (w - 1)
    ref["ret_kurt_20"] = (g2 - 6) / (w + 1)
    mean_100 = r.rolling(100).mean()
    var_100 = r.rolling(100).var(ddof=0)
    for k in (1, 4, 10):
        ref[f"ret_acf_{k}"] = ((r * r.shift(k)).rolling(100).mean() - mean_100**2) / var_100
    # Two-pass z-scores: pandas' one-pass rolling std loses ~1e-8 on near-flat price windows.
    for name, x in (("close_z_20", close), ("volume_z_20", volume)):
        win = np.lib.stride_tricks.sliding_window_view(x.to_numpy(), 20)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (win[:, -1] - win.mean(axis=1)) / win.std(axis=1)
        ref[name] = pd.Series(np.concatenate([np.full(19, np.nan), z]))
    ref["rv_20"] = np.sqrt((r**2).rolling(20).mean())
    ref["parkinson_20"] = np.sqrt((hl**2).rolling(20).mean() / (4 * np.log(2)))
    ref["sharpe_60"] = r.rolling(60).mean() / r.rolling(60).std(ddof=0)
    sign = np.sign(close.diff())
    ref["obv_flow_20"] = (sign * volume).rolling(20).sum() / volume.rolling(20).sum()
    cov = (r * r.shift(1)).rolling(20).mean() - r.rolling(20).mean() * r.shift(1).rolling(20).mean()
    ref["roll_spread_20"] = 2 * np.sqrt(np.maximum(-cov, 0.0))
    return ref


@pytest.mark.parametrize("source", ["spx", "stress"])
def test_statistical_features_when_compared_with_pandas_rolling_then_match_on_every_row(
    spx, source
):
    # Arrange: rows where the reference is well conditioned (a non-flat window) are compared.
    bars = spx.iloc[:2500] if source == "spx" else _stress_bars(2500, seed=3)
    ref = _pandas_reference(bars)
    # Act
    feats = compute_features(bars).reset_index(drop=True)
    # Assert
    for name, expected in ref.items():
        got = feats[name].to_numpy()
        want = expected.to_numpy()
        ok = np.isfinite(want) & ~feats["warmup"].to_numpy()
        assert ok.sum() > 1000, name
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-8, atol=1e-10, err_msg=name)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400), zero_from=st.integers(0, 400))
def test_warmup_when_features_computed_then_equals_any_nan_in_row(seed, n, zero_from):
    # Arrange: a zero-volume tail makes volume features NaN after the warm-up too.
    bars = synthetic_bars(n, seed)
    bars.loc[bars.index >= zero_from, "volume"] = 0.0
    # Act
    feats = compute_features(bars, SMALL)
    # Assert
    any_nan = feats[list(feature_columns(SMALL))].isna().any(axis=1).to_numpy()
    np.testing.assert_array_equal(feats["warmup"].to_numpy(), any_nan)


def test_features_when_threaded_path_used_then_identical_to_sequential(spx, monkeypatch):
    # Arrange: long frames split the work over two threads; force both paths on one frame.
    import ml.features as features_module

    bars = _stress_bars(3000, seed=9)
    monkeypatch.setattr(features_module, "_THREAD_MIN_ROWS", 10**9)
    sequential = compute_features(bars)
    monkeypatch.setattr(features_module, "_THREAD_MIN_ROWS", 1)
    # Act
    threaded = compute_features(bars)
    # Assert
    _assert_rows_equal(threaded, sequential)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("close", np.nan, "'close' has NaN or infinite values in 1 rows"),
        ("volume", np.inf, "'volume' has NaN or infinite values in 1 rows"),
        ("low", -1.0, "'low' must be > 0"),
        ("volume", -5.0, "'volume' must be >= 0"),
        ("high", 1e-3, "high < low"),
    ],
)
def test_compute_features_when_bad_value_then_feature_input_error_names_it(
    spx, column, value, message
):
    # Arrange
    bars = spx.iloc[:300].copy()
    bars.loc[123, column] = value
    # Act / Assert
    with pytest.raises(FeatureInputError, match=message):
        compute_features(bars)


def test_compute_features_when_symbol_column_all_missing_then_one_symbol(spx):
    # Arrange: unique() of an all-NaN column is one value, as before the fast symbol check.
    bars = spx.iloc[:300].copy()
    bars["symbol"] = np.nan
    # Act
    feats = compute_features(bars)
    # Assert
    assert len(feats) == 300


def test_compute_features_when_one_symbol_missing_then_feature_input_error(spx):
    # Arrange: a missing symbol beside a real one is two values, as unique() counts them.
    bars = spx.iloc[:300].copy()
    bars.loc[7, "symbol"] = None
    # Act / Assert
    with pytest.raises(FeatureInputError, match="one symbol"):
        compute_features(bars)
