"""Compiled fast path of the backtest: the reference loop's sequence in one kernel.

`execution.backtest.run_backtest` dispatches here when numba is importable, for one symbol or a
portfolio of several (the bars merged on one time axis in (ts, symbol) order, as the reference
loop runs them: one account, shared cash and equity, the risk governor's portfolio limits).
Inputs the reference loop would reject, sub-microsecond timestamps, a symbol whose bars carry
several timeframes, and the two kernel statuses below go to the reference loop of engine +
PaperBroker, which is the definition of the behaviour.

The trading rules are not repeated here: the kernel calls the compiled forms of the very scalar
functions the reference runs (`ledger.apply_to_position` / `closing_quantity` / `crosses_zero`,
the trade accounting and `in_flight_units` / `committed_direction` / `fully_filled`,
`stops.atr_step` / `trail_stop` / `trigger_code` / `distance_of` / `levels_of` /
`opens_protection`, `costs.ewma_step` / `commission_of` / `cost_fraction_of` / `fill_price_of` /
`volume_cap`, `sizing.target_units`, `risk.risk_allowed`, `decision.decide_direction`,
`instruments.round_units`, `paper.affordable_units` / `cash_limited_quantity` /
`end_of_bar_step` / `fill_complete`). What lives here is only the sequencing: the order
lifecycle of `PaperBroker.on_bar` and `engine.on_event` / `on_bar` over arrays.
tests/execution/test_fast_path.py and test_fast_portfolio.py hold orders, fills, trades, equity
and the final engine state equal to the reference's, bit for bit.
"""

from __future__ import annotations

import logging
import math
import types
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from execution import costs as _costs
from execution import decision as _decision
from execution import instruments as _instruments
from execution import ledger as _ledger
from execution import paper as _paper
from execution import risk as _risk
from execution import sizing as _sizing
from execution import stops as _stops
from execution.config import StrategyConfig
from quality.schema import TIMEFRAMES

__all__ = [
    "CLIENT_ID_LENGTH",
    "FastInputs",
    "FastOutputs",
    "available",
    "client_ids",
    "iso_utc",
    "prepare",
    "run_kernel",
]

logger = logging.getLogger(__name__)

try:
    import numba
except ImportError:  # numba comes with vectorbt; without it the reference loop runs
    numba = None  # type: ignore[assignment]

_BAR_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")
_PRED_COLUMNS = ("symbol", "ts", "p_down", "p_flat", "p_up")
_NS_PER_DAY = 86_400_000_000_000
_PROBA_TOLERANCE = 1e-6  # as execution.signal.Prediction

# Indices into the float parameter vector handed to the kernel.
_P_CASH, _P_CBPS, _P_CMIN, _P_SPREAD, _P_SLIP, _P_VOLMULT = range(6)
_P_RPT, _P_TVOL, _P_KFRAC, _P_KCAP, _P_LEV, _P_FQTY = range(6, 12)
_P_STOPPCT, _P_ATRMULT, _P_TPMULT = range(12, 15)
_P_MPF, _P_MGE, _P_MRPT, _P_DLH, _P_MDH, _P_DDS = range(15, 21)
_P_MINCONF, _P_MARGIN, _P_PPY = range(21, 24)
_N_FLOAT_PARAMS = 24
# Indices into the int parameter vector.
_I_NEXTCLOSE, _I_METHOD, _I_STOPKIND, _I_HASTP = range(4)
_I_ATRPERIOD, _I_MAXTRADES, _I_SHORT, _I_VOLWIN = range(4, 8)
_I_MARGIN_OK, _I_KEEP, _I_KEEP_BARS, _I_VWINDOW = range(8, 12)
_N_INT_PARAMS = 12
# Columns of the per-symbol (instrument) parameters: quantity step, min, max, volume share.
_N_SYMBOL_PARAMS = 4

# Kernel status codes: anything but OK means "let the reference loop run (and raise)".
STATUS_OK = 0
STATUS_BAD_INTENT = 1  # a non-finite order size, which RiskGovernor.check rejects with ValueError
STATUS_NEED_ROOM = 2  # internal: an output buffer is full; the caller grows it and resumes
STATUS_UNSUPPORTED = 3  # an exit above the instrument's maximum: the broker's rejection path

# Columns of the kernel's output tables.
# orders, float: quantity, stop, take_profit, broker remaining, engine remaining
# orders, int: bar, sign, intent (0 exit, 1 entry), has_stop, has_tp, engine pending,
#   queued at the broker, bars worked, engine state (1 accepted, 2 partially filled), symbol
# fills, float: quantity, price, commission, slippage_cost
# fills, int: bar, sign, source (order index, -1 stop, -2 take profit), ts_ns,
#   the entry order whose protection filled (-1 for order fills), symbol
# trades, float: quantity, entry_price, exit_price, pnl, commission, costs
# trades, int: direction, entry_ts_ns, exit_ts_ns, symbol
# Each symbol's pending list (a row of `pend`) holds order indices, and -1 / -2 for the
# protective stop / take profit the broker opened (the engine tracks them as orders too), in
# insertion order: the engine's SymbolState.orders.
_OF, _OI, _FF, _FI, _TF, _TI = 5, 10, 4, 6, 6, 4
SOURCE_STOP = -1
SOURCE_TAKE_PROFIT = -2

# The kernel's state between calls (and at the end). The account: floats in gf, ints in gi.
GF_CASH, GF_PEAK, GF_LAST_EQ, GF_DSE = range(4)
_N_GF = 4
GI_N_ORD, GI_N_FILL, GI_N_TRADE, GI_CUR_DAY, GI_TRADES_TODAY, GI_HAS_DAY = range(6)
GI_N_EVENTS = 6  # order events the engine applied (its seq counts them)
GI_N_OPEN = 7  # open positions, whose symbols `porder` lists in the order they opened
GI_NEED_ORDERS, GI_NEED_FILLS, GI_NEED_TRADES, GI_NEED_PENDING = range(8, 12)
_N_GI = 12
# Per symbol: floats in syf[s], ints and flags in syi[s] (B_: the broker's resting levels,
# E_: the engine's mirror of them, T_: the open trade's running sums).
YF_POS_Q, YF_POS_AVG, YF_MARK = range(3)
YF_B_STOP, YF_B_TP, YF_B_EXT, YF_E_STOP, YF_E_TP, YF_E_EXT = range(3, 9)
YF_ATR_PC, YF_ATR, YF_V_LAST, YF_V_VAR = range(9, 13)
YF_PROT_Q = 13  # quantity of the protective orders when they were opened
YF_T_EQ, YF_T_EN, YF_T_XQ, YF_T_XN, YF_T_REAL, YF_T_COM, YF_T_SLIP = range(14, 21)
_N_YF = 21
YI_QHEAD, YI_N_PEND, YI_B_DIR, YI_B_TS, YI_E_PROT_TS, YI_E_DIR = range(6)
YI_ATR_CNT, YI_V_CNT = 6, 7
YI_PROT_K = 8  # the entry order whose fill opened the broker's protective orders
YI_B_PROT, YI_B_HAS_STOP, YI_B_HAS_TP, YI_E_HAS_STOP, YI_E_HAS_TP, YI_E_HAS_PROT_TS = range(9, 15)
YI_T_DIR, YI_T_ETS, YI_HAS_TRADE = 15, 16, 17
YI_T_FILL = 18  # the fill that opened the open trade (EngineState.open_trades is in that order)
_N_YI = 19


def available() -> bool:
    """True when numba can be imported, so the compiled kernel can run."""
    return numba is not None


@dataclass(frozen=True)
class FastInputs:
    """The kernel's input arrays, bars in (ts, symbol) order (ts as int64 ns since the epoch)."""

    symbols: tuple[str, ...]  # symbol s's name, s in order of first bar (EngineState.symbols)
    timeframes: tuple[str, ...]  # symbol s's one timeframe code ("" when the bars carry none)
    sym: np.ndarray  # int64, each bar's symbol index
    ts: np.ndarray  # bar open times, ns, non-decreasing (increasing within a symbol)
    close_ts: np.ndarray  # bar_close_ts of each bar, ns
    last_of_ts: np.ndarray  # bool, the bar is the last of its ts (equity is recorded there)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    vsym: np.ndarray  # the volumes grouped by symbol (symbol s at vstart[s]..), each by ts
    vrow: np.ndarray  # int64, each bar's position in vsym
    vstart: np.ndarray  # int64, where each symbol starts in vsym
    last_bar: np.ndarray  # int64, each symbol's last bar
    has_pred: np.ndarray  # bool, a finite prediction belongs to the bar
    proba: np.ndarray  # (n, 3) p_down, p_flat, p_up; NaN where none (C or Fortran order)
    unmatched: int  # predictions that match no bar (the reference logs a warning)


@dataclass(frozen=True)
class FastOutputs:
    """Raw kernel tables; execution.backtest turns them into the BacktestResult frames."""

    status: int
    orders_f: np.ndarray
    orders_i: np.ndarray
    fills_f: np.ndarray
    fills_i: np.ndarray
    trades_f: np.ndarray
    trades_i: np.ndarray
    equity: np.ndarray  # per bar; meaningful where last_of_ts
    exposure: np.ndarray
    account_f: np.ndarray  # gf
    account_i: np.ndarray  # gi
    symbol_f: np.ndarray  # syf
    symbol_i: np.ndarray  # syi
    pending: list[np.ndarray]  # per symbol: its pending list, in insertion order
    open_order: np.ndarray  # symbols with a position, in the order the positions opened


def _utc_ns(ts: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(ts).tz_convert("UTC").as_unit("ns").asi8


def _single_value(col: pd.Series) -> str | None:
    """The one str every row of col holds, else None."""
    first = col.iloc[0]
    if not isinstance(first, str):
        return None
    if isinstance(col.dtype, pd.StringDtype) and col.dtype.storage == "pyarrow":
        # One compiled pass over Arrow's offsets and bytes; == would build a 1M-row mask.
        want = np.frombuffer(first.encode(), dtype=np.uint8)
        for chunk in col.array.__arrow_array__().chunks:
            if chunk.null_count or not len(chunk):
                if chunk.null_count:
                    return None
                continue
            _, offsets_buf, data_buf = chunk.buffers()
            wide = pa.types.is_large_string(chunk.type)
            offsets = np.frombuffer(
                offsets_buf, dtype=np.int64 if wide else np.int32, count=len(chunk) + 1,
                offset=chunk.offset * (8 if wide else 4),
            )  # fmt: skip
            if not _same_strings(offsets, np.frombuffer(data_buf, dtype=np.uint8), want):
                return None
        return first
    return first if bool((col == first).all()) else None


def _timeframe_length_ns(tf: str) -> int:
    return TIMEFRAMES.get(tf, timedelta(0)) // timedelta(microseconds=1) * 1000


def prepare(bars: pd.DataFrame, predictions: pd.DataFrame) -> tuple[FastInputs | None, str]:
    """Kernel inputs, or (None, why not) when the fast path does not apply.

    Anything the reference `_prepare` would reject also returns None, so that the reference path
    raises its own error.
    """
    if numba is None:
        return None, "numba is not installed"
    if any(c not in bars.columns for c in _BAR_COLUMNS) or any(
        c not in predictions.columns for c in _PRED_COLUMNS
    ):
        return None, "missing columns"
    for frame in (bars, predictions):
        if not isinstance(frame["ts"].dtype, pd.DatetimeTZDtype):
            return None, "naive timestamps"
    if len(bars) == 0:
        return None, "no bars"
    symbol = _single_value(bars["symbol"])
    if symbol is None:
        return _prepare_portfolio(bars, predictions)
    return _prepare_single(bars, predictions, symbol)


def _prepare_single(
    bars: pd.DataFrame, predictions: pd.DataFrame, symbol: str
) -> tuple[FastInputs | None, str]:
    n = len(bars)
    ts = _utc_ns(bars["ts"])
    cols = [bars[name].to_numpy(np.float64) for name in ("open", "high", "low", "close", "volume")]
    # One compiled pass over the arrays instead of a numpy pass per check.
    scan = _scan_bars(ts, *cols)
    if scan == _SCAN_SUB_US:
        return None, "sub-microsecond timestamps"
    if scan == _SCAN_UNSORTED:
        order = np.argsort(ts, kind="stable")
        ts = ts[order]
        if not (np.diff(ts) > 0).all():
            return None, "duplicate bars"
        cols = [a[order] for a in cols]
        scan = _scan_bars(ts, *cols)
    if scan == _SCAN_NOT_FINITE:
        return None, "non-finite prices"
    cols = [np.ascontiguousarray(a) for a in cols]
    timeframe = ""
    if "timeframe" in bars.columns:
        tf_col = bars["timeframe"]
        tf = _single_value(tf_col if isinstance(tf_col.iloc[0], str) else tf_col.astype(str))
        if tf is None:
            return None, "several timeframes"
        timeframe = tf
    close_ts = ts + np.int64(_timeframe_length_ns(timeframe))
    layout = _Layout(
        (symbol,),
        (timeframe,),
        np.zeros(n, dtype=np.int64),
        np.ones(n, dtype=np.bool_),
        np.arange(n, dtype=np.int64),
        np.zeros(1, dtype=np.int64),
        np.array([n - 1], dtype=np.int64),
    )

    if len(predictions) == 0:
        proba = np.full((n, 3), np.nan)
        return _inputs(layout, ts, close_ts, cols, proba, 0)
    if _single_value(predictions["symbol"]) != symbol:
        return None, "predictions for other symbols"
    pts = _utc_ns(predictions["ts"])
    if len(pts) > 1 and not (np.diff(pts) > 0).all() and not (np.diff(np.sort(pts)) > 0).all():
        return None, "duplicate predictions"
    values = predictions[["p_down", "p_flat", "p_up"]].to_numpy(np.float64)
    if len(pts) == n and np.array_equal(pts, ts):  # one prediction per bar, same order
        proba = values  # any layout: the kernel reads it row by row, a copy would cost more
    else:
        proba = np.full((n, 3), np.nan)
        _place(proba, ts, pts, values, np.arange(n))
    return _inputs(layout, ts, close_ts, cols, proba, len(predictions))


def _place(
    proba: np.ndarray, ts: np.ndarray, pts: np.ndarray, values: np.ndarray, rows: np.ndarray
) -> None:
    """proba[bar] = values[p] for the predictions p whose ts is a bar's (ts sorted, bar rows)."""
    n = len(ts)
    pos = np.searchsorted(ts, pts)
    inside = pos < n
    hit = np.zeros(len(pts), dtype=bool)
    hit[inside] = ts[pos[inside]] == pts[inside]
    proba[rows[pos[hit]]] = values[hit]


@dataclass(frozen=True)
class _Layout:
    symbols: tuple[str, ...]
    timeframes: tuple[str, ...]
    sym: np.ndarray
    last_of_ts: np.ndarray
    vrow: np.ndarray
    vstart: np.ndarray
    last_bar: np.ndarray


def _prepare_portfolio(
    bars: pd.DataFrame, predictions: pd.DataFrame
) -> tuple[FastInputs | None, str]:
    codes, names = pd.factorize(bars["symbol"], sort=True)
    if (codes < 0).any() or not all(isinstance(x, str) for x in names):
        return None, "non-string symbols"
    ts = _utc_ns(bars["ts"])
    if (ts % 1000 != 0).any():
        return None, "sub-microsecond timestamps"
    # The reference loop's order: by ts, then by symbol name (names are sorted: codes rank them).
    order = np.lexsort((codes, ts))
    ts = ts[order]
    codes = codes[order]
    same = (ts[1:] == ts[:-1]) & (codes[1:] == codes[:-1])
    if same.any():
        return None, "duplicate bars"
    cols = [
        np.ascontiguousarray(bars[name].to_numpy(np.float64)[order])
        for name in ("open", "high", "low", "close", "volume")
    ]
    if not all(np.isfinite(a).all() for a in cols):
        return None, "non-finite prices"
    # Symbol indices in the order of each symbol's first bar: EngineState.symbols' order.
    present, first = np.unique(codes, return_index=True)
    by_first = present[np.argsort(first, kind="stable")]
    index_of = np.full(len(names), -1, dtype=np.int64)
    index_of[by_first] = np.arange(len(by_first))
    sym = index_of[codes]
    symbols = tuple(str(names[c]) for c in by_first)
    n_sym = len(symbols)

    timeframes = ("",) * n_sym
    if "timeframe" in bars.columns:
        tf_col = bars["timeframe"]
        tf_codes, tf_names = pd.factorize(
            tf_col if isinstance(tf_col.iloc[0], str) else tf_col.astype(str)
        )
        tf_codes = tf_codes[order]
        lo_ = np.full(n_sym, np.iinfo(np.int64).max)
        hi_ = np.full(n_sym, -1)
        np.minimum.at(lo_, sym, tf_codes)
        np.maximum.at(hi_, sym, tf_codes)
        if (lo_ != hi_).any() or (lo_ < 0).any():
            return None, "several timeframes for one symbol"
        timeframes = tuple(str(tf_names[c]) for c in lo_)
    lengths = np.array([_timeframe_length_ns(tf) for tf in timeframes], dtype=np.int64)
    close_ts = ts + lengths[sym]
    n = len(ts)
    last_of_ts = np.ones(n, dtype=np.bool_)
    last_of_ts[:-1] = ts[1:] != ts[:-1]
    by_symbol = np.argsort(sym, kind="stable")  # each symbol's bars, in ts order
    vrow = np.empty(n, dtype=np.int64)
    vrow[by_symbol] = np.arange(n)
    vstart = np.searchsorted(sym[by_symbol], np.arange(n_sym)).astype(np.int64)
    last_bar = by_symbol[np.r_[vstart[1:], n] - 1]
    layout = _Layout(symbols, timeframes, sym, last_of_ts, vrow, vstart, last_bar)

    proba = np.full((n, 3), np.nan)
    if len(predictions) == 0:
        return _inputs(layout, ts, close_ts, cols, proba, 0, vsym=cols[4][by_symbol])
    if predictions.duplicated(["symbol", "ts"]).any():
        return None, "duplicate predictions"
    # Each prediction's symbol code (-1: no such symbol), looked up once per distinct symbol.
    raw, distinct = pd.factorize(predictions["symbol"].astype(str))
    pcodes = np.append(pd.Index(names).get_indexer(distinct), -1)[raw]  # raw -1 (NaN): -1
    pts = _utc_ns(predictions["ts"])
    values = predictions[["p_down", "p_flat", "p_up"]].to_numpy(np.float64)
    sym_ts = ts[by_symbol]
    bounds = np.r_[vstart, n]
    for code in np.unique(pcodes[pcodes >= 0]).tolist():
        mine = np.flatnonzero(pcodes == code)
        s = int(index_of[code])
        p_ts = pts[mine]
        a, b = bounds[s], bounds[s + 1]
        _place(proba, sym_ts[a:b], p_ts, values[mine], by_symbol[a:b])
    return _inputs(layout, ts, close_ts, cols, proba, len(predictions), vsym=cols[4][by_symbol])


def _inputs(
    layout: _Layout,
    ts: np.ndarray,
    close_ts: np.ndarray,
    cols: list[np.ndarray],
    proba: np.ndarray,
    n_predictions: int,
    vsym: np.ndarray | None = None,
) -> tuple[FastInputs | None, str]:
    has_pred = np.empty(len(proba), dtype=np.bool_)
    # Prediction.__post_init__ rejects these in the reference loop; let it raise there.
    if not _check_proba(proba, has_pred, _PROBA_TOLERANCE):
        return None, "invalid prediction probabilities"
    unmatched = n_predictions - int(has_pred.sum())
    inputs = FastInputs(
        symbols=layout.symbols,
        timeframes=layout.timeframes,
        sym=layout.sym,
        ts=np.ascontiguousarray(ts),
        close_ts=np.ascontiguousarray(close_ts),
        last_of_ts=layout.last_of_ts,
        open=cols[0],
        high=cols[1],
        low=cols[2],
        close=cols[3],
        vsym=np.ascontiguousarray(vsym if vsym is not None else cols[4]),
        vrow=layout.vrow,
        vstart=layout.vstart,
        last_bar=layout.last_bar,
        has_pred=has_pred,
        proba=proba,
        unmatched=unmatched,
    )
    return inputs, ""


def _params(config: StrategyConfig) -> tuple[np.ndarray, np.ndarray]:
    pf = np.zeros(_N_FLOAT_PARAMS)
    pi = np.zeros(_N_INT_PARAMS, dtype=np.int64)
    c, s, st, r, d = config.costs, config.sizing, config.stops, config.risk, config.decision
    pf[_P_CASH] = float(config.initial_cash)
    pf[_P_CBPS], pf[_P_CMIN] = c.commission_bps, c.commission_min
    pf[_P_SPREAD], pf[_P_SLIP], pf[_P_VOLMULT] = c.spread_bps, c.slippage_bps, c.slippage_vol_mult
    pf[_P_RPT], pf[_P_TVOL] = s.risk_per_trade, s.target_vol
    pf[_P_KFRAC], pf[_P_KCAP] = s.kelly_fraction, s.kelly_cap
    pf[_P_LEV], pf[_P_FQTY] = s.max_leverage, s.fixed_quantity
    pf[_P_STOPPCT], pf[_P_ATRMULT] = st.stop_pct, st.atr_mult
    pf[_P_TPMULT] = st.take_profit_mult if st.take_profit_mult is not None else 0.0
    pf[_P_MPF], pf[_P_MGE], pf[_P_MRPT] = (
        r.max_position_frac,
        r.max_gross_exposure,
        r.max_risk_per_trade,
    )
    pf[_P_DLH], pf[_P_MDH], pf[_P_DDS] = (
        r.daily_loss_halt,
        r.max_drawdown_halt,
        r.drawdown_derisk_start,
    )
    pf[_P_MINCONF], pf[_P_MARGIN] = d.min_confidence, d.abstain_margin
    pf[_P_PPY] = float(config.periods_per_year)
    pi[_I_NEXTCLOSE] = 1 if config.fill == "next_close" else 0
    pi[_I_METHOD] = _sizing.METHOD_CODES[s.method]
    pi[_I_STOPKIND] = _stops.STOP_KIND_CODES[st.kind]
    pi[_I_HASTP] = 1 if st.take_profit_mult is not None else 0
    pi[_I_ATRPERIOD] = st.atr_period
    pi[_I_MAXTRADES] = r.max_trades_per_day
    pi[_I_SHORT] = 1 if d.allow_short else 0
    pi[_I_VOLWIN] = config.vol_window
    pi[_I_MARGIN_OK] = 1 if config.allow_margin else 0
    pi[_I_KEEP] = 1 if config.partial_fill == "keep" else 0
    pi[_I_KEEP_BARS] = config.partial_fill_bars
    pi[_I_VWINDOW] = c.volume_window
    return pf, pi


def _symbol_params(config: StrategyConfig, symbols: tuple[str, ...]) -> np.ndarray:
    sp = np.zeros((len(symbols), _N_SYMBOL_PARAMS))
    for s, name in enumerate(symbols):
        inst = _instruments.instrument_for(name, config)
        sp[s] = (
            inst.quantity_step,
            inst.min_quantity,
            inst.max_quantity,
            inst.max_volume_share or 0.0,
        )
    return sp


def _initial_state(
    pf: np.ndarray, n_sym: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """engine.new_state and a fresh PaperBroker, as kernel state arrays."""
    gf = np.zeros(_N_GF)
    gi = np.zeros(_N_GI, dtype=np.int64)
    gf[GF_CASH] = gf[GF_PEAK] = gf[GF_LAST_EQ] = gf[GF_DSE] = pf[_P_CASH]
    syf = np.zeros((n_sym, _N_YF))
    syi = np.zeros((n_sym, _N_YI), dtype=np.int64)
    for col in (YF_MARK, YF_E_EXT, YF_ATR_PC, YF_ATR, YF_V_LAST):
        syf[:, col] = math.nan
    return gf, gi, syf, syi


def _grown(a: np.ndarray, need: int, axis: int = 0) -> np.ndarray:
    if a.shape[axis] >= need:
        return a
    shape = list(a.shape)
    shape[axis] = max(need, 2 * a.shape[axis])
    out = np.empty(shape, dtype=a.dtype)
    if axis == 0:
        out[: a.shape[0]] = a
    else:
        out[:, : a.shape[1]] = a
    return out


def run_kernel(inputs: FastInputs, config: StrategyConfig) -> FastOutputs:
    """Run the compiled kernel over `inputs` (compiles, or loads the on-disk cache, once)."""
    if numba is None:
        msg = "the fast backtest path needs numba, which is not installed"
        raise NotImplementedError(msg)
    pf, pi = _params(config)
    n_sym = len(inputs.symbols)
    sp = _symbol_params(config, inputs.symbols)
    gf, gi, syf, syi = _initial_state(pf, n_sym)
    posq = np.zeros(n_sym)
    marks = np.full(n_sym, math.nan)
    porder = np.zeros(n_sym, dtype=np.int64)
    n = len(inputs.ts)
    n_pred = int(inputs.has_pred.sum())
    cap = max(256, n_pred // 64)
    orders_f = np.empty((cap, _OF))
    orders_i = np.empty((cap, _OI), dtype=np.int64)
    fills_f = np.empty((cap, _FF))
    fills_i = np.empty((cap, _FI), dtype=np.int64)
    trades_f = np.empty((cap, _TF))
    trades_i = np.empty((cap, _TI), dtype=np.int64)
    pend = np.empty((n_sym, 16), dtype=np.int64)
    equity = np.empty(n)
    exposure = np.empty(n)
    start = 0
    while True:
        start, status = _kernel(
            inputs.ts, inputs.close_ts, inputs.sym, inputs.last_of_ts, inputs.vsym,
            inputs.vrow, inputs.vstart, inputs.open, inputs.high, inputs.low, inputs.close,
            inputs.has_pred, inputs.proba, pf, pi, sp, start, gf, gi, syf, syi, posq, marks,
            porder, orders_f, orders_i, fills_f, fills_i, trades_f, trades_i, pend, equity,
            exposure,
        )  # fmt: skip
        if status != STATUS_NEED_ROOM:
            break
        orders_f = _grown(orders_f, int(gi[GI_NEED_ORDERS]))
        orders_i = _grown(orders_i, int(gi[GI_NEED_ORDERS]))
        fills_f = _grown(fills_f, int(gi[GI_NEED_FILLS]))
        fills_i = _grown(fills_i, int(gi[GI_NEED_FILLS]))
        trades_f = _grown(trades_f, int(gi[GI_NEED_TRADES]))
        trades_i = _grown(trades_i, int(gi[GI_NEED_TRADES]))
        pend = _grown(pend, int(gi[GI_NEED_PENDING]), axis=1)
    n_ord, n_fill, n_trade = int(gi[GI_N_ORD]), int(gi[GI_N_FILL]), int(gi[GI_N_TRADE])
    return FastOutputs(
        status=int(status),
        orders_f=orders_f[:n_ord],
        orders_i=orders_i[:n_ord],
        fills_f=fills_f[:n_fill],
        fills_i=fills_i[:n_fill],
        trades_f=trades_f[:n_trade],
        trades_i=trades_i[:n_trade],
        equity=equity,
        exposure=exposure,
        account_f=gf,
        account_i=gi,
        symbol_f=syf,
        symbol_i=syi,
        pending=[pend[s, : int(syi[s, YI_N_PEND])].copy() for s in range(n_sym)],
        open_order=porder[: int(gi[GI_N_OPEN])].copy(),
    )


# ------------------------------------------------------------------------------------------------
# The kernel. Each block names the reference step it sequences; the rules are the shared
# functions, compiled below.

# The engine's and the paper broker's threshold, frozen into the compiled kernel: numba's cache
# keys on this file only, so a change of ledger.DUST needs its cache cleared (as for every rule).
_DUST = _ledger.DUST
_END_OF_BAR_WORKING = _paper.END_OF_BAR_WORKING
_SCAN_OK, _SCAN_SUB_US, _SCAN_UNSORTED, _SCAN_NOT_FINITE = range(4)


def _py_kernel(
    ts, close_ts, sym, last_of_ts, vsym, vrow, vstart, o, h, lo, c, has_pred, proba,
    pf, pi, sp, start, gf, gi, syf, syi, posq, marks, porder,
    orders_f, orders_i, fills_f, fills_i, trades_f, trades_i, pend, equity_out, exposure_out,
):  # fmt: skip
    """Run bars start.. until the end or until a buffer could overflow; returns (next bar, status).

    All state lives in gf / gi (the account) and syf / syi / posq / marks / pend (per symbol)
    between calls, so the caller can grow the buffers and resume. The symbol of the bar being
    run is held in locals: it is loaded when the bar's symbol differs from the previous bar's
    and stored back before the next symbol is loaded.
    """
    n = ts.shape[0]
    n_sym = syf.shape[0]
    spread_bps = pf[_P_SPREAD]
    slip_bps = pf[_P_SLIP]
    vol_mult = pf[_P_VOLMULT]
    cbps = pf[_P_CBPS]
    cmin = pf[_P_CMIN]
    next_close = pi[_I_NEXTCLOSE] != 0
    method = pi[_I_METHOD]
    stop_kind = pi[_I_STOPKIND]
    trailing = stop_kind == 3
    has_tp_cfg = pi[_I_HASTP] != 0
    stop_pct = pf[_P_STOPPCT]
    atr_period = pi[_I_ATRPERIOD]
    vol_window = pi[_I_VOLWIN]
    alpha = 2.0 / (vol_window + 1.0)
    allow_short = pi[_I_SHORT] != 0
    min_conf = pf[_P_MINCONF]
    margin = pf[_P_MARGIN]
    max_trades = pi[_I_MAXTRADES]
    margin_ok = pi[_I_MARGIN_OK] != 0
    keep_policy = pi[_I_KEEP] != 0
    keep_bars = pi[_I_KEEP_BARS]
    vwindow = pi[_I_VWINDOW]

    cash = gf[GF_CASH]
    peak = gf[GF_PEAK]
    last_eq = gf[GF_LAST_EQ]
    dse = gf[GF_DSE]
    n_ord = gi[GI_N_ORD]
    n_fill = gi[GI_N_FILL]
    n_trade = gi[GI_N_TRADE]
    cur_day = gi[GI_CUR_DAY]
    trades_today = gi[GI_TRADES_TODAY]
    has_day = gi[GI_HAS_DAY] != 0
    day_end = (cur_day + 1) * _NS_PER_DAY
    n_ev = gi[GI_N_EVENTS]
    n_open = gi[GI_N_OPEN]
    status = STATUS_OK
    cap_o = orders_f.shape[0]
    cap_f = fills_f.shape[0]
    cap_t = trades_f.shape[0]
    cap_p = pend.shape[1]

    # The loaded symbol's state (typed here, loaded below).
    s = -1
    cf = syf[0]
    ci = syi[0]
    pe = pend[0]
    step = min_q = max_q = vshare = 0.0
    v0 = 0
    pos_q = pos_avg = mark = b_stop = b_tp = b_ext = e_stop = e_tp = e_ext = 0.0
    atr_pc = atr = v_last = v_var = prot_q = 0.0
    qhead = n_pend = b_dir = b_ts = e_prot_ts = e_dir = atr_cnt = v_cnt = prot_k = 0
    b_prot = b_has_stop = b_has_tp = e_has_stop = e_has_tp = e_has_prot_ts = False
    i = start
    while i < n:
        s_bar = sym[i]
        if s_bar != s:
            if s >= 0:
                _store_symbol(
                    cf, ci, pos_q, pos_avg, mark, b_stop, b_tp, b_ext, e_stop, e_tp, e_ext,
                    atr_pc, atr, v_last, v_var, prot_q, qhead, n_pend, b_dir, b_ts, e_prot_ts,
                    e_dir, atr_cnt, v_cnt, prot_k, b_prot, b_has_stop, b_has_tp, e_has_stop,
                    e_has_tp, e_has_prot_ts,
                )  # fmt: skip
            s = s_bar
            cf = syf[s]
            ci = syi[s]
            pe = pend[s]
            step = sp[s, 0]
            min_q = sp[s, 1]
            max_q = sp[s, 2]
            vshare = sp[s, 3]
            v0 = vstart[s]
            pos_q = cf[YF_POS_Q]
            pos_avg = cf[YF_POS_AVG]
            mark = cf[YF_MARK]
            b_stop = cf[YF_B_STOP]
            b_tp = cf[YF_B_TP]
            b_ext = cf[YF_B_EXT]
            e_stop = cf[YF_E_STOP]
            e_tp = cf[YF_E_TP]
            e_ext = cf[YF_E_EXT]
            atr_pc = cf[YF_ATR_PC]
            atr = cf[YF_ATR]
            v_last = cf[YF_V_LAST]
            v_var = cf[YF_V_VAR]
            prot_q = cf[YF_PROT_Q]
            qhead = ci[YI_QHEAD]
            n_pend = ci[YI_N_PEND]
            b_dir = ci[YI_B_DIR]
            b_ts = ci[YI_B_TS]
            e_prot_ts = ci[YI_E_PROT_TS]
            e_dir = ci[YI_E_DIR]
            atr_cnt = ci[YI_ATR_CNT]
            v_cnt = ci[YI_V_CNT]
            prot_k = ci[YI_PROT_K]
            b_prot = ci[YI_B_PROT] != 0
            b_has_stop = ci[YI_B_HAS_STOP] != 0
            b_has_tp = ci[YI_B_HAS_TP] != 0
            e_has_stop = ci[YI_E_HAS_STOP] != 0
            e_has_tp = ci[YI_E_HAS_TP] != 0
            e_has_prot_ts = ci[YI_E_HAS_PROT_TS] != 0
        # the symbol's broker queue starts at its first order still queued
        while qhead < n_ord and (
            orders_i[qhead, 6] == 0 or orders_i[qhead, 9] != s
        ):
            qhead += 1
        queued = n_ord - qhead
        if (
            n_fill + queued + 2 > cap_f
            or n_trade + queued + 2 > cap_t
            or n_ord + 2 > cap_o
            or n_pend + 4 > cap_p
        ):
            gi[GI_NEED_ORDERS] = n_ord + 2
            gi[GI_NEED_FILLS] = n_fill + queued + 2
            gi[GI_NEED_TRADES] = n_trade + queued + 2
            gi[GI_NEED_PENDING] = n_pend + 4
            status = STATUS_NEED_ROOM
            break
        # ---- PaperBroker.on_bar: vol known at decision time, queued fills and triggers
        # (the volatility only counts with a multiplier: no square root per bar without one)
        vol = math.sqrt(v_var) if (vol_mult > 0.0 and v_cnt >= vol_window) else 0.0
        frac = _cost_fraction(spread_bps, slip_bps, vol_mult, vol)
        for phase in range(2):
            do_queue = (phase == 0) != next_close
            if do_queue:
                # PaperBroker._fill_queued
                if qhead >= n_ord:
                    continue
                if next_close:
                    ref = c[i]
                    fts = close_ts[i]
                else:
                    ref = o[i]
                    fts = ts[i]
                # PaperBroker._known_volume: the mean of the volume_window bars before this one
                known = 0.0
                row = vrow[i]
                if row > v0:
                    j0 = row - vwindow if row - v0 > vwindow else v0
                    tot = 0.0
                    for j in range(j0, row):
                        tot += vsym[j]
                    known = tot / (row - j0)
                budget = _volume_cap(known, vshare)
                k = qhead
                while k < n_ord and budget > _DUST:
                    if orders_i[k, 6] == 0 or orders_i[k, 9] != s:
                        k += 1
                        continue
                    rem = orders_f[k, 3]
                    q = budget if budget < rem else rem
                    sgn = orders_i[k, 1]
                    price = _fill_price(sgn, ref, frac)
                    q, short_of_cash = _cash_limited(
                        sgn, q, pos_q, cash, price, margin_ok, cbps, cmin, step
                    )
                    if q > _DUST:
                        qty = pos_q
                        cash, n_trade, pos_q, pos_avg, n_open = _fill(
                            fills_f, fills_i, n_fill, cf, ci, trades_f, trades_i, n_trade,
                            posq, porder, n_open, s, i, sgn, k, -1, fts, q, price, ref,
                            cbps, cmin, cash, qty, pos_avg,
                        )  # fmt: skip
                        n_fill += 1
                        n_ev += 1
                        new_q = pos_q
                        orders_i[k, 8] = 2
                        orders_f[k, 4] -= q
                        if _fully_filled(orders_f[k, 4]):
                            orders_i[k, 5] = 0
                            n_pend = _remove(pe, n_pend, k)
                        ohs = orders_i[k, 3] != 0
                        oht = orders_i[k, 4] != 0
                        is_entry = orders_i[k, 2] == 1
                        if _opens_protection(
                            is_entry, e_has_stop or e_has_tp, sgn, new_q, ohs, oht
                        ):
                            e_has_stop = ohs
                            e_stop = orders_f[k, 1]
                            e_has_tp = oht
                            e_tp = orders_f[k, 2]
                            e_ext = price
                            e_has_prot_ts = True
                            e_prot_ts = fts
                        crossed = _crosses(qty, new_q)
                        if crossed:
                            e_has_stop = False
                            e_has_tp = False
                            e_ext = math.nan
                            e_has_prot_ts = False
                        # PaperBroker._fill: a closed position cancels its protective orders,
                        # an entry's first fill opens them
                        if crossed and b_prot:
                            b_prot = False
                            if b_has_stop:
                                n_pend = _remove(pe, n_pend, -1)
                                n_ev += 1
                            if b_has_tp:
                                n_pend = _remove(pe, n_pend, -2)
                                n_ev += 1
                        if _opens_protection(is_entry, b_prot, sgn, new_q, ohs, oht):
                            b_prot = True
                            b_dir = sgn
                            b_has_stop = ohs
                            b_stop = orders_f[k, 1]
                            b_has_tp = oht
                            b_tp = orders_f[k, 2]
                            b_ext = price
                            b_ts = fts
                            prot_k = k
                            prot_q = abs(new_q)
                            if ohs:
                                pe[n_pend] = -1
                                n_pend += 1
                                n_ev += 2
                            if oht:
                                pe[n_pend] = -2
                                n_pend += 1
                                n_ev += 2
                        budget -= q
                        rem -= q
                    if short_of_cash:
                        # OrderCancelled("insufficient_cash")
                        orders_i[k, 6] = 0
                        if orders_i[k, 5] != 0:
                            orders_i[k, 5] = 0
                            n_pend = _remove(pe, n_pend, k)
                        n_ev += 1
                        k += 1
                        continue
                    if _fill_complete(rem, orders_f[k, 0]):
                        orders_i[k, 6] = 0
                        if rem > _DUST:
                            # OrderCancelled("dust"): the engine still counted the rest
                            orders_i[k, 5] = 0
                            n_pend = _remove(pe, n_pend, k)
                            n_ev += 1
                    else:
                        orders_f[k, 3] = rem
                        k += 1
            else:
                # PaperBroker._trigger
                if not b_prot or pos_q == 0.0:
                    continue
                kind, raw = _trigger_code(
                    b_dir, b_has_stop, b_stop, b_has_tp, b_tp, o[i], h[i], lo[i]
                )
                if kind == 0:
                    continue
                sgn = -1 if b_dir > 0 else 1
                price = _fill_price(sgn, raw, frac) if kind == 1 else raw
                q = abs(pos_q)
                fts = ts[i]
                src = SOURCE_STOP if kind == 1 else SOURCE_TAKE_PROFIT
                b_prot = False
                qty = pos_q
                cash, n_trade, pos_q, pos_avg, n_open = _fill(
                    fills_f, fills_i, n_fill, cf, ci, trades_f, trades_i, n_trade,
                    posq, porder, n_open, s, i, sgn, src, prot_k, fts, q, price, raw,
                    cbps, cmin, cash, qty, pos_avg,
                )  # fmt: skip
                n_fill += 1
                n_ev += 1
                if _crosses(qty, pos_q):
                    e_has_stop = False
                    e_has_tp = False
                    e_ext = math.nan
                    e_has_prot_ts = False
                # the other level (one cancels the other), then everything queued
                if b_has_stop and b_has_tp:
                    n_ev += 1
                for j in range(n_pend):
                    kk = pe[j]
                    if kk >= 0:
                        orders_i[kk, 5] = 0
                for kk in range(qhead, n_ord):
                    if orders_i[kk, 6] != 0 and orders_i[kk, 9] == s:
                        orders_i[kk, 6] = 0
                        n_ev += 1
                n_pend = 0
                qhead = n_ord
        # PaperBroker._end_of_bar: entries that had their bars stop working
        for kk in range(qhead, n_ord):
            if orders_i[kk, 6] != 0 and orders_i[kk, 9] == s:
                orders_i[kk, 7], outcome = _end_of_bar_step(
                    orders_i[kk, 2] == 1, orders_i[kk, 7], keep_policy, keep_bars
                )
                if outcome != _END_OF_BAR_WORKING:
                    orders_i[kk, 6] = 0
                    if orders_i[kk, 5] != 0:
                        orders_i[kk, 5] = 0
                        n_pend = _remove(pe, n_pend, kk)
                    n_ev += 1
        # PaperBroker._trail
        if b_prot and b_has_stop and trailing and not (next_close and b_ts == ts[i]):
            b_stop, b_ext = _trail_stop(b_dir, b_stop, b_ext, h[i], lo[i], stop_pct)

        # ---- engine.on_bar
        mark = c[i]
        marks[s] = mark
        atr_cnt, atr = _atr_step(atr_cnt, atr, atr_pc, h[i], lo[i], atr_period)
        atr_pc = c[i]
        # one estimator serves broker and engine: both see the same closes
        v_cnt, v_last, v_var = _ewma_step(v_cnt, v_last, v_var, c[i], alpha)
        if (
            e_has_stop
            and pos_q != 0.0
            and trailing
            and not (next_close and e_has_prot_ts and e_prot_ts == ts[i])
        ):
            e_stop, e_ext = _trail_stop(
                1 if pos_q > 0 else -1, e_stop, e_ext, h[i], lo[i], stop_pct
            )

        if not has_day or ts[i] >= day_end:  # a new UTC day (one division a day, not a bar)
            if has_day:
                dse = last_eq
            has_day = True
            cur_day = ts[i] // _NS_PER_DAY
            day_end = (cur_day + 1) * _NS_PER_DAY
            trades_today = 0
        # engine.equity: cash plus the positions in the order they were opened
        eq = cash
        for j in range(n_open):
            t = porder[j]
            eq += posq[t] * marks[t]
        last_eq = eq
        if eq > peak:
            peak = eq
        e_dir = _committed(pos_q, pe, n_pend, orders_i, orders_f)

        if has_pred[i]:
            p_dn = proba[i, 0]
            p_up = proba[i, 2]
            direction = _decide(p_dn, proba[i, 1], p_up, min_conf, margin, allow_short)
            if direction != e_dir:
                # Cancel the entries still working (the broker answers at once)
                j = 0
                while j < n_pend:
                    kk = pe[j]
                    if kk >= 0 and orders_i[kk, 2] == 1:
                        orders_i[kk, 6] = 0
                        orders_i[kk, 5] = 0
                        n_pend = _remove(pe, n_pend, kk)
                        n_ev += 1
                    else:
                        j += 1
                expected = _expected(pos_q, pe, n_pend, orders_i, orders_f)
                held = _committed_direction(expected)
                if held != 0:
                    aexp = abs(expected)
                    if aexp > max_q:
                        status = STATUS_UNSUPPORTED
                        break
                    orders_f[n_ord, 0] = aexp
                    orders_f[n_ord, 1] = math.nan
                    orders_f[n_ord, 2] = math.nan
                    orders_f[n_ord, 3] = aexp
                    orders_f[n_ord, 4] = aexp
                    orders_i[n_ord, 0] = i
                    orders_i[n_ord, 1] = -held
                    orders_i[n_ord, 2] = 0
                    orders_i[n_ord, 3] = 0
                    orders_i[n_ord, 4] = 0
                    orders_i[n_ord, 5] = 1
                    orders_i[n_ord, 6] = 1
                    orders_i[n_ord, 7] = 0
                    orders_i[n_ord, 8] = 1
                    orders_i[n_ord, 9] = s
                    pe[n_pend] = n_ord
                    n_pend += 1
                    n_ord += 1
                    n_ev += 1
                if direction != 0:
                    price = c[i]
                    has_dist = stop_kind != 0
                    dist = 0.0
                    if has_dist:
                        dist = _distance(stop_kind, price, atr_cnt, atr, pf[_P_ATRMULT], stop_pct)
                    risk_dist = dist if has_dist else stop_pct * price
                    if direction > 0:
                        p_win, p_loss = p_up, p_dn
                    else:
                        p_win, p_loss = p_dn, p_up
                    qty = _target_units(
                        method,
                        eq,
                        price,
                        risk_dist,
                        math.sqrt(v_var) if v_cnt >= vol_window else 0.0,
                        p_win,
                        p_loss,
                        pf[_P_PPY],
                        pf[_P_RPT],
                        pf[_P_TVOL],
                        pf[_P_KFRAC],
                        pf[_P_KCAP],
                        pf[_P_LEV],
                        pf[_P_FQTY],
                    )
                    if qty > _DUST:
                        if not math.isfinite(qty):
                            status = STATUS_BAD_INTENT
                            break
                        # RiskGovernor.check: the notional the other symbols expect to hold
                        gross_other = 0.0
                        for t in range(n_sym):
                            if t == s:
                                continue
                            qt = _expected(posq[t], pend[t], syi[t, YI_N_PEND], orders_i, orders_f)
                            if qt != 0.0:
                                gross_other += abs(qt) * marks[t]
                        allowed, code = _risk_allowed(
                            qty,
                            0.0,
                            eq,
                            peak,
                            dse,
                            trades_today,
                            gross_other,
                            price,
                            risk_dist,
                            pf[_P_MPF],
                            pf[_P_MGE],
                            pf[_P_MRPT],
                            pf[_P_DLH],
                            pf[_P_MDH],
                            pf[_P_DDS],
                            max_trades,
                        )
                        approved = qty if code == 0 else 0.0 + allowed
                        units = 0.0
                        if approved > _DUST:
                            units, refused = _round_units(approved, step, min_q, max_q)
                            if refused != 0:
                                units = 0.0
                        if units > _DUST:
                            orders_f[n_ord, 0] = units
                            if has_dist:
                                stop, tp = _levels(direction, price, dist, pf[_P_TPMULT])
                                orders_f[n_ord, 1] = stop
                                orders_i[n_ord, 3] = 1
                                if has_tp_cfg:
                                    orders_f[n_ord, 2] = tp
                                    orders_i[n_ord, 4] = 1
                                else:
                                    orders_f[n_ord, 2] = math.nan
                                    orders_i[n_ord, 4] = 0
                            else:
                                orders_f[n_ord, 1] = math.nan
                                orders_f[n_ord, 2] = math.nan
                                orders_i[n_ord, 3] = 0
                                orders_i[n_ord, 4] = 0
                            orders_f[n_ord, 3] = units
                            orders_f[n_ord, 4] = units
                            orders_i[n_ord, 0] = i
                            orders_i[n_ord, 1] = direction
                            orders_i[n_ord, 2] = 1
                            orders_i[n_ord, 5] = 1
                            orders_i[n_ord, 6] = 1
                            orders_i[n_ord, 7] = 0
                            orders_i[n_ord, 8] = 1
                            orders_i[n_ord, 9] = s
                            pe[n_pend] = n_ord
                            n_pend += 1
                            n_ord += 1
                            n_ev += 1
                            trades_today += 1
                e_dir = _committed(pos_q, pe, n_pend, orders_i, orders_f)
        # run_backtest: equity and exposure after the last symbol of the bar's ts
        if last_of_ts[i]:
            eq2 = cash
            gross = 0.0
            for j in range(n_open):
                t = porder[j]
                eq2 += posq[t] * marks[t]
                gross += abs(posq[t]) * marks[t]
            equity_out[i] = eq2
            exposure_out[i] = gross / eq2 if eq2 != 0 else math.nan
        i += 1

    if s >= 0:
        _store_symbol(
            cf, ci, pos_q, pos_avg, mark, b_stop, b_tp, b_ext, e_stop, e_tp, e_ext,
            atr_pc, atr, v_last, v_var, prot_q, qhead, n_pend, b_dir, b_ts, e_prot_ts,
            e_dir, atr_cnt, v_cnt, prot_k, b_prot, b_has_stop, b_has_tp, e_has_stop,
            e_has_tp, e_has_prot_ts,
        )  # fmt: skip
    gf[GF_CASH] = cash
    gf[GF_PEAK] = peak
    gf[GF_LAST_EQ] = last_eq
    gf[GF_DSE] = dse
    gi[GI_N_ORD] = n_ord
    gi[GI_N_FILL] = n_fill
    gi[GI_N_TRADE] = n_trade
    gi[GI_CUR_DAY] = cur_day
    gi[GI_TRADES_TODAY] = trades_today
    gi[GI_HAS_DAY] = 1 if has_day else 0
    gi[GI_N_EVENTS] = n_ev
    gi[GI_N_OPEN] = n_open
    return i, status


def _py_store_symbol(
    cf, ci, pos_q, pos_avg, mark, b_stop, b_tp, b_ext, e_stop, e_tp, e_ext,
    atr_pc, atr, v_last, v_var, prot_q, qhead, n_pend, b_dir, b_ts, e_prot_ts,
    e_dir, atr_cnt, v_cnt, prot_k, b_prot, b_has_stop, b_has_tp, e_has_stop,
    e_has_tp, e_has_prot_ts,
):  # fmt: skip
    """Write the loaded symbol's locals back to its rows of syf / syi."""
    cf[YF_POS_Q] = pos_q
    cf[YF_POS_AVG] = pos_avg
    cf[YF_MARK] = mark
    cf[YF_B_STOP] = b_stop
    cf[YF_B_TP] = b_tp
    cf[YF_B_EXT] = b_ext
    cf[YF_E_STOP] = e_stop
    cf[YF_E_TP] = e_tp
    cf[YF_E_EXT] = e_ext
    cf[YF_ATR_PC] = atr_pc
    cf[YF_ATR] = atr
    cf[YF_V_LAST] = v_last
    cf[YF_V_VAR] = v_var
    cf[YF_PROT_Q] = prot_q
    ci[YI_QHEAD] = qhead
    ci[YI_N_PEND] = n_pend
    ci[YI_B_DIR] = b_dir
    ci[YI_B_TS] = b_ts
    ci[YI_E_PROT_TS] = e_prot_ts
    ci[YI_E_DIR] = e_dir
    ci[YI_ATR_CNT] = atr_cnt
    ci[YI_V_CNT] = v_cnt
    ci[YI_PROT_K] = prot_k
    ci[YI_B_PROT] = 1 if b_prot else 0
    ci[YI_B_HAS_STOP] = 1 if b_has_stop else 0
    ci[YI_B_HAS_TP] = 1 if b_has_tp else 0
    ci[YI_E_HAS_STOP] = 1 if e_has_stop else 0
    ci[YI_E_HAS_TP] = 1 if e_has_tp else 0
    ci[YI_E_HAS_PROT_TS] = 1 if e_has_prot_ts else 0


def _py_expected(pos_q, pend, n_pend, orders_i, orders_f):
    """engine._expected over a pending list: position plus the orders in flight. Every order
    in the list is accepted and none has a cancel requested (the broker answers a cancel at
    once); the protective orders, -1 / -2, have no row to read."""
    qty = pos_q
    for j in range(n_pend):
        k = pend[j]
        if k >= 0:
            qty += _in_flight_units(orders_i[k, 1], orders_f[k, 4], False, False)
    return qty


def _py_committed(pos_q, pend, n_pend, orders_i, orders_f):
    """engine._settle: the sign of position plus the non-protective orders in flight."""
    return _committed_direction(_expected(pos_q, pend, n_pend, orders_i, orders_f))


def _py_scan_bars(ts, o, h, lo, c, v):
    """_SCAN_OK, or the first thing wrong: sub-microsecond ts, ts not increasing, non-finite."""
    n = ts.shape[0]
    unsorted = False
    for i in range(n):
        if ts[i] % 1000 != 0:
            return _SCAN_SUB_US
        if i > 0 and ts[i] <= ts[i - 1]:
            unsorted = True
    if unsorted:
        return _SCAN_UNSORTED
    for i in range(n):
        if not (
            math.isfinite(o[i])
            and math.isfinite(h[i])
            and math.isfinite(lo[i])
            and math.isfinite(c[i])
            and math.isfinite(v[i])
        ):
            return _SCAN_NOT_FINITE
    return _SCAN_OK


def _py_same_strings(offsets, data, want):
    """Every string of an Arrow string array (its offsets and bytes) is the bytes `want`."""
    size = want.shape[0]
    n = offsets.shape[0] - 1
    base = offsets[0]
    # Branch-free passes (numba vectorises them): the offsets step by `size`, and the bytes
    # repeat with period `size` after a first copy of `want`.
    bad = 0
    for i in range(n + 1):
        bad |= offsets[i] - (base + i * size)
    if bad != 0:
        return False
    for j in range(min(size, n * size)):
        bad |= data[base + j] ^ want[j]
    later = data[base + size : base + n * size]
    earlier = data[base : base + (n - 1) * size]
    for k in range(later.shape[0]):
        bad |= later[k] ^ earlier[k]
    return bad == 0


def _py_check_proba(proba, has_pred, tolerance):
    """has_pred[i]: row i is all finite; False when a finite row is not a valid distribution."""
    ok = True
    for i in range(proba.shape[0]):
        a = proba[i, 0]
        b = proba[i, 1]
        c = proba[i, 2]
        fin = math.isfinite(a) and math.isfinite(b) and math.isfinite(c)
        has_pred[i] = fin
        if fin and (
            a < 0.0
            or a > 1.0
            or b < 0.0
            or b > 1.0
            or c < 0.0
            or c > 1.0
            or abs((a + b) + c - 1.0) > tolerance
        ):
            ok = False
    return ok


def _py_record_fill(fills_f, fills_i, row, s, i, sgn, src, prot, fts, q, price, ref, cbps, cmin):
    """Write fill `row` and return (commission, slippage_cost) as PaperBroker._fill makes them."""
    com = _commission_of(q * price, cbps, cmin)
    slip = q * abs(price - ref)
    fills_f[row, 0] = q
    fills_f[row, 1] = price
    fills_f[row, 2] = com
    fills_f[row, 3] = slip
    fills_i[row, 0] = i
    fills_i[row, 1] = sgn
    fills_i[row, 2] = src
    fills_i[row, 3] = fts
    fills_i[row, 4] = prot
    fills_i[row, 5] = s
    return com, slip


def _py_fill(
    fills_f, fills_i, row, cf, ci, tf, ti, n_trade, posq, porder, n_open, s, i, sgn, src, prot,
    fts, q, price, ref, cbps, cmin, cash, qty, avg,
):  # fmt: skip
    """One fill of symbol s, both halves: PaperBroker._fill writes fill `row`,
    engine.on_event(Fill) books it (cash, position, the open trade, the order in which
    positions opened). Returns (cash, n_trade, quantity, avg_price, n_open) after."""
    com, slip = _record_fill(
        fills_f, fills_i, row, s, i, sgn, src, prot, fts, q, price, ref, cbps, cmin
    )
    new_q, new_avg = _apply(qty, avg, sgn * q, price)
    cash, n_trade, pos_q, pos_avg = _book_fill(
        cf, ci, tf, ti, n_trade, s, row, cash, qty, avg, new_q, new_avg, sgn, q, price, com,
        slip, fts,
    )  # fmt: skip
    posq[s] = pos_q
    if qty == 0.0 and pos_q != 0.0:  # EngineState.positions gains the symbol at its end
        porder[n_open] = s
        n_open += 1
    elif qty != 0.0 and pos_q == 0.0:
        n_open = _remove(porder, n_open, s)
    return cash, n_trade, pos_q, pos_avg, n_open


def _py_close_trade(tf, ti, row, s, direction, entry_ts, exit_ts, eq_, en, xq, xn, real, com, slip):
    """Row `row` of the trade tables: ledger.trade_close_values, as OpenTrade.close."""
    quantity, entry_price, exit_price, pnl, commission, costs = _trade_close_values(
        eq_, en, xq, xn, real, com, slip
    )
    tf[row, 0] = quantity
    tf[row, 1] = entry_price
    tf[row, 2] = exit_price
    tf[row, 3] = pnl
    tf[row, 4] = commission
    tf[row, 5] = costs
    ti[row, 0] = direction
    ti[row, 1] = entry_ts
    ti[row, 2] = exit_ts
    ti[row, 3] = s


def _py_book_fill(
    cf, ci, tf, ti, n_trade, s, row, cash, qty, avg, new_q, new_avg, sgn, q, price, com, slip,
    fts,
):  # fmt: skip
    """The ledger half of engine._book_fill over symbol s's state rows, with the same rules.

    The open trade's running sums live in cf[YF_T_*], its direction, entry ts and presence in
    ci[YI_T_DIR / YI_T_ETS / YI_HAS_TRADE]; a trade the fill closes becomes a row of tf/ti.
    Returns (cash, n_trade, pos_q, pos_avg).
    """
    has_trade = ci[YI_HAS_TRADE] != 0
    t_dir = ci[YI_T_DIR]
    cash -= sgn * q * price + com
    close_q = _closing_quantity(qty, sgn, q)
    if close_q > 0.0 and has_trade:
        (
            cf[YF_T_XQ],
            cf[YF_T_XN],
            cf[YF_T_REAL],
            cf[YF_T_COM],
            cf[YF_T_SLIP],
        ) = _add_exit_part(
            cf[YF_T_XQ], cf[YF_T_XN], cf[YF_T_REAL], cf[YF_T_COM], cf[YF_T_SLIP],
            close_q, q, price, avg, t_dir, com, slip,
        )  # fmt: skip
    open_q = q - close_q
    if close_q > 0.0 and (new_q == 0.0 or new_q * qty < 0.0) and has_trade:
        _close_trade(
            tf, ti, n_trade, s, t_dir, ci[YI_T_ETS], fts, cf[YF_T_EQ], cf[YF_T_EN],
            cf[YF_T_XQ], cf[YF_T_XN], cf[YF_T_REAL], cf[YF_T_COM], cf[YF_T_SLIP],
        )  # fmt: skip
        n_trade += 1
        has_trade = False
    if open_q > 0.0:
        if not has_trade:
            has_trade = True
            ci[YI_T_DIR] = sgn
            ci[YI_T_ETS] = fts
            ci[YI_T_FILL] = row
            cf[YF_T_EQ : YF_T_SLIP + 1] = 0.0
        cf[YF_T_EQ], cf[YF_T_EN], cf[YF_T_COM], cf[YF_T_SLIP] = _add_entry_part(
            cf[YF_T_EQ], cf[YF_T_EN], cf[YF_T_COM], cf[YF_T_SLIP], open_q, q, price, com, slip
        )
    ci[YI_HAS_TRADE] = 1 if has_trade else 0
    if new_q == 0.0:
        return cash, n_trade, 0.0, 0.0
    return cash, n_trade, new_q, new_avg


def _py_remove(pend, n_pend, k):
    """Drop entry k from a pending list, keeping insertion order (a dict's `del`)."""
    j = 0
    while j < n_pend and pend[j] != k:
        j += 1
    if j == n_pend:
        return n_pend
    for m in range(j, n_pend - 1):
        pend[m] = pend[m + 1]
    return n_pend - 1


# SHA-256 (FIPS 180-4): the round constants and the initial hash value.
_SHA_K = np.array(
    [
        0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4,
        0xAB1C5ED5, 0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE,
        0x9BDC06A7, 0xC19BF174, 0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F,
        0x4A7484AA, 0x5CB0A9DC, 0x76F988DA, 0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7,
        0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967, 0x27B70A85, 0x2E1B2138, 0x4D2C6DFC,
        0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85, 0xA2BFE8A1, 0xA81A664B,
        0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070, 0x19A4C116,
        0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
        0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7,
        0xC67178F2,
    ],
    dtype=np.int64,
)  # fmt: skip
_SHA_H = np.array(
    [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB,
     0x5BE0CD19],
    dtype=np.int64,
)  # fmt: skip
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UTC_SUFFIX = np.frombuffer(b"+00:00", dtype=np.uint8)
CLIENT_ID_LENGTH = 18


def client_ids(messages: np.ndarray) -> np.ndarray:
    """Client ids "cf" + sha256(m).hexdigest()[:16] of the bytes messages m (a numpy "S"
    array), as an "S18" array: the digest make_client_id and protective_client_id take of their
    messages, for many messages in one compiled pass (hashlib cost ~2 us a message)."""
    n = len(messages)
    out = np.empty((n, CLIENT_ID_LENGTH), dtype=np.uint8)
    if n:
        width = messages.dtype.itemsize
        data = np.ascontiguousarray(messages).view(np.uint8).reshape(n, width)
        lengths = np.char.str_len(messages).astype(np.int64)
        _client_id_digests(data, lengths, out)
    return out.view(f"S{CLIENT_ID_LENGTH}").reshape(n)


def iso_utc(ns: np.ndarray) -> np.ndarray:
    """datetime.isoformat() of UTC instants (whole microseconds, as ns since the epoch, years
    1-9999), as bytes (an "S32" array): "YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00"."""
    out = np.zeros((len(ns), 32), dtype=np.uint8)
    if len(ns):
        _iso_utc_into(np.ascontiguousarray(ns, dtype=np.int64), out)
    return out.view("S32").reshape(len(ns))


def _py_put_digits(out, r, pos, value, width):
    for k in range(width):
        out[r, pos + width - 1 - k] = 48 + value % 10
        value //= 10
    return pos + width


def _py_iso_utc_into(ns, out):
    """The civil date of each day by H. Hinnant's days -> (y, m, d), then its isoformat."""
    for r in range(ns.shape[0]):
        us = ns[r] // 1000
        days = us // 86_400_000_000
        rest = us - days * 86_400_000_000
        z = days + 719_468
        era = z // 146_097
        doe = z - era * 146_097
        yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
        doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
        mp = (5 * doy + 2) // 153
        day = doy - (153 * mp + 2) // 5 + 1
        month = mp + 3 if mp < 10 else mp - 9
        year = yoe + era * 400 + (1 if month <= 2 else 0)
        secs = rest // 1_000_000
        frac = rest - secs * 1_000_000
        pos = _put_digits(out, r, 0, year, 4)
        out[r, pos] = 45  # "-"
        pos = _put_digits(out, r, pos + 1, month, 2)
        out[r, pos] = 45
        pos = _put_digits(out, r, pos + 1, day, 2)
        out[r, pos] = 84  # "T"
        pos = _put_digits(out, r, pos + 1, secs // 3600, 2)
        out[r, pos] = 58  # ":"
        pos = _put_digits(out, r, pos + 1, secs // 60 % 60, 2)
        out[r, pos] = 58
        pos = _put_digits(out, r, pos + 1, secs % 60, 2)
        if frac:
            out[r, pos] = 46  # "."
            pos = _put_digits(out, r, pos + 1, frac, 6)
        for k in range(6):
            out[r, pos + k] = _UTC_SUFFIX[k]


def _py_client_id_digests(data, lengths, out):
    """out[r] = b"cf" + the first 16 hex digits of SHA-256(data[r, :lengths[r]])."""
    mask = 0xFFFFFFFF
    w = np.empty(64, dtype=np.int64)
    h = np.empty(8, dtype=np.int64)
    padded = np.zeros(((data.shape[1] + 8) // 64 + 1) * 64, dtype=np.int64)
    for r in range(data.shape[0]):
        size = lengths[r]
        total = ((size + 8) // 64 + 1) * 64  # the message, 0x80, zeros, its 64-bit length
        for p in range(size):
            padded[p] = data[r, p]
        padded[size] = 0x80
        for p in range(size + 1, total - 8):
            padded[p] = 0
        for p in range(8):
            padded[total - 1 - p] = ((size * 8) >> (8 * p)) & 0xFF
        h[:] = _SHA_H
        for off in range(0, total, 64):
            for t in range(16):
                p = off + 4 * t
                w[t] = (
                    (padded[p] << 24) | (padded[p + 1] << 16) | (padded[p + 2] << 8) | padded[p + 3]
                )
            for t in range(16, 64):
                x = w[t - 15]
                y = w[t - 2]
                s0 = (((x >> 7) | (x << 25)) ^ ((x >> 18) | (x << 14)) ^ (x >> 3)) & mask
                s1 = (((y >> 17) | (y << 15)) ^ ((y >> 19) | (y << 13)) ^ (y >> 10)) & mask
                w[t] = (w[t - 16] + s0 + w[t - 7] + s1) & mask
            a, b_, c, d, e, f, g, hh = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
            for t in range(64):
                big_s1 = (((e >> 6) | (e << 26)) ^ ((e >> 11) | (e << 21))
                          ^ ((e >> 25) | (e << 7))) & mask  # fmt: skip
                ch = (e & f) ^ ((e ^ mask) & g)
                t1 = (hh + big_s1 + ch + _SHA_K[t] + w[t]) & mask
                big_s0 = (((a >> 2) | (a << 30)) ^ ((a >> 13) | (a << 19))
                          ^ ((a >> 22) | (a << 10))) & mask  # fmt: skip
                maj = (a & b_) ^ (a & c) ^ (b_ & c)
                t2 = (big_s0 + maj) & mask
                hh = g
                g = f
                f = e
                e = (d + t1) & mask
                d = c
                c = b_
                b_ = a
                a = (t1 + t2) & mask
            h[0] = (h[0] + a) & mask
            h[1] = (h[1] + b_) & mask
            h[2] = (h[2] + c) & mask
            h[3] = (h[3] + d) & mask
            h[4] = (h[4] + e) & mask
            h[5] = (h[5] + f) & mask
            h[6] = (h[6] + g) & mask
            h[7] = (h[7] + hh) & mask
        out[r, 0] = 99  # "c"
        out[r, 1] = 102  # "f"
        for j in range(16):
            word = h[j // 8]
            out[r, 2 + j] = _HEX_DIGITS[(word >> (28 - 4 * (j % 8))) & 0xF]


def _with_globals(func, qualname, **names):
    """A copy of func that reads `names` from its globals instead of the module's values; its
    own qualname keeps numba's on-disk cache apart from func's (the cache does not key on
    globals)."""
    scope = dict(func.__globals__)
    scope.update(names)
    clone = types.FunctionType(
        func.__code__, scope, func.__name__, func.__defaults__, func.__closure__
    )
    clone.__qualname__ = qualname
    clone.__module__ = func.__module__
    return clone


def _jit_calling(func, **compiled):
    """Compile a shared rule that calls other shared rules: numba compiles leaf functions from
    their globals, so the clone compiled here sees the compiled forms of those rules under their
    own names (the reference keeps calling the plain functions)."""
    return _jit_inline(_with_globals(func, func.__qualname__, **compiled))


if numba is not None:
    _jit = numba.njit(cache=True, nogil=True)
    # Inlined into the kernel (numba's IR), for the rules it runs per bar or per queued order.
    _jit_inline = numba.njit(cache=True, nogil=True, inline="always")
    # The shared rules, compiled from the functions the reference path runs.
    _apply = _jit(_ledger.apply_to_position)
    _closing_quantity = _jit(_ledger.closing_quantity)
    _crosses = _jit(_ledger.crosses_zero)
    _add_exit_part = _jit(_ledger.add_exit_part)
    _add_entry_part = _jit(_ledger.add_entry_part)
    _trade_close_values = _jit(_ledger.trade_close_values)
    _atr_step = _jit(_stops.atr_step)
    _trail_stop = _jit(_stops.trail_stop)
    _trigger_code = _jit(_stops.trigger_code)
    _distance = _jit(_stops.distance_of)
    _levels = _jit(_stops.levels_of)
    _opens_protection = _jit_inline(_stops.opens_protection)
    _ewma_step = _jit(_costs.ewma_step)
    _commission_of = _jit(_costs.commission_of)
    _cost_fraction = _jit(_costs.cost_fraction_of)
    _volume_cap = _jit(_costs.volume_cap)
    _fill_price = _jit(_costs.fill_price_of)
    _target_units = _jit(_sizing.target_units)
    _risk_allowed = _jit(_risk.risk_allowed)
    _decide = _jit(_decision.decide_direction)
    _round_units = _jit(_instruments.round_units)
    _afford = _jit(_paper.affordable_units)
    _cash_limited = _jit_calling(
        _paper.cash_limited_quantity,
        closing_quantity=_closing_quantity,
        affordable_units=_afford,
    )
    _end_of_bar_step = _jit_inline(_paper.end_of_bar_step)
    _fill_complete = _jit_inline(_paper.fill_complete)
    _in_flight_units = _jit_inline(_ledger.in_flight_units)
    _committed_direction = _jit_inline(_ledger.committed_direction)
    _fully_filled = _jit_inline(_ledger.fully_filled)
    # The sequencing and bookkeeping of this module.
    _expected = _jit_inline(_py_expected)
    _committed = _jit_inline(_py_committed)
    _check_proba = _jit(_py_check_proba)
    _same_strings = _jit(_py_same_strings)
    _scan_bars = _jit(_py_scan_bars)
    _close_trade = _jit(_py_close_trade)
    _book_fill = numba.njit(cache=True, nogil=True, inline="always")(_py_book_fill)
    _record_fill = numba.njit(cache=True, nogil=True, inline="always")(_py_record_fill)
    _fill = numba.njit(cache=True, nogil=True, inline="always")(_py_fill)
    _remove = _jit(_py_remove)
    _store_symbol = _jit(_py_store_symbol)
    _client_id_digests = _jit(_py_client_id_digests)
    _put_digits = _jit_inline(_py_put_digits)
    _iso_utc_into = _jit(_py_iso_utc_into)
    _kernel = _jit(_py_kernel)
