"""ParquetBarStore specifics: atomic partition writes, path encoding, concurrent writers."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pandas as pd
import pytest

from infra.stores import ParquetBarStore
from tests.infra.test_stores_contract import make_bars


def test_upsert_bars_when_crash_after_temp_file_then_old_partition_intact(tmp_path, monkeypatch):
    store = ParquetBarStore(tmp_path)
    old = make_bars(n=10)
    store.upsert_bars(old)
    before = store.read_bars("BTC/USDT", "1h")
    part_dir = next((tmp_path / "bars").glob("symbol=*/timeframe=1h"))
    # What a killed writer leaves behind: a complete-looking temp file next to the partition.
    (part_dir / ".tmp-deadbeef-part.parquet").write_bytes((part_dir / "part.parquet").read_bytes())

    def crash(src, dst):
        assert Path(src).exists()  # the new data was fully written to the temp file
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.upsert_bars(make_bars(n=20).assign(close=-1.0))
    monkeypatch.undo()

    after = store.read_bars("BTC/USDT", "1h")
    pd.testing.assert_frame_equal(after, before)
    assert store.count_bars("BTC/USDT", "1h") == 10
    assert store.list_series() == [("BTC/USDT", "1h")]


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
