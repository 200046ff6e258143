"""Validation of one symbol's bar frame into the float arrays the feature and label code reads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml._kernels import bars_look_valid
from ml.errors import FeatureInputError

__all__ = ["OHLCV", "validated_bar_arrays"]

OHLCV = ("open", "high", "low", "close", "volume")


def validated_bar_arrays(bars: pd.DataFrame) -> tuple[pd.DatetimeIndex, dict[str, np.ndarray]]:
    """The bars' UTC ts index and contiguous float64 OHLCV arrays (views where possible).

    Raises FeatureInputError for a missing column, naive or unsorted timestamps, several symbols,
    non-finite values, non-positive prices, negative volume or high < low.
    """
    if not isinstance(bars, pd.DataFrame):
        msg = f"bars must be a pandas DataFrame, got {type(bars).__name__}"
        raise FeatureInputError(msg)
    missing = [col for col in OHLCV if col not in bars.columns]
    if missing:
        msg = f"bars are missing columns: {', '.join(missing)}"
        raise FeatureInputError(msg)
    if "ts" in bars.columns:
        index = pd.DatetimeIndex(bars["ts"], name="ts")
    elif isinstance(bars.index, pd.DatetimeIndex):
        index = pd.DatetimeIndex(bars.index, name="ts")
    else:
        msg = "bars need a 'ts' column or a DatetimeIndex"
        raise FeatureInputError(msg)
    if index.tz is None:
        msg = "bar timestamps must be tz-aware (UTC); got naive timestamps"
        raise FeatureInputError(msg)
    index = index.tz_convert("UTC")
    arrays = {col: np.ascontiguousarray(bars[col].to_numpy(dtype=np.float64)) for col in OHLCV}
    # One fused pass decides; only a frame that fails it pays for the checks that name the fault.
    valid = bars_look_valid(np.asarray(index.asi8), *arrays.values())
    if not valid and len(index) > 1 and not (index[1:] > index[:-1]).all():
        msg = "bars must be sorted by ts with unique timestamps"
        raise FeatureInputError(msg)
    if "symbol" in bars.columns and len(bars) > 0:
        symbol = bars["symbol"]
        # A vectorised compare is far cheaper than unique() on a long frame; unique() decides
        # only when it fails (an all-NaN symbol column, say, is still one symbol).
        same = (symbol == symbol.iloc[0]).fillna(False).all()  # a missing symbol is not the same
        if not same and len(symbols := symbol.unique()) > 1:
            names = sorted(map(str, symbols))[:5]
            msg = f"compute_features takes one symbol at a time, got {names}"
            raise FeatureInputError(msg)
    if not valid:
        _check_values(arrays)
    return index, arrays


def _check_values(arrays: dict[str, np.ndarray]) -> None:
    """Raise FeatureInputError naming the first bad column of a frame that failed the fast pass."""
    for col, values in arrays.items():
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).sum())
            msg = f"column {col!r} has NaN or infinite values in {bad} rows"
            raise FeatureInputError(msg)
    for col in ("open", "high", "low", "close"):
        if (arrays[col] <= 0).any():
            msg = f"column {col!r} must be > 0 (features use log prices)"
            raise FeatureInputError(msg)
    if (arrays["volume"] < 0).any():
        msg = "column 'volume' must be >= 0"
        raise FeatureInputError(msg)
    if (arrays["high"] < arrays["low"]).any():
        msg = "high < low in some bars"
        raise FeatureInputError(msg)
