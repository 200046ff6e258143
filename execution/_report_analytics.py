"""Tables the report shows beside the metrics: calendar returns, drawdown episodes, per-series
and per-fold breakdowns, distribution statistics. Pure pandas, no plotting.

Definitions follow quantstats / pyfolio where they overlap, so the numbers can be compared with
their tearsheets: a drawdown episode runs from the last peak before the curve goes under water
to the first bar back at that peak; calendar returns compound from the previous period's last
value (the first period from the curve's first value).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import pandas as pd

from execution.metrics import returns_from_equity

__all__ = [
    "EXTRA_STAT_LABELS",
    "extra_stats",
    "fold_breakdown",
    "period_returns",
    "relative_stats",
    "series_breakdown",
    "worst_drawdowns",
    "yearly_returns",
]

_UNDERWATER: Final = -1e-12  # equity this far below its peak is in drawdown (not float noise)

EXTRA_STAT_LABELS: Final = {
    "skew": "Skew (per-bar returns)",
    "kurtosis": "Excess kurtosis (per-bar returns)",
    "best_bar": "Best bar",
    "worst_bar": "Worst bar",
    "best_month": "Best month",
    "worst_month": "Worst month",
    "best_year": "Best year",
    "worst_year": "Worst year",
    "positive_months": "Positive months",
    "recovery_factor": "Recovery factor (return / max DD)",
    "ulcer_index": "Ulcer index",
    "avg_win": "Average winning trade",
    "avg_loss": "Average losing trade",
    "payoff_ratio": "Payoff ratio (avg win / avg loss)",
    "max_consecutive_wins": "Most consecutive winning trades",
    "max_consecutive_losses": "Most consecutive losing trades",
    "mean_holding": "Mean holding time",
    "beta": "Beta to the benchmark",
    "alpha": "Alpha to the benchmark (ann.)",
    "correlation": "Correlation with the benchmark",
    "information_ratio": "Information ratio (ann.)",
}


def period_returns(equity: pd.Series, rule: str) -> pd.Series:
    """Compounded returns per calendar period (pandas offset alias: "ME", "YE", "W-SUN")."""
    ends = equity.resample(rule).last().dropna()
    previous = ends.shift(1)
    previous.iloc[0] = float(equity.iloc[0])
    return ends / previous - 1.0


def yearly_returns(equity: pd.Series) -> pd.Series:
    """Calendar-year returns indexed by year; they compound to the total return."""
    rets = period_returns(equity, "YE")
    return pd.Series(rets.to_numpy(), index=pd.Index(rets.index.year, name="year"))


def worst_drawdowns(equity: pd.Series, n: int = 5) -> pd.DataFrame:
    """The `n` deepest drawdown episodes, deepest first.

    Columns: peak (last bar at the high-water mark), trough, recovery (first bar back at the
    peak; NaT while still under water), depth (a negative return), bars (peak to recovery or to
    the last bar), duration (the same as time).
    """
    values = equity.to_numpy(dtype=float)
    index = equity.index
    dd = values / np.maximum.accumulate(values) - 1.0
    under = dd < _UNDERWATER
    rows: list[dict[str, Any]] = []
    pos = 0
    while pos < len(values):
        if not under[pos]:
            pos += 1
            continue
        start = pos
        while pos < len(values) and under[pos]:
            pos += 1
        peak = max(start - 1, 0)
        trough = start + int(np.argmin(dd[start:pos]))
        recovered = pos < len(values)
        end = pos if recovered else len(values) - 1
        rows.append(
            {
                "peak": index[peak],
                "trough": index[trough],
                "recovery": index[pos] if recovered else pd.NaT,
                "depth": float(dd[trough]),
                "bars": end - peak,
                "duration": index[end] - index[peak],
            }
        )
    columns = ["peak", "trough", "recovery", "depth", "bars", "duration"]
    if not rows:
        return pd.DataFrame(columns=columns, index=pd.RangeIndex(0, name="rank"))
    table = pd.DataFrame(rows, columns=columns).sort_values("depth", kind="stable").head(n)
    table.index = pd.RangeIndex(1, len(table) + 1, name="rank")
    return table


def _max_run(flags: np.ndarray) -> int:
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def relative_stats(
    equity: pd.Series, benchmark: pd.Series, periods_per_year: float
) -> dict[str, float]:
    """Beta, annualised alpha (mean of r - beta * r_b, times bars per year), correlation and
    information ratio of per-bar returns against the benchmark's, on the bars both have."""
    both = pd.concat(
        [returns_from_equity(equity), returns_from_equity(benchmark)], axis=1, join="inner"
    ).dropna()
    nan = {"beta": math.nan, "alpha": math.nan, "correlation": math.nan}
    if len(both) < 3:
        return {**nan, "information_ratio": math.nan}
    r, rb = both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy()
    var_b = float(np.var(rb, ddof=1))
    out = dict(nan)
    if var_b > 0:
        beta = float(np.cov(r, rb, ddof=1)[0, 1] / var_b)
        out["beta"] = beta
        out["alpha"] = float(np.mean(r - beta * rb) * periods_per_year)
        if float(np.std(r, ddof=1)) > 0:
            out["correlation"] = float(np.corrcoef(r, rb)[0, 1])
    active = r - rb
    sd = float(np.std(active, ddof=1))
    out["information_ratio"] = (
        float(np.mean(active) / sd * math.sqrt(periods_per_year)) if sd > 0 else math.nan
    )
    return out


def extra_stats(
    equity: pd.Series,
    trades: pd.DataFrame,
    benchmark: pd.Series | None = None,
    periods_per_year: float | None = None,
) -> dict[str, Any]:
    """Distribution and trade statistics quantstats and pyfolio show beyond the core metrics;
    with `benchmark` (its equity) and `periods_per_year`, also beta, alpha, correlation and
    information ratio against it."""
    rets = returns_from_equity(equity)
    months = period_returns(equity, "ME")
    years = period_returns(equity, "YE")
    dd = equity / equity.cummax() - 1.0
    mdd = float(dd.min())
    total = float(equity.iloc[-1] / equity.iloc[0] - 1.0)
    pnl = trades["pnl"].to_numpy(dtype=float) if len(trades) else np.array([])
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    avg_win = float(wins.mean()) if len(wins) else math.nan
    avg_loss = float(losses.mean()) if len(losses) else math.nan
    holding = math.nan
    if len(trades) and {"entry_ts", "exit_ts"} <= set(trades.columns):
        holding = pd.Timedelta((trades["exit_ts"] - trades["entry_ts"]).mean())
    flat = len(rets) < 3 or float(rets.std(ddof=1)) == 0.0
    return {
        "skew": math.nan if flat else float(rets.skew()),
        "kurtosis": math.nan if flat else float(rets.kurt()),
        "best_bar": float(rets.max()) if len(rets) else math.nan,
        "worst_bar": float(rets.min()) if len(rets) else math.nan,
        "best_month": float(months.max()),
        "worst_month": float(months.min()),
        "best_year": float(years.max()),
        "worst_year": float(years.min()),
        "positive_months": float((months > 0).mean()),
        "recovery_factor": total / abs(mdd) if mdd < 0 else math.nan,
        "ulcer_index": float(np.sqrt(np.mean(np.square(dd.to_numpy())))),
        "avg_win": avg_win,
        "avg_loss": avg_loss,
        "payoff_ratio": avg_win / abs(avg_loss) if len(wins) and len(losses) else math.nan,
        "max_consecutive_wins": _max_run(pnl > 0),
        "max_consecutive_losses": _max_run(pnl < 0),
        "mean_holding": holding,
        **(
            relative_stats(equity, benchmark, periods_per_year)
            if benchmark is not None and periods_per_year
            else dict.fromkeys(("beta", "alpha", "correlation", "information_ratio"), math.nan)
        ),
    }


def _profit_factor(pnl: pd.Series) -> float:
    gross_loss = -float(pnl[pnl < 0].sum())
    gross_win = float(pnl[pnl > 0].sum())
    if gross_loss == 0.0:
        return math.inf if gross_win > 0 else math.nan
    return gross_win / gross_loss


def series_breakdown(
    strategies: Mapping[str, tuple[pd.DataFrame, float]],
    prices: Mapping[str, pd.Series] | None = None,
) -> pd.DataFrame:
    """One row per (strategy, symbol) from round-trip trades.

    `strategies` maps a name to (trades, starting equity). Contribution is the symbol's net P&L
    over the starting equity, so a strategy's contributions sum to its closed-trade return. With
    `prices` (close per symbol over the report's span) each row also carries the symbol's own
    buy-and-hold return for comparison.
    """
    rows = []
    for name, (trades, start_equity) in strategies.items():
        if not len(trades) or "symbol" not in trades.columns:
            continue
        for symbol, group in trades.groupby("symbol", sort=True):
            pnl = group["pnl"].astype(float)
            row: dict[str, Any] = {
                "strategy": name,
                "symbol": str(symbol),
                "trades": len(group),
                "net_pnl": float(pnl.sum()),
                "contribution": float(pnl.sum()) / start_equity,
                "win_rate": float((pnl > 0).mean()),
                "profit_factor": _profit_factor(pnl),
                "avg_pnl": float(pnl.mean()),
                "costs": float(group["costs"].sum()) if "costs" in group else math.nan,
            }
            if {"entry_ts", "exit_ts"} <= set(group.columns):
                row["mean_holding"] = pd.Timedelta((group["exit_ts"] - group["entry_ts"]).mean())
            if prices is not None and symbol in prices and len(prices[symbol]) > 1:
                close = prices[symbol]
                row["symbol_buy_and_hold"] = float(close.iloc[-1] / close.iloc[0] - 1.0)
            rows.append(row)
    return pd.DataFrame(rows)


def fold_breakdown(
    folds: pd.DataFrame, trades_by_strategy: Mapping[str, pd.DataFrame]
) -> pd.DataFrame:
    """`folds` with, per strategy, the net P&L and trade count of trades entered on the fold's
    symbol inside its out-of-sample window [start, end].

    `folds` needs columns symbol, start and end (tz-aware); other columns pass through.
    """
    out = folds.copy()
    for name, trades in trades_by_strategy.items():
        pnl_col, n_col = [], []
        has = len(trades) and {"symbol", "entry_ts"} <= set(trades.columns)
        for row in folds.itertuples(index=False):
            if not has:
                pnl_col.append(0.0)
                n_col.append(0)
                continue
            entered = trades["entry_ts"]
            mask = (trades["symbol"] == row.symbol) & (entered >= row.start) & (entered <= row.end)
            pnl_col.append(float(trades.loc[mask, "pnl"].sum()))
            n_col.append(int(mask.sum()))
        out[f"{name} P&L"] = pnl_col
        out[f"{name} trades"] = n_col
    return out
