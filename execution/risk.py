"""The risk governor: the last gate every risk-increasing order passes, in backtest and live.

Orders (or the part of an order) that reduce a position are always approved: a limit must never
keep a strategy from getting out. The part that opens or increases risk is cut to the largest
quantity that keeps every limit, or to 0 with the reason of the first limit that binds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from execution.config import RiskLimits
from execution.domain import Side

__all__ = [
    "RISK_REASONS",
    "OrderIntent",
    "PortfolioView",
    "RiskDecision",
    "RiskGovernor",
    "derisk_scale",
    "risk_allowed",
]

# Reason codes of risk_allowed.
RISK_REASONS = (
    "ok",
    "no_equity",
    "max_trades_per_day",
    "daily_loss_halt",
    "max_drawdown_halt",
    "drawdown_derisk",
    "max_position",
    "gross_exposure",
    "max_risk_per_trade",
)


@dataclass(frozen=True, slots=True)
class OrderIntent:
    symbol: str
    side: Side
    quantity: float  # requested units, > 0
    price: float  # reference price the decision saw (the bar close), > 0
    stop_distance: float | None = None  # price distance to the protective stop; None = unknown


@dataclass(frozen=True, slots=True)
class PortfolioView:
    equity: float  # marked account equity now
    peak_equity: float  # highest equity seen, for the drawdown limits
    day_start_equity: float  # equity at the end of the previous UTC day
    positions: Mapping[str, float]  # signed units per symbol, including orders still queued
    prices: Mapping[str, float]  # mark price per symbol; every symbol with a position needs one
    trades_today: int  # risk-increasing orders approved so far this UTC day
    halt: str = ""  # an operator's halt (the live kill switch): no new risk while set


class RiskDecision(NamedTuple):
    quantity: float  # approved units, 0 <= quantity <= requested
    reason: str  # "ok", "reduce_only", or the limit that cut or blocked the order


def derisk_scale(limits: RiskLimits, drawdown: float) -> float:
    """Size multiplier: 1 up to drawdown_derisk_start, linear to 0 at max_drawdown_halt."""
    if drawdown >= limits.max_drawdown_halt:
        return 0.0
    if drawdown <= limits.drawdown_derisk_start:
        return 1.0
    span = limits.max_drawdown_halt - limits.drawdown_derisk_start
    return (limits.max_drawdown_halt - drawdown) / span


class RiskGovernor:
    """Checks order intents against RiskLimits; stateless, so backtest and live share one."""

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits

    def check(self, intent: OrderIntent, view: PortfolioView) -> RiskDecision:
        """Approved quantity (possibly reduced, possibly 0) and the reason."""
        if not (intent.quantity > 0 and math.isfinite(intent.quantity)):
            msg = f"order intent quantity must be a positive finite number, got {intent.quantity!r}"
            raise ValueError(msg)
        if not (intent.price > 0 and math.isfinite(intent.price)):
            msg = f"order intent price must be a positive finite number, got {intent.price!r}"
            raise ValueError(msg)
        lim = self.limits
        sign = intent.side.sign
        pos = float(view.positions.get(intent.symbol, 0.0))
        reducing = min(intent.quantity, abs(pos)) if pos * sign < 0 else 0.0
        opening = intent.quantity - reducing
        if opening <= 0.0:
            return RiskDecision(intent.quantity, "reduce_only")
        # Units already held on the order's side; an opposite position is closed first.
        base = abs(pos) if pos * sign > 0 else 0.0

        if view.halt:
            return RiskDecision(reducing, view.halt)
        gross_other = 0.0
        for sym, qty in view.positions.items():
            if sym == intent.symbol or qty == 0.0:
                continue
            try:
                gross_other += abs(qty) * view.prices[sym]
            except KeyError:
                msg = f"portfolio view has a position in {sym!r} but no price for it"
                raise ValueError(msg) from None
        allowed, code = risk_allowed(
            opening,
            base,
            view.equity,
            view.peak_equity,
            view.day_start_equity,
            view.trades_today,
            gross_other,
            intent.price,
            intent.stop_distance if intent.stop_distance is not None else 0.0,
            lim.max_position_frac,
            lim.max_gross_exposure,
            lim.max_risk_per_trade,
            lim.daily_loss_halt,
            lim.max_drawdown_halt,
            lim.drawdown_derisk_start,
            lim.max_trades_per_day,
        )
        if code == 0:
            return RiskDecision(intent.quantity, "ok")
        return RiskDecision(reducing + allowed, RISK_REASONS[code])


def risk_allowed(
    opening: float,
    base: float,
    equity: float,
    peak_equity: float,
    day_start_equity: float,
    trades_today: int,
    gross_other: float,
    price: float,
    stop_distance: float,
    max_position_frac: float,
    max_gross_exposure: float,
    max_risk_per_trade: float,
    daily_loss_halt: float,
    max_drawdown_halt: float,
    drawdown_derisk_start: float,
    max_trades_per_day: int,
) -> tuple[float, int]:
    """(units that may open, reason code into RISK_REASONS) for `opening` risk-increasing units.

    The rule on scalars, which RiskGovernor.check and the compiled path both run: `base` is what
    is already held on the order's side, `gross_other` the notional held in other symbols, and
    stop_distance <= 0 means unknown. Returns `opening` itself (code 0) when no limit binds.
    """
    if not (equity > 0.0):
        return 0.0, 1
    if trades_today >= max_trades_per_day:
        return 0.0, 2
    if day_start_equity > 0 and equity <= day_start_equity * (1 - daily_loss_halt):
        return 0.0, 3
    peak = peak_equity if peak_equity > equity else equity
    dd = 1.0 - equity / peak
    if dd >= max_drawdown_halt:
        return 0.0, 4
    if dd <= drawdown_derisk_start:
        scale = 1.0
    else:
        scale = (max_drawdown_halt - dd) / (max_drawdown_halt - drawdown_derisk_start)
    allowed = opening * scale
    reason = 5 if scale < 1 else 0
    cap = max_position_frac * equity / price - base
    if cap < allowed:
        allowed, reason = cap, 6
    cap = (max_gross_exposure * equity - gross_other) / price - base
    if cap < allowed:
        allowed, reason = cap, 7
    if stop_distance > 0.0:
        cap = max_risk_per_trade * equity / stop_distance
        if cap < allowed:
            allowed, reason = cap, 8
    if allowed >= opening:
        return opening, 0
    # A hair under the bound, so that float rounding never lets a limit be exceeded.
    allowed = allowed * (1.0 - 1e-12)
    return (0.0 if 0.0 > allowed else allowed), reason
