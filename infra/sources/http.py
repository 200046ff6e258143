"""A small HTTP client shared by the HTTP sources: timeouts, retries, rate limiting, redaction.

Retries use exponential backoff with jitter on 429 (and any other status the caller names as a
rate limit, e.g. Binance's 418) and on 5xx and network errors, honouring Retry-After. Other 4xx
fail at once with the provider's message. Secrets (API keys) are redacted from every log line
and error message this client produces, and from urllib3's own debug lines, which print URLs.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from infra.redact import Redactor, register_secrets
from infra.sources.base import (
    RateLimitedError,
    SourceAuthError,
    SourceError,
    SourceFormatError,
    SourceRequestError,
    SourceUnavailableError,
)

__all__ = ["HttpClient", "PayloadCheck", "RetryPolicy"]

logger = logging.getLogger(__name__)

# A payload check raises RateLimitedError for "slow down" answers hidden in a 200 body (Alpha
# Vantage does this); the client then retries like a 429. Any other exception propagates.
PayloadCheck = Callable[[Any], None]

_BODY_SNIPPET = 300


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # total tries, the first included
    backoff_base_s: float = 1.0  # wait before retry n is base * 2**(n-1), capped at backoff_max_s
    backoff_max_s: float = 60.0
    jitter_ratio: float = 0.25  # wait is scaled by 1 +- this, so workers do not retry in lockstep
    # A Retry-After longer than this fails at once: a ban of hours must not block a run silently.
    max_retry_after_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            msg = f"max_attempts must be >= 1, got {self.max_attempts}"
            raise ValueError(msg)
        if self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.max_retry_after_s < 0:
            msg = "backoff_base_s, backoff_max_s and max_retry_after_s must be >= 0"
            raise ValueError(msg)
        if not 0 <= self.jitter_ratio < 1:
            msg = f"jitter_ratio must be in [0, 1), got {self.jitter_ratio}"
            raise ValueError(msg)

    def backoff_s(self, retry_number: int, rng: random.Random) -> float:
        """Wait before retry `retry_number` (1-based), jittered."""
        base = min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry_number - 1))
        return base * (1 + rng.uniform(-self.jitter_ratio, self.jitter_ratio))


class _SecretFilter(logging.Filter):
    """Scrubs registered secrets from records of the logger it is attached to."""

    def __init__(self) -> None:
        super().__init__()
        self.redactor = Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        scrubbed = self.redactor.redact(text)
        if scrubbed != text:
            record.msg, record.args = scrubbed, None
        return True


_URLLIB3_FILTER = _SecretFilter()
_URLLIB3_LOGGER = "urllib3.connectionpool"  # logs every request line, query string included


def _install_urllib3_redaction(secrets: Iterable[str]) -> None:
    target = logging.getLogger(_URLLIB3_LOGGER)
    if _URLLIB3_FILTER not in target.filters:
        target.addFilter(_URLLIB3_FILTER)
    _URLLIB3_FILTER.redactor.add(secrets)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), None if absent."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


@dataclass(frozen=True)
class _Outcome:
    payload: Any = None
    error_cls: type[Exception] | None = None  # None: success
    reason: str = ""  # redacted, for logs and the final error
    retry_after_s: float | None = None  # what the provider asked for, when it said


class HttpClient:
    """GET JSON with retries and a minimum interval between calls; one instance per provider."""

    def __init__(
        self,
        *,
        name: str,
        session: requests.Session | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        min_interval_s: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        secrets: Iterable[str] = (),
        rate_limit_statuses: Iterable[int] = (429,),
    ) -> None:
        if timeout_s <= 0:
            msg = f"timeout_s must be > 0, got {timeout_s}"
            raise ValueError(msg)
        if min_interval_s < 0:
            msg = f"min_interval_s must be >= 0, got {min_interval_s}"
            raise ValueError(msg)
        self.name = name
        self._session = session if session is not None else requests.Session()
        self._timeout_s = timeout_s
        self._retry = retry if retry is not None else RetryPolicy()
        self._min_interval_s = min_interval_s
        self._sleep = sleep
        self._clock = clock
        # Jitter only spreads retries in time; it needs no cryptographic randomness.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311
        self._secrets = tuple(s for s in secrets if s)
        self._redactor = Redactor(self._secrets)
        self._rate_limit_statuses = frozenset(rate_limit_statuses)
        self._last_call: float | None = None
        self._lock = threading.Lock()
        if self._secrets:
            _install_urllib3_redaction(self._secrets)
            register_secrets(self._secrets)  # the CLI's errors and every log line too

    def __repr__(self) -> str:
        return f"HttpClient(name={self.name!r})"

    def redact(self, text: str) -> str:
        return self._redactor.redact(text)

    def get_json(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        *,
        check: PayloadCheck | None = None,
    ) -> Any:
        """GET `url` and return its decoded JSON body.

        Raises RateLimitedError or SourceUnavailableError once retries are spent,
        SourceAuthError on 401/403, SourceRequestError on other 4xx, SourceFormatError when the
        body is not JSON; `check` may raise anything else for a payload it refuses.
        """
        params = dict(params or {})
        safe_url = self.redact(_full_url(url, params))
        policy = self._retry
        for attempt in range(1, policy.max_attempts + 1):
            self._throttle()
            outcome = self._attempt(url, params, safe_url, check)
            if outcome.error_cls is None:
                return outcome.payload
            error_cls, reason = outcome.error_cls, outcome.reason
            retry_after = outcome.retry_after_s
            if attempt == policy.max_attempts:
                msg = f"{self.name}: GET {safe_url} failed after {attempt} attempts: {reason}"
                raise _make_error(error_cls, msg, retry_after)
            if retry_after is not None and retry_after > policy.max_retry_after_s:
                msg = (
                    f"{self.name}: GET {safe_url}: {reason}; the provider asks to wait "
                    f"{retry_after:.0f} s, more than max_retry_after_s="
                    f"{policy.max_retry_after_s:.0f}; try again later"
                )
                raise _make_error(error_cls, msg, retry_after)
            delay = policy.backoff_s(attempt, self._rng)
            if retry_after is not None:
                delay = max(delay, retry_after)
            logger.warning(
                "%s: GET %s: %s; retry %d/%d in %.1f s",
                self.name,
                safe_url,
                reason,
                attempt,
                policy.max_attempts - 1,
                delay,
            )
            self._sleep(delay)
        msg = "unreachable: the retry loop always returns or raises"  # pragma: no cover
        raise AssertionError(msg)  # pragma: no cover

    def _attempt(
        self,
        url: str,
        params: Mapping[str, Any],
        safe_url: str,
        check: PayloadCheck | None,
    ) -> _Outcome:
        """One try: the payload, or a retryable failure. Non-retryable failures raise."""
        try:
            response = self._session.get(url, params=params, timeout=self._timeout_s)
        except requests.RequestException as exc:
            # The exception text can hold the full URL, key included: only its redaction leaves.
            reason = f"{type(exc).__name__}: {self.redact(str(exc))}"
            return _Outcome(error_cls=SourceUnavailableError, reason=reason)
        status = response.status_code
        logger.debug("%s: GET %s -> %d", self.name, safe_url, status)
        if status in self._rate_limit_statuses:
            return _Outcome(
                error_cls=RateLimitedError,
                reason=f"HTTP {status} {self._snippet(response)}",
                retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 500:
            return _Outcome(
                error_cls=SourceUnavailableError,
                reason=f"HTTP {status} {self._snippet(response)}",
                retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status in (401, 403):
            msg = (
                f"{self.name}: GET {safe_url} was refused with HTTP {status} "
                f"{self._snippet(response)}; check the credentials"
            )
            raise SourceAuthError(msg)
        if status >= 400:
            msg = f"{self.name}: GET {safe_url} was rejected with HTTP {status} " + self._snippet(
                response
            )
            raise SourceRequestError(msg)
        try:
            payload = response.json()
        except (ValueError, json.JSONDecodeError):
            msg = (
                f"{self.name}: GET {safe_url} returned HTTP {status} with a body that is not "
                f"JSON: {self._snippet(response)}"
            )
            raise SourceFormatError(msg) from None
        if check is not None:
            try:
                check(payload)
            except RateLimitedError as exc:
                return _Outcome(
                    error_cls=RateLimitedError,
                    reason=self.redact(str(exc)),
                    retry_after_s=exc.retry_after_s,
                )
            except SourceError as exc:
                # A provider may echo the key in its refusal (Alpha Vantage does).
                clean = self.redact(str(exc))
                if clean != str(exc):
                    raise _make_error(type(exc), clean, None) from None
                raise
        return _Outcome(payload=payload)

    def _snippet(self, response: requests.Response) -> str:
        text = " ".join(response.text.split())
        if len(text) > _BODY_SNIPPET:
            text = text[:_BODY_SNIPPET] + "..."
        return self.redact(text)

    def _throttle(self) -> None:
        with self._lock:
            now = self._clock()
            if self._last_call is not None and self._min_interval_s > 0:
                wait = self._last_call + self._min_interval_s - now
                if wait > 0:
                    self._sleep(wait)
                now = max(self._clock(), self._last_call + self._min_interval_s)
            self._last_call = now


def _full_url(url: str, params: Mapping[str, Any]) -> str:
    prepared = requests.Request("GET", url, params=params).prepare().url
    return prepared if prepared is not None else url


def _make_error(cls: type[Exception], message: str, retry_after: float | None) -> Exception:
    if cls is RateLimitedError:
        return RateLimitedError(message, retry_after_s=retry_after)
    return cls(message)
