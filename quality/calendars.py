"""When bars are expected: the timeframe grid and the trading session per instrument class.

Grid: a bar's open time is a whole number of bar lengths after an origin. The origin is the
Unix epoch (1970-01-01 00:00 UTC) for every timeframe up to 1d, so daily bars open at 00:00 UTC,
and Monday 1970-01-05 00:00 UTC for 1w, so weekly bars open on Mondays.

Sessions (a bar is expected when its open time falls inside the session):
- crypto: 24x7.
- fx: 24x5, from Sunday 17:00 to Friday 17:00 New York time, so the boundary follows daylight
  saving: 22:00 UTC in northern winter, 21:00 UTC in summer.
- equity: daily bars on the sessions of the exchange (default XNYS, the New York Stock
  Exchange), holidays and special closures included, from the maintained `exchange_calendars`
  package; weekly bars on every Monday (a week with a Monday holiday still has its bar).
  Intraday equity bars need exchange session hours on the bar grid, which are not modelled:
  asking for them raises UnsupportedCalendarError. Equity gaps stay a WARNING, never an error.

Gap reports compare the bars present with the bars expected between the first and the last bar
present; nothing is expected outside the data's own span.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Final, NamedTuple

import numpy as np
import pandas as pd

from quality.errors import UnknownInstrumentClassError, UnsupportedCalendarError
from quality.schema import timeframe_to_timedelta

__all__ = [
    "DEFAULT_EXCHANGE",
    "INSTRUMENT_CLASSES",
    "Gap",
    "check_instrument_class",
    "expected_timestamps",
    "find_gaps",
    "grid_origin",
    "is_on_grid",
]

INSTRUMENT_CLASSES: Final = ("equity", "fx", "crypto")

_EPOCH: Final = pd.Timestamp("1970-01-01", tz="UTC")
_FIRST_MONDAY: Final = pd.Timestamp("1970-01-05", tz="UTC")
_FX_ZONE: Final = "America/New_York"
_FX_BOUNDARY: Final = timedelta(hours=17)  # Sunday open and Friday close, New York wall time
DEFAULT_EXCHANGE: Final = "XNYS"  # exchange_calendars code of the equity calendar by default
_DAY: Final = timedelta(days=1)


class Gap(NamedTuple):
    """A run of consecutive expected bars that are missing."""

    start: pd.Timestamp  # open time of the first missing bar, UTC
    end: pd.Timestamp  # open time of the last missing bar, UTC (== start for a one-bar gap)
    missing_bars: int  # how many expected bars the run holds


def check_instrument_class(instrument_class: str) -> str:
    """Return `instrument_class` if known, else raise UnknownInstrumentClassError."""
    if instrument_class not in INSTRUMENT_CLASSES:
        msg = (
            f"unknown instrument class {instrument_class!r}; "
            f"use one of {', '.join(INSTRUMENT_CLASSES)}"
        )
        raise UnknownInstrumentClassError(msg)
    return instrument_class


def grid_origin(timeframe: str) -> pd.Timestamp:
    """The UTC instant every bar open time of `timeframe` is a whole number of bars after."""
    return _FIRST_MONDAY if timeframe_to_timedelta(timeframe) >= timedelta(weeks=1) else _EPOCH


def is_on_grid(ts: pd.Series | pd.DatetimeIndex, timeframe: str) -> np.ndarray:
    """Boolean array: which tz-aware timestamps lie on the timeframe grid (NaT is False)."""
    step = timeframe_to_timedelta(timeframe) // timedelta(microseconds=1) * 1000
    origin = grid_origin(timeframe).value
    index = pd.DatetimeIndex(ts)
    ns = np.asarray(index.as_unit("ns").asi8)
    return ~np.asarray(index.isna()) & ((ns - origin) % step == 0)


@lru_cache(maxsize=16)
def _exchange_sessions(exchange: str, first_year: int, last_year: int) -> Any:
    """Session dates (naive, midnight) of `exchange` for whole years; cached since building a
    calendar costs about a second."""
    import exchange_calendars as xcals

    try:
        with warnings.catch_warnings():
            # exchange_calendars still reads Series.values, which pandas 3.1 deprecates.
            warnings.simplefilter("ignore", pd.errors.Pandas4Warning)
            calendar = xcals.get_calendar(
                exchange, start=f"{first_year}-01-01", end=f"{last_year}-12-31"
            )
    except xcals.errors.InvalidCalendarName:
        msg = f"unknown exchange calendar {exchange!r}; use an exchange_calendars code (XNYS)"
        raise UnsupportedCalendarError(msg) from None
    return calendar.sessions.as_unit("ns")


def _in_session(
    index: pd.DatetimeIndex, instrument_class: str, timeframe: str, exchange: str
) -> np.ndarray:
    if instrument_class == "crypto":
        return np.ones(len(index), dtype=bool)
    if instrument_class == "equity":
        if timeframe_to_timedelta(timeframe) < _DAY:
            msg = (
                f"no intraday equity calendar for timeframe {timeframe!r}: exchange session "
                "hours are not modelled; gaps can be computed for equity 1d and 1w only"
            )
            raise UnsupportedCalendarError(msg)
        if timeframe_to_timedelta(timeframe) >= timedelta(weeks=1) or len(index) == 0:
            return np.asarray(index.day_of_week) < 5
        sessions = _exchange_sessions(exchange, int(index.year.min()), int(index.year.max()))
        return np.asarray(index.tz_localize(None).normalize().isin(sessions))
    local = index.tz_convert(_FX_ZONE)
    weekday = np.asarray(local.day_of_week)  # Monday == 0
    time_of_day = np.asarray(local.tz_localize(None) - local.tz_localize(None).normalize())
    before_close = time_of_day < np.timedelta64(_FX_BOUNDARY)
    # Open all of Monday..Thursday, Friday until 17:00, Sunday from 17:00, never Saturday.
    return (weekday < 4) | ((weekday == 4) & before_close) | ((weekday == 6) & ~before_close)


def expected_timestamps(
    instrument_class: str,
    timeframe: str,
    start: datetime,
    end: datetime,
    *,
    exchange: str = DEFAULT_EXCHANGE,
) -> pd.DatetimeIndex:
    """Bar open times expected in [start, end] (both inclusive) for the class and timeframe;
    `exchange` (an exchange_calendars code) picks the equity holidays.

    Raises UnsupportedCalendarError for intraday equity and unknown exchanges,
    UnknownInstrumentClassError and UnknownTimeframeError for unknown codes, ValueError for
    naive bounds.
    """
    check_instrument_class(instrument_class)
    step = timeframe_to_timedelta(timeframe)
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    if first.tzinfo is None or last.tzinfo is None:
        msg = "start and end must be tz-aware; naive times are refused, not guessed"
        raise ValueError(msg)
    origin = grid_origin(timeframe)
    first = first.tz_convert("UTC")
    # Round the start up onto the grid so the range only holds grid points.
    offset = (first - origin) % step
    if offset:
        first = first + (step - offset)
    index = pd.date_range(first, last.tz_convert("UTC"), freq=step).as_unit("ns")
    return index[_in_session(index, instrument_class, timeframe, exchange)]


def find_gaps(
    ts: pd.Series | pd.DatetimeIndex,
    instrument_class: str,
    timeframe: str,
    *,
    exchange: str = DEFAULT_EXCHANGE,
) -> tuple[Gap, ...]:
    """Runs of expected bars missing from `ts`, between its first and last timestamp.

    `ts` holds tz-aware bar open times (order and duplicates do not matter). Raises
    UnsupportedCalendarError where no calendar exists (intraday equity).
    """
    present = pd.DatetimeIndex(ts).dropna()
    check_instrument_class(instrument_class)
    timeframe_to_timedelta(timeframe)
    if len(present) == 0:
        # Still refuse unsupported calendars, so callers learn it on the first run.
        _in_session(pd.DatetimeIndex([], tz="UTC"), instrument_class, timeframe, exchange)
        return ()
    present = present.tz_convert("UTC").as_unit("ns")
    expected = expected_timestamps(
        instrument_class, timeframe, present.min(), present.max(), exchange=exchange
    )
    missing_pos = np.flatnonzero(~expected.isin(present))
    if missing_pos.size == 0:
        return ()
    # A new run starts wherever a missing position is not the successor of the previous one.
    breaks = np.flatnonzero(np.diff(missing_pos) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks - 1, [missing_pos.size - 1]))
    return tuple(
        Gap(
            start=expected[missing_pos[s]],
            end=expected[missing_pos[e]],
            missing_bars=int(e - s + 1),
        )
        for s, e in zip(starts, ends, strict=True)
    )
