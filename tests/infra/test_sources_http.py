"""The shared HTTP client against a real local server: retries, limits, errors, redaction."""

from __future__ import annotations

import logging
import random
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from infra.sources import (
    HttpClient,
    RateLimitedError,
    RetryPolicy,
    SourceAuthError,
    SourceFormatError,
    SourceRequestError,
    SourceUnavailableError,
)
from infra.sources.http import parse_retry_after
from tests.infra.fixtures_http.server import LocalServer, Reply, running_server, scripted

SECRET = "S3CR3T-KEY-42"


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with running_server() as srv:
        yield srv


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_client(sleep: RecordingSleep, attempts: int = 4, **kwargs) -> HttpClient:
    policy = RetryPolicy(max_attempts=attempts, backoff_base_s=1.0, jitter_ratio=0.0)
    return HttpClient(name="test", retry=policy, sleep=sleep, rng=random.Random(0), **kwargs)


def test_get_json_when_429_then_503_then_ok_then_returns_payload_after_three_calls(server):
    # Arrange
    server.responder = scripted(
        Reply(429, {"msg": "slow down"}, {"Retry-After": "7"}),
        Reply(503, "upstream down"),
        Reply(200, {"ok": True}),
    )
    sleep = RecordingSleep()
    client = make_client(sleep)

    # Act
    payload = client.get_json(server.url + "/x", {"a": 1})

    # Assert
    assert payload == {"ok": True}
    assert len(server.requests) == 3
    assert server.requests[0].params == {"a": "1"}
    assert sleep.calls == [7.0, 2.0]  # Retry-After beats the 1 s backoff; then 2**1 s


def test_get_json_when_503_persists_then_raises_unavailable_after_max_attempts(server):
    server.responder = scripted(Reply(503, "maintenance"))
    sleep = RecordingSleep()
    client = make_client(sleep, attempts=3)

    with pytest.raises(SourceUnavailableError) as info:
        client.get_json(server.url + "/x")

    assert len(server.requests) == 3
    assert sleep.calls == [1.0, 2.0]
    assert "after 3 attempts" in str(info.value)
    assert "HTTP 503 maintenance" in str(info.value)


def test_get_json_when_429_persists_then_raises_rate_limited_with_retry_after(server):
    server.responder = scripted(Reply(429, "busy", {"Retry-After": "3"}))
    client = make_client(RecordingSleep(), attempts=2)

    with pytest.raises(RateLimitedError) as info:
        client.get_json(server.url + "/x")

    assert info.value.retry_after_s == 3.0
    assert len(server.requests) == 2


def test_get_json_when_retry_after_exceeds_cap_then_fails_without_waiting(server):
    server.responder = scripted(Reply(429, "banned", {"Retry-After": "7200"}))
    sleep = RecordingSleep()
    client = make_client(sleep)

    with pytest.raises(RateLimitedError, match="7200 s"):
        client.get_json(server.url + "/x")

    assert len(server.requests) == 1
    assert sleep.calls == []


def test_get_json_when_404_then_raises_request_error_at_once_with_body(server):
    server.responder = scripted(Reply(404, {"code": -1121, "msg": "Invalid symbol."}))
    sleep = RecordingSleep()
    client = make_client(sleep)

    with pytest.raises(SourceRequestError) as info:
        client.get_json(server.url + "/x")

    assert len(server.requests) == 1
    assert sleep.calls == []
    assert "HTTP 404" in str(info.value)
    assert "Invalid symbol." in str(info.value)


def test_get_json_when_401_then_raises_auth_error_at_once(server):
    server.responder = scripted(Reply(401, "bad key"))
    client = make_client(RecordingSleep())

    with pytest.raises(SourceAuthError, match="HTTP 401"):
        client.get_json(server.url + "/x")

    assert len(server.requests) == 1


def test_get_json_when_body_is_not_json_then_raises_format_error(server):
    server.responder = scripted(Reply(200, "<html>maintenance</html>"))
    client = make_client(RecordingSleep())

    with pytest.raises(SourceFormatError, match="not JSON"):
        client.get_json(server.url + "/x")


def test_get_json_when_connection_refused_then_unavailable_and_secret_redacted(caplog):
    # Arrange: a port that nothing listens on
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(RecordingSleep(), attempts=2, secrets=(SECRET,), timeout_s=2)
    caplog.set_level(logging.DEBUG)

    # Act
    with pytest.raises(SourceUnavailableError) as info:
        client.get_json(f"http://127.0.0.1:{port}/q", {"apikey": SECRET})

    # Assert
    assert "ConnectionError" in str(info.value)
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None  # the raw requests error (URL with key) is not chained
    assert info.value.__context__ is None
    assert "apikey=***" in str(info.value)
    assert SECRET not in caplog.text


def test_get_json_when_secret_in_query_then_urllib3_debug_lines_are_redacted(server, caplog):
    server.responder = scripted(Reply(200, {"ok": True}))
    client = make_client(RecordingSleep(), secrets=(SECRET,))
    caplog.set_level(logging.DEBUG)

    client.get_json(server.url + "/q", {"apikey": SECRET})

    assert server.requests[0].params["apikey"] == SECRET  # the key was really sent
    assert "apikey=***" in caplog.text  # and urllib3's request line was logged, redacted
    assert SECRET not in caplog.text


def test_get_json_when_min_interval_then_waits_between_calls(server):
    server.responder = scripted(Reply(200, {"ok": True}))
    sleep = RecordingSleep()
    now = [100.0]
    client = make_client(sleep, min_interval_s=12.0, clock=lambda: now[0])

    client.get_json(server.url + "/x")  # t=100: first call, no wait
    now[0] = 103.0
    client.get_json(server.url + "/x")  # 9 s too early: waits 9 s, counts as called at 112
    now[0] = 115.0
    client.get_json(server.url + "/x")  # 3 s after 112: waits 9 s again
    now[0] = 500.0
    client.get_json(server.url + "/x")  # long after: no wait

    assert sleep.calls == [9.0, 9.0]


def test_backoff_when_retrying_then_doubles_and_stays_within_jitter_and_cap():
    policy = RetryPolicy(backoff_base_s=1.0, backoff_max_s=5.0, jitter_ratio=0.2)
    rng = random.Random(1)

    waits = [policy.backoff_s(n, rng) for n in (1, 2, 3, 4, 5)]

    for wait, base in zip(waits, (1, 2, 4, 5, 5), strict=True):
        assert base * 0.8 <= wait <= base * 1.2


def test_retry_policy_when_attempts_below_one_then_rejected():
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_parse_retry_after_when_http_date_then_seconds_until_then():
    now = datetime(2024, 1, 5, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after("Fri, 05 Jan 2024 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("12", now=now) == 12.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


def test_get_json_when_session_injected_then_it_is_used(server):
    server.responder = scripted(Reply(200, [1, 2]))
    session = requests.Session()
    session.headers["X-Test"] = "yes"
    client = make_client(RecordingSleep(), session=session)

    assert client.get_json(server.url + "/x") == [1, 2]
