"""MetaTrader 5 constants and the one place that decides what a return code means.

Values are those documented for the `MetaTrader5` Python package and MQL5 (trade server return
codes, `last_error()` codes, request enums). They are fixed by the terminal's API, so the bridge
and the simulator share these definitions instead of reading them from whichever module object
was injected (an RPyC proxy would otherwise cost a round trip per constant).
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from execution.broker import (
    BrokerError,
    BrokerUnavailableError,
    OrderRejectedError,
    RetryableBrokerError,
)

__all__ = [
    "IPC_ERROR_CODES",
    "RETCODE_NAMES",
    "RetcodeClass",
    "RetriesExhaustedError",
    "TerminalUnavailableError",
    "classify_retcode",
    "error_for_result",
    "retcode_name",
]

# --- trade server return codes (MqlTradeResult.retcode) ---------------------------------------
TRADE_RETCODE_REQUOTE: Final = 10004
TRADE_RETCODE_REJECT: Final = 10006
TRADE_RETCODE_CANCEL: Final = 10007
TRADE_RETCODE_PLACED: Final = 10008
TRADE_RETCODE_DONE: Final = 10009
TRADE_RETCODE_DONE_PARTIAL: Final = 10010
TRADE_RETCODE_ERROR: Final = 10011
TRADE_RETCODE_TIMEOUT: Final = 10012
TRADE_RETCODE_INVALID: Final = 10013
TRADE_RETCODE_INVALID_VOLUME: Final = 10014
TRADE_RETCODE_INVALID_PRICE: Final = 10015
TRADE_RETCODE_INVALID_STOPS: Final = 10016
TRADE_RETCODE_TRADE_DISABLED: Final = 10017
TRADE_RETCODE_MARKET_CLOSED: Final = 10018
TRADE_RETCODE_NO_MONEY: Final = 10019
TRADE_RETCODE_PRICE_CHANGED: Final = 10020
TRADE_RETCODE_PRICE_OFF: Final = 10021
TRADE_RETCODE_INVALID_EXPIRATION: Final = 10022
TRADE_RETCODE_ORDER_CHANGED: Final = 10023
TRADE_RETCODE_TOO_MANY_REQUESTS: Final = 10024
TRADE_RETCODE_NO_CHANGES: Final = 10025
TRADE_RETCODE_SERVER_DISABLES_AT: Final = 10026
TRADE_RETCODE_CLIENT_DISABLES_AT: Final = 10027
TRADE_RETCODE_LOCKED: Final = 10028
TRADE_RETCODE_FROZEN: Final = 10029
TRADE_RETCODE_INVALID_FILL: Final = 10030
TRADE_RETCODE_CONNECTION: Final = 10031
TRADE_RETCODE_ONLY_REAL: Final = 10032
TRADE_RETCODE_LIMIT_ORDERS: Final = 10033
TRADE_RETCODE_LIMIT_VOLUME: Final = 10034
TRADE_RETCODE_INVALID_ORDER: Final = 10035
TRADE_RETCODE_POSITION_CLOSED: Final = 10036
TRADE_RETCODE_INVALID_CLOSE_VOLUME: Final = 10038
TRADE_RETCODE_CLOSE_ORDER_EXIST: Final = 10039
TRADE_RETCODE_LIMIT_POSITIONS: Final = 10040
TRADE_RETCODE_REJECT_CANCEL: Final = 10041
TRADE_RETCODE_LONG_ONLY: Final = 10042
TRADE_RETCODE_SHORT_ONLY: Final = 10043
TRADE_RETCODE_CLOSE_ONLY: Final = 10044
TRADE_RETCODE_FIFO_CLOSE: Final = 10045
TRADE_RETCODE_HEDGE_PROHIBITED: Final = 10046

# order_check() reports 0 (comment "Done") when the request would be accepted.
CHECK_RETCODE_OK: Final = 0

# --- last_error() codes of the Python package ------------------------------------------------
RES_S_OK: Final = 1
RES_E_FAIL: Final = -1
RES_E_INVALID_PARAMS: Final = -2
RES_E_NO_MEMORY: Final = -3
RES_E_NOT_FOUND: Final = -4
RES_E_INVALID_VERSION: Final = -5
RES_E_AUTH_FAILED: Final = -6
RES_E_UNSUPPORTED: Final = -7
RES_E_AUTO_TRADING_DISABLED: Final = -8
RES_E_INTERNAL_FAIL: Final = -10000
RES_E_INTERNAL_FAIL_SEND: Final = -10001
RES_E_INTERNAL_FAIL_RECEIVE: Final = -10002
RES_E_INTERNAL_FAIL_INIT: Final = -10003
RES_E_INTERNAL_FAIL_CONNECT: Final = -10004
RES_E_INTERNAL_FAIL_TIMEOUT: Final = -10005

# The terminal/Python IPC channel failed: the terminal is unreachable, not the request wrong.
IPC_ERROR_CODES: Final = frozenset(
    {
        RES_E_INTERNAL_FAIL,
        RES_E_INTERNAL_FAIL_SEND,
        RES_E_INTERNAL_FAIL_RECEIVE,
        RES_E_INTERNAL_FAIL_INIT,
        RES_E_INTERNAL_FAIL_CONNECT,
        RES_E_INTERNAL_FAIL_TIMEOUT,
    }
)

# --- request enums -----------------------------------------------------------------------------
TRADE_ACTION_DEAL: Final = 1
TRADE_ACTION_PENDING: Final = 5
TRADE_ACTION_SLTP: Final = 6
TRADE_ACTION_MODIFY: Final = 7
TRADE_ACTION_REMOVE: Final = 8
TRADE_ACTION_CLOSE_BY: Final = 10

ORDER_TYPE_BUY: Final = 0
ORDER_TYPE_SELL: Final = 1
ORDER_TYPE_BUY_LIMIT: Final = 2
ORDER_TYPE_SELL_LIMIT: Final = 3
ORDER_TYPE_BUY_STOP: Final = 4
ORDER_TYPE_SELL_STOP: Final = 5
ORDER_TYPE_BUY_STOP_LIMIT: Final = 6
ORDER_TYPE_SELL_STOP_LIMIT: Final = 7
ORDER_TYPE_CLOSE_BY: Final = 8

ORDER_FILLING_FOK: Final = 0
ORDER_FILLING_IOC: Final = 1
ORDER_FILLING_RETURN: Final = 2
ORDER_FILLING_BOC: Final = 3

ORDER_TIME_GTC: Final = 0
ORDER_TIME_DAY: Final = 1
ORDER_TIME_SPECIFIED: Final = 2
ORDER_TIME_SPECIFIED_DAY: Final = 3

ORDER_STATE_STARTED: Final = 0
ORDER_STATE_PLACED: Final = 1
ORDER_STATE_CANCELED: Final = 2
ORDER_STATE_PARTIAL: Final = 3
ORDER_STATE_FILLED: Final = 4
ORDER_STATE_REJECTED: Final = 5
ORDER_STATE_EXPIRED: Final = 6

# symbol_info().filling_mode is a bitmask of these (RETURN is allowed when neither bit is set
# in market/exchange execution; it has no bit of its own).
SYMBOL_FILLING_FOK: Final = 1
SYMBOL_FILLING_IOC: Final = 2
SYMBOL_FILLING_BOC: Final = 4

SYMBOL_TRADE_MODE_DISABLED: Final = 0
SYMBOL_TRADE_MODE_LONGONLY: Final = 1
SYMBOL_TRADE_MODE_SHORTONLY: Final = 2
SYMBOL_TRADE_MODE_CLOSEONLY: Final = 3
SYMBOL_TRADE_MODE_FULL: Final = 4

POSITION_TYPE_BUY: Final = 0
POSITION_TYPE_SELL: Final = 1

DEAL_TYPE_BUY: Final = 0
DEAL_TYPE_SELL: Final = 1
DEAL_TYPE_BALANCE: Final = 2

DEAL_ENTRY_IN: Final = 0
DEAL_ENTRY_OUT: Final = 1
DEAL_ENTRY_INOUT: Final = 2
DEAL_ENTRY_OUT_BY: Final = 3

# ENUM_DEAL_REASON: who or what made a deal. Server-side closes (SL/TP/SO) and manual closes
# carry no comment of ours, so the bridge matches them to our positions by position id.
DEAL_REASON_CLIENT: Final = 0  # desktop terminal, by hand
DEAL_REASON_MOBILE: Final = 1
DEAL_REASON_WEB: Final = 2
DEAL_REASON_EXPERT: Final = 3  # an MQL5 program or the Python API
DEAL_REASON_SL: Final = 4  # the server executed the position's stop loss
DEAL_REASON_TP: Final = 5  # the server executed the position's take profit
DEAL_REASON_SO: Final = 6  # stop out: margin level fell below the broker's stop-out level
DEAL_REASON_ROLLOVER: Final = 7
DEAL_REASON_VMARGIN: Final = 8
DEAL_REASON_SPLIT: Final = 9

ACCOUNT_MARGIN_MODE_RETAIL_NETTING: Final = 0
ACCOUNT_MARGIN_MODE_EXCHANGE: Final = 1
ACCOUNT_MARGIN_MODE_RETAIL_HEDGING: Final = 2

ACCOUNT_TRADE_MODE_DEMO: Final = 0
ACCOUNT_TRADE_MODE_CONTEST: Final = 1
ACCOUNT_TRADE_MODE_REAL: Final = 2

# TIMEFRAME_* values: minutes below an hour, 0x4000 | hours, 0x8000 | weeks, 0xC000 | months.
TIMEFRAME_M1: Final = 1
TIMEFRAME_M5: Final = 5
TIMEFRAME_M15: Final = 15
TIMEFRAME_M30: Final = 30
TIMEFRAME_H1: Final = 0x4000 | 1  # 16385
TIMEFRAME_H4: Final = 0x4000 | 4  # 16388
TIMEFRAME_D1: Final = 0x4000 | 24  # 16408
TIMEFRAME_W1: Final = 0x8000 | 1  # 32769
TIMEFRAME_MN1: Final = 0xC000 | 1  # 49153

COPY_TICKS_ALL: Final = -1
COPY_TICKS_INFO: Final = 1
COPY_TICKS_TRADE: Final = 2

RETCODE_NAMES: Final[dict[int, str]] = {
    value: name
    for name, value in dict(globals()).items()
    if (name.startswith(("TRADE_RETCODE_", "RES_"))) and isinstance(value, int)
}


def retcode_name(code: int) -> str:
    """The documented constant name of a trade retcode or last_error code, or 'UNKNOWN'."""
    return RETCODE_NAMES.get(int(code), "UNKNOWN")


class RetcodeClass(Enum):
    """What the bridge may do after MT5 answered with a code."""

    SUCCESS = "success"  # the server accepted (done, partially done, placed)
    RETRY_FRESH_PRICE = "retry_fresh_price"  # the price moved: re-quote and resend (bounded)
    RETRY_BACKOFF = "retry_backoff"  # the server or link is busy/down: wait, then resend
    # The outcome is unknown: the order may have executed. Look for it before any resend.
    VERIFY_BEFORE_RESEND = "verify_before_resend"
    NEVER_RETRY = "never_retry"  # the request or the account is wrong: resending cannot help


_CLASSES: Final[dict[int, RetcodeClass]] = {
    CHECK_RETCODE_OK: RetcodeClass.SUCCESS,
    TRADE_RETCODE_DONE: RetcodeClass.SUCCESS,
    TRADE_RETCODE_PLACED: RetcodeClass.SUCCESS,
    TRADE_RETCODE_DONE_PARTIAL: RetcodeClass.SUCCESS,
    TRADE_RETCODE_REQUOTE: RetcodeClass.RETRY_FRESH_PRICE,
    TRADE_RETCODE_PRICE_CHANGED: RetcodeClass.RETRY_FRESH_PRICE,
    TRADE_RETCODE_PRICE_OFF: RetcodeClass.RETRY_FRESH_PRICE,
    TRADE_RETCODE_TOO_MANY_REQUESTS: RetcodeClass.RETRY_BACKOFF,
    TRADE_RETCODE_CONNECTION: RetcodeClass.RETRY_BACKOFF,
    TRADE_RETCODE_LOCKED: RetcodeClass.RETRY_BACKOFF,
    TRADE_RETCODE_TIMEOUT: RetcodeClass.VERIFY_BEFORE_RESEND,
    **dict.fromkeys(IPC_ERROR_CODES, RetcodeClass.RETRY_BACKOFF),
}


def classify_retcode(retcode: int) -> RetcodeClass:
    """Classify a trade retcode (order_send/order_check) or a last_error() code.

    Anything not listed as success or retryable is NEVER_RETRY, including codes this table does
    not know: resending an order for a reason nobody understood risks a double position.
    """
    return _CLASSES.get(int(retcode), RetcodeClass.NEVER_RETRY)


class TerminalUnavailableError(BrokerUnavailableError):
    """The MT5 terminal could not be reached or could not answer; carries last_error()."""

    def __init__(self, message: str, code: int, comment: str) -> None:
        super().__init__(f"{message}: MT5 {retcode_name(code)} ({code}) {comment}".rstrip())
        self.code = code
        self.comment = comment


class RetriesExhaustedError(RetryableBrokerError):
    """A transient MT5 failure outlasted the bridge's retries; carries MT5's code and comment."""

    def __init__(self, message: str, code: int, comment: str) -> None:
        super().__init__(message, code=code)
        self.comment = comment


def error_for_result(
    client_id: str, retcode: int, comment: str, *, what: str = "order_send"
) -> BrokerError:
    """Map a failed MT5 answer onto the Broker port's errors, keeping MT5's code and comment.

    NEVER_RETRY -> OrderRejectedError; RETRY_* -> RetryableBrokerError (the bridge's own retries
    were spent); VERIFY_BEFORE_RESEND -> BrokerUnavailableError, because the order's fate is
    unknown and the caller must reconcile before trading on; IPC codes -> TerminalUnavailableError.
    """
    code = int(retcode)
    kind = classify_retcode(code)
    if kind is RetcodeClass.SUCCESS:
        msg = f"MT5 code {code} ({retcode_name(code)}) is a success, not an error"
        raise ValueError(msg)
    if code in IPC_ERROR_CODES:
        return TerminalUnavailableError(f"order {client_id}: {what} failed", code, comment)
    if kind is RetcodeClass.NEVER_RETRY:
        return OrderRejectedError(client_id, code, f"{retcode_name(code)}: {comment}")
    if kind is RetcodeClass.VERIFY_BEFORE_RESEND:
        return TerminalUnavailableError(
            f"order {client_id}: {what} outcome unknown after retries and not found on the "
            "venue; reconcile before resubmitting",
            code,
            comment,
        )
    return RetriesExhaustedError(
        f"order {client_id}: {what} failed after retries with MT5 {retcode_name(code)} "
        f"({code}) {comment}",
        code,
        comment,
    )
