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
    "cost_fraction",
    "market_fill_price",
    "volume_cap",
]


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
        if self.count == 0 and math.isnan(self.last_close):
            self.last_close = close
            return
        if close > 0.0 and self.last_close > 0.0:
            r = math.log(close / self.last_close)
            if self.count == 0:
                self.var = r * r
            else:
                alpha = 2.0 / (self.window + 1.0)
                self.var = (1.0 - alpha) * self.var + alpha * r * r
            self.count += 1
        self.last_close = close

    @property
    def value(self) -> float | None:
        return math.sqrt(self.var) if self.count >= self.window else None


def cost_fraction(costs: CostModel, vol: float | None) -> float:
    """Adverse price fraction of a market fill: half spread + slippage (+ vol-scaled part)."""
    frac = (0.5 * costs.spread_bps + costs.slippage_bps) * 1e-4
    if vol is not None and costs.slippage_vol_mult > 0.0:
        frac += costs.slippage_vol_mult * vol
    return frac


def market_fill_price(sign: int, ref_price: float, costs: CostModel, vol: float | None) -> float:
    """Fill price of a market order of side sign (+1 buy, -1 sell) at reference price."""
    return ref_price * (1.0 + sign * cost_fraction(costs, vol))


def commission(notional: float, costs: CostModel) -> float:
    """Commission of one fill of `notional` (>= 0): bps of notional, at least the minimum."""
    return max(abs(notional) * costs.commission_bps * 1e-4, costs.commission_min)


def volume_cap(volume: float, costs: CostModel) -> float:
    """Most units fillable in a bar; inf when uncapped or when the venue reports no volume."""
    share = costs.max_volume_share
    if not share or volume <= 0.0:
        return math.inf
    return share * volume
