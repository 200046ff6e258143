"""Bars for the ML tests: real S&P 500 daily bars (bundled with arch) and synthetic OHLCV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from arch.data import sp500


def sp500_bars() -> pd.DataFrame:
    """The S&P 500 index, daily 1999-2018, as canonical-looking bars (5031 rows)."""
    raw = sp500.load()
    return pd.DataFrame(
        {
            "symbol": "SPX",
            "timeframe": "1d",
            "ts": pd.DatetimeIndex(raw.index).tz_localize("UTC").as_unit("ns"),
            "open": raw["Open"].to_numpy(np.float64),
            "high": raw["High"].to_numpy(np.float64),
            "low": raw["Low"].to_numpy(np.float64),
            "close": raw["Close"].to_numpy(np.float64),
            "volume": raw["Volume"].to_numpy(np.float64),
        }
    )


def synthetic_bars(n: int, seed: int, vol: float = 0.01, start: str = "2024-01-01") -> pd.DataFrame:
    """A geometric random walk with consistent OHLC and lognormal volume, hourly bars."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    wick = np.abs(rng.normal(0.0, vol / 2, (2, n)))
    high = np.maximum(open_, close) * (1.0 + wick[0])
    low = np.minimum(open_, close) * (1.0 - wick[1])
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=n, freq="1h", tz="UTC"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.lognormal(10.0, 0.4, n),
        }
    )


@pytest.fixture(scope="session")
def spx() -> pd.DataFrame:
    return sp500_bars()
