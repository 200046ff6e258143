"""The router over the MT5 bridge and its simulator: one retry layer, a deadline, no escapes.

Before this router (d60cf92) a venue that kept requoting cost 16 order_send calls (bridge 4 x
router 4), one that kept answering "too many requests" 16 calls and 17 s of sleeps inside the
step, and repeated timeouts escaped the router as an exception.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from execution.domain import Order, Side, make_client_id
from mt5_bridge import MT5Broker, MT5Config
from mt5_bridge import _codes as c
from mt5_bridge.simulator import SendFault, SimulatedTerminal
from streaming.router import OrderRouter, RouteOutcome

T0 = datetime(2024, 3, 4, 12, tzinfo=UTC)


class _Clock:
    def __init__(self) -> None:
        self.now = T0
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def venue() -> tuple[SimulatedTerminal, MT5Broker, _Clock]:
    clock = _Clock()
    sim = SimulatedTerminal(clock=clock, balance=100_000.0)
    sim.add_symbol("EURUSD", bid=1.1000, ask=1.1002)
    broker = MT5Broker(MT5Config(), sim, live_enabled=True, clock=clock, sleep=clock.sleep)
    broker.connect()
    return sim, broker, clock


def _order(units: float = 10_000.0) -> Order:
    return Order(make_client_id("s", "EURUSD", T0, "entry"), "EURUSD", Side.BUY, units, T0, "entry")


@pytest.mark.parametrize(
    ("retcode", "max_sleep_s"),
    [(c.TRADE_RETCODE_REQUOTE, 0.0), (c.TRADE_RETCODE_TOO_MANY_REQUESTS, 2.0)],
    ids=["requote", "busy"],
)
def test_route_when_venue_keeps_refusing_transiently_then_one_retry_layer_within_deadline(
    venue, retcode, max_sleep_s
):
    # Arrange
    sim, broker, clock = venue
    sim.queue_send_faults(*[SendFault(retcode)] * 50)
    router = OrderRouter()

    # Act
    routed = router.route(broker, _order())

    # Assert: 1 send + max_retries 3, waits within order_deadline_s (2 s), nothing executed
    assert routed.outcome is RouteOutcome.FAILED
    assert sim.calls["order_send"] == 4
    assert sum(clock.slept) <= max_sleep_s
    assert broker.positions() == {}


def test_route_when_timeouts_repeat_then_unknown_outcome_is_a_reconciliation_item(venue):
    # Arrange
    sim, broker, _ = venue
    sim.queue_send_faults(*[SendFault(c.TRADE_RETCODE_TIMEOUT)] * 50)
    router = OrderRouter()
    order = _order()

    # Act: must not raise
    routed = router.route(broker, order)

    # Assert
    assert routed.outcome is RouteOutcome.UNKNOWN
    assert routed.outcome.at_venue is None
    assert router.unresolved() == (order,)
    assert broker.journal.get(order.client_id).state == "unknown"


def test_route_when_no_money_then_rejected_once_and_not_at_venue(venue):
    # Arrange: 95 lots need 104,519 margin on a 100,000 account
    sim, broker, _ = venue
    router = OrderRouter()

    # Act
    routed = router.route(broker, _order(units=9_500_000.0))

    # Assert
    assert routed.outcome is RouteOutcome.REJECTED
    assert routed.outcome.at_venue is False
    assert "10019" in routed.reason
    assert sim.calls["order_send"] == 0  # order_check refused it first
