"""Prometheus metrics of the live worker, on their own registry (tests build many)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["LiveMetrics", "serve_metrics"]

logger = logging.getLogger(__name__)

# Bar-to-order latency is milliseconds when healthy; the tail buckets catch stalls.
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
    5.0,
)


@dataclass(frozen=True)
class LiveMetrics:
    registry: CollectorRegistry
    bars_processed: Counter
    bar_to_order_latency: Histogram
    orders: Counter
    rejects: Counter
    store_up: Gauge
    store_retries: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> LiveMetrics:
        reg = registry if registry is not None else CollectorRegistry()
        return cls(
            registry=reg,
            bars_processed=Counter(
                "bars_processed",
                "Bars the portfolio step has processed",
                ["symbol"],
                registry=reg,
            ),
            bar_to_order_latency=Histogram(
                "bar_to_order_latency_seconds",
                "From a bar entering the dataflow to its order handed to the broker",
                buckets=_LATENCY_BUCKETS,
                registry=reg,
            ),
            orders=Counter(
                "orders",
                "Orders handed to the broker (duplicate: already held by the venue)",
                ["symbol", "outcome"],
                registry=reg,
            ),
            rejects=Counter("rejects", "Orders the venue refused", ["symbol"], registry=reg),
            store_up=_gauge_at_one(
                Gauge(
                    "store_up",
                    "1 while the live store accepts writes, 0 during an outage (worker paused)",
                    registry=reg,
                )
            ),
            store_retries=Counter(
                "store_write_retries",
                "Store writes that failed on an unavailable store and were retried",
                registry=reg,
            ),
        )


def _gauge_at_one(gauge: Gauge) -> Gauge:
    gauge.set(1)
    return gauge


def serve_metrics(metrics: LiveMetrics, port: int) -> bool:
    """Serve /metrics on `port` (0 disables). False (logged) when the port is taken."""
    if port == 0:
        return False
    try:
        start_http_server(port, registry=metrics.registry)
    except OSError as exc:
        logger.warning("event=metrics_not_served port=%d error=%s", port, exc)
        return False
    logger.info("event=metrics_served port=%d", port)
    return True
