"""When bars are expected: the timeframe grid and the trading session per instrument class.

Grid: a bar's open time is a whole number of bar lengths after an origin. The origin is the
Unix epoch (1970-01-01 00:00 UTC) for every timeframe up to 1d, so daily bars open at 00:00 UTC,
and Monday 1970-01-05 00:00 UTC for 1w, so weekly bars open on Mondays.

Sessions (a bar is expected when its open time falls inside the session):
- crypto: 24x7.
- fx: 24x5, open from Sunday 22:00 UTC to Friday 22:00 UTC. The real market follows New York
  17:00, which is 21:00 UTC in northern summer; the fixed 22:00 boundary means a summer Sunday
  21:00 bar is not expected (it is still accepted if present: calendars only feed gap reports).
- equity: daily and weekly bars on business days Monday to Friday. There is no holiday list, so
  exchange holidays appear as one-bar gaps: equity gaps are a WARNING, never an error. Intraday
  equity bars need exchange session hours, which are not modelled: asking for them raises
  UnsupportedCalendarError.

Gap reports compare the bars present with the bars expected between the first and the last bar
present; nothing is expected outside the data's own span.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, NamedTuple

import numpy as np
import pandas as pd

from quality.errors import UnknownInstrumentClassError, UnsupportedCalendarError
from quality.schema import timeframe_to_timedelta

__all__ = [
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
_FX_BOUNDARY: Final = timedelta(hours=22)  # Sunday open and Friday close, UTC
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


def _in_session(index: pd.DatetimeIndex, instrument_class: str, timeframe: str) -> np.ndarray:
    if instrument_class == "crypto":
        return np.ones(len(index), dtype=bool)
    weekday = np.asarray(index.day_of_week)  # Monday == 0
    if instrument_class == "equity":
        if timeframe_to_timedelta(timeframe) < _DAY:
            msg = (
                f"no intraday equity calendar for timeframe {timeframe!r}: exchange session "
                "hours are not modelled; gaps can be computed for equity 1d and 1w only"
            )
            raise UnsupportedCalendarError(msg)
        return weekday < 5
    time_of_day = np.asarray(index - index.normalize())
    before_close = time_of_day < np.timedelta64(_FX_BOUNDARY)
    # Open all of Monday..Thursday, Friday until 22:00, Sunday from 22:00, never Saturday.
    return (weekday < 4) | ((weekday == 4) & before_close) | ((weekday == 6) & ~before_close)


def expected_timestamps(
    instrument_class: str, timeframe: str, start: datetime, end: datetime
) -> pd.DatetimeIndex:
    """Bar open times expected in [start, end] (both inclusive) for the class and timeframe.

    Raises UnsupportedCalendarError for intraday equity, UnknownInstrumentClassError and
    UnknownTimeframeError for unknown codes, ValueError for naive bounds.
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
    return index[_in_session(index, instrument_class, timeframe)]


def find_gaps(
    ts: pd.Series | pd.DatetimeIndex, instrument_class: str, timeframe: str
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
        _in_session(pd.DatetimeIndex([], tz="UTC"), instrument_class, timeframe)
        return ()
    present = present.tz_convert("UTC").as_unit("ns")
    expected = expected_timestamps(instrument_class, timeframe, present.min(), present.max())
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
