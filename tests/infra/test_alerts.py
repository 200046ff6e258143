"""Alerts against a local server that answers as the Telegram Bot API documents."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from infra.alerts import AlertLogHandler, Notifier, TelegramBackend, WebhookBackend

TOKEN = "123456:cAnArY-t0k3n-aBcD"
BIN = Path(sys.executable).parent / "candleflow"


def telegram_ok(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    # https://core.telegram.org/bots/api#making-requests: {"ok": true, "result": Message}
    return 200, {
        "ok": True,
        "result": {
            "message_id": 7,
            "date": 1764614400,
            "chat": {"id": int(body["chat_id"]), "type": "private"},
            "text": body["text"],
        },
    }


def telegram_refuses(_: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}


class Posts:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.answer: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]] = telegram_ok


@contextmanager
def post_server() -> Iterator[tuple[str, Posts]]:
    posts = Posts()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            posts.seen.append((self.path, body))
            status, answer = posts.answer(body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", posts
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_telegram_when_api_answers_ok_then_message_sent_to_the_chat() -> None:
    with post_server() as (url, posts):
        notifier = Notifier([TelegramBackend(TOKEN, "4242", base_url=url)])

        queued = notifier.notify("kill_switch_engaged", "operator engaged the switch")
        notifier.flush()

    assert queued and notifier.delivered == 1 and notifier.failed == 0
    path, body = posts.seen[0]
    assert path == f"/bot{TOKEN}/sendMessage"
    assert body["chat_id"] == "4242"
    assert "kill_switch_engaged: operator engaged the switch" in body["text"]


def test_telegram_when_api_refuses_then_counted_failed_logged_redacted_never_raised(
    caplog,
) -> None:
    caplog.set_level(logging.WARNING, logger="infra.alerts")
    with post_server() as (url, posts):
        posts.answer = telegram_refuses
        notifier = Notifier([TelegramBackend(TOKEN, "4242", base_url=url)])

        notifier.notify("risk_halt", "daily loss limit")
        notifier.flush()

    assert notifier.failed == 1 and notifier.delivered == 0
    line = next(r.getMessage() for r in caplog.records if "alert_failed" in r.getMessage())
    assert "401 Unauthorized" in line


def test_notifier_when_same_event_repeats_then_one_per_interval_and_the_rest_counted() -> None:
    now = [0.0]
    with post_server() as (url, posts):
        notifier = Notifier(
            [WebhookBackend(url + "/hook")], min_interval_s=60, clock=lambda: now[0]
        )
        sent = [notifier.notify("store_unavailable", f"attempt {i}") for i in range(5)]
        now[0] = 61.0
        sent.append(notifier.notify("store_unavailable", "attempt 5"))
        sent.append(notifier.notify("reconcile_mismatch", "other key"))
        notifier.flush()

    assert sent == [True, False, False, False, False, True, True]
    texts = [body["text"] for _, body in posts.seen]
    assert "+4 more held back by the rate limit" in texts[1]
    assert {body["event"] for _, body in posts.seen} == {"store_unavailable", "reconcile_mismatch"}


def test_notifier_when_endpoint_is_dead_then_notify_returns_at_once_and_never_raises() -> None:
    notifier = Notifier([TelegramBackend(TOKEN, "1", base_url="http://127.0.0.1:9")])

    start = time.perf_counter()
    notifier.notify("kill_switch_engaged", "x")
    queued_in = time.perf_counter() - start
    notifier.flush()

    assert queued_in < 0.5
    assert notifier.failed == 1


def test_log_handler_when_alert_event_logged_then_alert_and_other_lines_ignored() -> None:
    calls: list[tuple[str, str]] = []

    class Recorder(Notifier):
        def notify(self, event: str, text: str, **kw: Any) -> bool:
            calls.append((event, text))
            return True

    handler = AlertLogHandler(Recorder([]))
    log = logging.getLogger("tests.alerts")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.error("event=reconcile_mismatch halted=true detail=%s", "SPX 1 vs 0")
        log.info("event=order_sent client_id=abc")
        log.warning("nothing to see")
    finally:
        log.removeHandler(handler)

    line = "event=reconcile_mismatch halted=true detail=SPX 1 vs 0"
    assert calls == [("reconcile_mismatch", line)]


@pytest.mark.parametrize("reachable", [True, False], ids=["telegram-up", "telegram-down"])
def test_cli_when_kill_switch_engaged_then_telegram_alerted_and_a_dead_one_changes_nothing(
    tmp_path, reachable
) -> None:
    with post_server() as (url, posts):
        env = {
            **os.environ,
            "CANDLEFLOW_HOME": str(tmp_path),
            "CANDLEFLOW_TELEGRAM_BOT_TOKEN": TOKEN,
            "CANDLEFLOW_TELEGRAM_CHAT_ID": "4242",
            "CANDLEFLOW_TELEGRAM_API_URL": url if reachable else "http://127.0.0.1:9",
        }
        out = subprocess.run([str(BIN), "kill-switch", "on"], env=env, capture_output=True,
                             text=True, check=False, timeout=120)

    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["engaged"] is True
    assert TOKEN not in out.stderr
    if reachable:
        assert [b["text"] for _, b in posts.seen if "kill_switch_engaged" in b["text"]]
    else:
        assert "event=alert_failed backend=telegram" in out.stderr
