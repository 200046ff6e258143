"""The live sources in real Bytewax runs: Binance klines from a local HTTP server that answers in
Binance's documented format, and MT5 bars and ticks from the simulated terminal.

Every clock is a fake one in the past, so a partition's next wake-up (poll interval or
backoff) has always passed and the runs take no wall time; the venue side advances the clock
on each request, so each poll sees the market one step later.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import numpy as np
import pandas as pd
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main

from infra.settings import Settings
from infra.sources import BinanceKlinesSource, RetryPolicy
from mt5_bridge import MT5_TIMEFRAMES
from mt5_bridge.simulator import RATES_DTYPE, SimulatedTerminal
from orchestration.cli import main as cli_main
from streaming.sources import BinancePollingSource, MT5PollingSource, MT5TickSource
from streaming.steps import aggregate_ticks
from streaming.worker import WorkerArgs, WorkerArgsError, build_worker_flow, get_flow
from tests.infra.fixtures_http.server import LocalServer, Reply, Seen, running_server
from tests.streaming.conftest import sma_bundle, spx_bars

pytestmark = pytest.mark.timeout(60)

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
T0 = datetime(2024, 3, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, step: timedelta) -> None:
        with self._lock:
            self._now += step


def _ms(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(milliseconds=1)


def _bars_out(out: list) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "symbol": b.symbol,
                "ts": b.ts,
                "open": b.open,
                "high": b.high,
                "low": b.low,
                "close": b.close,
                "volume": b.volume,
            }
            for b in out
        ]
    )


def _retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    return [
        float(m.group(1))
        for r in caplog.records
        if (m := re.search(r"event=source_error .*retry_in_s=([\d.]+)", r.getMessage()))
    ]


def _source_flow(source: Any, out: list) -> Dataflow:
    flow = Dataflow("live_source_test")
    op.output("out", op.input("in", flow, source), TestingSink(out))
    return flow


# --------------------------------------------------------------------------------------------
# Binance


class KlinesMarket:
    """/api/v3/klines over hourly candles: closed ones final, the one forming at the clock with
    different prices (so emitting it would show), none after it. Each request moves the clock
    one hour on; `fail` maps a request number (1-based) to the reply that replaces it;
    `overlap` candles before startTime are sent too (a mirror that rounds startTime down)."""

    def __init__(self, clock: FakeClock, first: datetime, n: int, width: timedelta = HOUR) -> None:
        self.clock = clock
        self.width = width
        self.opens = [first + i * width for i in range(n)]
        rng = np.random.default_rng(3)
        closes = 100 + np.cumsum(rng.normal(0, 1, n))
        self.final = {
            _ms(t): (float(c) - 0.5, float(c) + 1.0, float(c) - 1.0, float(c), float(i + 1))
            for i, (t, c) in enumerate(zip(self.opens, closes, strict=True))
        }
        self.fail: dict[int, Reply] = {}
        self.overlap = 0
        self.count = 0
        self._lock = threading.Lock()

    def kline(self, open_ms: int, forming: bool) -> list:
        o, h, lo, c, v = self.final[open_ms]
        if forming:
            h, lo, c, v = o + 0.25, o - 0.25, o + 0.125, 0.5
        width_ms = self.width // timedelta(milliseconds=1)
        return [open_ms, str(o), str(h), str(lo), str(c), str(v), open_ms + width_ms - 1,
                "0", 1, "0", "0", "0"]  # fmt: skip

    def __call__(self, seen: Seen) -> Reply:
        with self._lock:
            self.count += 1
            try:
                if self.count in self.fail:
                    return self.fail[self.count]
                now_ms = _ms(self.clock())
                width_ms = self.width // timedelta(milliseconds=1)
                start = int(seen.params.get("startTime", 0)) - self.overlap * width_ms
                limit = int(seen.params.get("limit", 500))
                rows = []
                for open_ms in sorted(self.final):
                    if start <= open_ms <= now_ms:
                        rows.append(self.kline(open_ms, forming=open_ms + width_ms - 1 >= now_ms))
                return Reply(200, rows[:limit])
            finally:
                self.clock.advance(self.width)

    def expected(self, first: datetime, n: int) -> pd.DataFrame:
        rows = []
        for i in range(n):
            ts = first + i * self.width
            o, h, lo, c, v = self.final[_ms(ts)]
            rows.append({"ts": ts, "open": o, "high": h, "low": lo, "close": c, "volume": v})
        return pd.DataFrame(rows)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with running_server() as srv:
        yield srv


def _klines(
    server: LocalServer, clock: FakeClock, sleeps: list[float], attempts: int = 5
) -> BinanceKlinesSource:
    return BinanceKlinesSource(
        base_url=server.url,
        sleep=sleeps.append,
        now=clock,
        min_interval_s=0.0,
        retry=RetryPolicy(max_attempts=attempts, jitter_ratio=0.0),
    )


def _assert_binance_bars(out: list, market: KlinesMarket, first: datetime, n: int) -> None:
    got = _bars_out(out)
    assert got["ts"].is_unique
    assert got["ts"].is_monotonic_increasing
    expected = market.expected(first, n)
    pd.testing.assert_frame_equal(
        got.drop(columns="symbol"), expected, check_dtype=False, check_exact=True
    )


@pytest.mark.parametrize("overlap", [0, 2])
def test_binance_source_when_polled_then_only_closed_candles_in_order_once(
    server: LocalServer, overlap: int
) -> None:
    clock = FakeClock(T0 + 30 * MINUTE)  # the candle that opened at T0 is forming
    market = KlinesMarket(clock, T0 - 50 * HOUR, 120)
    market.overlap = overlap
    server.responder = market
    sleeps: list[float] = []
    source = BinancePollingSource(
        ["BTCUSDT"],
        "1h",
        klines=_klines(server, clock, sleeps),
        poll_s=0,
        warmup_bars=10,
        max_bars=25,
        now=clock,
    )
    out: list = []

    run_main(_source_flow(source, out))

    # 10 warm-up candles up to the last closed one, then one new closed candle per poll.
    _assert_binance_bars(out, market, T0 - 10 * HOUR, 25)
    assert all(b.symbol == "BTCUSDT" and b.timeframe == "1h" for b in out)
    assert market.count >= 16
    assert sleeps == []


def test_binance_source_when_resumed_from_snapshot_then_continues_after_last_bar(
    server: LocalServer, tmp_path: Path
) -> None:
    clock = FakeClock(T0 + 30 * MINUTE)
    market = KlinesMarket(clock, T0 - 50 * HOUR, 120)
    server.responder = market
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)

    def run(max_bars: int) -> list:
        source = BinancePollingSource(
            ["BTCUSDT"],
            "1h",
            klines=_klines(server, clock, []),
            poll_s=0,
            warmup_bars=5,
            max_bars=max_bars,
            now=clock,
        )
        out: list = []
        run_main(
            _source_flow(source, out),
            epoch_interval=timedelta(0),
            recovery_config=RecoveryConfig(str(recovery)),
        )
        return out

    first = run(8)
    clock.advance(3 * HOUR)  # the worker was down for a while: three candles closed meanwhile
    second = run(10)

    assert [b.ts for b in first] == [T0 - 5 * HOUR + i * HOUR for i in range(8)]
    # No warm-up again, nothing skipped, nothing repeated.
    _assert_binance_bars(first + second, market, T0 - 5 * HOUR, 18)


def test_binance_source_when_server_answers_429_and_5xx_then_retried_with_backoff(
    server: LocalServer,
) -> None:
    clock = FakeClock(T0 + 30 * MINUTE)
    market = KlinesMarket(clock, T0 - 50 * HOUR, 120)
    market.fail = {
        3: Reply(503, {"code": -1001, "msg": "Internal error; unable to process your request."}),
        4: Reply(429, {"code": -1003, "msg": "Too many requests"}, {"Retry-After": "3"}),
    }
    server.responder = market
    sleeps: list[float] = []
    source = BinancePollingSource(
        ["BTCUSDT"],
        "1h",
        klines=_klines(server, clock, sleeps),
        poll_s=0,
        warmup_bars=4,
        max_bars=12,
        now=clock,
    )
    out: list = []

    run_main(_source_flow(source, out))

    # The client's backoff (1 s, then the 3 s Retry-After), injected sleep: no wall time.
    assert sleeps == [1.0, 3.0]
    _assert_binance_bars(out, market, T0 - 4 * HOUR, 12)


def test_binance_source_when_errors_outlast_client_retries_then_source_backs_off_no_bar_lost(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(T0 + 30 * MINUTE)
    market = KlinesMarket(clock, T0 - 50 * HOUR, 120)
    busy = Reply(502, "<html>Bad Gateway</html>")
    market.fail = {
        4: busy,
        5: busy,
        6: Reply(429, {"code": -1003, "msg": "Too many requests"}, {"Retry-After": "30"}),
        7: busy,
    }
    server.responder = market
    source = BinancePollingSource(
        ["BTCUSDT"],
        "1h",
        klines=_klines(server, clock, [], attempts=1),
        poll_s=0,
        warmup_bars=3,
        max_bars=15,
        max_backoff_s=60,
        now=clock,
    )
    out: list = []

    with caplog.at_level(logging.WARNING, logger="streaming.sources"):
        run_main(_source_flow(source, out))

    # Exponential, at least the Retry-After; the worker never sleeps (its clock says when).
    assert _retry_delays(caplog) == [1.0, 2.0, 30.0, 8.0]
    _assert_binance_bars(out, market, T0 - 3 * HOUR, 15)


# --------------------------------------------------------------------------------------------
# MT5


class ScriptedTerminal:
    """The simulated terminal, with the market moving one bar width per copy_rates_range call
    and a fault injected at chosen call numbers (`faults`: call number -> action)."""

    def __init__(self, sim: SimulatedTerminal, clock: FakeClock, step: timedelta) -> None:
        self.sim, self.clock, self.step = sim, clock, step
        self.faults: dict[int, Any] = {}
        self.rate_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sim, name)

    def copy_rates_range(self, *args: Any) -> Any:
        self.rate_calls += 1
        fault = self.faults.get(self.rate_calls)
        if fault is not None:
            fault(self.sim)
        try:
            return self.sim.copy_rates_range(*args)
        finally:
            self.clock.advance(self.step)


def _mt5_market(n: int, first: datetime) -> tuple[SimulatedTerminal, FakeClock, np.ndarray]:
    clock = FakeClock(T0 + 30 * timedelta(seconds=1))  # the T0 minute bar is forming
    sim = SimulatedTerminal(clock=clock)
    sim.add_symbol("EURUSD", bid=1.1, ask=1.1002)
    rng = np.random.default_rng(5)
    close = 1.1 + np.cumsum(rng.normal(0, 1e-4, n))
    rates = np.zeros(n, dtype=RATES_DTYPE)
    rates["time"] = [int((first + i * MINUTE).timestamp()) for i in range(n)]
    rates["open"], rates["close"] = close - 5e-5, close
    rates["high"], rates["low"] = close + 1e-4, close - 1e-4
    rates["tick_volume"] = np.arange(n) + 10
    sim.set_rates("EURUSD", MT5_TIMEFRAMES["1m"], rates)
    return sim, clock, rates


def _expected_rates(rates: np.ndarray, first: datetime, n: int) -> pd.DataFrame:
    ts = pd.to_datetime(rates["time"], unit="s", utc=True)
    frame = pd.DataFrame(
        {
            "ts": ts,
            "open": rates["open"],
            "high": rates["high"],
            "low": rates["low"],
            "close": rates["close"],
            "volume": rates["tick_volume"].astype("float64"),
        }
    )
    frame = frame[frame["ts"] >= pd.Timestamp(first)].head(n).reset_index(drop=True)
    frame["ts"] = [t.to_pydatetime() for t in frame["ts"]]
    return frame


def test_mt5_source_when_polled_then_each_final_bar_emitted_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim, clock, rates = _mt5_market(200, T0 - 100 * MINUTE)
    terminal = ScriptedTerminal(sim, clock, MINUTE)
    source = MT5PollingSource(
        terminal, ["EURUSD"], "1m", poll_s=0, warmup_bars=10, max_bars=30, now=clock
    )
    out: list = []

    with caplog.at_level(logging.WARNING, logger="streaming.sources"):
        run_main(_source_flow(source, out))

    got = _bars_out(out).drop(columns="symbol")
    assert got["ts"].is_unique
    pd.testing.assert_frame_equal(got, _expected_rates(rates, T0 - 10 * MINUTE, 30))
    assert _retry_delays(caplog) == []
    assert sim.calls["initialize"] == 1


def test_mt5_source_when_terminal_drops_then_reconnects_with_backoff_and_loses_no_bar(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim, clock, rates = _mt5_market(200, T0 - 100 * MINUTE)
    terminal = ScriptedTerminal(sim, clock, MINUTE)

    def outage(s: SimulatedTerminal) -> None:
        s.drop_connection()
        s.fail_next_initialize(2)  # the terminal takes three tries to come back

    terminal.faults = {6: outage}
    source = MT5PollingSource(
        terminal, ["EURUSD"], "1m", poll_s=0, warmup_bars=10, max_bars=30, now=clock
    )
    out: list = []

    with caplog.at_level(logging.WARNING, logger="streaming.sources"):
        run_main(_source_flow(source, out))

    # copy_rates_range fails (link lost), then initialize() fails twice, then all is well.
    assert _retry_delays(caplog) == [1.0, 2.0, 4.0]
    assert sim.calls["initialize"] == 4
    got = _bars_out(out).drop(columns="symbol")
    assert got["ts"].is_unique
    pd.testing.assert_frame_equal(got, _expected_rates(rates, T0 - 10 * MINUTE, 30))


class TickMarket:
    """The simulated terminal with quotes arriving between polls: before each of the first
    `calls` copy_ticks_range calls the clock moves a random step (sometimes none, so several
    ticks share a millisecond and are split across polls) and 1..3 quotes arrive. The calls
    numbered in `failing` fail as if the IPC link were lost."""

    def __init__(self, sim: SimulatedTerminal, clock: FakeClock, calls: int, failing: set[int]):
        self.sim, self.clock, self.failing = sim, clock, failing
        rng = random.Random(11)
        self.schedule: list[tuple[timedelta, list[tuple[float, float]]]] = []
        price = 1.1
        for _ in range(calls):
            step = rng.choice([timedelta(0), timedelta(seconds=7), timedelta(seconds=41)])
            step += timedelta(milliseconds=rng.choice([0, 123]))
            quotes = []
            for _ in range(rng.randint(1, 3)):
                price += rng.choice([-2e-5, -1e-5, 0.0, 1e-5, 2e-5])
                quotes.append((price, price + rng.choice([1e-5, 2e-5])))
            self.schedule.append((step, quotes))
        # The quote add_symbol recorded at the start.
        self.ticks: list[tuple[datetime, float]] = [(clock(), (1.1 + 1.1002) / 2)]
        self.n = 0

    @property
    def total(self) -> int:
        return len(self.ticks) + sum(len(q) for _, q in self.schedule[self.n :])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sim, name)

    def copy_ticks_range(self, *args: Any) -> Any:
        if self.n < len(self.schedule):
            step, quotes = self.schedule[self.n]
            self.clock.advance(step)
            for bid, ask in quotes:
                self.sim.set_quote("EURUSD", bid, ask)
                self.ticks.append((self.clock(), (bid + ask) / 2))
        self.n += 1
        if self.n in self.failing:
            self.sim.fail_next_calls("copy_ticks_range")
        return self.sim.copy_ticks_range(*args)


def test_mt5_ticks_when_aggregated_then_bars_equal_pandas_resample_and_no_tick_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(T0)
    sim = SimulatedTerminal(clock=clock)
    sim.add_symbol("EURUSD", bid=1.1, ask=1.1002)  # the first tick, at T0
    market = TickMarket(sim, clock, calls=80, failing={30, 31, 32})
    source = MT5TickSource(
        market, ["EURUSD"], poll_s=0, start=T0, max_ticks=market.total, now=clock
    )
    flow = Dataflow("ticks_test")
    ticks = op.input("in", flow, source)
    raw: list = []
    op.output("ticks_out", ticks, TestingSink(raw))
    keyed = op.key_on("key", ticks, lambda t: t.symbol)
    bars = op.stateful_map("bars", keyed, lambda st, t: aggregate_ticks(st, t, "1m"))
    done = op.filter_map("done", bars, lambda kv: kv[1])
    out: list = []
    op.output("bars_out", done, TestingSink(out))

    with caplog.at_level(logging.WARNING, logger="streaming.sources"):
        run_main(flow)

    # Every tick once, in order, same-millisecond ticks split across polls included.
    assert [t.ts for t in raw] == [ts for ts, _ in market.ticks]
    assert [t.price for t in raw] == pytest.approx([p for _, p in market.ticks], abs=1e-12)
    assert _retry_delays(caplog) == [0.5, 1.0, 2.0]
    assert sim.calls["initialize"] == 4  # the first connect, then one per lost link
    frame = pd.DataFrame(market.ticks, columns=["ts", "price"]).set_index("ts")
    ohlc = frame["price"].resample("1min").ohlc().dropna()
    ohlc["volume"] = 0.0
    expected = ohlc.iloc[:-1].reset_index()  # the newest bar is still open: not emitted
    got = _bars_out(out).drop(columns="symbol")
    assert len(got) >= 10
    pd.testing.assert_frame_equal(
        got.assign(ts=pd.to_datetime(got["ts"], utc=True).dt.as_unit("ns")),
        expected.assign(ts=expected["ts"].dt.as_unit("ns")),
        check_exact=False,
        rtol=0,
        atol=1e-12,
        check_dtype=False,
    )


# --------------------------------------------------------------------------------------------
# worker and CLI


def test_cli_when_live_source_without_series_then_one_line_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CANDLEFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("CANDLEFLOW_METRICS_PORT", "0")

    code = cli_main(["stream", "--source", "binance"])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert "--source binance needs the series" in err[0]
    assert "--series SYMBOL@TIMEFRAME" in err[0]


def test_get_flow_when_env_names_live_source_without_series_then_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CANDLEFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("CANDLEFLOW_METRICS_PORT", "0")
    monkeypatch.setenv("CANDLEFLOW_STREAM_SOURCE", "mt5")
    monkeypatch.delenv("CANDLEFLOW_STREAM_SYMBOLS", raising=False)

    with pytest.raises(WorkerArgsError, match="--source mt5 needs the series"):
        get_flow()


def test_get_flow_when_config_file_names_live_source_then_read_like_the_stream_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "candleflow.toml"
    config.write_text('[live]\nsource = "mt5"\nmetrics_port = 0\n')
    monkeypatch.setenv("CANDLEFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("CANDLEFLOW_CONFIG", str(config))
    for name in ("CANDLEFLOW_STREAM_SOURCE", "CANDLEFLOW_STREAM_SYMBOLS", "CANDLEFLOW_BROKER"):
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(WorkerArgsError, match="--source mt5 needs the series"):
        get_flow()


def test_live_section_when_flag_or_environment_given_then_they_win_over_the_file() -> None:
    from infra.config import LiveSection
    from infra.settings import Broker, Settings
    from streaming.worker import with_live_section

    live = LiveSection(broker="mt5", series=("SPX@1d",), workers=2, metrics_port=9999)
    settings, merged = with_live_section(
        Settings(), live, {"symbols": ("IXIC@1d",), "workers": None}, {"CANDLEFLOW_BROKER": "x"}
    )

    assert merged["symbols"] == ("IXIC@1d",)  # the flag
    assert merged["workers"] == 2  # the file, where no flag was given
    assert merged["metrics_port"] == 9999
    assert settings.broker == Settings().broker  # CANDLEFLOW_BROKER set: the file's is ignored
    _, from_file = with_live_section(Settings(), live, {}, {})
    assert from_file["symbols"] == ("SPX@1d",)
    assert with_live_section(Settings(), live, {}, {})[0].broker == Broker.MT5


def test_worker_args_when_unknown_source_then_refused() -> None:
    with pytest.raises(WorkerArgsError, match="unknown stream source 'kraken'"):
        WorkerArgs(symbols=("BTCUSDT@1h",), source="kraken")


def test_worker_when_mt5_source_on_linux_without_package_then_clear_error(
    tmp_path: Path,
) -> None:
    args = WorkerArgs(symbols=("EURUSD@1h",), source="mt5", metrics_port=0)

    with pytest.raises(WorkerArgsError, match="MetaTrader5 package is not installed"):
        build_worker_flow(Settings(home=tmp_path), args)


def test_worker_when_binance_source_then_first_live_prediction_equals_batch(
    server: LocalServer, tmp_path: Path
) -> None:
    """The source warms the feature buffer with history - 1 bars, so the prediction of the first
    live bar (and of every one after it) equals the batch prediction over the full history."""
    bundle = sma_bundle()
    bundle_dir = bundle.save(tmp_path / "bundle")
    day = timedelta(days=1)
    spx = spx_bars(700)
    first = datetime(2020, 1, 1, tzinfo=UTC)
    spx["ts"] = [first + i * day for i in range(len(spx))]
    live_at = 600
    clock = FakeClock(first + live_at * day + 12 * HOUR)  # candle 600 is forming
    market = KlinesMarket(clock, first, len(spx), width=day)
    market.final = {
        _ms(row.ts): (row.open, row.high, row.low, row.close, row.volume)
        for row in spx.itertuples()
    }
    server.responder = market
    n_live = 4
    warmup = bundle.history - 1
    args = WorkerArgs(
        symbols=("SPX@1d",),
        source="binance",
        bundle=bundle_dir,
        max_bars=warmup + n_live,
        poll_s=0,
        metrics_port=0,
        binance_url=server.url,
    )
    settings = Settings(home=tmp_path / "home")

    started = clock()
    flow = build_worker_flow(settings, args, klines=_klines(server, clock, []), clock=clock).flow
    run_main(flow)

    from infra.stores import ParquetBarStore

    store = ParquetBarStore(settings.data_dir)
    equity_ts = sorted(pd.Timestamp(t) for t in store.read_records("live_equity")["ts"])
    expected_ts = [pd.Timestamp(first + i * day) for i in range(live_at - warmup, live_at + n_live)]
    assert equity_ts == expected_ts  # exactly history - 1 warm-up bars, then the live ones
    orders = store.read_records("live_orders")
    # Warm-up history is never traded: every order was decided on a bar that closed after start.
    assert len(orders) > 0
    assert (pd.to_datetime(orders["ts"], utc=True) >= pd.Timestamp(started)).all()
    preds = store.read_records("live_predictions").assign(ts=lambda f: pd.to_datetime(f["ts"]))
    preds = preds.set_index("ts")["p_up"]
    live_ts = [pd.Timestamp(first + (live_at + i) * day) for i in range(n_live)]
    batch = bundle.predict_frame(spx.iloc[: live_at + n_live])["p_up"]
    assert preds.loc[live_ts].to_numpy() == pytest.approx(
        batch.iloc[-n_live:].to_numpy(), rel=0, abs=1e-9
    )
