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

__all__ = ["OrderIntent", "PortfolioView", "RiskDecision", "RiskGovernor", "derisk_scale"]


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

        equity = view.equity
        blocked = self._blocked(view)
        if blocked:
            return RiskDecision(reducing, blocked)

        peak = max(view.peak_equity, equity)
        scale = derisk_scale(lim, 1.0 - equity / peak)
        caps: list[tuple[float, str]] = [
            (opening * scale, "drawdown_derisk" if scale < 1 else "ok")
        ]
        price = intent.price
        caps.append((lim.max_position_frac * equity / price - base, "max_position"))
        gross_other = 0.0
        for sym, qty in view.positions.items():
            if sym == intent.symbol or qty == 0.0:
                continue
            try:
                gross_other += abs(qty) * view.prices[sym]
            except KeyError:
                msg = f"portfolio view has a position in {sym!r} but no price for it"
                raise ValueError(msg) from None
        caps.append(
            ((lim.max_gross_exposure * equity - gross_other) / price - base, "gross_exposure")
        )
        if intent.stop_distance is not None and intent.stop_distance > 0.0:
            caps.append(
                (lim.max_risk_per_trade * equity / intent.stop_distance, "max_risk_per_trade")
            )
        allowed, reason = min(caps, key=lambda c: c[0])
        if allowed >= opening:
            return RiskDecision(intent.quantity, "ok")
        # A hair under the bound, so that float rounding never lets a limit be exceeded.
        allowed = max(allowed * (1.0 - 1e-12), 0.0)
        return RiskDecision(reducing + allowed, reason)

    def _blocked(self, view: PortfolioView) -> str:
        if view.halt:
            return view.halt
        lim = self.limits
        equity = view.equity
        if not (equity > 0.0):
            return "no_equity"
        if view.trades_today >= lim.max_trades_per_day:
            return "max_trades_per_day"
        if view.day_start_equity > 0 and equity <= view.day_start_equity * (
            1 - lim.daily_loss_halt
        ):
            return "daily_loss_halt"
        peak = max(view.peak_equity, equity)
        if 1.0 - equity / peak >= lim.max_drawdown_halt:
            return "max_drawdown_halt"
        return ""
