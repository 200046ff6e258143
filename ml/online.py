"""Incremental features for the live plane: O(1) work per bar and indicator, same values as batch.

`OnlineFeatures(config).update(open, high, low, close, volume)` returns the feature row of the
newest bar, equal (to rounding, far below 1e-9) to the last row of `compute_features` over every
bar passed so far. It does not recompute a window: each indicator keeps the state its batch
algorithm carries from row to row, and this module repeats that algorithm one row at a time:

- TA-Lib's recursions as TA-Lib runs them: SMA and WMA as running totals from the first bar,
  EMA seeded with the SMA of its first period (MACD's fast EMA seeded where TA-Lib seeds it,
  `macd_slow - macd_fast` bars in), RSI, ATR and ADX with Wilder's smoothing after a summed seed,
  the Bollinger deviation from a running sum of squares, STOCH's two SMAs over %K. The SMA,
  RSI, ATR, ADX and MACD-signal folds and the EMA step are ml._kernels' recurrences, the ones
  ml.features runs over whole series (STOCH and Williams %R remain TA-Lib's there); the EMA's
  SMA seed is summed here from the bar buffer, there from the series, in the same order.
- ml._kernels' rolling sums, with the same exact recompute every `w` rows counted from the first
  bar, so that add/subtract rounding is the batch kernels' own.

The newest bars are kept in a short buffer (twice the longest lookback, shifted down when full):
what leaves a window is read back from it. The state is plain numpy arrays, so it pickles into a
Bytewax snapshot and resumes exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from ml._kernels import (
    _amihud_row,
    _flow_row,
    _vwap_row,
    adx_fold,
    atr_fold,
    bar_looks_valid,
    bollinger_row,
    ema_k,
    ema_step,
    keltner_row,
    macd_signal_fold,
    rsi_fold,
    rsi_value,
    sma_fold,
    true_range,
    window_deviation,
    window_wma,
)
from ml.errors import FeatureInputError
from ml.features import FeatureConfig, _finite_lookback, _return_pad, builtin_feature_columns

__all__ = ["OnlineFeatures"]

_NAN = np.nan

# buffer rows
_H, _L, _C, _V, _LP, _RP, _N_ROWS = 0, 1, 2, 3, 4, 5, 6

# int config vector
(
    _I_NSMA,
    _I_NEMA,
    _I_WMA,
    _I_MFAST,
    _I_MSLOW,
    _I_MSIG,
    _I_RSI,
    _I_SK,
    _I_SSK,
    _I_SSD,
    _I_ADX,
    _I_ROC,
    _I_WILLR,
    _I_BB,
    _I_ATR,
    _I_KC,
    _I_FLOW,
    _I_VWAP,
    _I_VZ,
    _I_NLAG,
    _I_STAT,
    _I_Z,
    _I_ACW,
    _I_ACL,
    _I_HW,
    _I_NHL,
    _I_VOL,
    _I_SHARPE,
    _I_DD,
    _I_AMIHUD,
    _I_ROLL,
    _I_PAD,
    _N_ICFG,
) = range(33)

# float state slots (scalars); arrays of per-period and per-lag state follow _F_END
(
    _F_M_FAST,
    _F_M_SLOW,
    _F_M_SIG,
    _F_RSI_GAIN,
    _F_RSI_LOSS,
    _F_BB_TOTAL,
    _F_SK_TOTAL,
    _F_SD_TOTAL,
    _F_ADX_MDM,
    _F_ADX_PDM,
    _F_ADX_TR,
    _F_ADX_SUMDX,
    _F_ADX,
    _F_ATR_TOTAL,
    _F_ATR,
    _F_KC_EMA,
    _F_DD_MAX,
    _F_MOM0,
    _F_MOM1,
    _F_MOM2,
    _F_MOM3,
    _F_CZ_K,
    _F_CZ_S1,
    _F_CZ_S2,
    _F_VZ_K,
    _F_VZ_S1,
    _F_VZ_S2,
    _F_VOL_V0,
    _F_VOL_V1,
    _F_VOL_H0,
    _F_VOL_H1,
    _F_LQ_F0,
    _F_LQ_F1,
    _F_LQ_V0,
    _F_LQ_V1,
    _F_LQ_A0,
    _F_LQ_A1,
    _F_LQ_C0,
    _F_LQ_C1,
    _F_LQ_C2,
    _F_HURST_COEF,
    _F_END,
) = range(42)

# int state slots
(
    _S_G,  # bars seen before this one
    _S_POS,  # buffer column of the newest bar
    _S_DD_IDX,  # global index of the rolling maximum
    _S_MOM_FILL,
    _S_CZ_FILL,
    _S_VZ_FILL,
    _S_VOL_FILL_V,
    _S_VOL_FILL_S,
    _S_ACF_FILL,
    _S_HURST_FILL,
    _S_LQ_FILL_F,
    _S_LQ_FILL_V,
    _S_LQ_FILL_A,
    _S_LQ_FILL_R,
    _S_HURST_GEOM,
    _S_HURST_NNUM,
    _S_HURST_NDEN,
    _N_ISTATE,
) = range(18)


@njit(cache=True, inline="always", error_model="numpy")
def _ema_step(prev, x, g, first, period, buf, col, pos):  # pragma: no cover - jitted
    """TA-Lib's EMA of the series that starts at global row `first`: (state, output)."""
    seed_at = first + period - 1
    if g < seed_at:
        return prev, _NAN
    if g == seed_at:
        total = 0.0
        for t in range(pos - period + 1, pos + 1):
            total += buf[col, t]
        v = total / period
        return v, v
    v = ema_step(prev, x, ema_k(period))
    return v, v


@njit(cache=True, inline="always", error_model="numpy")
def _lp_at(buf, pos, back):  # pragma: no cover - jitted
    return buf[_LP, pos - back]


@njit(cache=True, nogil=True, error_model="numpy")
def _hurst_constants(lags, weights, exps, num_idx, den_idx):  # pragma: no cover - jitted
    """ml._kernels.hurst_feature's per-call constants, by the same arithmetic.

    Fills the arrays; returns (geometric, coef, n_num, n_den)."""
    nl = lags.shape[0]
    logk = np.log(lags.astype(np.float64))
    centred = logk - logk.mean()
    weights[:] = centred / (centred * centred).sum()
    ratio_q = lags[1] / lags[0]
    geometric = ratio_q > 1.0
    for j in range(1, nl):
        if lags[j] != lags[j - 1] * ratio_q:
            geometric = False
    exps[:] = 0
    coef = 0.0
    if geometric:
        ss = 0.0
        for j in range(nl):
            exps[j] = 2 * j - (nl - 1)
            ss += (j - (nl - 1) / 2.0) ** 2
        coef = 0.25 / (math.log(ratio_q) * ss)
    n_num = 0
    n_den = 0
    for j in range(nl):
        for _ in range(max(exps[j], 0)):
            num_idx[n_num] = j
            n_num += 1
        for _ in range(max(-exps[j], 0)):
            den_idx[n_den] = j
            n_den += 1
    return geometric, coef, n_num, n_den


@njit(cache=True, nogil=True, error_model="numpy")
def _update(
    bar,
    buf,
    fs,
    ist,
    cfg,
    kcfg,
    sma_p,
    sma_s,
    ema_p,
    ema_s,
    ret_lags,
    hurst_lags,
    hurst_w,
    hurst_num,
    hurst_den,
    hurst_s1,
    hurst_s2,
    hurst_var,
    acf_s,
    acf_tmp,
    hl2_ring,
    sk_ring,
    sd_ring,
    out,
):  # pragma: no cover - jitted
    """Fold one bar (o, h, l, c, v) into the state; write its feature row into `out`.

    Returns the columns written, or -1 (state untouched) for a bar that is not valid."""
    if not bar_looks_valid(bar[0], bar[1], bar[2], bar[3], bar[4]):
        return -1
    g = ist[_S_G]
    keep = buf.shape[1] // 2
    pos = ist[_S_POS] + 1
    if pos >= buf.shape[1]:  # shift the newest `keep` columns down; older ones are never read
        for r in range(_N_ROWS):
            for t in range(keep):
                buf[r, t] = buf[r, pos - keep + t]
        pos = keep
    ist[_S_POS] = pos
    h = bar[1]
    lo = bar[2]
    cl = bar[3]
    vo = bar[4]
    buf[_H, pos] = h
    buf[_L, pos] = lo
    buf[_C, pos] = cl
    buf[_V, pos] = vo
    lp = math.log(cl)
    buf[_LP, pos] = lp
    buf[_RP, pos] = lp - buf[_LP, pos - 1] if g >= 1 else 0.0
    k = 0  # output column

    # --- close / SMA - 1 (TA-Lib SMA: running total from the first bar) ---
    for j in range(sma_p.shape[0]):
        p = sma_p[j]
        sma_s[j], window = sma_fold(sma_s[j], cl, buf[_C, pos - p + 1], g >= p - 1)
        v = cl / (window / p) - 1.0 if g >= p - 1 else _NAN
        out[k] = v
        k += 1
    # --- close / EMA - 1 ---
    for j in range(ema_p.shape[0]):
        ema_s[j], e = _ema_step(ema_s[j], cl, g, 0, ema_p[j], buf, _C, pos)
        out[k] = cl / e - 1.0
        k += 1
    # --- close / WMA - 1 (summed over the window, as ml._kernels.wma_ratio) ---
    p = cfg[_I_WMA]
    out[k] = cl / window_wma(buf[_C], pos, p) - 1.0 if g >= p - 1 else _NAN
    k += 1
    # --- MACD (TA-Lib INT_MACD: both EMAs output from slow-1, the fast one seeded there) ---
    fast = cfg[_I_MFAST]
    slow = cfg[_I_MSLOW]
    sig = cfg[_I_MSIG]
    fs[_F_M_SLOW], e_slow = _ema_step(fs[_F_M_SLOW], cl, g, 0, slow, buf, _C, pos)
    fs[_F_M_FAST], e_fast = _ema_step(fs[_F_M_FAST], cl, g, slow - fast, fast, buf, _C, pos)
    macd = e_fast - e_slow
    macd_v = _NAN
    sig_v = _NAN
    hist_v = _NAN
    if g >= slow - 1:
        # the signal EMA seeds on the first `sig` MACD values, kept in sk_ring's tail slots
        m0 = slow - 1
        fs[_F_M_SIG] = macd_signal_fold(fs[_F_M_SIG], macd, g - m0, sig)
        if g >= m0 + sig - 1:
            macd_v = macd
            sig_v = fs[_F_M_SIG]
            hist_v = macd - sig_v
    out[k] = macd_v / cl
    out[k + 1] = sig_v / cl
    out[k + 2] = hist_v / cl
    k += 3
    # --- RSI (Wilder) ---
    p = cfg[_I_RSI]
    v = _NAN
    if g >= 1:
        fs[_F_RSI_GAIN], fs[_F_RSI_LOSS] = rsi_fold(
            fs[_F_RSI_GAIN], fs[_F_RSI_LOSS], cl - buf[_C, pos - 1], g, p
        )
        if g >= p:
            v = rsi_value(fs[_F_RSI_GAIN], fs[_F_RSI_LOSS])
    rsi_v = v
    # --- STOCH (fast %K over sk, then SMA sk_slow, then SMA sd_slow) ---
    pk = cfg[_I_SK]
    psk = cfg[_I_SSK]
    psd = cfg[_I_SSD]
    stoch_k = _NAN
    stoch_d = _NAN
    first_k = pk - 1
    if g >= first_k:
        hh = buf[_H, pos]
        ll = buf[_L, pos]
        for t in range(pos - pk + 1, pos):
            if buf[_H, t] > hh:
                hh = buf[_H, t]
            if buf[_L, t] < ll:
                ll = buf[_L, t]
        diff = (hh - ll) / 100.0
        fk = (cl - ll) / diff if diff != 0.0 else 0.0
        ik = g - first_k  # index into the %K series
        fs[_F_SK_TOTAL] += fk
        sk_ring[ik % psk] = fk
        if ik >= psk - 1:
            tmp = fs[_F_SK_TOTAL]
            oldest = sk_ring[(ik + 1) % psk]
            fs[_F_SK_TOTAL] -= oldest if psk > 1 else fk
            slow_k = tmp / psk
            isk = ik - (psk - 1)
            fs[_F_SD_TOTAL] += slow_k
            sd_ring[isk % psd] = slow_k
            if isk >= psd - 1:
                tmp2 = fs[_F_SD_TOTAL]
                oldest2 = sd_ring[(isk + 1) % psd]
                fs[_F_SD_TOTAL] -= oldest2 if psd > 1 else slow_k
                stoch_k = slow_k
                stoch_d = tmp2 / psd
    # --- ADX (Wilder) ---
    adx_v = _NAN
    if g >= 1:
        (
            fs[_F_ADX_MDM], fs[_F_ADX_PDM], fs[_F_ADX_TR], fs[_F_ADX_SUMDX], fs[_F_ADX], adx_v
        ) = adx_fold(
            fs[_F_ADX_MDM], fs[_F_ADX_PDM], fs[_F_ADX_TR], fs[_F_ADX_SUMDX], fs[_F_ADX],
            h - buf[_H, pos - 1], buf[_L, pos - 1] - lo, true_range(h, lo, buf[_C, pos - 1]),
            g, cfg[_I_ADX],
        )  # fmt: skip
    out[k] = rsi_v
    out[k + 1] = stoch_k
    out[k + 2] = stoch_d
    out[k + 3] = adx_v
    k += 4
    # --- ROC, Williams %R ---
    p = cfg[_I_ROC]
    v = _NAN
    if g >= p:
        prev = buf[_C, pos - p]
        v = ((cl / prev) - 1.0) * 100.0 if prev != 0.0 else 0.0
    out[k] = v
    k += 1
    p = cfg[_I_WILLR]
    v = _NAN
    if g >= p - 1:
        hh = buf[_H, pos]
        ll = buf[_L, pos]
        for t in range(pos - p + 1, pos):
            if buf[_H, t] > hh:
                hh = buf[_H, t]
            if buf[_L, t] < ll:
                ll = buf[_L, t]
        diff = (hh - ll) / (-100.0)
        v = (hh - cl) / diff if diff != 0.0 else 0.0
    willr_v = v
    out[k] = willr_v
    k += 1
    # --- Bollinger (TA-Lib SMA middle, two-pass deviation as ml._kernels.bollinger_features) ---
    p = cfg[_I_BB]
    bk = kcfg[0]
    fs[_F_BB_TOTAL], window = sma_fold(fs[_F_BB_TOTAL], cl, buf[_C, pos - p + 1], g >= p - 1)
    a = _NAN
    b = _NAN
    x = _NAN
    y = _NAN
    if g >= p - 1:
        middle = window / p
        a, b, x, y = bollinger_row(cl, middle, window_deviation(buf[_C], pos, p) * bk)
    out[k] = a
    out[k + 1] = b
    out[k + 2] = x
    out[k + 3] = y
    k += 4
    # --- ATR and Keltner ---
    p = cfg[_I_ATR]
    atr = _NAN
    if g >= 1:
        fs[_F_ATR_TOTAL], fs[_F_ATR] = atr_fold(
            fs[_F_ATR_TOTAL], fs[_F_ATR], true_range(h, lo, buf[_C, pos - 1]), g, p
        )
        if g >= p:
            atr = fs[_F_ATR]
    fs[_F_KC_EMA], mid = _ema_step(fs[_F_KC_EMA], cl, g, 0, cfg[_I_KC], buf, _C, pos)
    out[k], out[k + 1], out[k + 2], out[k + 3] = keltner_row(cl, mid, atr, kcfg[1])
    k += 4
    # --- liquidity: signed-volume flow, VWAP, Amihud, Roll (ml._kernels.liquidity_features) ---
    w_flow = cfg[_I_FLOW]
    w_vwap = cfg[_I_VWAP]
    w_amihud = cfg[_I_AMIHUD]
    w_roll = cfg[_I_ROLL]
    i = g
    c_, h_, l_, v_, r_ = buf[_C], buf[_H], buf[_L], buf[_V], buf[_RP]
    x0, x1 = _flow_row(c_, v_, pos) if i >= 1 else (0.0, 0.0)
    y0, y1 = _flow_row(c_, v_, pos - w_flow) if i - w_flow >= 1 else (0.0, 0.0)
    fs[_F_LQ_F0] += x0 - y0
    fs[_F_LQ_F1] += x1 - y1
    x0, x1 = _vwap_row(c_, h_, l_, v_, pos)
    y0, y1 = _vwap_row(c_, h_, l_, v_, pos - w_vwap) if i - w_vwap >= 0 else (0.0, 0.0)
    fs[_F_LQ_V0] += x0 - y0
    fs[_F_LQ_V1] += x1 - y1
    x0, x1 = _amihud_row(c_, v_, r_, 0, pos)
    y0, y1 = _amihud_row(c_, v_, r_, 0, pos - w_amihud) if i - w_amihud >= 0 else (0.0, 0.0)
    fs[_F_LQ_A0] += x0 - y0
    fs[_F_LQ_A1] += x1 - y1
    rp = buf[_RP]
    q = pos - w_roll
    fs[_F_LQ_C0] += rp[pos] * rp[pos - 1] - rp[q] * rp[q - 1]
    fs[_F_LQ_C1] += rp[pos] - rp[q]
    fs[_F_LQ_C2] += rp[pos - 1] - rp[q - 1]
    ist[_S_LQ_FILL_F] += 1
    if ist[_S_LQ_FILL_F] == w_flow:
        ist[_S_LQ_FILL_F] = 0
        f0 = 0.0
        f1 = 0.0
        for tt in range(i - w_flow + 1, i + 1):
            if tt >= 1:
                qq = pos - (i - tt)
                dc = buf[_C, qq] - buf[_C, qq - 1]
                f0 += float((dc > 0.0) - (dc < 0.0)) * buf[_V, qq]
                f1 += buf[_V, qq]
            else:
                f0 += 0.0
                f1 += 0.0
        fs[_F_LQ_F0] = f0
        fs[_F_LQ_F1] = f1
    ist[_S_LQ_FILL_V] += 1
    if ist[_S_LQ_FILL_V] == w_vwap:
        ist[_S_LQ_FILL_V] = 0
        v0 = 0.0
        v1 = 0.0
        for tt in range(i - w_vwap + 1, i + 1):
            qq = pos - (i - tt)
            v0 += (buf[_H, qq] + buf[_L, qq] + buf[_C, qq]) / 3.0 * buf[_V, qq]
            v1 += buf[_V, qq]
        fs[_F_LQ_V0] = v0
        fs[_F_LQ_V1] = v1
    ist[_S_LQ_FILL_A] += 1
    if ist[_S_LQ_FILL_A] == w_amihud:
        ist[_S_LQ_FILL_A] = 0
        a0 = 0.0
        a1 = 0.0
        for tt in range(i - w_amihud + 1, i + 1):
            qq = pos - (i - tt)
            dv = buf[_C, qq] * buf[_V, qq]
            if dv > 0.0:
                a0 += abs(rp[qq]) / dv
                a1 += 0.0
            else:
                a0 += 0.0
                a1 += 1.0
        fs[_F_LQ_A0] = a0
        fs[_F_LQ_A1] = a1
    ist[_S_LQ_FILL_R] += 1
    if ist[_S_LQ_FILL_R] == w_roll:
        ist[_S_LQ_FILL_R] = 0
        c0 = 0.0
        c1 = 0.0
        c2 = 0.0
        for qq in range(pos - w_roll + 1, pos + 1):
            c0 += rp[qq] * rp[qq - 1]
            c1 += rp[qq]
            c2 += rp[qq - 1]
        fs[_F_LQ_C0] = c0
        fs[_F_LQ_C1] = c1
        fs[_F_LQ_C2] = c2
    f0 = fs[_F_LQ_F0]
    f1 = fs[_F_LQ_F1]
    flow_v = f0 / f1 if (i >= w_flow and f1 > 0.0) else _NAN
    v0 = fs[_F_LQ_V0]
    v1 = fs[_F_LQ_V1]
    vwap_v = cl / (v0 / v1) - 1.0 if (i >= w_vwap - 1 and v1 > 0.0) else _NAN
    a0 = fs[_F_LQ_A0]
    a1 = fs[_F_LQ_A1]
    amihud_v = _NAN
    if i >= w_amihud and a1 == 0.0 and a0 > 0.0:
        amihud_v = math.log(a0 / w_amihud)
    roll_v = _NAN
    if i >= w_roll + 1:
        cov = fs[_F_LQ_C0] / w_roll - (fs[_F_LQ_C1] / w_roll) * (fs[_F_LQ_C2] / w_roll)
        roll_v = 2.0 * math.sqrt(-cov) if cov < 0.0 else 0.0
    out[k] = flow_v
    out[k + 1] = vwap_v
    k += 2
    # --- volume z-score (ml._kernels.shifted_zscore) ---
    w = cfg[_I_VZ]
    out[k] = _zscore_step(buf, _V, pos, i, w, fs, _F_VZ_K, ist, _S_VZ_FILL)
    k += 1
    # --- log returns over lags ---
    for j in range(ret_lags.shape[0]):
        lag = ret_lags[j]
        out[k] = lp - buf[_LP, pos - lag] if i >= lag else _NAN
        k += 1
    # --- return moments (ml._kernels.return_moments) ---
    w = cfg[_I_STAT]
    r = rp[pos]
    ro = rp[pos - w]
    r2 = r * r
    o2 = ro * ro
    fs[_F_MOM0] += r - ro
    fs[_F_MOM1] += r2 - o2
    fs[_F_MOM2] += r2 * r - o2 * ro
    fs[_F_MOM3] += r2 * r2 - o2 * o2
    ist[_S_MOM_FILL] += 1
    if ist[_S_MOM_FILL] == w:
        ist[_S_MOM_FILL] = 0
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for qq in range(pos - w + 1, pos + 1):
            x = rp[qq]
            x2 = x * x
            s0 += x
            s1 += x2
            s2 += x2 * x
            s3 += x2 * x2
        fs[_F_MOM0] = s0
        fs[_F_MOM1] = s1
        fs[_F_MOM2] = s2
        fs[_F_MOM3] = s3
    if i < w:
        out[k] = _NAN
        out[k + 1] = _NAN
        out[k + 2] = _NAN
        out[k + 3] = _NAN
    else:
        mu = fs[_F_MOM0] / w
        e2 = fs[_F_MOM1] / w
        e3 = fs[_F_MOM2] / w
        e4 = fs[_F_MOM3] / w
        var = max(e2 - mu * mu, 0.0)
        out[k] = mu
        out[k + 1] = math.sqrt(var)
        if var > 0.0:
            m3 = e3 - 3.0 * mu * e2 + 2.0 * mu * mu * mu
            m4 = e4 - 4.0 * mu * e3 + 6.0 * mu * mu * e2 - 3.0 * mu * mu * mu * mu
            out[k + 2] = m3 / (var * math.sqrt(var))
            out[k + 3] = m4 / (var * var) - 3.0
        else:
            out[k + 2] = 0.0
            out[k + 3] = 0.0
    k += 4
    # --- close z-score ---
    out[k] = _zscore_step(buf, _C, pos, i, cfg[_I_Z], fs, _F_CZ_K, ist, _S_CZ_FILL)
    k += 1
    # --- autocorrelation of returns (ml._kernels.acf_features) ---
    w = cfg[_I_ACW]
    lags = cfg[_I_ACL]
    q = pos - w
    ri = rp[pos]
    ro = rp[q]
    acf_s[0] += ri - ro
    acf_s[1] += ri * ri - ro * ro
    for kk2 in range(1, lags + 1):
        acf_s[1 + kk2] += ri * rp[pos - kk2] - ro * rp[q - kk2]
    ist[_S_ACF_FILL] += 1
    if ist[_S_ACF_FILL] == w:
        ist[_S_ACF_FILL] = 0
        acf_s[:] = 0.0
        for tt in range(pos - w + 1, pos + 1):
            rt = rp[tt]
            acf_s[0] += rt
            acf_s[1] += rt * rt
            for kk2 in range(1, lags + 1):
                acf_s[1 + kk2] += rt * rp[tt - kk2]
    if i < w + lags:
        for kk2 in range(lags):
            out[k + kk2] = _NAN
    else:
        mu = acf_s[0] / w
        var = acf_s[1] / w - mu * mu
        if var > 0.0:
            mu2 = mu * mu
            for kk2 in range(lags):
                acf_tmp[kk2] = (acf_s[2 + kk2] / w - mu2) / var
            for kk2 in range(lags):
                out[k + kk2] = acf_tmp[kk2]
        else:
            for kk2 in range(lags):
                out[k + kk2] = _NAN
    k += lags
    # --- Hurst exponent (ml._kernels.hurst_feature) ---
    out[k] = _hurst_step(
        buf, pos, i, cfg[_I_HW], hurst_lags, hurst_w, hurst_num, hurst_den, hurst_s1,
        hurst_s2, hurst_var, fs, ist,
    )  # fmt: skip
    k += 1
    # --- realized / Parkinson volatility and the per-bar Sharpe (volatility_features) ---
    w_vol = cfg[_I_VOL]
    w_sh = cfg[_I_SHARPE]
    r = rp[pos]
    r_vol = rp[pos - w_vol]
    r_sh = rp[pos - w_sh]
    hl = math.log(h / lo)
    hl2 = hl * hl
    fill_v = ist[_S_VOL_FILL_V]
    fs[_F_VOL_V0] += r * r - r_vol * r_vol
    fs[_F_VOL_V1] += hl2 - hl2_ring[fill_v]
    hl2_ring[fill_v] = hl2
    fs[_F_VOL_H0] += r - r_sh
    fs[_F_VOL_H1] += r * r - r_sh * r_sh
    fill_v += 1
    if fill_v == w_vol:
        fill_v = 0
        v0 = 0.0
        v1 = 0.0
        for tt in range(w_vol):
            x = rp[pos - w_vol + 1 + tt]
            v0 += x * x
            v1 += hl2_ring[tt]
        fs[_F_VOL_V0] = v0
        fs[_F_VOL_V1] = v1
    ist[_S_VOL_FILL_V] = fill_v
    ist[_S_VOL_FILL_S] += 1
    if ist[_S_VOL_FILL_S] == w_sh:
        ist[_S_VOL_FILL_S] = 0
        h0 = 0.0
        h1 = 0.0
        for qq in range(pos - w_sh + 1, pos + 1):
            x = rp[qq]
            h0 += x
            h1 += x * x
        fs[_F_VOL_H0] = h0
        fs[_F_VOL_H1] = h1
    if i >= w_vol:
        out[k] = math.sqrt(max(fs[_F_VOL_V0], 0.0) / w_vol)
        out[k + 1] = math.sqrt(max(fs[_F_VOL_V1], 0.0) / w_vol * (1.0 / (4.0 * math.log(2.0))))
    else:
        out[k] = _NAN
        out[k + 1] = _NAN
    k += 2
    if i >= w_sh:
        mu = fs[_F_VOL_H0] / w_sh
        var = fs[_F_VOL_H1] / w_sh - mu * mu
        out[k] = mu / math.sqrt(var) if var > 0.0 else 0.0
    else:
        out[k] = _NAN
    k += 1
    # --- drawdown from the rolling peak (TA-Lib MAX) ---
    p = cfg[_I_DD]
    v = _NAN
    trailing = g - p + 1
    if trailing >= 0:
        if ist[_S_DD_IDX] < trailing:
            best = buf[_C, pos - p + 1]
            best_idx = trailing
            for tt in range(1, p):
                x = buf[_C, pos - p + 1 + tt]
                if x > best:
                    best = x
                    best_idx = trailing + tt
            fs[_F_DD_MAX] = best
            ist[_S_DD_IDX] = best_idx
        elif cl >= fs[_F_DD_MAX]:
            fs[_F_DD_MAX] = cl
            ist[_S_DD_IDX] = g
        v = cl / fs[_F_DD_MAX] - 1.0
    out[k] = v
    k += 1
    out[k] = amihud_v
    out[k + 1] = roll_v
    k += 2
    ist[_S_G] = g + 1
    return k


@njit(cache=True, inline="always", error_model="numpy")
def _zscore_step(buf, row, pos, i, w, fs, f0, ist, s_fill):  # pragma: no cover - jitted
    """One row of ml._kernels.shifted_zscore; state fs[f0:f0+3] = (k_shift, s1, s2)."""
    x = buf[row]
    if i >= w:
        d = x[pos - w] - fs[f0]
        fs[f0 + 1] -= d
        fs[f0 + 2] -= d * d
    d = x[pos] - fs[f0]
    fs[f0 + 1] += d
    fs[f0 + 2] += d * d
    ist[s_fill] += 1
    if ist[s_fill] == w:
        ist[s_fill] = 0
        total = 0.0
        for t in range(pos - w + 1, pos + 1):
            total += x[t]
        fs[f0] = total / w
        s1 = 0.0
        s2 = 0.0
        for t in range(pos - w + 1, pos + 1):
            d = x[t] - fs[f0]
            s1 += d
            s2 += d * d
        fs[f0 + 1] = s1
        fs[f0 + 2] = s2
    if i < w - 1:
        return _NAN
    mu = fs[f0 + 1] / w
    var = fs[f0 + 2] / w - mu * mu
    return (x[pos] - fs[f0] - mu) / math.sqrt(var) if var > 0.0 else 0.0


@njit(cache=True, inline="always", error_model="numpy")
def _hurst_step(
    buf, pos, i, w, lags, weights, num_idx, den_idx, s1, s2, var, fs, ist
):  # pragma: no cover - jitted
    """One row of ml._kernels.hurst_feature."""
    lp = buf[_LP]
    nl = lags.shape[0]
    kmax = lags.max()
    j_out = i - w
    q_out = pos - w  # buffer column of global row j_out
    if j_out >= kmax:
        for j in range(nl):
            kk = lags[j]
            d = lp[pos] - lp[pos - kk]
            s1[j] += d
            s2[j] += d * d
            d = lp[q_out] - lp[q_out - kk]
            s1[j] -= d
            s2[j] -= d * d
    else:
        for j in range(nl):
            kk = lags[j]
            if i >= kk:
                d = lp[pos] - lp[pos - kk]
                s1[j] += d
                s2[j] += d * d
            if j_out >= kk:
                d = lp[q_out] - lp[q_out - kk]
                s1[j] -= d
                s2[j] -= d * d
    ist[_S_HURST_FILL] += 1
    if ist[_S_HURST_FILL] == w:
        ist[_S_HURST_FILL] = 0
        if i - w + 1 >= kmax:
            s1[:] = 0.0
            s2[:] = 0.0
            for t in range(pos - w + 1, pos + 1):
                for j in range(nl):
                    d = lp[t] - lp[t - lags[j]]
                    s1[j] += d
                    s2[j] += d * d
        else:
            for j in range(nl):
                kk = lags[j]
                a = 0.0
                b = 0.0
                for tg in range(max(i - w + 1, kk), i + 1):
                    t = pos - (i - tg)
                    d = lp[t] - lp[t - kk]
                    a += d
                    b += d * d
                s1[j] = a
                s2[j] = b
    if i < kmax + w - 1:
        return _NAN
    ok = True
    for j in range(nl):
        var[j] = s2[j] * w - s1[j] * s1[j]
        if var[j] <= 0.0:
            ok = False
    if not ok:
        return _NAN
    h = _NAN
    if ist[_S_HURST_GEOM]:
        num = 1.0
        den = 1.0
        for q in range(ist[_S_HURST_NNUM]):
            num *= var[num_idx[q]]
        for q in range(ist[_S_HURST_NDEN]):
            den *= var[den_idx[q]]
        ratio = num / den
        if ratio > 0.0 and ratio < np.inf:
            h = fs[_F_HURST_COEF] * math.log(ratio)
    if math.isnan(h):
        h = 0.0
        log_w2 = 2.0 * math.log(w)
        for j in range(nl):
            h += weights[j] * 0.5 * (math.log(var[j]) - log_w2)
    return h


def _bad_bar(o: float, h: float, lo: float, c: float, v: float) -> str | None:
    values = (o, h, lo, c, v)
    if not all(math.isfinite(x) for x in values):
        return "a bar has NaN or infinite values"
    if min(o, h, lo, c) <= 0:
        return "bar prices must be > 0 (features use log prices)"
    if v < 0:
        return "bar volume must be >= 0"
    if h < lo:
        return "high < low in a bar"
    return None


@dataclass(eq=False)
class OnlineFeatures:
    """Feature state of one symbol; `update` folds in the next bar and returns its row.

    Plain numpy state: pickles into a snapshot and resumes bit for bit.
    """

    config: FeatureConfig = field(default_factory=FeatureConfig)
    bars: int = 0  # bars folded in so far

    def __post_init__(self) -> None:
        c = self.config
        # The built-ins only: user feature functions run on a bar buffer (ml.user_features,
        # called by the streaming feature step).
        self.columns: tuple[str, ...] = builtin_feature_columns(c)
        keep = _finite_lookback(c) + _return_pad(c) + max(c.hurst_lags) + 8
        self._buf = np.zeros((_N_ROWS, 2 * keep))
        self._fs = np.zeros(_F_END)
        self._ist = np.zeros(_N_ISTATE, dtype=np.int64)
        self._ist[_S_POS] = keep - 1
        self._ist[_S_DD_IDX] = -1
        cfg = np.zeros(_N_ICFG, dtype=np.int64)
        values = {
            _I_NSMA: len(c.sma_periods),
            _I_NEMA: len(c.ema_periods),
            _I_WMA: c.wma_period,
            _I_MFAST: c.macd_fast,
            _I_MSLOW: c.macd_slow,
            _I_MSIG: c.macd_signal,
            _I_RSI: c.rsi_period,
            _I_SK: c.stoch_fastk,
            _I_SSK: c.stoch_slowk,
            _I_SSD: c.stoch_slowd,
            _I_ADX: c.adx_period,
            _I_ROC: c.roc_period,
            _I_WILLR: c.willr_period,
            _I_BB: c.bb_period,
            _I_ATR: c.atr_period,
            _I_KC: c.keltner_period,
            _I_FLOW: c.flow_window,
            _I_VWAP: c.vwap_window,
            _I_VZ: c.volume_z_window,
            _I_NLAG: len(c.return_lags),
            _I_STAT: c.stat_window,
            _I_Z: c.zscore_window,
            _I_ACW: c.autocorr_window,
            _I_ACL: c.autocorr_lags,
            _I_HW: c.hurst_window,
            _I_NHL: len(set(c.hurst_lags)),
            _I_VOL: c.vol_window,
            _I_SHARPE: c.sharpe_window,
            _I_DD: c.drawdown_window,
            _I_AMIHUD: c.amihud_window,
            _I_ROLL: c.roll_window,
            _I_PAD: _return_pad(c),
        }
        for slot, value in values.items():
            cfg[slot] = value
        self._cfg = cfg
        self._kcfg = np.array([float(c.bb_k), float(c.keltner_k)])
        self._sma_p = np.asarray(c.sma_periods, dtype=np.int64)
        self._sma_s = np.zeros(len(c.sma_periods))
        self._ema_p = np.asarray(c.ema_periods, dtype=np.int64)
        self._ema_s = np.zeros(len(c.ema_periods))
        self._ret_lags = np.asarray(c.return_lags, dtype=np.int64)
        lags = np.asarray(sorted(set(c.hurst_lags)), dtype=np.int64)
        nl = len(lags)
        self._hurst_lags = lags
        self._hurst_w = np.zeros(nl)
        exps = np.zeros(nl, dtype=np.int64)
        self._hurst_num = np.zeros(nl * nl, dtype=np.int64)
        self._hurst_den = np.zeros(nl * nl, dtype=np.int64)
        geometric, coef, n_num, n_den = _hurst_constants(
            lags, self._hurst_w, exps, self._hurst_num, self._hurst_den
        )
        self._fs[_F_HURST_COEF] = coef
        self._ist[_S_HURST_GEOM] = int(geometric)
        self._ist[_S_HURST_NNUM] = n_num
        self._ist[_S_HURST_NDEN] = n_den
        self._hurst_s1 = np.zeros(nl)
        self._hurst_s2 = np.zeros(nl)
        self._hurst_var = np.zeros(nl)
        self._acf_s = np.zeros(c.autocorr_lags + 2)
        self._acf_tmp = np.zeros(c.autocorr_lags)
        self._hl2_ring = np.zeros(c.vol_window)
        self._sk_ring = np.zeros(c.stoch_slowk)
        self._sd_ring = np.zeros(c.stoch_slowd)
        self._bar = np.zeros(5)
        self._out = np.zeros(len(self.columns))

    def update(
        self, open_: float, high: float, low: float, close: float, volume: float
    ) -> np.ndarray:
        """The feature row (in `columns` order) of this bar, the next one of the series.

        The returned array is reused by the next call: copy it to keep it. A row with a NaN is
        in warm-up, as in compute_features.
        """
        bar = self._bar
        bar[0] = open_
        bar[1] = high
        bar[2] = low
        bar[3] = close
        bar[4] = volume
        written = _update(
            bar, self._buf, self._fs, self._ist, self._cfg, self._kcfg, self._sma_p,
            self._sma_s, self._ema_p, self._ema_s, self._ret_lags, self._hurst_lags,
            self._hurst_w, self._hurst_num, self._hurst_den, self._hurst_s1, self._hurst_s2,
            self._hurst_var, self._acf_s, self._acf_tmp, self._hl2_ring, self._sk_ring,
            self._sd_ring, self._out,
        )  # fmt: skip
        if written < 0:  # checked in the kernel: the message is worth its cost only here
            raise FeatureInputError(_bad_bar(open_, high, low, close, volume) or "invalid bar")
        if written != len(self.columns):  # pragma: no cover - a layout bug, not an input error
            msg = f"online features wrote {written} of {len(self.columns)} columns"
            raise RuntimeError(msg)
        self.bars += 1
        return self._out
