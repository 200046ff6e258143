"""Buy and hold, fully invested: the passive benchmark every strategy table is read against.

No sizing rule, no stop, no risk limit: the cash is split equally across the symbols, each
share is spent on one buy at the first fill the strategies could have had (the bar after the
first decision bar, at its open or close per `StrategyConfig.fill`), the position is marked at
every close and sold at the last bar's close. Costs are paid exactly twice per symbol, once in
and once out, with the strategy's cost model (half spread + slippage in the price, commission on
the notional; volatility-scaled slippage is left out, it needs an estimate the benchmark does
not keep). The buy is sized so that notional plus commission equals the cash it was given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from execution.config import StrategyConfig
from execution.costs import commission, market_fill_price

__all__ = ["BenchmarkError", "BuyAndHoldResult", "buy_and_hold"]

_FILL_COLUMN = {"next_open": "open", "next_close": "close"}


class BenchmarkError(ValueError):
    """Bars a benchmark cannot be computed from."""


@dataclass(frozen=True)
class BuyAndHoldResult:
    equity: pd.Series  # account equity per distinct bar ts (after the exit at the last one)
    exposure: pd.Series  # gross position notional / equity per distinct bar ts
    trades: pd.DataFrame  # one closed round trip per symbol, pnl net of all costs
    turnover_notional: float  # |notional| bought plus sold
    costs_paid: float  # commissions plus spread and slippage, in and out


def buy_and_hold(bars: pd.DataFrame, config: StrategyConfig) -> BuyAndHoldResult:
    """Equal-weight, fully invested buy and hold of every symbol in `bars` (see module doc).

    bars: symbol, ts (tz-aware UTC), open, high, low, close; each symbol needs >= 3 bars (a
    decision bar, a fill bar, and a later bar to sell at).
    """
    needed = {"symbol", "ts", "open", "close"}
    if not needed <= set(bars.columns):
        msg = f"bars need columns {sorted(needed)}, missing {sorted(needed - set(bars.columns))}"
        raise BenchmarkError(msg)
    if not isinstance(bars["ts"].dtype, pd.DatetimeTZDtype):
        msg = "bars.ts must be tz-aware UTC timestamps"
        raise BenchmarkError(msg)
    frame = bars.sort_values(["ts", "symbol"], kind="stable")
    times = pd.DatetimeIndex(frame["ts"].drop_duplicates(), name="ts")
    symbols = sorted(frame["symbol"].astype(str).unique())
    if not symbols:
        msg = "no bars to buy and hold"
        raise BenchmarkError(msg)
    alloc = config.initial_cash / len(symbols)
    costs = config.costs
    column = _FILL_COLUMN[config.fill]
    equity = np.zeros(len(times))
    gross = np.zeros(len(times))
    rows, turnover, paid = [], 0.0, 0.0
    for symbol in symbols:
        own = frame[frame["symbol"].astype(str) == symbol]
        if len(own) < 3:
            msg = f"{symbol}: {len(own)} bars; buy and hold needs at least 3"
            raise BenchmarkError(msg)
        ref_in = float(own[column].iloc[1])
        price_in = market_fill_price(1, ref_in, costs, None)
        # notional + commission(notional) = alloc; the minimum commission may bind instead.
        qty = alloc / (price_in * (1.0 + costs.commission_bps * 1e-4))
        if costs.commission_min > qty * price_in * costs.commission_bps * 1e-4:
            qty = max(0.0, (alloc - costs.commission_min) / price_in)
        fee_in = commission(qty * price_in, costs)
        cash = alloc - qty * price_in - fee_in
        ref_out = float(own["close"].iloc[-1])
        price_out = market_fill_price(-1, ref_out, costs, None)
        fee_out = commission(qty * price_out, costs)
        closes = pd.Series(own["close"].to_numpy(np.float64), index=pd.DatetimeIndex(own["ts"]))
        marks = closes.reindex(times).ffill()
        entry_ts, exit_ts = pd.Timestamp(own["ts"].iloc[1]), pd.Timestamp(own["ts"].iloc[-1])
        held = np.asarray((times >= entry_ts) & (times < exit_ts))
        value = np.where(held, cash + qty * marks.to_numpy(), alloc)
        value[np.asarray(times >= exit_ts)] = cash + qty * price_out - fee_out
        equity += value
        gross += np.where(held, qty * marks.to_numpy(), 0.0)
        pnl = qty * (price_out - price_in) - fee_in - fee_out
        spread_slip = qty * ((price_in - ref_in) + (ref_out - price_out))
        turnover += qty * (price_in + price_out)
        paid += fee_in + fee_out + spread_slip
        rows.append(
            {
                "symbol": symbol,
                "side": "long",
                "quantity": qty,
                "entry_ts": entry_ts,
                "exit_ts": exit_ts,
                "entry_price": price_in,
                "exit_price": price_out,
                "pnl": pnl,
                "commission": fee_in + fee_out,
                "costs": fee_in + fee_out + spread_slip,
            }
        )
    eq = pd.Series(equity, index=times, name="equity")
    return BuyAndHoldResult(
        equity=eq,
        exposure=pd.Series(gross / equity, index=times, name="exposure"),
        trades=pd.DataFrame(rows),
        turnover_notional=turnover,
        costs_paid=paid,
    )
