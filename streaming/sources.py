"""Where live bars come from: a replay of stored bars, Binance klines, or an MT5 terminal.

Every source is a Bytewax FixedPartitionedSource whose partitions snapshot their position, so
a resumed worker continues AFTER the last bar it emitted (not at it: bytewax
`pysrc/bytewax/inputs.py` asks snapshot() for the position of the next read). Venue records are
parsed into `execution.signal.Bar` here and nowhere else.

The polling sources never block the worker: a venue error sets the partition's next wake-up
(exponential backoff) instead of sleeping, and the next poll reads from the last item emitted.

`request_stop()` (the worker's SIGINT/SIGTERM handler calls it) ends every source at its next
read: the bars already emitted finish their way through the dataflow, the last epoch is
snapshotted and the sink flushed, and a restart resumes after the last bar emitted.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
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
    "request_stop",
    "stop_requested",
    "wait_for_stop",
]

logger = logging.getLogger(__name__)

_STOP = threading.Event()  # per process: one worker process runs one dataflow


def request_stop(stop: bool = True) -> None:
    """Ask every source of this process to end at its next read (False: clear the request)."""
    if stop:
        _STOP.set()
    else:
        _STOP.clear()


def stop_requested() -> bool:
    return _STOP.is_set()


def wait_for_stop(timeout_s: float) -> bool:
    """Sleep up to `timeout_s`, waking early (True) when a stop is requested."""
    return _STOP.wait(timeout_s)


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


# A replay's resume state: the (ts, symbol) of the last bar emitted, or None before the first.
# A key rather than an index, so that a restart on another set of series (or after bars were
# added) continues after the same instant instead of at the same list position.
ReplayState = tuple[str, str] | None
_WHOLE_REPLAY = "replay"  # the one partition of a replay that is not split by symbol


def _replay_key(bar: Bar) -> tuple[str, str]:
    return (bar.ts.isoformat(), bar.symbol)


def _resume_position(bars: list[Bar], state: ReplayState | int) -> int:
    """Index of the first bar after the snapshot's last emitted bar."""
    if state is None:
        return 0
    if isinstance(state, int):  # snapshots written before the key: a list position
        return state
    ts, symbol = state
    saved = (datetime.fromisoformat(ts), symbol)
    return bisect.bisect_right(bars, saved, key=lambda b: (b.ts, b.symbol))


class _ReplayPartition(StatefulSourcePartition[Bar, ReplayState]):
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
        if self._pos >= self._limit or _STOP.is_set():
            raise StopIteration
        end = min(self._pos + self._batch, self._limit)
        out = self._bars[self._pos : end]
        self._pos = end
        if self._interval is not None:
            self._awake = _utcnow() + self._interval
        return out

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> ReplayState:
        # The last bar emitted: resuming re-emits nothing that was already emitted.
        return _replay_key(self._bars[self._pos - 1]) if self._pos > 0 else None


class ReplaySource(FixedPartitionedSource[Bar, ReplayState]):
    """Stored bars in (ts, symbol) order, as fast as possible or at `speed` bars per second.

    `bars` is a canonical bar frame or a zero-argument loader of one (called when a partition
    is built, on the worker; once per process). `max_bars` stops after that many bars of the
    whole replay.

    `by_symbol` gives one partition per symbol (named by the symbol), so that several workers
    read, feature and score the symbols in parallel; `symbols` names them when `bars` is a
    loader. Each partition snapshots the last bar it emitted and resumes after it. Partitions
    interleave in no fixed order, so the portfolio step must reorder (`StreamConfig.reorder`).
    Without `by_symbol` one partition ("replay") emits every bar in (ts, symbol) order.
    """

    def __init__(
        self,
        bars: pd.DataFrame | Callable[[], pd.DataFrame],
        *,
        speed: float = 0.0,
        batch_size: int = 1,
        max_bars: int | None = None,
        by_symbol: bool = False,
        symbols: Sequence[str] | None = None,
    ) -> None:
        if speed < 0:
            msg = f"speed must be >= 0 (0: as fast as possible), got {speed}"
            raise ValueError(msg)
        if batch_size < 1:
            msg = f"batch_size must be >= 1, got {batch_size}"
            raise ValueError(msg)
        if by_symbol and symbols is None:
            if callable(bars):
                msg = "ReplaySource(by_symbol=True) over a loader needs symbols=[...]"
                raise ValueError(msg)
            symbols = sorted(bars["symbol"].unique())
        self._bars = bars
        self._speed = float(speed)
        self._batch = int(batch_size)
        self._max = max_bars
        self._symbols = tuple(sorted(set(symbols))) if by_symbol and symbols else ()
        self._loaded: list[Bar] | None = None
        self._lock = threading.Lock()

    def list_parts(self) -> list[str]:
        return list(self._symbols) if self._symbols else [_WHOLE_REPLAY]

    def _all_bars(self) -> list[Bar]:
        # The workers of one process share this source object: load and convert once.
        with self._lock:
            if self._loaded is None:
                frame = self._bars() if callable(self._bars) else self._bars
                bars = bars_from_frame(frame)
                self._loaded = bars if self._max is None else bars[: self._max]
            return self._loaded

    def build_part(
        self, step_id: str, for_part: str, resume_state: ReplayState | int
    ) -> _ReplayPartition:
        if for_part == _WHOLE_REPLAY:
            frame = self._bars() if callable(self._bars) else self._bars
            bars = bars_from_frame(frame)
            limit = len(bars) if self._max is None else min(len(bars), self._max)
        else:
            bars = [b for b in self._all_bars() if b.symbol == for_part]
            limit = len(bars)
        position = _resume_position(bars, resume_state)
        if resume_state is not None and not isinstance(resume_state, int):
            logger.info("event=replay_resume after_ts=%s after_symbol=%s", *resume_state)
        logger.info(
            "event=replay_start part=%s bars=%d position=%d limit=%d speed=%s",
            for_part,
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

    def fail(self, at_least_s: float | None = None) -> float:
        self.failures += 1
        delay = min(self.cap_s, self.base_s * 2 ** (self.failures - 1))
        return delay if at_least_s is None else max(delay, at_least_s)

    def ok(self) -> None:
        self.failures = 0

    def attempt(
        self,
        name: str,
        fetch: Callable[[Any], list[Any]],
        since: Any,
        errors: tuple[type[BaseException], ...],
    ) -> list[Any] | float:
        """fetch(since), or the seconds to wait after one of `errors` (logged, not raised)."""
        try:
            items = fetch(since)
        except errors as exc:
            delay = self.fail(getattr(exc, "retry_after_s", None))
            logger.warning(
                "event=source_error source=%s failures=%d retry_in_s=%.1f error=%s",
                name,
                self.failures,
                delay,
                exc,
            )
            return float(delay)  # a float always: callers tell it from a batch by type
        self.ok()
        return items


class _PollingPartition(StatefulSourcePartition[Bar, str | None]):
    """Polls `fetch(since) -> bars` every `interval`; backs off on `errors` without blocking.

    `since` None is a fresh start: `fetch(None)` returns the history window and only its newest
    `warmup` bars are emitted (None: all of them). `limit` ends the partition after that many
    bars (None: never).
    """

    def __init__(
        self,
        name: str,
        fetch: Callable[[datetime | None], list[Bar]],
        since: datetime | None,
        interval: timedelta,
        errors: tuple[type[BaseException], ...],
        backoff: _Backoff,
        now: Callable[[], datetime],
        *,
        warmup: int | None = None,
        limit: int | None = None,
    ) -> None:
        self._name = name
        self._fetch = fetch
        self._since = since
        self._interval = interval
        self._errors = errors
        self._backoff = backoff
        self._now = now
        self._warmup = warmup
        self._left = limit
        self._awake = now()

    def next_batch(self) -> list[Bar]:
        if (self._left is not None and self._left <= 0) or _STOP.is_set():
            raise StopIteration
        bars = self._backoff.attempt(self._name, self._fetch, self._since, self._errors)
        if isinstance(bars, float):
            self._awake = self._now() + timedelta(seconds=bars)
            return []
        if self._since is None:
            last = bars[-1].ts if bars else None
            if self._warmup is not None:
                bars = bars[max(len(bars) - self._warmup, 0) :]
            logger.info("event=source_warmup source=%s bars=%d", self._name, len(bars))
            fresh = bars
            self._since = last
        else:
            fresh = [b for b in bars if b.ts > self._since]
            if fresh:
                self._since = fresh[-1].ts
        if self._left is not None:
            fresh = fresh[: self._left]
            self._left -= len(fresh)
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


class _PollingBarSource(FixedPartitionedSource[Bar, str | None]):
    """One partition per symbol, each a _PollingPartition; the settings every venue shares."""

    def __init__(
        self,
        symbols: Sequence[str],
        timeframe: str,
        *,
        poll_s: float,
        warmup_bars: int,
        max_backoff_s: float,
        max_bars: int | None,
        now: Callable[[], datetime],
    ) -> None:
        _check_polling(poll_s, warmup_bars, max_bars)
        self._symbols = list(symbols)
        self._tf = timeframe
        self._poll = timedelta(seconds=poll_s)
        self._warmup = warmup_bars
        self._max_backoff = max_backoff_s
        self._max_bars = max_bars
        self._now = now

    def list_parts(self) -> list[str]:
        return list(self._symbols)


# --------------------------------------------------------------------------------------------
# Binance


class BinancePollingSource(_PollingBarSource):
    """Closed Binance candles, one partition per symbol, polled every `poll_s` seconds.

    A fresh run first emits the newest `warmup_bars` closed candles, so the feature buffer is
    full when the first live candle arrives (give `start` (UTC) instead to begin there). Network
    errors and rate limits that outlast the client's own retries back off exponentially up to
    `max_backoff_s` (at least the Retry-After Binance sent) without blocking the worker; other
    source errors (an unknown symbol, a malformed payload) stop the worker. `max_bars` ends
    each partition after that many bars (None: runs until stopped).
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
        max_bars: int | None = None,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        from infra.sources import BinanceKlinesSource

        super().__init__(
            symbols,
            timeframe,
            poll_s=poll_s,
            warmup_bars=warmup_bars,
            max_backoff_s=max_backoff_s,
            max_bars=max_bars,
            now=now,
        )
        if start is not None and start.tzinfo is None:
            msg = f"start must be timezone-aware (UTC), got naive {start.isoformat()}"
            raise ValueError(msg)
        self._klines = klines if klines is not None else BinanceKlinesSource()
        self._start = start

    def build_part(
        self, step_id: str, for_part: str, resume_state: str | None
    ) -> _PollingPartition:
        from infra.sources import RateLimitedError, SourceUnavailableError
        from quality.schema import timeframe_to_timedelta

        symbol = for_part
        since = None if resume_state is None else datetime.fromisoformat(resume_state)
        # Two bars of slack: the window's first bar may be cut and the newest still forming.
        span = (self._warmup + 2) * timeframe_to_timedelta(self._tf)

        def fetch(after: datetime | None) -> list[Bar]:
            if after is not None:
                raw = self._klines.fetch(symbol, self._tf, since=after)
            else:
                raw = self._klines.fetch(symbol, self._tf, start=self._start or self._now() - span)
            return _raw_to_bars(raw.frame, symbol, self._tf)

        return _PollingPartition(
            f"binance:{symbol}",
            fetch,
            since,
            self._poll,
            (SourceUnavailableError, RateLimitedError),
            _Backoff(1.0, self._max_backoff),
            self._now,
            warmup=None if self._start is not None else self._warmup,
            limit=self._max_bars,
        )


def _check_polling(poll_s: float, warmup_bars: int, max_bars: int | None) -> None:
    if poll_s < 0:
        msg = f"poll_s must be >= 0, got {poll_s}"
        raise ValueError(msg)
    if warmup_bars < 0:
        msg = f"warmup_bars must be >= 0, got {warmup_bars}"
        raise ValueError(msg)
    if max_bars is not None and max_bars < 1:
        msg = f"max_bars must be >= 1 or None, got {max_bars}"
        raise ValueError(msg)


# --------------------------------------------------------------------------------------------
# MT5

# A fresh MT5 run looks this many times `warmup_bars` bar widths back, so that weekends and
# session breaks still leave `warmup_bars` bars in the window (an equity CFD trades ~6.5 of 24
# hours); only the newest `warmup_bars` are emitted.
_MT5_WARMUP_SPAN = 8


class _Terminal:
    """The injected MT5 module and how to open it; a lost IPC link is reopened on the next poll.

    Shared by the partitions of one source: the MetaTrader5 package has one session per process.
    """

    def __init__(self, mt5: Any, config: Any | None) -> None:
        self.mt5 = mt5
        self._config = config  # mt5_bridge.MT5Config: path, credentials, timeout
        self._open = False

    def ensure(self) -> None:
        from mt5_bridge import open_terminal

        if self._open:
            return
        open_terminal(self.mt5, self._config)
        self._open = True
        logger.info("event=mt5_source_connected")

    def lost(self, exc: Any) -> None:
        from mt5_bridge._codes import IPC_ERROR_CODES

        if exc.code in IPC_ERROR_CODES:
            self._open = False


class MT5PollingSource(_PollingBarSource):
    """Final bars from an MT5 terminal, one partition per symbol, polled every `poll_s` s.

    `mt5` is the injected terminal module (mt5_bridge.load_mt5_module or the simulator); the
    source initializes it (with `config`, an mt5_bridge.MT5Config, when given) and reinitializes
    it after a lost IPC link, backing off exponentially up to `max_backoff_s`. Bars are read with
    copy_rates_range through `mt5_bridge.fetch_history` (the bar still forming is left out). A
    fresh run first emits the newest `warmup_bars` bars; `max_bars` ends each partition after
    that many bars.
    """

    def __init__(
        self,
        mt5: Any,
        symbols: Sequence[str],
        timeframe: str,
        *,
        config: Any | None = None,
        server_utc_offset: timedelta | None = None,
        poll_s: float = 1.0,
        warmup_bars: int = 600,
        max_backoff_s: float = 60.0,
        max_bars: int | None = None,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        from mt5_bridge import MT5_TIMEFRAMES

        if timeframe not in MT5_TIMEFRAMES:
            msg = f"MT5 has no timeframe {timeframe!r}; use one of {', '.join(MT5_TIMEFRAMES)}"
            raise ValueError(msg)
        super().__init__(
            symbols,
            timeframe,
            poll_s=poll_s,
            warmup_bars=warmup_bars,
            max_backoff_s=max_backoff_s,
            max_bars=max_bars,
            now=now,
        )
        self._terminal = _Terminal(mt5, config)
        if server_utc_offset is None:
            server_utc_offset = config.server_utc_offset if config is not None else timedelta(0)
        self._offset = server_utc_offset

    def build_part(
        self, step_id: str, for_part: str, resume_state: str | None
    ) -> _PollingPartition:
        from mt5_bridge import TerminalUnavailableError, fetch_history
        from quality.schema import timeframe_to_timedelta

        symbol = for_part
        since = None if resume_state is None else datetime.fromisoformat(resume_state)
        width = timeframe_to_timedelta(self._tf)
        span = max(_MT5_WARMUP_SPAN * self._warmup, 2) * width
        terminal = self._terminal

        def fetch(after: datetime | None) -> list[Bar]:
            now = self._now()
            # fetch_history's start is inclusive; one microsecond past the last bar excludes it.
            start = now - span if after is None else after + timedelta(microseconds=1)
            if start >= now:
                return []
            try:
                terminal.ensure()
                raw = fetch_history(
                    terminal.mt5,
                    symbol,
                    self._tf,
                    start,
                    now,
                    server_utc_offset=self._offset,
                    now=now,
                )
            except TerminalUnavailableError as exc:
                terminal.lost(exc)
                raise
            return _raw_to_bars(raw, symbol, self._tf)

        return _PollingPartition(
            f"mt5:{symbol}",
            fetch,
            since,
            self._poll,
            (TerminalUnavailableError,),
            _Backoff(1.0, self._max_backoff),
            self._now,
            warmup=self._warmup,
            limit=self._max_bars,
        )


def _tick_state(since: datetime, at_since: int) -> str:
    return f"{since.isoformat()}|{at_since}"


class _TickPartition(StatefulSourcePartition[Tick, str | None]):
    """Position = (ts of the newest tick emitted, how many ticks with that ts were emitted):
    several ticks can share a millisecond, and a poll may see only some of them."""

    def __init__(
        self,
        name: str,
        fetch: Callable[[datetime], list[Tick]],
        since: datetime,
        at_since: int,
        interval: timedelta,
        errors: tuple[type[BaseException], ...],
        backoff: _Backoff,
        now: Callable[[], datetime],
        limit: int | None,
    ) -> None:
        self._name, self._fetch, self._interval = name, fetch, interval
        self._since, self._at_since = since, at_since
        self._errors, self._backoff, self._now = errors, backoff, now
        self._left = limit
        self._awake = now()

    def next_batch(self) -> list[Tick]:
        if (self._left is not None and self._left <= 0) or _STOP.is_set():
            raise StopIteration
        ticks = self._backoff.attempt(self._name, self._fetch, self._since, self._errors)
        if isinstance(ticks, float):
            self._awake = self._now() + timedelta(seconds=ticks)
            return []
        skip = self._at_since
        fresh = []
        for t in ticks:
            if t.ts < self._since:
                continue
            if t.ts == self._since and skip > 0:
                skip -= 1
                continue
            fresh.append(t)
        if self._left is not None:
            fresh = fresh[: self._left]
            self._left -= len(fresh)
        for t in fresh:
            if t.ts == self._since:
                self._at_since += 1
            else:
                self._since, self._at_since = t.ts, 1
        self._awake = self._now() + self._interval
        return fresh

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> str | None:
        return _tick_state(self._since, self._at_since)


class MT5TickSource(FixedPartitionedSource[Tick, str | None]):
    """Ticks from copy_ticks_range (COPY_TICKS_ALL), one partition per symbol; the price is the
    last trade where the venue reports one, else the bid/ask mid. Aggregate them into bars with
    the dataflow step `streaming.steps.aggregate_ticks`.

    Starts at `start` (default: now) on a fresh run; a lost IPC link is reopened with backoff
    and the next poll reads from the last tick emitted, so no tick is lost. `max_ticks` ends each
    partition after that many ticks.
    """

    def __init__(
        self,
        mt5: Any,
        symbols: Sequence[str],
        *,
        config: Any | None = None,
        server_utc_offset: timedelta | None = None,
        poll_s: float = 0.25,
        start: datetime | None = None,
        max_backoff_s: float = 30.0,
        max_ticks: int | None = None,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        _check_polling(poll_s, 0, max_ticks)
        self._terminal = _Terminal(mt5, config)
        self._symbols = list(symbols)
        if server_utc_offset is None:
            server_utc_offset = config.server_utc_offset if config is not None else timedelta(0)
        self._offset = server_utc_offset
        self._poll = timedelta(seconds=poll_s)
        self._start = start
        self._max_backoff = max_backoff_s
        self._max_ticks = max_ticks
        self._now = now

    def list_parts(self) -> list[str]:
        return list(self._symbols)

    def build_part(self, step_id: str, for_part: str, resume_state: str | None) -> _TickPartition:
        from mt5_bridge import TerminalUnavailableError
        from mt5_bridge._parse import utc_to_server

        symbol = for_part
        if resume_state is not None:
            iso, _, count = resume_state.partition("|")
            since, at_since = datetime.fromisoformat(iso), int(count or 0)
        else:
            since, at_since = (self._start or self._now()), 0
        terminal = self._terminal

        def fetch(after: datetime) -> list[Tick]:
            try:
                terminal.ensure()
                mt5 = terminal.mt5
                raw = mt5.copy_ticks_range(
                    symbol,
                    utc_to_server(after, self._offset),
                    # A tick stamped in the last second must not be cut by a truncated bound.
                    utc_to_server(self._now() + timedelta(seconds=1), self._offset),
                    mt5.COPY_TICKS_ALL,
                )
                if raw is None:
                    code, comment = mt5.last_error()
                    msg = f"MT5 copy_ticks_range({symbol}) failed"
                    raise TerminalUnavailableError(msg, int(code), str(comment))
            except TerminalUnavailableError as exc:
                terminal.lost(exc)
                raise
            return _ticks(raw, symbol, self._offset)

        return _TickPartition(
            f"mt5_ticks:{symbol}",
            fetch,
            since,
            at_since,
            self._poll,
            (TerminalUnavailableError,),
            _Backoff(0.5, self._max_backoff),
            self._now,
            self._max_ticks,
        )


def _ticks(raw: Any, symbol: str, offset: timedelta) -> list[Tick]:
    arr = np.asarray(raw)
    names = arr.dtype.names or ()
    out = []
    for rec in arr:
        msc = int(rec["time_msc"])
        ts = datetime.fromtimestamp(msc / 1000.0, tz=UTC) - offset
        last = float(rec["last"])
        price = last if last > 0 else (float(rec["bid"]) + float(rec["ask"])) / 2.0
        volume = float(rec["volume_real"]) if "volume_real" in names else 0.0
        out.append(Tick(symbol, ts, price, volume))
    # MT5 returns ticks in time order; a stable sort keeps same-millisecond ticks in it too.
    return sorted(out, key=lambda t: t.ts)
