"""What the venue does on its own, and what a partial or lost send leaves: the bridge reports it.

Server-side stops, take profits and stop outs, manual closes, partial fills under IOC / FOK /
RETURN, rewritten comments, deals the history shows late, and workers killed around a send.
"""

from __future__ import annotations

import pytest

from execution.broker import DuplicateOrderError, OrderRejectedError
from execution.domain import Fill, OrderStatus, Side
from execution.orders import Cancel, OrderAccepted, OrderCancelled
from infra.journal import JournalState, SqliteJournal
from mt5_bridge import MT5Broker
from mt5_bridge import _codes as c
from mt5_bridge.simulator import ProcessKilled, SendFault
from tests.mt5_bridge.conftest import LOT, T0, make_order


def _our_orders(sim, broker: MT5Broker) -> list:
    """Every order of our book the venue holds or held (history and working)."""
    book = broker.config.magic
    held = [*sim.active_orders(), *sim.history_orders()]
    return [o for o in held if o.magic >> 32 == book and o.reason == c.DEAL_REASON_EXPERT]


# --- server-side closes -------------------------------------------------------------------------


def test_poll_fills_when_server_executes_stop_loss_then_close_booked_at_deal_price(
    sim, make_broker
):
    # Arrange: long 0.1 lot with a stop at 1.0990
    broker = make_broker()
    broker.submit(make_order(quantity=0.1 * LOT, stop_loss=1.0990))
    (entry,) = broker.poll_fills()

    # Act: the market gaps through the stop; the server closes at the gapped bid
    sim.set_quote("EURUSD", 1.09850, 1.09870)
    fills = broker.poll_fills()

    # Assert
    (close,) = fills
    assert close.client_id.startswith("mt5-sl-")
    assert close.side is Side.SELL
    assert close.quantity == pytest.approx(10_000)
    assert close.price == pytest.approx(1.09850)
    assert broker.positions() == {}
    assert entry.client_id != close.client_id


def test_poll_fills_when_comment_rewritten_and_manual_close_then_both_matched_by_magic_and_position(
    sim, make_broker
):
    # Arrange: the broker replaces comments; the trader then closes by hand (magic 0, no comment)
    sim.rewrite_comments(lambda _comment: "srv#7")
    broker = make_broker()
    order = make_order(quantity=0.2 * LOT)
    broker.submit(order)
    (position,) = sim.positions_get()
    sim.close_manually(position.ticket)

    # Act
    fills = broker.poll_fills()

    # Assert
    assert fills[0].client_id == order.client_id
    assert fills[1].client_id.startswith("mt5-manual-")
    assert [f.quantity for f in fills] == [pytest.approx(20_000)] * 2
    assert broker.positions() == {}


def test_poll_fills_when_margin_falls_to_stop_out_then_so_close_booked(sim, make_broker):
    # Arrange: 4 lots at 1.1002 use 4,400.8 margin of a 10,000 account
    broker = make_broker()
    broker.submit(make_order(quantity=4 * LOT))
    broker.poll_fills()

    # Act: a 2.4% drop takes equity below 30% of the margin (the stop-out level)
    sim.set_quote("EURUSD", 1.07400, 1.07420)
    fills = broker.poll_fills()

    # Assert
    (so,) = fills
    assert so.client_id.startswith("mt5-so-")
    assert so.quantity == pytest.approx(400_000)
    assert so.price == pytest.approx(1.07400)
    assert broker.positions() == {}


def test_poll_fills_when_deal_shows_late_in_history_then_booked_once_when_it_appears(
    sim, make_broker, clock
):
    # Arrange
    sim.set_deal_delay(90)
    broker = make_broker()
    order = make_order(quantity=0.1 * LOT)
    broker.submit(order)
    clock.advance(5)

    # Act
    early = broker.poll_fills()
    clock.advance(120)
    late = broker.poll_fills()
    again = broker.poll_fills()

    # Assert
    assert early == []
    assert [f.client_id for f in late] == [order.client_id]
    assert again == []


def test_modify_stops_when_trailing_stop_moves_then_venue_closes_at_the_new_level(sim, make_broker):
    # Arrange
    broker = make_broker()
    broker.submit(make_order(quantity=0.1 * LOT, stop_loss=1.0950))
    broker.poll_fills()

    # Act: the stop trails up to 1.0990, then the bid touches 1.0989
    changed = broker.modify_stops("EURUSD", 1.0990, None)
    sim.set_quote("EURUSD", 1.09890, 1.09910)
    fills = broker.poll_fills()

    # Assert
    assert changed == 1
    assert sim.sent_requests[-1]["action"] == c.TRADE_ACTION_SLTP
    (close,) = fills
    assert close.client_id.startswith("mt5-sl-")
    assert close.price == pytest.approx(1.09890)


def test_modify_stops_when_inside_stops_level_then_rejected_with_mt5_code(sim, make_broker):
    # Arrange: stops_level 10 points; the bid is 1.1000
    broker = make_broker()
    broker.submit(make_order(quantity=0.1 * LOT))

    # Act / Assert
    with pytest.raises(OrderRejectedError) as info:
        broker.modify_stops("EURUSD", 1.09995, None)
    assert info.value.code == c.TRADE_RETCODE_INVALID_STOPS


# --- partial fills ------------------------------------------------------------------------------


def test_submit_when_ioc_meets_thin_liquidity_then_partial_fill_and_rest_cancelled(
    sim, make_broker
):
    # Arrange: EURUSD allows IOC only; 0.3 lots available
    broker = make_broker()
    sim.set_liquidity("EURUSD", 0.3)
    order = make_order(quantity=0.5 * LOT)

    # Act
    ack = broker.submit(order)
    fill, cancelled = broker.poll_events()

    # Assert: the fill first, then the remainder the server dropped
    assert ack.status is OrderStatus.PARTIALLY_FILLED
    assert isinstance(fill, Fill) and fill.quantity == pytest.approx(30_000)
    assert isinstance(cancelled, OrderCancelled) and cancelled.client_id == order.client_id
    assert cancelled.unfilled == pytest.approx(20_000)
    assert broker.open_orders() == []


def test_submit_when_fok_meets_thin_liquidity_then_rejected_whole(sim, make_broker):
    # Arrange: GBPUSD allows FOK, which the bridge prefers
    broker = make_broker()
    sim.set_liquidity("GBPUSD", 0.3)

    # Act
    with pytest.raises(OrderRejectedError) as info:
        broker.submit(make_order(quantity=0.5 * LOT, symbol="GBPUSD"))

    # Assert
    assert info.value.code == c.TRADE_RETCODE_REJECT
    assert broker.poll_fills() == []
    assert broker.positions() == {}


def test_submit_when_return_filling_partly_fills_then_rest_works_until_cancelled(sim, make_broker):
    # Arrange: a symbol with neither FOK nor IOC: RETURN; 0.1 lot available now
    sim.add_symbol("XAUUSD", bid=2000.0, ask=2000.5, digits=2, point=0.01, contract_size=100.0,
                   filling_mode=0, liquidity=0.1)  # fmt: skip
    broker = make_broker()
    order = make_order(quantity=50.0, symbol="XAUUSD")  # 0.5 lots of 100 oz

    # Act
    ack = broker.submit(order)
    working = broker.open_orders()
    sim.set_quote("XAUUSD", 2000.0, 2000.5)  # 0.1 more fills on the next tick
    cancelled = broker.cancel(Cancel(order.client_id, "XAUUSD", T0))
    fills = broker.poll_events()

    # Assert
    assert ack.status is OrderStatus.PARTIALLY_FILLED
    assert [(o.client_id, o.quantity) for o in working] == [(order.client_id, pytest.approx(40.0))]
    assert [(type(e), e.unfilled) for e in cancelled] == [(OrderCancelled, pytest.approx(30.0))]
    assert [f.quantity for f in fills] == [pytest.approx(10.0), pytest.approx(10.0)]
    assert broker.cancel(Cancel(order.client_id, "XAUUSD", T0)) == []
    assert broker.open_orders() == []
    assert broker.positions()["XAUUSD"].quantity == pytest.approx(20.0)


# --- restarts: journal, magic, watermark --------------------------------------------------------


def _journaled_broker(make_broker, tmp_path, **kw) -> MT5Broker:
    broker = make_broker(connect=False, **kw)
    fresh = MT5Broker(
        broker.config,
        broker._mt5,
        live_enabled=True,
        clock=broker._clock,
        sleep=broker._sleep,
        journal=SqliteJournal(tmp_path / "journal.sqlite3"),
    )
    fresh.connect()
    return fresh


def test_restart_when_killed_between_journal_write_and_order_send_then_one_order_at_venue(
    sim, make_broker, tmp_path
):
    # Arrange: the process dies inside order_send before the request leaves
    first = _journaled_broker(make_broker, tmp_path)
    order = make_order(quantity=0.1 * LOT)
    sim.queue_send_faults(SendFault(kill=True))
    with pytest.raises(ProcessKilled):
        first.submit(order)
    assert first.journal.get(order.client_id).state is JournalState.INTENT

    # Act: a new process replays the decision
    second = _journaled_broker(make_broker, tmp_path)
    second.submit(order)

    # Assert
    assert len(_our_orders(sim, second)) == 1
    assert second.positions()["EURUSD"].quantity == pytest.approx(10_000)
    assert second.journal.get(order.client_id).state is JournalState.SENT


def test_restart_when_killed_between_order_send_and_answer_then_one_order_at_venue(
    sim, make_broker, tmp_path
):
    # Arrange: the order executes, the process dies before reading the answer; the broker has
    # rewritten the comment, so only the magic number ties the order to its client id
    sim.rewrite_comments(lambda _comment: "")
    first = _journaled_broker(make_broker, tmp_path)
    order = make_order(quantity=0.1 * LOT)
    sim.queue_send_faults(SendFault(kill=True, execute=True))
    with pytest.raises(ProcessKilled):
        first.submit(order)

    # Act
    second = _journaled_broker(make_broker, tmp_path)
    with pytest.raises(DuplicateOrderError):
        second.submit(order)
    events = second.poll_events()

    # Assert: its deal, then its acceptance, settled at the venue
    assert len(_our_orders(sim, second)) == 1
    assert [(type(e), e.client_id) for e in events] == [
        (Fill, order.client_id),
        (OrderAccepted, order.client_id),
    ]


def test_restart_when_stop_hit_while_worker_down_then_fills_reach_the_ledger_once(
    sim, make_broker, tmp_path, clock
):
    # Arrange: the entry was booked before the worker stopped
    first = _journaled_broker(make_broker, tmp_path)
    order = make_order(quantity=0.1 * LOT, stop_loss=1.0990)
    first.submit(order)
    assert [f.client_id for f in first.poll_fills()] == [order.client_id]
    first.close()
    clock.advance(3600)
    sim.set_quote("EURUSD", 1.09890, 1.09910)  # the server stops the position out meanwhile
    clock.advance(3600)

    # Act
    second = _journaled_broker(make_broker, tmp_path)
    fills = second.poll_fills()

    # Assert: only the close, not the entry again
    (close,) = fills
    assert close.client_id.startswith("mt5-sl-")
    assert close.quantity == pytest.approx(10_000)


def test_two_workers_when_sharing_venue_and_journal_then_ids_and_entries_never_collide(
    sim, make_broker, tmp_path
):
    # Arrange: a daily and an hourly worker of the same strategy, one book, one journal file
    daily = _journaled_broker(make_broker, tmp_path, instance="sma@EURUSD@1d")
    hourly = _journaled_broker(make_broker, tmp_path, instance="sma@GBPUSD@1h")
    d_order = make_order(quantity=0.1 * LOT, intent="entry@1d")
    h_order = make_order(quantity=0.2 * LOT, symbol="GBPUSD", intent="entry@1h")

    # Act
    daily.submit(d_order)
    hourly.submit(h_order)
    with pytest.raises(DuplicateOrderError):
        hourly.submit(d_order)  # a colliding id is refused, not sent or overwritten

    # Assert
    assert len(_our_orders(sim, daily)) == 2
    entries = {e.client_id: e.instance for e in daily.journal.entries(daily.config.magic)}
    assert entries == {d_order.client_id: "sma@EURUSD@1d", h_order.client_id: "sma@GBPUSD@1h"}
    assert daily.positions()["EURUSD"].quantity == pytest.approx(10_000)
    assert daily.positions()["GBPUSD"].quantity == pytest.approx(20_000)


def test_submit_when_return_filling_finds_no_liquidity_then_order_placed_and_working(
    sim, make_broker
):
    # Arrange
    sim.add_symbol("XAUUSD", bid=2000.0, ask=2000.5, digits=2, point=0.01, contract_size=100.0,
                   filling_mode=0, liquidity=0.0)  # fmt: skip
    broker = make_broker()
    order = make_order(quantity=20.0, symbol="XAUUSD")

    # Act
    ack = broker.submit(order)

    # Assert: placed (10008), nothing filled yet, all 20 units working
    assert ack.status is OrderStatus.ACCEPTED
    assert broker.poll_events() == []
    assert [(o.client_id, o.quantity) for o in broker.open_orders()] == [
        (order.client_id, pytest.approx(20.0))
    ]
