"""The live store sink against a store that goes away: it waits, then writes everything once."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from infra.stores import StoreError, StoreUnavailableError
from streaming.dataflow import StoreRetry, StoreSink
from streaming.metrics import LiveMetrics
from streaming.steps import Record

TS = datetime(2024, 1, 2, tzinfo=UTC)


class FlakyStore:
    """Fails the next `down` writes as a lost connection would, then accepts them."""

    def __init__(self, down: int = 0, broken: bool = False) -> None:
        self.down = down
        self.broken = broken
        self.tables: dict[str, pd.DataFrame] = {}
        self.calls = 0
        self.closed = False

    def upsert_records(self, table: str, frame: pd.DataFrame, key) -> int:
        self.calls += 1
        if self.broken:
            msg = "records table is keyed on other columns"
            raise StoreError(msg)
        if self.down > 0:
            self.down -= 1
            msg = "lost the connection to TimescaleDB at 127.0.0.1:1"
            raise StoreUnavailableError(msg)
        old = self.tables.get(table)
        merged = frame if old is None else pd.concat([old, frame])
        self.tables[table] = merged.drop_duplicates(list(key), keep="last")
        return len(frame)

    def close(self) -> None:
        self.closed = True


def _records(n: int) -> list[Record]:
    return [
        Record("live_equity", ("ts",), {"ts": TS + pd.Timedelta(days=i), "equity": 100.0 + i})
        for i in range(n)
    ]


def _part(store: FlakyStore, sleeps: list[float], metrics: LiveMetrics | None = None, **kw):
    sink = StoreSink(lambda: store, max_buffer=10, metrics=metrics, retry=StoreRetry(**kw))
    part = sink.build_part("store", "store", None)
    part._sleep = sleeps.append  # no real waiting in a unit test
    return part


def test_sink_when_store_down_for_several_writes_then_waits_and_writes_all_once() -> None:
    store, sleeps = FlakyStore(down=6), []
    metrics = LiveMetrics.create()
    part = _part(store, sleeps, metrics, first_s=0.5, max_s=2.0)

    part.write_batch(_records(25))
    part.snapshot()
    part.close()

    assert sleeps == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]  # capped backoff
    assert len(store.tables["live_equity"]) == 25
    assert metrics.store_up._value.get() == 1
    assert metrics.store_retries._value.get() == 6
    assert store.closed


def test_sink_when_store_is_down_then_gauge_reads_zero_during_the_outage() -> None:
    store, seen = FlakyStore(down=2), []
    metrics = LiveMetrics.create()
    part = _part(store, [], metrics)
    part._sleep = lambda _s: seen.append(metrics.store_up._value.get())

    part.write_batch(_records(10))

    assert seen == [0, 0]
    assert metrics.store_up._value.get() == 1


def test_sink_when_write_fails_for_good_then_close_does_not_write_again() -> None:
    store = FlakyStore(broken=True)
    part = _part(store, [])

    with pytest.raises(StoreError):
        part.write_batch(_records(10))
    calls = store.calls
    part.close()

    assert store.calls == calls
    assert store.closed


def test_sink_when_store_still_down_at_close_then_gives_up_after_close_wait() -> None:
    store, sleeps = FlakyStore(down=10**6), []
    part = _part(store, sleeps, first_s=1.0, max_s=1.0, close_wait_s=0.0)
    part.write_batch(_records(3))

    part.close()

    assert sleeps == []  # no wait beyond close_wait_s
    assert store.closed and "live_equity" not in store.tables
