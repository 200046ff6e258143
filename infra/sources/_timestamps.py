"""Reading a file's time column: every row read the same, documented way, never a guess.

- ISO 8601 (2024-01-02, 2024-01-02T10:00:00+01:00) and year-first dates with dots or slashes
  (MetaTrader's 2024.01.02) are read as they are.
- Day-first or month-first dates (02.01.2024, 01/02/2024) are read in the one order that fits
  the whole column: a day above 12 anywhere settles it; when every day and month is at most 12,
  the order in which the stamps are in sequence settles it; otherwise the file is refused with
  one line asking for --dayfirst / --no-dayfirst or --date-format. `dayfirst` or `date_format`
  given by the caller always win.
- Daily and weekly bars are sessions, not instants: a stamp whose wall-clock time is midnight
  (a bare date, a date in the exchange's zone, or a stamp in the zone given by `tz`) becomes
  that session's bar at 00:00 UTC, the canonical daily stamp.
- Intraday stamps are instants: offsets are converted to UTC, naive ones are localised with
  `tz`. A file of naive intraday stamps without `tz` is refused, naming --tz. Local times that
  a DST change skips or repeats are quarantined (nonexistent_ts, ambiguous_ts) unless the
  column's order tells which of two repeated hours is meant.
- A stamp outside the nanosecond range (year 3000) is quarantined, not a crash.

Rows are never dropped: a row that cannot be read keeps its raw value and gets a fault (reason
and detail) that the data contract quarantines it with.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from infra.sources.base import SourceFormatError
from quality.reasons import ReasonCode
from quality.schema import timeframe_to_timedelta

__all__ = ["ParsedStamps", "parse_stamps"]

logger = logging.getLogger(__name__)

# Year first: 2024-01-02, 2024.01.02, 2024/1/2, followed by nothing or a time.
_YMD: Final = re.compile(r"^(\d{4})([./-])(\d{1,2})\2(\d{1,2})((?:[ T].*)?)$")
# Day or month first: 02.01.2024, 1/2/24, followed by nothing or a time.
_XYY: Final = re.compile(r"^(\d{1,2})([./-])(\d{1,2})\2(\d{4}|\d{2})((?:[ T].*)?)$")
# A UTC offset after a clock time (a bare date such as 2024-01-02 has none).
_OFFSET: Final = re.compile(
    r"(?P<clock>[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?) *"
    r"(?P<offset>[zZ]|[+-][0-9]{2}(?::?[0-9]{2})?)$"
)
_HAS_OFFSET: Final = _OFFSET.pattern.replace("(?P<clock>", "(?:").replace("(?P<offset>", "(?:")
_NS_MIN: Final = pd.Timestamp.min.tz_localize("UTC")
_NS_MAX: Final = pd.Timestamp.max.tz_localize("UTC")
_TIME_OPTIONS: Final = "--dayfirst, --no-dayfirst or --date-format (e.g. --date-format '%d.%m.%Y')"


@dataclass(frozen=True)
class ParsedStamps:
    """The ts column as the data contract receives it, and the rows it must quarantine."""

    # datetime64[ns, UTC] when every row was read; otherwise object: UTC Timestamps, naive
    # Timestamps (no zone known: the contract refuses them as naive_ts) and raw values.
    ts: pd.Series
    faults: dict[int, tuple[ReasonCode, str]]  # row position -> (reason, detail)


def parse_stamps(
    raw: pd.Series,
    *,
    timeframe: str,
    tz: str | None = None,
    date_format: str | None = None,
    dayfirst: bool | None = None,
    where: str = "file",
) -> ParsedStamps:
    """Read `raw` (one cell per row, any dtype) as bar open times; `where` names the file."""
    raw = raw.reset_index(drop=True)
    zone = _zone(tz, where)
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        aware = raw.dt.tz_convert("UTC").dt.as_unit("us")
        wall = raw.dt.tz_localize(None).dt.as_unit("us")
        has_offset = aware.notna().to_numpy()
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        wall = raw.dt.as_unit("us")
        aware = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
        has_offset = np.zeros(len(raw), dtype=bool)
    elif pd.api.types.is_object_dtype(raw.dtype) or pd.api.types.is_string_dtype(raw.dtype):
        wall, aware, has_offset = _read_text(raw, date_format, dayfirst, where)
    else:
        # Bare numbers (epoch seconds? milliseconds?) are not guessed: the contract refuses them.
        return ParsedStamps(raw.astype(object), {})
    return _to_utc(raw, wall, aware, has_offset, timeframe=timeframe, zone=zone, where=where)


def _zone(tz: str | None, where: str) -> ZoneInfo | None:
    if tz is None:
        return None
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        msg = f"{where}: unknown time zone {tz!r}; use an IANA name such as UTC or Europe/Berlin"
        raise SourceFormatError(msg) from None


def _read_text(
    raw: pd.Series, date_format: str | None, dayfirst: bool | None, where: str
) -> tuple[pd.Series, pd.Series, np.ndarray]:
    """(naive wall-clock stamps, UTC stamps of rows that carry an offset, which rows do)."""
    text = raw.astype(object).where(raw.notna())
    text = text.map(lambda v: v.strip() if isinstance(v, str) else (None if pd.isna(v) else v))
    text = text.astype(object).where(text.map(lambda v: isinstance(v, str) and v != ""))
    nat_utc = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    if date_format is not None:
        with_zone = "%z" in date_format or "%Z" in date_format
        parsed = pd.to_datetime(text, format=date_format, errors="coerce", utc=with_zone)
        parsed = parsed.dt.as_unit("us")
        if with_zone:
            return parsed.dt.tz_localize(None), parsed, parsed.notna().to_numpy()
        return parsed, nat_utc, np.zeros(len(raw), dtype=bool)
    strings = text.astype("string")
    iso = _normalise_dates(strings, dayfirst, where)
    has_offset = iso.str.contains(_HAS_OFFSET, regex=True).fillna(False).to_numpy(dtype=bool)
    clock = iso.str.replace(_OFFSET.pattern, r"\g<clock>", regex=True)
    wall = _to_datetime(clock.astype(object).where(clock.notna()))
    aware = nat_utc.copy()
    if has_offset.any():
        got = pd.to_datetime(
            iso[has_offset].astype(object), utc=True, format="ISO8601", errors="coerce"
        )
        aware[has_offset] = got.dt.as_unit("us")
    return wall, aware, has_offset


def _to_datetime(values: pd.Series) -> pd.Series:
    wall = pd.to_datetime(values, format="ISO8601", errors="coerce").dt.as_unit("us")
    # Month names ("2 Jan 2024", "Jan 2, 2024") carry no day/month ambiguity; digits-only
    # strings that are not ISO are never handed to a lenient parser.
    named = (
        values.notna()
        & wall.isna()
        & values.astype("string").str.contains(r"[A-Za-z]{3}", regex=True).fillna(False)
    )
    if named.any():
        for pos in np.flatnonzero(named.to_numpy(dtype=bool)):
            try:
                stamp = pd.Timestamp(values.iloc[pos])
            except (ValueError, TypeError, OverflowError):
                continue
            if stamp is not pd.NaT and stamp.tzinfo is None:
                wall.iloc[pos] = stamp
    return wall


def _normalise_dates(text: pd.Series, dayfirst: bool | None, where: str) -> pd.Series:
    """Rewrite year-first and day/month-first dates as ISO 8601; leave everything else."""
    out = text.copy()
    ymd = text.str.extract(_YMD.pattern)
    rewrite = ymd[0].notna() & (
        (ymd[1] != "-") | (ymd[2].str.len() == 1) | (ymd[3].str.len() == 1)
    )
    if rewrite.any():
        r = ymd[rewrite]
        out[rewrite] = r[0] + "-" + r[2].str.zfill(2) + "-" + r[3].str.zfill(2) + r[4]
    xyy = text.str.extract(_XYY.pattern)
    mask = xyy[0].notna() & ymd[0].isna()
    if not mask.any():
        return out
    m = xyy[mask]
    first, second = m[0].astype(int), m[2].astype(int)
    year = m[3].where(m[3].str.len() == 4, _century(m[3]))
    dayfirst = _day_month_order(first, second, year, m[4], text[mask], dayfirst, where)
    day, month = (m[0], m[2]) if dayfirst else (m[2], m[0])
    out[mask] = year + "-" + month.str.zfill(2) + "-" + day.str.zfill(2) + m[4]
    return out


def _century(yy: pd.Series) -> pd.Series:
    # The POSIX %y rule: 69-99 are 1969-1999, 00-68 are 2000-2068.
    number = pd.to_numeric(yy, errors="coerce").fillna(0).astype(int)
    return (number.where(number >= 69, number + 100) + 1900).astype(str).astype("string")


def _day_month_order(
    first: pd.Series,
    second: pd.Series,
    year: pd.Series,
    rest: pd.Series,
    examples: pd.Series,
    dayfirst: bool | None,
    where: str,
) -> bool:
    """True for day-first: the caller's choice, or the only order the whole column fits."""
    if dayfirst is not None:
        return dayfirst
    day_first_fits = bool((second <= 12).all() and (first <= 31).all())
    month_first_fits = bool((first <= 12).all() and (second <= 31).all())
    if day_first_fits != month_first_fits:
        logger.info(
            "%s: dates read %s (%r cannot be read the other way)",
            where,
            "day-first" if day_first_fits else "month-first",
            examples[(first > 12) if day_first_fits else (second > 12)].iloc[0],
        )
        return day_first_fits
    if not day_first_fits:
        a = examples[first > 12].iloc[0]
        b = examples[second > 12].iloc[0]
        msg = (
            f"{where}: dates such as {a!r} and {b!r} fit neither day-first nor month-first "
            f"order; give --date-format (e.g. --date-format '%d.%m.%Y')"
        )
        raise SourceFormatError(msg)
    in_sequence = {
        order: _monotonic(year, month, day, rest)
        for order, (day, month) in {True: (first, second), False: (second, first)}.items()
    }
    if in_sequence[True] != in_sequence[False]:
        chosen = in_sequence[True]
        logger.info(
            "%s: dates read %s: the only order in which they are in sequence",
            where,
            "day-first" if chosen else "month-first",
        )
        return chosen
    msg = (
        f"{where}: cannot tell day from month: every date has both at most 12 "
        f"(e.g. {examples.iloc[0]!r}); give {_TIME_OPTIONS}"
    )
    raise SourceFormatError(msg)


def _monotonic(year: pd.Series, month: pd.Series, day: pd.Series, rest: pd.Series) -> bool:
    iso = (
        year + "-" + month.astype(str).str.zfill(2) + "-" + day.astype(str).str.zfill(2)
        + rest.str.replace(_OFFSET.pattern, r"\g<clock>", regex=True)
    )
    stamps = pd.to_datetime(iso.astype(object), format="ISO8601", errors="coerce")
    if stamps.isna().any():
        return False  # 31.02 in this order: the order does not fit
    return bool(stamps.is_monotonic_increasing or stamps.is_monotonic_decreasing)


def _to_utc(
    raw: pd.Series,
    wall: pd.Series,
    aware: pd.Series,
    has_offset: np.ndarray,
    *,
    timeframe: str,
    zone: ZoneInfo | None,
    where: str,
) -> ParsedStamps:
    daily = timeframe_to_timedelta(timeframe) >= timedelta(days=1)
    utc = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    faults: dict[int, tuple[ReasonCode, str]] = {}
    offset = pd.Series(has_offset, index=raw.index) & aware.notna()
    utc[offset] = aware[offset]
    naive = ~offset & wall.notna()

    if daily:
        local = wall.copy()
        if zone is not None and offset.any():
            local[offset] = aware[offset].dt.tz_convert(zone).dt.tz_localize(None)
        session = local.notna() & (local == local.dt.normalize())
        utc[session] = local[session].dt.tz_localize("UTC")
        naive &= ~session

    if naive.any() and zone is not None:
        localised, nonexistent, ambiguous = _localise(wall[naive], zone)
        utc[naive] = localised
        zone_name = str(zone)
        for pos in np.flatnonzero(nonexistent):
            faults[pos] = (
                ReasonCode.NONEXISTENT_TS,
                f"local time {wall.iloc[pos]} does not exist in {zone_name} (skipped by a "
                "daylight-saving change)",
            )
        for pos in np.flatnonzero(ambiguous):
            faults[pos] = (
                ReasonCode.AMBIGUOUS_TS,
                f"local time {wall.iloc[pos]} occurs twice in {zone_name} (daylight-saving "
                "change) and the rows' order does not tell which is meant",
            )
        naive[:] = False
    elif naive.any() and not daily and not offset.any():
        example = raw[naive].iloc[0]
        msg = (
            f"{where}: timestamps such as {example!r} carry no time zone; give the zone they "
            "are in with --tz (e.g. --tz UTC or --tz America/New_York)"
        )
        raise SourceFormatError(msg)

    in_range = utc.between(_NS_MIN, _NS_MAX).to_numpy(dtype=bool)
    beyond = utc.notna().to_numpy() & ~in_range
    for pos in np.flatnonzero(beyond):
        faults[pos] = (
            ReasonCode.UNPARSEABLE_TS,
            f"ts {raw.iloc[pos]!r} is outside the supported range "
            f"{_NS_MIN:%Y-%m-%d} to {_NS_MAX:%Y-%m-%d}",
        )
    present = raw.notna().to_numpy() & (raw.astype(str).str.strip() != "").to_numpy()
    unread = present & utc.isna().to_numpy() & ~naive.to_numpy()
    for pos in np.flatnonzero(unread):
        faults.setdefault(
            pos,
            (
                ReasonCode.UNPARSEABLE_TS,
                f"ts {raw.iloc[pos]!r} is not a date or time candleflow reads (ISO 8601, "
                f"day/month dates, or a --date-format)",
            ),
        )
    good = in_range & utc.notna().to_numpy()
    if good.all():
        return ParsedStamps(utc.dt.as_unit("ns"), faults)
    values: list[Any] = list(raw.astype(object))
    for pos in np.flatnonzero(good):
        values[pos] = pd.Timestamp(utc.iloc[pos]).as_unit("ns")
    for pos in np.flatnonzero(naive.to_numpy()):
        values[pos] = pd.Timestamp(wall.iloc[pos])
    return ParsedStamps(pd.Series(values, index=raw.index, dtype=object), faults)


def _localise(wall: pd.Series, zone: ZoneInfo) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """(UTC stamps, which local times do not exist, which stay ambiguous) for naive `wall`."""
    try:
        local = wall.dt.tz_localize(zone, ambiguous="infer", nonexistent="NaT")
        ambiguous = np.zeros(len(wall), dtype=bool)
    except ValueError:
        local = wall.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
        summer = wall.dt.tz_localize(zone, ambiguous=True, nonexistent="NaT")
        ambiguous = (local.isna() & summer.notna()).to_numpy()
    nonexistent = local.isna().to_numpy() & ~ambiguous
    return local.dt.tz_convert("UTC"), nonexistent, ambiguous
