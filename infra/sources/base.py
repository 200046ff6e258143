"""What every source returns, and the errors a source may raise.

A source delivers bars exactly as it got them: it never drops or repairs a row. Values may still
be raw (strings, None, NaN); the data contract in `quality/` parses each row and quarantines the
bad ones with a reason, so that every row a source saw is accounted for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import pandas as pd

from quality.reasons import ReasonCode
from quality.schema import timeframe_to_timedelta

__all__ = [
    "INSTRUMENT_CLASSES",
    "RAW_COLUMNS",
    "RateLimitedError",
    "RawBars",
    "SourceAuthError",
    "SourceError",
    "SourceFormatError",
    "SourceRequestError",
    "SourceUnavailableError",
]

RAW_COLUMNS: Final = ("ts", "open", "high", "low", "close", "volume")
# The instrument class picks the trading calendar that gap checks compare against.
INSTRUMENT_CLASSES: Final = ("equity", "fx", "crypto")


class SourceError(Exception):
    """A source could not deliver bars."""


class SourceFormatError(SourceError):
    """The data arrived but does not have the expected shape (columns, payload keys)."""


class SourceUnavailableError(SourceError):
    """The data could not be reached: network failure, 5xx after retries, missing file or extra."""


class SourceAuthError(SourceError):
    """Credentials are missing or were refused."""


class SourceRequestError(SourceError):
    """The provider refused the request itself (HTTP 4xx other than auth and rate limits)."""


class RateLimitedError(SourceError):
    """The provider asked us to slow down and still did after the allowed retries."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # what the provider asked for, when it said


@dataclass(frozen=True, eq=False)  # eq=False: comparing frames elementwise has no truth value
class RawBars:
    """Bars as one source delivered them, before the data contract."""

    frame: pd.DataFrame  # exactly RAW_COLUMNS; ts UTC-aware where the source knows its zone
    symbol: str  # instrument id as candleflow names it, e.g. "SPX", "EURUSD", "BTCUSDT"
    timeframe: str  # one of quality.schema.TIMEFRAMES
    source: str  # short provenance, e.g. "bundled:arch.sp500", "file:/data/x.csv", "binance"
    instrument_class: str  # equity | fx | crypto: picks the calendar for gap checks
    # Rows the source already knows are faulty, by position in `frame`: (reason, detail), e.g.
    # a local time that a DST change skips. The data contract quarantines them as given.
    ts_faults: Mapping[int, tuple[ReasonCode, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if tuple(self.frame.columns) != RAW_COLUMNS:
            msg = (
                f"raw frame must have columns {list(RAW_COLUMNS)} in order, "
                f"got {list(self.frame.columns)}"
            )
            raise ValueError(msg)
        timeframe_to_timedelta(self.timeframe)
        if self.instrument_class not in INSTRUMENT_CLASSES:
            msg = (
                f"unknown instrument class {self.instrument_class!r}; "
                f"use one of {', '.join(INSTRUMENT_CLASSES)}"
            )
            raise ValueError(msg)
        if not self.symbol:
            msg = "symbol must be non-empty"
            raise ValueError(msg)

    def __len__(self) -> int:
        return len(self.frame)
