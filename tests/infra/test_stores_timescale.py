"""TimescaleBarStore specifics: migrations, hypertable, capabilities, a killed connection."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pandas as pd
import psycopg
import pytest

from infra.stores import StoreError, StoreUnavailableError, TimescaleBarStore
from quality.schema import to_canonical_frame
from tests.infra.test_stores_contract import drop_schema, make_bars


@pytest.fixture
def schema(timescale_dsn) -> Iterator[str]:
    name = f"cf_test_{uuid.uuid4().hex[:10]}"
    yield name
    drop_schema(timescale_dsn, name)


def scalar(dsn: str, query: str, params: tuple = ()) -> object:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchone()[0]


@pytest.mark.timescale
def test_open_when_fresh_schema_then_bars_is_a_hypertable(timescale_dsn, schema):
    with TimescaleBarStore(timescale_dsn, schema=schema):
        found = scalar(
            timescale_dsn,
            "SELECT count(*) FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = %s AND hypertable_name = 'bars'",
            (schema,),
        )

    assert found == 1


@pytest.mark.timescale
def test_open_when_opened_twice_then_migrations_apply_once(timescale_dsn, schema):
    with TimescaleBarStore(timescale_dsn, schema=schema) as first:
        applied = first.applied_migrations()
        first.upsert_bars(make_bars(n=5))

    with TimescaleBarStore(timescale_dsn, schema=schema) as second:
        assert second.applied_migrations() == applied
        assert second.count_bars("BTC/USDT", "1h") == 5
    assert applied[:3] == [1, 2, 3]


@pytest.mark.timescale
def test_open_when_concurrent_starts_on_fresh_schema_then_both_succeed(timescale_dsn, schema):
    errors: list[BaseException] = []

    def start() -> None:
        try:
            TimescaleBarStore(timescale_dsn, schema=schema).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    count = scalar(timescale_dsn, f"SELECT count(*) FROM {schema}.schema_migrations")
    assert count == len(TimescaleBarStore(timescale_dsn, schema=schema).applied_migrations())


@pytest.mark.timescale
def test_capabilities_when_opened_then_report_the_server_license(timescale_dsn, schema):
    license_ = scalar(timescale_dsn, "SELECT current_setting('timescaledb.license')")

    with TimescaleBarStore(timescale_dsn, schema=schema) as store:
        caps = store.capabilities

    assert caps["license"] == license_
    assert caps["compression"] is (license_ == "timescale")
    assert caps["continuous_aggregates"] is (license_ == "timescale")


@pytest.mark.timescale
def test_upsert_bars_when_connection_killed_mid_batch_then_all_or_nothing(timescale_dsn, schema):
    n = 20_000
    bars = make_bars("KILL", n=n, timeframe="1m")
    store = TimescaleBarStore(timescale_dsn, schema=schema)
    writer_pid = store._connection().info.backend_pid

    def kill_writer() -> None:
        # The batch is staged (COPY done) and not yet merged: kill the writer's backend.
        assert scalar(timescale_dsn, "SELECT pg_terminate_backend(%s)", (writer_pid,)) is True

    store._after_stage = kill_writer
    with pytest.raises(StoreUnavailableError, match="lost the connection"):
        store.upsert_bars(bars)
    store.close()

    visible = scalar(timescale_dsn, f"SELECT count(*) FROM {schema}.bars WHERE symbol = 'KILL'")
    assert visible in (0, n)
    assert visible == 0  # the kill came before the merge, so nothing may be visible

    with TimescaleBarStore(timescale_dsn, schema=schema) as fresh:
        assert fresh.upsert_bars(bars) == n
        assert fresh.count_bars("KILL", "1m") == n


@pytest.mark.timescale
def test_upsert_bars_when_connection_killed_during_copy_then_count_is_zero_or_n(
    timescale_dsn, schema
):
    n = 200_000
    bars = make_bars("KILL2", n=n, timeframe="1m")
    store = TimescaleBarStore(timescale_dsn, schema=schema)
    writer_pid = store._connection().info.backend_pid
    outcome: list[BaseException | int] = []
    killed = False

    def write() -> None:
        try:
            outcome.append(store.upsert_bars(bars))
        except StoreError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    with psycopg.connect(timescale_dsn, autocommit=True) as killer:
        deadline = time.monotonic() + 30
        while thread.is_alive() and time.monotonic() < deadline:
            state = killer.execute(
                "SELECT query FROM pg_stat_activity WHERE pid = %s AND state = 'active'",
                (writer_pid,),
            ).fetchone()
            if state and ("COPY" in state[0] or "INSERT" in state[0]):
                killer.execute("SELECT pg_terminate_backend(%s)", (writer_pid,))
                killed = True
                break
    thread.join(timeout=60)
    store.close()

    visible = scalar(timescale_dsn, f"SELECT count(*) FROM {schema}.bars WHERE symbol = 'KILL2'")
    assert killed, "the writer was never seen copying or merging"
    assert visible in (0, n)
    assert len(outcome) == 1
    if isinstance(outcome[0], BaseException):
        assert isinstance(outcome[0], StoreUnavailableError)
    with TimescaleBarStore(timescale_dsn, schema=schema) as fresh:
        fresh.upsert_bars(bars)
        assert fresh.count_bars("KILL2", "1m") == n


@pytest.mark.timescale
def test_upsert_bars_when_batch_overlaps_the_stored_tail_then_new_rows_copied_and_overlap_merged(
    timescale_dsn, schema
):
    # Arrange: 100 stored bars; the batch re-sends the last 10 (3 of them changed) and 50 new.
    bars = make_bars("MIX", n=160, timeframe="1m")
    with TimescaleBarStore(timescale_dsn, schema=schema) as store:
        store.upsert_bars(bars.iloc[:100])
        batch = bars.iloc[90:].copy()
        batch.iloc[:3, batch.columns.get_loc("close")] += 1.0
        # Act
        written = store.upsert_bars(batch)
        # Assert
        assert written == 3 + 60
        out = store.read_bars("MIX", "1m")
    assert len(out) == 160
    assert list(out["close"].iloc[90:93]) == list(batch["close"].iloc[:3])
    assert list(out["ts"]) == list(bars["ts"])


@pytest.mark.timescale
def test_upsert_bars_when_batch_changes_stored_rows_and_fills_a_gap_then_both_written_once(
    timescale_dsn, schema
):
    # Arrange: bars 0-99 stored except 40-59; the batch re-sends 30-69 with 30-34 changed.
    bars = make_bars("GAP", n=100, timeframe="1m")
    with TimescaleBarStore(timescale_dsn, schema=schema) as store:
        store.upsert_bars(pd.concat([bars.iloc[:40], bars.iloc[60:]]))
        batch = bars.iloc[30:70].copy()
        batch.iloc[:5, batch.columns.get_loc("high")] += 2.0
        # Act
        written = store.upsert_bars(batch)
        again = store.upsert_bars(batch)
        out = store.read_bars("GAP", "1m")
    # Assert: 5 updated + 20 inserted; the re-run changes nothing.
    assert written == 5 + 20
    assert again == 0
    assert list(out["ts"]) == list(bars["ts"])
    assert list(out["high"].iloc[30:70]) == list(batch["high"])
    assert list(out["high"].iloc[:30]) == list(bars["high"].iloc[:30])


@pytest.mark.timescale
def test_upsert_bars_when_killed_after_staging_changed_and_new_rows_then_nothing_changed(
    timescale_dsn, schema
):
    # Arrange: 100 stored bars; the batch changes all of them and appends 50 new ones, so the
    # new rows are COPYed into the hypertable before the changed ones are staged and merged.
    bars = make_bars("KILL3", n=150, timeframe="1m")
    store = TimescaleBarStore(timescale_dsn, schema=schema)
    store.upsert_bars(bars.iloc[:100])
    batch = bars.assign(close=bars["close"] + 1.0, high=bars["high"] + 1.0)
    writer_pid = store._connection().info.backend_pid

    def kill_writer() -> None:
        assert scalar(timescale_dsn, "SELECT pg_terminate_backend(%s)", (writer_pid,)) is True

    store._after_stage = kill_writer
    # Act
    with pytest.raises(StoreUnavailableError, match="lost the connection"):
        store.upsert_bars(batch)
    store.close()
    # Assert: neither the COPYed new rows nor any update is visible.
    with TimescaleBarStore(timescale_dsn, schema=schema) as fresh:
        out = fresh.read_bars("KILL3", "1m")
        assert len(out) == 100
        assert list(out["close"]) == list(bars["close"].iloc[:100])
        assert fresh.upsert_bars(batch) == 150
        assert list(fresh.read_bars("KILL3", "1m")["close"]) == list(batch["close"])


@pytest.mark.timescale
def test_upsert_bars_when_a_concurrent_writer_stored_keys_first_then_falls_back_to_merge(
    timescale_dsn, schema, monkeypatch
):
    # Arrange: the overlap probe is made to miss stored rows, as when another writer commits
    # them between the probe and the COPY: the COPY hits the primary key.
    bars = make_bars("RACE", n=50, timeframe="1m")
    with TimescaleBarStore(timescale_dsn, schema=schema) as store:
        store.upsert_bars(bars.iloc[:30])
        monkeypatch.setattr(
            TimescaleBarStore, "_fresh_rows", staticmethod(lambda cur, batch: batch.ts == batch.ts)
        )
        # Act
        written = store.upsert_bars(bars)
        # Assert
        assert written == 20
        assert store.count_bars("RACE", "1m") == 50


def test_open_when_server_unreachable_then_unavailable_without_password():
    dsn = "postgresql://someone:s3cret-pw@127.0.0.1:1/candleflow"

    with pytest.raises(StoreUnavailableError) as info:
        TimescaleBarStore(dsn)

    message = str(info.value)
    assert "127.0.0.1:1" in message
    assert "s3cret-pw" not in message
    assert "start_local.sh" in message


def test_open_when_schema_name_unsafe_then_store_error():
    with pytest.raises(StoreError, match="schema name"):
        TimescaleBarStore("postgresql://u@127.0.0.1:1/db", schema='x"; drop table bars; --')


@pytest.mark.timescale
def test_read_bars_when_series_spans_pages_and_sources_interleave_then_equal_to_written(
    timescale_dsn, schema, monkeypatch
):
    # Arrange: 23 bars of three sources in turn, read 5 bars a statement (so every page holds
    # several sources and the last page is short), whole and over a range.
    from infra.stores import _timescale

    monkeypatch.setattr(_timescale, "_READ_PAGE_ROWS", 5)
    bars = make_bars("PAGED", n=23, timeframe="1m")
    bars["source"] = [("a", "bb", "c")[i % 3] for i in range(len(bars))]
    bars["ingested_at"] = bars["ingested_at"] + pd.to_timedelta(range(len(bars)), unit="us")
    start, end = bars["ts"].iloc[4].to_pydatetime(), bars["ts"].iloc[17].to_pydatetime()
    with TimescaleBarStore(timescale_dsn, schema=schema) as store:
        store.upsert_bars(bars)
        # Act
        whole = store.read_bars("PAGED", "1m")
        ranged = store.read_bars("PAGED", "1m", start=start, end=end)
    # Assert
    expected = to_canonical_frame(bars)
    pd.testing.assert_frame_equal(whole, expected, check_exact=True)
    pd.testing.assert_frame_equal(
        ranged, expected.iloc[4:17].reset_index(drop=True), check_exact=True
    )


@pytest.mark.timescale
def test_read_bars_when_a_stored_bar_has_a_null_value_then_store_error_names_nulls(
    timescale_dsn, schema
):
    # Arrange: a bars table whose NOT NULL was dropped by hand, holding one NULL close.
    with TimescaleBarStore(timescale_dsn, schema=schema) as store:
        store.upsert_bars(make_bars("HOLE", n=3, timeframe="1m"))
        with psycopg.connect(timescale_dsn, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE {schema}.bars ALTER COLUMN close DROP NOT NULL")
            conn.execute(f"UPDATE {schema}.bars SET close = NULL WHERE symbol = 'HOLE'")
        # Act / Assert
        with pytest.raises(StoreError, match="NULL values in bars"):
            store.read_bars("HOLE", "1m")
