"""The live portfolio step over the MT5 bridge and its simulator: venue events reach the ledger,
and a ledger that disagrees with the venue is never traded on."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from execution.config import StopConfig, StrategyConfig
from execution.reconcile import ReconcileConfig, ReconcilePolicy
from execution.risk import RiskGovernor
from execution.signal import Bar, Prediction
from mt5_bridge import MT5Broker, MT5Config
from mt5_bridge import _codes as c
from mt5_bridge.simulator import SendFault, SimulatedTerminal
from streaming.metrics import LiveMetrics
from streaming.router import OrderRouter
from streaming.steps import PortfolioRuntime, Scored, portfolio_step

T0 = datetime(2024, 1, 2, tzinfo=UTC)


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _bar(i: int, price: float = 100.0) -> Bar:
    return Bar("AAA", "1d", T0 + timedelta(days=i), price, price * 1.01, price * 0.99, price, 1e6)


def _up(bar: Bar) -> Prediction:
    return Prediction(bar.symbol, bar.ts, 0.05, 0.05, 0.9)


def _flat(bar: Bar) -> Prediction:
    return Prediction(bar.symbol, bar.ts, 0.05, 0.9, 0.05)


@pytest.fixture
def venue():
    clock = _Clock()
    sim = SimulatedTerminal(clock=clock, balance=100_000.0)
    sim.add_symbol("AAA", bid=99.99, ask=100.01, digits=2, point=0.01, contract_size=1.0,
                   volume_min=1.0, volume_step=1.0, volume_max=1e6)  # fmt: skip
    return sim, _connect(sim, clock)


def _connect(sim: SimulatedTerminal, clock: _Clock) -> MT5Broker:
    broker = MT5Broker(
        MT5Config(symbols=("AAA",)), sim, live_enabled=True, clock=clock, sleep=clock.sleep
    )
    broker.connect()
    return broker


def _lost_position(sim: SimulatedTerminal, broker: MT5Broker) -> MT5Broker:
    """7 units of our book bought long before this worker started (its snapshot is lost)."""
    sim.order_send(
        {"action": 1, "symbol": "AAA", "volume": 7.0, "type": 0, "price": 100.01,
         "deviation": 10, "magic": broker.config.magic << 32, "comment": "", "type_filling": 0}
    )  # fmt: skip
    clock = broker._clock
    clock.now += timedelta(days=1)
    return _connect(sim, clock)


def _runtime(broker, reconcile: ReconcileConfig | None = None, **kw) -> PortfolioRuntime:
    config = StrategyConfig(stops=StopConfig(kind="fixed", stop_pct=0.02))
    return PortfolioRuntime(
        config=config,
        governor=RiskGovernor(config.risk),
        symbols=("AAA",),
        router=OrderRouter(),
        live_broker=broker,
        reconcile=reconcile or ReconcileConfig(),
        **kw,
    )


def test_step_when_server_stops_out_then_ledger_books_close_at_deal_price_and_exit_sends_nothing(
    venue,
):
    # Arrange: an entry with a 2% stop fills at the venue and reaches the ledger
    sim, broker = venue
    rt = _runtime(broker)
    b0, b1, b2 = _bar(0), _bar(1), _bar(2, 97.5)
    state, _ = portfolio_step(None, Scored(b0, _up(b0), 0), rt)
    state, _ = portfolio_step(state, Scored(b1, None, 0), rt)
    held = state.engine.positions["AAA"].quantity
    assert held > 0
    sent_before = len(sim.sent_requests)

    # Act: the market gaps through the stop; the server closes at 97.50; then the model says flat
    sim.set_quote("AAA", 97.50, 97.52)
    state, records = portfolio_step(state, Scored(b2, _flat(b2), 0), rt)

    # Assert
    fills = [r.row for r in records if r.table == "live_fills"]
    assert [(f["side"], f["quantity"], f["price"]) for f in fills] == [
        ("sell", pytest.approx(held), pytest.approx(97.50))
    ]
    assert fills[0]["client_id"].startswith("mt5-sl-")
    assert "AAA" not in state.engine.positions
    assert len(sim.sent_requests) == sent_before  # the exit signal sent nothing
    assert broker.positions() == {}
    assert rt.halted is None


def test_step_when_venue_holds_a_position_the_ledger_does_not_then_halts_with_gauge_and_log(
    venue, caplog
):
    # Arrange: a position of our book the ledger never saw (its snapshot was lost)
    sim, broker = venue
    broker = _lost_position(sim, broker)
    metrics = LiveMetrics.create(CollectorRegistry())
    rt = _runtime(broker, metrics=metrics)
    b0 = _bar(0)
    caplog.set_level(logging.ERROR)

    # Act
    state, records = portfolio_step(None, Scored(b0, _up(b0), 0), rt)

    # Assert
    assert rt.halted is not None and "AAA" in rt.halted
    assert [r for r in records if r.table == "live_orders"] == []
    assert metrics.registry.get_sample_value("reconcile_halted") == 1.0
    assert metrics.registry.get_sample_value("reconcile_mismatches", {"kind": "position"}) == 1.0
    assert "event=reconcile_mismatch halted=true" in caplog.text


def test_step_when_adopt_policy_and_mismatch_persists_then_ledger_adopts_venue_and_resumes(venue):
    # Arrange
    sim, broker = venue
    broker = _lost_position(sim, broker)
    rt = _runtime(broker, ReconcileConfig(policy=ReconcilePolicy.ADOPT, confirm_checks=2))
    bars = [_bar(i) for i in range(4)]

    # Act
    state, _ = portfolio_step(None, Scored(bars[0], None, 0), rt)
    halted_first = rt.halted
    state, _ = portfolio_step(state, Scored(bars[1], None, 0), rt)  # confirmed: adopt
    state, _ = portfolio_step(state, Scored(bars[2], None, 0), rt)  # agrees: resume

    # Assert
    assert halted_first is not None
    assert state.engine.positions["AAA"].quantity == pytest.approx(7.0)
    assert state.engine.positions["AAA"].avg_price == pytest.approx(100.01)
    assert rt.halted is None


def test_step_when_entry_rejected_for_no_money_then_flat_signal_sends_nothing():
    # Arrange: an account too small for the entry's margin (order_check answers 10019)
    clock = _Clock()
    sim = SimulatedTerminal(clock=clock, balance=100.0)
    sim.add_symbol("AAA", bid=99.99, ask=100.01, digits=2, point=0.01, contract_size=1.0,
                   volume_min=1.0, volume_step=1.0, volume_max=1e6)  # fmt: skip
    rt = _runtime(_connect(sim, clock))
    b0, b1 = _bar(0), _bar(1)

    # Act
    state, first = portfolio_step(None, Scored(b0, _up(b0), 0), rt)
    state, second = portfolio_step(state, Scored(b1, _flat(b1), 0), rt)

    # Assert
    assert sim.sent_requests == []  # refused at order_check; and the flat signal sent nothing
    assert [r for r in first + second if r.table == "live_orders"] == []
    assert "AAA" not in state.engine.positions
    assert state.engine.symbols["AAA"].orders == {}
    assert sim.positions_get() == ()


def test_step_when_engine_trails_the_stop_then_the_venue_stop_moves_with_sltp(venue):
    # Arrange: a long with a 2% trailing stop at the venue
    sim, broker = venue
    config = StrategyConfig(stops=StopConfig(kind="trailing", stop_pct=0.02))
    rt = PortfolioRuntime(
        config=config,
        governor=RiskGovernor(config.risk),
        symbols=("AAA",),
        router=OrderRouter(),
        live_broker=broker,
    )
    b0, b1, b2 = _bar(0), _bar(1), _bar(2, 104.0)
    state, _ = portfolio_step(None, Scored(b0, _up(b0), 0), rt)
    state, _ = portfolio_step(state, Scored(b1, None, 0), rt)
    (before,) = sim.positions_get()

    # Act: the market rises; the engine trails the stop to 2% under the new high
    sim.set_quote("AAA", 104.99, 105.01)
    state, _ = portfolio_step(state, Scored(b2, None, 0), rt)

    # Assert
    (after,) = sim.positions_get()
    assert after.sl == pytest.approx(state.engine.symbols["AAA"].stop, abs=0.01)
    assert after.sl > before.sl
    assert sim.sent_requests[-1]["action"] == 6  # TRADE_ACTION_SLTP


def test_step_when_order_outcome_unknown_then_no_exception_and_next_check_settles_it(venue):
    # Arrange: every send times out and the order is never found: its fate is unknown
    sim, broker = venue
    rt = _runtime(broker)
    b0, b1 = _bar(0), _bar(1)
    sim.queue_send_faults(*[SendFault(c.TRADE_RETCODE_TIMEOUT)] * 10)

    # Act
    state, first = portfolio_step(None, Scored(b0, _up(b0), 0), rt)
    unknown = [o.client_id for o in rt.router.unresolved()]
    state, _ = portfolio_step(state, Scored(b1, None, 0), rt)

    # Assert: recorded as possibly sent, then settled absent at the venue and dropped
    assert [r.row["client_id"] for r in first if r.table == "live_orders"] == unknown
    assert len(unknown) == 1
    assert rt.router.unresolved() == ()
    assert broker.journal.get(unknown[0]).state == "absent"
    assert state.engine.symbols["AAA"].orders == {}
    assert rt.halted is None
