"""Alerts to people: a webhook and/or a Telegram bot, rate-limited, never in trading's way.

Configured from the environment at the edges (`notifier_from_env`):

- `CANDLEFLOW_ALERT_WEBHOOK_URL`: POSTs `{"event", "severity", "text", "ts", "source"}` as JSON
  (Slack- and Mattermost-style incoming webhooks also read the `text` field).
- `CANDLEFLOW_TELEGRAM_BOT_TOKEN` and `CANDLEFLOW_TELEGRAM_CHAT_ID`: the Bot API's
  `sendMessage` (https://core.telegram.org/bots/api#sendmessage); its answer is
  `{"ok": true, "result": Message}` or `{"ok": false, "error_code", "description",
  "parameters": {"retry_after"}}`, and `ok: false` counts as a failed delivery.
- `CANDLEFLOW_ALERT_MIN_INTERVAL_S` (default 300): one alert per event key in that window; the
  ones held back are counted and reported with the next one that goes out.

Delivery runs on a background thread with short timeouts: `notify` only queues, so a slow or
dead endpoint never delays a bar, and a failed delivery is logged (redacted), never raised.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import requests

from infra.redact import register_secrets

__all__ = [
    "ALERT_EVENTS",
    "Alert",
    "AlertBackend",
    "AlertLogHandler",
    "Notifier",
    "TelegramBackend",
    "WebhookBackend",
    "get_notifier",
    "install_alert_logging",
    "notifier_from_env",
]

logger = logging.getLogger(__name__)

ENV_WEBHOOK = "CANDLEFLOW_ALERT_WEBHOOK_URL"
TELEGRAM_TOKEN_VAR = "CANDLEFLOW_TELEGRAM_BOT_TOKEN"  # noqa: S105 - the variable's name
ENV_TELEGRAM_CHAT = "CANDLEFLOW_TELEGRAM_CHAT_ID"
ENV_TELEGRAM_URL = "CANDLEFLOW_TELEGRAM_API_URL"  # a local test server; default the real API
ENV_MIN_INTERVAL = "CANDLEFLOW_ALERT_MIN_INTERVAL_S"
TELEGRAM_API = "https://api.telegram.org"
_TIMEOUT_S = 5.0
_MAX_TEXT = 4096  # Telegram's message limit

# Log events of the live plane that a person must hear about, with their severity. The worker
# turns each such log line into an alert (`install_alert_logging`), so the code that detects
# the condition only logs it, in its own words.
ALERT_EVENTS: Mapping[str, str] = {
    "kill_switch_engaged": "warning",
    "kill_switch_unreadable": "error",
    "flatten": "warning",
    "risk_halt": "error",
    "reconcile_mismatch": "error",
    "reconcile_unavailable": "error",
    "store_unavailable": "error",
    "store_recovered": "info",
    "order_unknown": "error",
    "worker_forced_stop": "warning",
}


@dataclass(frozen=True)
class Alert:
    event: str  # machine name, e.g. "kill_switch_engaged"; also the rate-limit key by default
    text: str  # one line for a person
    severity: str = "warning"  # info | warning | error
    ts: datetime | None = None  # UTC; set when queued
    suppressed: int = 0  # alerts of the same key held back by the rate limit before this one


class AlertBackend(Protocol):
    name: str

    def send(self, alert: Alert) -> None:
        """Deliver or raise (any exception counts as a failed delivery)."""


class WebhookBackend:
    def __init__(self, url: str, session: requests.Session | None = None) -> None:
        self.name = "webhook"
        self._url = url
        self._session = session or requests.Session()

    def send(self, alert: Alert) -> None:
        body = {
            "event": alert.event,
            "severity": alert.severity,
            "text": _line(alert),
            "ts": None if alert.ts is None else alert.ts.isoformat(),
            "source": "candleflow",
        }
        response = self._session.post(self._url, json=body, timeout=_TIMEOUT_S)
        if response.status_code >= 300:
            msg = f"webhook answered HTTP {response.status_code}"
            raise RuntimeError(msg)


class TelegramBackend:
    """The Telegram Bot API's sendMessage; the token is a secret (redacted everywhere)."""

    def __init__(
        self,
        token: str,
        chat_id: str,
        base_url: str = TELEGRAM_API,
        session: requests.Session | None = None,
    ) -> None:
        self.name = "telegram"
        self._url = f"{base_url.rstrip('/')}/bot{token}/sendMessage"
        self._chat = chat_id
        self._session = session or requests.Session()
        register_secrets([token])

    def send(self, alert: Alert) -> None:
        response = self._session.post(
            self._url,
            json={"chat_id": self._chat, "text": _line(alert)[:_MAX_TEXT]},
            timeout=_TIMEOUT_S,
        )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        if answer.get("ok") is not True:
            desc = answer.get("description", "")
            code = answer.get("error_code", response.status_code)
            msg = f"telegram refused the message: {code} {desc}".strip()
            raise RuntimeError(msg)


def _line(alert: Alert) -> str:
    more = f" (+{alert.suppressed} more held back by the rate limit)" if alert.suppressed else ""
    return f"[candleflow {alert.severity}] {alert.event}: {alert.text}{more}"


class Notifier:
    """Queues alerts for delivery on a background thread, at most one per key per interval."""

    def __init__(
        self,
        backends: Sequence[AlertBackend],
        *,
        min_interval_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backends = tuple(backends)
        self._min_interval = float(min_interval_s)
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=1000)
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return bool(self.backends)

    def notify(
        self, event: str, text: str, *, severity: str = "warning", key: str | None = None
    ) -> bool:
        """Queue an alert; False when none is configured or the rate limit holds it back."""
        if not self.backends:
            return False
        k = key or event
        now = self._clock()
        with self._lock:
            last = self._last.get(k)
            if last is not None and now - last < self._min_interval:
                self._held[k] = self._held.get(k, 0) + 1
                return False
            self._last[k] = now
            suppressed = self._held.pop(k, 0)
            self._start()
        alert = Alert(event, text, severity, datetime.now(UTC), suppressed)
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            logger.warning("alert dropped (queue full): %s", event)
            return False
        return True

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued alert was tried (tests, and the end of a CLI command)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="candleflow-alerts", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            try:
                if alert is None:
                    return
                for backend in self.backends:
                    self._deliver(backend, alert)
            finally:
                self._queue.task_done()

    def _deliver(self, backend: AlertBackend, alert: Alert) -> None:
        try:
            backend.send(alert)
        except Exception as exc:  # a failed alert must never reach trading, whatever it was
            self.failed += 1
            # Logged by the alerts logger, which AlertLogHandler ignores: no alert loop.
            logger.warning(
                "event=alert_failed backend=%s alert=%s error=%s: %s",
                backend.name,
                alert.event,
                type(exc).__name__,
                exc,
            )
        else:
            self.delivered += 1


def notifier_from_env(
    environ: Mapping[str, str] | None = None, session: requests.Session | None = None
) -> Notifier:
    env = os.environ if environ is None else environ
    backends: list[AlertBackend] = []
    url = (env.get(ENV_WEBHOOK) or "").strip()
    if url:
        backends.append(WebhookBackend(url, session))
    token = (env.get(TELEGRAM_TOKEN_VAR) or "").strip()
    chat = (env.get(ENV_TELEGRAM_CHAT) or "").strip()
    if token and chat:
        base = (env.get(ENV_TELEGRAM_URL) or "").strip() or TELEGRAM_API
        backends.append(TelegramBackend(token, chat, base, session))
    elif token or chat:
        logger.warning(
            "Telegram alerts need both %s and %s; only one is set, so none are sent",
            TELEGRAM_TOKEN_VAR,
            ENV_TELEGRAM_CHAT,
        )
    interval = float(env.get(ENV_MIN_INTERVAL) or 300.0)
    return Notifier(backends, min_interval_s=interval)


_NOTIFIER: Notifier | None = None
_NOTIFIER_LOCK = threading.Lock()


def get_notifier() -> Notifier:
    """The process's notifier, built from the environment on first use."""
    global _NOTIFIER
    with _NOTIFIER_LOCK:
        if _NOTIFIER is None:
            _NOTIFIER = notifier_from_env()
        return _NOTIFIER


class AlertLogHandler(logging.Handler):
    """Turns the log lines of ALERT_EVENTS (`event=<name> ...`) into alerts."""

    def __init__(self, notifier: Notifier, events: Mapping[str, str] = ALERT_EVENTS) -> None:
        super().__init__(level=logging.INFO)
        self.notifier = notifier
        self.events = dict(events)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == __name__:
            return
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return
        if not message.startswith("event="):
            return
        event = message[len("event=") :].split(" ", 1)[0]
        severity = self.events.get(event)
        if severity is None:
            return
        # The line as logged, through the same redaction as every log line.
        from infra.redact import redact

        self.notifier.notify(event, redact(message), severity=severity)


def install_alert_logging(notifier: Notifier | None = None) -> Notifier:
    """Alert on ALERT_EVENTS log lines from anywhere in the process (once per process)."""
    chosen = notifier or get_notifier()
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, AlertLogHandler):
            handler.notifier = chosen
            return chosen
    if chosen.enabled:
        root.addHandler(AlertLogHandler(chosen))
    return chosen
