"""Binance klines against a local server that pages like /api/v3/klines does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from infra.sources import (
    BinanceKlinesSource,
    RetryPolicy,
    SourceFormatError,
    SourceRequestError,
)
from quality.schema import UnknownTimeframeError
from tests.infra.fixtures_http.server import LocalServer, Reply, Seen, running_server, scripted

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR_MS = 3_600_000
T0_MS = int(T0.timestamp()) * 1000
N_CANDLES = 25
# The 25th candle (index 24) opened at T0+24h and is still forming at NOW.
NOW = T0 + timedelta(hours=24, minutes=30)


def kline(i: int) -> list:
    """One candle in Binance's documented array format."""
    open_ms = T0_MS + i * HOUR_MS
    price = f"{100 + i}.50000000"
    return [
        open_ms,
        price,
        f"{101 + i}.00000000",
        f"{99 + i}.00000000",
        price,
        f"{10 + i}.12300000",
        open_ms + HOUR_MS - 1,
        "1000.0",
        42,
        "5.0",
        "500.0",
        "0",
    ]


CANDLES = [kline(i) for i in range(N_CANDLES)]


def klines_endpoint(seen: Seen) -> Reply:
    """startTime / endTime / limit as Binance applies them: oldest first from startTime."""
    if seen.path != "/api/v3/klines":
        return Reply(404, {"code": -1, "msg": "not found"})
    start = int(seen.params.get("startTime", 0))
    end = int(seen.params.get("endTime", 2**62))
    limit = int(seen.params.get("limit", 500))
    rows = [k for k in CANDLES if start <= k[0] <= end][:limit]
    return Reply(200, rows)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with running_server() as srv:
        srv.responder = klines_endpoint
        yield srv


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_source(server: LocalServer, limit: int = 10, sleep=None) -> BinanceKlinesSource:
    return BinanceKlinesSource(
        base_url=server.url,
        limit=limit,
        sleep=sleep or RecordingSleep(),
        now=lambda: NOW,
        retry=RetryPolicy(max_attempts=3, backoff_base_s=0.5, jitter_ratio=0.0),
    )


def test_fetch_when_history_spans_pages_then_pages_by_start_time_and_keeps_closed_only(server):
    # Act
    raw = make_source(server, limit=10).fetch("BTCUSDT", "1h", start=T0)

    # Assert
    starts = [int(r.params["startTime"]) for r in server.requests]
    # next startTime = last openTime + 1 ms: candles 0-9, 10-19, 20-24
    assert starts == [T0_MS, T0_MS + 9 * HOUR_MS + 1, T0_MS + 19 * HOUR_MS + 1]
    assert {r.params["interval"] for r in server.requests} == {"1h"}
    assert (raw.symbol, raw.timeframe, raw.source, raw.instrument_class) == (
        "BTCUSDT",
        "1h",
        "binance",
        "crypto",
    )
    frame = raw.frame
    assert len(frame) == 24  # the 25th candle is still open
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert list(frame["ts"]) == list(pd.date_range(T0, periods=24, freq="h"))
    assert frame.iloc[3].to_dict() == {
        "ts": pd.Timestamp(T0 + timedelta(hours=3)),
        "open": "103.50000000",
        "high": "104.00000000",
        "low": "102.00000000",
        "close": "103.50000000",
        "volume": "13.12300000",
    }


def test_fetch_when_since_given_then_starts_one_ms_after_and_returns_later_bars(server):
    since = T0 + timedelta(hours=19)

    raw = make_source(server, limit=10).fetch("BTCUSDT", "1h", since=since)

    assert int(server.requests[0].params["startTime"]) == T0_MS + 19 * HOUR_MS + 1
    assert list(raw.frame["ts"]) == list(
        pd.date_range(T0 + timedelta(hours=20), periods=4, freq="h")
    )


def test_fetch_when_end_given_then_sends_end_time_and_stops_there(server):
    end = T0 + timedelta(hours=4)

    raw = make_source(server, limit=3).fetch("BTCUSDT", "1h", start=T0, end=end)

    assert len(raw) == 5
    assert all(int(r.params["endTime"]) == T0_MS + 4 * HOUR_MS for r in server.requests)
    assert len(server.requests) == 2  # 3 + 2 candles; the short page ends it


def test_fetch_when_no_start_then_asks_from_the_first_candle(server):
    make_source(server, limit=1000).fetch("BTCUSDT", "1h")

    assert server.requests[0].params["startTime"] == "0"
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [429, 418])
def test_fetch_when_rate_limited_then_waits_retry_after_and_succeeds(server, status):
    replies = iter(
        [Reply(status, {"code": -1003, "msg": "Too many requests"}, {"Retry-After": "4"})]
    )

    def respond(seen: Seen) -> Reply:
        return next(replies, None) or klines_endpoint(seen)

    server.responder = respond
    sleep = RecordingSleep()

    raw = make_source(server, limit=1000, sleep=sleep).fetch("BTCUSDT", "1h", start=T0)

    assert len(raw) == 24
    assert len(server.requests) == 2
    assert 4.0 in sleep.calls


def test_fetch_when_invalid_symbol_then_request_error_with_binance_message(server):
    server.responder = scripted(Reply(400, {"code": -1121, "msg": "Invalid symbol."}))

    with pytest.raises(SourceRequestError, match="Invalid symbol"):
        make_source(server).fetch("NOPE", "1h", start=T0)

    assert len(server.requests) == 1


def test_fetch_when_kline_malformed_then_format_error(server):
    server.responder = scripted(Reply(200, [CANDLES[0], ["x", "1", "2"]]))

    with pytest.raises(SourceFormatError, match="kline 1 of BTCUSDT is malformed"):
        make_source(server).fetch("BTCUSDT", "1h", start=T0)


def test_fetch_when_payload_is_an_object_then_format_error(server):
    server.responder = scripted(Reply(200, {"unexpected": True}))

    with pytest.raises(SourceFormatError, match="expected a JSON array"):
        make_source(server).fetch("BTCUSDT", "1h", start=T0)


def test_fetch_when_garbage_price_then_row_kept_raw(server):
    bad = list(CANDLES[1])
    bad[2] = "not-a-number"
    server.responder = scripted(Reply(200, [CANDLES[0], bad, CANDLES[2]]))

    raw = make_source(server).fetch("BTCUSDT", "1h", start=T0)

    assert len(raw) == 3
    assert raw.frame["high"].iloc[1] == "not-a-number"


def test_fetch_when_no_data_then_empty_frame_with_raw_columns(server):
    server.responder = scripted(Reply(200, []))

    raw = make_source(server).fetch("BTCUSDT", "1h", start=T0)

    assert len(raw) == 0
    assert list(raw.frame.columns) == ["ts", "open", "high", "low", "close", "volume"]


def test_fetch_when_timeframe_unknown_then_error_lists_supported(server):
    with pytest.raises(UnknownTimeframeError, match="1m, 5m"):
        make_source(server).fetch("BTCUSDT", "2h")


def test_fetch_when_start_and_since_both_given_then_value_error(server):
    with pytest.raises(ValueError, match="either start"):
        make_source(server).fetch("BTCUSDT", "1h", start=T0, since=T0)


def test_fetch_when_naive_datetime_then_value_error(server):
    with pytest.raises(ValueError, match="timezone-aware"):
        make_source(server).fetch("BTCUSDT", "1h", start=datetime(2024, 1, 1))
