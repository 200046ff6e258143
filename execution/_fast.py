"""Compiled fast path of the single-symbol backtest: the reference loop ported to one numba kernel.

`execution.backtest.run_backtest` dispatches here when the bars hold one symbol and numba is
importable; anything else (several symbols, sub-microsecond timestamps, inputs the reference loop
would reject) goes to the reference loop of engine + PaperBroker. The kernel repeats every step of
`PaperBroker.on_bar`, `engine.on_fill` and `engine.on_bar` in the same order with the same float
operations, so its orders, fills, trades and equity equal the reference loop's bit for bit; the
tests in tests/execution/test_fast_path.py hold it to that.

Broker and engine keep separate copies of what they each track (queued remainders vs pending
remainders, resting levels vs mirrored levels), because their rules differ in corner cases (the
broker drops a remainder relative to the order size, the engine an absolute dust).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

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
_N_FLOAT_PARAMS = 25
# Indices into the int parameter vector.
_I_NEXTCLOSE, _I_VCAPPED, _I_METHOD, _I_STOPKIND, _I_HASTP = range(5)
_I_ATRPERIOD, _I_MAXTRADES, _I_SHORT, _I_VOLWIN = range(5, 9)
_N_INT_PARAMS = 9

_METHODS = {"fixed_fractional": 0, "vol_target": 1, "kelly": 2, "fixed_quantity": 3}
_STOP_KINDS = {"none": 0, "fixed": 1, "atr": 2, "trailing": 3}

# Kernel status codes: anything but OK means "let the reference loop run (and raise)".
STATUS_OK = 0
STATUS_BAD_INTENT = 1  # a non-finite order size, which RiskGovernor.check rejects with ValueError
STATUS_NEED_ROOM = 2  # internal: an output buffer is full; the caller grows it and resumes

# Columns of the kernel's output tables.
# orders, float: quantity, stop, take_profit, broker remaining, engine remaining
# orders, int: bar, sign, intent (0 exit, 1 entry), has_stop, has_tp, engine pending
# fills, float: quantity, price, commission, slippage_cost
# fills, int: bar, sign, source (order index, -1 stop, -2 take profit), ts_ns
# trades, float: quantity, entry_price, exit_price, pnl, commission, costs
# trades, int: direction, entry_ts_ns, exit_ts_ns
_OF, _OI, _FF, _FI, _TF, _TI = 5, 6, 4, 4, 6, 3
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
_N_SF = 24
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
_N_SI = 23


def available() -> bool:
    """True when numba can be imported, so the compiled kernel can run."""
    return numba is not None


@dataclass(frozen=True)
class FastInputs:
    """The single-symbol input arrays of the kernel, ordered by ts (int64 ns since the epoch)."""

    symbol: str
    ts: np.ndarray  # bar open times, ns, strictly increasing
    close_ts: np.ndarray  # bar_close_ts of each bar, ns
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    has_pred: np.ndarray  # bool, a finite prediction belongs to the bar
    proba: np.ndarray  # (n, 3) p_down, p_flat, p_up; NaN where none
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
    if (ts % 1000).any():
        return None, "sub-microsecond timestamps"
    step = np.diff(ts)
    order = None
    if n > 1 and not (step > 0).all():
        order = np.argsort(ts, kind="stable")
        ts = ts[order]
        if not (np.diff(ts) > 0).all():
            return None, "duplicate bars"
    cols = []
    for name in ("open", "high", "low", "close", "volume"):
        arr = bars[name].to_numpy(np.float64)
        cols.append(np.ascontiguousarray(arr[order] if order is not None else arr))
    if not all(np.isfinite(a).all() for a in cols):
        return None, "non-finite prices"
    if "timeframe" in bars.columns and isinstance(tf := _single_value(bars["timeframe"]), str):
        length = TIMEFRAMES.get(tf, timedelta(0)) // timedelta(microseconds=1) * 1000
        close_ts = ts + np.int64(length)
    elif "timeframe" in bars.columns:
        codes, uniques = pd.factorize(bars["timeframe"].astype(str))
        lengths = np.array(
            [
                TIMEFRAMES.get(str(u), timedelta(0)) // timedelta(microseconds=1) * 1000
                for u in uniques
            ],
            dtype=np.int64,
        )
        offsets = lengths[codes] if len(lengths) else np.zeros(n, dtype=np.int64)
        close_ts = ts + (offsets[order] if order is not None else offsets)
    else:
        close_ts = ts.copy()

    if len(predictions) == 0:
        proba = np.full((n, 3), np.nan)
        return _inputs(symbol, ts, close_ts, cols, proba, 0)
    if _single_value(predictions["symbol"]) != symbol:
        return None, "predictions for other symbols"
    pts = _utc_ns(predictions["ts"])
    if len(pts) > 1 and not (np.diff(pts) > 0).all() and not (np.diff(np.sort(pts)) > 0).all():
        return None, "duplicate predictions"
    values = predictions[["p_down", "p_flat", "p_up"]].to_numpy(np.float64)
    if len(pts) == n and np.array_equal(pts, ts):  # one prediction per bar, same order
        proba = np.ascontiguousarray(values)
    else:
        proba = np.full((n, 3), np.nan)
        pos = np.searchsorted(ts, pts)
        inside = pos < n
        hit = np.zeros(len(pts), dtype=bool)
        hit[inside] = ts[pos[inside]] == pts[inside]
        proba[pos[hit]] = values[hit]
    unmatched = len(predictions) - int(np.isfinite(proba).all(axis=1).sum())
    return _inputs(symbol, ts, close_ts, cols, proba, unmatched)


def _inputs(
    symbol: str,
    ts: np.ndarray,
    close_ts: np.ndarray,
    cols: list[np.ndarray],
    proba: np.ndarray,
    unmatched: int,
) -> tuple[FastInputs | None, str]:
    has_pred = np.empty(len(proba), dtype=np.bool_)
    # Prediction.__post_init__ rejects these in the reference loop; let it raise there.
    if not _check_proba(proba, has_pred, _PROBA_TOLERANCE):
        return None, "invalid prediction probabilities"
    inputs = FastInputs(
        symbol=symbol,
        ts=np.ascontiguousarray(ts),
        close_ts=np.ascontiguousarray(close_ts),
        open=cols[0],
        high=cols[1],
        low=cols[2],
        close=cols[3],
        volume=cols[4],
        has_pred=has_pred,
        proba=np.ascontiguousarray(proba),
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
    pf[_P_VSHARE] = c.max_volume_share or 0.0
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
    pi[_I_VCAPPED] = 1 if c.max_volume_share else 0
    pi[_I_METHOD] = _METHODS[s.method]
    pi[_I_STOPKIND] = _STOP_KINDS[st.kind]
    pi[_I_HASTP] = 1 if st.take_profit_mult is not None else 0
    pi[_I_ATRPERIOD] = st.atr_period
    pi[_I_MAXTRADES] = r.max_trades_per_day
    pi[_I_SHORT] = 1 if d.allow_short else 0
    pi[_I_VOLWIN] = config.vol_window
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
    pf, pi = _params(config)
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
# The kernel. Each block names the reference function it repeats; keep them in step.

_DUST = 1e-9


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
    base_frac = (0.5 * pf[_P_SPREAD] + pf[_P_SLIP]) * 1e-4
    vol_mult = pf[_P_VOLMULT]
    cbps = pf[_P_CBPS]
    cmin = pf[_P_CMIN]
    vshare = pf[_P_VSHARE]
    vcapped = pi[_I_VCAPPED] != 0
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
    status = STATUS_OK
    cap_o = orders_f.shape[0]
    cap_f = fills_f.shape[0]
    cap_t = trades_f.shape[0]
    cap_p = pend.shape[0]
    i = start
    while i < n:
        queued = n_ord - qhead
        if (
            n_fill + queued + 2 > cap_f
            or n_trade + queued + 2 > cap_t
            or n_ord + 2 > cap_o
            or n_pend + 2 > cap_p
        ):
            status = STATUS_NEED_ROOM
            break
        # ---- PaperBroker.on_bar: vol known at decision time, queued fills and triggers
        frac = base_frac
        if v_cnt >= vol_window and vol_mult > 0.0:
            frac += vol_mult * math.sqrt(v_var)
        for phase in range(2):
            do_queue = (phase == 0) != next_close
            if do_queue:
                if qhead >= n_ord:
                    continue
                if next_close:
                    ref = c[i]
                    fts = close_ts[i]
                else:
                    ref = o[i]
                    fts = ts[i]
                vol_i = v[i]
                budget = vshare * vol_i if (vcapped and vol_i > 0.0) else math.inf
                while qhead < n_ord and budget > _DUST:
                    k = qhead
                    rem = orders_f[k, 3]
                    q = budget if budget < rem else rem
                    sgn = orders_i[k, 1]
                    price = ref * (1.0 + sgn * frac)
                    src = k
                    # -- fill (shared with the trigger below)
                    com, slip = _record_fill(
                        fills_f, fills_i, n_fill, i, sgn, src, fts, q, price, ref, cbps, cmin
                    )
                    n_fill += 1
                    qty = pos_q
                    avg = pos_avg
                    new_q, new_avg = _apply(qty, avg, sgn * q, price)
                    # broker: positions and resting levels (PaperBroker._fill)
                    if new_q == 0.0 or (qty != 0.0 and new_q * qty < 0.0):
                        b_prot = False
                    ohs = orders_i[k, 3] != 0
                    oht = orders_i[k, 4] != 0
                    if orders_i[k, 2] == 1 and not b_prot and new_q * sgn > 0.0 and (ohs or oht):
                        b_prot = True
                        b_dir = sgn
                        b_has_stop = ohs
                        b_stop = orders_f[k, 1]
                        b_has_tp = oht
                        b_tp = orders_f[k, 2]
                        b_ext = price
                        b_ts = fts
                    # engine.on_fill
                    cash, n_trade, pos_q, pos_avg = _book_fill(
                        sf,
                        si,
                        trades_f,
                        trades_i,
                        n_trade,
                        cash,
                        qty,
                        avg,
                        new_q,
                        new_avg,
                        sgn,
                        q,
                        price,
                        com,
                        slip,
                        fts,
                    )
                    if orders_i[k, 5] == 0:
                        for j in range(n_pend):
                            orders_i[pend[j], 5] = 0
                        n_pend = 0
                        e_dir = 0
                    else:
                        orders_f[k, 4] -= q
                        if orders_f[k, 4] <= _DUST:
                            orders_i[k, 5] = 0
                            n_pend = _remove(pend, n_pend, k)
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
                    if new_q == 0.0 or (qty != 0.0 and new_q * qty < 0.0):
                        e_has_stop = False
                        e_has_tp = False
                        e_ext = math.nan
                        e_has_prot_ts = False
                    # -- end fill
                    budget -= q
                    rem -= q
                    oq = orders_f[k, 0]
                    if rem <= _DUST * (oq if oq > 1.0 else 1.0):
                        qhead += 1
                    else:
                        orders_f[k, 3] = rem
            else:
                # PaperBroker._trigger
                if not b_prot or pos_q == 0.0:
                    continue
                kind = 0  # 1 stop, 2 take profit
                raw = 0.0
                oi = o[i]
                if b_dir > 0:
                    if b_has_stop and oi <= b_stop:
                        kind, raw = 1, oi
                    elif b_has_tp and oi >= b_tp:
                        kind, raw = 2, oi
                    elif b_has_stop and lo[i] <= b_stop:
                        kind, raw = 1, b_stop
                    elif b_has_tp and h[i] >= b_tp:
                        kind, raw = 2, b_tp
                elif b_dir < 0:
                    if b_has_stop and oi >= b_stop:
                        kind, raw = 1, oi
                    elif b_has_tp and oi <= b_tp:
                        kind, raw = 2, oi
                    elif b_has_stop and h[i] >= b_stop:
                        kind, raw = 1, b_stop
                    elif b_has_tp and lo[i] <= b_tp:
                        kind, raw = 2, b_tp
                if kind == 0:
                    continue
                sgn = -1 if b_dir > 0 else 1
                price = raw * (1.0 + sgn * frac) if kind == 1 else raw
                q = abs(pos_q)
                ref = raw
                fts = ts[i]
                src = SOURCE_STOP if kind == 1 else SOURCE_TAKE_PROFIT
                # -- fill, as above but for an order the engine does not know
                com, slip = _record_fill(
                    fills_f, fills_i, n_fill, i, sgn, src, fts, q, price, ref, cbps, cmin
                )
                n_fill += 1
                qty = pos_q
                avg = pos_avg
                new_q, new_avg = _apply(qty, avg, sgn * q, price)
                if new_q == 0.0 or (qty != 0.0 and new_q * qty < 0.0):
                    b_prot = False
                cash, n_trade, pos_q, pos_avg = _book_fill(
                    sf,
                    si,
                    trades_f,
                    trades_i,
                    n_trade,
                    cash,
                    qty,
                    avg,
                    new_q,
                    new_avg,
                    sgn,
                    q,
                    price,
                    com,
                    slip,
                    fts,
                )
                for j in range(n_pend):
                    orders_i[pend[j], 5] = 0
                n_pend = 0
                e_dir = 0
                if new_q == 0.0 or (qty != 0.0 and new_q * qty < 0.0):
                    e_has_stop = False
                    e_has_tp = False
                    e_ext = math.nan
                    e_has_prot_ts = False
                # the broker cancels what is queued for the symbol
                qhead = n_ord
        # PaperBroker._trail
        if b_prot and b_has_stop and trailing and not (next_close and b_ts == ts[i]):
            b_stop, b_ext = _trail(b_dir, b_stop, b_ext, h[i], lo[i], stop_pct)

        # ---- engine.on_bar
        mark = c[i]
        # AtrEstimator.update
        if atr_cnt == 0:
            tr = h[i] - lo[i]
        else:
            tr = h[i] - lo[i]
            a2 = abs(h[i] - atr_pc)
            if a2 > tr:
                tr = a2
            a3 = abs(lo[i] - atr_pc)
            if a3 > tr:
                tr = a3
        atr_cnt += 1
        if atr_cnt == 1:
            atr = tr
        elif atr_cnt <= atr_period:
            atr += (tr - atr) / atr_cnt
        else:
            atr = (atr * (atr_period - 1) + tr) / atr_period
        atr_pc = c[i]
        # EwmaVol.update (one estimator serves broker and engine: both see the same closes)
        if v_cnt == 0 and math.isnan(v_last):
            v_last = c[i]
        else:
            if c[i] > 0.0 and v_last > 0.0:
                r = math.log(c[i] / v_last)
                if v_cnt == 0:
                    v_var = r * r
                else:
                    v_var = (1.0 - alpha) * v_var + alpha * r * r
                v_cnt += 1
            v_last = c[i]
        if (
            e_has_stop
            and pos_q != 0.0
            and trailing
            and not (next_close and e_has_prot_ts and e_prot_ts == ts[i])
        ):
            e_stop, e_ext = _trail(1 if pos_q > 0 else -1, e_stop, e_ext, h[i], lo[i], stop_pct)

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

        if has_pred[i]:
            p_dn = proba[i, 0]
            p_fl = proba[i, 1]
            p_up = proba[i, 2]
            # decide
            direction = 0
            if abs(p_up - p_dn) <= margin and margin > 0.0:
                direction = 0
            elif p_up > p_dn and p_up > p_fl and p_up >= min_conf:
                direction = 1
            elif p_dn > p_up and p_dn > p_fl and p_dn >= min_conf:
                direction = -1 if allow_short else 0
            if direction != e_dir:
                expected = pos_q
                for j in range(n_pend):
                    kk = pend[j]
                    expected += orders_i[kk, 1] * orders_f[kk, 4]
                if abs(expected) > _DUST:
                    aexp = abs(expected)
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
                    pend[n_pend] = n_ord
                    n_pend += 1
                    n_ord += 1
                e_dir = 0
                if direction != 0:
                    price = c[i]
                    has_dist = stop_kind != 0
                    dist = 0.0
                    if has_dist:
                        if stop_kind == 2 and atr > 0.0:
                            dist = pf[_P_ATRMULT] * atr
                        else:
                            dist = stop_pct * price
                    risk_dist = dist if has_dist else stop_pct * price
                    if direction > 0:
                        p_win, p_loss = p_up, p_dn
                    else:
                        p_win, p_loss = p_dn, p_up
                    # sizing.target_quantity
                    qty = 0.0
                    if eq <= 0.0 or price <= 0.0 or not math.isfinite(price):
                        qty = 0.0
                    else:
                        qty = _target(
                            method,
                            pf,
                            eq,
                            price,
                            risk_dist,
                            v_cnt >= vol_window,
                            v_var,
                            p_win,
                            p_loss,
                        )
                    if qty > _DUST:
                        if not math.isfinite(qty):
                            status = STATUS_BAD_INTENT
                            break
                        approved = _govern(
                            pf, max_trades, qty, price, risk_dist, eq, peak, dse, trades_today
                        )
                        if approved > _DUST:
                            orders_f[n_ord, 0] = approved
                            if has_dist:
                                orders_f[n_ord, 1] = price - direction * dist
                                orders_i[n_ord, 3] = 1
                                if has_tp_cfg:
                                    orders_f[n_ord, 2] = price + direction * pf[_P_TPMULT] * dist
                                    orders_i[n_ord, 4] = 1
                                else:
                                    orders_f[n_ord, 2] = math.nan
                                    orders_i[n_ord, 4] = 0
                            else:
                                orders_f[n_ord, 1] = math.nan
                                orders_f[n_ord, 2] = math.nan
                                orders_i[n_ord, 3] = 0
                                orders_i[n_ord, 4] = 0
                            orders_f[n_ord, 3] = approved
                            orders_f[n_ord, 4] = approved
                            orders_i[n_ord, 0] = i
                            orders_i[n_ord, 1] = direction
                            orders_i[n_ord, 2] = 1
                            orders_i[n_ord, 5] = 1
                            pend[n_pend] = n_ord
                            n_pend += 1
                            n_ord += 1
                            e_dir = direction
                            trades_today += 1
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
    return i, status


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


def _py_apply(qty, avg, signed_qty, price):
    """ledger.apply_to_position."""
    new = qty + signed_qty
    if qty == 0.0 or qty * signed_qty > 0.0:
        return new, (abs(qty) * avg + abs(signed_qty) * price) / abs(new)
    if abs(signed_qty) < abs(qty):
        return new, avg
    if abs(signed_qty) == abs(qty):
        return 0.0, 0.0
    return new, price


def _py_trail(direction, stop, extreme, high, low, stop_pct):
    """stops.trail for kind "trailing"; Python's max/min keep the first argument on ties."""
    if direction > 0:
        if high > extreme:
            extreme = high
        cand = extreme * (1.0 - stop_pct)
        return (cand if cand > stop else stop), extreme
    if low < extreme:
        extreme = low
    cand = extreme * (1.0 + stop_pct)
    return (cand if cand < stop else stop), extreme


def _py_target(method, pf, eq, price, risk_dist, vol_known, v_var, p_win, p_loss):
    """sizing.target_quantity after its equity / price guard."""
    if method == 3:
        qty = pf[_P_FQTY]
    elif method == 0:
        if risk_dist <= 0.0:
            return 0.0
        qty = eq * pf[_P_RPT] / risk_dist
    elif method == 1:
        if not vol_known:
            return 0.0
        vol = math.sqrt(v_var)
        if vol <= 0.0:
            return 0.0
        annual = vol * math.sqrt(pf[_P_PPY])
        qty = eq * pf[_P_TVOL] / annual / price
    else:
        total = p_win + p_loss
        kf = 0.0 if (total <= 0.0 or p_win <= p_loss) else (p_win - p_loss) / total
        frac = pf[_P_KFRAC] * kf
        cap = pf[_P_KCAP]
        if cap < frac:
            frac = cap
        qty = eq * frac / price
    if method != 3:
        lev = pf[_P_LEV] * eq / price
        if lev < qty:
            qty = lev
    return 0.0 if 0.0 > qty else qty


def _py_govern(pf, max_trades, qty, price, risk_dist, eq, peak_equity, dse, trades_today):
    """RiskGovernor.check for one symbol whose exit was already sent (position counts as 0)."""
    opening = qty
    base = 0.0
    if not (eq > 0.0):
        return 0.0
    if trades_today >= max_trades:
        return 0.0
    if dse > 0 and eq <= dse * (1 - pf[_P_DLH]):
        return 0.0
    mdh = pf[_P_MDH]
    peak = eq if eq > peak_equity else peak_equity
    if 1.0 - eq / peak >= mdh:
        return 0.0
    dd = 1.0 - eq / peak
    dds = pf[_P_DDS]
    if dd >= mdh:
        scale = 0.0
    elif dd <= dds:
        scale = 1.0
    else:
        scale = (mdh - dd) / (mdh - dds)
    allowed = opening * scale
    cap = pf[_P_MPF] * eq / price - base
    if cap < allowed:
        allowed = cap
    cap = (pf[_P_MGE] * eq - 0.0) / price - base
    if cap < allowed:
        allowed = cap
    if risk_dist > 0.0:
        cap = pf[_P_MRPT] * eq / risk_dist
        if cap < allowed:
            allowed = cap
    if allowed >= opening:
        return qty
    allowed = allowed * (1.0 - 1e-12)
    allowed = 0.0 if 0.0 > allowed else allowed
    return 0.0 + allowed


def _py_close_trade(tf, ti, row, direction, entry_ts, exit_ts, eq_, en, xq, xn, real, com, slip):
    """ledger.OpenTrade.close."""
    tf[row, 0] = eq_
    tf[row, 1] = en / eq_ if eq_ > 0 else 0.0
    tf[row, 2] = xn / xq if xq > 0 else 0.0
    tf[row, 3] = real - com
    tf[row, 4] = com
    tf[row, 5] = com + slip
    ti[row, 0] = direction
    ti[row, 1] = entry_ts
    ti[row, 2] = exit_ts


def _py_record_fill(fills_f, fills_i, row, i, sgn, src, fts, q, price, ref, cbps, cmin):
    """Write fill `row` (commission with its minimum; spread + slippage vs the reference price)
    and return (commission, slippage_cost)."""
    notional = abs(q * price) * cbps * 1e-4
    com = cmin if cmin > notional else notional
    slip = q * abs(price - ref)
    fills_f[row, 0] = q
    fills_f[row, 1] = price
    fills_f[row, 2] = com
    fills_f[row, 3] = slip
    fills_i[row, 0] = i
    fills_i[row, 1] = sgn
    fills_i[row, 2] = src
    fills_i[row, 3] = fts
    return com, slip


def _py_book_fill(
    sf, si, tf, ti, n_trade, cash, qty, avg, new_q, new_avg, sgn, q, price, com, slip, fts
):
    """engine.on_fill for one fill (a queued order or a triggered stop/take-profit).

    The open trade's running sums live in the state arrays (sf[17:24], si[13], si[14], si[22]);
    a trade the fill closes becomes a row of tf/ti. Returns (cash, n_trade, pos_q, pos_avg).
    """
    has_trade = si[22] != 0
    t_dir = si[13]
    cash -= sgn * q * price + com
    close_q = 0.0
    if qty * sgn < 0.0:
        aq = abs(qty)
        close_q = aq if aq < q else q
    if close_q > 0.0 and has_trade:
        share = close_q / q
        sf[19] += close_q  # exit quantity
        sf[20] += close_q * price  # exit notional
        sf[21] += close_q * (price - avg) * t_dir  # realized
        sf[22] += com * share  # commission
        sf[23] += slip * share  # spread + slippage
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
        share = open_q / q
        sf[17] += open_q  # entry quantity
        sf[18] += open_q * price  # entry notional
        sf[22] += com * share
        sf[23] += slip * share
    si[22] = 1 if has_trade else 0
    if new_q == 0.0:
        return cash, n_trade, 0.0, 0.0
    return cash, n_trade, new_q, new_avg


def _py_remove(pend, n_pend, k):
    """Drop order k from the pending list, keeping insertion order (a dict's `del`)."""
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
    _apply = _jit(_py_apply)
    _check_proba = _jit(_py_check_proba)
    _trail = _jit(_py_trail)
    _target = _jit(_py_target)
    _govern = _jit(_py_govern)
    _close_trade = _jit(_py_close_trade)
    _book_fill = numba.njit(cache=True, nogil=True, inline="always")(_py_book_fill)
    _record_fill = numba.njit(cache=True, nogil=True, inline="always")(_py_record_fill)
    _remove = _jit(_py_remove)
    _kernel = _jit(_py_kernel)
