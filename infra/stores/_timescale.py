"""The TimescaleDB store, on psycopg 3.

Bulk upserts run in one transaction per batch: binary COPY into a temporary staging table,
then one INSERT ... SELECT ... ON CONFLICT DO UPDATE that only touches rows whose values
differ. A connection lost mid-batch therefore leaves either the whole batch or none of it.
Timestamps are stored with microsecond precision (PostgreSQL's timestamptz).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from infra.stores._base import (
    BarStore,
    StoreError,
    StoreUnavailableError,
    bars_from_columns,
    bucket_origin_ns,
    canonical_bars,
    canonical_quarantine,
    check_range,
    check_resample,
    check_symbol,
    check_timeframe,
    empty_quarantine,
    ts_to_ns,
)
from infra.stores._records import (
    check_table,
    decode_frame,
    encode_rows,
    key_text,
    merge_kinds,
    prepare_records,
)
from quality.schema import QUARANTINE_COLUMNS, TIMEFRAMES, empty_bars, to_canonical_frame

__all__ = ["TimescaleBarStore"]

logger = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_LICENSE_HEADER = re.compile(r"^--\s*requires-license:\s*(\w+)", re.MULTILINE)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since the Unix epoch
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
_CHUNK_ROWS = 131_072
_CAGGS = {"1h": "bars_1h", "1d": "bars_1d"}

# One staged bar in PostgreSQL's binary COPY layout: a field count, then (length, value) per
# field, big-endian. Text columns go through a small dictionary table so every row is fixed
# width and a whole batch encodes with numpy instead of a Python loop.
_STAGE_DTYPE = np.dtype(
    [
        ("nfields", ">i2"),
        ("l_sid", ">i4"), ("sid", ">i4"),
        ("l_ts", ">i4"), ("ts", ">i8"),
        ("l_open", ">i4"), ("open", ">f8"),
        ("l_high", ">i4"), ("high", ">f8"),
        ("l_low", ">i4"), ("low", ">f8"),
        ("l_close", ">i4"), ("close", ">f8"),
        ("l_volume", ">i4"), ("volume", ">f8"),
        ("l_ing", ">i4"), ("ingested_at", ">i8"),
    ]
)  # fmt: skip


_MERGE_SQL = """
INSERT INTO bars AS b (symbol, timeframe, ts, open, high, low, close, volume, source,
                       ingested_at)
SELECT d.symbol, d.timeframe, s.ts, s.open, s.high, s.low, s.close, s.volume, d.source,
       s.ingested_at
FROM cf_stage_bars s JOIN cf_stage_series d USING (sid)
ON CONFLICT (symbol, timeframe, ts) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, source = EXCLUDED.source, ingested_at = EXCLUDED.ingested_at
WHERE (b.open, b.high, b.low, b.close, b.volume, b.source)
    IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close,
                      EXCLUDED.volume, EXCLUDED.source)
"""


@contextmanager
def _mapped_errors(where: str) -> Iterator[None]:
    """Map psycopg's errors onto the store's hierarchy (the one place that does it)."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        msg = (
            f"lost the connection to TimescaleDB at {where}: {exc.__class__.__name__}: "
            f"{str(exc).strip()}; nothing of the interrupted batch was kept; check the "
            "server (infra/timescale/start_local.sh) and re-run, writes are idempotent"
        )
        raise StoreUnavailableError(msg) from exc
    except psycopg.Error as exc:
        msg = f"TimescaleDB at {where} refused the operation: {str(exc).strip()}"
        raise StoreError(msg) from exc


def _direct_dtype(n_symbol: int, n_timeframe: int, n_source: int) -> np.dtype:
    """One row of `bars` in binary COPY layout, for a batch group with these text lengths."""
    return np.dtype(
        [
            ("nfields", ">i2"),
            ("l_symbol", ">i4"), ("symbol", f"S{n_symbol}"),
            ("l_timeframe", ">i4"), ("timeframe", f"S{n_timeframe}"),
            ("l_ts", ">i4"), ("ts", ">i8"),
            ("l_open", ">i4"), ("open", ">f8"),
            ("l_high", ">i4"), ("high", ">f8"),
            ("l_low", ">i4"), ("low", ">f8"),
            ("l_close", ">i4"), ("close", ">f8"),
            ("l_volume", ">i4"), ("volume", ">f8"),
            ("l_source", ">i4"), ("source", f"S{n_source}"),
            ("l_ingested_at", ">i4"), ("ingested_at", ">i8"),
        ]
    )  # fmt: skip


# One bar as read_bars has the server pack it: the binary send forms (big-endian; timestamptz as
# microseconds since 2000-01-01) of ts, OHLCV and ingested_at, concatenated. A page's bars of one
# source arrive as one bytea of these, parsed with numpy.
_READ_COLUMNS = ("ts", "open", "high", "low", "close", "volume", "ingested_at")
_READ_DTYPE = np.dtype([(c, ">i8" if c in ("ts", "ingested_at") else ">f8") for c in _READ_COLUMNS])
_READ_ROW = sql.SQL(" || ").join(
    sql.SQL("{}({})").format(
        sql.SQL("timestamptz_send" if c in ("ts", "ingested_at") else "float8send"),
        sql.Identifier(c),
    )
    for c in _READ_COLUMNS
)
# Bars per read_bars statement: bounds each bytea (56 bytes a bar, 59 MB a page) far below
# PostgreSQL's 1 GB per value.
_READ_PAGE_ROWS = 1 << 20


def _ts_from_us(us: np.ndarray) -> pd.DatetimeIndex:
    """PostgreSQL binary timestamptz (us since 2000-01-01) as tz-aware UTC ns timestamps."""
    ns = (us.astype(np.int64) + _PG_EPOCH_US) * 1000
    return pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")


def _text_column(values: Sequence[str], codes: np.ndarray) -> pd.arrays.ArrowStringArray:
    """values[codes] as an Arrow string column: a take in Arrow, where a per-row Python string
    array (np.full, then pandas' str inference) costs 0.1 s per 1M-row column."""
    return pd.arrays.ArrowStringArray(pa.array(list(values), pa.string()).take(pa.array(codes)))


def _pg_ts(us: int) -> datetime:
    """A PostgreSQL-epoch microsecond count as a tz-aware datetime (for query parameters)."""
    return datetime(2000, 1, 1, tzinfo=UTC) + pd.Timedelta(microseconds=us).to_pytimedelta()


def _us_of(value: datetime) -> int:
    """A tz-aware datetime as microseconds since 2000-01-01 (PostgreSQL's epoch)."""
    return (value - datetime(2000, 1, 1, tzinfo=UTC)) // pd.Timedelta(microseconds=1)


def _group_codes(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, list[tuple]]:
    """Dense codes of the distinct value tuples of `columns`, and those tuples by code.

    Column by column: a MultiIndex factorize builds a tuple per row (0.45 s per 300k rows)."""
    codes = np.zeros(len(frame), dtype=np.int64)
    for col in columns:
        values = frame[col]
        if len(values) and bool((values == values.iloc[0]).all()):
            continue  # one value (the usual batch): code 0 for every row
        col_codes, col_uniques = pd.factorize(values, sort=False)
        codes = codes * len(col_uniques) + col_codes
        codes = np.unique(codes, return_inverse=True)[1].ravel()  # dense again: no overflow
    _, first_rows = np.unique(codes, return_index=True)
    uniques = [tuple(frame[c].iloc[int(i)] for c in columns) for i in first_rows]
    return codes.astype(np.int64), uniques


def _us(series: pd.Series) -> np.ndarray:
    """Microseconds since 2000-01-01 (PostgreSQL's binary timestamptz), floored."""
    return np.floor_divide(ts_to_ns(series), 1000) - _PG_EPOCH_US


_VALUE_COLUMNS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class _Batch:
    """A canonical bar batch as numpy columns, grouped by (symbol, timeframe, source).

    The write path slices these arrays, never the frame: no Python object per row."""

    ts: np.ndarray  # int64 microseconds since 2000-01-01 (PostgreSQL's binary timestamptz)
    ingested_at: np.ndarray  # same unit
    values: dict[str, np.ndarray]  # the OHLCV float64 columns
    codes: np.ndarray  # int64 group of each row, an index into `groups`
    groups: list[tuple]  # (symbol, timeframe, source) by code

    @classmethod
    def of(cls, bars: pd.DataFrame) -> _Batch:
        codes, groups = _group_codes(bars, ("symbol", "timeframe", "source"))
        return cls(
            ts=_us(bars["ts"]),
            ingested_at=_us(bars["ingested_at"]),
            values={c: bars[c].to_numpy(np.float64) for c in _VALUE_COLUMNS},
            codes=codes,
            groups=groups,
        )

    def __len__(self) -> int:
        return len(self.ts)

    def column(self, name: str) -> np.ndarray:
        if name == "ts":
            return self.ts
        if name == "ingested_at":
            return self.ingested_at
        return self.values[name]

    def take(self, mask: np.ndarray) -> _Batch:
        if mask.all():
            return self
        return _Batch(
            ts=self.ts[mask],
            ingested_at=self.ingested_at[mask],
            values={c: v[mask] for c, v in self.values.items()},
            codes=self.codes[mask],
            groups=self.groups,
        )

    def series_masks(self) -> Iterator[tuple[tuple[str, str], np.ndarray]]:
        """Each (symbol, timeframe) of the batch with the mask of its rows."""
        by_series: dict[tuple[str, str], list[int]] = {}
        for code, (symbol, timeframe, _) in enumerate(self.groups):
            by_series.setdefault((str(symbol), str(timeframe)), []).append(code)
        for key, codes in by_series.items():
            if len(self.groups) == 1:
                yield key, np.ones(len(self), dtype=bool)
            else:
                yield key, np.isin(self.codes, codes)


def _migrations() -> list[tuple[int, str, str]]:
    out = []
    for path in sorted(SQL_DIR.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            msg = f"migration file {path.name} must be named NNN_name.sql"
            raise StoreError(msg)
        out.append((int(match.group(1)), match.group(2), path.read_text()))
    return out


class TimescaleBarStore(BarStore):
    """Bars, quarantine and records in one schema of a TimescaleDB database."""

    def __init__(self, dsn: str, schema: str = "public") -> None:
        if not _SCHEMA_NAME.match(schema):
            msg = f"schema name {schema!r} is not valid; use lowercase letters, digits, _"
            raise StoreError(msg)
        self._dsn = dsn
        self._schema = schema
        self._where = self._describe(dsn)
        self._lock = threading.RLock()
        self._conn: psycopg.Connection | None = None
        self._closed = False
        # Test seam: called after a batch is staged and before it is merged.
        self._after_stage: Callable[[], None] | None = None
        with self._lock:
            self._license, applied = self._migrate(self._connection())
        self._capabilities = {
            "license": self._license,
            "compression": 4 in applied,
            "continuous_aggregates": 5 in applied,
        }
        path = (
            "continuous aggregates"
            if self._capabilities["continuous_aggregates"]
            else ("time_bucket queries")
        )
        logger.info(
            "TimescaleDB at %s schema %s: license=%s, resample uses %s, compression %s",
            self._where,
            schema,
            self._license,
            path,
            "on" if self._capabilities["compression"] else "off",
        )

    @staticmethod
    def _describe(dsn: str) -> str:
        try:
            info = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            msg = "CANDLEFLOW_TIMESCALE_DSN is not a valid DSN; use postgresql://user@host:port/db"
            raise StoreError(msg) from None
        return f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}"

    @property
    def capabilities(self) -> dict[str, Any]:
        return dict(self._capabilities)

    @property
    def schema(self) -> str:
        return self._schema

    # connection ------------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        if self._closed:
            msg = "this store is closed; open a new one with open_store()"
            raise StoreError(msg)
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        try:
            conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no answer"
            msg = (
                f"cannot connect to TimescaleDB at {self._where} ({reason}); start one with "
                "`bash infra/timescale/start_local.sh` or fix CANDLEFLOW_TIMESCALE_DSN"
            )
            raise StoreUnavailableError(msg) from None
        with _mapped_errors(self._where):
            conn.execute("SET TIME ZONE 'UTC'")
            conn.execute("SET temp_buffers = '256MB'")
            conn.execute(
                sql.SQL("SET search_path TO {}, public").format(sql.Identifier(self._schema))
            )
        self._conn = conn
        return conn

    def _migrate(self, conn: psycopg.Connection) -> tuple[str, set[int]]:
        with _mapped_errors(self._where):
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone()
            if row is None:
                try:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb SCHEMA public")
                except psycopg.errors.InsufficientPrivilege:
                    msg = (
                        f"the database at {self._where} lacks the timescaledb extension; ask "
                        "its owner to run CREATE EXTENSION timescaledb"
                    )
                    raise StoreError(msg) from None
            license_ = conn.execute("SELECT current_setting('timescaledb.license')").fetchone()[0]
            schema = sql.Identifier(self._schema)
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))",
                    (f"candleflow.migrate:{self._schema}",),
                )
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {}.schema_migrations ("
                        "version integer PRIMARY KEY, name text NOT NULL, "
                        "applied_at timestamptz NOT NULL DEFAULT now())"
                    ).format(schema)
                )
                applied = {
                    r[0]
                    for r in conn.execute(
                        sql.SQL("SELECT version FROM {}.schema_migrations").format(schema)
                    )
                }
                for version, name, text in _migrations():
                    if version in applied:
                        continue
                    needs = _LICENSE_HEADER.search(text)
                    if needs and needs.group(1) != license_:
                        logger.debug("skipping migration %03d_%s (needs %s)", version, name, needs)
                        continue
                    logger.info(
                        "applying migration %03d_%s to schema %s", version, name, self._schema
                    )
                    conn.execute(text.encode())
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {}.schema_migrations (version, name) VALUES (%s, %s)"
                        ).format(schema),
                        (version, name),
                    )
                    applied.add(version)
        return str(license_), applied

    def applied_migrations(self) -> list[int]:
        with self._lock, _mapped_errors(self._where):
            rows = self._connection().execute(
                "SELECT version FROM schema_migrations ORDER BY version"
            )
            return [r[0] for r in rows]

    # bars ------------------------------------------------------------------------------------

    def upsert_bars(self, frame: pd.DataFrame) -> int:
        bars = canonical_bars(frame)
        if bars.empty:
            return 0
        batch = _Batch.of(bars)
        with self._lock, _mapped_errors(self._where):
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    fresh = self._fresh_rows(cur, batch)
                    written = self._copy_into_bars(cur, batch.take(fresh))
                    if not fresh.all():
                        written += self._merge_staged(cur, batch.take(~fresh))
                    elif self._after_stage is not None:
                        self._after_stage()
                    self._register_series(cur, batch)
                return written
            except psycopg.errors.UniqueViolation:
                # A concurrent writer stored some of these keys after we looked: merge them all.
                logger.info("event=copy_conflict where=%s fallback=staged_merge", self._where)
            with conn.transaction(), conn.cursor() as cur:
                written = self._merge_staged(cur, batch)
                self._register_series(cur, batch)
            return written

    @staticmethod
    def _fresh_rows(cur: psycopg.Cursor, batch: _Batch) -> np.ndarray:
        """Rows no stored bar can conflict with: outside the stored ts range of their series
        within the batch's range (one index probe per series)."""
        fresh = np.ones(len(batch), dtype=bool)
        for (symbol, timeframe), mask in batch.series_masks():
            lo, hi = int(batch.ts[mask].min()), int(batch.ts[mask].max())
            cur.execute(
                "SELECT min(ts), max(ts) FROM bars WHERE symbol = %s AND timeframe = %s"
                " AND ts >= %s AND ts <= %s",
                (symbol, timeframe, _pg_ts(lo), _pg_ts(hi)),
            )
            first, last = cur.fetchone()
            if first is None:
                continue
            inside = (batch.ts >= _us_of(first)) & (batch.ts <= _us_of(last)) & mask
            fresh &= ~inside
        return fresh

    @staticmethod
    def _copy_into_bars(cur: psycopg.Cursor, batch: _Batch) -> int:
        """Binary COPY straight into the hypertable (the rows are known not to conflict).

        Encoded one slice at a time, so the server digests a slice while the next is built."""
        if not len(batch):
            return 0
        with cur.copy(
            "COPY bars (symbol, timeframe, ts, open, high, low, close, volume, source, "
            "ingested_at) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.write(_COPY_HEADER)
            for code, (symbol, timeframe, source) in enumerate(batch.groups):
                rows_of = np.flatnonzero(batch.codes == code) if len(batch.groups) > 1 else None
                total = len(batch) if rows_of is None else len(rows_of)
                sym, tf, src = (str(v).encode() for v in (symbol, timeframe, source))
                dtype = _direct_dtype(len(sym), len(tf), len(src))
                for lo in range(0, total, _CHUNK_ROWS):
                    part = (
                        slice(lo, min(lo + _CHUNK_ROWS, total))
                        if rows_of is None
                        else rows_of[lo : lo + _CHUNK_ROWS]
                    )
                    rows = np.empty(len(batch.ts[part]), dtype=dtype)
                    rows["nfields"] = 10
                    rows["l_symbol"], rows["symbol"] = len(sym), sym
                    rows["l_timeframe"], rows["timeframe"] = len(tf), tf
                    rows["l_source"], rows["source"] = len(src), src
                    for name in ("ts", "open", "high", "low", "close", "volume", "ingested_at"):
                        rows[f"l_{name}"] = 8
                        rows[name] = batch.column(name)[part]
                    copy.write(rows.tobytes())
            copy.write(_COPY_TRAILER)
        return len(batch)

    def _merge_staged(self, cur: psycopg.Cursor, batch: _Batch) -> int:
        """COPY into a temporary table, then one INSERT ... ON CONFLICT that touches only rows
        whose values differ.

        An UPDATE ... FROM join for the stored keys plus an INSERT of the rest was tried: 1.7x
        faster on the first rewrite after a load, 0.74x in bench.ingest's vacuumed runs
        (median of 3, load 4-9), so the single statement stays."""
        rows = np.empty(len(batch), dtype=_STAGE_DTYPE)
        rows["nfields"] = 8
        rows["l_sid"] = 4
        rows["sid"] = batch.codes
        for name in ("ts", "open", "high", "low", "close", "volume"):
            rows[f"l_{name}"] = 8
            rows[name] = batch.column(name)
        rows["l_ing"] = 8
        rows["ingested_at"] = batch.ingested_at
        cur.execute(
            "CREATE TEMP TABLE cf_stage_series (sid int4, symbol text, timeframe text, "
            "source text) ON COMMIT DROP"
        )
        cur.execute(
            "CREATE TEMP TABLE cf_stage_bars (sid int4, ts timestamptz, open float8, "
            "high float8, low float8, close float8, volume float8, "
            "ingested_at timestamptz) ON COMMIT DROP"
        )
        with cur.copy("COPY cf_stage_series FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text", "text", "text"])
            for sid, (symbol, timeframe, source) in enumerate(batch.groups):
                copy.write_row((sid, symbol, timeframe, source))
        with cur.copy("COPY cf_stage_bars FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(_COPY_HEADER)
            for i in range(0, len(rows), _CHUNK_ROWS):
                copy.write(rows[i : i + _CHUNK_ROWS].tobytes())
            copy.write(_COPY_TRAILER)
        if self._after_stage is not None:
            self._after_stage()
        cur.execute(_MERGE_SQL)
        return int(cur.rowcount)

    @staticmethod
    def _register_series(cur: psycopg.Cursor, batch: _Batch) -> None:
        pairs = sorted({(str(s), str(t)) for s, t, _ in batch.groups})
        cur.executemany(
            "INSERT INTO series (symbol, timeframe) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            pairs,
        )

    def read_bars(
        self,
        symbol: str,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        check_symbol(symbol)
        check_timeframe(timeframe)
        check_range(start, end)
        # Per-row messages (SELECT, or COPY TO in any format) cost the client about 1.6 us a
        # row in libpq and psycopg: 1M bars took 2 s. The server packs each page of bars into
        # one bytea per source instead (2 rows to fetch) and numpy parses it; GROUP BY source
        # also names the sources, so there is no second scan for them.
        query = sql.SQL(
            "SELECT source, count(*), string_agg({}, ''::bytea) FROM ("
            " SELECT * FROM bars WHERE symbol = %(symbol)s AND timeframe = %(timeframe)s"
            " AND ts >= coalesce(%(start)s::timestamptz, '-infinity')"
            " AND ts < coalesce(%(end)s::timestamptz, 'infinity')"
            " AND ts > coalesce(%(after)s::timestamptz, '-infinity')"
            " ORDER BY ts LIMIT %(limit)s) page GROUP BY source"
        ).format(_READ_ROW)
        params: dict[str, Any] = {
            "symbol": symbol,
            "timeframe": timeframe,
            "start": start,
            "end": end,
            "after": None,
            "limit": _READ_PAGE_ROWS,
        }
        parts: list[np.ndarray] = []
        codes: list[np.ndarray] = []
        sources: list[str] = []
        with self._lock, _mapped_errors(self._where):
            conn = self._connection()
            with conn.transaction(), conn.cursor(binary=True) as cur:
                # One snapshot for every page.
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                while True:
                    cur.execute(query, params)
                    page = [self._parse_read(*row) for row in cur.fetchall()]
                    for source, rows in page:
                        if source not in sources:
                            sources.append(source)
                        parts.append(rows)
                        codes.append(np.full(len(rows), sources.index(source), dtype=np.int64))
                    n_page = sum(len(rows) for _, rows in page)
                    if n_page < _READ_PAGE_ROWS:
                        break
                    params["after"] = _pg_ts(int(max(rows["ts"].max() for _, rows in page)))
        if not parts:
            return empty_bars()
        rows = np.concatenate(parts)
        source_code = np.concatenate(codes)
        # Pages come in ts order; within a page the groups (and, in principle, the aggregate's
        # input) need not.
        if not bool((np.diff(rows["ts"]) > 0).all()):
            order = np.argsort(rows["ts"], kind="stable")
            rows, source_code = rows[order], source_code[order]
        constant = np.zeros(len(rows), dtype=np.int64)
        frame = pd.DataFrame(
            {
                "symbol": _text_column([symbol], constant),
                "timeframe": _text_column([timeframe], constant),
                "ts": _ts_from_us(rows["ts"]),
                **{
                    c: rows[c].astype(np.float64)
                    for c in ("open", "high", "low", "close", "volume")
                },
                "source": _text_column(sources, source_code),
                "ingested_at": _ts_from_us(rows["ingested_at"]),
            }
        )
        return to_canonical_frame(frame)

    def _parse_read(self, source: str, count: int, data: bytes | None) -> tuple[str, np.ndarray]:
        """One source's bars of a read_bars page, from the packed bytea."""
        size = len(data) if data is not None else 0
        if size != count * _READ_DTYPE.itemsize:
            # A NULL in any packed column drops its bar from the bytea; the schema forbids them.
            msg = (
                f"TimescaleDB at {self._where} sent {size} bytes for {count} bars of source "
                f"{source!r} (NULL values in bars?); check the bars table's NOT NULL constraints"
            )
            raise StoreError(msg)
        return str(source), np.frombuffer(data or b"", dtype=_READ_DTYPE)

    def _fetch(self, query: Any, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock, _mapped_errors(self._where):
            with self._connection().cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall()

    def last_ts(self, symbol: str, timeframe: str) -> datetime | None:
        check_symbol(symbol)
        check_timeframe(timeframe)
        rows = self._fetch(
            "SELECT max(ts) FROM bars WHERE symbol = %s AND timeframe = %s", (symbol, timeframe)
        )
        value = rows[0][0]
        return value.astimezone(UTC) if value is not None else None

    def list_series(self) -> list[tuple[str, str]]:
        rows = self._fetch("SELECT symbol, timeframe FROM series ORDER BY symbol, timeframe")
        return [(str(s), str(t)) for s, t in rows]

    def count_bars(self, symbol: str, timeframe: str) -> int:
        check_symbol(symbol)
        check_timeframe(timeframe)
        rows = self._fetch(
            "SELECT count(*) FROM bars WHERE symbol = %s AND timeframe = %s", (symbol, timeframe)
        )
        return int(rows[0][0])

    def resample(
        self,
        symbol: str,
        timeframe: str,
        to_timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        check_symbol(symbol)
        check_range(start, end)
        _, width_ns = check_resample(timeframe, to_timeframe)
        view = _CAGGS.get(to_timeframe) if self._capabilities["continuous_aggregates"] else None
        aligned = all(t is None or pd.Timestamp(t).value % width_ns == 0 for t in (start, end))
        origin = pd.Timestamp(bucket_origin_ns(to_timeframe), tz="UTC").to_pydatetime()
        if view is not None and aligned:
            rows = self._resample_cagg(view, symbol, timeframe, start, end)
        else:
            rows = self._fetch(
                """
                SELECT time_bucket(%s::interval, ts, %s::timestamptz) AS bk,
                       first(open, ts), max(high), min(low), last(close, ts), sum(volume),
                       max(ingested_at)
                FROM bars
                WHERE symbol = %s AND timeframe = %s
                  AND ts >= coalesce(%s, '-infinity'::timestamptz)
                  AND ts < coalesce(%s, 'infinity'::timestamptz)
                GROUP BY bk ORDER BY bk
                """,
                (TIMEFRAMES[to_timeframe], origin, symbol, timeframe, start, end),
            )
        if not rows:
            return empty_bars()
        cols = list(zip(*rows, strict=True))
        n = len(rows)
        return bars_from_columns(
            {
                "symbol": [symbol] * n,
                "timeframe": [to_timeframe] * n,
                "ts": cols[0],
                "open": cols[1],
                "high": cols[2],
                "low": cols[3],
                "close": cols[4],
                "volume": cols[5],
                "source": [f"resample:{timeframe}"] * n,
                "ingested_at": cols[6],
            }
        )

    def _resample_cagg(
        self,
        view: str,
        symbol: str,
        timeframe: str,
        start: datetime | None,
        end: datetime | None,
    ) -> list[tuple[Any, ...]]:
        qualified = f"{self._schema}.{view}"
        with self._lock, _mapped_errors(self._where):
            conn = self._connection()
            # Materialize invalidated buckets of the window first, so the answer is exact.
            conn.execute("CALL refresh_continuous_aggregate(%s, %s, %s)", (qualified, start, end))
        return self._fetch(
            sql.SQL(
                "SELECT bucket, open, high, low, close, volume, ingested_at FROM {} "
                "WHERE symbol = %s AND timeframe = %s"
                " AND bucket >= coalesce(%s, '-infinity'::timestamptz)"
                " AND bucket < coalesce(%s, 'infinity'::timestamptz) ORDER BY bucket"
            ).format(sql.Identifier(view)),
            (symbol, timeframe, start, end),
        )

    # quarantine ------------------------------------------------------------------------------

    def upsert_quarantine(self, frame: pd.DataFrame) -> int:
        rows = canonical_quarantine(frame)
        if rows.empty:
            return 0
        cols = list(QUARANTINE_COLUMNS)
        with self._lock, _mapped_errors(self._where):
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "CREATE TEMP TABLE cf_stage_quarantine (LIKE quarantine) ON COMMIT DROP"
                )
                with cur.copy("COPY cf_stage_quarantine FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(
                        ["text", "text", "timestamptz", "text", "text", "text", "text", "text",
                         "text", "timestamptz"]
                    )  # fmt: skip
                    for rec in rows.itertuples(index=False, name=None):
                        copy.write_row(
                            [None if (c in ("ts",) and pd.isna(v)) else v
                             for c, v in zip(cols, rec, strict=True)]
                        )  # fmt: skip
                cur.execute(
                    """
                    INSERT INTO quarantine AS q SELECT * FROM cf_stage_quarantine
                    ON CONFLICT (symbol, timeframe, source, row_fingerprint, reason)
                    DO UPDATE SET ts = EXCLUDED.ts, raw = EXCLUDED.raw,
                        detail = EXCLUDED.detail, run_id = EXCLUDED.run_id,
                        quarantined_at = EXCLUDED.quarantined_at
                    WHERE (q.ts, q.raw, q.detail) IS DISTINCT FROM
                          (EXCLUDED.ts, EXCLUDED.raw, EXCLUDED.detail)
                    """
                )
                return int(cur.rowcount)

    def read_quarantine(
        self, symbol: str | None = None, timeframe: str | None = None
    ) -> pd.DataFrame:
        if symbol is not None:
            check_symbol(symbol)
        if timeframe is not None:
            check_timeframe(timeframe)
        rows = self._fetch(
            sql.SQL(
                "SELECT {} FROM quarantine WHERE (%s::text IS NULL OR symbol = %s)"
                " AND (%s::text IS NULL OR timeframe = %s)"
                " ORDER BY symbol, timeframe, quarantined_at, row_fingerprint, reason"
            ).format(sql.SQL(", ").join(map(sql.Identifier, QUARANTINE_COLUMNS))),
            (symbol, symbol, timeframe, timeframe),
        )
        if not rows:
            return empty_quarantine()
        frame = pd.DataFrame.from_records(rows, columns=list(QUARANTINE_COLUMNS))
        for col in ("ts", "quarantined_at"):
            frame[col] = pd.to_datetime(frame[col], utc=True)
        return canonical_quarantine(frame)

    # records ---------------------------------------------------------------------------------

    def upsert_records(self, table: str, frame: pd.DataFrame, key: Sequence[str]) -> int:
        batch, key_cols, kinds = prepare_records(table, frame, key)
        with self._lock, _mapped_errors(self._where):
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO cf_record_tables (tbl, key_columns, kinds) VALUES (%s, %s, %s) "
                    "ON CONFLICT (tbl) DO NOTHING",
                    (table, json.dumps(key_cols), json.dumps(list(kinds.items()))),
                )
                cur.execute(
                    "SELECT key_columns, kinds FROM cf_record_tables WHERE tbl = %s FOR UPDATE",
                    (table,),
                )
                stored_key, stored_pairs = cur.fetchone()
                stored_kinds = dict(stored_pairs)  # pairs: jsonb objects do not keep order
                if list(stored_key) != key_cols:
                    msg = (
                        f"records table {table!r} is keyed on {list(stored_key)}, not "
                        f"{key_cols}; use the same key or a new table"
                    )
                    raise StoreError(msg)
                merged = merge_kinds(stored_kinds, kinds)
                if merged != stored_kinds:
                    cur.execute(
                        "UPDATE cf_record_tables SET kinds = %s WHERE tbl = %s",
                        (json.dumps(list(merged.items())), table),
                    )
                cur.execute(
                    "CREATE TEMP TABLE cf_stage_records (key text, payload jsonb) ON COMMIT DROP"
                )
                with cur.copy("COPY cf_stage_records (key, payload) FROM STDIN") as copy:
                    for row in encode_rows(batch, merged):
                        payload = {c: v for c, v in row.items() if v is not None}
                        copy.write_row((key_text(row, key_cols), json.dumps(payload)))
                cur.execute(
                    """
                    INSERT INTO cf_records AS r (tbl, key, payload)
                    SELECT %s, key, payload FROM cf_stage_records
                    ON CONFLICT (tbl, key) DO UPDATE SET payload = EXCLUDED.payload
                    WHERE r.payload IS DISTINCT FROM EXCLUDED.payload
                    """,
                    (table,),
                )
                return int(cur.rowcount)

    def read_records(self, table: str) -> pd.DataFrame:
        check_table(table)
        meta = self._fetch(
            "SELECT key_columns, kinds FROM cf_record_tables WHERE tbl = %s", (table,)
        )
        if not meta:
            return pd.DataFrame()
        key_cols, kind_pairs = meta[0]
        kinds = dict(kind_pairs)
        rows = self._fetch("SELECT payload FROM cf_records WHERE tbl = %s", (table,))
        return decode_frame([r[0] for r in rows], kinds, key_cols)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
