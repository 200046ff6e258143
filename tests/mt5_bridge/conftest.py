"""A simulated terminal, a fixed clock and a recording sleep for the MT5 bridge tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from execution.domain import Order, Side, make_client_id
from mt5_bridge import MT5Broker, MT5Config
from mt5_bridge import _codes as c
from mt5_bridge.simulator import SimulatedTerminal

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
SERVER_OFFSET = timedelta(hours=2)  # the simulated broker runs on UTC+2, like many do
LOGIN = 88_123_456
PASSWORD = "s3cr3t-Pa55word"
SERVER = "SimBroker-Demo"
LOT = 100_000  # units in one EURUSD / GBPUSD lot (the simulator's trade_contract_size)


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class RecordingSleep:
    """Records each wait and moves the fake clock, so no test really sleeps."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sleeps(clock: FakeClock) -> RecordingSleep:
    return RecordingSleep(clock)


@pytest.fixture
def sim(clock: FakeClock) -> SimulatedTerminal:
    terminal = SimulatedTerminal(
        login=LOGIN,
        password=PASSWORD,
        server=SERVER,
        balance=10_000.0,
        leverage=100,
        server_utc_offset=SERVER_OFFSET,
        clock=clock,
    )
    terminal.add_symbol(
        "EURUSD",
        bid=1.10000,
        ask=1.10020,
        volume_min=0.01,
        volume_step=0.01,
        volume_max=5.0,
        filling_mode=c.SYMBOL_FILLING_IOC,  # no FOK: the bridge must fall back to IOC
        stops_level=10,
        commission_per_lot=3.5,
    )
    terminal.add_symbol("GBPUSD", bid=1.27000, ask=1.27020)
    return terminal


@pytest.fixture
def config() -> MT5Config:
    return MT5Config(login=LOGIN, password=PASSWORD, server=SERVER, server_utc_offset=SERVER_OFFSET)


@pytest.fixture
def make_broker(
    sim: SimulatedTerminal, config: MT5Config, clock: FakeClock, sleeps: RecordingSleep
) -> Callable[..., MT5Broker]:
    def make(connect: bool = True, **overrides: object) -> MT5Broker:
        cfg = MT5Config.from_mapping({**_fields(config), **overrides})
        broker = MT5Broker(cfg, sim, live_enabled=True, clock=clock, sleep=sleeps)
        if connect:
            broker.connect()
        return broker

    return make


def _fields(config: MT5Config) -> dict[str, object]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def make_order(
    quantity: float = 0.237 * LOT,
    side: Side = Side.BUY,
    symbol: str = "EURUSD",
    intent: str = "entry",
    bar_ts: datetime = T0,
    **kwargs: object,
) -> Order:
    return Order(
        client_id=make_client_id("s1", symbol, bar_ts, intent),
        symbol=symbol,
        side=side,
        quantity=quantity,
        ts=bar_ts,
        intent=intent,
        **kwargs,  # type: ignore[arg-type]
    )
