"""Binance spot klines (GET /api/v3/klines): public, no key, paginated by startTime.

Each kline is [openTime, open, high, low, close, volume, closeTime, ...] with millisecond times
and prices as strings. Only closed candles are returned (closeTime < now): the last kline of a
live market is still forming and would change after we stored it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pandas as pd
import requests

from infra.sources.base import RAW_COLUMNS, RawBars, SourceFormatError
from infra.sources.http import HttpClient, RetryPolicy
from quality.schema import UnknownTimeframeError

__all__ = ["BinanceKlinesSource"]

logger = logging.getLogger(__name__)

SOURCE_NAME: Final = "binance"
MAX_LIMIT: Final = 1000  # the endpoint's own maximum page size
# candleflow timeframe code -> Binance interval. They coincide today; the map is the contract.
INTERVALS: Final = {
    "1m": "1m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1h": "1h",
    "4h": "4h",
    "1d": "1d",
    "1w": "1w",
}
_ONE_MS: Final = timedelta(milliseconds=1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class BinanceKlinesSource:
    """Closed spot candles from Binance, fetched page by page."""

    def __init__(
        self,
        base_url: str = "https://api.binance.com",
        session: requests.Session | None = None,
        limit: int = MAX_LIMIT,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        retry: RetryPolicy | None = None,
        min_interval_s: float = 0.05,  # klines weigh 2 of 6000 per minute: a light touch
    ) -> None:
        if not 1 <= limit <= MAX_LIMIT:
            msg = f"limit must be in 1..{MAX_LIMIT}, got {limit}"
            raise ValueError(msg)
        self._url = base_url.rstrip("/") + "/api/v3/klines"
        self._limit = limit
        self._now = now
        self._http = HttpClient(
            name=SOURCE_NAME,
            session=session,
            retry=retry,
            min_interval_s=min_interval_s,
            sleep=sleep,
            clock=clock,
            # 418: IP auto-banned after ignoring 429s; Binance sends Retry-After with both.
            rate_limit_statuses=(429, 418),
        )

    def __repr__(self) -> str:
        return f"BinanceKlinesSource(url={self._url!r}, limit={self._limit})"

    def fetch(
        self,
        symbol: str,
        timeframe: str,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        since: datetime | None = None,
    ) -> RawBars:
        """Closed candles with start <= open time <= end, or open time > since.

        `start` is inclusive, `since` exclusive (the last stored bar); give at most one. With
        neither, history starts at the market's first candle.
        """
        if timeframe not in INTERVALS:
            msg = f"Binance has no interval for timeframe {timeframe!r}; use {', '.join(INTERVALS)}"
            raise UnknownTimeframeError(msg)
        if start is not None and since is not None:
            msg = "give either start (inclusive) or since (exclusive), not both"
            raise ValueError(msg)
        for name, value in (("start", start), ("end", end), ("since", since)):
            if value is not None and value.tzinfo is None:
                msg = f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}"
                raise ValueError(msg)
        first = since + _ONE_MS if since is not None else start
        cursor = _to_ms(first) if first is not None else 0
        end_ms = _to_ms(end) if end is not None else None
        now_ms = _to_ms(self._now())

        pages: list[list[list[Any]]] = []
        while True:
            params: dict[str, Any] = {
                "symbol": symbol,
                "interval": INTERVALS[timeframe],
                "limit": self._limit,
                "startTime": cursor,
            }
            if end_ms is not None:
                params["endTime"] = end_ms
            page = _check_page(self._http.get_json(self._url, params), symbol)
            if not page:
                break
            pages.append(page)
            last_open, last_close = page[-1][0], page[-1][6]
            if len(page) < self._limit or last_close >= now_ms:
                break
            nxt = last_open + 1
            if nxt <= cursor:
                msg = (
                    f"binance: klines of {symbol} did not advance past openTime {last_open} "
                    f"(requested startTime {cursor}); refusing to loop"
                )
                raise SourceFormatError(msg)
            if end_ms is not None and nxt > end_ms:
                break
            cursor = nxt

        rows = [k for page in pages for k in page]
        closed = [k for k in rows if k[6] < now_ms]
        if len(closed) != len(rows):
            logger.info(
                "binance %s %s: left out %d open candle(s)",
                symbol,
                timeframe,
                len(rows) - len(closed),
            )
        logger.debug(
            "binance %s %s: %d page(s), %d closed candle(s)",
            symbol,
            timeframe,
            len(pages),
            len(closed),
        )
        return RawBars(
            frame=_to_frame(closed),
            symbol=symbol,
            timeframe=timeframe,
            source=SOURCE_NAME,
            instrument_class="crypto",
        )


def _to_ms(when: datetime) -> int:
    # Integer arithmetic: float timestamps can be off by one millisecond.
    return (when - _EPOCH) // _ONE_MS


def _check_page(payload: Any, symbol: str) -> list[list[Any]]:
    """The page as a list of klines, or SourceFormatError naming the first bad element."""
    if not isinstance(payload, list):
        found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        msg = (
            f"binance: expected a JSON array of klines for {symbol}, got {found}; expected "
            "[[openTime, open, high, low, close, volume, closeTime, ...], ...]"
        )
        raise SourceFormatError(msg)
    for i, k in enumerate(payload):
        ok = isinstance(k, list) and len(k) >= 7 and _is_int(k[0]) and _is_int(k[6])
        if not ok:
            msg = (
                f"binance: kline {i} of {symbol} is malformed ({str(k)[:120]}); expected "
                "[openTime ms, open, high, low, close, volume, closeTime ms, ...]"
            )
            raise SourceFormatError(msg)
    return payload


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _to_frame(klines: list[list[Any]]) -> pd.DataFrame:
    ts = pd.to_datetime(pd.Series([k[0] for k in klines], dtype="int64"), unit="ms", utc=True)
    data = {
        "ts": ts.astype("datetime64[ns, UTC]"),
        # Prices stay the strings Binance sent: the data contract parses and judges them.
        "open": [k[1] for k in klines],
        "high": [k[2] for k in klines],
        "low": [k[3] for k in klines],
        "close": [k[4] for k in klines],
        "volume": [k[5] for k in klines],
    }
    return pd.DataFrame(data, columns=list(RAW_COLUMNS))
