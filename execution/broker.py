"""The Broker port: what the live plane needs from any venue, and the errors it may raise.

`execution.paper.PaperBroker` implements it with the shared cost model; `mt5_bridge` implements
it for MetaTrader 5. Every implementation refuses a second order with a client id it has seen.

What a venue reports reaches the engine as order events (`execution.orders`): the synchronous
answer to `submit` through `submit_order` (accepted, or rejected with the whole quantity
unfilled), and everything later (fills, cancellations, expiries, protective orders the venue
holds) through `poll_events`, oldest first. Each event goes to `execution.engine.on_event`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime

from execution.domain import Fill, Order, OrderAck, Position
from execution.orders import Cancel, OrderEvent, OrderRejected, events_from_ack

__all__ = [
    "Broker",
    "BrokerError",
    "BrokerUnavailableError",
    "DuplicateOrderError",
    "LiveTradingNotEnabledError",
    "OrderRejectedError",
    "RetryableBrokerError",
    "submit_order",
]


class BrokerError(Exception):
    """Base of every error a broker raises."""


class DuplicateOrderError(BrokerError):
    """An order with this client id was already submitted; it was not sent again."""

    def __init__(self, client_id: str) -> None:
        super().__init__(f"order {client_id} was already submitted; refusing a duplicate")
        self.client_id = client_id


class OrderRejectedError(BrokerError):
    """The venue refused the order and retrying will not help (bad volume, no money, closed)."""

    def __init__(self, client_id: str, code: int | str, comment: str) -> None:
        super().__init__(f"order {client_id} rejected: code={code} {comment}")
        self.client_id = client_id
        self.code = code
        self.comment = comment


class RetryableBrokerError(BrokerError):
    """A transient failure (connection, rate limit, requote); the caller may retry."""

    def __init__(self, message: str, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code


class BrokerUnavailableError(BrokerError):
    """The venue cannot be reached or cannot report its state; that state is unknown, not empty."""


class LiveTradingNotEnabledError(BrokerError):
    """A live broker was asked to start without CANDLEFLOW_LIVE=1 and an explicit broker choice."""


class Broker(ABC):
    """A venue that accepts orders and reports fills and positions."""

    name: str = "broker"

    @abstractmethod
    def connect(self) -> None:
        """Open the session. Live brokers refuse here unless live trading was enabled."""

    @abstractmethod
    def submit(self, order: Order) -> OrderAck:
        """Send an order. Raises DuplicateOrderError for a client id already submitted."""

    @abstractmethod
    def poll_fills(self) -> Sequence[Fill]:
        """Fills that happened since the previous call, oldest first."""

    def poll_events(self) -> Sequence[OrderEvent]:
        """Order events since the previous call, oldest first: fills, cancellations, expiries,
        and the protective orders the venue opened. A venue that reports only fills gives those;
        a caller uses either this or `poll_fills`, not both."""
        return list(self.poll_fills())

    def cancel(self, request: Cancel) -> Sequence[OrderEvent]:
        """Cancel a working order; the events it caused (OrderCancelled with the unfilled rest),
        or none when the order had already completed."""
        msg = f"{self.name} broker cannot cancel orders yet (asked for {request.client_id})"
        raise NotImplementedError(msg)

    @abstractmethod
    def positions(self) -> Mapping[str, Position]:
        """Open positions by symbol. Raises BrokerUnavailableError rather than guess flat."""

    @abstractmethod
    def open_orders(self) -> Sequence[Order]:
        """Orders accepted but not yet fully filled or cancelled."""

    @abstractmethod
    def submitted_client_ids(self) -> frozenset[str]:
        """Every client id this broker has accepted, for reconciliation after a restart."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the session."""


def submit_order(broker: Broker, order: Order, ts: datetime) -> list[OrderEvent]:
    """Submit `order` and return what the answer means as order events.

    A refusal (OrderRejectedError) becomes OrderRejected with the whole quantity unfilled; a
    duplicate (the venue already holds this client id, e.g. after a restart) raises as before,
    since what happened to the first submission comes through `poll_events`.
    """
    try:
        ack = broker.submit(order)
    except OrderRejectedError as exc:
        reason = f"code={exc.code} {exc.comment}"
        return [OrderRejected(order.client_id, order.symbol, ts, reason, order.quantity)]
    return events_from_ack(order, ack, ts)
