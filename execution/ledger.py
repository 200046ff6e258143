"""Position arithmetic and round-trip trade records, shared by the engine and the paper broker.

Positions use average cost: adding to a position moves its average price, reducing it realises
P&L against that average and leaves the average unchanged. A trade is a round trip from flat to
flat; a fill that crosses zero closes one trade and opens the next with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["OpenTrade", "TradeRecord", "apply_to_position"]


def apply_to_position(
    qty: float, avg: float, signed_qty: float, price: float
) -> tuple[float, float]:
    """(quantity, avg_price) after a fill of `signed_qty` units at `price`."""
    new = qty + signed_qty
    if qty == 0.0 or qty * signed_qty > 0.0:
        return new, (abs(qty) * avg + abs(signed_qty) * price) / abs(new)
    if abs(signed_qty) < abs(qty):
        return new, avg
    if abs(signed_qty) == abs(qty):
        return 0.0, 0.0
    return new, price


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One closed round trip. pnl is net of commission; spread and slippage are in the prices."""

    symbol: str
    side: str  # "long" or "short"
    quantity: float  # units entered over the trade's life
    entry_ts: datetime  # first entry fill, UTC
    exit_ts: datetime  # fill that brought the position back to flat, UTC
    entry_price: float  # volume-weighted entry fill price
    exit_price: float  # volume-weighted exit fill price
    pnl: float  # realised P&L net of all commissions of the trade, account currency
    commission: float  # commissions paid by the trade's fills
    costs: float  # commission + spread and slippage paid (the latter already in pnl via prices)


@dataclass(slots=True)
class OpenTrade:
    """Bookkeeping of the round trip in progress for one symbol (mutable, picklable)."""

    symbol: str
    direction: int  # +1 long, -1 short
    entry_ts: datetime
    entry_qty: float = 0.0
    entry_notional: float = 0.0
    exit_qty: float = 0.0
    exit_notional: float = 0.0
    realized: float = 0.0  # gross P&L of the part already closed
    commission: float = 0.0
    slippage: float = 0.0

    def unrealized(self, quantity: float, avg_price: float, mark: float) -> float:
        """P&L so far if closed at `mark` free of further costs: realised part + open part -
        commissions paid, so equity = cash_start + closed pnl + this, exactly."""
        return self.realized + quantity * (mark - avg_price) - self.commission

    def close(self, exit_ts: datetime) -> TradeRecord:
        exit_price = self.exit_notional / self.exit_qty if self.exit_qty > 0 else 0.0
        entry_price = self.entry_notional / self.entry_qty if self.entry_qty > 0 else 0.0
        return TradeRecord(
            symbol=self.symbol,
            side="long" if self.direction > 0 else "short",
            quantity=self.entry_qty,
            entry_ts=self.entry_ts,
            exit_ts=exit_ts,
            entry_price=entry_price,
            exit_price=exit_price,
            pnl=self.realized - self.commission,
            commission=self.commission,
            costs=self.commission + self.slippage,
        )
