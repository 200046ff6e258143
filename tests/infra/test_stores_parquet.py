"""ParquetBarStore specifics: time chunks, atomic writes, housekeeping, paths, two writers."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from infra.stores import ParquetBarStore, StoreError
from infra.stores._base import frame_to_table
from quality.schema import BAR_SCHEMA
from tests.infra.test_stores_contract import make_bars


def _partition(root: Path, timeframe: str = "1h") -> Path:
    return next((root / "bars").glob(f"symbol=*/timeframe={timeframe}"))


def _chunk_files(root: Path, timeframe: str = "1h") -> dict[str, float]:
    part = _partition(root, timeframe)
    return {p.name: p.stat().st_mtime_ns for p in part.glob("chunk-*.parquet")}


def test_upsert_bars_when_crash_before_manifest_replace_then_old_data_intact(tmp_path, monkeypatch):
    store = ParquetBarStore(tmp_path)
    store.upsert_bars(make_bars(n=10))
    before = store.read_bars("BTC/USDT", "1h")
    files_before = set(_chunk_files(tmp_path))

    def crash(src, dst):
        assert Path(src).exists()  # the new manifest was fully written to the temp file
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.upsert_bars(make_bars(n=20).assign(close=-1.0))
    monkeypatch.undo()

    pd.testing.assert_frame_equal(store.read_bars("BTC/USDT", "1h"), before)
    assert store.count_bars("BTC/USDT", "1h") == 10
    assert set(_chunk_files(tmp_path)) == files_before  # the new chunk files were removed
    assert not list(_partition(tmp_path).glob(".tmp-*"))


def test_open_when_killed_writer_left_temporaries_then_they_are_removed(tmp_path):
    store = ParquetBarStore(tmp_path)
    store.upsert_bars(make_bars(n=10))
    part = _partition(tmp_path)
    # What a SIGKILLed writer leaves: a temp file and a chunk the manifest never listed.
    (part / ".tmp-deadbeef-part.parquet").write_bytes(b"half a parquet file")
    (part / "chunk-2024-0123456789ab.parquet").write_bytes(b"orphan")
    records = tmp_path / "records"
    records.mkdir()
    (records / ".tmp-deadbeef-live_orders.parquet").write_bytes(b"half")

    reopened = ParquetBarStore(tmp_path)

    assert not list(part.glob(".tmp-*"))
    assert not (part / "chunk-2024-0123456789ab.parquet").exists()
    assert not list(records.glob(".tmp-*"))
    assert reopened.count_bars("BTC/USDT", "1h") == 10


def test_open_when_partition_has_single_file_layout_then_migrated_to_chunks(tmp_path):
    bars = make_bars(n=24 * 40, start=pd.Timestamp("2023-12-20", tz="UTC"))
    part = tmp_path / "bars" / "symbol=BTC%2FUSDT" / "timeframe=1h"
    part.mkdir(parents=True)
    (part / ".lock").touch()
    pq.write_table(frame_to_table(bars, BAR_SCHEMA), part / "part.parquet")

    store = ParquetBarStore(tmp_path)

    assert not (part / "part.parquet").exists()
    assert sorted(json.loads((part / "_manifest.json").read_text())["chunks"]) == ["2023", "2024"]
    out = store.read_bars("BTC/USDT", "1h")
    assert len(out) == len(bars)
    assert list(out["ts"]) == list(bars["ts"])
    assert store.list_series() == [("BTC/USDT", "1h")]


def test_upsert_bars_when_one_bar_appended_then_only_its_chunk_is_rewritten(tmp_path):
    store = ParquetBarStore(tmp_path)
    bars = make_bars(n=3 * 24 * 31, timeframe="15m", start=pd.Timestamp("2024-01-01", tz="UTC"))
    store.upsert_bars(bars)
    before = _chunk_files(tmp_path, "15m")
    assert len(before) == 1  # 15m bars: monthly chunks; three days fit in January
    more = make_bars(n=24 * 4 * 50, timeframe="15m", start=pd.Timestamp("2024-02-01", tz="UTC"))
    store.upsert_bars(more)
    before = _chunk_files(tmp_path, "15m")
    assert len(before) == 3  # February, March, and the January chunk untouched

    last = more["ts"].iloc[-1] + pd.Timedelta(minutes=15)
    store.upsert_bars(make_bars(n=1, timeframe="15m", start=last))

    after = _chunk_files(tmp_path, "15m")
    assert len(set(before) & set(after)) == 2  # only the newest month's file was replaced
    assert store.count_bars("BTC/USDT", "15m") == len(bars) + len(more) + 1
    assert store.last_ts("BTC/USDT", "15m") == last.to_pydatetime()


def test_read_bars_when_range_given_then_only_chunks_in_range_are_opened(tmp_path, monkeypatch):
    store = ParquetBarStore(tmp_path)
    store.upsert_bars(
        make_bars(n=24 * 90, timeframe="15m", start=pd.Timestamp("2024-01-01", tz="UTC"))
    )
    opened: list[str] = []
    real = pq.read_table

    def spy(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pq, "read_table", spy)
    out = store.read_bars(
        "BTC/USDT",
        "15m",
        pd.Timestamp("2024-01-10", tz="UTC").to_pydatetime(),
        pd.Timestamp("2024-01-11", tz="UTC").to_pydatetime(),
    )

    assert len(out) == 96
    assert [n[:13] for n in opened] == ["chunk-2024-01"]


def test_upsert_bars_when_symbol_too_long_for_a_file_name_then_clear_store_error(tmp_path):
    store = ParquetBarStore(tmp_path)

    with pytest.raises(StoreError, match="too long for the parquet store"):
        store.upsert_bars(pd.concat([make_bars("OK", n=2), make_bars("X" * 300, n=2)]))

    assert store.list_series() == []  # nothing of the batch was written
    store.upsert_bars(make_bars("Y" * 200, n=2))  # long but within the limit
    assert store.count_bars("Y" * 200, "1h") == 2


def test_upsert_bars_when_symbol_has_path_characters_then_stays_inside_data_dir(tmp_path):
    store = ParquetBarStore(tmp_path / "data")

    store.upsert_bars(make_bars("../../etc/x", n=2))

    files = [p for p in tmp_path.rglob("*.parquet")]
    assert len(files) == 1
    assert (tmp_path / "data" / "bars") in files[0].parents
    assert store.list_series() == [("../../etc/x", "1h")]


def _writer(data_dir: str, offset: int) -> None:
    store = ParquetBarStore(Path(data_dir))
    for i in range(5):
        bars = make_bars(
            n=1, start=pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=offset + i)
        )
        store.upsert_bars(bars)


def test_upsert_bars_when_two_processes_write_one_partition_then_no_update_lost(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), k * 100)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)

    assert [p.exitcode for p in procs] == [0, 0]
    assert ParquetBarStore(tmp_path).count_bars("BTC/USDT", "1h") == 10


def _orders(ids, qty: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "client_id": [f"o{i}" for i in ids],
            "qty": [qty] * len(ids),
            "ts": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(list(ids), unit="min"),
        }
    )


def test_upsert_records_when_many_flushes_then_each_writes_only_its_rows_and_compacts(
    tmp_path, monkeypatch
):
    import infra.stores._parquet as parquet_module

    monkeypatch.setattr(parquet_module, "_MAX_SEGMENTS", 4)
    store = ParquetBarStore(tmp_path)
    written = []
    for flush in range(10):  # what the live sink does at every epoch
        written.append(
            store.upsert_records("orders", _orders(range(flush * 3, flush * 3 + 3)), ["client_id"])
        )
    written.append(store.upsert_records("orders", _orders([0, 1], qty=2.0), ["client_id"]))

    assert written == [3] * 10 + [2]
    table_dir = tmp_path / "records" / "orders"
    assert len(list(table_dir.glob("seg-*.parquet"))) <= 4  # compacted along the way
    back = ParquetBarStore(tmp_path).read_records("orders")  # a fresh store reads the files
    assert len(back) == 30
    assert list(back.loc[back["client_id"].isin(["o0", "o1"]), "qty"]) == [2.0, 2.0]
    pd.testing.assert_frame_equal(back, store.read_records("orders"))


def test_upsert_records_when_another_store_wrote_meanwhile_then_its_rows_are_seen(tmp_path):
    first, second = ParquetBarStore(tmp_path), ParquetBarStore(tmp_path)
    first.upsert_records("orders", _orders([1, 2]), ["client_id"])
    second.upsert_records("orders", _orders([2], qty=5.0), ["client_id"])

    assert first.upsert_records("orders", _orders([2], qty=5.0), ["client_id"]) == 0
    assert list(first.read_records("orders")["qty"]) == [1.0, 5.0]


def test_open_when_records_table_has_single_file_layout_then_it_is_migrated(tmp_path):
    from infra.stores._parquet import _META_KEY

    frame = _orders([1, 2])
    arrow = frame_to_table(frame)
    meta = json.dumps(
        {"key": ["client_id"], "kinds": {"client_id": "str", "qty": "float", "ts": "timestamp"}}
    )
    (tmp_path / "records").mkdir()
    pq.write_table(
        arrow.replace_schema_metadata({_META_KEY: meta.encode()}),
        tmp_path / "records" / "orders.parquet",
    )
    store = ParquetBarStore(tmp_path)

    assert store.upsert_records("orders", _orders([2, 3]), ["client_id"]) == 1
    back = store.read_records("orders")
    assert list(back["client_id"]) == ["o1", "o2", "o3"]
    assert not (tmp_path / "records" / "orders.parquet").exists()
