"""Alpha Vantage against a local server answering in its documented JSON format."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
import pytest

from infra.sources import (
    AlphaVantageSource,
    RateLimitedError,
    RetryPolicy,
    SourceAuthError,
    SourceFormatError,
    SourceRequestError,
    SourceUnavailableError,
)
from tests.infra.fixtures_http.server import (
    LocalServer,
    Reply,
    load_fixture,
    running_server,
    scripted,
)

KEY = "AVKEY-9f8e7d6c"
AFTER_DATA = datetime(2024, 1, 8, 12, tzinfo=UTC)  # every fixture bar has ended by then
NOTE = {
    "Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per "
    "minute and 500 calls per day."
}


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with running_server() as srv:
        yield srv


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_source(server: LocalServer, sleep=None, now=AFTER_DATA, attempts=3):
    return AlphaVantageSource(
        KEY,
        base_url=server.url,
        sleep=sleep or RecordingSleep(),
        retry=RetryPolicy(max_attempts=attempts, backoff_base_s=1.0, jitter_ratio=0.0),
        now=lambda: now,
    )


def test_fetch_daily_when_documented_payload_then_ascending_utc_midnight_raw_values(server):
    # Arrange
    server.responder = scripted(Reply(200, load_fixture("av_daily_ibm.json")))
    source = make_source(server)

    # Act
    raw = source.fetch_daily("IBM")

    # Assert
    assert (raw.symbol, raw.timeframe, raw.source, raw.instrument_class) == (
        "IBM",
        "1d",
        "alphavantage",
        "equity",
    )
    frame = raw.frame
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert list(frame["ts"]) == list(pd.date_range("2024-01-02", periods=4, freq="D", tz="UTC"))
    assert frame.iloc[0].to_dict() == {
        "ts": pd.Timestamp("2024-01-02", tz="UTC"),
        "open": "162.8300",
        "high": "163.2900",
        "low": "160.7600",
        "close": "161.5000",
        "volume": "4241400",
    }
    request = server.requests[0]
    assert request.path == "/query"
    assert request.params == {
        "function": "TIME_SERIES_DAILY",
        "symbol": "IBM",
        "outputsize": "full",  # no `since`: the whole history
        "apikey": KEY,
    }


def test_fetch_when_since_is_recent_then_compact_and_only_later_bars(server):
    server.responder = scripted(Reply(200, load_fixture("av_daily_ibm.json")))
    source = make_source(server)

    raw = source.fetch("IBM", since=datetime(2024, 1, 3, tzinfo=UTC))

    assert list(raw.frame["ts"]) == [
        pd.Timestamp("2024-01-04", tz="UTC"),
        pd.Timestamp("2024-01-05", tz="UTC"),
    ]
    assert server.requests[0].params["outputsize"] == "compact"


def test_fetch_daily_when_last_bar_still_forming_then_it_is_left_out(server):
    server.responder = scripted(Reply(200, load_fixture("av_daily_ibm.json")))
    source = make_source(server, now=datetime(2024, 1, 5, 18, tzinfo=UTC))

    raw = source.fetch_daily("IBM")

    assert raw.frame["ts"].max() == pd.Timestamp("2024-01-04", tz="UTC")
    assert len(raw) == 3


def test_fetch_daily_when_values_are_garbage_or_missing_then_rows_are_kept_raw(server):
    payload = load_fixture("av_daily_ibm.json")
    series = payload["Time Series (Daily)"]
    series["2024-01-03"]["1. open"] = "n/a"
    del series["2024-01-04"]["5. volume"]
    series["not-a-date"] = dict(series["2024-01-02"])
    server.responder = scripted(Reply(200, payload))

    raw = make_source(server).fetch_daily("IBM")

    frame = raw.frame
    assert len(frame) == 5  # nothing dropped
    assert frame.loc[frame["ts"] == pd.Timestamp("2024-01-03", tz="UTC"), "open"].item() == "n/a"
    assert pd.isna(frame.loc[frame["ts"] == pd.Timestamp("2024-01-04", tz="UTC"), "volume"].item())
    assert frame["ts"].isna().sum() == 1  # the unparseable stamp, kept for quarantine


def test_fetch_fx_intraday_when_meta_time_zone_then_converted_to_utc_with_zero_volume(server):
    server.responder = scripted(Reply(200, load_fixture("av_fx_intraday_60min.json")))
    source = make_source(server)

    raw = source.fetch_fx_intraday("EUR", "USD")

    assert (raw.symbol, raw.timeframe, raw.instrument_class) == ("EURUSD", "1h", "fx")
    # 10:00 in New York in January (EST, UTC-5) is 15:00 UTC
    assert list(raw.frame["ts"]) == list(
        pd.date_range("2024-01-05 15:00", periods=3, freq="h", tz="UTC")
    )
    assert list(raw.frame["volume"]) == [0.0, 0.0, 0.0]
    assert raw.frame["open"].iloc[0] == "1.09150"
    params = server.requests[0].params
    assert params["function"] == "FX_INTRADAY"
    assert (params["from_symbol"], params["to_symbol"], params["interval"]) == (
        "EUR",
        "USD",
        "60min",
    )


def test_fetch_fx_intraday_when_time_zone_missing_then_format_error(server):
    payload = load_fixture("av_fx_intraday_60min.json")
    del payload["Meta Data"]["7. Time Zone"]
    server.responder = scripted(Reply(200, payload))

    with pytest.raises(SourceFormatError, match="Time Zone"):
        make_source(server).fetch_fx_intraday("EUR", "USD")


def test_fetch_daily_when_note_rate_limit_then_retries_after_backoff_and_succeeds(server):
    server.responder = scripted(Reply(200, NOTE), Reply(200, load_fixture("av_daily_ibm.json")))
    sleep = RecordingSleep()

    raw = make_source(server, sleep=sleep).fetch_daily("IBM")

    assert len(raw) == 4
    assert len(server.requests) == 2
    # 12 s is the free tier's spacing (5 calls/min), applied before the retry's own call.
    assert 1.0 in sleep.calls


def test_fetch_daily_when_rate_limit_persists_then_rate_limited_error(server):
    info_limit = {"Information": "Our standard API rate limit is 25 requests per day."}
    server.responder = scripted(Reply(200, info_limit))

    with pytest.raises(RateLimitedError, match="25 requests per day") as info:
        make_source(server, attempts=2).fetch_daily("IBM")

    assert len(server.requests) == 2
    assert KEY not in str(info.value)


def test_fetch_daily_when_error_message_then_format_error_at_once(server):
    server.responder = scripted(
        Reply(200, {"Error Message": "Invalid API call. Please retry or visit the documentation"})
    )

    with pytest.raises(SourceFormatError, match="Invalid API call") as info:
        make_source(server).fetch_daily("NOPE")

    assert len(server.requests) == 1
    assert "'NOPE'" in str(info.value)
    assert KEY not in str(info.value)


def test_fetch_daily_when_premium_information_then_request_error(server):
    premium = {"Information": "Thank you for using Alpha Vantage! This is a premium endpoint."}
    server.responder = scripted(Reply(200, premium))

    with pytest.raises(SourceRequestError, match="premium endpoint"):
        make_source(server).fetch_daily("IBM", "full")


def test_fetch_daily_when_series_key_missing_then_format_error_names_found_keys(server):
    server.responder = scripted(Reply(200, {"Meta Data": {}, "Weekly": {}}))

    with pytest.raises(SourceFormatError, match=r"Time Series \(Daily\).*Weekly"):
        make_source(server).fetch_daily("IBM")


def test_fetch_daily_when_any_failure_then_api_key_never_in_errors_or_logs(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.responder = scripted(Reply(503, f"echo apikey={KEY}"))
    source = make_source(server, attempts=2)

    with pytest.raises(SourceUnavailableError) as unavailable:
        source.fetch_daily("IBM")
    server.responder = scripted(Reply(400, "bad request"))
    with pytest.raises(SourceRequestError) as rejected:
        source.fetch_daily("IBM")

    assert len(server.requests) == 3  # the key was sent each time
    assert all(r.params["apikey"] == KEY for r in server.requests)
    for text in (str(unavailable.value), str(rejected.value), caplog.text, repr(source)):
        assert KEY not in text
    assert "apikey=***" in str(rejected.value)


def test_from_env_when_key_missing_then_auth_error_names_the_variable():
    with pytest.raises(SourceAuthError, match="ALPHAVANTAGE_API_KEY"):
        AlphaVantageSource.from_env({"OTHER": "x"})


def test_from_env_when_key_set_then_source_uses_it(server):
    server.responder = scripted(Reply(200, load_fixture("av_daily_ibm.json")))
    source = AlphaVantageSource.from_env(
        {"ALPHAVANTAGE_API_KEY": KEY}, base_url=server.url, now=lambda: AFTER_DATA
    )

    source.fetch_daily("IBM")

    assert server.requests[0].params["apikey"] == KEY
