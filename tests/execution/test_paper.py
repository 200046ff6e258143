from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from execution.broker import DuplicateOrderError
from execution.config import CostModel, StopConfig, StrategyConfig
from execution.costs import cost_fraction
from execution.domain import Fill, Order, Side, make_client_id
from execution.orders import OrderAccepted, OrderCancelled, OrderExpired, OrderSubmitted
from execution.paper import (
    END_OF_BAR_CANCELLED,
    END_OF_BAR_EXPIRED,
    END_OF_BAR_WORKING,
    PaperBroker,
    cash_limited_quantity,
    end_of_bar_step,
    fill_complete,
    protective_client_id,
)
from execution.signal import Bar

T0 = datetime(2024, 1, 2, 14, tzinfo=UTC)
NO_COSTS = CostModel(commission_bps=0.0, spread_bps=0.0, slippage_bps=0.0, max_volume_share=None)


def _bar(i: int, o: float, h: float, lo: float, c: float, v: float = 1e6) -> Bar:
    return Bar("X", "1h", T0 + timedelta(hours=i), o, h, lo, c, v)


def _order(i: int, side: Side, qty: float, intent: str = "entry", **kw: object) -> Order:
    ts = T0 + timedelta(hours=i)
    return Order(make_client_id("t", "X", ts, intent), "X", side, qty, ts, intent, **kw)  # type: ignore[arg-type]


def _fills(events: list) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill)]


def test_submit_when_client_id_seen_then_duplicate_error() -> None:
    broker = PaperBroker(StrategyConfig(strategy="t"))
    broker.submit(_order(0, Side.BUY, 1.0))

    with pytest.raises(DuplicateOrderError):
        broker.submit(_order(0, Side.BUY, 1.0))


def test_restart_when_state_path_given_then_continues_and_refuses_seen_ids(tmp_path: Path) -> None:
    path = tmp_path / "paper.json"
    config = StrategyConfig(strategy="t", costs=NO_COSTS)
    first = PaperBroker(config, state_path=path)
    first.submit(_order(0, Side.BUY, 2.0))
    first.submit(_order(0, Side.SELL, 1.0, intent="exit"))
    first.on_bar(_bar(1, 100.0, 101.0, 99.0, 100.5))
    first.submit(_order(1, Side.BUY, 3.0))

    second = PaperBroker(config, state_path=path)

    assert [f.quantity for f in second.poll_fills()] == [2.0, 1.0]
    assert second.positions()["X"].quantity == pytest.approx(1.0)
    assert [o.quantity for o in second.open_orders()] == [3.0]
    with pytest.raises(DuplicateOrderError):
        second.submit(_order(0, Side.BUY, 2.0))
    fills = second.on_bar(_bar(2, 102.0, 103.0, 101.0, 102.0))
    assert [(f.quantity, f.price) for f in fills] == [(3.0, 102.0)]
    assert not list(tmp_path.glob("*.tmp"))


def test_on_bar_when_volume_cap_then_cap_uses_previous_bar_volume_not_the_filled_bar() -> None:
    config = StrategyConfig(strategy="t", costs=CostModel(max_volume_share=0.1))
    broker = PaperBroker(config)
    broker.on_bar(_bar(0, 100, 101, 99, 100, v=100.0))
    broker.submit(_order(0, Side.BUY, 25.0))

    # The filled bar reports a huge volume; only the 100 known before it may count.
    events = broker.on_bar(_bar(1, 100, 101, 99, 100, v=1e9))

    assert [f.quantity for f in _fills(events)] == [pytest.approx(10.0)]


def test_on_bar_when_entry_partly_filled_and_policy_cancel_then_rest_cancelled_at_bar_end() -> None:
    config = StrategyConfig(strategy="t", costs=CostModel(max_volume_share=0.1))
    broker = PaperBroker(config)
    broker.on_bar(_bar(0, 100, 101, 99, 100, v=100.0))
    order = _order(0, Side.BUY, 25.0)
    broker.submit(order)

    events = broker.on_bar(_bar(1, 100, 101, 99, 100, v=100.0))

    assert isinstance(events[0], Fill)
    assert events[1] == OrderCancelled(
        order.client_id, "X", T0 + timedelta(hours=2), pytest.approx(15.0), "end_of_bar"
    )
    assert broker.open_orders() == []


def test_on_bar_when_policy_keep_then_entry_works_n_bars_then_expires() -> None:
    config = StrategyConfig(
        strategy="t",
        costs=CostModel(max_volume_share=0.1),
        partial_fill="keep",
        partial_fill_bars=2,
    )
    broker = PaperBroker(config)
    broker.on_bar(_bar(0, 100, 101, 99, 100, v=100.0))
    broker.submit(_order(0, Side.BUY, 25.0))

    first = broker.on_bar(_bar(1, 100, 101, 99, 100, v=100.0))
    second = broker.on_bar(_bar(2, 100, 101, 99, 100, v=100.0))

    assert [f.quantity for f in _fills(first)] == [pytest.approx(10.0)]
    assert [f.quantity for f in _fills(second)] == [pytest.approx(10.0)]
    assert isinstance(second[-1], OrderExpired)
    assert second[-1].unfilled == pytest.approx(5.0)


def test_on_bar_when_exit_volume_capped_then_exit_keeps_working_until_filled() -> None:
    config = StrategyConfig(strategy="t", costs=CostModel(max_volume_share=0.1))
    broker = PaperBroker(config)
    broker.on_bar(_bar(0, 100, 101, 99, 100, v=1000.0))
    broker.submit(_order(0, Side.BUY, 25.0))
    broker.on_bar(_bar(1, 100, 101, 99, 100, v=100.0))
    broker.submit(_order(1, Side.SELL, 25.0, intent="exit"))

    sold = [
        sum(f.quantity for f in _fills(broker.on_bar(_bar(i, 100, 101, 99, 100, v=100.0))))
        for i in (2, 3, 4)
    ]

    assert sold == [pytest.approx(10.0), pytest.approx(10.0), pytest.approx(5.0)]
    assert broker.positions() == {}


def test_on_bar_when_buy_costs_more_than_cash_then_fills_what_cash_pays_and_cancels_rest() -> None:
    costs = CostModel(commission_bps=10.0, spread_bps=0.0, slippage_bps=0.0, max_volume_share=None)
    config = StrategyConfig(strategy="t", costs=costs, initial_cash=1_000.0)
    broker = PaperBroker(config)
    order = _order(0, Side.BUY, 10.0)  # sized at a close of 100; the next open gaps to 120
    broker.submit(order)

    events = broker.on_bar(_bar(1, 120.0, 121.0, 119.0, 120.0))

    (fill,) = _fills(events)
    assert fill.quantity * fill.price + fill.commission <= 1_000.0
    assert fill.quantity == pytest.approx(1_000.0 / (120.0 * 1.001))
    assert broker.cash >= 0.0
    assert isinstance(events[-1], OrderCancelled)
    assert events[-1].reason == "insufficient_cash"


def test_cancel_when_order_working_then_cancelled_with_unfilled_and_never_fills() -> None:
    broker = PaperBroker(StrategyConfig(strategy="t", costs=NO_COSTS))
    order = _order(0, Side.BUY, 3.0)
    broker.submit(order)

    from execution.orders import Cancel

    answer = broker.cancel(Cancel(order.client_id, "X", T0, "superseded"))
    events = broker.on_bar(_bar(1, 100.0, 101.0, 99.0, 100.0))

    assert answer == [OrderCancelled(order.client_id, "X", T0, 3.0, "superseded")]
    assert _fills(events) == []
    assert broker.cancel(Cancel(order.client_id, "X", T0)) == []


def test_submit_when_fx_entry_above_instrument_max_then_rejected_not_capped() -> None:
    from execution.broker import OrderRejectedError

    broker = PaperBroker(StrategyConfig(strategy="t"))
    big = Order(make_client_id("t", "EURUSD", T0, "entry"), "EURUSD", Side.BUY, 2e7, T0, "entry")

    with pytest.raises(OrderRejectedError, match="above the maximum"):
        broker.submit(big)
    assert broker.open_orders() == []


def test_on_bar_when_market_order_then_fills_at_open_with_costs() -> None:
    costs = CostModel(
        commission_bps=5.0,
        commission_min=2.0,
        spread_bps=4.0,
        slippage_bps=1.0,
        max_volume_share=None,
    )
    broker = PaperBroker(StrategyConfig(strategy="t", costs=costs))
    broker.submit(_order(0, Side.SELL, 10.0))

    (fill,) = broker.on_bar(_bar(1, 100.0, 105.0, 95.0, 104.0))

    assert fill.price == pytest.approx(100.0 * (1 - 3e-4))
    assert fill.commission == pytest.approx(2.0)  # 5 bps of ~1000 is below the minimum
    assert fill.slippage_cost == pytest.approx(10 * 100.0 * 3e-4)
    assert fill.ts == T0 + timedelta(hours=1)


def test_on_bar_when_next_close_fill_model_then_fills_at_close() -> None:
    broker = PaperBroker(StrategyConfig(strategy="t", costs=NO_COSTS, fill="next_close"))
    broker.submit(_order(0, Side.BUY, 1.0))

    (fill,) = broker.on_bar(_bar(1, 100.0, 105.0, 95.0, 104.0))

    assert fill.price == 104.0
    assert fill.ts == T0 + timedelta(hours=2)


def test_on_bar_when_gap_through_resting_stop_then_fills_at_open() -> None:
    costs = CostModel(commission_bps=0.0, spread_bps=2.0, slippage_bps=1.0, max_volume_share=None)
    config = StrategyConfig(strategy="t", costs=costs, stops=StopConfig(kind="fixed"))
    broker = PaperBroker(config)
    broker.submit(_order(0, Side.BUY, 5.0, stop_loss=95.0, take_profit=110.0))
    opened = broker.on_bar(_bar(1, 100.0, 101.0, 99.0, 100.0))
    assert broker.resting_levels() == {"X": (95.0, 110.0)}
    kinds = [(type(e).__name__, getattr(e, "order", None)) for e in opened]
    assert [k for k, _ in kinds] == [
        "Fill",
        "OrderSubmitted",
        "OrderAccepted",
        "OrderSubmitted",
        "OrderAccepted",
    ]
    submitted = [e.order for e in opened if isinstance(e, OrderSubmitted)]
    assert [(o.intent, o.stop_price, o.limit_price) for o in submitted] == [
        ("stop", 95.0, None),
        ("take_profit", None, 110.0),
    ]
    assert all(isinstance(e, OrderAccepted) for e in opened[2::2])

    events = broker.on_bar(_bar(2, 90.0, 92.0, 89.0, 91.0))

    (fill,) = _fills(events)
    entry_id = make_client_id("t", "X", T0, "entry")
    assert fill.client_id == protective_client_id(entry_id, "stop")
    assert (
        OrderCancelled(protective_client_id(entry_id, "take_profit"), "X", fill.ts, 5.0, "oco")
        in events
    )
    assert fill.side is Side.SELL
    assert fill.quantity == 5.0
    assert fill.price == pytest.approx(90.0 * (1 - cost_fraction(costs, None)))
    assert broker.positions() == {}
    assert broker.resting_levels() == {}


def test_on_bar_when_low_touches_stop_then_fills_at_stop_price() -> None:
    config = StrategyConfig(strategy="t", costs=NO_COSTS, stops=StopConfig(kind="fixed"))
    broker = PaperBroker(config)
    broker.submit(_order(0, Side.SELL, 5.0, stop_loss=105.0, take_profit=90.0))
    broker.on_bar(_bar(1, 100.0, 101.0, 99.0, 100.0))

    (fill,) = _fills(broker.on_bar(_bar(2, 101.0, 106.0, 100.0, 104.0)))

    assert (fill.side, fill.quantity, fill.price) == (Side.BUY, 5.0, 105.0)


def test_on_bar_when_bar_replayed_then_nothing_happens() -> None:
    broker = PaperBroker(StrategyConfig(strategy="t", costs=NO_COSTS))
    broker.submit(_order(0, Side.BUY, 1.0))
    assert len(broker.on_bar(_bar(1, 100.0, 101.0, 99.0, 100.0))) == 1

    assert broker.on_bar(_bar(1, 100.0, 101.0, 99.0, 100.0)) == []


def test_cash_limited_quantity_when_buy_closes_short_and_cash_runs_out_then_rest_cut() -> None:
    # Arrange: short 3 at a fill price of 100, cash 250 (pays for 2.5 more units, no commission)
    args = (-3.0, 250.0, 100.0, False, 0.0, 0.0, 0.0)

    # Act
    q, short = cash_limited_quantity(1, 10.0, *args)
    q_sell, short_sell = cash_limited_quantity(-1, 10.0, *args)
    q_margin, short_margin = cash_limited_quantity(1, 10.0, -3.0, 250.0, 100.0, True, 0.0, 0.0, 0.0)

    # Assert: the 3 closing units always fill, of the 7 opening ones only what 250 - 300 pays
    assert (q, short) == (3.0, True)
    assert (q_sell, short_sell) == (10.0, False)
    assert (q_margin, short_margin) == (10.0, False)


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        (False, [(1, END_OF_BAR_CANCELLED)]),
        (True, [(1, END_OF_BAR_WORKING), (2, END_OF_BAR_WORKING), (3, END_OF_BAR_EXPIRED)]),
    ],
)
def test_end_of_bar_step_when_entry_then_policy_decides_how_long_it_works(
    keep: bool, expected: list[tuple[int, int]]
) -> None:
    steps, bars, outcome = [], 0, END_OF_BAR_WORKING
    while outcome == END_OF_BAR_WORKING:
        bars, outcome = end_of_bar_step(True, bars, keep, 3)
        steps.append((bars, outcome))

    assert steps == expected
    assert end_of_bar_step(False, 5, keep, 3) == (5, END_OF_BAR_WORKING)  # exits work on


@pytest.mark.parametrize(
    ("remaining", "quantity", "done"),
    [(0.0, 10.0, True), (5e-9, 10.0, True), (2e-8, 10.0, False), (5e-10, 0.5, True)],
)
def test_fill_complete_when_rest_is_dust_relative_to_order_then_done(
    remaining: float, quantity: float, done: bool
) -> None:
    assert fill_complete(remaining, quantity) is done
