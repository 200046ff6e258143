"""The embedded store: one Parquet file per (symbol, timeframe) partition, hive-style paths.

Each write reads the partition, merges, and replaces the file atomically (temp file in the same
directory, then os.replace) under an fcntl lock, so concurrent writers never lose updates and a
crash mid-write leaves the previous file intact. Temp files are never read as data.
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
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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
    decode_frame,
    encode_rows,
    key_text,
    merge_kinds,
    prepare_records,
)
from quality.schema import (
    BAR_SCHEMA,
    QUARANTINE_COLUMNS,
    QUARANTINE_KEY,
    QUARANTINE_SCHEMA,
    empty_bars,
    to_canonical_frame,
)

__all__ = ["ParquetBarStore"]

logger = logging.getLogger(__name__)

PART = "part.parquet"
_TMP_PREFIX = ".tmp-"
_META_KEY = b"candleflow.records"


def _encode(name: str) -> str:
    return quote(name, safe="")


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive advisory lock on a partition directory, held for a read-merge-write."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}-{path.name}"
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise


class ParquetBarStore(BarStore):
    """Bars under data_dir/bars/symbol=<S>/timeframe=<TF>/part.parquet (S URL-quoted)."""

    def __init__(self, data_dir: Path) -> None:
        self._root = Path(data_dir)
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create the data directory {self._root}: {exc}; set CANDLEFLOW_HOME"
            raise StoreUnavailableError(msg) from exc
        self._closed = False

    @property
    def data_dir(self) -> Path:
        return self._root

    def _partition(self, area: str, symbol: str, timeframe: str) -> Path:
        check_symbol(symbol)
        check_timeframe(timeframe)
        return self._root / area / f"symbol={_encode(symbol)}" / f"timeframe={timeframe}"

    def _check_open(self) -> None:
        if self._closed:
            msg = "this store is closed; open a new one with open_store()"
            raise StoreError(msg)

    # bars ------------------------------------------------------------------------------------

    def upsert_bars(self, frame: pd.DataFrame) -> int:
        self._check_open()
        bars = canonical_bars(frame)
        written = 0
        for (symbol, timeframe), group in bars.groupby(["symbol", "timeframe"], sort=True):
            written += self._upsert_bar_partition(str(symbol), str(timeframe), group)
        return written

    def _upsert_bar_partition(self, symbol: str, timeframe: str, new: pd.DataFrame) -> int:
        directory = self._partition("bars", symbol, timeframe)
        with _locked(directory):
            path = directory / PART
            old = self._read_part(path, BAR_SCHEMA)
            old = to_canonical_frame(old) if old is not None else empty_bars()
            merged, changed = _merge(old, new.reset_index(drop=True), VALUE_COLUMNS)
            if changed:
                table = frame_to_table(merged, BAR_SCHEMA)
                _write_atomic(table, path)
        return changed

    @staticmethod
    def _read_part(
        path: Path, schema: pa.Schema, filters: list[tuple] | None = None
    ) -> pd.DataFrame | None:
        if not path.exists():
            return None
        try:
            table = pq.read_table(path, schema=schema, filters=filters)
        except (OSError, pa.ArrowInvalid) as exc:
            msg = f"cannot read {path}: {exc}; restore it from a backup or delete and re-ingest"
            raise StoreError(msg) from exc
        return table.to_pandas()

    def read_bars(
        self,
        symbol: str,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        self._check_open()
        check_range(start, end)
        filters = []
        if start is not None:
            filters.append(("ts", ">=", pd.Timestamp(start).tz_convert("UTC")))
        if end is not None:
            filters.append(("ts", "<", pd.Timestamp(end).tz_convert("UTC")))
        path = self._partition("bars", symbol, timeframe) / PART
        frame = self._read_part(path, BAR_SCHEMA, filters or None)
        if frame is None:
            return empty_bars()
        return to_canonical_frame(frame.sort_values("ts", kind="stable"))

    def last_ts(self, symbol: str, timeframe: str) -> datetime | None:
        self._check_open()
        path = self._partition("bars", symbol, timeframe) / PART
        if not path.exists():
            return None
        ts = pq.read_table(path, columns=["ts"], schema=BAR_SCHEMA).column("ts")
        if len(ts) == 0:
            return None
        return pd.Timestamp(pc.max(ts).as_py()).tz_convert("UTC").to_pydatetime()

    def list_series(self) -> list[tuple[str, str]]:
        self._check_open()
        out = []
        for part in (self._root / "bars").glob(f"symbol=*/timeframe=*/{PART}"):
            symbol = unquote(part.parent.parent.name.removeprefix("symbol="))
            out.append((symbol, part.parent.name.removeprefix("timeframe=")))
        return sorted(out)

    def count_bars(self, symbol: str, timeframe: str) -> int:
        self._check_open()
        path = self._partition("bars", symbol, timeframe) / PART
        return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0

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

    def upsert_records(self, table: str, frame: pd.DataFrame, key: Sequence[str]) -> int:
        self._check_open()
        batch, key_cols, kinds = prepare_records(table, frame, key)
        directory = self._root / "records"
        path = directory / f"{table}.parquet"
        with _locked(directory / f".{table}"):
            old_rows, old_key, old_kinds = self._load_records(path)
            if old_key is not None and old_key != key_cols:
                msg = (
                    f"records table {table!r} is keyed on {old_key}, not {key_cols}; "
                    "use the same key or a new table"
                )
                raise StoreError(msg)
            kinds = merge_kinds(old_kinds, kinds)
            current = {key_text(r, key_cols): r for r in encode_rows(old_rows, old_kinds)}
            changed = 0
            for row in encode_rows(batch, kinds):
                full = {c: row.get(c) for c in kinds}
                k = key_text(full, key_cols)
                if current.get(k) != full:
                    current[k] = full
                    changed += 1
            if changed:
                merged = decode_frame(list(current.values()), kinds, key_cols)
                meta = json.dumps({"key": key_cols, "kinds": kinds}).encode()
                arrow = frame_to_table(merged)
                arrow = arrow.replace_schema_metadata(
                    {**(arrow.schema.metadata or {}), _META_KEY: meta}
                )
                directory.mkdir(parents=True, exist_ok=True)
                _write_atomic(arrow, path)
        return changed

    @staticmethod
    def _load_records(path: Path) -> tuple[pd.DataFrame, list[str] | None, dict[str, str]]:
        if not path.exists():
            return pd.DataFrame(), None, {}
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[_META_KEY])
        frame = decode_frame(table.to_pandas().to_dict("records"), meta["kinds"], meta["key"])
        return frame, list(meta["key"]), dict(meta["kinds"])

    def read_records(self, table: str) -> pd.DataFrame:
        self._check_open()
        from infra.stores._records import check_table

        frame, _, _ = self._load_records(self._root / "records" / f"{check_table(table)}.parquet")
        return frame

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
