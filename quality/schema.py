"""The canonical bar schema: the one definition of what a stored bar looks like.

A bar is identified by (symbol, timeframe, ts); ts is the bar's open time in UTC and the bar is
final when the next one opens. Every store, source and feature function speaks this schema.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import pandas as pd
import pyarrow as pa

__all__ = [
    "BAR_COLUMNS",
    "BAR_KEY",
    "BAR_SCHEMA",
    "PRICE_COLUMNS",
    "QUARANTINE_COLUMNS",
    "QUARANTINE_KEY",
    "QUARANTINE_SCHEMA",
    "TIMEFRAMES",
    "UnknownTimeframeError",
    "empty_bars",
    "timeframe_to_timedelta",
    "to_canonical_frame",
]

BAR_SCHEMA: Final = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),  # instrument id, e.g. "SPX", "BTCUSDT"
        pa.field("timeframe", pa.string(), nullable=False),  # one of TIMEFRAMES
        pa.field("ts", pa.timestamp("ns", tz="UTC"), nullable=False),  # bar open time, UTC
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),  # units traded in the bar, >= 0
        pa.field("source", pa.string(), nullable=False),  # where the bar came from
        pa.field("ingested_at", pa.timestamp("ns", tz="UTC"), nullable=False),  # when stored
    ]
)
BAR_COLUMNS: Final = tuple(BAR_SCHEMA.names)
BAR_KEY: Final = ("symbol", "timeframe", "ts")
PRICE_COLUMNS: Final = ("open", "high", "low", "close")

# A row that failed the data contract, kept with the reason so nothing is ever silently dropped.
# The raw values are kept as text because a quarantined row may not parse at all.
QUARANTINE_SCHEMA: Final = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("timeframe", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("ns", tz="UTC"), nullable=True),  # null when unparseable
        pa.field("raw", pa.string(), nullable=False),  # the row as received, JSON object text
        pa.field("row_fingerprint", pa.string(), nullable=False),  # sha256 of source + raw
        pa.field("reason", pa.string(), nullable=False),  # a quality.ReasonCode value
        pa.field("detail", pa.string(), nullable=False),  # human-readable explanation
        pa.field("source", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),  # the ingest run that saw it
        pa.field("quarantined_at", pa.timestamp("ns", tz="UTC"), nullable=False),
    ]
)
QUARANTINE_COLUMNS: Final = tuple(QUARANTINE_SCHEMA.names)
# Re-ingesting the same bad row for the same reason is idempotent.
QUARANTINE_KEY: Final = ("symbol", "timeframe", "source", "row_fingerprint", "reason")

# Timeframe code -> bar length. Codes are what users type and what stores partition by.
TIMEFRAMES: Final = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
    "1w": timedelta(weeks=1),
}


class UnknownTimeframeError(ValueError):
    """A timeframe code that is not one of TIMEFRAMES."""


def timeframe_to_timedelta(timeframe: str) -> timedelta:
    """Return the bar length of a timeframe code, or raise UnknownTimeframeError."""
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        msg = f"unknown timeframe {timeframe!r}; use one of {', '.join(TIMEFRAMES)}"
        raise UnknownTimeframeError(msg) from None


def empty_bars() -> pd.DataFrame:
    """An empty frame with the canonical columns and dtypes."""
    return to_canonical_frame(BAR_SCHEMA.empty_table().to_pandas())


def to_canonical_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of `frame` with exactly the canonical columns, in order, with canonical dtypes.

    Raises ValueError naming the missing columns. Timestamps must already be tz-aware; naive
    ones are rejected rather than guessed.
    """
    missing = [c for c in BAR_COLUMNS if c not in frame.columns]
    if missing:
        msg = f"bar frame is missing columns: {', '.join(missing)}"
        raise ValueError(msg)
    out = frame.loc[:, list(BAR_COLUMNS)].copy()
    for col in ("ts", "ingested_at"):
        series = out[col]
        if not isinstance(series.dtype, pd.DatetimeTZDtype):
            msg = f"column {col!r} must hold tz-aware timestamps, got dtype {series.dtype}"
            raise ValueError(msg)
        out[col] = series.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    for col in (*PRICE_COLUMNS, "volume"):
        out[col] = out[col].astype("float64")
    for col in ("symbol", "timeframe", "source"):
        out[col] = out[col].astype("string").astype(object)
    return out.reset_index(drop=True)
