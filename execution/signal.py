"""What the execution core consumes: closed bars and model predictions, as frozen values."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from execution.domain import _require_utc

__all__ = ["Bar", "Prediction", "bars_from_frame", "predictions_from_frame"]

_PROBA_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class Prediction:
    symbol: str
    ts: datetime  # open ts of the bar whose close produced the prediction, UTC
    p_down: float  # probability of the down class
    p_flat: float
    p_up: float
    model: str = ""  # name or registry version of the model that made it

    def __post_init__(self) -> None:
        _require_utc(self.ts, "prediction ts")
        probs = (self.p_down, self.p_flat, self.p_up)
        if not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in probs):
            msg = f"prediction probabilities must be in [0, 1], got {probs}"
            raise ValueError(msg)
        if abs(sum(probs) - 1.0) > _PROBA_TOLERANCE:
            msg = f"prediction probabilities must sum to 1, got {sum(probs)!r}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class Bar:
    symbol: str
    timeframe: str  # timeframe code, e.g. "1d"; "" when unknown
    ts: datetime  # bar open time, UTC; the bar is final at the next bar's open
    open: float
    high: float
    low: float
    close: float
    volume: float  # units traded in the bar; 0 where the venue reports none (FX)


_BAR_NEEDED = ("symbol", "ts", "open", "high", "low", "close", "volume")


def _utc_datetimes(ts: pd.Series) -> list[datetime]:
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        msg = f"column 'ts' must hold tz-aware timestamps, got dtype {ts.dtype}"
        raise ValueError(msg)
    return list(ts.dt.tz_convert("UTC").dt.to_pydatetime())


def bars_from_frame(frame: pd.DataFrame) -> list[Bar]:
    """Bars of a canonical bar frame, ordered by (ts, symbol); the frame is not modified."""
    missing = [c for c in _BAR_NEEDED if c not in frame.columns]
    if missing:
        msg = f"bar frame is missing columns: {', '.join(missing)}"
        raise ValueError(msg)
    ordered = frame.sort_values(["ts", "symbol"], kind="stable")
    times = _utc_datetimes(ordered["ts"])
    tf = (
        ordered["timeframe"].astype(str).tolist()
        if "timeframe" in ordered.columns
        else [""] * len(ordered)
    )
    cols = [ordered[c].to_numpy(dtype=np.float64).tolist() for c in _BAR_NEEDED[2:]]
    return [
        Bar(s, t, ts, o, h, lo, c, v)
        for s, t, ts, o, h, lo, c, v in zip(
            ordered["symbol"].astype(str).tolist(), tf, times, *cols, strict=True
        )
    ]


def predictions_from_frame(frame: pd.DataFrame) -> list[Prediction]:
    """Predictions of a frame with columns symbol, ts, p_down, p_flat, p_up (and optional model)."""
    needed = ("symbol", "ts", "p_down", "p_flat", "p_up")
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        msg = f"prediction frame is missing columns: {', '.join(missing)}"
        raise ValueError(msg)
    times = _utc_datetimes(frame["ts"])
    models = frame["model"].astype(str).tolist() if "model" in frame.columns else [""] * len(frame)
    probs = [frame[c].to_numpy(dtype=np.float64).tolist() for c in needed[2:]]
    return [
        Prediction(s, ts, d, f, u, m)
        for s, ts, d, f, u, m in zip(
            frame["symbol"].astype(str).tolist(), times, *probs, models, strict=True
        )
    ]
