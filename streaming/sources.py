"""Where live bars come from: a replay of stored bars, Binance klines, or an MT5 terminal.

Every source is a Bytewax FixedPartitionedSource whose partitions snapshot their position, so
a resumed worker continues AFTER the last bar it emitted (not at it: bytewax
`pysrc/bytewax/inputs.py` asks snapshot() for the position of the next read). Venue records are
parsed into `execution.signal.Bar` here and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from execution.signal import Bar, bars_from_frame
from streaming.steps import Tick

__all__ = [
    "BinancePollingSource",
    "MT5PollingSource",
    "MT5TickSource",
    "ReplaySource",
    "load_replay_bars",
]

logger = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------
# replay


def load_replay_bars(
    store: Any,
    series: Sequence[tuple[str, str]],
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """Stored bars of several series, one canonical frame in (ts, symbol) order."""
    frames = [store.read_bars(symbol, tf, start=start, end=end) for symbol, tf in series]
    frames = [f for f in frames if len(f)]
    if not frames:
        msg = f"no stored bars for {list(series)} in [{start}, {end}]"
        raise LookupError(msg)
    bars = pd.concat(frames, ignore_index=True)
    return bars.sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)


class _ReplayPartition(StatefulSourcePartition[Bar, int]):
    def __init__(
        self, bars: list[Bar], position: int, speed: float, batch_size: int, limit: int
    ) -> None:
        self._bars = bars
        self._pos = position  # index of the next bar to emit
        self._limit = limit
        self._batch = batch_size
        self._interval = timedelta(seconds=batch_size / speed) if speed > 0 else None
        self._awake: datetime | None = None

    def next_batch(self) -> list[Bar]:
        if self._pos >= self._limit:
            raise StopIteration
        end = min(self._pos + self._batch, self._limit)
        out = self._bars[self._pos : end]
        self._pos = end
        if self._interval is not None:
            self._awake = _utcnow() + self._interval
        return out

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        # The position of the NEXT read: resuming re-emits nothing that was already emitted.
        return self._pos


class ReplaySource(FixedPartitionedSource[Bar, int]):
    """Stored bars in (ts, symbol) order, as fast as possible or at `speed` bars per second.

    `bars` is a canonical bar frame or a zero-argument loader of one (called when the partition
    is built, on the worker). `max_bars` stops after that many bars of the whole replay.
    """

    def __init__(
        self,
        bars: pd.DataFrame | Callable[[], pd.DataFrame],
        *,
        speed: float = 0.0,
        batch_size: int = 1,
        max_bars: int | None = None,
    ) -> None:
        if speed < 0:
            msg = f"speed must be >= 0 (0: as fast as possible), got {speed}"
            raise ValueError(msg)
        if batch_size < 1:
            msg = f"batch_size must be >= 1, got {batch_size}"
            raise ValueError(msg)
        self._bars = bars
        self._speed = float(speed)
        self._batch = int(batch_size)
        self._max = max_bars

    def list_parts(self) -> list[str]:
        return ["replay"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _ReplayPartition:
        frame = self._bars() if callable(self._bars) else self._bars
        bars = bars_from_frame(frame)
        limit = len(bars) if self._max is None else min(len(bars), self._max)
        position = 0 if resume_state is None else int(resume_state)
        logger.info(
            "event=replay_start bars=%d position=%d limit=%d speed=%s",
            len(bars),
            position,
            limit,
            self._speed or "max",
        )
        return _ReplayPartition(bars, position, self._speed, self._batch, limit)


# --------------------------------------------------------------------------------------------
# polling venues: shared backoff


class _Backoff:
    def __init__(self, base_s: float, cap_s: float) -> None:
        self.base_s, self.cap_s, self.failures = base_s, cap_s, 0

    def fail(self) -> float:
        self.failures += 1
        return min(self.cap_s, self.base_s * 2 ** (self.failures - 1))

    def ok(self) -> None:
        self.failures = 0


class _PollingPartition(StatefulSourcePartition[Bar, str | None]):
    """Polls `fetch(since) -> bars newer than since` every `interval`; backs off on errors."""

    def __init__(
        self,
        name: str,
        fetch: Callable[[datetime | None], list[Bar]],
        since: datetime | None,
        interval: timedelta,
        errors: tuple[type[BaseException], ...],
        backoff: _Backoff,
        now: Callable[[], datetime],
    ) -> None:
        self._name = name
        self._fetch = fetch
        self._since = since
        self._interval = interval
        self._errors = errors
        self._backoff = backoff
        self._now = now
        self._awake = now()

    def next_batch(self) -> list[Bar]:
        try:
            bars = self._fetch(self._since)
        except self._errors as exc:
            delay = self._backoff.fail()
            logger.warning(
                "event=source_error source=%s failures=%d retry_in_s=%.1f error=%s",
                self._name,
                self._backoff.failures,
                delay,
                exc,
            )
            self._awake = self._now() + timedelta(seconds=delay)
            return []
        self._backoff.ok()
        fresh = [b for b in bars if self._since is None or b.ts > self._since]
        if fresh:
            self._since = fresh[-1].ts
        self._awake = self._now() + self._interval
        return fresh

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> str | None:
        # The last bar emitted: on resume, only bars after it are fetched.
        return None if self._since is None else self._since.isoformat()


def _raw_to_bars(raw: pd.DataFrame, symbol: str, timeframe: str) -> list[Bar]:
    frame = raw.assign(symbol=symbol, timeframe=timeframe)
    for col in ("open", "high", "low", "close", "volume"):
        frame[col] = pd.to_numeric(frame[col])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return bars_from_frame(frame)


class BinancePollingSource(FixedPartitionedSource[Bar, str | None]):
    """Closed Binance candles, one partition per symbol, polled every `poll_s` seconds.

    `start` (UTC) is where a fresh run begins (default: now minus `warmup_bars` bars, so the
    feature buffer fills at once). Network errors back off exponentially up to `max_backoff_s`.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        timeframe: str,
        *,
        klines: Any | None = None,  # infra.sources.BinanceKlinesSource
        poll_s: float = 5.0,
        start: datetime | None = None,
        warmup_bars: int = 600,
        max_backoff_s: float = 60.0,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        from infra.sources import BinanceKlinesSource

        self._symbols = list(symbols)
        self._tf = timeframe
        self._klines = klines if klines is not None else BinanceKlinesSource()
        self._poll = timedelta(seconds=poll_s)
        self._start = start
        self._warmup = warmup_bars
        self._max_backoff = max_backoff_s
        self._now = now

    def list_parts(self) -> list[str]:
        return list(self._symbols)

    def build_part(
        self, step_id: str, for_part: str, resume_state: str | None
    ) -> _PollingPartition:
        from infra.sources import SourceError
        from quality.schema import timeframe_to_timedelta

        symbol = for_part
        if resume_state is not None:
            since = datetime.fromisoformat(resume_state)
        else:
            first = self._start or self._now() - self._warmup * timeframe_to_timedelta(self._tf)
            since = first - timedelta(milliseconds=1)

        def fetch(after: datetime | None) -> list[Bar]:
            raw = self._klines.fetch(symbol, self._tf, since=after)
            return _raw_to_bars(raw.frame, symbol, self._tf)

        return _PollingPartition(
            f"binance:{symbol}",
            fetch,
            since,
            self._poll,
            (SourceError,),
            _Backoff(1.0, self._max_backoff),
            self._now,
        )


class MT5PollingSource(FixedPartitionedSource[Bar, str | None]):
    """Closed bars from an MT5 terminal via copy_rates_from_pos, one partition per symbol.

    `mt5` is the injected terminal module (mt5_bridge.load_mt5_module or a simulator), already
    initialized. Position 0 is the bar still forming, so only positions >= 1 are read.
    """

    def __init__(
        self,
        mt5: Any,
        symbols: Sequence[str],
        timeframe: str,
        *,
        server_utc_offset: timedelta = timedelta(0),
        poll_s: float = 1.0,
        count: int = 600,
        max_backoff_s: float = 60.0,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        from mt5_bridge import MT5_TIMEFRAMES

        if timeframe not in MT5_TIMEFRAMES:
            msg = f"MT5 has no timeframe {timeframe!r}; use one of {', '.join(MT5_TIMEFRAMES)}"
            raise ValueError(msg)
        self._mt5 = mt5
        self._symbols = list(symbols)
        self._tf = timeframe
        self._mt5_tf = MT5_TIMEFRAMES[timeframe]
        self._offset = server_utc_offset
        self._poll = timedelta(seconds=poll_s)
        self._count = count
        self._max_backoff = max_backoff_s
        self._now = now

    def list_parts(self) -> list[str]:
        return list(self._symbols)

    def build_part(
        self, step_id: str, for_part: str, resume_state: str | None
    ) -> _PollingPartition:
        from mt5_bridge import TerminalUnavailableError
        from mt5_bridge._parse import rates_to_raw_frame

        symbol = for_part
        since = None if resume_state is None else datetime.fromisoformat(resume_state)

        def fetch(after: datetime | None) -> list[Bar]:
            rates = self._mt5.copy_rates_from_pos(symbol, self._mt5_tf, 1, self._count)
            if rates is None:
                code, comment = self._mt5.last_error()
                msg = f"MT5 copy_rates_from_pos({symbol}, {self._tf}) failed"
                raise TerminalUnavailableError(msg, int(code), str(comment))
            bars = _raw_to_bars(rates_to_raw_frame(rates, self._offset), symbol, self._tf)
            return [b for b in bars if after is None or b.ts > after]

        return _PollingPartition(
            f"mt5:{symbol}",
            fetch,
            since,
            self._poll,
            (TerminalUnavailableError,),
            _Backoff(1.0, self._max_backoff),
            self._now,
        )


class _TickPartition(StatefulSourcePartition[Tick, str | None]):
    def __init__(
        self,
        fetch: Callable[[datetime], Iterable[Tick]],
        since: datetime,
        interval: timedelta,
        errors: tuple[type[BaseException], ...],
        backoff: _Backoff,
        now: Callable[[], datetime],
    ) -> None:
        self._fetch, self._since, self._interval = fetch, since, interval
        self._errors, self._backoff, self._now = errors, backoff, now
        self._awake = now()

    def next_batch(self) -> list[Tick]:
        try:
            ticks = [t for t in self._fetch(self._since) if t.ts > self._since]
        except self._errors as exc:
            delay = self._backoff.fail()
            logger.warning("event=tick_source_error retry_in_s=%.1f error=%s", delay, exc)
            self._awake = self._now() + timedelta(seconds=delay)
            return []
        self._backoff.ok()
        if ticks:
            self._since = ticks[-1].ts
        self._awake = self._now() + self._interval
        return ticks

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> str | None:
        return self._since.isoformat()


class MT5TickSource(FixedPartitionedSource[Tick, str | None]):
    """Ticks from copy_ticks_from (COPY_TICKS_ALL), one partition per symbol; the price is the
    last trade where the venue reports one, else the bid/ask mid. Aggregate them into bars with
    the dataflow step `aggregate_ticks`."""

    def __init__(
        self,
        mt5: Any,
        symbols: Sequence[str],
        *,
        server_utc_offset: timedelta = timedelta(0),
        poll_s: float = 0.25,
        count: int = 10_000,
        start: datetime | None = None,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._mt5 = mt5
        self._symbols = list(symbols)
        self._offset = server_utc_offset
        self._poll = timedelta(seconds=poll_s)
        self._count = count
        self._start = start
        self._now = now

    def list_parts(self) -> list[str]:
        return list(self._symbols)

    def build_part(self, step_id: str, for_part: str, resume_state: str | None) -> _TickPartition:
        from mt5_bridge import TerminalUnavailableError
        from mt5_bridge._parse import utc_to_server

        symbol = for_part
        since = (
            datetime.fromisoformat(resume_state)
            if resume_state is not None
            else (self._start or self._now())
        )

        def fetch(after: datetime) -> list[Tick]:
            raw = self._mt5.copy_ticks_from(
                symbol,
                utc_to_server(after, self._offset),
                self._count,
                self._mt5.COPY_TICKS_ALL,
            )
            if raw is None:
                code, comment = self._mt5.last_error()
                msg = f"MT5 copy_ticks_from({symbol}) failed"
                raise TerminalUnavailableError(msg, int(code), str(comment))
            return _ticks(raw, symbol, self._offset)

        return _TickPartition(
            fetch, since, self._poll, (TerminalUnavailableError,), _Backoff(0.5, 30.0), self._now
        )


def _ticks(raw: Any, symbol: str, offset: timedelta) -> list[Tick]:
    out = []
    for rec in raw:
        msc = int(rec["time_msc"])
        ts = datetime.fromtimestamp(msc / 1000.0, tz=UTC) - offset
        last = float(rec["last"])
        price = last if last > 0 else (float(rec["bid"]) + float(rec["ask"])) / 2.0
        volume = float(rec["volume_real"]) if "volume_real" in rec.dtype.names else 0.0
        out.append(Tick(symbol, ts, price, volume))
    return out
