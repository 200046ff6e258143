"""The cost model shared by the paper broker and the backtest: commission, spread, slippage and
the volume cap, plus the rolling volatility estimate that volatility-scaled slippage and
volatility-targeted sizing read.

Prices are adjusted adversely: a buy pays ref * (1 + c), a sell receives ref * (1 - c), with
c = spread_bps / 2 / 1e4 + slippage_bps / 1e4 + slippage_vol_mult * vol, where vol is the per-bar
volatility known when the order was decided (closes up to the decision bar).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from execution.config import CostModel

__all__ = [
    "EwmaVol",
    "commission",
    "commission_of",
    "cost_fraction",
    "cost_fraction_of",
    "ewma_step",
    "fill_price_of",
    "market_fill_price",
    "volume_cap",
]


def ewma_step(
    count: int, last_close: float, var: float, close: float, alpha: float
) -> tuple[int, float, float]:
    """(count, last_close, var) after one more close: EWMA of squared log returns."""
    if count == 0 and math.isnan(last_close):
        return count, close, var
    if close > 0.0 and last_close > 0.0:
        r = math.log(close / last_close)
        var = r * r if count == 0 else (1.0 - alpha) * var + alpha * r * r
        count += 1
    return count, close, var


def commission_of(notional: float, commission_bps: float, commission_min: float) -> float:
    """Commission of one fill: bps of |notional|, at least the minimum."""
    fee = abs(notional) * commission_bps * 1e-4
    return commission_min if commission_min > fee else fee


@dataclass(slots=True)
class EwmaVol:
    """Per-bar volatility of close-to-close log returns, an EWMA of squared returns.

    `value` is None until `window` returns were seen, so nothing sizes on a noisy estimate.
    """

    window: int
    last_close: float = math.nan
    var: float = 0.0
    count: int = 0

    def update(self, close: float) -> None:
        self.count, self.last_close, self.var = ewma_step(
            self.count, self.last_close, self.var, close, 2.0 / (self.window + 1.0)
        )

    @property
    def value(self) -> float | None:
        return math.sqrt(self.var) if self.count >= self.window else None


def cost_fraction_of(
    spread_bps: float, slippage_bps: float, slippage_vol_mult: float, vol: float
) -> float:
    """The rule of `cost_fraction` on scalars (vol <= 0: unknown, which adds nothing either)."""
    frac = (0.5 * spread_bps + slippage_bps) * 1e-4
    if vol > 0.0 and slippage_vol_mult > 0.0:
        frac += slippage_vol_mult * vol
    return frac


def cost_fraction(costs: CostModel, vol: float | None) -> float:
    """Adverse price fraction of a market fill: half spread + slippage (+ vol-scaled part)."""
    return cost_fraction_of(
        costs.spread_bps,
        costs.slippage_bps,
        costs.slippage_vol_mult,
        vol if vol is not None else 0.0,
    )


def fill_price_of(sign: int, ref_price: float, fraction: float) -> float:
    """Price of a market fill on side `sign` (+1 buy, -1 sell): `fraction` worse than ref."""
    return ref_price * (1.0 + sign * fraction)


def market_fill_price(sign: int, ref_price: float, costs: CostModel, vol: float | None) -> float:
    """Fill price of a market order of side sign (+1 buy, -1 sell) at reference price."""
    return fill_price_of(sign, ref_price, cost_fraction(costs, vol))


def commission(notional: float, costs: CostModel) -> float:
    """Commission of one fill of `notional` (>= 0): bps of notional, at least the minimum."""
    return commission_of(notional, costs.commission_bps, costs.commission_min)


def volume_cap(volume: float, share: float | None) -> float:
    """Most units fillable in a bar: `share` of the volume known before it (never the bar's own);
    inf when uncapped (share 0 or None) or when no volume is known."""
    if not share or volume <= 0.0:
        return math.inf
    return share * volume
