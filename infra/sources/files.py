"""Bars from CSV and Parquet files, and the drop folder that feeds them in.

Column names are recognised case-insensitively (or given by a column_map). Timestamps are parsed
where they can be; a stamp that does not parse stays in the frame as the raw text, and a naive
stamp stays naive unless a time zone is given, so the data contract quarantines such rows with a
reason instead of anyone guessing. No row is dropped here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pandas as pd

from infra.sources.base import (
    INSTRUMENT_CLASSES,
    RAW_COLUMNS,
    RawBars,
    SourceFormatError,
    SourceUnavailableError,
)
from quality.schema import TIMEFRAMES

__all__ = ["DropFile", "load_file", "scan_drop_folder"]

logger = logging.getLogger(__name__)

SUFFIXES: Final = (".csv", ".csv.gz", ".parquet")
DROP_NAME_SEPARATOR: Final = "__"  # SYMBOL__TIMEFRAME.csv, e.g. AAPL__1d.csv
# Lower-cased header -> canonical column. "adj close" is deliberately absent: it is not close.
_ALIASES: Final = {
    "ts": ("ts", "timestamp", "datetime", "date", "time"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "volume": ("volume", "vol"),
}
_CSV_DELIMITERS: Final = (",", ";", "\t", "|")


def load_file(
    path: Path,
    *,
    symbol: str,
    timeframe: str,
    column_map: Mapping[str, str] | None = None,
    tz: str | None = None,
    instrument_class: str = "equity",
) -> RawBars:
    """Read a .csv, .csv.gz or .parquet file of bars.

    column_map maps canonical names to the file's headers, e.g. {"ts": "Date", "close": "Last"};
    unmapped columns are recognised by their usual names. `tz` localises naive timestamps
    (e.g. "America/New_York"); stamps that carry an offset are converted to UTC regardless.
    """
    path = Path(path)
    if instrument_class not in INSTRUMENT_CLASSES:
        msg = f"unknown instrument class {instrument_class!r}; use {', '.join(INSTRUMENT_CLASSES)}"
        raise ValueError(msg)
    table = _read(path)
    mapping = _resolve_columns(list(table.columns), column_map, path)
    frame = pd.DataFrame(
        {name: table[mapping[name]] for name in RAW_COLUMNS if name != "ts" and name in mapping}
    )
    ts_source = mapping["ts"]
    raw_ts = (
        table[ts_source]
        if isinstance(ts_source, str)
        else table[ts_source[0]].astype(str) + " " + table[ts_source[1]].astype(str)
    )
    frame.insert(0, "ts", _parse_timestamps(raw_ts.reset_index(drop=True), tz, path))
    frame = frame.reset_index(drop=True)[list(RAW_COLUMNS)]
    return RawBars(
        frame=frame,
        symbol=symbol,
        timeframe=timeframe,
        source=f"file:{path.resolve()}",
        instrument_class=instrument_class,
    )


def _read(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if not path.is_file():
        msg = f"bar file {path} does not exist or is not a file"
        raise SourceUnavailableError(msg)
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        if name.endswith((".csv", ".csv.gz")):
            # No dtype coercion beyond pandas' own inference: odd cells stay as their text.
            return pd.read_csv(path, sep=_sniff_delimiter(path))
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first_line = " ".join(str(exc).split())[:200]
        msg = f"cannot read {path}: {type(exc).__name__}: {first_line}"
        raise SourceFormatError(msg) from None
    msg = f"unsupported file type {path.name!r}; use one of {', '.join(SUFFIXES)}"
    raise SourceFormatError(msg)


def _sniff_delimiter(path: Path) -> str:
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        header = handle.readline()
    counts = {d: header.count(d) for d in _CSV_DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _normalise(header: Any) -> str:
    # MetaTrader exports headers like "<DATE>"; spreadsheets add stray spaces.
    return str(header).strip().strip("<>").strip().lower()


def _resolve_columns(
    headers: list[Any], column_map: Mapping[str, str] | None, path: Path
) -> dict[str, Any]:
    """Canonical name -> header (or a (date, time) pair of headers for ts)."""
    column_map = dict(column_map or {})
    unknown = sorted(set(column_map) - set(RAW_COLUMNS))
    if unknown:
        msg = (
            f"column_map has unknown keys {unknown}; its keys are the canonical names "
            f"{list(RAW_COLUMNS)} and its values the headers in {path.name}"
        )
        raise SourceFormatError(msg)
    by_norm: dict[str, list[Any]] = {}
    for h in headers:
        by_norm.setdefault(_normalise(h), []).append(h)

    resolved: dict[str, Any] = {}
    problems: list[str] = []
    for name in RAW_COLUMNS:
        if name in column_map:
            wanted = column_map[name]
            exact = [h for h in headers if h == wanted]
            loose = by_norm.get(_normalise(wanted), [])
            if exact or len(loose) == 1:
                resolved[name] = exact[0] if exact else loose[0]
            else:
                problems.append(f"column_map[{name!r}]={wanted!r} is not a header")
            continue
        found = [h for alias in _ALIASES[name] for h in by_norm.get(alias, [])]
        if name == "ts":
            norms = {_normalise(h) for h in found}
            if len(found) == 2 and norms == {"date", "time"}:
                date = next(h for h in found if _normalise(h) == "date")
                clock = next(h for h in found if _normalise(h) == "time")
                resolved[name] = (date, clock)  # separate date and time columns
                continue
        if len(found) == 1:
            resolved[name] = found[0]
        elif not found:
            problems.append(f"no {name} column")
        else:
            problems.append(f"{name} is ambiguous between {found}")
    if problems:
        msg = (
            f"{path.name}: {'; '.join(problems)}. Found columns {[str(h) for h in headers]}; "
            f"expected {list(RAW_COLUMNS)} (case-insensitive; ts may be timestamp, date, "
            "datetime or time; volume may be vol). Map them with column_map, e.g. "
            "{'ts': 'Date', 'close': 'Last'}"
        )
        raise SourceFormatError(msg)
    return resolved


def _parse_timestamps(raw: pd.Series, tz: str | None, path: Path) -> pd.Series:
    """Parsed stamps (UTC when known); stamps that do not parse stay as their raw value."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        return _localise(raw.astype("datetime64[ns]"), tz, path)
    if not (pd.api.types.is_object_dtype(raw.dtype) or pd.api.types.is_string_dtype(raw.dtype)):
        # Numbers (epoch seconds? milliseconds?) are not guessed: they stay raw for quarantine.
        return raw.astype(object)
    text = raw.astype(object)
    present = text.notna() & (text.astype(str).str.strip() != "")
    try:
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
        missed = present & parsed.isna()
        if missed.any():
            parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    except (ValueError, TypeError):
        # Mixed naive and offset-carrying stamps in one column: judge each on its own.
        return _parse_each(text, tz, path)
    parsed = _localise(parsed, tz, path)
    missed = present & parsed.isna()
    if not missed.any():
        return parsed
    logger.info("%s: %d timestamp(s) did not parse; kept raw", path.name, int(missed.sum()))
    out = parsed.astype(object)
    out[missed] = text[missed]
    return out


def _localise(parsed: pd.Series, tz: str | None, path: Path) -> pd.Series:
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        return parsed.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    if tz is None:
        return parsed.astype("datetime64[ns]")  # naive: the data contract quarantines it
    try:
        local = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    except (KeyError, ValueError) as exc:
        msg = f"{path.name}: cannot localise timestamps to tz={tz!r}: {exc}"
        raise SourceFormatError(msg) from None
    return local.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def _parse_each(text: pd.Series, tz: str | None, path: Path) -> pd.Series:
    values: list[Any] = []
    for value in text:
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError):
            values.append(value)
            continue
        if stamp is pd.NaT:
            values.append(value)
        elif stamp.tzinfo is not None:
            values.append(stamp.tz_convert("UTC"))
        elif tz is not None:
            try:
                values.append(stamp.tz_localize(tz).tz_convert("UTC"))
            except (KeyError, ValueError):
                values.append(value)  # ambiguous or nonexistent local time: not guessed
        else:
            values.append(stamp)
    logger.info("%s: timestamps mix zones; parsed one by one", path.name)
    return pd.Series(values, index=text.index, dtype=object)


@dataclass(frozen=True)
class DropFile:
    """A new or changed file in the drop folder."""

    path: Path
    fingerprint: str  # size and mtime: a changed file gets a new fingerprint and is re-ingested
    symbol: str | None  # None when the name does not follow SYMBOL__TIMEFRAME.ext
    timeframe: str | None
    error: str | None = None  # why this file cannot be ingested; reported, never skipped


def scan_drop_folder(
    folder: Path,
    seen: Mapping[str, str],
    *,
    settle_s: float = 0.0,
    now: float | None = None,
) -> list[DropFile]:
    """Files in `folder` whose fingerprint differs from `seen[name]`, sorted by name.

    Files modified less than `settle_s` seconds before `now` (epoch seconds, default the current
    time) are left for the next scan: they may still be being written. Hidden files (".name")
    are skipped because editors and uploaders use them as temporaries.
    """
    current = time.time() if now is None else now
    found: list[DropFile] = []
    for path in sorted(Path(folder).iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        stat = path.stat()
        fingerprint = f"{stat.st_size}:{stat.st_mtime_ns}"
        if seen.get(path.name) == fingerprint:
            continue
        if current - stat.st_mtime < settle_s:
            logger.debug("drop folder: %s is still settling", path.name)
            continue
        symbol, timeframe, error = _parse_drop_name(path.name)
        found.append(DropFile(path, fingerprint, symbol, timeframe, error))
    return found


def _parse_drop_name(name: str) -> tuple[str | None, str | None, str | None]:
    lower = name.lower()
    suffix = next((s for s in sorted(SUFFIXES, key=len, reverse=True) if lower.endswith(s)), None)
    convention = "name files SYMBOL__TIMEFRAME.csv (or .csv.gz, .parquet), e.g. AAPL__1d.csv"
    if suffix is None:
        return None, None, f"{name}: unsupported file type; {convention}"
    parts = name[: -len(suffix)].split(DROP_NAME_SEPARATOR)
    if len(parts) != 2 or not parts[0] or "@" in parts[0]:
        return None, None, f"{name}: does not follow the naming convention; {convention}"
    symbol, timeframe = parts
    if timeframe not in TIMEFRAMES:
        return (
            None,
            None,
            f"{name}: unknown timeframe {timeframe!r}; use one of {', '.join(TIMEFRAMES)}",
        )
    return symbol, timeframe, None
