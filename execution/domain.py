"""Domain values shared by the backtest, the live dataflow and every broker.

Times are tz-aware UTC. Quantities are in instrument units (shares, coins, currency units),
never lots: a venue bridge converts at its boundary (execution.instruments). A position's
quantity is signed (long > 0, short < 0). The order lifecycle events live in execution.orders.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = [
    "Fill",
    "Order",
    "OrderAck",
    "OrderStatus",
    "OrderType",
    "Position",
    "Side",
    "make_client_id",
    "strategy_instance",
]


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"  # a market order once the price trades through `stop_price` (stop-losses)


class OrderStatus(StrEnum):
    ACCEPTED = "accepted"  # the venue holds it; fills may follow
    FILLED = "filled"
    PARTIALLY_FILLED = "partially_filled"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


def _require_utc(ts: datetime, what: str) -> None:
    if ts.tzinfo is None or ts.utcoffset() is None or ts.utcoffset().total_seconds() != 0:  # type: ignore[union-attr]
        msg = f"{what} must be a tz-aware UTC datetime, got {ts!r}"
        raise ValueError(msg)


def make_client_id(
    strategy: str, symbol: str, bar_ts: datetime, intent: str, *, timeframe: str = ""
) -> str:
    """Deterministic client order id from (strategy instance, symbol, timeframe, bar ts, intent).

    A replay after a crash produces the same id, so sinks and brokers can refuse duplicates.
    The strategy instance and the timeframe are part of it, so two workers of one strategy on
    one venue (a 1d and a 1h one) never share an id; live callers pass the bar's timeframe.
    18 characters, so it fits MetaTrader 5's order comment (31 characters) with room for a tag.
    """
    _require_utc(bar_ts, "bar_ts")
    raw = f"{strategy}|{symbol}|{timeframe}|{bar_ts.isoformat()}|{intent}".encode()
    return "cf" + hashlib.sha256(raw).hexdigest()[:16]


def strategy_instance(strategy: str, timeframe: str) -> str:
    """Who trades: the strategy instance and the timeframe of its worker, e.g. "sma@1h".

    One worker trades one timeframe; its live records are keyed on this name first, so two
    workers of one strategy (a 1d and a 1h one) on one store never overwrite each other.
    """
    return f"{strategy}@{timeframe}"


@dataclass(frozen=True, slots=True)
class Order:
    client_id: str  # from make_client_id; the idempotency key everywhere
    symbol: str
    side: Side
    quantity: float  # > 0, instrument units
    ts: datetime  # decision time (the close of the bar the decision saw), UTC
    intent: str  # why: "entry", "exit", "stop", "take_profit", "flatten", ...
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    stop_loss: float | None = None  # protective stop price carried to venues that support it
    take_profit: float | None = None
    strategy: str = "default"
    stop_price: float | None = None  # trigger of a STOP order

    def __post_init__(self) -> None:
        if not self.client_id:
            msg = "order client_id must not be empty"
            raise ValueError(msg)
        if not (self.quantity > 0):
            msg = f"order quantity must be > 0, got {self.quantity!r}"
            raise ValueError(msg)
        _require_utc(self.ts, "order ts")
        if self.order_type is OrderType.LIMIT and self.limit_price is None:
            msg = "a limit order needs limit_price"
            raise ValueError(msg)
        if self.order_type is OrderType.STOP and self.stop_price is None:
            msg = "a stop order needs stop_price"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class OrderAck:
    client_id: str
    status: OrderStatus
    venue_order_id: str | None = None  # the venue's own id (MT5 ticket), if any
    message: str = ""  # the venue's comment, verbatim


@dataclass(frozen=True, slots=True)
class Fill:
    client_id: str  # the order this fill belongs to
    symbol: str
    side: Side
    quantity: float  # > 0, filled units
    price: float  # execution price including spread and slippage
    commission: float  # >= 0, in account currency
    ts: datetime  # execution time, UTC
    venue_fill_id: str = ""  # the venue's deal id, if any
    slippage_cost: float = 0.0  # spread + slippage paid vs the reference price; already in price

    def __post_init__(self) -> None:
        _require_utc(self.ts, "fill ts")


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    quantity: float  # signed: long > 0, short < 0
    avg_price: float  # volume-weighted entry price of the open quantity; 0.0 when flat
