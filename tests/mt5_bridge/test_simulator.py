"""The simulated terminal follows the documented MetaTrader5 API where the bridge relies on it."""

from __future__ import annotations

from mt5_bridge import _codes as c
from mt5_bridge.simulator import SimulatedTerminal


def _sim() -> SimulatedTerminal:
    sim = SimulatedTerminal()
    sim.add_symbol("EURUSD", bid=1.1000, ask=1.1002)
    sim.initialize()
    return sim


def _deal(sim: SimulatedTerminal, order_type: int, volume: float) -> object:
    price = sim.symbol_info_tick("EURUSD")
    return sim.order_send(
        {
            "action": sim.TRADE_ACTION_DEAL,
            "symbol": "EURUSD",
            "volume": volume,
            "type": order_type,
            "price": price.ask if order_type == c.ORDER_TYPE_BUY else price.bid,
            "deviation": 10,
            "magic": 7,
            "comment": "t",
            "type_time": sim.ORDER_TIME_GTC,
            "type_filling": sim.ORDER_FILLING_FOK,
        }
    )


def test_queries_when_nothing_open_then_empty_tuples_not_none():
    sim = _sim()
    assert sim.positions_get() == ()
    assert sim.orders_get() == ()


def test_calls_when_not_initialized_then_none_and_no_ipc_error():
    sim = SimulatedTerminal()
    assert sim.positions_get() is None
    assert sim.last_error() == (-10004, "No IPC connection")


def test_order_send_when_executed_then_result_has_documented_fields_and_asdict():
    result = _deal(_sim(), c.ORDER_TYPE_BUY, 0.1)
    assert result.retcode == 10009
    assert set(result._asdict()) >= {
        "retcode", "deal", "order", "volume", "price", "bid", "ask", "comment", "request_id",
        "retcode_external", "request",
    }  # fmt: skip
    assert result.price == 1.1002


def test_netting_when_sell_exceeds_long_then_position_reverses_with_inout_deal():
    sim = _sim()
    opened = _deal(sim, c.ORDER_TYPE_BUY, 0.1)
    _deal(sim, c.ORDER_TYPE_SELL, 0.3)
    (position,) = sim.positions_get(symbol="EURUSD")
    assert (position.type, round(position.volume, 8)) == (c.POSITION_TYPE_SELL, 0.2)
    assert position.identifier == opened.order
    assert [d.entry for d in sim.deals()] == [c.DEAL_ENTRY_IN, c.DEAL_ENTRY_INOUT]


def test_history_deals_get_when_ticket_given_then_deals_of_that_order():
    sim = _sim()
    first = _deal(sim, c.ORDER_TYPE_BUY, 0.1)
    _deal(sim, c.ORDER_TYPE_BUY, 0.1)
    assert [d.ticket for d in sim.history_deals_get(ticket=first.order)] == [first.deal]


def test_order_send_when_price_beyond_deviation_then_requote():
    sim = _sim()
    result = sim.order_send(
        {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0, "price": 1.0990,
         "deviation": 5, "type_filling": 0}
    )  # fmt: skip
    assert (result.retcode, result.comment) == (10004, "Requote")
    assert sim.positions_get() == ()
