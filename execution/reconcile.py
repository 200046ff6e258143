"""Reconciliation: does the ledger hold what the venue holds? Pure comparison and adoption.

The live plane compares, at start and then every `every_bars` bars, the ledger's positions with
the venue's, the orders the ledger believes working with the venue's open orders, and lists the
orders whose fate nobody knows yet (a lost answer). A disagreement halts new risk at once; under
the ADOPT policy, one that persists for `confirm_checks` consecutive checks is then resolved by
booking the difference into the ledger (`adoption_fills`), so that the ledger equals the venue.
The grace period absorbs what is merely in flight: a deal the venue's history shows late.

An order already sent whose deal has not reached the ledger yet ("in flight") is not a mismatch:
the venue may hold its quantity already, or not yet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from execution.domain import Fill, Position, Side

__all__ = [
    "Mismatch",
    "ReconcileConfig",
    "ReconcilePolicy",
    "ReconcileReport",
    "adoption_fills",
    "compare",
]


class ReconcilePolicy(StrEnum):
    HALT = "halt"  # stop new risk until the ledger and the venue agree again (an operator acts)
    ADOPT = "adopt"  # book the venue's state into the ledger once the mismatch is confirmed


@dataclass(frozen=True, slots=True)
class ReconcileConfig:
    every_bars: int = 1  # compare every N bars after the start (0: only at start)
    policy: ReconcilePolicy = ReconcilePolicy.HALT
    confirm_checks: int = 2  # consecutive mismatching checks before ADOPT books the difference
    tolerance: float = 1e-6  # units; quantities closer than this agree

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "policy", ReconcilePolicy(self.policy))
        except ValueError:
            msg = f"ReconcileConfig.policy must be one of {[p.value for p in ReconcilePolicy]}"
            raise ValueError(msg) from None
        if self.every_bars < 0 or self.confirm_checks < 1 or not self.tolerance >= 0:
            msg = (
                "ReconcileConfig needs every_bars >= 0, confirm_checks >= 1, tolerance >= 0; "
                f"got {self.every_bars}, {self.confirm_checks}, {self.tolerance}"
            )
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class Mismatch:
    kind: str  # "position", "orders" (working quantity) or "unresolved" (fate unknown)
    symbol: str
    ledger: float  # signed units the ledger holds (or believes working)
    venue: float  # signed units the venue holds (or works)
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.kind} {self.symbol}: ledger {self.ledger:.10g} venue {self.venue:.10g}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    mismatches: tuple[Mismatch, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def describe(self) -> str:
        return "; ".join(str(m) for m in self.mismatches) or "agree"

    def count(self, kind: str) -> int:
        return sum(1 for m in self.mismatches if m.kind == kind)


def _close(a: float, b: float, tol: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=tol)


def compare(
    ledger_positions: Mapping[str, float],
    venue_positions: Mapping[str, float],
    *,
    in_flight: Mapping[str, float] | None = None,
    ledger_working: Mapping[str, float] | None = None,
    venue_working: Mapping[str, float] | None = None,
    unresolved: Iterable[tuple[str, str]] = (),
    tolerance: float = 1e-6,
) -> ReconcileReport:
    """Signed units per symbol on both sides -> the mismatches, symbols sorted.

    in_flight: per symbol, the signed units of orders sent whose deals the ledger has not booked
    yet; the venue may already hold them. ledger_working / venue_working: signed units of
    working (resting) orders. unresolved: (client id, symbol) of orders of unknown fate.
    """
    flight = in_flight or {}
    mismatches: list[Mismatch] = []
    for sym in sorted(set(ledger_positions) | set(venue_positions)):
        mine = float(ledger_positions.get(sym, 0.0))
        theirs = float(venue_positions.get(sym, 0.0))
        ahead = mine + float(flight.get(sym, 0.0))
        if _close(mine, theirs, tolerance) or _close(ahead, theirs, tolerance):
            continue
        mismatches.append(Mismatch("position", sym, mine, theirs))
    lw, vw = ledger_working or {}, venue_working or {}
    for sym in sorted(set(lw) | set(vw)):
        if not _close(float(lw.get(sym, 0.0)), float(vw.get(sym, 0.0)), tolerance):
            mismatches.append(Mismatch("orders", sym, float(lw.get(sym, 0.0)), vw.get(sym, 0.0)))
    for client_id, sym in unresolved:
        mismatches.append(Mismatch("unresolved", sym, 0.0, 0.0, f"order {client_id} fate unknown"))
    return ReconcileReport(tuple(mismatches))


def adoption_fills(
    report: ReconcileReport,
    venue_positions: Mapping[str, Position],
    marks: Mapping[str, float],
    ts: datetime,
) -> list[Fill]:
    """Fills that move each mismatching ledger position onto the venue's.

    Priced at the venue's average open price where the ledger was flat (the venue opened it),
    else at the symbol's mark (the close the ledger missed is not known more precisely). The
    client id "reconcile-<symbol>-<ts>" belongs to no order, so the engine books it as the
    venue's own trade.
    """
    fills: list[Fill] = []
    for m in report.mismatches:
        if m.kind != "position":
            continue
        diff = m.venue - m.ledger
        venue = venue_positions.get(m.symbol)
        if m.ledger == 0.0 and venue is not None and venue.avg_price > 0:
            price = venue.avg_price
        elif m.symbol in marks:
            price = float(marks[m.symbol])
        elif venue is not None and venue.avg_price > 0:
            price = venue.avg_price
        else:
            msg = f"no price to adopt {m}: no mark and no venue price for {m.symbol}"
            raise ValueError(msg)
        fills.append(
            Fill(
                client_id=f"reconcile-{m.symbol}-{ts.strftime('%Y%m%dT%H%M%S')}",
                symbol=m.symbol,
                side=Side.BUY if diff > 0 else Side.SELL,
                quantity=abs(diff),
                price=price,
                commission=0.0,
                ts=ts,
                venue_fill_id="reconcile",
            )
        )
    return fills
