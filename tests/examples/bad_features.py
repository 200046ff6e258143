"""User feature functions that must be refused: by the load-time check or the asset check."""

from __future__ import annotations

import pandas as pd


def peek_next_close(bars: pd.DataFrame) -> pd.DataFrame:
    """Look-ahead: row t reads the close of bar t + 1."""
    return pd.DataFrame({"next_ret": bars["close"].shift(-1) / bars["close"] - 1.0})


def expanding_mean(bars: pd.DataFrame) -> pd.DataFrame:
    """Causal, but reads the whole history: a live buffer cannot give the same values."""
    return pd.DataFrame({"close_vs_mean": bars["close"] / bars["close"].expanding().mean()})


def clashing(bars: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"rsi_14": bars["close"] * 0.0})


def wrong_index(bars: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"x": bars["close"].to_numpy()[1:]})


NOT_CALLABLE = 3
