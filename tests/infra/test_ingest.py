"""Ingestion end to end on the embedded store: increments validated with stored history."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pandas as pd
import pytest

from infra.ingest import ingest_raw, read_history
from infra.sources import load_bundled
from infra.stores import open_store

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


def _stored(store):
    bars = store.read_bars("SPX", "1d").drop(columns=["ingested_at"])
    quarantine = store.read_quarantine("SPX", "1d")
    return bars, quarantine[["ts", "raw", "row_fingerprint", "reason", "detail"]]


def test_ingest_when_daily_increments_then_stores_exactly_what_one_full_ingest_stores(
    tmp_path, spx
):
    with open_store("parquet", data_dir=tmp_path / "full") as store:
        full = ingest_raw(spx, store, run_id="full", now=NOW)
        full_bars, full_quarantine = _stored(store)
    reports = []
    with open_store("parquet", data_dir=tmp_path / "daily") as store:
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


def test_read_history_when_bars_stored_then_last_ones_before_the_batch(tmp_path, spx):
    with open_store("parquet", data_dir=tmp_path / "s") as store:
        ingest_raw(replace(spx, frame=spx.frame.iloc[:100]), store, run_id="r", now=NOW)
        batch = replace(spx, frame=spx.frame.iloc[100:110].reset_index(drop=True))

        history = read_history(batch, store, bars=30)

    assert len(history) == 30
    assert history["ts"].iloc[-1] == spx.frame["ts"].iloc[99]
