"""Synthetic bars and predictions for the execution tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_bars(
    n: int, symbols: tuple[str, ...] = ("AAA",), seed: int = 0, freq: str = "1h"
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2021-01-04", periods=n, freq=freq, tz="UTC")
    frames = []
    for sym in symbols:
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
        open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0.0, 0.002, n))
        high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.003, n)))
        low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.003, n)))
        volume = rng.uniform(50.0, 500.0, n)
        frames.append(
            pd.DataFrame(
                {
                    "symbol": sym,
                    "timeframe": "1h",
                    "ts": ts,
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": volume,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def random_predictions(bars: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([1.0, 1.0, 1.0], len(bars))
    return pd.DataFrame(
        {
            "symbol": bars["symbol"],
            "ts": bars["ts"],
            "p_down": p[:, 0],
            "p_flat": p[:, 1],
            "p_up": p[:, 2],
        }
    )


def sma_predictions(bars: pd.DataFrame, fast: int = 5, slow: int = 20) -> pd.DataFrame:
    """Up (0.8) while the fast SMA of closes is above the slow one, else flat (0.8)."""
    out = []
    for _, g in bars.groupby("symbol", sort=False):
        close = g["close"]
        up = (close.rolling(fast).mean() > close.rolling(slow).mean()).to_numpy()
        p_up = np.where(up, 0.8, 0.1)
        p_flat = np.where(up, 0.1, 0.8)
        out.append(
            pd.DataFrame(
                {
                    "symbol": g["symbol"],
                    "ts": g["ts"],
                    "p_down": 0.1,
                    "p_flat": p_flat,
                    "p_up": p_up,
                }
            )
        )
    return pd.concat(out, ignore_index=True)
