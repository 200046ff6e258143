"""Retcode classification and the mapping of MT5 failures onto the Broker port's errors."""

from __future__ import annotations

import pytest

from execution.broker import BrokerUnavailableError, OrderRejectedError, RetryableBrokerError
from mt5_bridge import RetcodeClass, classify_retcode, error_for_result
from mt5_bridge import _codes as c


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (10009, RetcodeClass.SUCCESS),
        (10008, RetcodeClass.SUCCESS),
        (10010, RetcodeClass.SUCCESS),
        (0, RetcodeClass.SUCCESS),  # order_check's "Done"
        (10004, RetcodeClass.RETRY_FRESH_PRICE),
        (10020, RetcodeClass.RETRY_FRESH_PRICE),
        (10021, RetcodeClass.RETRY_FRESH_PRICE),
        (10024, RetcodeClass.RETRY_BACKOFF),
        (10031, RetcodeClass.RETRY_BACKOFF),
        (-10004, RetcodeClass.RETRY_BACKOFF),
        (-10001, RetcodeClass.RETRY_BACKOFF),
        (10012, RetcodeClass.VERIFY_BEFORE_RESEND),
        (10014, RetcodeClass.NEVER_RETRY),
        (10015, RetcodeClass.NEVER_RETRY),
        (10016, RetcodeClass.NEVER_RETRY),
        (10017, RetcodeClass.NEVER_RETRY),
        (10018, RetcodeClass.NEVER_RETRY),
        (10019, RetcodeClass.NEVER_RETRY),
        (10030, RetcodeClass.NEVER_RETRY),
        (10006, RetcodeClass.NEVER_RETRY),
        (10027, RetcodeClass.NEVER_RETRY),
        (-6, RetcodeClass.NEVER_RETRY),
        (99999, RetcodeClass.NEVER_RETRY),  # unknown: never resend on a guess
    ],
)
def test_classify_retcode_when_documented_code_then_expected_class(code, expected):
    assert classify_retcode(code) is expected


def test_constants_when_compared_with_documented_table_then_equal():
    # Values from the MQL5 "Trade Server Return Codes" and the Python package's RES_* table.
    documented = {
        "REQUOTE": 10004, "REJECT": 10006, "CANCEL": 10007, "PLACED": 10008, "DONE": 10009,
        "DONE_PARTIAL": 10010, "ERROR": 10011, "TIMEOUT": 10012, "INVALID": 10013,
        "INVALID_VOLUME": 10014, "INVALID_PRICE": 10015, "INVALID_STOPS": 10016,
        "TRADE_DISABLED": 10017, "MARKET_CLOSED": 10018, "NO_MONEY": 10019,
        "PRICE_CHANGED": 10020, "PRICE_OFF": 10021, "TOO_MANY_REQUESTS": 10024,
        "CLIENT_DISABLES_AT": 10027, "INVALID_FILL": 10030, "CONNECTION": 10031,
    }  # fmt: skip
    assert {k: getattr(c, f"TRADE_RETCODE_{k}") for k in documented} == documented
    assert (c.RES_E_INTERNAL_FAIL_CONNECT, c.RES_E_AUTH_FAILED) == (-10004, -6)
    assert (c.TIMEFRAME_H1, c.TIMEFRAME_D1, c.TIMEFRAME_W1) == (16385, 16408, 32769)
    assert (c.ORDER_FILLING_FOK, c.ORDER_FILLING_IOC, c.ORDER_FILLING_RETURN) == (0, 1, 2)
    assert (c.SYMBOL_FILLING_FOK, c.SYMBOL_FILLING_IOC) == (1, 2)


def test_error_for_result_when_never_retry_then_rejected_with_code_and_comment():
    err = error_for_result("cf1", 10019, "No money")
    assert isinstance(err, OrderRejectedError)
    assert (err.client_id, err.code) == ("cf1", 10019)
    assert "No money" in err.comment


def test_error_for_result_when_retryable_then_retryable_with_code_and_comment():
    err = error_for_result("cf1", 10024, "Too many requests")
    assert isinstance(err, RetryableBrokerError)
    assert err.code == 10024
    assert err.comment == "Too many requests"


@pytest.mark.parametrize("code", [-10004, 10012])
def test_error_for_result_when_ipc_or_unknown_outcome_then_unavailable(code):
    err = error_for_result("cf1", code, "x")
    assert isinstance(err, BrokerUnavailableError)
    assert err.code == code


def test_error_for_result_when_success_code_then_value_error():
    with pytest.raises(ValueError, match="success"):
        error_for_result("cf1", 10009, "Request executed")
