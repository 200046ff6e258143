"""MT5Broker against the simulated terminal: sizing, retcode handling, idempotency, state."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from execution.broker import (
    BrokerUnavailableError,
    DuplicateOrderError,
    LiveTradingNotEnabledError,
    OrderRejectedError,
    RetryableBrokerError,
)
from execution.domain import OrderStatus, OrderType, Side
from mt5_bridge import MT5Broker, MT5Config, MT5ConfigError, TerminalUnavailableError
from mt5_bridge import _codes as c
from mt5_bridge._parse import order_magic
from mt5_bridge.simulator import SendFault, TradeDeal
from tests.mt5_bridge.conftest import LOGIN, LOT, PASSWORD, SERVER, SERVER_OFFSET, T0, make_order

NO_IPC = (c.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")


# --- success path -----------------------------------------------------------------------------


def test_submit_when_quantity_is_off_step_then_volume_rounds_down_and_ioc_is_chosen(
    sim, make_broker, sleeps
):
    # Arrange
    broker = make_broker()
    order = make_order(quantity=0.237 * LOT)

    # Act
    ack = broker.submit(order)

    # Assert
    assert ack.status is OrderStatus.FILLED
    assert ack.venue_order_id is not None
    (request,) = sim.sent_requests
    assert request["volume"] == pytest.approx(0.23)
    assert request["type_filling"] == c.ORDER_FILLING_IOC
    assert request["type"] == c.ORDER_TYPE_BUY
    assert request["price"] == pytest.approx(1.10020)
    assert request["magic"] >> 32 == broker.config.magic  # the book; low half: the client id
    assert request["magic"] == order_magic(broker.config.magic, order.client_id)
    assert request["comment"] == "cf:" + order.client_id
    assert len(request["comment"]) <= 31
    assert sim.checked_requests, "order_check must run before order_send"
    assert sleeps.delays == []


def test_poll_fills_when_order_filled_then_one_fill_in_utc_with_client_id(sim, make_broker):
    # Arrange
    broker = make_broker()
    order = make_order(quantity=0.237 * LOT)
    broker.submit(order)

    # Act
    fills = broker.poll_fills()
    again = broker.poll_fills()

    # Assert
    (fill,) = fills
    assert fill.client_id == order.client_id
    assert fill.side is Side.BUY
    assert fill.quantity == pytest.approx(23_000)
    assert fill.price == pytest.approx(1.10020)
    assert fill.commission == pytest.approx(3.5 * 0.23)
    assert fill.ts == T0  # the server stamped T0 + 2h; the bridge undoes the offset
    assert again == []


def test_positions_when_bought_then_partly_sold_then_net_quantity_by_magic(sim, make_broker):
    # Arrange
    broker = make_broker()
    other_ea = make_broker(magic=999)
    broker.submit(make_order(quantity=0.30 * LOT, intent="entry"))
    broker.submit(make_order(quantity=0.10 * LOT, side=Side.SELL, intent="exit"))
    other_ea.submit(make_order(quantity=0.50 * LOT, symbol="GBPUSD"))

    # Act
    positions = broker.positions()

    # Assert
    assert set(positions) == {"EURUSD"}
    assert positions["EURUSD"].quantity == pytest.approx(20_000)
    assert positions["EURUSD"].avg_price == pytest.approx(1.10020)


def test_submit_when_stop_is_far_enough_then_it_is_rounded_and_sent(sim, make_broker):
    # Arrange
    broker = make_broker()
    order = make_order(quantity=0.1 * LOT, stop_loss=1.0990000001, take_profit=1.1020)

    # Act
    broker.submit(order)

    # Assert
    (request,) = sim.sent_requests
    assert request["sl"] == 1.099
    assert request["tp"] == 1.102


# --- retcode classes ----------------------------------------------------------------------------


def test_submit_when_requoted_then_resent_at_the_fresh_price_without_waiting(
    sim, make_broker, sleeps
):
    # Arrange
    broker = make_broker()
    sim.queue_send_faults(SendFault(c.TRADE_RETCODE_REQUOTE, new_quote=(1.10100, 1.10120)))

    # Act
    ack = broker.submit(make_order(quantity=0.1 * LOT))
    fills = broker.poll_fills()

    # Assert
    assert ack.status is OrderStatus.FILLED
    assert [r["price"] for r in sim.sent_requests] == [1.10020, 1.10120]
    assert [f.price for f in fills] == [pytest.approx(1.10120)]
    assert sleeps.delays == []


@pytest.mark.parametrize("retcode", [c.TRADE_RETCODE_PRICE_CHANGED, c.TRADE_RETCODE_PRICE_OFF])
def test_submit_when_price_retcode_repeats_past_max_retries_then_retryable_error(
    sim, make_broker, retcode
):
    # Arrange
    broker = make_broker(max_retries=2)
    sim.queue_send_faults(*[SendFault(retcode)] * 3)

    # Act
    with pytest.raises(RetryableBrokerError) as info:
        broker.submit(make_order(quantity=0.1 * LOT))

    # Assert
    assert info.value.code == retcode
    assert len(sim.sent_requests) == 3
    assert broker.poll_fills() == []


def test_submit_when_too_many_requests_then_backs_off_and_succeeds(sim, make_broker, sleeps):
    # Arrange
    broker = make_broker(backoff_initial_s=0.5)
    sim.queue_send_faults(
        SendFault(c.TRADE_RETCODE_TOO_MANY_REQUESTS), SendFault(c.TRADE_RETCODE_CONNECTION)
    )

    # Act
    ack = broker.submit(make_order(quantity=0.1 * LOT))

    # Assert
    assert ack.status is OrderStatus.FILLED
    assert sleeps.delays == [0.5, 1.0]
    assert len(sim.sent_requests) == 3
    assert len(broker.poll_fills()) == 1


def test_submit_when_timeout_but_executed_then_not_resent_and_fill_reported_once(sim, make_broker):
    # Arrange
    broker = make_broker()
    sim.queue_send_faults(SendFault(c.TRADE_RETCODE_TIMEOUT, execute=True))
    order = make_order(quantity=0.1 * LOT)

    # Act
    ack = broker.submit(order)
    fills = broker.poll_fills()

    # Assert
    assert len(sim.sent_requests) == 1
    assert ack.status is OrderStatus.FILLED
    assert ack.client_id == order.client_id
    assert [f.client_id for f in fills] == [order.client_id]
    assert broker.poll_fills() == []
    assert broker.positions()["EURUSD"].quantity == pytest.approx(10_000)


def test_submit_when_timeout_and_not_executed_then_verified_absent_and_resent(sim, make_broker):
    # Arrange
    broker = make_broker()
    sim.queue_send_faults(SendFault(c.TRADE_RETCODE_TIMEOUT))

    # Act
    ack = broker.submit(make_order(quantity=0.1 * LOT))

    # Assert
    assert ack.status is OrderStatus.FILLED
    assert len(sim.sent_requests) == 2
    assert len(broker.poll_fills()) == 1


def test_submit_when_answer_lost_to_ipc_after_execution_then_reconnects_and_does_not_resend(
    sim, make_broker
):
    # Arrange
    broker = make_broker()
    sim.queue_send_faults(SendFault(execute=True, error=NO_IPC))
    initializations = sim.calls["initialize"]

    # Act
    ack = broker.submit(make_order(quantity=0.1 * LOT))

    # Assert
    assert ack.status is OrderStatus.FILLED
    assert len(sim.sent_requests) == 1
    assert sim.calls["initialize"] == initializations + 1
    assert len(broker.poll_fills()) == 1


def test_submit_when_ipc_dropped_before_sending_then_reconnects_and_sends_once(sim, make_broker):
    # Arrange
    broker = make_broker()
    sim.drop_connection()

    # Act
    ack = broker.submit(make_order(quantity=0.1 * LOT))

    # Assert
    assert ack.status is OrderStatus.FILLED
    assert len(sim.sent_requests) == 1


@pytest.mark.parametrize(
    ("arrange", "code", "comment", "sends"),
    [
        (lambda s: s.queue_send_faults(SendFault(c.TRADE_RETCODE_INVALID_VOLUME)), 10014,
         "Invalid volume", 1),
        (lambda s: s.queue_send_faults(SendFault(c.TRADE_RETCODE_INVALID_FILL)), 10030,
         "Unsupported filling mode", 1),
        (lambda s: s.set_market_closed("EURUSD"), 10018, "Market closed", 0),
        (lambda s: s.set_algo_trading(False), 10027, "AutoTrading disabled", 0),
    ],
    ids=["invalid_volume", "invalid_fill", "market_closed", "algo_trading_off"],
)  # fmt: skip
def test_submit_when_venue_refuses_for_good_then_rejected_with_code_and_comment_and_no_retry(
    sim, make_broker, sleeps, arrange, code, comment, sends
):
    # Arrange
    broker = make_broker()
    arrange(sim)

    # Act
    with pytest.raises(OrderRejectedError) as info:
        broker.submit(make_order(quantity=0.1 * LOT))

    # Assert
    assert info.value.code == code
    assert comment in info.value.comment
    assert len(sim.sent_requests) == sends
    assert sleeps.delays == []


def test_submit_when_margin_exceeds_equity_then_no_money_rejection_before_sending(sim, make_broker):
    # Arrange: 5 lots of EURUSD need 5 * 100_000 * 1.1002 / 100 = 5501 margin; 10 lots > 10_000
    broker = make_broker()
    broker.submit(make_order(quantity=5.0 * LOT, intent="a"))

    # Act
    with pytest.raises(OrderRejectedError) as info:
        broker.submit(make_order(quantity=5.0 * LOT, intent="b"))

    # Assert
    assert info.value.code == c.TRADE_RETCODE_NO_MONEY
    assert info.value.comment.endswith("No money")
    assert len(sim.sent_requests) == 1


def test_submit_when_quantity_rounds_below_volume_min_then_rejected_locally(sim, make_broker):
    # Arrange
    broker = make_broker()

    # Act
    with pytest.raises(OrderRejectedError) as info:
        broker.submit(make_order(quantity=0.004 * LOT))

    # Assert
    assert info.value.code == c.TRADE_RETCODE_INVALID_VOLUME
    assert "volume_min 0.01" in info.value.comment
    assert sim.checked_requests == []
    assert sim.sent_requests == []


def test_submit_when_quantity_above_volume_max_then_refused_not_capped(sim, make_broker):
    # Arrange: volume_max is 5 lots = 500,000 units
    broker = make_broker()

    # Act
    with pytest.raises(OrderRejectedError) as info:
        broker.submit(make_order(quantity=7.5 * LOT))

    # Assert
    assert info.value.code == c.TRADE_RETCODE_INVALID_VOLUME
    assert "above volume_max 5" in info.value.comment
    assert "not capped" in info.value.comment
    assert sim.sent_requests == []
    assert broker.positions() == {}


def test_units_when_045_lots_of_eurusd_then_45000_units_in_and_booked_out(sim, make_broker):
    # Arrange
    broker = make_broker()
    order = make_order(quantity=45_000.0)

    # Act
    broker.submit(order)
    fills = broker.poll_fills()
    positions = broker.positions()

    # Assert
    assert sim.sent_requests[0]["volume"] == pytest.approx(0.45)
    assert [f.quantity for f in fills] == [pytest.approx(45_000.0)]
    assert positions["EURUSD"].quantity == pytest.approx(45_000.0)


def test_submit_when_stop_inside_stops_level_then_rejected_locally(sim, make_broker):
    # Arrange: stops_level 10 points = 0.0001; the bid is 1.1000
    broker = make_broker()
    order = make_order(quantity=0.1 * LOT, stop_loss=1.09995)

    # Act
    with pytest.raises(OrderRejectedError) as info:
        broker.submit(order)

    # Assert
    assert info.value.code == c.TRADE_RETCODE_INVALID_STOPS
    assert "trade_stops_level" in info.value.comment
    assert sim.sent_requests == []


def test_submit_when_limit_order_then_not_implemented(make_broker):
    # Arrange
    broker = make_broker()
    order = make_order(quantity=0.1 * LOT, order_type=OrderType.LIMIT, limit_price=1.09)

    # Act / Assert
    with pytest.raises(NotImplementedError, match="market orders only"):
        broker.submit(order)


# --- idempotency ------------------------------------------------------------------------------


def test_submit_when_client_id_repeats_then_duplicate_refused_and_nothing_sent(sim, make_broker):
    # Arrange
    broker = make_broker()
    order = make_order(quantity=0.1 * LOT)
    broker.submit(order)

    # Act
    with pytest.raises(DuplicateOrderError):
        broker.submit(order)

    # Assert
    assert len(sim.sent_requests) == 1


def test_submit_when_restarted_over_same_terminal_then_earlier_client_id_refused(sim, make_broker):
    # Arrange
    order = make_order(quantity=0.1 * LOT)
    make_broker().submit(order)
    restarted = make_broker()

    # Act
    with pytest.raises(DuplicateOrderError):
        restarted.submit(order)

    # Assert
    assert len(sim.sent_requests) == 1
    assert order.client_id in restarted.submitted_client_ids()


def test_submit_when_another_instance_sent_the_id_after_our_connect_then_refused(sim, make_broker):
    # Arrange: both connected before either sent; only the venue knows
    first, second = make_broker(), make_broker()
    order = make_order(quantity=0.1 * LOT)
    first.submit(order)

    # Act / Assert
    with pytest.raises(DuplicateOrderError):
        second.submit(order)
    assert len(sim.sent_requests) == 1


# --- state queries ------------------------------------------------------------------------------


def test_positions_when_terminal_returns_none_then_unavailable_not_flat(sim, make_broker):
    # Arrange
    broker = make_broker()
    broker.submit(make_order(quantity=0.1 * LOT))
    sim.fail_next_calls("positions_get", error=(c.RES_E_FAIL, "Terminal: Call failed"))

    # Act / Assert
    with pytest.raises(BrokerUnavailableError, match="unknown, not empty"):
        broker.positions()


def test_positions_when_ipc_lost_and_reconnect_fails_then_unavailable(sim, make_broker):
    # Arrange
    broker = make_broker(connect_attempts=2)
    sim.drop_connection()
    sim.fail_next_initialize(2)

    # Act
    with pytest.raises(TerminalUnavailableError) as info:
        broker.positions()

    # Assert
    assert isinstance(info.value, BrokerUnavailableError)
    assert info.value.code == c.RES_E_INTERNAL_FAIL_CONNECT


def test_poll_fills_when_deals_of_other_eas_and_balance_ops_then_only_ours(sim, make_broker):
    # Arrange
    broker = make_broker()
    server_secs = int((T0 + SERVER_OFFSET).timestamp())
    foreign = TradeDeal(
        1, 2, server_secs, server_secs * 1000, c.DEAL_TYPE_BUY, c.DEAL_ENTRY_IN, 12345, 2, 0,
        1.0, 1.1, 0.0, 0.0, 0.0, 0.0, "EURUSD", "cf:cfmanual0000000000", "",
    )  # fmt: skip
    balance = foreign._replace(ticket=3, type=c.DEAL_TYPE_BALANCE, magic=broker.config.magic)
    sim.add_foreign_deal(foreign)
    sim.add_foreign_deal(balance)
    order = make_order(quantity=0.1 * LOT)
    broker.submit(order)

    # Act
    fills = broker.poll_fills()

    # Assert
    assert [f.client_id for f in fills] == [order.client_id]


def test_open_orders_when_only_market_orders_were_sent_then_empty(make_broker):
    # Arrange
    broker = make_broker()
    broker.submit(make_order(quantity=0.1 * LOT))

    # Act / Assert
    assert list(broker.open_orders()) == []


# --- session and secrets ------------------------------------------------------------------------


def test_connect_when_live_not_enabled_then_refused_with_what_to_set(sim, config):
    # Arrange
    broker = MT5Broker(config, sim)

    # Act
    with pytest.raises(LiveTradingNotEnabledError) as info:
        broker.connect()

    # Assert
    assert "CANDLEFLOW_LIVE=1" in str(info.value)
    assert "CANDLEFLOW_BROKER=mt5" in str(info.value)
    assert sim.calls["initialize"] == 0


@pytest.mark.parametrize(
    ("live", "broker_choice", "enabled"),
    [(True, "mt5", True), (True, "paper", False), (False, "mt5", False)],
)
def test_from_settings_when_live_and_broker_vary_then_only_both_enable(
    sim, config, live, broker_choice, enabled
):
    # Arrange
    from infra.settings import Settings

    settings = Settings().with_(live=live, broker=broker_choice)

    # Act
    broker = MT5Broker.from_settings(settings, sim, config)

    # Assert
    assert f"live_enabled={enabled}" in repr(broker)


def test_connect_when_initialize_fails_twice_then_backs_off_and_connects(sim, make_broker, sleeps):
    # Arrange
    sim.fail_next_initialize(2)

    # Act
    broker = make_broker(backoff_initial_s=0.25)

    # Assert
    assert sim.calls["initialize"] == 3
    assert sleeps.delays == [0.25, 0.5]
    assert broker.positions() == {}


def test_connect_when_terminal_never_answers_then_unavailable_with_ipc_code(sim, make_broker):
    # Arrange
    sim.fail_next_initialize(3)

    # Act
    with pytest.raises(TerminalUnavailableError) as info:
        make_broker(connect_attempts=3)

    # Assert
    assert info.value.code == c.RES_E_INTERNAL_FAIL_CONNECT
    assert "after 3 attempts" in str(info.value)


def test_connect_when_password_wrong_then_refused_once_naming_the_variables(sim, make_broker):
    # Act
    with pytest.raises(TerminalUnavailableError) as info:
        make_broker(password="wrong-password")

    # Assert
    assert info.value.code == c.RES_E_AUTH_FAILED
    assert "CANDLEFLOW_MT5_PASSWORD" in str(info.value)
    assert "wrong-password" not in str(info.value)
    assert sim.calls["initialize"] == 1


def test_credentials_when_connecting_trading_and_failing_then_never_in_logs_or_reprs(
    sim, clock, sleeps, caplog
):
    # Arrange
    caplog.set_level(logging.DEBUG)
    env = {
        "CANDLEFLOW_MT5_LOGIN": str(LOGIN),
        "CANDLEFLOW_MT5_PASSWORD": PASSWORD,
        "CANDLEFLOW_MT5_SERVER": SERVER,
    }
    config = MT5Config.from_env(env, server_utc_offset=SERVER_OFFSET)
    broker = MT5Broker(config, sim, live_enabled=True, clock=clock, sleep=sleeps)
    sim.fail_next_initialize(1)
    sim.queue_send_faults(SendFault(c.TRADE_RETCODE_REQUOTE))

    # Act
    broker.connect()
    broker.submit(make_order(quantity=0.1 * LOT))
    bad_config = MT5Config.from_mapping({**_as_dict(config), "password": "nope"})
    bad = MT5Broker(bad_config, sim, live_enabled=True, clock=clock, sleep=sleeps)
    with pytest.raises(TerminalUnavailableError) as info:
        bad.connect()

    # Assert
    texts = [caplog.text, repr(config), str(config), repr(broker), str(info.value)]
    assert caplog.text  # something was logged, so the check below means something
    for text in texts:
        assert PASSWORD not in text
        assert str(LOGIN) not in text
        assert SERVER not in text
        assert "nope" not in text


def _as_dict(config: MT5Config) -> dict[str, object]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def test_from_env_when_variables_set_then_credentials_read_and_overrides_applied():
    # Arrange
    env = {
        "CANDLEFLOW_MT5_LOGIN": "123",
        "CANDLEFLOW_MT5_PASSWORD": "pw",
        "CANDLEFLOW_MT5_SERVER": "Srv",
    }

    # Act
    config = MT5Config.from_env(env, magic=42)

    # Assert
    assert (config.login, config.password, config.server, config.magic) == (123, "pw", "Srv", 42)


def test_from_env_when_unknown_setting_then_rejected():
    with pytest.raises(MT5ConfigError, match="unknown MT5 settings: magik"):
        MT5Config.from_env({}, magik=42)


def test_from_env_when_login_not_numeric_then_rejected_without_echoing_it():
    with pytest.raises(MT5ConfigError) as info:
        MT5Config.from_env({"CANDLEFLOW_MT5_LOGIN": "hunter2"})
    assert "hunter2" not in str(info.value)


def test_config_when_comment_tag_leaves_no_room_for_client_id_then_rejected():
    with pytest.raises(MT5ConfigError, match="31-character comment"):
        MT5Config(comment_tag="x" * 14)


def test_submit_when_first_send_is_older_than_history_lookback_then_local_record_refuses(
    sim, make_broker, clock
):
    # Arrange: the venue check no longer reaches back far enough; this instance remembers
    broker = make_broker(history_lookback=timedelta(minutes=5))
    order = make_order(quantity=0.1 * LOT)
    broker.submit(order)
    clock.advance(3600)

    # Act / Assert
    with pytest.raises(DuplicateOrderError):
        broker.submit(order)
    assert len(sim.sent_requests) == 1
