"""Position sizing: how many units a new position of a given direction gets."""

from __future__ import annotations

import math

from execution.config import SizingConfig

__all__ = ["METHOD_CODES", "kelly_fraction", "target_quantity", "target_units"]

# Integer codes of SizingConfig.method, for the scalar rule that the compiled path runs too.
METHOD_CODES = {"fixed_fractional": 0, "vol_target": 1, "kelly": 2, "fixed_quantity": 3}


def kelly_fraction(p_win: float, p_loss: float) -> float:
    """Full Kelly fraction of a bet paying +1 with p_win and -1 with p_loss (the rest pays 0).

    Maximising p log(1 + f) + q log(1 - f) gives f = (p - q) / (p + q); 0 without an edge.
    """
    total = p_win + p_loss
    if total <= 0.0 or p_win <= p_loss:
        return 0.0
    return (p_win - p_loss) / total


def target_units(
    method: int,
    equity: float,
    price: float,
    stop_distance: float,
    vol: float,
    p_win: float,
    p_loss: float,
    periods_per_year: float,
    risk_per_trade: float,
    target_vol: float,
    kelly_frac: float,
    kelly_cap: float,
    max_leverage: float,
    fixed_quantity: float,
) -> float:
    """The sizing rule on scalars (`method` from METHOD_CODES; stop_distance and vol <= 0 mean
    unknown); `target_quantity` is the config-taking front."""
    if equity <= 0.0 or price <= 0.0 or not math.isfinite(price):
        return 0.0
    if method == 3:
        qty = fixed_quantity
    elif method == 0:
        if stop_distance <= 0.0:
            return 0.0
        qty = equity * risk_per_trade / stop_distance
    elif method == 1:
        if vol <= 0.0:
            return 0.0
        annual = vol * math.sqrt(periods_per_year)
        qty = equity * target_vol / annual / price
    else:
        # kelly_fraction, inlined: the compiled path compiles leaf functions only.
        total = p_win + p_loss
        full = 0.0 if (total <= 0.0 or p_win <= p_loss) else (p_win - p_loss) / total
        frac = kelly_frac * full
        if kelly_cap < frac:
            frac = kelly_cap
        qty = equity * frac / price
    if method != 3:
        lev = max_leverage * equity / price
        if lev < qty:
            qty = lev
    return 0.0 if 0.0 > qty else qty


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
    return target_units(
        METHOD_CODES[config.method],
        equity,
        price,
        stop_distance if stop_distance is not None else 0.0,
        vol if vol is not None else 0.0,
        p_win,
        p_loss,
        periods_per_year,
        config.risk_per_trade,
        config.target_vol,
        config.kelly_fraction,
        config.kelly_cap,
        config.max_leverage,
        config.fixed_quantity,
    )
