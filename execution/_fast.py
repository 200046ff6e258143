"""Compiled fast path of the single-symbol backtest: the reference loop's sequence in one kernel.

`execution.backtest.run_backtest` dispatches here when the bars hold one symbol and numba is
importable; anything else (several symbols, sub-microsecond timestamps, the "keep" partial-fill
policy, inputs the reference loop would reject) goes to the reference loop of engine +
PaperBroker, which is the definition of the behaviour.

The trading rules are not repeated here: the kernel calls the compiled forms of the very scalar
functions the reference runs (`ledger.apply_to_position`, `stops.atr_step` / `trail_stop` /
`trigger_code`, `costs.ewma_step` / `commission_of`, `sizing.target_units`,
`risk.risk_allowed`, `decision.decide_direction`, `instruments.round_units`,
`paper.affordable_units`, and the trade accounting of `ledger`). What lives here is only the
sequencing: the order lifecycle of `PaperBroker.on_bar` and `engine.on_event` / `on_bar` over
arrays. tests/execution/test_fast_path.py holds orders, fills, trades, equity and the final
engine state equal to the reference's, bit for bit.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

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
    "FastInputs",
    "FastOutputs",
    "available",
    "prepare_single_symbol",
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
_P_CASH, _P_CBPS, _P_CMIN, _P_SPREAD, _P_SLIP, _P_VOLMULT, _P_VSHARE = range(7)
_P_RPT, _P_TVOL, _P_KFRAC, _P_KCAP, _P_LEV, _P_FQTY = range(7, 13)
_P_STOPPCT, _P_ATRMULT, _P_TPMULT = range(13, 16)
_P_MPF, _P_MGE, _P_MRPT, _P_DLH, _P_MDH, _P_DDS = range(16, 22)
_P_MINCONF, _P_MARGIN, _P_PPY = range(22, 25)
_P_STEP, _P_MINQ, _P_MAXQ = range(25, 28)
_N_FLOAT_PARAMS = 28
# Indices into the int parameter vector.
_I_NEXTCLOSE, _I_VCAPPED, _I_METHOD, _I_STOPKIND, _I_HASTP = range(5)
_I_ATRPERIOD, _I_MAXTRADES, _I_SHORT, _I_VOLWIN = range(5, 9)
_I_MARGIN_OK, _I_ENTRY_BARS, _I_VWINDOW = range(9, 12)
_N_INT_PARAMS = 12

# Kernel status codes: anything but OK means "let the reference loop run (and raise)".
STATUS_OK = 0
STATUS_BAD_INTENT = 1  # a non-finite order size, which RiskGovernor.check rejects with ValueError
STATUS_NEED_ROOM = 2  # internal: an output buffer is full; the caller grows it and resumes
STATUS_UNSUPPORTED = 3  # an exit above the instrument's maximum: the broker's rejection path

# Columns of the kernel's output tables.
# orders, float: quantity, stop, take_profit, broker remaining, engine remaining
# orders, int: bar, sign, intent (0 exit, 1 entry), has_stop, has_tp, engine pending,
#   queued at the broker, bars worked, engine state (1 accepted, 2 partially filled)
# fills, float: quantity, price, commission, slippage_cost
# fills, int: bar, sign, source (order index, -1 stop, -2 take profit), ts_ns,
#   the entry order whose protection filled (-1 for order fills)
# trades, float: quantity, entry_price, exit_price, pnl, commission, costs
# trades, int: direction, entry_ts_ns, exit_ts_ns
# The engine's pending list holds order indices, and -1 / -2 for the protective stop / take
# profit the broker opened (the engine tracks them as orders too), in insertion order.
_OF, _OI, _FF, _FI, _TF, _TI = 5, 9, 4, 5, 6, 3
SOURCE_STOP = -1
SOURCE_TAKE_PROFIT = -2

# The kernel's state between calls (and at the end): floats in sf, ints and flags in si.
SF_CASH = 0
SF_POS_Q = 1
SF_POS_AVG = 2
SF_MARK = 3
SF_B_STOP = 4
SF_B_TP = 5
SF_B_EXT = 6
SF_E_STOP = 7
SF_E_TP = 8
SF_E_EXT = 9
SF_ATR_PC = 10
SF_ATR = 11
SF_V_LAST = 12
SF_V_VAR = 13
SF_PEAK = 14
SF_LAST_EQ = 15
SF_DSE = 16
SF_T_EQ = 17
SF_T_EN = 18
SF_T_XQ = 19
SF_T_XN = 20
SF_T_REAL = 21
SF_T_COM = 22
SF_T_SLIP = 23
SF_PROT_Q = 24  # quantity of the protective orders when they were opened
_N_SF = 25
SI_N_ORD = 0
SI_N_FILL = 1
SI_N_TRADE = 2
SI_N_PEND = 3
SI_QHEAD = 4
SI_B_DIR = 5
SI_B_TS = 6
SI_E_PROT_TS = 7
SI_E_DIR = 8
SI_ATR_CNT = 9
SI_V_CNT = 10
SI_CUR_DAY = 11
SI_TRADES_TODAY = 12
SI_T_DIR = 13
SI_T_ETS = 14
SI_B_PROT = 15
SI_B_HAS_STOP = 16
SI_B_HAS_TP = 17
SI_E_HAS_STOP = 18
SI_E_HAS_TP = 19
SI_E_HAS_PROT_TS = 20
SI_HAS_DAY = 21
SI_HAS_TRADE = 22
SI_PROT_K = 23  # the entry order whose fill opened the broker's protective orders
SI_N_EVENTS = 24  # order events the engine applied (its seq counts them)
_N_SI = 25


def available() -> bool:
    """True when numba can be imported, so the compiled kernel can run."""
    return numba is not None


@dataclass(frozen=True)
class FastInputs:
    """The single-symbol input arrays of the kernel, ordered by ts (int64 ns since the epoch)."""

    symbol: str
    timeframe: str  # the bars' one timeframe code ("" when the bars carry none)
    ts: np.ndarray  # bar open times, ns, strictly increasing
    close_ts: np.ndarray  # bar_close_ts of each bar, ns
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
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
    equity: np.ndarray
    exposure: np.ndarray
    state_f: np.ndarray
    state_i: np.ndarray
    pending: np.ndarray  # order indices of the engine's pending orders, in insertion order


def _utc_ns(ts: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(ts).tz_convert("UTC").as_unit("ns").asi8


def _single_value(col: pd.Series) -> str | None:
    first = col.iloc[0]
    if not isinstance(first, str):
        return None
    return first if bool((col == first).all()) else None


def prepare_single_symbol(
    bars: pd.DataFrame, predictions: pd.DataFrame
) -> tuple[FastInputs | None, str]:
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
    n = len(bars)
    if n == 0:
        return None, "no bars"
    symbol = _single_value(bars["symbol"])
    if symbol is None:
        return None, "several symbols (or non-string symbols)"
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
    length = TIMEFRAMES.get(timeframe, timedelta(0)) // timedelta(microseconds=1) * 1000
    close_ts = ts + np.int64(length)

    if len(predictions) == 0:
        proba = np.full((n, 3), np.nan)
        return _inputs(symbol, timeframe, ts, close_ts, cols, proba, 0)
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
        pos = np.searchsorted(ts, pts)
        inside = pos < n
        hit = np.zeros(len(pts), dtype=bool)
        hit[inside] = ts[pos[inside]] == pts[inside]
        proba[pos[hit]] = values[hit]
    return _inputs(symbol, timeframe, ts, close_ts, cols, proba, len(predictions))


def _inputs(
    symbol: str,
    timeframe: str,
    ts: np.ndarray,
    close_ts: np.ndarray,
    cols: list[np.ndarray],
    proba: np.ndarray,
    n_predictions: int,
) -> tuple[FastInputs | None, str]:
    has_pred = np.empty(len(proba), dtype=np.bool_)
    # Prediction.__post_init__ rejects these in the reference loop; let it raise there.
    if not _check_proba(proba, has_pred, _PROBA_TOLERANCE):
        return None, "invalid prediction probabilities"
    unmatched = n_predictions - int(has_pred.sum())
    inputs = FastInputs(
        symbol=symbol,
        timeframe=timeframe,
        ts=np.ascontiguousarray(ts),
        close_ts=np.ascontiguousarray(close_ts),
        open=cols[0],
        high=cols[1],
        low=cols[2],
        close=cols[3],
        volume=cols[4],
        has_pred=has_pred,
        proba=proba,
        unmatched=unmatched,
    )
    return inputs, ""


def _params(config: StrategyConfig, symbol: str) -> tuple[np.ndarray, np.ndarray]:
    inst = _instruments.instrument_for(symbol, config)
    pf = np.zeros(_N_FLOAT_PARAMS)
    pi = np.zeros(_N_INT_PARAMS, dtype=np.int64)
    c, s, st, r, d = config.costs, config.sizing, config.stops, config.risk, config.decision
    pf[_P_CASH] = float(config.initial_cash)
    pf[_P_CBPS], pf[_P_CMIN] = c.commission_bps, c.commission_min
    pf[_P_SPREAD], pf[_P_SLIP], pf[_P_VOLMULT] = c.spread_bps, c.slippage_bps, c.slippage_vol_mult
    pf[_P_VSHARE] = inst.max_volume_share or 0.0
    pf[_P_STEP], pf[_P_MINQ], pf[_P_MAXQ] = (
        inst.quantity_step,
        inst.min_quantity,
        inst.max_quantity,
    )
    pf[_P_RPT], pf[_P_TVOL] = s.risk_per_trade, s.target_vol
    pf[_P_KFRAC], pf[_P_KCAP] = s.kelly_fraction, s.kelly_cap
    pf[_P_LEV], pf[_P_FQTY] = s.max_leverage, s.fixed_quantity
    pf[_P_STOPPCT], pf[_P_ATRMULT] = st.stop_pct, st.atr_mult
    pf[_P_TPMULT] = st.take_profit_mult if st.take_profit_mult is not None else 0.0
    pf[_P_MPF], pf[_P_MGE], pf[_P_MRPT] = (
        r.max_position_frac,
        r.max_gross_exposure,
        (r.max_risk_per_trade),
    )
    pf[_P_DLH], pf[_P_MDH], pf[_P_DDS] = (
        r.daily_loss_halt,
        r.max_drawdown_halt,
        (r.drawdown_derisk_start),
    )
    pf[_P_MINCONF], pf[_P_MARGIN] = d.min_confidence, d.abstain_margin
    pf[_P_PPY] = float(config.periods_per_year)
    pi[_I_NEXTCLOSE] = 1 if config.fill == "next_close" else 0
    pi[_I_VCAPPED] = 1 if inst.max_volume_share else 0
    pi[_I_METHOD] = _sizing.METHOD_CODES[s.method]
    pi[_I_STOPKIND] = _stops.STOP_KIND_CODES[st.kind]
    pi[_I_HASTP] = 1 if st.take_profit_mult is not None else 0
    pi[_I_ATRPERIOD] = st.atr_period
    pi[_I_MAXTRADES] = r.max_trades_per_day
    pi[_I_SHORT] = 1 if d.allow_short else 0
    pi[_I_VOLWIN] = config.vol_window
    pi[_I_MARGIN_OK] = 1 if config.allow_margin else 0
    pi[_I_ENTRY_BARS] = 1 if config.partial_fill == "cancel" else config.partial_fill_bars
    pi[_I_VWINDOW] = c.volume_window
    return pf, pi


def _initial_state(pf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """engine.new_state and a fresh PaperBroker, as kernel state vectors."""
    sf = np.zeros(_N_SF)
    si = np.zeros(_N_SI, dtype=np.int64)
    cash = pf[_P_CASH]
    sf[SF_CASH] = sf[SF_PEAK] = sf[SF_LAST_EQ] = sf[SF_DSE] = cash
    sf[SF_MARK] = sf[SF_E_EXT] = sf[SF_ATR_PC] = sf[SF_ATR] = sf[SF_V_LAST] = math.nan
    return sf, si


def _grown(a: np.ndarray, need: int) -> np.ndarray:
    if a.shape[0] >= need:
        return a
    out = np.empty((max(need, 2 * a.shape[0]), *a.shape[1:]), dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def run_kernel(inputs: FastInputs, config: StrategyConfig) -> FastOutputs:
    """Run the compiled kernel over `inputs` (compiles, or loads the on-disk cache, once)."""
    if numba is None:
        msg = "the fast backtest path needs numba, which is not installed"
        raise NotImplementedError(msg)
    pf, pi = _params(config, inputs.symbol)
    sf, si = _initial_state(pf)
    n = len(inputs.ts)
    day = inputs.ts // _NS_PER_DAY
    n_pred = int(inputs.has_pred.sum())
    cap = max(256, n_pred // 64)
    orders_f = np.empty((cap, _OF))
    orders_i = np.empty((cap, _OI), dtype=np.int64)
    fills_f = np.empty((cap, _FF))
    fills_i = np.empty((cap, _FI), dtype=np.int64)
    trades_f = np.empty((cap, _TF))
    trades_i = np.empty((cap, _TI), dtype=np.int64)
    pend = np.empty(64, dtype=np.int64)
    equity = np.empty(n)
    exposure = np.empty(n)
    start = 0
    while True:
        start, status = _kernel(
            inputs.ts,
            inputs.close_ts,
            day,
            inputs.open,
            inputs.high,
            inputs.low,
            inputs.close,
            inputs.volume,
            inputs.has_pred,
            inputs.proba,
            pf,
            pi,
            start,
            sf,
            si,
            orders_f,
            orders_i,
            fills_f,
            fills_i,
            trades_f,
            trades_i,
            pend,
            equity,
            exposure,
        )
        if status != STATUS_NEED_ROOM:
            break
        queued = int(si[SI_N_ORD] - si[SI_QHEAD])
        orders_f = _grown(orders_f, int(si[SI_N_ORD]) + 2)
        orders_i = _grown(orders_i, int(si[SI_N_ORD]) + 2)
        fills_f = _grown(fills_f, int(si[SI_N_FILL]) + queued + 2)
        fills_i = _grown(fills_i, int(si[SI_N_FILL]) + queued + 2)
        trades_f = _grown(trades_f, int(si[SI_N_TRADE]) + queued + 2)
        trades_i = _grown(trades_i, int(si[SI_N_TRADE]) + queued + 2)
        pend = _grown(pend, int(si[SI_N_PEND]) + 2)
    n_ord, n_fill, n_trade = int(si[SI_N_ORD]), int(si[SI_N_FILL]), int(si[SI_N_TRADE])
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
        state_f=sf,
        state_i=si,
        pending=pend[: int(si[SI_N_PEND])],
    )


# ------------------------------------------------------------------------------------------------
# The kernel. Each block names the reference step it sequences; the rules are the shared
# functions, compiled below.

_DUST = 1e-9
_SCAN_OK, _SCAN_SUB_US, _SCAN_UNSORTED, _SCAN_NOT_FINITE = range(4)


def _py_kernel(
    ts,
    close_ts,
    day,
    o,
    h,
    lo,
    c,
    v,
    has_pred,
    proba,
    pf,
    pi,
    start,
    sf,
    si,
    orders_f,
    orders_i,
    fills_f,
    fills_i,
    trades_f,
    trades_i,
    pend,
    equity_out,
    exposure_out,
):
    """Run bars start.. until the end or until a buffer could overflow; returns (next bar, status).

    All state lives in sf / si between calls, so the caller can grow the buffers and resume.
    """
    n = ts.shape[0]
    spread_bps = pf[_P_SPREAD]
    slip_bps = pf[_P_SLIP]
    vol_mult = pf[_P_VOLMULT]
    cbps = pf[_P_CBPS]
    cmin = pf[_P_CMIN]
    vshare = pf[_P_VSHARE]
    step = pf[_P_STEP]
    min_q = pf[_P_MINQ]
    max_q = pf[_P_MAXQ]
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
    entry_bars = pi[_I_ENTRY_BARS]
    vwindow = pi[_I_VWINDOW]

    cash = sf[0]
    pos_q = sf[1]
    pos_avg = sf[2]
    mark = sf[3]
    b_stop = sf[4]
    b_tp = sf[5]
    b_ext = sf[6]
    e_stop = sf[7]
    e_tp = sf[8]
    e_ext = sf[9]
    atr_pc = sf[10]
    atr = sf[11]
    v_last = sf[12]
    v_var = sf[13]
    peak = sf[14]
    last_eq = sf[15]
    dse = sf[16]
    prot_q = sf[24]
    n_ord = si[0]
    n_fill = si[1]
    n_trade = si[2]
    n_pend = si[3]
    qhead = si[4]
    b_dir = si[5]
    b_ts = si[6]
    e_prot_ts = si[7]
    e_dir = si[8]
    atr_cnt = si[9]
    v_cnt = si[10]
    cur_day = si[11]
    trades_today = si[12]
    b_prot = si[15] != 0
    b_has_stop = si[16] != 0
    b_has_tp = si[17] != 0
    e_has_stop = si[18] != 0
    e_has_tp = si[19] != 0
    e_has_prot_ts = si[20] != 0
    has_day = si[21] != 0
    prot_k = si[23]
    n_ev = si[24]
    status = STATUS_OK
    cap_o = orders_f.shape[0]
    cap_f = fills_f.shape[0]
    cap_t = trades_f.shape[0]
    cap_p = pend.shape[0]
    i = start
    while i < n:
        while qhead < n_ord and orders_i[qhead, 6] == 0:
            qhead += 1
        queued = n_ord - qhead
        if (
            n_fill + queued + 2 > cap_f
            or n_trade + queued + 2 > cap_t
            or n_ord + 2 > cap_o
            or n_pend + 4 > cap_p
        ):
            status = STATUS_NEED_ROOM
            break
        # ---- PaperBroker.on_bar: vol known at decision time, queued fills and triggers
        frac = _cost_fraction(
            spread_bps, slip_bps, vol_mult, math.sqrt(v_var) if v_cnt >= vol_window else 0.0
        )
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
                if i > 0:
                    j0 = i - vwindow if i > vwindow else 0
                    tot = 0.0
                    for j in range(j0, i):
                        tot += v[j]
                    known = tot / (i - j0)
                budget = _volume_cap(known, vshare)
                k = qhead
                while k < n_ord and budget > _DUST:
                    if orders_i[k, 6] == 0:
                        k += 1
                        continue
                    rem = orders_f[k, 3]
                    q = budget if budget < rem else rem
                    sgn = orders_i[k, 1]
                    price = _fill_price(sgn, ref, frac)
                    short_of_cash = False
                    if sgn > 0 and not margin_ok:
                        closing = _closing_quantity(pos_q, sgn, q)
                        if q > closing:
                            afford = _afford(cash - closing * price, price, cbps, cmin, step)
                            if closing + afford < q:
                                q = closing + afford
                                short_of_cash = True
                    if q > _DUST:
                        qty = pos_q
                        cash, n_trade, pos_q, pos_avg = _fill(
                            fills_f, fills_i, n_fill, sf, si, trades_f, trades_i, n_trade,
                            i, sgn, k, -1, fts, q, price, ref, cbps, cmin, cash, qty, pos_avg,
                        )  # fmt: skip
                        n_fill += 1
                        n_ev += 1
                        new_q = pos_q
                        orders_i[k, 8] = 2
                        orders_f[k, 4] -= q
                        if orders_f[k, 4] <= _DUST:
                            orders_i[k, 5] = 0
                            n_pend = _remove(pend, n_pend, k)
                        ohs = orders_i[k, 3] != 0
                        oht = orders_i[k, 4] != 0
                        if (
                            orders_i[k, 2] == 1
                            and not e_has_stop
                            and not e_has_tp
                            and new_q * sgn > 0.0
                            and (ohs or oht)
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
                                n_pend = _remove(pend, n_pend, -1)
                                n_ev += 1
                            if b_has_tp:
                                n_pend = _remove(pend, n_pend, -2)
                                n_ev += 1
                        if (
                            orders_i[k, 2] == 1
                            and not b_prot
                            and new_q * sgn > 0.0
                            and (ohs or oht)
                        ):
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
                                pend[n_pend] = -1
                                n_pend += 1
                                n_ev += 2
                            if oht:
                                pend[n_pend] = -2
                                n_pend += 1
                                n_ev += 2
                        budget -= q
                        rem -= q
                    if short_of_cash:
                        # OrderCancelled("insufficient_cash")
                        orders_i[k, 6] = 0
                        if orders_i[k, 5] != 0:
                            orders_i[k, 5] = 0
                            n_pend = _remove(pend, n_pend, k)
                        n_ev += 1
                        k += 1
                        continue
                    oq = orders_f[k, 0]
                    if rem <= _DUST * (oq if oq > 1.0 else 1.0):
                        orders_i[k, 6] = 0
                        if rem > _DUST:
                            # OrderCancelled("dust"): the engine still counted the rest
                            orders_i[k, 5] = 0
                            n_pend = _remove(pend, n_pend, k)
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
                cash, n_trade, pos_q, pos_avg = _fill(
                    fills_f, fills_i, n_fill, sf, si, trades_f, trades_i, n_trade,
                    i, sgn, src, prot_k, fts, q, price, raw, cbps, cmin, cash, qty, pos_avg,
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
                    kk = pend[j]
                    if kk >= 0:
                        orders_i[kk, 5] = 0
                for kk in range(qhead, n_ord):
                    if orders_i[kk, 6] != 0:
                        orders_i[kk, 6] = 0
                        n_ev += 1
                n_pend = 0
                qhead = n_ord
        # PaperBroker._end_of_bar: entries that had their bars stop working
        for kk in range(qhead, n_ord):
            if orders_i[kk, 6] != 0 and orders_i[kk, 2] == 1:
                orders_i[kk, 7] += 1
                if orders_i[kk, 7] >= entry_bars:
                    orders_i[kk, 6] = 0
                    if orders_i[kk, 5] != 0:
                        orders_i[kk, 5] = 0
                        n_pend = _remove(pend, n_pend, kk)
                    n_ev += 1
        # PaperBroker._trail
        if b_prot and b_has_stop and trailing and not (next_close and b_ts == ts[i]):
            b_stop, b_ext = _trail_stop(b_dir, b_stop, b_ext, h[i], lo[i], stop_pct)

        # ---- engine.on_bar
        mark = c[i]
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

        if not has_day or cur_day != day[i]:
            if has_day:
                dse = last_eq
            has_day = True
            cur_day = day[i]
            trades_today = 0
        eq = cash
        if pos_q != 0.0:
            eq += pos_q * mark
        last_eq = eq
        if eq > peak:
            peak = eq
        e_dir = _committed(pos_q, pend, n_pend, orders_i, orders_f)

        if has_pred[i]:
            p_dn = proba[i, 0]
            p_up = proba[i, 2]
            direction = _decide(p_dn, proba[i, 1], p_up, min_conf, margin, allow_short)
            if direction != e_dir:
                # Cancel the entries still working (the broker answers at once)
                j = 0
                while j < n_pend:
                    kk = pend[j]
                    if kk >= 0 and orders_i[kk, 2] == 1:
                        orders_i[kk, 6] = 0
                        orders_i[kk, 5] = 0
                        n_pend = _remove(pend, n_pend, kk)
                        n_ev += 1
                    else:
                        j += 1
                expected = pos_q
                for j in range(n_pend):
                    kk = pend[j]
                    if kk >= 0:
                        expected += orders_i[kk, 1] * orders_f[kk, 4]
                if abs(expected) > _DUST:
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
                    orders_i[n_ord, 1] = -1 if expected > 0 else 1
                    orders_i[n_ord, 2] = 0
                    orders_i[n_ord, 3] = 0
                    orders_i[n_ord, 4] = 0
                    orders_i[n_ord, 5] = 1
                    orders_i[n_ord, 6] = 1
                    orders_i[n_ord, 7] = 0
                    orders_i[n_ord, 8] = 1
                    pend[n_pend] = n_ord
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
                        allowed, code = _risk_allowed(
                            qty,
                            0.0,
                            eq,
                            peak,
                            dse,
                            trades_today,
                            0.0,
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
                            pend[n_pend] = n_ord
                            n_pend += 1
                            n_ord += 1
                            n_ev += 1
                            trades_today += 1
                e_dir = _committed(pos_q, pend, n_pend, orders_i, orders_f)
        # run_backtest: equity and exposure after the bar
        eq2 = cash
        gross = 0.0
        if pos_q != 0.0:
            eq2 += pos_q * mark
            gross = abs(pos_q) * mark
        equity_out[i] = eq2
        exposure_out[i] = gross / eq2 if eq2 != 0 else math.nan
        i += 1

    sf[0] = cash
    sf[1] = pos_q
    sf[2] = pos_avg
    sf[3] = mark
    sf[4] = b_stop
    sf[5] = b_tp
    sf[6] = b_ext
    sf[7] = e_stop
    sf[8] = e_tp
    sf[9] = e_ext
    sf[10] = atr_pc
    sf[11] = atr
    sf[12] = v_last
    sf[13] = v_var
    sf[14] = peak
    sf[15] = last_eq
    sf[16] = dse
    sf[24] = prot_q
    si[0] = n_ord
    si[1] = n_fill
    si[2] = n_trade
    si[3] = n_pend
    si[4] = qhead
    si[5] = b_dir
    si[6] = b_ts
    si[7] = e_prot_ts
    si[8] = e_dir
    si[9] = atr_cnt
    si[10] = v_cnt
    si[11] = cur_day
    si[12] = trades_today
    si[15] = 1 if b_prot else 0
    si[16] = 1 if b_has_stop else 0
    si[17] = 1 if b_has_tp else 0
    si[18] = 1 if e_has_stop else 0
    si[19] = 1 if e_has_tp else 0
    si[20] = 1 if e_has_prot_ts else 0
    si[21] = 1 if has_day else 0
    si[23] = prot_k
    si[24] = n_ev
    return i, status


def _py_committed(pos_q, pend, n_pend, orders_i, orders_f):
    """engine._settle: the sign of position plus the non-protective orders in flight."""
    qty = pos_q
    for j in range(n_pend):
        k = pend[j]
        if k >= 0:
            qty += orders_i[k, 1] * orders_f[k, 4]
    if abs(qty) <= _DUST:
        return 0
    return 1 if qty > 0 else -1


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


def _py_record_fill(fills_f, fills_i, row, i, sgn, src, prot, fts, q, price, ref, cbps, cmin):
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
    return com, slip


def _py_fill(
    fills_f, fills_i, row, sf, si, tf, ti, n_trade, i, sgn, src, prot, fts, q, price, ref,
    cbps, cmin, cash, qty, avg,
):  # fmt: skip
    """One fill, both halves: PaperBroker._fill writes fill `row`, engine.on_event(Fill) books
    it (cash, position, the open trade). Returns (cash, n_trade, quantity, avg_price) after."""
    com, slip = _record_fill(
        fills_f, fills_i, row, i, sgn, src, prot, fts, q, price, ref, cbps, cmin
    )
    new_q, new_avg = _apply(qty, avg, sgn * q, price)
    return _book_fill(
        sf, si, tf, ti, n_trade, cash, qty, avg, new_q, new_avg, sgn, q, price, com, slip, fts
    )


def _py_close_trade(tf, ti, row, direction, entry_ts, exit_ts, eq_, en, xq, xn, real, com, slip):
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


def _py_book_fill(
    sf, si, tf, ti, n_trade, cash, qty, avg, new_q, new_avg, sgn, q, price, com, slip, fts
):
    """The ledger half of engine._book_fill over the state arrays, with the same rules.

    The open trade's running sums live in sf[17:24] (entry qty, entry notional, exit qty, exit
    notional, realized, commission, slippage), si[13] (direction), si[14] (entry ts), si[22]
    (has trade); a trade the fill closes becomes a row of tf/ti. Returns (cash, n_trade, pos_q,
    pos_avg).
    """
    has_trade = si[22] != 0
    t_dir = si[13]
    cash -= sgn * q * price + com
    close_q = _closing_quantity(qty, sgn, q)
    if close_q > 0.0 and has_trade:
        sf[19], sf[20], sf[21], sf[22], sf[23] = _add_exit_part(
            sf[19], sf[20], sf[21], sf[22], sf[23], close_q, q, price, avg, t_dir, com, slip
        )
    open_q = q - close_q
    if close_q > 0.0 and (new_q == 0.0 or new_q * qty < 0.0) and has_trade:
        _close_trade(
            tf,
            ti,
            n_trade,
            t_dir,
            si[14],
            fts,
            sf[17],
            sf[18],
            sf[19],
            sf[20],
            sf[21],
            sf[22],
            sf[23],
        )
        n_trade += 1
        has_trade = False
    if open_q > 0.0:
        if not has_trade:
            has_trade = True
            si[13] = sgn
            si[14] = fts
            sf[17:24] = 0.0
        sf[17], sf[18], sf[22], sf[23] = _add_entry_part(
            sf[17], sf[18], sf[22], sf[23], open_q, q, price, com, slip
        )
    si[22] = 1 if has_trade else 0
    if new_q == 0.0:
        return cash, n_trade, 0.0, 0.0
    return cash, n_trade, new_q, new_avg


def _py_remove(pend, n_pend, k):
    """Drop entry k from the pending list, keeping insertion order (a dict's `del`)."""
    j = 0
    while j < n_pend and pend[j] != k:
        j += 1
    if j == n_pend:
        return n_pend
    for m in range(j, n_pend - 1):
        pend[m] = pend[m + 1]
    return n_pend - 1


if numba is not None:
    _jit = numba.njit(cache=True, nogil=True)
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
    # The sequencing and bookkeeping of this module.
    _committed = _jit(_py_committed)
    _check_proba = _jit(_py_check_proba)
    _scan_bars = _jit(_py_scan_bars)
    _close_trade = _jit(_py_close_trade)
    _book_fill = numba.njit(cache=True, nogil=True, inline="always")(_py_book_fill)
    _record_fill = numba.njit(cache=True, nogil=True, inline="always")(_py_record_fill)
    _fill = numba.njit(cache=True, nogil=True, inline="always")(_py_fill)
    _remove = _jit(_py_remove)
    _kernel = _jit(_py_kernel)
