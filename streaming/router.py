"""The order router: the one place where orders leave the dataflow for a venue.

It never blocks the step beyond one broker call and never lets a venue error out of it. The
broker holds the one retry layer (the MT5 bridge: fresh price after a requote, backoff while
busy, look-before-resend after a timeout, all within its per-order deadline); the router adds
no retries of its own, and maps every broker error, in `outcome_for_error`, onto an outcome:

- SENT: the venue took it. DUPLICATE: the venue (or the journal) already had this client id, so
  an order re-emitted after a crash is counted as sent and not resent.
- REJECTED: the venue refused it for good (no money, bad volume, market closed). FAILED: a
  transient failure outlasted the broker's retries; nothing executed. Neither is at the venue:
  the engine learns it as a rejection, and a flat signal then sends nothing.
- UNKNOWN: the answer was lost and the venue could not say (timeouts, a dead terminal). The
  order becomes a reconciliation item (`take_unresolved`), settled by looking at the venue.

Cancels (`cancel`) and moves of the protective levels a venue holds (`move_stops`, MT5's
TRADE_ACTION_SLTP for a trailing stop) go through here too, under the same rule: a broker error
is logged and left to reconciliation, never raised into the step.

Client ids are deterministic (execution.domain.make_client_id), which is what makes DUPLICATE
safe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from execution.broker import (
    Broker,
    BrokerError,
    BrokerUnavailableError,
    DuplicateOrderError,
    OrderRejectedError,
    RetryableBrokerError,
)
from execution.domain import Order, OrderAck
from execution.orders import Cancel, OrderEvent
from streaming.metrics import LiveMetrics

__all__ = ["OrderRouter", "RouteOutcome", "Routed", "outcome_for_error"]

logger = logging.getLogger(__name__)


class RouteOutcome(StrEnum):
    SENT = "sent"
    DUPLICATE = "duplicate"  # the venue already had this client id: sent before a restart
    REJECTED = "rejected"  # refused for good; nothing executed
    FAILED = "failed"  # transient failures outlasted the broker's retries; nothing executed
    UNKNOWN = "unknown"  # may or may not have executed: reconcile before trading on

    @property
    def at_venue(self) -> bool | None:
        """True: the venue holds it; False: it does not; None: nobody knows yet."""
        if self in (RouteOutcome.SENT, RouteOutcome.DUPLICATE):
            return True
        if self is RouteOutcome.UNKNOWN:
            return None
        return False


@dataclass(frozen=True, slots=True)
class Routed:
    order: Order
    outcome: RouteOutcome
    ack: OrderAck | None = None  # the venue's answer when SENT
    reason: str = ""  # the venue's code and comment, or the error, when not SENT
    elapsed_s: float = 0.0  # time the step spent in the broker call


def outcome_for_error(exc: BrokerError) -> RouteOutcome:
    """The one mapping from the Broker port's errors onto route outcomes."""
    if isinstance(exc, DuplicateOrderError):
        return RouteOutcome.DUPLICATE
    if isinstance(exc, OrderRejectedError):
        return RouteOutcome.REJECTED
    if isinstance(exc, RetryableBrokerError):
        return RouteOutcome.FAILED
    if isinstance(exc, BrokerUnavailableError):
        return RouteOutcome.UNKNOWN
    # An error the port does not classify: assume nothing about the order's fate.
    return RouteOutcome.UNKNOWN


class OrderRouter:
    def __init__(
        self,
        metrics: LiveMetrics | None = None,
        *,
        on_submit: Callable[[Order, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._on_submit = on_submit  # (order, latency ns from bar arrival) for benchmarks
        self._clock = clock
        self._unresolved: dict[str, Order] = {}

    def submit(
        self, broker: Broker, order: Order, *, received_ns: int | None = None
    ) -> RouteOutcome:
        return self.route(broker, order, received_ns=received_ns).outcome

    def route(self, broker: Broker, order: Order, *, received_ns: int | None = None) -> Routed:
        """Hand `order` to `broker` once; never raises a broker error."""
        handed_ns = time.perf_counter_ns()
        latency_ns = None if received_ns is None else handed_ns - received_ns
        started = self._clock()
        try:
            ack = broker.submit(order)
        except BrokerError as exc:
            routed = Routed(order, outcome_for_error(exc), None, str(exc), self._clock() - started)
            self._log_failure(routed, exc)
            self._count(order, routed.outcome)
            if routed.outcome is RouteOutcome.UNKNOWN:
                self._unresolved[order.client_id] = order
            return routed
        routed = Routed(order, RouteOutcome.SENT, ack, "", self._clock() - started)
        logger.info(
            "event=order_sent client_id=%s symbol=%s side=%s qty=%.8g intent=%s status=%s "
            "elapsed_s=%.3f",
            order.client_id,
            order.symbol,
            order.side,
            order.quantity,
            order.intent,
            ack.status,
            routed.elapsed_s,
        )
        self._count(order, RouteOutcome.SENT)
        if latency_ns is not None:
            if self._metrics is not None:
                self._metrics.bar_to_order_latency.observe(latency_ns / 1e9)
            if self._on_submit is not None:
                self._on_submit(order, latency_ns)
        return routed

    def cancel(self, broker: Broker, request: Cancel) -> list[OrderEvent]:
        """Ask the venue to cancel a working order; its events (OrderCancelled with the unfilled
        rest), or none when it had completed or the venue could not be asked. Never raises a
        broker error: an order still working shows in the next reconciliation."""
        try:
            return list(broker.cancel(request))
        except BrokerError as exc:
            logger.warning(
                "event=cancel_failed client_id=%s symbol=%s error=%s",
                request.client_id,
                request.symbol,
                exc,
            )
            return []

    def move_stops(
        self, broker: Broker, symbol: str, stop_loss: float | None, take_profit: float | None
    ) -> bool:
        """Move the protective levels held at the venue (brokers that hold them: MT5's
        TRADE_ACTION_SLTP); False when the venue refused or could not be asked (logged; the
        previous levels stay in force there)."""
        modify = getattr(broker, "modify_stops", None)
        if modify is None:
            return False
        try:
            modify(symbol, stop_loss, take_profit)
        except BrokerError as exc:
            logger.warning(
                "event=stops_not_moved symbol=%s sl=%s tp=%s error=%s",
                symbol,
                stop_loss,
                take_profit,
                exc,
            )
            return False
        logger.info("event=stops_moved symbol=%s sl=%s tp=%s", symbol, stop_loss, take_profit)
        return True

    def unresolved(self) -> tuple[Order, ...]:
        """Orders whose outcome is unknown, oldest first, until reconciliation settles them."""
        return tuple(self._unresolved.values())

    def settle(self, client_id: str) -> None:
        """Reconciliation found out what became of `client_id`."""
        self._unresolved.pop(client_id, None)

    def _log_failure(self, routed: Routed, exc: BrokerError) -> None:
        o = routed.order
        if routed.outcome is RouteOutcome.DUPLICATE:
            logger.info(
                "event=order_duplicate client_id=%s symbol=%s note=already_sent",
                o.client_id,
                o.symbol,
            )
            return
        code = getattr(exc, "code", None)
        level = logging.WARNING if routed.outcome is RouteOutcome.UNKNOWN else logging.ERROR
        logger.log(
            level,
            "event=order_%s client_id=%s symbol=%s side=%s qty=%.8g intent=%s code=%s "
            "elapsed_s=%.3f reason=%s",
            routed.outcome,
            o.client_id,
            o.symbol,
            o.side,
            o.quantity,
            o.intent,
            code,
            routed.elapsed_s,
            exc,
        )

    def _count(self, order: Order, outcome: RouteOutcome) -> None:
        if self._metrics is None:
            return
        if outcome in (RouteOutcome.REJECTED, RouteOutcome.FAILED):
            self._metrics.rejects.labels(symbol=order.symbol).inc()
        else:
            self._metrics.orders.labels(symbol=order.symbol, outcome=str(outcome)).inc()
