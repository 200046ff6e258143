"""The backtest: the live per-bar sequence replayed over history with the PaperBroker.

For each bar in (ts, symbol) order: the broker fills what was queued and reports it as order
events, every event goes through `engine.on_event`, `engine.on_bar` decides at the bar's close
with the prediction made from that close, and its commands go to the broker (cancels, then
orders), whose answers go through `engine.on_event` too. The live dataflow runs the same
sequence, so the same bars and predictions give the same orders, fills and equity.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from execution import _fast
from execution.broker import submit_order
from execution.config import StrategyConfig
from execution.costs import EwmaVol
from execution.decision import is_builtin_rule
from execution.domain import Fill, Order, Position
from execution.engine import (
    EngineState,
    SymbolState,
    WorkingOrder,
    equity,
    new_state,
    on_bar,
    on_event,
    unrealized_pnl,
)
from execution.ledger import OpenTrade, TradeRecord
from execution.metrics import Metrics, compute_metrics
from execution.orders import Cancel, OrderEvent, OrderState
from execution.paper import PaperBroker, protective_client_id
from execution.risk import RiskGovernor
from execution.signal import Bar, Prediction
from execution.stops import AtrEstimator

__all__ = [
    "BACKTEST_PATHS",
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
BACKTEST_PATHS = ("auto", "reference", "fast")


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
    bars: pd.DataFrame,
    predictions: pd.DataFrame,
    config: StrategyConfig,
    *,
    path: str = "auto",
) -> BacktestResult:
    """Replay bars (one or several symbols) with predictions through engine + PaperBroker.

    A prediction at (symbol, ts) was made from that bar's close and is acted on at that close;
    its orders fill at the next bar of the symbol (open or close per `config.fill`). The input
    frames are not modified.

    `path` picks the implementation: "auto" runs the compiled kernel of `execution._fast`
    (one symbol or a portfolio) where it applies (numba importable, inputs it covers) and the
    reference loop otherwise; "reference" always runs the loop; "fast" runs the kernel or raises
    BacktestError saying why it does not apply. Both give identical results; the choice and
    the reason for a fallback are logged (DEBUG; INFO when the kernel ran and handed over).
    """
    if path not in BACKTEST_PATHS:
        msg = f"path must be one of {BACKTEST_PATHS}, got {path!r}"
        raise BacktestError(msg)
    if path != "reference":
        result, reason = _try_fast(bars, predictions, config)
        if result is not None:
            logger.debug("backtest %s ran the compiled fast path", config.strategy)
            return result
        if path == "fast":
            msg = f"the fast backtest path does not apply: {reason}"
            raise BacktestError(msg)
        logger.debug("backtest %s runs the reference loop: %s", config.strategy, reason)
    else:
        logger.debug("backtest %s runs the reference loop: requested", config.strategy)
    frame, proba = _prepare(bars, predictions)
    return _run_reference(frame, proba, config)


def _run_reference(
    frame: pd.DataFrame, proba: np.ndarray, config: StrategyConfig
) -> BacktestResult:
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
        events: list[OrderEvent] = broker.on_bar(bar)
        if events:
            broker.poll_events()
            for event in events:
                state, closed = on_event(state, event, config)
                if closed:
                    trades.extend(closed)
                if isinstance(event, Fill):
                    all_fills.append(event)
        pred = Prediction(symbols[i], times[i], pd_[i], pf_[i], pu_[i]) if has_pred[i] else None
        state, commands = on_bar(state, bar, pred, config, governor)
        for command in commands:
            if isinstance(command, Cancel):
                answer = broker.cancel(command)
            else:
                orders.append(command)
                answer = submit_order(broker, command, command.ts)
            for event in answer:
                state, _ = on_event(state, event, config)
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
    return BacktestResult(
        orders=_frame(order_rows, ORDER_COLUMNS),
        fills=_frame(fill_rows, FILL_COLUMNS),
        trades=_frame(trade_rows, TRADE_COLUMNS),
        positions=_positions_frame(state),
        equity=pd.Series(eq_values, index=index, name="equity", dtype=np.float64),
        exposure=pd.Series(exposure, index=index, name="exposure", dtype=np.float64),
        config=config,
        final_state=state,
    )


def _positions_frame(state: EngineState) -> pd.DataFrame:
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
    return _frame(pos_rows, POSITION_COLUMNS)


# -- the compiled fast path --------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _note_reference_loop(rule: str, reason: str) -> None:
    """Say once per process and rule, at INFO, why its backtests are not compiled (each is
    then many times slower; the fallback itself is logged at DEBUG per backtest)."""
    logger.info("event=backtest_reference_loop rule=%s reason=%s", rule, reason)


def _try_fast(
    bars: pd.DataFrame, predictions: pd.DataFrame, config: StrategyConfig
) -> tuple[BacktestResult | None, str]:
    """The fast path's result, or (None, why it does not apply)."""
    if not _fast.available():
        return None, "numba is not installed"
    if not is_builtin_rule(config.rule):  # the kernel compiles the built-in decision only
        reason = f"the strategy rule {config.rule} is not the built-in one"
        _note_reference_loop(config.rule, reason)
        return None, reason
    inputs, reason = _fast.prepare(bars, predictions)
    if inputs is None:
        return None, reason
    if inputs.unmatched:
        logger.warning("%d predictions match no bar and are ignored", inputs.unmatched)
    n = len(inputs.ts)
    logger.info(
        "backtest %s: %d bars, %d predictions", config.strategy, n, int(inputs.has_pred.sum())
    )
    out = _fast.run_kernel(inputs, config)
    if out.status != _fast.STATUS_OK:
        reason = f"the kernel stopped with status {out.status}; the reference loop decides"
        logger.info("backtest %s: %s", config.strategy, reason)
        return None, reason
    return _fast_result(inputs, out, config), ""


def _client_ids(
    strategy: str, symbol: str, timeframe: str, bar_ns: np.ndarray, intents: np.ndarray
) -> np.ndarray:
    """make_client_id for many (bar ts, intent) pairs at once, as bytes (an "S18" array)."""
    prefix = f"{strategy}|{symbol}|{timeframe}|".encode()
    suffix = np.char.add(b"|", np.asarray(intents).astype("S"))
    return _fast.client_ids(np.char.add(np.char.add(prefix, _fast.iso_utc(bar_ns)), suffix))


def _protective_client_ids(entry_ids: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """protective_client_id of many entries' ids ("S18"), of their stop where `stop`, else of
    their take profit."""
    kinds = np.where(stop, b"|stop", b"|take_profit")
    return _fast.client_ids(np.char.add(entry_ids, kinds))


# A frame built from Python strs holds this dtype (Arrow-backed from pandas 3, object before).
_STR_DTYPE = pd.DataFrame({"x": ["x"]})["x"].dtype


def _strings(values: pa.Array) -> Any:
    """A text column as a frame built from Python strs holds it, from Arrow strings."""
    if isinstance(_STR_DTYPE, pd.StringDtype):
        return pd.array(values, dtype=_STR_DTYPE)
    return values.to_numpy(zero_copy_only=False)


def _taken(names: tuple[str, ...] | list[str], codes: np.ndarray) -> Any:
    """The text column names[codes]."""
    return _strings(pa.array(names, type=pa.string()).take(pa.array(codes)))


def _decoded(values: np.ndarray) -> Any:
    """The text column of ASCII bytes values (an "S" array)."""
    return _strings(pa.array(values, type=pa.binary()).cast(pa.string()))


def _utc_us(ns: np.ndarray) -> pd.DatetimeIndex:
    # The reference frames hold Python datetimes, which pandas stores at microsecond resolution.
    return pd.DatetimeIndex(ns.astype("datetime64[ns]").astype("datetime64[us]")).tz_localize("UTC")


def _levels(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """A stop / take-profit column as the reference builds it: float with NaN, or all None."""
    if present.any():
        return np.where(present, values, np.nan)
    return np.full(len(values), None, dtype=object)


def _order_client_ids(
    inputs: _fast.FastInputs, out: _fast.FastOutputs, config: StrategyConfig
) -> np.ndarray:
    """make_client_id of every order the kernel sent, symbol by symbol ("S18")."""
    n_ord = len(out.orders_f)
    cids = np.empty(n_ord, dtype=f"S{_fast.CLIENT_ID_LENGTH}")
    order_sym = out.orders_i[:, 9]
    intents = np.where(out.orders_i[:, 2] == 1, b"entry", b"exit")
    for s, (sym, tf) in enumerate(zip(inputs.symbols, inputs.timeframes, strict=True)):
        mine = np.flatnonzero(order_sym == s) if len(inputs.symbols) > 1 else np.arange(n_ord)
        if len(mine):
            bar_ns = inputs.ts[out.orders_i[mine, 0]]
            cids[mine] = _client_ids(config.strategy, sym, tf, bar_ns, intents[mine])
    return cids


def _fast_result(
    inputs: _fast.FastInputs, out: _fast.FastOutputs, config: StrategyConfig
) -> BacktestResult:
    ts = inputs.ts
    n_ord, n_fill, n_trade = len(out.orders_f), len(out.fills_f), len(out.trades_f)
    sides = ["sell", "buy"]

    order_bar = out.orders_i[:, 0]
    order_cids = _order_client_ids(inputs, out, config)
    if n_ord:
        orders = pd.DataFrame(
            {
                "client_id": _decoded(order_cids),
                "symbol": _taken(inputs.symbols, out.orders_i[:, 9]),
                "side": _taken(sides, (out.orders_i[:, 1] > 0).astype(np.int64)),
                "quantity": out.orders_f[:, 0],
                "ts": _utc_us(inputs.close_ts[order_bar]),
                "intent": _taken(["exit", "entry"], out.orders_i[:, 2]),
                "stop_loss": _levels(out.orders_f[:, 1], out.orders_i[:, 3] == 1),
                "take_profit": _levels(out.orders_f[:, 2], out.orders_i[:, 4] == 1),
            },
            columns=list(ORDER_COLUMNS),
        )
    else:
        orders = _frame([], ORDER_COLUMNS)

    if n_fill:
        source = out.fills_i[:, 2]
        fill_cids = np.empty(n_fill, dtype=order_cids.dtype)
        mine = source >= 0
        fill_cids[mine] = order_cids[source[mine]]
        protective = ~mine
        if protective.any():
            fill_cids[protective] = _protective_client_ids(
                order_cids[out.fills_i[protective, 4]], source[protective] == _fast.SOURCE_STOP
            )
        fill_numbers = np.arange(1, n_fill + 1).astype(f"S{len(str(n_fill))}")
        fills = pd.DataFrame(
            {
                "client_id": _decoded(fill_cids),
                "symbol": _taken(inputs.symbols, out.fills_i[:, 5]),
                "side": _taken(sides, (out.fills_i[:, 1] > 0).astype(np.int64)),
                "quantity": out.fills_f[:, 0],
                "price": out.fills_f[:, 1],
                "commission": out.fills_f[:, 2],
                "slippage_cost": out.fills_f[:, 3],
                "ts": _utc_us(out.fills_i[:, 3]),
                "venue_fill_id": _decoded(np.char.add(b"paper-", fill_numbers)),
            },
            columns=list(FILL_COLUMNS),
        )
    else:
        fills = _frame([], FILL_COLUMNS)

    if n_trade:
        trades = pd.DataFrame(
            {
                "symbol": _taken(inputs.symbols, out.trades_i[:, 3]),
                "side": _taken(["short", "long"], (out.trades_i[:, 0] > 0).astype(np.int64)),
                "quantity": out.trades_f[:, 0],
                "entry_ts": _utc_us(out.trades_i[:, 1]),
                "exit_ts": _utc_us(out.trades_i[:, 2]),
                "entry_price": out.trades_f[:, 1],
                "exit_price": out.trades_f[:, 2],
                "pnl": out.trades_f[:, 3],
                "commission": out.trades_f[:, 4],
                "costs": out.trades_f[:, 5],
            },
            columns=list(TRADE_COLUMNS),
        )
    else:
        trades = _frame([], TRADE_COLUMNS)

    state = _fast_state(inputs, out, config, order_cids)
    last = inputs.last_of_ts
    single = len(inputs.symbols) == 1  # every bar is the last of its ts: no copies
    eq_ts = ts if single else ts[last]
    index = pd.DatetimeIndex(
        eq_ts.view("datetime64[ns]"), dtype="datetime64[ns, UTC]", name="ts", copy=False
    )
    eq_values = out.equity if single else out.equity[last]
    exposure = out.exposure if single else out.exposure[last]
    return BacktestResult(
        orders=orders,
        fills=fills,
        trades=trades,
        positions=_positions_frame(state),
        equity=pd.Series(eq_values, index=index, name="equity", dtype=np.float64, copy=False),
        exposure=pd.Series(exposure, index=index, name="exposure", dtype=np.float64, copy=False),
        config=config,
        final_state=state,
    )


def _py_utc(ns: int) -> datetime:
    return pd.Timestamp(int(ns), tz="UTC").to_pydatetime()


def _fast_state(
    inputs: _fast.FastInputs,
    out: _fast.FastOutputs,
    config: StrategyConfig,
    order_cids: np.ndarray,
) -> EngineState:
    """The EngineState the reference loop would end with, from the kernel's final state."""
    f = _fast
    gf, gi = out.account_f, out.account_i
    state = new_state(config)
    state.cash = float(gf[f.GF_CASH])
    for s in out.open_order.tolist():
        sym, sf = inputs.symbols[s], out.symbol_f[s]
        state.positions[sym] = Position(sym, float(sf[f.YF_POS_Q]), float(sf[f.YF_POS_AVG]))
    opened: list[tuple[int, int]] = []
    for s, sym in enumerate(inputs.symbols):
        sf, si = out.symbol_f[s], out.symbol_i[s]
        state.marks[sym] = float(sf[f.YF_MARK])
        state.symbols[sym] = _fast_symbol_state(sf, si, out, config, order_cids, s)
        state.symbols[sym].last_ts = _py_utc(inputs.ts[inputs.last_bar[s]])
        if si[f.YI_HAS_TRADE]:
            opened.append((int(si[f.YI_T_FILL]), s))
    for _, s in sorted(opened):
        sym, sf, si = inputs.symbols[s], out.symbol_f[s], out.symbol_i[s]
        state.open_trades[sym] = OpenTrade(
            sym,
            int(si[f.YI_T_DIR]),
            _py_utc(si[f.YI_T_ETS]),
            float(sf[f.YF_T_EQ]),
            float(sf[f.YF_T_EN]),
            float(sf[f.YF_T_XQ]),
            float(sf[f.YF_T_XN]),
            float(sf[f.YF_T_REAL]),
            float(sf[f.YF_T_COM]),
            float(sf[f.YF_T_SLIP]),
        )
    state.peak_equity = float(gf[f.GF_PEAK])
    state.last_equity = float(gf[f.GF_LAST_EQ])
    state.day = date.fromordinal(_EPOCH_ORDINAL + int(gi[f.GI_CUR_DAY]))
    state.day_start_equity = float(gf[f.GF_DSE])
    state.trades_today = int(gi[f.GI_TRADES_TODAY])
    state.seq = int(gi[f.GI_N_EVENTS]) + len(inputs.ts)
    return state


def _fast_symbol_state(
    sf: np.ndarray,
    si: np.ndarray,
    out: _fast.FastOutputs,
    config: StrategyConfig,
    order_cids: np.ndarray,
    s: int,
) -> SymbolState:
    f = _fast
    atr = AtrEstimator(config.stops.atr_period)
    atr.prev_close, atr.atr, atr.count = (
        float(sf[f.YF_ATR_PC]),
        float(sf[f.YF_ATR]),
        int(si[f.YI_ATR_CNT]),
    )
    vol = EwmaVol(config.vol_window, float(sf[f.YF_V_LAST]), float(sf[f.YF_V_VAR]))
    vol.count = int(si[f.YI_V_CNT])
    ss = SymbolState(atr, vol, direction=int(si[f.YI_E_DIR]))
    for k in out.pending[s].tolist():
        if k < 0:  # a protective order the broker opened for entry order YI_PROT_K
            kind = "stop" if k == f.SOURCE_STOP else "take_profit"
            cid = protective_client_id(order_cids[int(si[f.YI_PROT_K])].decode(), kind)
            ss.orders[cid] = WorkingOrder(
                cid,
                -int(si[f.YI_B_DIR]),
                float(sf[f.YF_PROT_Q]),
                kind,
                state=OrderState.ACCEPTED,
            )
            continue
        entry = out.orders_i[k, 2] == 1
        cid = order_cids[k].decode()
        ss.orders[cid] = WorkingOrder(
            cid,
            int(out.orders_i[k, 1]),
            float(out.orders_f[k, 4]),
            "entry" if entry else "exit",
            float(out.orders_f[k, 1]) if out.orders_i[k, 3] else None,
            float(out.orders_f[k, 2]) if out.orders_i[k, 4] else None,
            OrderState.ACCEPTED if out.orders_i[k, 8] == 1 else OrderState.PARTIALLY_FILLED,
        )
    ss.stop = float(sf[f.YF_E_STOP]) if si[f.YI_E_HAS_STOP] else None
    ss.take_profit = float(sf[f.YF_E_TP]) if si[f.YI_E_HAS_TP] else None
    ss.extreme = float(sf[f.YF_E_EXT])
    ss.protect_ts = _py_utc(si[f.YI_E_PROT_TS]) if si[f.YI_E_HAS_PROT_TS] else None
    return ss


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
