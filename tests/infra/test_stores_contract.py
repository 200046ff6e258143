"""The BarStore contract, run against every store: embedded Parquet and TimescaleDB."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from infra.stores import BarStore, StoreError, open_store
from quality.schema import BAR_COLUMNS, BAR_SCHEMA, QUARANTINE_COLUMNS, TIMEFRAMES

T0 = pd.Timestamp("2024-03-01", tz="UTC")
INGESTED = pd.Timestamp("2024-06-01 12:00:00.123456", tz="UTC")  # whole microseconds


def make_bars(
    symbol: str = "BTC/USDT", n: int = 48, timeframe: str = "1h", start: pd.Timestamp = T0
) -> pd.DataFrame:
    rng = np.random.default_rng(abs(hash((symbol, n, timeframe))) % 2**32)
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    open_ = close + rng.normal(0, 0.5, n)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "ts": pd.date_range(start, periods=n, freq=TIMEFRAMES[timeframe]),
            "open": open_,
            "high": np.maximum(open_, close) + 1,
            "low": np.minimum(open_, close) - 1,
            "close": close,
            "volume": rng.uniform(0, 1000, n),
            "source": "test",
            "ingested_at": INGESTED,
        }
    )


def drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["parquet", pytest.param("timescale", marks=pytest.mark.timescale)])
def store(request, tmp_path) -> Iterator[BarStore]:
    if request.param == "parquet":
        with open_store("parquet", data_dir=tmp_path / "data") as s:
            yield s
        return
    dsn = request.getfixturevalue("timescale_dsn")
    schema = f"cf_test_{uuid.uuid4().hex[:10]}"
    try:
        with open_store("timescale", dsn=dsn, schema=schema) as s:
            yield s
    finally:
        drop_schema(dsn, schema)


def test_read_bars_when_written_then_round_trip_with_canonical_dtypes(store):
    bars = make_bars()

    written = store.upsert_bars(bars)
    back = store.read_bars("BTC/USDT", "1h")

    assert written == len(bars)
    assert list(back.columns) == list(BAR_COLUMNS)
    assert back.dtypes.to_dict() == make_canonical(bars).dtypes.to_dict()
    pd.testing.assert_frame_equal(back, make_canonical(bars))
    table = store.read_bars_table("BTC/USDT", "1h")
    assert table.schema.equals(BAR_SCHEMA)
    assert table.num_rows == len(bars)


def make_canonical(frame: pd.DataFrame) -> pd.DataFrame:
    from quality.schema import to_canonical_frame

    return to_canonical_frame(frame.sort_values("ts"))


def test_upsert_bars_when_same_frame_twice_then_second_writes_nothing(store):
    bars = make_bars()
    store.upsert_bars(bars)
    before = store.read_bars("BTC/USDT", "1h")

    again = store.upsert_bars(bars.assign(ingested_at=INGESTED + pd.Timedelta(days=1)))

    assert again == 0
    pd.testing.assert_frame_equal(store.read_bars("BTC/USDT", "1h"), before)


def test_upsert_bars_when_values_change_then_only_changed_rows_update(store):
    bars = make_bars()
    store.upsert_bars(bars)
    changed = bars.iloc[[3, 7]].assign(
        close=lambda f: f["close"] + 1, ingested_at=INGESTED + pd.Timedelta(hours=1)
    )

    written = store.upsert_bars(changed)
    back = store.read_bars("BTC/USDT", "1h")

    assert written == 2
    assert len(back) == len(bars)
    assert back["close"].iloc[3] == pytest.approx(bars["close"].iloc[3] + 1)
    assert back["ingested_at"].iloc[7] == INGESTED + pd.Timedelta(hours=1)
    assert back["ingested_at"].iloc[4] == INGESTED


def test_read_bars_when_range_given_then_start_inclusive_end_exclusive(store):
    store.upsert_bars(make_bars())
    start, end = (T0 + pd.Timedelta(hours=5)).to_pydatetime(), (T0 + pd.Timedelta(hours=9))

    back = store.read_bars("BTC/USDT", "1h", start=start, end=end.to_pydatetime())

    assert list(back["ts"]) == list(pd.date_range(start, periods=4, freq="1h"))


def test_series_queries_when_two_series_then_last_ts_list_and_count(store):
    store.upsert_bars(pd.concat([make_bars("^GSPC", 10, "1d"), make_bars("BTC/USDT", 30)]))

    assert store.list_series() == [("BTC/USDT", "1h"), ("^GSPC", "1d")]
    assert store.count_bars("^GSPC", "1d") == 10
    assert store.count_bars("BTC/USDT", "1h") == 30
    assert store.last_ts("BTC/USDT", "1h") == (T0 + pd.Timedelta(hours=29)).to_pydatetime()
    assert store.last_ts("BTC/USDT", "1h").tzinfo is not None
    assert store.last_ts("NOPE", "1h") is None
    assert store.count_bars("NOPE", "1h") == 0
    assert store.read_bars("NOPE", "1h").empty


def test_resample_when_1h_to_1d_then_matches_pandas(store):
    bars = make_bars(n=24 * 5 + 7, start=T0 + pd.Timedelta(hours=3))
    store.upsert_bars(bars)

    out = store.resample("BTC/USDT", "1h", "1d")

    # UTC days are epoch-aligned, so grouping on the floored day is the reference answer.
    expected = bars.groupby(bars["ts"].dt.floor("1D")).agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    assert list(out["ts"]) == list(expected.index)
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(out[col].to_numpy(), expected[col].to_numpy(), rtol=1e-12)
    assert set(out["timeframe"]) == {"1d"}
    assert set(out["source"]) == {"resample:1h"}
    assert list(out.columns) == list(BAR_COLUMNS)


def test_resample_when_1d_to_1w_then_weeks_start_on_monday(store):
    bars = make_bars(n=30, timeframe="1d", start=pd.Timestamp("2024-03-06", tz="UTC"))  # a Wed
    store.upsert_bars(bars)

    out = store.resample("BTC/USDT", "1d", "1w")

    assert set(out["ts"].dt.day_of_week) == {0}
    monday = (bars["ts"] - pd.to_timedelta(bars["ts"].dt.day_of_week, unit="D")).dt.floor("1D")
    expected = bars.groupby(monday)
    assert list(out["ts"]) == list(expected.size().index)
    np.testing.assert_allclose(out["open"], expected["open"].first(), rtol=1e-12)
    np.testing.assert_allclose(out["close"], expected["close"].last(), rtol=1e-12)
    np.testing.assert_allclose(out["volume"], expected["volume"].sum(), rtol=1e-12)


def test_resample_when_target_not_coarser_then_store_error(store):
    store.upsert_bars(make_bars())

    with pytest.raises(StoreError, match="coarser"):
        store.resample("BTC/USDT", "1h", "15m")


def make_quarantine(n: int = 3, run_id: str = "run-1") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": "^GSPC",
            "timeframe": "1d",
            "ts": [T0, pd.NaT, T0 + pd.Timedelta(days=2)][:n],
            "raw": [f'{{"close": {i}}}' for i in range(n)],
            "row_fingerprint": [f"fp{i}" for i in range(n)],
            "reason": "negative_price",
            "detail": "close < 0",
            "source": "test",
            "run_id": run_id,
            "quarantined_at": INGESTED,
        }
    ).astype({"ts": "datetime64[ns, UTC]"})


def test_upsert_quarantine_when_rerun_then_idempotent(store):
    rows = make_quarantine()

    first = store.upsert_quarantine(rows)
    second = store.upsert_quarantine(rows.assign(run_id="run-2"))
    back = store.read_quarantine("^GSPC", "1d")

    assert (first, second) == (3, 0)
    assert list(back.columns) == list(QUARANTINE_COLUMNS)
    assert len(back) == 3
    assert set(back["run_id"]) == {"run-1"}
    assert back["ts"].isna().sum() == 1
    assert store.read_quarantine("other").empty


def test_upsert_records_when_round_trip_and_update_then_last_write_wins(store):
    orders = pd.DataFrame(
        {
            "client_id": ["b", "a"],
            "qty": [2, 1],
            "price": [101.5, np.nan],
            "filled": [False, True],
            "note": [None, "x"],
            "ts": pd.to_datetime(["2024-01-02", "2024-01-01"], utc=True),
        }
    )

    first = store.upsert_records("orders", orders, ["client_id"])
    second = store.upsert_records("orders", orders, ["client_id"])
    third = store.upsert_records("orders", orders.iloc[[0]].assign(qty=5), ["client_id"])
    back = store.read_records("orders")

    assert (first, second, third) == (2, 0, 1)
    assert list(back.columns) == list(orders.columns)
    assert list(back["client_id"]) == ["a", "b"]
    assert list(back["qty"]) == [1, 5]
    assert back["price"].isna().tolist() == [True, False]
    assert list(back["filled"]) == [True, False]
    assert list(back["note"]) == ["x", None]
    assert str(back["ts"].dtype) == "datetime64[ns, UTC]"
    assert back["ts"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert store.read_records("missing").empty


def test_upsert_records_when_table_name_invalid_then_store_error(store):
    with pytest.raises(StoreError, match="not valid"):
        store.upsert_records("Drop Table", pd.DataFrame({"k": [1]}), ["k"])


def test_upsert_bars_when_duplicate_key_in_batch_then_store_error(store):
    bars = make_bars(n=5)
    batch = pd.concat([bars, bars.iloc[[2]]], ignore_index=True)

    with pytest.raises(StoreError, match="repeated"):
        store.upsert_bars(batch)
    assert store.count_bars("BTC/USDT", "1h") == 0


def test_upsert_bars_when_symbols_have_odd_characters_then_kept_apart(store):
    odd = ["BTC/USDT", "^GSPC", "a b%2F..", "../x"]

    for i, symbol in enumerate(odd):
        store.upsert_bars(make_bars(symbol, n=3 + i))

    assert store.list_series() == sorted((s, "1h") for s in odd)
    assert [store.count_bars(s, "1h") for s in odd] == [3, 4, 5, 6]
    with pytest.raises(StoreError, match="non-empty"):
        store.upsert_bars(make_bars("", n=2))


def test_upsert_bars_when_naive_or_missing_columns_then_store_error(store):
    bars = make_bars(n=3)

    with pytest.raises(StoreError, match="missing columns"):
        store.upsert_bars(bars.drop(columns=["volume"]))
    with pytest.raises(StoreError, match="tz-aware"):
        store.upsert_bars(bars.assign(ts=bars["ts"].dt.tz_localize(None)))


# --- property: random overlapping batches behave like a last-write-wins dict ------------------

_KEYS = st.tuples(st.sampled_from(["A/1", "B^2"]), st.integers(0, 11))
_ROW = st.tuples(_KEYS, st.integers(1, 4), st.sampled_from(["s1", "s2"]))
_BATCH = st.lists(_ROW, min_size=1, max_size=8, unique_by=lambda r: r[0])


def _frame(batch, ns: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": [f"{ns}{sym}" for (sym, _), _, _ in batch],
            "timeframe": "1h",
            "ts": [T0 + pd.Timedelta(hours=h) for (_, h), _, _ in batch],
            "open": [float(v) for _, v, _ in batch],
            "high": [float(v) + 1 for _, v, _ in batch],
            "low": [float(v) - 1 for _, v, _ in batch],
            "close": [float(v) for _, v, _ in batch],
            "volume": [float(v) * 10 for _, v, _ in batch],
            "source": [src for _, _, src in batch],
            "ingested_at": INGESTED,
        }
    )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batches=st.lists(_BATCH, min_size=1, max_size=5))
def test_upsert_bars_when_random_overlapping_batches_then_last_write_wins(store, batches):
    ns = uuid.uuid4().hex[:6] + ":"  # each example writes its own symbols
    model: dict[tuple[str, int], tuple[int, str]] = {}
    for batch in batches:
        expected_changes = sum(1 for key, v, src in batch if model.get(key) != (v, src))
        assert store.upsert_bars(_frame(batch, ns)) == expected_changes
        model.update({key: (v, src) for key, v, src in batch})

    for sym in ("A/1", "B^2"):
        back = store.read_bars(f"{ns}{sym}", "1h")
        want = sorted((h, v, src) for (s, h), (v, src) in model.items() if s == sym)
        got = [
            (int((t - T0) / pd.Timedelta(hours=1)), int(o), src)
            for t, o, src in zip(back["ts"], back["open"], back["source"], strict=True)
        ]
        assert got == want
    final = [(key, v, src) for key, (v, src) in model.items()]
    assert store.upsert_bars(_frame(final, ns)) == 0
    assert store.upsert_bars(_frame(batches[-1], ns)) == 0


def test_open_store_when_timescale_without_dsn_then_error_says_what_to_do():
    with pytest.raises(StoreError, match="CANDLEFLOW_TIMESCALE_DSN"):
        open_store("timescale")
    with pytest.raises(StoreError, match="unknown store kind"):
        open_store("sqlite", data_dir=None)


def test_read_bars_when_start_is_naive_then_store_error(tmp_path):
    with open_store("parquet", data_dir=tmp_path) as store, pytest.raises(StoreError):
        store.read_bars("X", "1h", start=datetime(2024, 1, 1))
    assert datetime(2024, 1, 1, tzinfo=UTC)
