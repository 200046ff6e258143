"""ml._kernels' TA-Lib recurrences (SMA, EMA, MACD, RSI, ATR, ADX) of features and online."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from ml import _kernels
from tests.ml.conftest import synthetic_bars

TOL = 1e-9
PERIODS = (2, 5, 14, 26, 50, 200)


def _series(name: str, spx):
    if name == "spx":
        return spx
    n, vol = {"walk": (200_000, 1e-3), "flat": (100_000, 2e-5)}[name]
    return synthetic_bars(n, seed=7, vol=vol)


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))  # the same warm-up rows
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL, equal_nan=True)


@pytest.mark.parametrize("name", ["spx", "walk", "flat"])
def test_recurrences_when_run_over_long_series_then_equal_talib(name, spx):
    # Arrange: the S&P 500 daily bars and long synthetic walks (one near-flat, FX-like)
    bars = _series(name, spx)
    h, lo, c = (bars[k].to_numpy(np.float64) for k in ("high", "low", "close"))
    for p in PERIODS:
        # Act / Assert
        _assert_close(_kernels.sma(c, p), talib.SMA(c, timeperiod=p))
        _assert_close(_kernels.ema(c, p), talib.EMA(c, timeperiod=p))
        _assert_close(_kernels.rsi(c, p), talib.RSI(c, timeperiod=p))
        _assert_close(_kernels.atr(h, lo, c, p), talib.ATR(h, lo, c, timeperiod=p))
        _assert_close(_kernels.adx(h, lo, c, p), talib.ADX(h, lo, c, timeperiod=p))
    for fast, slow, sig in [(12, 26, 9), (3, 10, 16), (2, 3, 2), (50, 200, 1)]:
        got = _kernels.macd(c, fast, slow, sig)
        want = talib.MACD(c, fastperiod=fast, slowperiod=slow, signalperiod=sig)
        for g, w in zip(got, want, strict=True):
            _assert_close(g, w)


@pytest.mark.parametrize("n", [1, 13, 14, 15, 27, 28, 29, 33, 34, 35])
def test_recurrences_when_series_shorter_than_period_then_nan_as_talib(n):
    # Arrange
    bars = synthetic_bars(n, seed=2)
    h, lo, c = (bars[k].to_numpy(np.float64) for k in ("high", "low", "close"))
    # Act / Assert
    _assert_close(_kernels.sma(c, 14), talib.SMA(c, timeperiod=14))
    _assert_close(_kernels.ema(c, 14), talib.EMA(c, timeperiod=14))
    _assert_close(_kernels.rsi(c, 14), talib.RSI(c, timeperiod=14))
    _assert_close(_kernels.atr(h, lo, c, 14), talib.ATR(h, lo, c, timeperiod=14))
    _assert_close(_kernels.adx(h, lo, c, 14), talib.ADX(h, lo, c, timeperiod=14))
    for g, w in zip(_kernels.macd(c, 12, 26, 9), talib.MACD(c, 12, 26, 9), strict=True):
        _assert_close(g, w)


@pytest.mark.parametrize("at", [None, 0, 7, 49])
def test_has_nan_when_row_scanned_then_equals_numpy(at):
    row = np.linspace(-1.0, 1.0, 50)
    if at is not None:
        row[at] = np.nan
    assert _kernels.has_nan(row) == bool(np.isnan(row).any())
