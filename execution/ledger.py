"""Position arithmetic and round-trip trade records, shared by the engine and the paper broker.

The rules are scalar functions (apply_to_position, closing_quantity, add_exit_part,
add_entry_part, trade_close_values, in_flight_units, committed_direction, fully_filled), so the
compiled backtest path runs these very functions.

Positions use average cost: adding to a position moves its average price, reducing it realises
P&L against that average and leaves the average unchanged. A trade is a round trip from flat to
flat; a fill that crosses zero closes one trade and opens the next with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Remainders below this many units are dust from float arithmetic, not quantities to trade.
# The one threshold: the engine, the paper broker and the compiled fast path import it.
DUST = 1e-9

__all__ = [
    "DUST",
    "OpenTrade",
    "TradeRecord",
    "add_entry_part",
    "add_exit_part",
    "apply_to_position",
    "closing_quantity",
    "committed_direction",
    "crosses_zero",
    "fully_filled",
    "in_flight_units",
    "trade_close_values",
]


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


def crosses_zero(qty: float, new_qty: float) -> bool:
    """True when a fill took the position `qty` to flat or through zero: its protection ends."""
    return new_qty == 0.0 or (qty != 0.0 and new_qty * qty < 0.0)


def in_flight_units(sign: int, remaining: float, cancel_requested: bool, protective: bool) -> float:
    """Signed units an order still working adds to the position its sender expects: its
    remaining units, unless a cancel was requested or it only protects the position (a stop or
    take profit is contingent). Summed over the orders onto the position, by the engine's
    committed direction and exits, and by the risk governor's exposure."""
    if cancel_requested or protective:
        return 0.0
    return sign * remaining


def fully_filled(remaining: float) -> bool:
    """True when an order in flight with `remaining` units left is filled for its sender: the
    rest is dust, so it leaves the orders that count toward the position."""
    return remaining <= DUST


def committed_direction(expected: float) -> int:
    """Sign of the position plus the orders in flight (-1, 0, +1; dust counts as flat). An exit
    of abs(expected) units on the other side flattens it."""
    if abs(expected) <= DUST:
        return 0
    return 1 if expected > 0 else -1


def closing_quantity(qty: float, sign: int, q: float) -> float:
    """Units of a fill of `q` units on side `sign` that close the position `qty` (the rest opens
    or adds)."""
    if qty * sign < 0.0:
        aq = abs(qty)
        return aq if aq < q else q
    return 0.0


def add_exit_part(
    exit_qty: float,
    exit_notional: float,
    realized: float,
    commission: float,
    slippage: float,
    close_q: float,
    q: float,
    price: float,
    avg: float,
    direction: int,
    fee: float,
    slippage_cost: float,
) -> tuple[float, float, float, float, float]:
    """The open trade's exit sums after `close_q` of a `q`-unit fill closed part of it; the fill's
    fee and slippage are shared pro rata between its closing and opening parts."""
    share = close_q / q
    return (
        exit_qty + close_q,
        exit_notional + close_q * price,
        realized + close_q * (price - avg) * direction,
        commission + fee * share,
        slippage + slippage_cost * share,
    )


def add_entry_part(
    entry_qty: float,
    entry_notional: float,
    commission: float,
    slippage: float,
    open_q: float,
    q: float,
    price: float,
    fee: float,
    slippage_cost: float,
) -> tuple[float, float, float, float]:
    """The open trade's entry sums after `open_q` of a `q`-unit fill opened or added to it."""
    share = open_q / q
    return (
        entry_qty + open_q,
        entry_notional + open_q * price,
        commission + fee * share,
        slippage + slippage_cost * share,
    )


def trade_close_values(
    entry_qty: float,
    entry_notional: float,
    exit_qty: float,
    exit_notional: float,
    realized: float,
    commission: float,
    slippage: float,
) -> tuple[float, float, float, float, float, float]:
    """(quantity, entry_price, exit_price, pnl, commission, costs) of a closed round trip."""
    exit_price = exit_notional / exit_qty if exit_qty > 0 else 0.0
    entry_price = entry_notional / entry_qty if entry_qty > 0 else 0.0
    return (
        entry_qty,
        entry_price,
        exit_price,
        realized - commission,
        commission,
        commission + slippage,
    )


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
        quantity, entry_price, exit_price, pnl, commission, costs = trade_close_values(
            self.entry_qty,
            self.entry_notional,
            self.exit_qty,
            self.exit_notional,
            self.realized,
            self.commission,
            self.slippage,
        )
        return TradeRecord(
            symbol=self.symbol,
            side="long" if self.direction > 0 else "short",
            quantity=quantity,
            entry_ts=self.entry_ts,
            exit_ts=exit_ts,
            entry_price=entry_price,
            exit_price=exit_price,
            pnl=pnl,
            commission=commission,
            costs=costs,
        )
