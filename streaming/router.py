"""The order router: the one place where orders leave the dataflow for a venue.

Client ids are deterministic (execution.domain.make_client_id), so an order re-emitted after a
crash carries the id the venue already holds; the venue refuses it with DuplicateOrderError and
the router counts it as sent, logs it and does not resend. A transient venue error is retried a
few times; a rejection is logged and counted, never retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum

from execution.broker import (
    Broker,
    DuplicateOrderError,
    OrderRejectedError,
    RetryableBrokerError,
)
from execution.domain import Order
from streaming.metrics import LiveMetrics

__all__ = ["OrderRouter", "RouteOutcome"]

logger = logging.getLogger(__name__)


class RouteOutcome(StrEnum):
    SENT = "sent"
    DUPLICATE = "duplicate"  # the venue already had this client id: sent before a restart
    REJECTED = "rejected"


class OrderRouter:
    def __init__(
        self,
        metrics: LiveMetrics | None = None,
        *,
        retries: int = 3,
        retry_delay_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        on_submit: Callable[[Order, int], None] | None = None,
    ) -> None:
        self._metrics = metrics
        self._retries = retries
        self._retry_delay_s = retry_delay_s
        self._sleep = sleep
        self._on_submit = on_submit  # (order, latency ns from bar arrival) for benchmarks

    def submit(
        self, broker: Broker, order: Order, *, received_ns: int | None = None
    ) -> RouteOutcome:
        handed_ns = time.perf_counter_ns()
        latency_ns = None if received_ns is None else handed_ns - received_ns
        attempt = 0
        while True:
            try:
                ack = broker.submit(order)
            except DuplicateOrderError:
                logger.info(
                    "event=order_duplicate client_id=%s symbol=%s note=already_sent",
                    order.client_id,
                    order.symbol,
                )
                self._count(order, RouteOutcome.DUPLICATE)
                return RouteOutcome.DUPLICATE
            except OrderRejectedError as exc:
                logger.error(
                    "event=order_rejected client_id=%s symbol=%s code=%s comment=%s",
                    order.client_id,
                    order.symbol,
                    exc.code,
                    exc.comment,
                )
                self._count(order, RouteOutcome.REJECTED)
                return RouteOutcome.REJECTED
            except RetryableBrokerError as exc:
                attempt += 1
                if attempt > self._retries:
                    logger.error(
                        "event=order_failed client_id=%s attempts=%d error=%s",
                        order.client_id,
                        attempt,
                        exc,
                    )
                    self._count(order, RouteOutcome.REJECTED)
                    return RouteOutcome.REJECTED
                logger.warning(
                    "event=order_retry client_id=%s attempt=%d error=%s",
                    order.client_id,
                    attempt,
                    exc,
                )
                self._sleep(self._retry_delay_s * attempt)
                continue
            break
        logger.info(
            "event=order_sent client_id=%s symbol=%s side=%s qty=%.8g intent=%s status=%s",
            order.client_id,
            order.symbol,
            order.side,
            order.quantity,
            order.intent,
            ack.status,
        )
        self._count(order, RouteOutcome.SENT)
        if latency_ns is not None:
            if self._metrics is not None:
                self._metrics.bar_to_order_latency.observe(latency_ns / 1e9)
            if self._on_submit is not None:
                self._on_submit(order, latency_ns)
        return RouteOutcome.SENT

    def _count(self, order: Order, outcome: RouteOutcome) -> None:
        if self._metrics is None:
            return
        if outcome is RouteOutcome.REJECTED:
            self._metrics.rejects.labels(symbol=order.symbol).inc()
        else:
            self._metrics.orders.labels(symbol=order.symbol, outcome=str(outcome)).inc()
