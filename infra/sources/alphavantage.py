"""Alpha Vantage: daily equity bars (TIME_SERIES_DAILY) and intraday FX bars (FX_INTRADAY).

Alpha Vantage answers errors inside HTTP 200 bodies: "Error Message" (bad symbol or
parameters), "Note" / "Information" (call-frequency limits, premium-only requests). Those are
mapped onto the source errors here, in one place. The API key travels as a query parameter, so
it is redacted from every URL this module logs or puts in an error.

Timestamps: daily bars are stamped at the date's 00:00 UTC, like every daily series in
candleflow. Intraday stamps are read in the time zone the response names in its Meta Data and
converted to UTC; they are taken as bar open times. A bar is only returned once its period has
ended (ts + timeframe <= now): Alpha Vantage also serves the bar still forming.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

import pandas as pd
import requests

from infra.sources.base import (
    RAW_COLUMNS,
    RateLimitedError,
    RawBars,
    SourceAuthError,
    SourceFormatError,
    SourceRequestError,
)
from infra.sources.http import HttpClient, RetryPolicy
from quality.schema import timeframe_to_timedelta

__all__ = ["AlphaVantageSource"]

logger = logging.getLogger(__name__)

OutputSize = Literal["compact", "full"]

ENV_VAR: Final = "ALPHAVANTAGE_API_KEY"
ENV_URL: Final = "CANDLEFLOW_ALPHAVANTAGE_URL"
SOURCE_NAME: Final = "alphavantage"
_COMPACT_BARS: Final = 100  # "compact" returns the latest 100 data points
_FX_INTERVALS: Final = {"1min": "1m", "5min": "5m", "15min": "15m", "30min": "30m", "60min": "1h"}
_DAILY_KEY: Final = "Time Series (Daily)"
_FIELDS: Final = {"open": "1. open", "high": "2. high", "low": "3. low", "close": "4. close"}
_VOLUME_FIELD: Final = "5. volume"
_RATE_LIMIT_WORDS: Final = (
    "call frequency",
    "rate limit",
    "requests per",
    "calls per",
    "spreading",
)


class AlphaVantageSource:
    """Daily equity and intraday FX bars from Alpha Vantage."""

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://www.alphavantage.co",
        calls_per_minute: float = 5,  # free tier
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not api_key or not api_key.strip():
            msg = f"Alpha Vantage needs an API key: set {ENV_VAR} (free at alphavantage.co)"
            raise SourceAuthError(msg)
        if calls_per_minute <= 0:
            msg = f"calls_per_minute must be > 0, got {calls_per_minute}"
            raise ValueError(msg)
        self._api_key = api_key.strip()
        self._url = base_url.rstrip("/") + "/query"
        self._now = now
        self._http = HttpClient(
            name=SOURCE_NAME,
            session=session,
            retry=retry,
            min_interval_s=60.0 / calls_per_minute,
            sleep=sleep,
            clock=clock,
            secrets=(self._api_key,),
        )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> AlphaVantageSource:
        """Build from ALPHAVANTAGE_API_KEY (and CANDLEFLOW_ALPHAVANTAGE_URL, a proxy or test
        server, when set); SourceAuthError names the variable when the key is unset."""
        env = os.environ if environ is None else environ
        key = (env.get(ENV_VAR) or "").strip()
        if not key:
            msg = f"{ENV_VAR} is not set: get a free key at alphavantage.co and export it"
            raise SourceAuthError(msg)
        url = (env.get(ENV_URL) or "").strip()
        if url and "base_url" not in kwargs:
            kwargs["base_url"] = url
        return cls(key, **kwargs)

    def __repr__(self) -> str:
        return f"AlphaVantageSource(url={self._url!r}, api_key='***')"

    def fetch(self, symbol: str, since: datetime | None = None) -> RawBars:
        """Daily bars of `symbol` with ts > since (all history when since is None)."""
        return self.fetch_daily(symbol, since=since)

    def fetch_daily(
        self,
        symbol: str,
        outputsize: OutputSize | None = None,
        *,
        since: datetime | None = None,
    ) -> RawBars:
        """TIME_SERIES_DAILY for an equity symbol.

        outputsize None picks "compact" when its 100 bars reach back to `since`, else "full"
        (which Alpha Vantage may reserve for premium keys; its refusal is raised as
        SourceRequestError with its own words).
        """
        _check_since(since)
        size = outputsize or self._auto_outputsize("1d", since)
        params = {"function": "TIME_SERIES_DAILY", "symbol": symbol, "outputsize": size}
        payload = self._get(params, what=f"daily bars of {symbol!r}")
        frame = _parse_series(payload, _DAILY_KEY, tz=None, with_volume=True)
        return self._finish(frame, symbol, "1d", "equity", since)

    def fetch_fx_intraday(
        self,
        from_symbol: str,
        to_symbol: str,
        interval: str = "60min",
        outputsize: OutputSize | None = None,
        *,
        since: datetime | None = None,
    ) -> RawBars:
        """FX_INTRADAY for a currency pair; FX has no volume, reported as 0.0."""
        _check_since(since)
        if interval not in _FX_INTERVALS:
            msg = f"unknown Alpha Vantage interval {interval!r}; use {', '.join(_FX_INTERVALS)}"
            raise SourceRequestError(msg)
        timeframe = _FX_INTERVALS[interval]
        size = outputsize or self._auto_outputsize(timeframe, since)
        params = {
            "function": "FX_INTRADAY",
            "from_symbol": from_symbol,
            "to_symbol": to_symbol,
            "interval": interval,
            "outputsize": size,
        }
        pair = f"{from_symbol}{to_symbol}"
        payload = self._get(params, what=f"{interval} FX bars of {from_symbol}/{to_symbol}")
        tz = _meta_time_zone(payload)
        frame = _parse_series(payload, f"Time Series FX ({interval})", tz=tz, with_volume=False)
        return self._finish(frame, pair, timeframe, "fx", since)

    def _get(self, params: Mapping[str, str], *, what: str) -> Mapping[str, Any]:
        query = {**params, "apikey": self._api_key}
        payload = self._http.get_json(self._url, query, check=lambda p: _check_payload(p, what))
        return payload  # _check_payload has proven it is a mapping

    def _auto_outputsize(self, timeframe: str, since: datetime | None) -> OutputSize:
        # The latest 100 bars span at least 99 bar lengths of calendar time, gaps only add.
        if since is None:
            return "full"
        reach = (_COMPACT_BARS - 1) * timeframe_to_timedelta(timeframe)
        return "compact" if self._now() - since <= reach else "full"

    def _finish(
        self,
        frame: pd.DataFrame,
        symbol: str,
        timeframe: str,
        instrument_class: str,
        since: datetime | None,
    ) -> RawBars:
        frame = frame.sort_values("ts", kind="stable", na_position="last").reset_index(drop=True)
        ts = frame["ts"]
        # Unparseable stamps (NaT) are kept so the data contract can quarantine them.
        keep = ts.isna() | (ts + timeframe_to_timedelta(timeframe) <= self._now())
        forming = int((~keep).sum())
        if forming:
            logger.info("%s %s: left out %d bar(s) still forming", symbol, timeframe, forming)
        if since is not None:
            keep &= ts.isna() | (ts > since)
        frame = frame.loc[keep].reset_index(drop=True)
        return RawBars(
            frame=frame,
            symbol=symbol,
            timeframe=timeframe,
            source=SOURCE_NAME,
            instrument_class=instrument_class,
        )


def _check_since(since: datetime | None) -> None:
    if since is not None and since.tzinfo is None:
        msg = f"since must be timezone-aware (UTC), got naive {since.isoformat()}"
        raise ValueError(msg)


def _check_payload(payload: Any, what: str) -> None:
    """Map Alpha Vantage's in-body errors onto source errors."""
    if not isinstance(payload, dict):
        msg = f"alphavantage: expected a JSON object for {what}, got {type(payload).__name__}"
        raise SourceFormatError(msg)
    if "Error Message" in payload:
        msg = (
            f"alphavantage refused {what}: {payload['Error Message']} "
            "(check the symbol and parameters)"
        )
        raise SourceFormatError(msg)
    for key in ("Note", "Information"):
        if key in payload and "Meta Data" not in payload:
            text = str(payload[key])
            if any(word in text.lower() for word in _RATE_LIMIT_WORDS):
                msg = f"alphavantage rate limit: {text}"
                raise RateLimitedError(msg)
            if "apikey" in text.lower() or "api key" in text.lower():
                msg = f"alphavantage refused the API key for {what}: {text}; check {ENV_VAR}"
                raise SourceAuthError(msg)
            msg = f"alphavantage refused {what}: {text}"
            raise SourceRequestError(msg)


def _meta_time_zone(payload: Mapping[str, Any]) -> str:
    meta = payload.get("Meta Data")
    if isinstance(meta, dict):
        # Keys are numbered ("6. Time Zone" for equities, "7. Time Zone" for FX): match the name.
        for key, value in meta.items():
            if str(key).split(". ", 1)[-1].strip().lower() == "time zone":
                return str(value)
    msg = (
        "alphavantage: intraday payload has no 'Time Zone' in 'Meta Data' "
        f"(found keys: {sorted(meta) if isinstance(meta, dict) else 'no Meta Data'}); "
        "refusing to guess the time zone of its timestamps"
    )
    raise SourceFormatError(msg)


def _parse_series(
    payload: Mapping[str, Any], key: str, *, tz: str | None, with_volume: bool
) -> pd.DataFrame:
    series = payload.get(key)
    if not isinstance(series, dict):
        msg = f"alphavantage: expected key {key!r} holding an object, found keys {sorted(payload)}"
        raise SourceFormatError(msg)
    stamps: list[str] = []
    columns: dict[str, list[Any]] = {name: [] for name in (*_FIELDS, "volume")}
    for stamp, fields in series.items():
        if not isinstance(fields, dict):
            msg = (
                f"alphavantage: bar {stamp!r} under {key!r} is {type(fields).__name__}, "
                f"expected an object with {[*_FIELDS.values(), _VOLUME_FIELD]}"
            )
            raise SourceFormatError(msg)
        stamps.append(stamp)
        for name, field in _FIELDS.items():
            columns[name].append(fields.get(field))  # a missing field stays None: quarantined
        columns["volume"].append(fields.get(_VOLUME_FIELD) if with_volume else 0.0)
    frame = pd.DataFrame({"ts": _to_utc(stamps, tz), **columns}, columns=list(RAW_COLUMNS))
    return frame


def _to_utc(stamps: list[str], tz: str | None) -> pd.Series:
    parsed = pd.to_datetime(pd.Series(stamps, dtype=object), errors="coerce", format="ISO8601")
    if tz is None:
        out = parsed.dt.tz_localize("UTC")
    else:
        try:
            out = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        except (KeyError, ValueError) as exc:
            msg = f"alphavantage: unknown time zone {tz!r} in Meta Data ({exc})"
            raise SourceFormatError(msg) from None
        out = out.dt.tz_convert("UTC")
    unparsed = int(out.isna().sum())
    if unparsed:
        logger.warning("alphavantage: %d timestamp(s) did not parse; kept as NaT", unparsed)
    return out.astype("datetime64[ns, UTC]")
