"""Stores made before the live tables were keyed on the worker's instance open and keep rows.

Their rows belong to the single worker of the time: instance "default" (LEGACY_INSTANCE).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
import pytest

from infra.stores import ParquetBarStore, TimescaleBarStore
from infra.stores import _timescale as timescale_module
from tests.infra.test_stores_contract import drop_schema

TS = pd.Timestamp(datetime(2024, 1, 1, tzinfo=UTC))
# (table, the key before the instance, rows)
OLD_TABLES = (
    ("live_equity", ("ts",), {"ts": [TS, TS + pd.Timedelta(days=1)], "equity": [1.0, 2.5]}),
    ("live_positions", ("symbol",), {"symbol": ["SPX"], "ts": [TS], "quantity": [3.0]}),
    ("live_orders", ("client_id",), {"client_id": ["cfa", "cfb"], "symbol": ["SPX", "SPX"]}),
)


def _write_old(store) -> None:
    for table, key, rows in OLD_TABLES:
        store.upsert_records(table, pd.DataFrame(rows), key)


def _assert_migrated(store) -> None:
    for table, _, rows in OLD_TABLES:
        got = store.read_records(table)
        expected = pd.DataFrame({"instance": "default", **rows})
        assert list(store.read_records(table).columns) == list(expected.columns)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, obj=table)
    # A worker writes the new layout beside the old rows; nothing is lost or refused.
    new = pd.DataFrame({"instance": ["default@1h"], "ts": [TS], "equity": [9.0]})
    assert store.upsert_records("live_equity", new, ("instance", "ts")) == 1
    equity = store.read_records("live_equity")
    assert list(equity["instance"]) == ["default", "default", "default@1h"]
    assert list(equity["equity"]) == [1.0, 2.5, 9.0]


def test_parquet_when_live_tables_predate_the_instance_then_open_keeps_rows(tmp_path) -> None:
    with ParquetBarStore(tmp_path / "data") as old:
        _write_old(old)  # a fresh table takes the key it is first written with: the old one

    with ParquetBarStore(tmp_path / "data") as store:
        _assert_migrated(store)
        assert len(list((tmp_path / "data" / "records" / "live_equity").glob("seg-*"))) == 2


def test_parquet_when_live_table_is_a_single_file_of_old_then_open_keeps_rows(tmp_path) -> None:
    import json

    import pyarrow.parquet as pq

    from infra.stores._base import frame_to_table

    rows = pd.DataFrame({"ts": [TS], "equity": [1.0]})
    meta = json.dumps({"key": ["ts"], "kinds": {"ts": "timestamp", "equity": "float"}})
    table = frame_to_table(rows).replace_schema_metadata({b"candleflow.records": meta.encode()})
    (tmp_path / "data" / "records").mkdir(parents=True)
    pq.write_table(table, tmp_path / "data" / "records" / "live_equity.parquet")

    with ParquetBarStore(tmp_path / "data") as store:
        got = store.read_records("live_equity")

    assert list(got["instance"]) == ["default"]
    assert list(got["equity"]) == [1.0]


@pytest.fixture
def schema(timescale_dsn) -> Iterator[str]:
    name = f"cf_test_{uuid.uuid4().hex[:10]}"
    yield name
    drop_schema(timescale_dsn, name)


@pytest.mark.timescale
def test_timescale_when_live_tables_predate_the_instance_then_open_keeps_rows(
    timescale_dsn, schema, monkeypatch
) -> None:
    every = timescale_module._migrations()
    with monkeypatch.context() as m:  # the schema as it was before 006_live_instance
        m.setattr(timescale_module, "_migrations", lambda: [x for x in every if x[0] < 6])
        with TimescaleBarStore(timescale_dsn, schema=schema) as old:
            assert 6 not in old.applied_migrations()
            _write_old(old)

    with TimescaleBarStore(timescale_dsn, schema=schema) as store:
        assert 6 in store.applied_migrations()
        _assert_migrated(store)
