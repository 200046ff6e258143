"""Two workers (a 1d and a 1h one) of one strategy on one store: their books stay apart.

Each worker's live rows are keyed on its strategy instance (strategy@timeframe), so the rows
two workers leave in one store are, per worker, exactly the rows it leaves when run alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from bytewax.testing import run_main

from execution.config import StrategyConfig
from infra.settings import Settings
from infra.stores import ParquetBarStore, TimescaleBarStore
from streaming.dataflow import LIVE_TABLES, StoreSink, StreamConfig, build_flow
from streaming.models import LocalBundleProvider
from streaming.sources import ReplaySource
from streaming.worker import WorkerArgsError, live_status
from tests.infra.test_stores_contract import drop_schema
from tests.streaming.conftest import spx_bars

INSTANCES = {"1d": "default@1d", "1h": "default@1h"}


def _bars(n: int, timeframe: str) -> pd.DataFrame:
    """SPX bars at the same timestamps for both workers, with different prices per timeframe:
    under one key per (symbol, ts) the second worker would overwrite every row of the first."""
    daily = spx_bars(n)
    if timeframe == "1d":
        return daily
    later = spx_bars(n + 120).iloc[120:].reset_index(drop=True)
    return later.assign(ts=daily["ts"], timeframe=timeframe)


def _run(open_store: Callable[[], Any], bars: pd.DataFrame, sma: Any) -> None:
    config = StreamConfig(strategy=StrategyConfig(), symbols=("SPX",), progress_every=0)
    flow = build_flow(
        config, ReplaySource(bars), StoreSink(open_store), {"SPX": LocalBundleProvider(sma)}
    )
    run_main(flow)


def _tables(store: Any) -> dict[str, pd.DataFrame]:
    with store:
        return {t: store.read_records(t) for t in LIVE_TABLES}


def _book(tables: dict[str, pd.DataFrame], instance: str) -> dict[str, pd.DataFrame]:
    return {t: f[f["instance"] == instance].reset_index(drop=True) for t, f in tables.items()}


def _assert_books_apart(make_store: Callable[[str], Any], sma: Any) -> None:
    n = sma.history + 60
    bars = {tf: _bars(n, tf) for tf in INSTANCES}
    alone = {}
    for tf in INSTANCES:
        _run(lambda tf=tf: make_store(f"alone_{tf}"), bars[tf], sma)
        alone[tf] = _tables(make_store(f"alone_{tf}"))
    for tf in INSTANCES:  # the 1d worker first, then the 1h one, on the same store
        _run(lambda: make_store("shared"), bars[tf], sma)

    shared = _tables(make_store("shared"))

    assert set(shared["live_equity"]["instance"]) == set(INSTANCES.values())
    orders = {tf: alone[tf]["live_orders"] for tf in INSTANCES}
    assert all(len(o) > 0 for o in orders.values())
    assert not set(orders["1d"]["client_id"]) & set(orders["1h"]["client_id"])
    for tf, instance in INSTANCES.items():
        assert set(alone[tf]["live_equity"]["instance"]) == {instance}
        book = _book(shared, instance)
        for table in LIVE_TABLES:
            pd.testing.assert_frame_equal(book[table], alone[tf][table], obj=f"{tf} {table}")
    for table in LIVE_TABLES:
        assert len(shared[table]) == sum(len(alone[tf][table]) for tf in INSTANCES), table


def test_two_workers_when_1d_and_1h_share_a_parquet_store_then_no_row_is_overwritten(
    sma, tmp_path: Path
) -> None:
    _assert_books_apart(lambda name: ParquetBarStore(tmp_path / name / "data"), sma)

    # `candleflow live status` reads one book: the one named, never a mix of both.
    shared, alone = (
        Settings.from_env({"CANDLEFLOW_HOME": str(tmp_path / name)})
        for name in ("shared", "alone_1h")
    )
    with pytest.raises(WorkerArgsError, match=r"2 workers \(default@1d, default@1h\)"):
        live_status(shared)
    assert live_status(shared, "default@1h") == live_status(alone)
    assert live_status(alone).instance == "default@1h"


@pytest.fixture
def schemas(timescale_dsn: str) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        drop_schema(timescale_dsn, name)


@pytest.mark.timescale
def test_two_workers_when_1d_and_1h_share_a_timescale_store_then_no_row_is_overwritten(
    sma, timescale_dsn: str, schemas: list[str]
) -> None:
    prefix = f"cf_test_{uuid.uuid4().hex[:8]}"

    def make_store(name: str) -> TimescaleBarStore:
        schema = f"{prefix}_{name}"
        if schema not in schemas:
            schemas.append(schema)
        return TimescaleBarStore(timescale_dsn, schema=schema)

    _assert_books_apart(make_store, sma)
