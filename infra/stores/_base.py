"""The BarStore port, its errors, and the validation both stores share."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from quality.schema import (
    BAR_COLUMNS,
    BAR_KEY,
    BAR_SCHEMA,
    QUARANTINE_COLUMNS,
    QUARANTINE_KEY,
    QUARANTINE_SCHEMA,
    TIMEFRAMES,
    UnknownTimeframeError,
    empty_bars,
    timeframe_to_timedelta,
    to_canonical_frame,
)

__all__ = ["BarStore", "StoreError", "StoreUnavailableError"]

VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "source")
TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


class StoreError(Exception):
    """A store operation failed for a reason the user can act on; the message says what to do."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached (server down, connection lost, directory not writable)."""


class BarStore(ABC):
    """Where canonical bars, quarantined rows and backtest/live records live.

    Writes are upserts on the row identity, so re-running any ingestion changes nothing.
    """

    @abstractmethod
    def upsert_bars(self, frame: pd.DataFrame) -> int:
        """Upsert canonical bars on (symbol, timeframe, ts); return rows inserted or changed."""

    @abstractmethod
    def read_bars(
        self,
        symbol: str,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """Bars of one series sorted by ts, start inclusive, end exclusive, canonical dtypes."""

    def read_bars_table(
        self,
        symbol: str,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pa.Table:
        """`read_bars` as a pyarrow Table with BAR_SCHEMA."""
        return frame_to_table(self.read_bars(symbol, timeframe, start, end), BAR_SCHEMA)

    @abstractmethod
    def last_ts(self, symbol: str, timeframe: str) -> datetime | None:
        """Open time of the newest stored bar of a series, or None when it has none."""

    @abstractmethod
    def list_series(self) -> list[tuple[str, str]]:
        """Every (symbol, timeframe) with stored bars, sorted."""

    @abstractmethod
    def count_bars(self, symbol: str, timeframe: str) -> int:
        """Number of stored bars of a series."""

    @abstractmethod
    def resample(
        self,
        symbol: str,
        timeframe: str,
        to_timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """Bars in [start, end) aggregated into `to_timeframe` buckets: UTC-epoch-aligned, except
        weeks, which start on Mondays 00:00 UTC (ISO weeks)."""

    @abstractmethod
    def upsert_quarantine(self, frame: pd.DataFrame) -> int:
        """Upsert quarantined rows on QUARANTINE_KEY; return rows inserted or changed."""

    @abstractmethod
    def read_quarantine(
        self, symbol: str | None = None, timeframe: str | None = None
    ) -> pd.DataFrame:
        """Quarantined rows, optionally of one symbol and/or timeframe."""

    @abstractmethod
    def upsert_records(self, table: str, frame: pd.DataFrame, key: Sequence[str]) -> int:
        """Upsert generic records (orders, fills, equity...) on `key`; return rows changed."""

    @abstractmethod
    def read_records(self, table: str) -> pd.DataFrame:
        """All records of `table` sorted by key; an empty frame when there are none."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and locks; the store is unusable afterwards."""

    def __enter__(self) -> BarStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or not symbol:
        msg = f"symbol must be a non-empty string, got {symbol!r}"
        raise StoreError(msg)
    return symbol


def check_timeframe(timeframe: str) -> str:
    try:
        timeframe_to_timedelta(timeframe)
    except UnknownTimeframeError as exc:
        raise StoreError(str(exc)) from None
    return timeframe


def check_range(start: datetime | None, end: datetime | None) -> None:
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            msg = f"{name}={value!r} is naive; pass a timezone-aware datetime (UTC)"
            raise StoreError(msg)


def canonical_bars(frame: pd.DataFrame) -> pd.DataFrame:
    """Validate a batch of bars and return a canonical copy (input order kept)."""
    try:
        out = to_canonical_frame(frame)
    except ValueError as exc:
        msg = f"cannot store bars: {exc}"
        raise StoreError(msg) from None
    nulls = [c for c in BAR_COLUMNS if out[c].isna().any()]
    if nulls:
        msg = f"cannot store bars: null values in column(s) {', '.join(nulls)}"
        raise StoreError(msg)
    for symbol in out["symbol"].unique():
        check_symbol(symbol)
    for timeframe in out["timeframe"].unique():
        check_timeframe(timeframe)
    if _repeats_key(out):
        dup = out.duplicated(list(BAR_KEY), keep=False)
        first = out.loc[dup].iloc[0]
        msg = (
            f"batch holds {int(dup.sum())} rows with a repeated (symbol, timeframe, ts), e.g. "
            f"{first['symbol']}@{first['timeframe']} {first['ts']}; deduplicate before writing"
        )
        raise StoreError(msg)
    return out


def _constant(series: pd.Series) -> bool:
    return len(series) == 0 or bool((series == series.iloc[0]).all())


def _repeats_key(bars: pd.DataFrame) -> bool:
    """Whether some (symbol, timeframe, ts) occurs twice. One series (the usual batch): a sort
    of the timestamps, 10x cheaper than a DataFrame.duplicated over the three columns."""
    if _constant(bars["symbol"]) and _constant(bars["timeframe"]):
        ts = np.sort(ts_to_ns(bars["ts"]))
        return bool((ts[1:] == ts[:-1]).any())
    return bool(bars.duplicated(list(BAR_KEY)).any())


def canonical_quarantine(frame: pd.DataFrame) -> pd.DataFrame:
    """Validate quarantined rows and return a copy with QUARANTINE_SCHEMA columns and dtypes."""
    missing = [c for c in QUARANTINE_COLUMNS if c not in frame.columns]
    if missing:
        msg = f"cannot store quarantined rows: missing columns {', '.join(missing)}"
        raise StoreError(msg)
    out = frame.loc[:, list(QUARANTINE_COLUMNS)].copy()
    for col in ("ts", "quarantined_at"):
        series = out[col]
        if series.isna().all() and not isinstance(series.dtype, pd.DatetimeTZDtype):
            series = pd.to_datetime(series, utc=True)
        if not isinstance(series.dtype, pd.DatetimeTZDtype):
            msg = f"quarantine column {col!r} must hold tz-aware timestamps, got {series.dtype}"
            raise StoreError(msg)
        out[col] = series.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    text = [c for c in QUARANTINE_COLUMNS if c not in ("ts", "quarantined_at")]
    nulls = [c for c in (*text, "quarantined_at") if out[c].isna().any()]
    if nulls:
        msg = f"cannot store quarantined rows: null values in column(s) {', '.join(nulls)}"
        raise StoreError(msg)
    for col in text:
        out[col] = out[col].astype(str).astype(object)
    dup = out.duplicated(list(QUARANTINE_KEY), keep=False)
    if dup.any():
        msg = (
            f"quarantine batch holds {int(dup.sum())} rows with a repeated "
            f"{', '.join(QUARANTINE_KEY)}; deduplicate before writing"
        )
        raise StoreError(msg)
    return out.reset_index(drop=True)


def empty_quarantine() -> pd.DataFrame:
    return canonical_quarantine(QUARANTINE_SCHEMA.empty_table().to_pandas())


def check_resample(timeframe: str, to_timeframe: str) -> tuple[int, int]:
    """Return (source, target) bar lengths in ns; the target must be a coarser multiple."""
    src = check_timeframe(timeframe)
    dst = check_timeframe(to_timeframe)
    src_ns = int(pd.Timedelta(TIMEFRAMES[src]).value)
    dst_ns = int(pd.Timedelta(TIMEFRAMES[dst]).value)
    if dst_ns <= src_ns or dst_ns % src_ns:
        coarser = [tf for tf, d in TIMEFRAMES.items() if d > TIMEFRAMES[src]]
        msg = (
            f"cannot resample {timeframe} bars to {to_timeframe}: the target must be a coarser "
            f"multiple of {timeframe} (one of {', '.join(coarser) or 'none'})"
        )
        raise StoreError(msg)
    return src_ns, dst_ns


# The Unix epoch was a Thursday; weekly buckets start on the Monday after it (ISO weeks).
WEEK_ORIGIN = "1970-01-05T00:00:00Z"


def bucket_origin_ns(to_timeframe: str) -> int:
    """Where `to_timeframe` buckets are aligned, in ns since the epoch."""
    return int(pd.Timestamp(WEEK_ORIGIN).value) if to_timeframe == "1w" else 0


def resample_frame(bars: pd.DataFrame, to_timeframe: str) -> pd.DataFrame:
    """Aggregate canonical bars (one series, sorted by ts) into aligned buckets."""
    if bars.empty:
        return empty_bars()
    width = int(pd.Timedelta(TIMEFRAMES[to_timeframe]).value)
    origin = bucket_origin_ns(to_timeframe)
    ts_int = ts_to_ns(bars["ts"])
    bucket = np.floor_divide(ts_int - origin, width) * width + origin
    grouped = bars.assign(_bucket=bucket).groupby("_bucket", sort=True)
    out = pd.DataFrame(
        {
            "open": grouped["open"].first(),
            "high": grouped["high"].max(),
            "low": grouped["low"].min(),
            "close": grouped["close"].last(),
            "volume": grouped["volume"].sum(),
            "ingested_at": grouped["ingested_at"].max(),
        }
    )
    out["ts"] = pd.to_datetime(out.index.to_numpy(), utc=True)
    out["symbol"] = bars["symbol"].iloc[0]
    out["timeframe"] = to_timeframe
    out["source"] = f"resample:{bars['timeframe'].iloc[0]}"
    return to_canonical_frame(out.reset_index(drop=True))


def ts_to_ns(series: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch of a tz-aware timestamp column."""
    naive = series.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    return naive.to_numpy().view(np.int64)


def frame_to_table(frame: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    """A pyarrow Table of `frame`; tz-aware columns become timestamp[ns, UTC] explicitly."""
    arrays, fields = [], []
    for name in frame.columns:
        series = frame[name]
        want = schema.field(name) if schema is not None else None
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            naive = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
            array = pa.array(naive, type=pa.timestamp("ns", tz="UTC"))
        else:
            array = pa.array(series, type=want.type if want is not None else None, from_pandas=True)
        arrays.append(array)
        fields.append(want if want is not None else pa.field(str(name), array.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def bars_from_columns(columns: dict[str, Any]) -> pd.DataFrame:
    """Build canonical bars from column arrays (timestamps may be tz-aware datetimes)."""
    frame = pd.DataFrame(columns, columns=list(BAR_COLUMNS))
    if frame.empty:
        return empty_bars()
    for col in ("ts", "ingested_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return to_canonical_frame(frame)
