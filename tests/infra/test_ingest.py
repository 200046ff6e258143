"""Ingestion end to end on the embedded store: increments validated with stored history."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pandas as pd
import pytest

from infra.ingest import ingest_raw, read_history
from infra.sources import load_bundled
from infra.stores import BarStore, open_store
from tests.infra.test_stores_contract import drop_schema

NOW = datetime(2021, 1, 4, tzinfo=UTC)
N_BARS = 400
FIRST_BATCH = 380  # then 20 daily increments


@pytest.fixture(scope="module")
def spx():
    """The first 400 S&P 500 sessions, with a frozen feed (6 repeats of one bar, volume 0)
    whose start falls in one daily increment and whose later bars in the next ones."""
    raw = load_bundled("sp500")
    frame = raw.frame.iloc[:N_BARS].copy()
    frozen = frame.index[FIRST_BATCH + 5 : FIRST_BATCH + 11]
    frame.loc[frozen, ["open", "high", "low", "close"]] = frame.loc[frozen[0], "close"]
    frame.loc[frozen, "volume"] = 0
    return replace(raw, frame=frame.reset_index(drop=True))


@pytest.fixture(params=["parquet", pytest.param("timescale", marks=pytest.mark.timescale)])
def stores(request, tmp_path) -> Iterator[Callable[[str], BarStore]]:
    """A factory of empty stores of one kind, each named."""
    if request.param == "parquet":
        yield lambda name: open_store("parquet", data_dir=tmp_path / name)
        return
    dsn = request.getfixturevalue("timescale_dsn")
    schemas: list[str] = []

    def make(name: str) -> BarStore:
        schemas.append(f"cf_test_{name}_{uuid.uuid4().hex[:8]}")
        return open_store("timescale", dsn=dsn, schema=schemas[-1])

    yield make
    for schema in schemas:
        drop_schema(dsn, schema)


def _stored(store):
    bars = store.read_bars("SPX", "1d").drop(columns=["ingested_at"])
    quarantine = store.read_quarantine("SPX", "1d")
    return bars, quarantine[["ts", "raw", "row_fingerprint", "reason", "detail"]]


def test_ingest_when_daily_increments_then_stores_exactly_what_one_full_ingest_stores(
    stores, spx
):
    with stores("full") as store:
        full = ingest_raw(spx, store, run_id="full", now=NOW)
        full_bars, full_quarantine = _stored(store)
    reports = []
    with stores("daily") as store:
        first = replace(spx, frame=spx.frame.iloc[:FIRST_BATCH].reset_index(drop=True))
        reports.append(ingest_raw(first, store, run_id="full", now=NOW))
        for i in range(FIRST_BATCH, N_BARS):
            day = replace(spx, frame=spx.frame.iloc[i : i + 1].reset_index(drop=True))
            reports.append(ingest_raw(day, store, run_id="full", now=NOW))
        daily_bars, daily_quarantine = _stored(store)

    assert full.by_reason == {"stale_price": 4}  # bars 3-6 of the frozen run
    pd.testing.assert_frame_equal(daily_bars, full_bars)
    pd.testing.assert_frame_equal(
        daily_quarantine.sort_values("ts").reset_index(drop=True),
        full_quarantine.sort_values("ts").reset_index(drop=True),
    )
    assert sum(r.quarantined for r in reports) == full.quarantined
    assert all(r.history_bars >= FIRST_BATCH - 4 for r in reports[1:])


def test_read_history_when_bars_stored_then_last_ones_before_the_batch(stores, spx):
    with stores("s") as store:
        ingest_raw(replace(spx, frame=spx.frame.iloc[:100]), store, run_id="r", now=NOW)
        batch = replace(spx, frame=spx.frame.iloc[100:110].reset_index(drop=True))

        history = read_history(batch, store, bars=30)

    assert len(history) == 30
    assert history["ts"].iloc[-1] == spx.frame["ts"].iloc[99]
