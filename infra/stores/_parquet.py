"""The embedded store: Parquet files under hive-style paths, bars in time chunks.

Bars of one (symbol, timeframe) live in time-chunked files (one per calendar month for intraday
timeframes below 1h, one per year otherwise) listed by a small manifest (`_manifest.json`, with
each chunk's row count and ts range). An upsert rewrites only the chunks its rows fall in: new
chunk files under fresh names, then the manifest replaced atomically (temp file in the same
directory, fsync, os.replace), then the superseded files removed. A reader therefore sees the
whole batch or none of it, and a crash at any point leaves the previous manifest valid. Writers
of one partition serialise on an fcntl lock, so concurrent writers never lose updates. Range
reads open only the chunks whose ts range meets the range.

Opening the store migrates the single-file layout of earlier versions (`part.parquet`) into
chunks and removes what killed writers left behind (temporaries, unreferenced chunk files) in
partitions no writer holds. Temp files are never read as data.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from infra.stores._base import (
    VALUE_COLUMNS,
    BarStore,
    StoreError,
    StoreUnavailableError,
    canonical_bars,
    canonical_quarantine,
    check_range,
    check_resample,
    check_symbol,
    check_timeframe,
    empty_quarantine,
    frame_to_table,
    resample_frame,
    ts_to_ns,
)
from infra.stores._records import (
    add_instance,
    decode_frame,
    encode_rows,
    key_text,
    merge_kinds,
    needs_instance,
    prepare_records,
)
from quality.schema import (
    BAR_SCHEMA,
    QUARANTINE_COLUMNS,
    QUARANTINE_KEY,
    QUARANTINE_SCHEMA,
    TIMEFRAMES,
    empty_bars,
    to_canonical_frame,
)

__all__ = ["MAX_NAME_BYTES", "ParquetBarStore"]

logger = logging.getLogger(__name__)

PART = "part.parquet"  # the single file of a partition (quarantine; bars before chunking)
MANIFEST = "_manifest.json"
_TMP_PREFIX = ".tmp-"
_CHUNK_PREFIX = "chunk-"
_META_KEY = b"candleflow.records"
# Most file systems (ext4, xfs, apfs, ntfs) limit one path component to 255 bytes.
MAX_NAME_BYTES = 255
_MANIFEST_READ_TRIES = 5
_SEGMENT_PREFIX = "seg-"
_MAX_SEGMENTS = 64  # records segments before they are compacted into one


def _encode(name: str) -> str:
    return quote(name, safe="")


def _chunk_unit(timeframe: str) -> str:
    """numpy datetime unit of a chunk: a month of bars below 1h (43,200 1m bars), else a year."""
    return "M" if TIMEFRAMES[timeframe] < TIMEFRAMES["1h"] else "Y"


def _chunk_ids(ts_ns: np.ndarray, unit: str) -> np.ndarray:
    """Months or years since 1970 of each ns timestamp (integers: cheap to compare)."""
    return ts_ns.view("datetime64[ns]").astype(f"datetime64[{unit}]").view(np.int64)


def _chunk_label(chunk_id: int, unit: str) -> str:
    """'2024-03' (month) or '2024' (year)."""
    return str(np.datetime64(int(chunk_id), unit))


def _lock_file(directory: Path) -> Path:
    return directory / ".lock"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive advisory lock on a partition directory, held for a read-merge-write."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(_lock_file(directory), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _try_locked(directory: Path) -> Iterator[bool]:
    """The partition lock if no one holds it now (True), else False at once; for housekeeping."""
    with open(_lock_file(directory), "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _tmp_path(path: Path) -> Path:
    return path.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}-{path.name}"


def _fsync_replace(tmp: Path, path: Path) -> None:
    try:
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = _tmp_path(path)
    try:
        pq.write_table(table, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_replace(tmp, path)


def _write_text_atomic(text: str, path: Path) -> None:
    tmp = _tmp_path(path)
    try:
        tmp.write_text(text)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_replace(tmp, path)


def _read_table(
    path: Path, schema: pa.Schema | None, filters: list[tuple] | None = None
) -> pa.Table:
    try:
        return pq.read_table(path, schema=schema, filters=filters)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowInvalid) as exc:
        msg = f"cannot read {path}: {exc}; restore it from a backup or delete and re-ingest"
        raise StoreError(msg) from exc


class _Manifest:
    """The chunk list of one bar partition: label -> {file, rows, min_ts, max_ts} (ns)."""

    def __init__(self, unit: str, chunks: dict[str, dict[str, Any]] | None = None) -> None:
        self.unit = unit
        self.chunks: dict[str, dict[str, Any]] = dict(sorted((chunks or {}).items()))

    @classmethod
    def load(cls, directory: Path) -> _Manifest | None:
        path = directory / MANIFEST
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            msg = f"cannot read {path}: {exc}; restore it from a backup or delete and re-ingest"
            raise StoreError(msg) from exc
        return cls(raw["unit"], raw["chunks"])

    def save(self, directory: Path) -> None:
        text = json.dumps({"version": 1, "unit": self.unit, "chunks": self.chunks}, indent=1)
        _write_text_atomic(text, directory / MANIFEST)

    @property
    def rows(self) -> int:
        return sum(int(c["rows"]) for c in self.chunks.values())

    def files(self) -> set[str]:
        return {c["file"] for c in self.chunks.values()}

    def in_range(self, start_ns: int | None, end_ns: int | None) -> list[str]:
        """Files of the chunks that hold a ts in [start, end), in time order."""
        out = []
        for c in self.chunks.values():
            if start_ns is not None and int(c["max_ts"]) < start_ns:
                continue
            if end_ns is not None and int(c["min_ts"]) >= end_ns:
                continue
            out.append(c["file"])
        return out


class _RecordsState:
    """A records table: key columns, column kinds, segment files in order, and its rows
    (encoded, by key text); `signature` identifies the manifest the rows were read from."""

    def __init__(
        self,
        key: list[str] | None,
        kinds: dict[str, str],
        segments: list[str],
        current: dict[str, dict[str, Any]],
    ) -> None:
        self.key, self.kinds, self.segments, self.current = key, kinds, segments, current
        self.signature: tuple[int, int, int] | None = None

    @staticmethod
    def stat(directory: Path) -> tuple[int, int, int] | None:
        try:
            st = (directory / MANIFEST).stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    @classmethod
    def load(cls, directory: Path) -> _RecordsState:
        path = directory / MANIFEST
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(None, {}, [], {})
        except (OSError, ValueError) as exc:
            msg = f"cannot read {path}: {exc}; restore it from a backup or delete the table"
            raise StoreError(msg) from exc
        key, kinds = list(raw["key"]), dict(raw["kinds"])
        state = cls(key, kinds, list(raw["segments"]), {})
        for name in state.segments:
            table = _read_table(directory / name, None)
            frame = decode_frame(table.to_pandas().to_dict("records"), kinds, key)
            for row in encode_rows(frame, kinds):
                full = {c: row.get(c) for c in kinds}
                state.current[key_text(full, key)] = full
        state.signature = cls.stat(directory)
        return state

    @staticmethod
    def load_names(directory: Path) -> list[str]:
        """The segment files the manifest lists (none without a manifest)."""
        try:
            return list(json.loads((directory / MANIFEST).read_text())["segments"])
        except FileNotFoundError:
            return []

    def save(self, directory: Path) -> None:
        text = json.dumps({"version": 1, "key": self.key, "kinds": self.kinds,
                           "segments": self.segments})  # fmt: skip
        _write_text_atomic(text, directory / MANIFEST)
        self.signature = self.stat(directory)


class ParquetBarStore(BarStore):
    """Bars under data_dir/bars/symbol=<S>/timeframe=<TF>/chunk-*.parquet (S URL-quoted)."""

    def __init__(self, data_dir: Path) -> None:
        self._root = Path(data_dir)
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create the data directory {self._root}: {exc}; set CANDLEFLOW_HOME"
            raise StoreUnavailableError(msg) from exc
        self._closed = False
        self._records_cache: dict[str, _RecordsState] = {}
        self._housekeep()

    @property
    def data_dir(self) -> Path:
        return self._root

    def _partition(self, area: str, symbol: str, timeframe: str) -> Path:
        check_symbol(symbol)
        check_timeframe(timeframe)
        name = f"symbol={_encode(symbol)}"
        if len(name.encode()) > MAX_NAME_BYTES:
            msg = (
                f"symbol {symbol[:40]!r}... is too long for the parquet store: its directory "
                f"name would be {len(name.encode())} bytes, over the file system's "
                f"{MAX_NAME_BYTES}; use a shorter symbol (at most about "
                f"{MAX_NAME_BYTES - len('symbol=')} ASCII letters, digits, '-', '_' or '.')"
            )
            raise StoreError(msg)
        return self._root / area / name / f"timeframe={timeframe}"

    def _check_open(self) -> None:
        if self._closed:
            msg = "this store is closed; open a new one with open_store()"
            raise StoreError(msg)

    # housekeeping ----------------------------------------------------------------------------

    def _housekeep(self) -> None:
        """Migrate single-file bar partitions and drop what killed writers left behind."""
        bars = self._root / "bars"
        for directory in sorted(p.parent for p in bars.glob("symbol=*/timeframe=*/.lock")):
            legacy = (directory / PART).exists()
            stale = any(directory.glob(f"{_TMP_PREFIX}*"))
            if not (legacy or stale or self._has_orphans(directory)):
                continue
            with _try_locked(directory) as free:
                if not free:
                    continue  # a writer is at work there; it cleans up after itself
                self._remove_temporaries(directory)
                if legacy:
                    self._migrate_legacy(directory)
                self._remove_orphans(directory)
        for directory in sorted(p.parent for p in (self._root / "quarantine").glob("*/*/.lock")):
            if any(directory.glob(f"{_TMP_PREFIX}*")):
                with _try_locked(directory) as free:
                    if free:
                        self._remove_temporaries(directory)
        records = self._root / "records"
        for directory in sorted(p.parent for p in records.glob("*/.lock")):
            with _try_locked(directory) as free:
                if not free:
                    continue
                self._remove_temporaries(directory)
                listed = set(_RecordsState.load_names(directory))
                for seg in sorted(directory.glob(f"{_SEGMENT_PREFIX}*.parquet")):
                    if seg.name not in listed:
                        self._unlink_stale(seg)
        for tmp in sorted(records.glob(f"{_TMP_PREFIX}*")):
            table = tmp.name.split("-", 2)[-1].removesuffix(".parquet")
            lock_dir = records / f".{table}"
            if lock_dir.is_dir():
                with _try_locked(lock_dir) as free:
                    if free:
                        self._unlink_stale(tmp)
            else:
                self._unlink_stale(tmp)

    @staticmethod
    def _unlink_stale(path: Path) -> None:
        logger.warning("removing %s, left by an interrupted write", path)
        path.unlink(missing_ok=True)

    def _remove_temporaries(self, directory: Path) -> None:
        for tmp in sorted(directory.glob(f"{_TMP_PREFIX}*")):
            self._unlink_stale(tmp)

    @staticmethod
    def _has_orphans(directory: Path) -> bool:
        manifest = _Manifest.load(directory)
        present = {p.name for p in directory.glob(f"{_CHUNK_PREFIX}*.parquet")}
        return bool(present - (manifest.files() if manifest is not None else set()))

    def _remove_orphans(self, directory: Path) -> None:
        manifest = _Manifest.load(directory)
        keep = manifest.files() if manifest is not None else set()
        for path in sorted(directory.glob(f"{_CHUNK_PREFIX}*.parquet")):
            if path.name not in keep:
                self._unlink_stale(path)

    def _migrate_legacy(self, directory: Path) -> None:
        """Split a single-file partition into chunks (the caller holds the lock)."""
        part = directory / PART
        if _Manifest.load(directory) is None:
            frame = _read_table(part, BAR_SCHEMA).to_pandas()
            frame = to_canonical_frame(frame.sort_values("ts", kind="stable"))
            timeframe = directory.name.removeprefix("timeframe=")
            manifest = _Manifest(_chunk_unit(timeframe))
            self._write_chunks(directory, manifest, frame_to_table(frame, BAR_SCHEMA))
            logger.info("migrated %s into %d chunk(s)", part, len(manifest.chunks))
        part.unlink()  # a manifest exists only once every chunk of the old file is written

    # bars ------------------------------------------------------------------------------------

    def upsert_bars(self, frame: pd.DataFrame) -> int:
        self._check_open()
        bars = canonical_bars(frame)
        groups = [
            (self._partition("bars", str(s), str(tf)), group)
            for (s, tf), group in bars.groupby(["symbol", "timeframe"], sort=True)
        ]  # every partition path checked before anything is written
        return sum(self._upsert_bar_partition(directory, g) for directory, g in groups)

    def _upsert_bar_partition(self, directory: Path, new: pd.DataFrame) -> int:
        timeframe = directory.name.removeprefix("timeframe=")
        new = new.sort_values("ts", kind="stable").reset_index(drop=True)
        with _locked(directory):
            if (directory / PART).exists():
                self._migrate_legacy(directory)
            manifest = _Manifest.load(directory) or _Manifest(_chunk_unit(timeframe))
            ids = _chunk_ids(ts_to_ns(new["ts"]), manifest.unit)
            changed_tables = []
            written = 0
            for chunk_id in np.unique(ids):
                rows = new.loc[ids == chunk_id].reset_index(drop=True)
                entry = manifest.chunks.get(_chunk_label(chunk_id, manifest.unit))
                if entry is None:
                    changed_tables.append(frame_to_table(rows, BAR_SCHEMA))
                    written += len(rows)
                    continue
                old = _read_table(directory / entry["file"], BAR_SCHEMA)
                if int(ts_to_ns(rows["ts"])[0]) > int(entry["max_ts"]):
                    # Appending after the chunk's newest bar (the live and daily-ingest case):
                    # no row can match, so the merge is a concatenation in Arrow.
                    merged = pa.concat_tables([old, frame_to_table(rows, BAR_SCHEMA)])
                    changed_tables.append(merged)
                    written += len(rows)
                    continue
                merged_frame, changed = _merge(
                    to_canonical_frame(old.to_pandas()), rows, VALUE_COLUMNS
                )
                if changed:
                    changed_tables.append(frame_to_table(merged_frame, BAR_SCHEMA))
                    written += changed
            if changed_tables:
                self._write_chunks(directory, manifest, *changed_tables)
        return written

    @staticmethod
    def _write_chunks(directory: Path, manifest: _Manifest, *tables: pa.Table) -> None:
        """Write tables (sorted by ts) as new chunk files, one per chunk, then the manifest."""
        superseded = []
        written = []
        try:
            for table in tables:
                ts = table.column("ts").cast(pa.int64()).to_numpy()
                ids = _chunk_ids(ts, manifest.unit)
                cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
                for lo, hi in zip(
                    np.concatenate([[0], cuts]), np.concatenate([cuts, [len(ts)]]), strict=True
                ):
                    label = _chunk_label(ids[lo], manifest.unit)
                    name = f"{_CHUNK_PREFIX}{label}-{uuid.uuid4().hex[:12]}.parquet"
                    pq.write_table(table.slice(lo, hi - lo), directory / name)
                    written.append(directory / name)
                    old = manifest.chunks.get(label)
                    if old is not None:
                        superseded.append(directory / old["file"])
                    manifest.chunks[label] = {
                        "file": name,
                        "rows": int(hi - lo),
                        "min_ts": int(ts[lo]),
                        "max_ts": int(ts[hi - 1]),
                    }
            manifest.chunks = dict(sorted(manifest.chunks.items()))
            for path in written:
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
            manifest.save(directory)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        for path in superseded:
            path.unlink(missing_ok=True)

    def _read_chunks(
        self, directory: Path, start_ns: int | None, end_ns: int | None, filters: list[tuple]
    ) -> pa.Table | None:
        """The bars of the chunks in range; retried if a writer replaced a chunk meanwhile."""
        for _ in range(_MANIFEST_READ_TRIES):
            manifest = _Manifest.load(directory)
            if manifest is None:
                return None
            try:
                tables = [
                    _read_table(directory / f, BAR_SCHEMA, filters or None)
                    for f in manifest.in_range(start_ns, end_ns)
                ]
            except FileNotFoundError:
                continue  # superseded after we read the manifest: read the new one
            if not tables:
                return BAR_SCHEMA.empty_table()
            return pa.concat_tables(tables)
        msg = f"{directory} keeps changing under a reader; retry when writes settle"
        raise StoreError(msg)

    def _bar_dir(self, symbol: str, timeframe: str) -> Path:
        directory = self._partition("bars", symbol, timeframe)
        if (directory / PART).exists():
            with _locked(directory):
                if (directory / PART).exists():
                    self._migrate_legacy(directory)
        return directory

    def read_bars(
        self,
        symbol: str,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        self._check_open()
        check_range(start, end)
        start_ns = pd.Timestamp(start).tz_convert("UTC").value if start is not None else None
        end_ns = pd.Timestamp(end).tz_convert("UTC").value if end is not None else None
        filters = []
        if start is not None:
            filters.append(("ts", ">=", pd.Timestamp(start).tz_convert("UTC")))
        if end is not None:
            filters.append(("ts", "<", pd.Timestamp(end).tz_convert("UTC")))
        table = self._read_chunks(self._bar_dir(symbol, timeframe), start_ns, end_ns, filters)
        if table is None or table.num_rows == 0:
            return empty_bars()
        frame = table.to_pandas()
        if not frame["ts"].is_monotonic_increasing:
            frame = frame.sort_values("ts", kind="stable")
        return to_canonical_frame(frame)

    def last_ts(self, symbol: str, timeframe: str) -> datetime | None:
        self._check_open()
        manifest = _Manifest.load(self._bar_dir(symbol, timeframe))
        if manifest is None or not manifest.chunks:
            return None
        newest = max(int(c["max_ts"]) for c in manifest.chunks.values())
        return pd.Timestamp(newest, tz="UTC").to_pydatetime()

    def list_series(self) -> list[tuple[str, str]]:
        self._check_open()
        out = set()
        for pattern in (MANIFEST, PART):
            for part in (self._root / "bars").glob(f"symbol=*/timeframe=*/{pattern}"):
                symbol = unquote(part.parent.parent.name.removeprefix("symbol="))
                out.add((symbol, part.parent.name.removeprefix("timeframe=")))
        return sorted(out)

    def count_bars(self, symbol: str, timeframe: str) -> int:
        self._check_open()
        manifest = _Manifest.load(self._bar_dir(symbol, timeframe))
        return manifest.rows if manifest is not None else 0

    def resample(
        self,
        symbol: str,
        timeframe: str,
        to_timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        check_resample(timeframe, to_timeframe)
        return resample_frame(self.read_bars(symbol, timeframe, start, end), to_timeframe)

    # quarantine ------------------------------------------------------------------------------
    # Quarantined rows are few per series: one file per partition, rewritten whole.

    @staticmethod
    def _read_part(path: Path, schema: pa.Schema) -> pd.DataFrame | None:
        if not path.exists():
            return None
        return _read_table(path, schema).to_pandas()

    def upsert_quarantine(self, frame: pd.DataFrame) -> int:
        self._check_open()
        rows = canonical_quarantine(frame)
        written = 0
        for (symbol, timeframe), group in rows.groupby(["symbol", "timeframe"], sort=True):
            directory = self._partition("quarantine", str(symbol), str(timeframe))
            with _locked(directory):
                path = directory / PART
                old = self._read_part(path, QUARANTINE_SCHEMA)
                old = canonical_quarantine(old) if old is not None else empty_quarantine()
                merged, changed = _merge_keyed(
                    old, group.reset_index(drop=True), list(QUARANTINE_KEY), ("ts", "raw", "detail")
                )
                if changed:
                    table = frame_to_table(merged, QUARANTINE_SCHEMA)
                    _write_atomic(table, path)
                written += changed
        return written

    def read_quarantine(
        self, symbol: str | None = None, timeframe: str | None = None
    ) -> pd.DataFrame:
        self._check_open()
        sym = f"symbol={_encode(check_symbol(symbol))}" if symbol is not None else "symbol=*"
        tf = f"timeframe={check_timeframe(timeframe)}" if timeframe is not None else "timeframe=*"
        frames = [
            self._read_part(p, QUARANTINE_SCHEMA)
            for p in sorted((self._root / "quarantine").glob(f"{sym}/{tf}/{PART}"))
        ]
        frames = [f for f in frames if f is not None and not f.empty]
        if not frames:
            return empty_quarantine()
        out = canonical_quarantine(pd.concat(frames, ignore_index=True))
        return out.sort_values(
            ["symbol", "timeframe", "quarantined_at"], kind="stable"
        ).reset_index(drop=True)

    # records ---------------------------------------------------------------------------------
    # One directory per table: immutable segment files, each the rows one upsert changed, listed
    # in order by a manifest (key, column kinds, segments) replaced atomically. An upsert reads
    # nothing but the manifest when this store wrote it last (the table's rows are cached), so
    # a live sink's flush costs its own rows, not the table's history; past _MAX_SEGMENTS the
    # segments are compacted into one.

    def upsert_records(self, table: str, frame: pd.DataFrame, key: Sequence[str]) -> int:
        self._check_open()
        batch, key_cols, kinds = prepare_records(table, frame, key)
        directory = self._root / "records" / table
        with _locked(directory):
            state = self._records_state(table, directory)
            if state.key is not None and state.key != key_cols:
                msg = (
                    f"records table {table!r} is keyed on {state.key}, not {key_cols}; "
                    "use the same key or a new table"
                )
                raise StoreError(msg)
            try:
                return self._append_segment(table, directory, state, batch, key_cols, kinds)
            except BaseException:
                self._records_cache.pop(table, None)  # its rows may hold the failed batch
                raise

    def _append_segment(
        self,
        table: str,
        directory: Path,
        state: _RecordsState,
        batch: pd.DataFrame,
        key_cols: list[str],
        kinds: dict[str, str],
    ) -> int:
        kinds = merge_kinds(state.kinds, kinds)
        changed = []
        for row in encode_rows(batch, kinds):
            full = {c: row.get(c) for c in kinds}
            k = key_text(full, key_cols)
            if state.current.get(k) != full:
                state.current[k] = full
                changed.append(full)
        if not changed:
            return 0
        rows, superseded = changed, []
        if len(state.segments) + 1 > _MAX_SEGMENTS:
            rows, superseded, state.segments = list(state.current.values()), state.segments, []
        name = f"{_SEGMENT_PREFIX}{uuid.uuid4().hex}.parquet"
        pq.write_table(frame_to_table(decode_frame(rows, kinds, key_cols)), directory / name)
        try:
            with open(directory / name, "rb") as handle:
                os.fsync(handle.fileno())
            state.key, state.kinds = key_cols, kinds
            state.segments.append(name)
            state.save(directory)
        except BaseException:
            (directory / name).unlink(missing_ok=True)
            raise
        for old in superseded:
            (directory / old).unlink(missing_ok=True)
        self._records_cache[table] = state
        return len(changed)

    def _records_state(self, table: str, directory: Path) -> _RecordsState:
        """The table's rows (the caller holds the lock): from the cache when the manifest on
        disk is the one this store wrote, else read from the segments."""
        legacy = self._root / "records" / f"{table}.parquet"
        if legacy.exists():
            self._migrate_legacy_records(legacy, directory)
        cached = self._records_cache.get(table)
        if cached is not None and cached.signature == _RecordsState.stat(directory):
            return cached
        state = _RecordsState.load(directory)
        if state.key is not None and needs_instance(table, state.key):
            state = self._migrate_instance(table, directory, state, state.key)
        self._records_cache[table] = state
        return state

    @staticmethod
    def _migrate_instance(
        table: str, directory: Path, old: _RecordsState, old_key: list[str]
    ) -> _RecordsState:
        """A live table written before the instance key: its rows, under LEGACY_INSTANCE, become
        one segment keyed on the instance (the caller holds the lock)."""
        frame = decode_frame(list(old.current.values()), old.kinds, old_key)
        frame, key, kinds = add_instance(frame, old_key, old.kinds)
        name = f"{_SEGMENT_PREFIX}{uuid.uuid4().hex}.parquet"
        pq.write_table(frame_to_table(frame), directory / name)
        with open(directory / name, "rb") as handle:
            os.fsync(handle.fileno())
        rows = {}
        for row in encode_rows(frame, kinds):
            full = {c: row.get(c) for c in kinds}
            rows[key_text(full, key)] = full
        state = _RecordsState(key, kinds, [name], rows)
        state.save(directory)
        for superseded in old.segments:
            (directory / superseded).unlink(missing_ok=True)
        logger.info("migrated records table %s: keyed on %s", table, key)
        return state

    @staticmethod
    def _migrate_legacy_records(legacy: Path, directory: Path) -> None:
        """A single-file table of earlier versions becomes the first segment of a directory."""
        meta = json.loads((pq.read_schema(legacy).metadata or {})[_META_KEY])
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{_SEGMENT_PREFIX}legacy-{uuid.uuid4().hex[:8]}.parquet"
        os.replace(legacy, directory / name)
        state = _RecordsState(list(meta["key"]), dict(meta["kinds"]), [name], {})
        state.save(directory)
        logger.info("migrated %s into %s", legacy, directory)

    def read_records(self, table: str) -> pd.DataFrame:
        self._check_open()
        from infra.stores._records import check_table

        directory = self._root / "records" / check_table(table)
        if not directory.is_dir() and not (self._root / "records" / f"{table}.parquet").exists():
            return pd.DataFrame()
        with _locked(directory):
            state = self._records_state(table, directory)
        if state.key is None:
            return pd.DataFrame()
        return decode_frame(list(state.current.values()), state.kinds, state.key)

    def close(self) -> None:
        self._closed = True


def _merge(
    old: pd.DataFrame, new: pd.DataFrame, value_columns: Sequence[str]
) -> tuple[pd.DataFrame, int]:
    """Merge one partition's sorted bars with new ones on ts; identical rows stay untouched."""
    old_ts = ts_to_ns(old["ts"])
    new_ts = ts_to_ns(new["ts"])
    pos = np.searchsorted(old_ts, new_ts)
    hit = pos < len(old_ts)
    hit[hit] = old_ts[pos[hit]] == new_ts[hit]
    same = np.zeros(len(new), dtype=bool)
    if hit.any():
        matched_old = old.iloc[pos[hit]].reset_index(drop=True)
        matched_new = new.loc[hit].reset_index(drop=True)
        eq = np.ones(len(matched_new), dtype=bool)
        for col in value_columns:
            eq &= matched_old[col].to_numpy() == matched_new[col].to_numpy()
        same[np.flatnonzero(hit)[eq]] = True
    write = new.loc[~same]
    if write.empty:
        return old, 0
    replaced = np.zeros(len(old), dtype=bool)
    replaced[pos[hit & ~same]] = True
    merged = pd.concat([old.loc[~replaced], write], ignore_index=True)
    merged = merged.sort_values("ts", kind="stable").reset_index(drop=True)
    return merged, len(write)


def _merge_keyed(
    old: pd.DataFrame, new: pd.DataFrame, key: list[str], value_columns: Sequence[str]
) -> tuple[pd.DataFrame, int]:
    """Merge small keyed frames (quarantine); a row is rewritten only when its values differ."""
    old_idx = {tuple(r): i for i, r in enumerate(old[key].itertuples(index=False, name=None))}
    keep_new = []
    drop_old = []
    for i, row in enumerate(new[key].itertuples(index=False, name=None)):
        j = old_idx.get(tuple(row))
        if j is None:
            keep_new.append(i)
            continue
        a, b = old.iloc[j], new.iloc[i]
        if any(not _same(a[c], b[c]) for c in value_columns):
            keep_new.append(i)
            drop_old.append(j)
    if not keep_new:
        return old, 0
    merged = pd.concat([old.drop(index=drop_old), new.iloc[keep_new]], ignore_index=True)
    merged = merged.sort_values([*key], kind="stable").reset_index(drop=True)
    return merged.loc[:, list(QUARANTINE_COLUMNS)], len(keep_new)


def _same(a: object, b: object) -> bool:
    if pd.isna(a) and pd.isna(b):  # type: ignore[arg-type]
        return True
    return bool(a == b)
