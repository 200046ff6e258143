"""Bars from CSV and Parquet files, and the drop folder that feeds them in.

Column names are recognised case-insensitively (or given by a column_map); two columns that
would both be one field are refused as ambiguous. Timestamps are read as
`infra.sources._timestamps` documents: day/month order decided once for the whole column,
daily bars as sessions, intraday local times localised with `tz`. A stamp that cannot be read
stays in the frame as its raw text with a fault, so the data contract quarantines the row with a
reason instead of anyone guessing. No row is dropped here.
"""

from __future__ import annotations

import csv
import gzip
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pandas as pd

from infra.sources._timestamps import parse_stamps
from infra.sources.base import (
    INSTRUMENT_CLASSES,
    RAW_COLUMNS,
    RawBars,
    SourceFormatError,
    SourceUnavailableError,
)
from quality.schema import TIMEFRAMES

__all__ = ["DROP_SETTLE_S", "DropFile", "DropScan", "load_file", "scan_drop_folder",
           "watch_drop_folder"]

logger = logging.getLogger(__name__)

SUFFIXES: Final = (".csv", ".csv.gz", ".parquet")
DROP_NAME_SEPARATOR: Final = "__"  # SYMBOL__TIMEFRAME.csv, e.g. AAPL__1d.csv
DROP_SETTLE_S: Final = 5.0  # a dropped file is ingested once unchanged for this long
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
PROGRESS_MIN_BYTES: Final = 4 * 1024 * 1024  # larger files report progress while read
_CHUNK_ROWS: Final = 250_000


def load_file(
    path: Path,
    *,
    symbol: str,
    timeframe: str,
    column_map: Mapping[str, str] | None = None,
    tz: str | None = None,
    date_format: str | None = None,
    dayfirst: bool | None = None,
    instrument_class: str = "equity",
    progress: Callable[[str], None] | None = None,
) -> RawBars:
    """Read a .csv, .csv.gz or .parquet file of bars.

    column_map maps canonical names to the file's headers, e.g. {"ts": "Date", "close": "Last"};
    unmapped columns are recognised by their usual names. `tz` is the zone of naive timestamps
    (e.g. "America/New_York"); stamps that carry an offset are converted to UTC regardless.
    `date_format` (strftime codes, e.g. "%d.%m.%Y") or `dayfirst` settle day/month order when
    the column itself cannot. `progress` receives one-line messages while a large file loads.
    """
    path = Path(path)
    if instrument_class not in INSTRUMENT_CLASSES:
        msg = f"unknown instrument class {instrument_class!r}; use {', '.join(INSTRUMENT_CLASSES)}"
        raise ValueError(msg)
    started = time.monotonic()
    table = _read(path, progress)
    headers = _csv_headers(path) if _is_csv(path) else list(table.columns)
    mapping = _resolve_columns(list(table.columns), column_map, path, headers)
    frame = pd.DataFrame(
        {name: table[mapping[name]] for name in RAW_COLUMNS if name != "ts" and name in mapping}
    )
    ts_source = mapping["ts"]
    raw_ts = (
        table[ts_source]
        if isinstance(ts_source, str)
        else table[ts_source[0]].astype(str) + " " + table[ts_source[1]].astype(str)
    )
    stamps = parse_stamps(
        raw_ts.reset_index(drop=True),
        timeframe=timeframe,
        tz=tz,
        date_format=date_format,
        dayfirst=dayfirst,
        where=path.name,
    )
    frame = frame.reset_index(drop=True)
    frame.insert(0, "ts", stamps.ts)
    if progress is not None and len(frame) and _is_large(path):
        progress(f"{path.name}: {len(frame):,} rows read in {time.monotonic() - started:.1f} s")
    return RawBars(
        frame=frame[list(RAW_COLUMNS)],
        symbol=symbol,
        timeframe=timeframe,
        source=f"file:{path.resolve()}",
        instrument_class=instrument_class,
        ts_faults=stamps.faults,
    )


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith((".csv", ".csv.gz"))


def _is_large(path: Path) -> bool:
    try:
        return path.stat().st_size >= PROGRESS_MIN_BYTES
    except OSError:
        return False


def _read(path: Path, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    name = path.name.lower()
    if not path.is_file():
        msg = f"bar file {path} does not exist or is not a file"
        raise SourceUnavailableError(msg)
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        if name.endswith((".csv", ".csv.gz")):
            # No dtype coercion beyond pandas' own inference: odd cells stay as their text.
            if progress is None or not _is_large(path):
                return pd.read_csv(path, sep=_sniff_delimiter(path))
            return _read_csv_reporting(path, progress)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first_line = " ".join(str(exc).split())[:200]
        msg = f"cannot read {path}: {type(exc).__name__}: {first_line}"
        raise SourceFormatError(msg) from None
    msg = f"unsupported file type {path.name!r}; use one of {', '.join(SUFFIXES)}"
    raise SourceFormatError(msg)


def _read_csv_reporting(path: Path, progress: Callable[[str], None]) -> pd.DataFrame:
    size = path.stat().st_size
    progress(f"{path.name}: reading {size / 1e6:,.0f} MB")
    chunks, rows = [], 0
    with open(path, "rb") as handle:
        source = gzip.open(handle) if path.name.lower().endswith(".gz") else handle
        reader = pd.read_csv(source, sep=_sniff_delimiter(path), chunksize=_CHUNK_ROWS)
        for chunk in reader:
            chunks.append(chunk)
            rows += len(chunk)
            done = min(handle.tell() / size, 1.0) if size else 1.0
            progress(f"{path.name}: {done:.0%} read ({rows:,} rows)")
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()


def _open_text(path: Path) -> Any:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def _sniff_delimiter(path: Path) -> str:
    with _open_text(path) as handle:
        header = handle.readline()
    counts = {d: header.count(d) for d in _CSV_DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_headers(path: Path) -> list[str]:
    """The header row exactly as written (pandas renames a repeated `close` to `close.1`)."""
    with _open_text(path) as handle:
        return next(csv.reader(handle, delimiter=_sniff_delimiter(path)), [])


def _refuse_repeated_headers(
    written: list[Any], column_map: Mapping[str, str], path: Path
) -> None:
    mapped = {_normalise(h) for h in column_map.values()}
    wanted = {alias for aliases in _ALIASES.values() for alias in aliases} | mapped
    counts: dict[str, int] = {}
    for h in written:
        counts[_normalise(h)] = counts.get(_normalise(h), 0) + 1
    repeated = sorted(n for n, c in counts.items() if c > 1 and n in wanted)
    if repeated:
        msg = (
            f"{path.name}: columns {repeated} appear more than once, so which one holds the "
            "field is ambiguous; remove or rename the extra column"
        )
        raise SourceFormatError(msg)


def _normalise(header: Any) -> str:
    # MetaTrader exports headers like "<DATE>"; spreadsheets add stray spaces.
    return str(header).strip().strip("<>").strip().lower()


def _resolve_columns(
    headers: list[Any],
    column_map: Mapping[str, str] | None,
    path: Path,
    written: list[Any] | None = None,
) -> dict[str, Any]:
    """Canonical name -> header (or a (date, time) pair of headers for ts).

    `written` is the header row as the file spells it, where a reader may have renamed repeats.
    """
    column_map = dict(column_map or {})
    _refuse_repeated_headers(written if written is not None else headers, column_map, path)
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
            "datetime or time; volume may be vol). Map them with --map COLUMN=FIELD, e.g. "
            "--map Date=ts --map Last=close (column_map={'Date': 'ts'} in Python)"
        )
        raise SourceFormatError(msg)
    return resolved


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


@dataclass(frozen=True)
class DropScan:
    """One look at the drop folder: files ready to ingest, and files not yet stable."""

    ready: tuple[DropFile, ...]
    pending: dict[str, tuple[str, float]]  # name -> (fingerprint, epoch s it was first seen)


def watch_drop_folder(
    folder: Path,
    seen: Mapping[str, str],
    pending: Mapping[str, tuple[str, float]],
    *,
    settle_s: float = DROP_SETTLE_S,
    now: float | None = None,
) -> DropScan:
    """New or changed files in `folder` that are stable, sorted by name.

    Stable: a scan at least `settle_s` seconds after the one that first saw the file's current
    size and mtime finds both unchanged, and the mtime is at least `settle_s` old. A file still
    being copied changes between scans and stays pending, so no half-written file is read.
    `pending` is the previous scan's DropScan.pending; files in `seen` with the same
    fingerprint were ingested already. Neither mapping is modified.
    """
    current = time.time() if now is None else now
    ready: list[DropFile] = []
    still: dict[str, tuple[str, float]] = {}
    for item in scan_drop_folder(folder, seen, now=current):
        name = item.path.name
        fingerprint, first_seen = pending.get(name, (None, current))
        if fingerprint != item.fingerprint:
            first_seen = current
        mtime_s = int(item.fingerprint.split(":")[1]) / 1e9
        if current - first_seen >= settle_s and current - mtime_s >= settle_s:
            ready.append(item)
        else:
            logger.debug("drop folder: %s is not stable yet", name)
            still[name] = (item.fingerprint, first_seen)
    return DropScan(tuple(ready), still)


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
