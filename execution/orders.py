"""Order lifecycle: the events a venue reports, and the state machine they drive.

Modelled on nautilus_trader's OrderAccepted / OrderRejected / OrderCanceled events. An order is
created SUBMITTED by whoever sends it (the engine's `on_bar`, the kill switch's flatten, a venue
creating a protective stop), and then moves only on events:

    SUBMITTED ─accept─▶ ACCEPTED ─fill─▶ PARTIALLY_FILLED ─fill─▶ FILLED
        │                  │                  │
        └─reject─▶ REJECTED└─cancel/expire─▶ CANCELLED / EXPIRED (with the unfilled quantity)

A fill on a SUBMITTED order implies its acceptance (venues that fill immediately report the deal
before, or instead of, an acceptance). Events for an order already terminal change nothing, so a
replayed event is harmless.

The API (names are stable; the live bridge builds on them):

- `OrderState`, `TERMINAL`: the states, and those an order never leaves.
- Events, frozen: `OrderSubmitted(order)`, `OrderAccepted`, `OrderRejected`, `OrderCancelled`,
  `OrderExpired`, and `execution.domain.Fill` itself for a (partial) execution. `OrderEvent` is
  their union. Every terminal event carries `unfilled`, the quantity that will never fill.
- `Cancel`: a request to the venue to cancel a working order (the engine emits it beside
  `Order`s when a new decision supersedes an entry still working); the venue answers with
  `OrderCancelled`, or with nothing if the order had already completed.
- `execution.engine.on_event(state, event, config)`: the ONE function through which every event
  reaches the engine's state, in the backtest loop, the paper broker path and the live portfolio
  step. The engine counts an order as pending (part of the position it expects) only once it is
  accepted.
- `events_from_ack(order, ack, ts)`: the events a synchronous `Broker.submit` answer means.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from execution.domain import Fill, Order, OrderAck, OrderStatus, _require_utc

__all__ = [
    "TERMINAL",
    "Cancel",
    "OrderAccepted",
    "OrderCancelled",
    "OrderEvent",
    "OrderExpired",
    "OrderRejected",
    "OrderState",
    "OrderSubmitted",
    "events_from_ack",
]


class OrderState(StrEnum):
    SUBMITTED = "submitted"  # sent (or about to be); the venue has not confirmed it
    ACCEPTED = "accepted"  # the venue holds it; fills may follow
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    REJECTED = "rejected"  # the venue refused it; nothing filled
    CANCELLED = "cancelled"  # cancelled on request or by the venue, `unfilled` never fills
    EXPIRED = "expired"  # its time in force ran out, `unfilled` never fills


TERMINAL = frozenset(
    {OrderState.FILLED, OrderState.REJECTED, OrderState.CANCELLED, OrderState.EXPIRED}
)


@dataclass(frozen=True, slots=True)
class OrderSubmitted:
    """An order that did not come out of the engine's own `on_bar` (kill-switch flatten, a
    protective stop or take profit the venue holds), so that the engine tracks it."""

    order: Order

    @property
    def client_id(self) -> str:
        return self.order.client_id

    @property
    def symbol(self) -> str:
        return self.order.symbol


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    client_id: str
    symbol: str
    ts: datetime  # when the venue accepted it, UTC
    venue_order_id: str = ""  # the venue's own id (MT5 ticket), if any

    def __post_init__(self) -> None:
        _require_utc(self.ts, "event ts")


@dataclass(frozen=True, slots=True)
class OrderRejected:
    client_id: str
    symbol: str
    ts: datetime
    reason: str  # the venue's code and comment, or the engine's own refusal, verbatim
    unfilled: float  # the whole order quantity: a rejected order never filled

    def __post_init__(self) -> None:
        _require_utc(self.ts, "event ts")


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    client_id: str
    symbol: str
    ts: datetime
    unfilled: float  # units that will never fill
    reason: str = ""  # "superseded", "end_of_bar", "stop_out", "insufficient_cash", venue text

    def __post_init__(self) -> None:
        _require_utc(self.ts, "event ts")


@dataclass(frozen=True, slots=True)
class OrderExpired:
    client_id: str
    symbol: str
    ts: datetime
    unfilled: float  # units that will never fill

    def __post_init__(self) -> None:
        _require_utc(self.ts, "event ts")


OrderEvent = OrderSubmitted | OrderAccepted | OrderRejected | OrderCancelled | OrderExpired | Fill


@dataclass(frozen=True, slots=True)
class Cancel:
    """A request to cancel the working order `client_id` (the venue answers OrderCancelled)."""

    client_id: str
    symbol: str
    ts: datetime  # decision time, UTC
    reason: str = "superseded"

    def __post_init__(self) -> None:
        _require_utc(self.ts, "cancel ts")


def events_from_ack(order: Order, ack: OrderAck, ts: datetime) -> list[OrderEvent]:
    """What a venue's synchronous answer to `submit` means for the order's lifecycle.

    FILLED and PARTIALLY_FILLED imply acceptance; the executions themselves arrive as fills.
    """
    if ack.status is OrderStatus.REJECTED:
        return [OrderRejected(order.client_id, order.symbol, ts, ack.message, order.quantity)]
    if ack.status is OrderStatus.CANCELLED:
        return [
            OrderAccepted(order.client_id, order.symbol, ts, ack.venue_order_id or ""),
            OrderCancelled(order.client_id, order.symbol, ts, order.quantity, ack.message),
        ]
    return [OrderAccepted(order.client_id, order.symbol, ts, ack.venue_order_id or "")]
