"""Supervised labels over bar frames. Each label declares its horizon so splitters can purge.

Classes are -1 (down), 0 (flat), +1 (up). Classifiers see them encoded as 0/1/2
(`CLASS_TO_INDEX`), which is also the column order [down, flat, up] of every predict_proba.
Rows whose label would need bars past the end of the frame (the last `horizon` rows) or a
volatility still in warm-up are NaN and flagged by `Labels.valid`; nothing is dropped.

A direction label measures the return a trade decided at bar t's close would earn under the
backtest's fill model (`LABEL_PRICES`): with next-open fills it runs open[t+1] -> open[t+1+h],
with next-close fills close[t+1] -> close[t+1+h]; "close" (close[t] -> close[t+h]) is the
decision-price return, for uses that trade no fills. The label at t then reads bars up to
t + h + 1, which is its `horizon` and what splitters must purge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from ml._bars import validated_bar_arrays
from ml.errors import LabelError, MLError

__all__ = [
    "CLASSES",
    "CLASS_TO_INDEX",
    "INDEX_TO_CLASS",
    "LABEL_PRICES",
    "Labels",
    "direction_labels",
    "encode_classes",
    "triple_barrier_labels",
]

CLASSES: tuple[int, int, int] = (-1, 0, 1)  # down, flat, up
CLASS_TO_INDEX: dict[int, int] = {-1: 0, 0: 1, 1: 2}
INDEX_TO_CLASS: dict[int, int] = {v: k for k, v in CLASS_TO_INDEX.items()}
# price a direction label's return is measured at -> (bar column, bars after t of the entry)
LABEL_PRICES: dict[str, tuple[str, int]] = {
    "next_open": ("open", 1),
    "next_close": ("close", 1),
    "close": ("close", 0),
}


def encode_classes(values: pd.Series | np.ndarray) -> np.ndarray:
    """Map -1/0/+1 class labels to 0/1/2; anything else raises LabelError."""
    arr = np.asarray(values, dtype=np.float64)
    out = np.full(arr.shape, -1, dtype=np.int64)
    for cls, idx in CLASS_TO_INDEX.items():
        out[arr == cls] = idx
    if (out < 0).any():
        bad = np.unique(arr[out < 0])[:5].tolist()
        msg = f"labels must be -1, 0 or +1 (NaN rows must be removed first), got {bad}"
        raise LabelError(msg)
    return out


@dataclass(frozen=True)
class Labels:
    """Labels of one symbol's bars, indexed by bar ts like the feature frame."""

    values: pd.Series  # -1.0 / 0.0 / +1.0, NaN where no label is defined
    forward_return: pd.Series  # log return the label was read from, NaN where undefined
    threshold: pd.Series  # dead zone (direction) or barrier width (triple barrier), in log return
    horizon: int  # bars after t the label at t may read; splitters purge at least this many
    kind: str  # "direction" or "triple_barrier"
    fill: str = "close"  # price the return is measured at, a LABEL_PRICES key

    @property
    def valid(self) -> pd.Series:
        """True where a label exists."""
        return self.values.notna()

    def encoded(self) -> pd.Series:
        """The valid labels encoded 0/1/2 (down/flat/up), as int64."""
        valid = self.values[self.valid]
        return pd.Series(encode_classes(valid), index=valid.index, name="label")


def _rolling_vol(log_close: np.ndarray, window: int) -> np.ndarray:
    """Population std of 1-bar log returns over the last `window` returns, known at t."""
    returns = pd.Series(np.diff(log_close, prepend=np.nan))
    return returns.rolling(window, min_periods=window).std(ddof=0).to_numpy()


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        bound = ">= 0" if allow_zero else "> 0"
        msg = f"{name} must be finite and {bound}, got {value!r}"
        raise LabelError(msg)


def direction_labels(
    bars: pd.DataFrame,
    horizon: int = 1,
    *,
    k: float = 0.5,
    vol_window: int = 20,
    round_trip_cost: float = 0.0,
    fill: str = "close",
) -> Labels:
    """Up / flat / down by the log return over `horizon` bars of a trade decided at t's close.

    `fill` picks the prices (see LABEL_PRICES and the module docstring): "next_open" reads
    open[t+1] -> open[t+1+horizon], "next_close" close[t+1] -> close[t+1+horizon], "close"
    close[t] -> close[t+horizon]. Labels.horizon is the last bar read: horizon (+1 for next-bar
    fills).

    The dead zone at t is max(k * vol[t] * sqrt(horizon), round_trip_cost), where vol[t] is the
    std of 1-bar log returns over the `vol_window` bars ending at t (known at t) and
    round_trip_cost is the cost of entering and leaving, as a log return (e.g. 2 * (fee + half
    spread)). A move inside the dead zone is flat: it would not pay for the trade.
    """
    if not isinstance(horizon, (int, np.integer)) or horizon < 1:
        msg = f"horizon must be an int >= 1, got {horizon!r}"
        raise LabelError(msg)
    _check_positive("k", k, allow_zero=True)
    _check_positive("round_trip_cost", round_trip_cost, allow_zero=True)
    if vol_window < 2:
        msg = f"vol_window must be >= 2, got {vol_window}"
        raise LabelError(msg)
    if fill not in LABEL_PRICES:
        msg = f"fill must be one of {sorted(LABEL_PRICES)}, got {fill!r}"
        raise LabelError(msg)
    try:
        index, arrays = validated_bar_arrays(bars)
    except MLError as exc:
        raise LabelError(str(exc)) from exc
    lc = np.log(arrays["close"])
    column, lag = LABEL_PRICES[fill]
    lp = np.log(arrays[column])
    n = len(lc)
    reach = int(horizon) + lag  # last bar after t that the label reads
    fwd = np.full(n, np.nan)
    if n > reach:
        fwd[: n - reach] = lp[reach:] - lp[lag : n - horizon]
    if k > 0:
        threshold = np.maximum(
            k * _rolling_vol(lc, vol_window) * math.sqrt(horizon), round_trip_cost
        )
    else:
        threshold = np.full(n, float(round_trip_cost))
    values = np.where(fwd > threshold, 1.0, np.where(fwd < -threshold, -1.0, 0.0))
    values[np.isnan(fwd) | np.isnan(threshold)] = np.nan
    return Labels(
        values=pd.Series(values, index=index, name="label"),
        forward_return=pd.Series(fwd, index=index, name="forward_return"),
        threshold=pd.Series(threshold, index=index, name="threshold"),
        horizon=reach,
        kind="direction",
        fill=fill,
    )


@njit(cache=True)
def _barrier_scan(close, high, low, upper, lower, max_holding):  # pragma: no cover - jitted
    n = close.shape[0]
    label = np.full(n, np.nan)
    fwd = np.full(n, np.nan)
    for t in range(n - max_holding):
        if math.isnan(upper[t]):
            continue
        hit = 0.0
        exit_at = t + max_holding
        for j in range(t + 1, t + max_holding + 1):
            up = high[j] >= upper[t]
            down = low[j] <= lower[t]
            if down:  # both touched in one bar: assume the stop came first (conservative)
                hit = -1.0
                exit_at = j
                break
            if up:
                hit = 1.0
                exit_at = j
                break
        label[t] = hit
        fwd[t] = math.log(close[exit_at] / close[t])
    return label, fwd


def triple_barrier_labels(
    bars: pd.DataFrame,
    pt: float = 1.0,
    sl: float = 1.0,
    max_holding: int = 10,
    *,
    vol_window: int = 20,
) -> Labels:
    """Triple-barrier labels (Lopez de Prado): which of take-profit, stop-loss or time comes first.

    From the close at t, the upper barrier is close * exp(pt * vol[t]) and the lower one is
    close * exp(-sl * vol[t]), vol[t] as in `direction_labels`. Bars t+1 .. t+max_holding are
    scanned with their high and low: +1 if the upper barrier is touched first, -1 for the lower
    (also when one bar touches both), 0 if neither is touched within max_holding bars.
    `forward_return` is the log return to the close of the exit bar. horizon = max_holding.
    """
    _check_positive("pt", pt)
    _check_positive("sl", sl)
    if not isinstance(max_holding, (int, np.integer)) or max_holding < 1:
        msg = f"max_holding must be an int >= 1, got {max_holding!r}"
        raise LabelError(msg)
    try:
        index, arrays = validated_bar_arrays(bars)
    except MLError as exc:
        raise LabelError(str(exc)) from exc
    close = arrays["close"]
    vol = _rolling_vol(np.log(close), vol_window)
    upper = close * np.exp(pt * vol)
    lower = close * np.exp(-sl * vol)
    label, fwd = _barrier_scan(close, arrays["high"], arrays["low"], upper, lower, int(max_holding))
    return Labels(
        values=pd.Series(label, index=index, name="label"),
        forward_return=pd.Series(fwd, index=index, name="forward_return"),
        threshold=pd.Series(pt * vol, index=index, name="threshold"),
        horizon=int(max_holding),
        kind="triple_barrier",
    )
