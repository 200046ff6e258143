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
import pyarrow as pa
import pyarrow.compute as pc

from infra.sources.base import SourceFormatError
from quality.reasons import ReasonCode
from quality.schema import timeframe_to_timedelta

__all__ = ["ParsedStamps", "parse_stamps"]

logger = logging.getLogger(__name__)

# RE2 patterns (pyarrow runs them), so no backreferences: the two separators are compared after.
# Year first: 2024-01-02, 2024.01.02, 2024/1/2, followed by nothing or a time.
_YMD: Final = re.compile(
    r"^(?P<y>[0-9]{4})(?P<s1>[./-])(?P<m>[0-9]{1,2})(?P<s2>[./-])(?P<d>[0-9]{1,2})"
    r"(?P<rest>(?:[ T].*)?)$"
)
# Day or month first: 02.01.2024, 1/2/24, followed by nothing or a time.
_XYY: Final = re.compile(
    r"^(?P<a>[0-9]{1,2})(?P<s1>[./-])(?P<b>[0-9]{1,2})(?P<s2>[./-])(?P<y>[0-9]{4}|[0-9]{2})"
    r"(?P<rest>(?:[ T].*)?)$"
)
_MONTH_NAME: Final = re.compile(r"[A-Za-z]{3}")
# A UTC offset after a clock time (a bare date such as 2024-01-02 has none).
_OFFSET: Final = re.compile(
    r"(?P<clock>[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?) *"
    r"(?P<offset>[zZ]|[+-][0-9]{2}(?::?[0-9]{2})?)$"
)
_HAS_OFFSET: Final = _OFFSET.pattern.replace("(?P<clock>", "(?:").replace("(?P<offset>", "(?:")
_OFFSET_NUMBERED: Final = _OFFSET.pattern.replace("(?P<clock>", "(").replace("(?P<offset>", "(?:")
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
    # Arrow's compute kernels (RE2) keep a million-row column to about a second.
    cells = raw.astype(object).to_numpy()
    strings = pa.array([v if isinstance(v, str) else None for v in cells], type=pa.string())
    strings = pc.utf8_trim_whitespace(strings)
    strings = pc.if_else(pc.equal(strings, ""), pa.scalar(None, pa.string()), strings)
    nat_utc = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    if date_format is not None:
        text = pd.Series(strings.to_pandas(), index=raw.index, dtype=object)
        with_zone = "%z" in date_format or "%Z" in date_format
        parsed = pd.to_datetime(text, format=date_format, errors="coerce", utc=with_zone)
        parsed = parsed.dt.as_unit("us")
        if with_zone:
            return parsed.dt.tz_localize(None), parsed, parsed.notna().to_numpy()
        return parsed, nat_utc, np.zeros(len(raw), dtype=bool)
    iso = _normalise_dates(strings, dayfirst, where)
    has_offset = pc.fill_null(pc.match_substring_regex(iso, _HAS_OFFSET), False)
    has_offset = has_offset.to_numpy(zero_copy_only=False)
    clock = pc.replace_substring_regex(iso, _OFFSET_NUMBERED, r"\1")
    wall = _to_datetime(pd.Series(clock.to_pandas(), index=raw.index, dtype=object))
    aware = nat_utc.copy()
    if has_offset.any():
        text = pd.Series(iso.to_pandas(), index=raw.index, dtype=object)
        got = pd.to_datetime(text[has_offset], utc=True, format="ISO8601", errors="coerce")
        aware[has_offset] = got.dt.as_unit("us")
    return wall, aware, has_offset


def _to_datetime(values: pd.Series) -> pd.Series:
    wall = pd.to_datetime(values, format="ISO8601", errors="coerce").dt.as_unit("us")
    # Month names ("2 Jan 2024", "Jan 2, 2024") carry no day/month ambiguity; digits-only
    # strings that are not ISO are never handed to a lenient parser.
    missed = values.notna().to_numpy() & wall.isna().to_numpy()
    for pos in np.flatnonzero(missed):
        value = values.iloc[pos]
        if not _MONTH_NAME.search(value):
            continue
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            continue
        if stamp is not pd.NaT and stamp.tzinfo is None:
            wall.iloc[pos] = stamp
    return wall


def _normalise_dates(text: pa.Array, dayfirst: bool | None, where: str) -> pa.Array:
    """Rewrite year-first and day/month-first dates as ISO 8601; leave everything else."""
    ymd = pc.extract_regex(text, _YMD.pattern)
    ymd_found = pc.fill_null(
        pc.and_(pc.is_valid(ymd), pc.equal(pc.struct_field(ymd, "s1"), pc.struct_field(ymd, "s2"))),
        False,
    )
    if pc.any(ymd_found).as_py():
        iso = pc.binary_join_element_wise(
            pc.struct_field(ymd, "y"), "-", _two(pc.struct_field(ymd, "m")), "-",
            _two(pc.struct_field(ymd, "d")), pc.struct_field(ymd, "rest"), "",
        )  # fmt: skip
        text = pc.if_else(ymd_found, iso, text)
    xyy = pc.extract_regex(text, _XYY.pattern)
    found = pc.fill_null(
        pc.and_(pc.is_valid(xyy), pc.equal(pc.struct_field(xyy, "s1"), pc.struct_field(xyy, "s2"))),
        False,
    )
    if not pc.any(found).as_py():
        return text
    rows = pc.filter(xyy, found)
    a, b = pc.struct_field(rows, "a"), pc.struct_field(rows, "b")
    year, rest = pc.struct_field(rows, "y"), pc.struct_field(rows, "rest")
    if pc.any(pc.equal(pc.utf8_length(year), 2)).as_py():
        year = _century(year)
    first = pd.Series(pc.cast(a, pa.int64()).to_numpy())
    second = pd.Series(pc.cast(b, pa.int64()).to_numpy())
    examples = pc.filter(text, found)
    day_first = _day_month_order(first, second, year, rest, examples, dayfirst, where)
    day, month = (a, b) if day_first else (b, a)
    iso = pc.binary_join_element_wise(year, "-", _two(month), "-", _two(day), rest, "")
    return pc.replace_with_mask(text, found, iso)


def _two(digits: pa.Array) -> pa.Array:
    return pc.utf8_lpad(digits, width=2, padding="0")


def _century(yy: pa.Array) -> pa.Array:
    """Four-digit years; two digits follow the POSIX %y rule (69-99: 19xx, 00-68: 20xx)."""
    number = pc.cast(yy, pa.int64()).to_numpy()
    full = np.where(np.char.str_len(yy.to_numpy(zero_copy_only=False).astype(str)) == 2,
                    np.where(number >= 69, number + 1900, number + 2000), number)  # fmt: skip
    return pa.array([f"{y:04d}" for y in full], type=pa.string())


def _day_month_order(
    first: pd.Series,
    second: pd.Series,
    year_text: pa.Array,
    rest_text: pa.Array,
    example_text: pa.Array,
    dayfirst: bool | None,
    where: str,
) -> bool:
    """True for day-first: the caller's choice (refused where the column cannot be in that
    order), or the only order the whole column fits."""
    examples = pd.Series(example_text.to_pandas(), dtype=object)
    if dayfirst is not None:
        day, month = (first, second) if dayfirst else (second, first)
        wrong = (month > 12) | (day > 31)
        if wrong.any():
            given, other = ("--dayfirst", "--no-dayfirst") if dayfirst else (
                "--no-dayfirst", "--dayfirst")  # fmt: skip
            example = examples[wrong].iloc[0]
            if ((day > 12) | (month > 31))[wrong].any():  # the other order fails there too
                msg = (f"{where}: dates such as {example!r} fit neither day-first nor "
                       f"month-first order; give --date-format (e.g. --date-format '%d.%m.%Y')")
            else:  # the month is over 12 in the given order, and fits in the other
                msg = (f"{where}: {given} cannot be right: it would read {example!r} with "
                       f"month {int(month[wrong].iloc[0])}; give {other} or --date-format")
            raise SourceFormatError(msg)
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
    year = pd.Series(year_text.to_pandas(), dtype=object)
    rest = pd.Series(rest_text.to_pandas(), dtype=object)
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
        year
        + "-"
        + month.astype(str).str.zfill(2)
        + "-"
        + day.astype(str).str.zfill(2)
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
