"""Position sizing: how many units a new position of a given direction gets."""

from __future__ import annotations

import math

from execution.config import SizingConfig

__all__ = ["kelly_fraction", "target_quantity"]


def kelly_fraction(p_win: float, p_loss: float) -> float:
    """Full Kelly fraction of a bet paying +1 with p_win and -1 with p_loss (the rest pays 0).

    Maximising p log(1 + f) + q log(1 - f) gives f = (p - q) / (p + q); 0 without an edge.
    """
    total = p_win + p_loss
    if total <= 0.0 or p_win <= p_loss:
        return 0.0
    return (p_win - p_loss) / total


def target_quantity(
    config: SizingConfig,
    *,
    equity: float,
    price: float,
    stop_distance: float | None,
    vol: float | None,
    p_win: float,
    p_loss: float,
    periods_per_year: float,
) -> float:
    """Units (>= 0) for a new position at `price`.

    Notional never exceeds max_leverage * equity, except for fixed_quantity, which is exactly
    what it says. fixed_fractional sizes 0 without a stop distance (the engine passes the
    configured stop's distance, or stop_pct of the price when no stop is configured).
    vol_target sizes 0 until the volatility estimate is warm.
    """
    if equity <= 0.0 or price <= 0.0 or not math.isfinite(price):
        return 0.0
    method = config.method
    if method == "fixed_quantity":
        qty = config.fixed_quantity
    elif method == "fixed_fractional":
        if stop_distance is None or stop_distance <= 0.0:
            return 0.0
        qty = equity * config.risk_per_trade / stop_distance
    elif method == "vol_target":
        if vol is None or vol <= 0.0:
            return 0.0
        annual = vol * math.sqrt(periods_per_year)
        qty = equity * config.target_vol / annual / price
    else:  # kelly
        frac = min(config.kelly_fraction * kelly_fraction(p_win, p_loss), config.kelly_cap)
        qty = equity * frac / price
    if method != "fixed_quantity":
        qty = min(qty, config.max_leverage * equity / price)
    return max(qty, 0.0)
