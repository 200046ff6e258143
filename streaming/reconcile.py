"""Reconciliation in the live plane: the ledger is compared with the venue at start and then
every `ReconcileConfig.every_bars` bars (default: every bar), and never traded on while the two
disagree.

Per check: orders of unknown fate are settled at the venue (`resolve_unknown` on brokers that
journal, e.g. the MT5 bridge) and dropped from the router's reconciliation items; then the
ledger's positions are compared with `broker.positions()` and the venue's working orders with
those the ledger knows (`execution.reconcile.compare`). A mismatch halts new risk at once, logs
`event=reconcile_mismatch` once per change, and sets the Prometheus gauge
`reconcile_halted` to 1 (`reconcile_mismatches{kind}` counts them). Under the ADOPT policy a
mismatch confirmed over `confirm_checks` consecutive checks is booked into the ledger (the
step applies `adoption_fills`); the next agreeing check lifts the halt (`event=reconcile_resumed`).
A venue that cannot be asked holds trading too, and is asked again after a backoff.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from execution.broker import Broker, BrokerUnavailableError
from execution.orders import OrderEvent
from execution.reconcile import (
    ReconcileConfig,
    ReconcilePolicy,
    ReconcileReport,
    adoption_fills,
    compare,
)

__all__ = ["ReconcileGauges", "Reconciler", "ledger_in_flight"]

logger = logging.getLogger(__name__)

_QTY_EPS = 1e-9


@dataclass(frozen=True)
class ReconcileGauges:
    halted: Gauge
    mismatches: Gauge

    @classmethod
    def on(cls, registry: CollectorRegistry) -> ReconcileGauges:
        """The gauges on `registry`, created once per registry."""
        found = _GAUGES.get(registry)
        if found is None:
            found = cls(
                halted=Gauge(
                    "reconcile_halted",
                    "1 while the ledger disagrees with the venue (or the venue cannot be "
                    "asked) and new risk is held",
                    registry=registry,
                ),
                mismatches=Gauge(
                    "reconcile_mismatches",
                    "Mismatches found by the latest reconciliation, by kind",
                    ["kind"],
                    registry=registry,
                ),
            )
            _GAUGES[registry] = found
        return found


_GAUGES: weakref.WeakKeyDictionary[CollectorRegistry, ReconcileGauges] = weakref.WeakKeyDictionary()


def ledger_in_flight(engine: Any) -> dict[str, float]:
    """Signed units per symbol of the orders the engine still expects to fill."""
    out: dict[str, float] = {}
    for sym, ss in engine.symbols.items():
        orders = getattr(ss, "orders", None)
        if orders is None:
            orders = getattr(ss, "pending", {})
        # Protective stops / take profits are contingent (execution.engine.PROTECTIVE_INTENTS),
        # and a cancel already requested is no longer meant to fill.
        qty = sum(
            o.sign * o.remaining
            for o in orders.values()
            if getattr(o, "intent", "") not in ("stop", "take_profit")
            and not getattr(o, "cancel_requested", False)
        )
        if abs(qty) > _QTY_EPS:
            out[sym] = qty
    return out


def _ledger_positions(engine: Any) -> dict[str, float]:
    return {s: float(p.quantity) for s, p in engine.positions.items() if abs(p.quantity) > _QTY_EPS}


@dataclass
class Reconciler:
    """Per-process reconciliation state (not snapshotted: a restart reconciles afresh)."""

    config: ReconcileConfig = field(default_factory=ReconcileConfig)
    backoff_s: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)
    clock: Callable[[], float] = time.monotonic
    gauges: ReconcileGauges | None = None
    reconciled: bool = False  # a first check has completed
    halted: str | None = None  # why new risk is held; None: the ledger agrees with the venue
    last_report: ReconcileReport | None = None
    _bars_since: int = 0
    _confirmed: int = 0
    _next_try: float = float("-inf")
    _attempt: int = 0

    def due(self) -> bool:
        if not self.reconciled:
            return self.clock() >= self._next_try
        every = self.config.every_bars
        return (every > 0 and self._bars_since >= every) or (
            self.halted is not None and self.clock() >= self._next_try
        )

    def bar_done(self) -> None:
        self._bars_since += 1

    @property
    def can_trade(self) -> bool:
        return self.reconciled and self.halted is None

    def check(
        self,
        engine: Any,
        broker: Broker,
        *,
        unresolved: Sequence[tuple[str, str]] = (),
        settle: Callable[[str], None] | None = None,
        ts: datetime | None = None,
    ) -> list[OrderEvent]:
        """Compare when due; return the events for the engine: what became of orders of
        unknown fate (accepted, cancelled remainder, or rejected: never reached the venue), then
        the fills that adopt the venue's state (ADOPT policy).

        `unresolved`: (client id, symbol) of orders the router could not place or rule out;
        `settle(client_id)` is told about each the venue has settled.
        """
        if not self.due():
            return []
        now = self.clock()
        try:
            settled = _resolve_unknown(broker)
            for outcome in settled:
                if settle is not None:
                    settle(outcome.client_id)
            done = {o.client_id for o in settled}
            venue = broker.positions()
            working = broker.open_orders()
        except BrokerUnavailableError as exc:
            delay = self.backoff_s[min(self._attempt, len(self.backoff_s) - 1)]
            self._attempt += 1
            self._next_try = now + delay
            reason = f"venue unavailable: {exc}"
            if self.reconciled and self.halted != reason:
                logger.error("event=reconcile_unavailable halted=true error=%s", exc)
            logger.warning(
                "event=reconcile_unavailable attempt=%d retry_in_s=%.1f error=%s",
                self._attempt,
                delay,
                exc,
            )
            if self.reconciled:
                self.halted = reason
            self._gauge(halted=True)
            return []
        self._attempt = 0
        self._bars_since = 0
        self._next_try = now + self.backoff_s[0]
        in_flight = ledger_in_flight(engine)
        known = {cid for ss in engine.symbols.values() for cid in _tracked(ss)}
        venue_working: dict[str, float] = {}
        for order in working:
            if order.client_id not in known:
                signed = order.side.sign * order.quantity
                venue_working[order.symbol] = venue_working.get(order.symbol, 0.0) + signed
        theirs = {s: float(p.quantity) for s, p in venue.items() if abs(p.quantity) > _QTY_EPS}
        report = compare(
            _ledger_positions(engine),
            theirs,
            in_flight=in_flight,
            venue_working=venue_working,
            unresolved=[(cid, sym) for cid, sym in unresolved if cid not in done],
            tolerance=self.config.tolerance,
        )
        self.last_report = report
        first = not self.reconciled
        self.reconciled = True
        adopted: list[OrderEvent] = [o.as_event() for o in settled]
        if report.ok:
            self._confirmed = 0
            if self.halted is not None:
                logger.warning("event=reconcile_resumed broker=%s was=%s", broker.name, self.halted)
            else:
                # Every bar by default: say it once at INFO, the routine checks at DEBUG.
                logger.log(
                    logging.INFO if first else logging.DEBUG,
                    "event=reconciled broker=%s positions=%s",
                    broker.name,
                    theirs or "flat",
                )
            self.halted = None
        else:
            self._confirmed += 1
            reason = f"ledger and {broker.name} disagree: {report.describe()}"
            if reason != self.halted:
                logger.error("event=reconcile_mismatch halted=true detail=%s", reason)
            self.halted = reason
            if (
                self.config.policy is ReconcilePolicy.ADOPT
                and self._confirmed >= self.config.confirm_checks
                and ts is not None
            ):
                fills = adoption_fills(report, venue, dict(engine.marks), ts)
                if fills:
                    logger.warning(
                        "event=reconcile_adopted fills=%s",
                        ", ".join(f"{f.symbol} {f.side} {f.quantity:.10g}" for f in fills),
                    )
                adopted.extend(fills)
                self._next_try = float("-inf")  # confirm the adoption on the next bar
        self._gauge(halted=self.halted is not None, report=report)
        return adopted

    def _gauge(self, *, halted: bool, report: ReconcileReport | None = None) -> None:
        if self.gauges is None:
            return
        self.gauges.halted.set(1.0 if halted else 0.0)
        if report is not None:
            for kind in ("position", "orders", "unresolved"):
                self.gauges.mismatches.labels(kind=kind).set(report.count(kind))


def _tracked(ss: Any) -> Mapping[str, Any]:
    orders = getattr(ss, "orders", None)
    return orders if orders is not None else getattr(ss, "pending", {})


def _resolve_unknown(broker: Broker) -> list[Any]:
    resolve = getattr(broker, "resolve_unknown", None)
    return list(resolve()) if resolve is not None else []
