"""The backtest: the live per-bar sequence replayed over history with the PaperBroker.

For each bar in (ts, symbol) order: the broker fills what was queued, every fill goes through
`engine.on_fill`, `engine.on_bar` decides at the bar's close with the prediction made from that
close, and the orders go to the broker. The live dataflow runs the same sequence, so the same
bars and predictions give the same orders, fills and equity.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from execution.config import StrategyConfig
from execution.domain import Fill, Order
from execution.engine import EngineState, equity, new_state, on_bar, on_fill, unrealized_pnl
from execution.ledger import TradeRecord
from execution.metrics import Metrics, compute_metrics
from execution.paper import PaperBroker
from execution.risk import RiskGovernor
from execution.signal import Bar, Prediction

__all__ = [
    "FILL_COLUMNS",
    "ORDER_COLUMNS",
    "POSITION_COLUMNS",
    "TRADE_COLUMNS",
    "BacktestError",
    "BacktestResult",
    "run_backtest",
]

logger = logging.getLogger(__name__)

ORDER_COLUMNS = (
    "client_id",
    "symbol",
    "side",
    "quantity",
    "ts",
    "intent",
    "stop_loss",
    "take_profit",
)
FILL_COLUMNS = (
    "client_id",
    "symbol",
    "side",
    "quantity",
    "price",
    "commission",
    "slippage_cost",
    "ts",
    "venue_fill_id",
)
TRADE_COLUMNS = tuple(f.name for f in fields(TradeRecord))
POSITION_COLUMNS = ("symbol", "quantity", "avg_price", "mark", "unrealized_pnl")
_BAR_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")
_PRED_COLUMNS = ("symbol", "ts", "p_down", "p_flat", "p_up")
_TS_COLUMNS = {"ts", "entry_ts", "exit_ts"}


class BacktestError(ValueError):
    """Bars or predictions the backtest cannot run on."""


@dataclass(frozen=True)
class BacktestResult:
    orders: pd.DataFrame  # ORDER_COLUMNS, one row per order sent to the broker
    fills: pd.DataFrame  # FILL_COLUMNS, including protective stop / take-profit fills
    trades: pd.DataFrame  # TRADE_COLUMNS, one row per closed round trip, pnl net of costs
    positions: pd.DataFrame  # POSITION_COLUMNS, the positions open at the end
    equity: pd.Series  # account equity per distinct bar ts, after all symbols of that ts
    exposure: pd.Series  # gross position notional / equity per distinct bar ts
    config: StrategyConfig
    final_state: EngineState

    @property
    def unrealized_pnl(self) -> float:
        """P&L of the trades still open, net of the commissions they paid."""
        return unrealized_pnl(self.final_state)

    def metrics(self, **kwargs: Any) -> Metrics:
        """compute_metrics over this result; kwargs go through (n_trials, risk_free, ...)."""
        turnover = float((self.fills["quantity"] * self.fills["price"]).abs().sum())
        costs = float(self.fills["commission"].sum() + self.fills["slippage_cost"].sum())
        return compute_metrics(
            self.equity,
            self.trades,
            periods_per_year=self.config.periods_per_year,
            exposure=self.exposure,
            turnover_notional=turnover,
            costs_paid=costs,
            **kwargs,
        )


def _frame(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    for col in columns:
        if col in _TS_COLUMNS:
            frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def _prepare(bars: pd.DataFrame, predictions: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Bars sorted by (ts, symbol) and the (n, 3) prediction matrix aligned to them (NaN = none)."""
    missing = [c for c in _BAR_COLUMNS if c not in bars.columns]
    if missing:
        msg = f"bars are missing columns: {', '.join(missing)}"
        raise BacktestError(msg)
    missing = [c for c in _PRED_COLUMNS if c not in predictions.columns]
    if missing:
        msg = f"predictions are missing columns: {', '.join(missing)}"
        raise BacktestError(msg)
    for name, frame in (("bars", bars), ("predictions", predictions)):
        if not isinstance(frame["ts"].dtype, pd.DatetimeTZDtype):
            msg = f"{name}.ts must be tz-aware UTC timestamps, got {frame['ts'].dtype}"
            raise BacktestError(msg)
        if frame.duplicated(["symbol", "ts"]).any():
            msg = f"{name} hold duplicate (symbol, ts) rows"
            raise BacktestError(msg)
    cols = [c for c in (*_BAR_COLUMNS, "timeframe") if c in bars.columns]
    b = bars.loc[:, cols].copy()
    b["ts"] = b["ts"].dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    b["symbol"] = b["symbol"].astype(str)
    b = b.sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)
    prices = b[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)
    if not np.isfinite(prices).all():
        msg = "bars hold NaN or infinite prices or volumes"
        raise BacktestError(msg)
    p = predictions.loc[:, list(_PRED_COLUMNS)].copy()
    p["ts"] = p["ts"].dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    p["symbol"] = p["symbol"].astype(str)
    merged = b[["symbol", "ts"]].merge(p, on=["symbol", "ts"], how="left", validate="1:1")
    proba = merged[["p_down", "p_flat", "p_up"]].to_numpy(np.float64)
    unmatched = len(p) - int(np.isfinite(proba).all(axis=1).sum())
    if unmatched:
        logger.warning("%d predictions match no bar and are ignored", unmatched)
    return b, proba


def run_backtest(
    bars: pd.DataFrame, predictions: pd.DataFrame, config: StrategyConfig
) -> BacktestResult:
    """Replay bars (one or several symbols) with predictions through engine + PaperBroker.

    A prediction at (symbol, ts) was made from that bar's close and is acted on at that close;
    its orders fill at the next bar of the symbol (open or close per `config.fill`). The input
    frames are not modified.
    """
    frame, proba = _prepare(bars, predictions)
    n = len(frame)
    symbols = frame["symbol"].tolist()
    times = list(frame["ts"].dt.to_pydatetime())
    tfs = frame["timeframe"].astype(str).tolist() if "timeframe" in frame.columns else [""] * n
    o, h, lo, c, v = (
        frame[k].to_numpy(np.float64).tolist() for k in ("open", "high", "low", "close", "volume")
    )
    ts_ns = frame["ts"].to_numpy("datetime64[ns]").view(np.int64)
    last_of_ts = np.ones(n, dtype=bool)
    if n > 1:
        last_of_ts[:-1] = ts_ns[1:] != ts_ns[:-1]
    has_pred = np.isfinite(proba).all(axis=1).tolist()
    pd_, pf_, pu_ = (proba[:, k].tolist() for k in range(3))
    last_list = last_of_ts.tolist()

    broker = PaperBroker(config)
    governor = RiskGovernor(config.risk)
    state = new_state(config)
    orders: list[Order] = []
    all_fills: list[Fill] = []
    trades: list[TradeRecord] = []
    eq_values: list[float] = []
    exposure: list[float] = []
    logger.info("backtest %s: %d bars, %d predictions", config.strategy, n, int(sum(has_pred)))
    for i in range(n):
        bar = Bar(symbols[i], tfs[i], times[i], o[i], h[i], lo[i], c[i], v[i])
        fills = broker.on_bar(bar)
        if fills:
            broker.poll_fills()
            for fill in fills:
                state, closed = on_fill(state, fill, config)
                if closed:
                    trades.extend(closed)
            all_fills.extend(fills)
        pred = Prediction(symbols[i], times[i], pd_[i], pf_[i], pu_[i]) if has_pred[i] else None
        state, new_orders = on_bar(state, bar, pred, config, governor)
        for order in new_orders:
            broker.submit(order)
            orders.append(order)
        if last_list[i]:
            eq = equity(state)
            eq_values.append(eq)
            gross = sum(abs(p.quantity) * state.marks[s] for s, p in state.positions.items())
            exposure.append(gross / eq if eq != 0 else np.nan)

    index = pd.DatetimeIndex(frame["ts"][last_of_ts], name="ts")
    return _result(config, state, orders, all_fills, trades, eq_values, exposure, index)


def _result(
    config: StrategyConfig,
    state: EngineState,
    orders: list[Order],
    fills: list[Fill],
    trades: list[TradeRecord],
    eq_values: list[float],
    exposure: list[float],
    index: pd.DatetimeIndex,
) -> BacktestResult:
    order_rows = [
        {
            "client_id": x.client_id,
            "symbol": x.symbol,
            "side": x.side.value,
            "quantity": x.quantity,
            "ts": x.ts,
            "intent": x.intent,
            "stop_loss": x.stop_loss,
            "take_profit": x.take_profit,
        }
        for x in orders
    ]
    fill_rows = [
        {
            "client_id": f.client_id,
            "symbol": f.symbol,
            "side": f.side.value,
            "quantity": f.quantity,
            "price": f.price,
            "commission": f.commission,
            "slippage_cost": f.slippage_cost,
            "ts": f.ts,
            "venue_fill_id": f.venue_fill_id,
        }
        for f in fills
    ]
    trade_rows = [{k: getattr(t, k) for k in TRADE_COLUMNS} for t in trades]
    pos_rows = []
    for sym, pos in sorted(state.positions.items()):
        trade = state.open_trades.get(sym)
        mark = state.marks[sym]
        pos_rows.append(
            {
                "symbol": sym,
                "quantity": pos.quantity,
                "avg_price": pos.avg_price,
                "mark": mark,
                "unrealized_pnl": trade.unrealized(pos.quantity, pos.avg_price, mark)
                if trade
                else 0.0,
            }
        )
    return BacktestResult(
        orders=_frame(order_rows, ORDER_COLUMNS),
        fills=_frame(fill_rows, FILL_COLUMNS),
        trades=_frame(trade_rows, TRADE_COLUMNS),
        positions=_frame(pos_rows, POSITION_COLUMNS),
        equity=pd.Series(eq_values, index=index, name="equity", dtype=np.float64),
        exposure=pd.Series(exposure, index=index, name="exposure", dtype=np.float64),
        config=config,
        final_state=state,
    )
