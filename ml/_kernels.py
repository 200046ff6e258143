"""Numba kernels for the causal rolling statistics of ml.features.

Every kernel is causal: output row i depends on input rows <= i only, so features computed on a
prefix of a frame equal, bit for bit, the features of the full frame on that prefix.

Rolling sums are updated by adding the row that enters the window and subtracting the one that
leaves it: O(1) per row and series. The leaving value is recomputed from the inputs (the same
arithmetic gives the same bits) rather than kept in a ring buffer, except where recomputing it
would be dear (the squared log range of the Parkinson volatility). Every time a window
fills (rows w-1, 2w-1, ... counted from the frame's first row) the sums are recomputed exactly,
so add/subtract rounding drift never spans more than one window.

1-bar log returns are read from `padded_returns`: a zero prefix of `RETURN_PAD` entries stands
for the returns before the frame (and the undefined first one), so the hot loops need no bounds
checks. Zero is exactly what a missing return contributes to every sum.

Kernels write straight into rows of the caller's output matrix, and each one marks in `flags`
the rows where it wrote NaN: the frame's `warmup` column, without a second pass over the matrix
(on a 1M-bar frame, memory traffic, not arithmetic, is what costs).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "acf_features",
    "adx",
    "adx_fold",
    "any_nan_columns",
    "atr",
    "bar_looks_valid",
    "bars_look_valid",
    "bollinger_features",
    "copy_row",
    "divide_row",
    "ema",
    "ema_k",
    "ema_step",
    "has_nan",
    "hurst_feature",
    "keltner_features",
    "lag_difference",
    "liquidity_features",
    "macd",
    "macd_signal_fold",
    "padded_returns",
    "ratio_minus_one",
    "return_moments",
    "rsi",
    "rsi_fold",
    "rsi_value",
    "shifted_zscore",
    "sma",
    "sma_fold",
    "ta_is_zero",
    "true_range",
    "volatility_features",
    "wilder_step",
    "window_deviation",
    "window_wma",
    "wma_ratio",
]

_NAN = np.nan


@njit(cache=True, nogil=True, error_model="numpy")
def padded_returns(lp, pad):  # pragma: no cover - jitted
    """out[pad + i] = lp[i] - lp[i - 1] for i >= 1; zero before (the first return is undefined)."""
    n = lp.shape[0]
    out = np.zeros(n + pad)
    for i in range(1, n):
        out[pad + i] = lp[i] - lp[i - 1]
    return out


@njit(cache=True, inline="always", error_model="numpy")
def _mark(value, flags, i):  # pragma: no cover - jitted
    if math.isnan(value):
        flags[i] = True


# --- element-wise rows derived from TA-Lib outputs ----------------------------------------------


@njit(cache=True, nogil=True, error_model="numpy")
def ratio_minus_one(num, den, row, flags):  # pragma: no cover - jitted
    """row = num / den - 1."""
    for i in range(row.shape[0]):
        v = num[i] / den[i] - 1.0
        row[i] = v
        _mark(v, flags, i)


@njit(cache=True, nogil=True, error_model="numpy")
def divide_row(num, den, row, flags):  # pragma: no cover - jitted
    """row = num / den."""
    for i in range(row.shape[0]):
        v = num[i] / den[i]
        row[i] = v
        _mark(v, flags, i)


@njit(cache=True, nogil=True, error_model="numpy")
def copy_row(src, row, flags):  # pragma: no cover - jitted
    """row = src."""
    for i in range(row.shape[0]):
        v = src[i]
        row[i] = v
        _mark(v, flags, i)


@njit(cache=True, inline="always", error_model="numpy")
def _safe_div(num, den, zero):  # pragma: no cover - jitted
    """num / den, `zero` where den == 0, NaN where either is NaN."""
    if math.isnan(num) or math.isnan(den):
        return _NAN
    return num / den if den != 0.0 else zero


@njit(cache=True, inline="always", error_model="numpy")
def window_deviation(x, end, w):  # pragma: no cover - jitted
    """Population std of x[end - w + 1 : end + 1], two-pass (no cancellation, no drift)."""
    total = 0.0
    for t in range(end - w + 1, end + 1):
        total += x[t]
    mean = total / w
    ss = 0.0
    for t in range(end - w + 1, end + 1):
        d = x[t] - mean
        ss += d * d
    return math.sqrt(ss / w)


@njit(cache=True, inline="always", error_model="numpy")
def window_wma(x, end, w):  # pragma: no cover - jitted
    """Linearly weighted mean of x[end - w + 1 : end + 1], newest weight w, computed directly."""
    total = 0.0
    for j in range(w):
        total += (j + 1) * x[end - w + 1 + j]
    return total / ((w * (w + 1)) >> 1)


@njit(cache=True, nogil=True, error_model="numpy")
def wma_ratio(close, w, row, flags):  # pragma: no cover - jitted
    """close / WMA(w) - 1, each row's WMA summed directly over its window.

    TA-Lib's WMA carries two running totals from the frame's first row, so its rounding grows
    with the frame (1e-10 relative at 200k bars); a direct sum costs w multiply-adds a row and
    is the same number whatever came before, which the live plane's incremental state needs.
    """
    for i in range(row.shape[0]):
        if i < w - 1:
            row[i] = _NAN
            flags[i] = True
            continue
        v = close[i] / window_wma(close, i, w) - 1.0
        row[i] = v
        _mark(v, flags, i)


@njit(cache=True, inline="always", error_model="numpy")
def bollinger_row(c, middle, half):  # pragma: no cover - jitted
    """One row of the Bollinger features (batch and live): upper / c - 1, lower / c - 1,
    width / middle and %b (0.5 where the bands are flat), for the band middle +- half."""
    upper = middle + half
    lower = middle - half
    wd = upper - lower
    return (
        upper / c - 1.0,
        lower / c - 1.0,
        _safe_div(wd, middle, _NAN),
        _safe_div(c - lower, wd, 0.5),
    )


@njit(cache=True, inline="always", error_model="numpy")
def keltner_row(c, mid, atr, k):  # pragma: no cover - jitted
    """One row of the Keltner features (batch and live): ATR / c, (mid +- k * ATR) / c - 1 and
    the close's position in the bands (0.5 where they are flat)."""
    hi = mid + k * atr
    lo = mid - k * atr
    return atr / c, hi / c - 1.0, lo / c - 1.0, _safe_div(c - lo, hi - lo, 0.5)


@njit(cache=True, nogil=True, error_model="numpy")
def bollinger_features(close, middle, w, k, up, dn, width, pctb, flags):  # pragma: no cover
    """Bollinger rows around `middle` (the SMA) with a two-pass deviation of each window.

    TA-Lib's BBANDS takes the deviation from running sums of x and x^2 since the frame's first
    row: cancellation and drift make it 1e-7 relative off at 200k bars. The rows are as in
    ratios of the bands to the close, width / middle and %b (0.5 where the bands are flat).
    """
    for i in range(close.shape[0]):
        if i < w - 1 or math.isnan(middle[i]):
            up[i] = _NAN
            dn[i] = _NAN
            width[i] = _NAN
            pctb[i] = _NAN
            flags[i] = True
            continue
        a, b, x, y = bollinger_row(close[i], middle[i], window_deviation(close, i, w) * k)
        up[i] = a
        dn[i] = b
        width[i] = x
        pctb[i] = y
        if math.isnan(a) or math.isnan(b) or math.isnan(x) or math.isnan(y):
            flags[i] = True


@njit(cache=True, nogil=True, error_model="numpy")
def keltner_features(close, mid, atr, k, atr_row, up, dn, pos, flags):  # pragma: no cover
    """ATR / close, Keltner bands (mid +- k * ATR) / close - 1 and the close's position in them."""
    for i in range(close.shape[0]):
        r, u, d, p = keltner_row(close[i], mid[i], atr[i], k)
        atr_row[i] = r
        up[i] = u
        dn[i] = d
        pos[i] = p
        if math.isnan(r) or math.isnan(u) or math.isnan(d) or math.isnan(p):
            flags[i] = True


@njit(cache=True, nogil=True, error_model="numpy")
def lag_difference(x, k, row, flags):  # pragma: no cover - jitted
    """row[i] = x[i] - x[i - k], NaN for i < k."""
    n = x.shape[0]
    for i in range(min(k, n)):
        row[i] = _NAN
        flags[i] = True
    for i in range(k, n):
        v = x[i] - x[i - k]
        row[i] = v
        _mark(v, flags, i)


# --- rolling statistics of returns ---------------------------------------------------------------


@njit(cache=True, inline="always", error_model="numpy")
def _moments_row(r):  # pragma: no cover - jitted
    r2 = r * r
    return r, r2, r2 * r, r2 * r2


@njit(cache=True, nogil=True, error_model="numpy")
def return_moments(rp, pad, w, mean, std, skew, kurt, flags):  # pragma: no cover - jitted
    """Rolling mean, population std, skewness and excess kurtosis of 1-bar log returns.

    `rp` is `padded_returns(lp, pad)` with pad >= w.
    """
    n = mean.shape[0]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    fill = 0
    for i in range(n):
        a0, a1, a2, a3 = _moments_row(rp[pad + i])
        b0, b1, b2, b3 = _moments_row(rp[pad + i - w])
        s0 += a0 - b0
        s1 += a1 - b1
        s2 += a2 - b2
        s3 += a3 - b3
        fill += 1
        if fill == w:
            fill = 0
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            for t in range(pad + i - w + 1, pad + i + 1):
                a0, a1, a2, a3 = _moments_row(rp[t])
                s0 += a0
                s1 += a1
                s2 += a2
                s3 += a3
        if i < w:  # the window must hold w returns, and the first return is at row 1
            mean[i] = _NAN
            std[i] = _NAN
            skew[i] = _NAN
            kurt[i] = _NAN
            flags[i] = True
            continue
        mu = s0 / w
        e2 = s1 / w
        e3 = s2 / w
        e4 = s3 / w
        var = max(e2 - mu * mu, 0.0)
        mean[i] = mu
        std[i] = math.sqrt(var)
        if var > 0.0:
            m3 = e3 - 3.0 * mu * e2 + 2.0 * mu * mu * mu
            m4 = e4 - 4.0 * mu * e3 + 6.0 * mu * mu * e2 - 3.0 * mu * mu * mu * mu
            skew[i] = m3 / (var * math.sqrt(var))
            kurt[i] = m4 / (var * var) - 3.0
        else:
            skew[i] = 0.0
            kurt[i] = 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def acf_features(rp, pad, w, lags, out, flags):  # pragma: no cover - jitted
    """Autocorrelation of 1-bar log returns at lags 1..lags over the last w bars.

    acf_k = (mean(r_t * r_{t-k}) - mean(r)^2) / var(r), all means over the same w rows, so row
    i reads returns back to i - w - k + 1. out has shape (lags, n); `rp` is
    `padded_returns(lp, pad)` with pad >= w + lags.
    """
    n = out.shape[1]
    s = np.zeros(lags + 2)
    acf = np.empty(lags)
    fill = 0
    for i in range(n):
        p = pad + i
        q = p - w
        ri = rp[p]
        ro = rp[q]
        s[0] += ri - ro
        s[1] += ri * ri - ro * ro
        for k in range(1, lags + 1):
            s[1 + k] += ri * rp[p - k] - ro * rp[q - k]
        fill += 1
        if fill == w:
            fill = 0
            s[:] = 0.0
            for t in range(p - w + 1, p + 1):
                rt = rp[t]
                s[0] += rt
                s[1] += rt * rt
                for k in range(1, lags + 1):
                    s[1 + k] += rt * rp[t - k]
        if i < w + lags:  # every product r_t * r_{t-lags} in the window needs t - lags >= 1
            for k in range(lags):
                out[k, i] = _NAN
            flags[i] = True
            continue
        mu = s[0] / w
        var = s[1] / w - mu * mu
        if var > 0.0:
            # Divide in a contiguous scratch row (vectorised), then scatter to the output rows.
            mu2 = mu * mu
            for k in range(lags):
                acf[k] = (s[2 + k] / w - mu2) / var
            for k in range(lags):
                out[k, i] = acf[k]
        else:
            for k in range(lags):
                out[k, i] = _NAN
            flags[i] = True


@njit(cache=True, nogil=True, error_model="numpy")
def hurst_feature(lp, w, lags, out, flags):  # pragma: no cover - jitted
    """Rolling Hurst exponent: slope of log std(k-bar log-price change) on log k.

    Over the last w rows, std of d_k(t) = lp[t] - lp[t-k] scales as k^H (H = 0.5 for a random
    walk, > 0.5 trending, < 0.5 mean reverting). `lags` is an int array of distinct k >= 1.

    For geometric lags (1, 2, 4, ...) the regression weights are proportional to small integers,
    so the weighted sum of logs is the log of one ratio of products: one log per row instead of
    one per lag (the log is most of this kernel's cost).
    """
    n = lp.shape[0]
    nl = lags.shape[0]
    logk = np.log(lags.astype(np.float64))
    centred = logk - logk.mean()
    weights = centred / (centred * centred).sum()
    ratio_q = lags[1] / lags[0]
    geometric = ratio_q > 1.0
    for j in range(1, nl):
        if lags[j] != lags[j - 1] * ratio_q:
            geometric = False
    exps = np.zeros(nl, dtype=np.int64)  # 2 * (j - mean j), integers for any nl
    coef = 0.0
    if geometric:
        ss = 0.0
        for j in range(nl):
            exps[j] = 2 * j - (nl - 1)
            ss += (j - (nl - 1) / 2.0) ** 2
        coef = 0.25 / (math.log(ratio_q) * ss)
    # The products as flat schedules of factor indices, in the order of the exponents above.
    num_idx = np.zeros(nl * nl, dtype=np.int64)
    den_idx = np.zeros(nl * nl, dtype=np.int64)
    n_num = 0
    n_den = 0
    for j in range(nl):
        for _ in range(max(exps[j], 0)):
            num_idx[n_num] = j
            n_num += 1
        for _ in range(max(-exps[j], 0)):
            den_idx[n_den] = j
            n_den += 1
    s1 = np.zeros(nl)
    s2 = np.zeros(nl)
    var = np.empty(nl)
    kmax = lags.max()
    fill = 0
    for i in range(n):
        j_out = i - w
        if j_out >= kmax:  # steady state: every lag has a row entering and one leaving
            for j in range(nl):
                k = lags[j]
                d = lp[i] - lp[i - k]
                s1[j] += d
                s2[j] += d * d
                d = lp[j_out] - lp[j_out - k]
                s1[j] -= d
                s2[j] -= d * d
        else:
            for j in range(nl):
                k = lags[j]
                if i >= k:
                    d = lp[i] - lp[i - k]
                    s1[j] += d
                    s2[j] += d * d
                if j_out >= k:
                    d = lp[j_out] - lp[j_out - k]
                    s1[j] -= d
                    s2[j] -= d * d
        fill += 1
        if fill == w:
            fill = 0
            # Exact recompute every w rows bounds the add/subtract rounding drift.
            if i - w + 1 >= kmax:
                s1[:] = 0.0
                s2[:] = 0.0
                for t in range(i - w + 1, i + 1):
                    for j in range(nl):
                        d = lp[t] - lp[t - lags[j]]
                        s1[j] += d
                        s2[j] += d * d
            else:
                for j in range(nl):
                    k = lags[j]
                    a = 0.0
                    b = 0.0
                    for t in range(max(i - w + 1, k), i + 1):
                        d = lp[t] - lp[t - k]
                        a += d
                        b += d * d
                    s1[j] = a
                    s2[j] = b
        if i < kmax + w - 1:
            out[i] = _NAN
            flags[i] = True
            continue
        # w^2 * variance of each lag's changes; the geometric exponents sum to zero, so the
        # w^2 factors cancel in the ratio of products and no division is needed per lag.
        ok = True
        for j in range(nl):
            var[j] = s2[j] * w - s1[j] * s1[j]
            if var[j] <= 0.0:
                ok = False
        if not ok:
            out[i] = _NAN
            flags[i] = True
            continue
        h = _NAN
        if geometric:
            num = 1.0
            den = 1.0
            for q in range(n_num):
                num *= var[num_idx[q]]
            for q in range(n_den):
                den *= var[den_idx[q]]
            ratio = num / den
            if ratio > 0.0 and ratio < np.inf:
                h = coef * math.log(ratio)
        if math.isnan(h):
            h = 0.0
            log_w2 = 2.0 * math.log(w)
            for j in range(nl):
                h += weights[j] * 0.5 * (math.log(var[j]) - log_w2)
        out[i] = h
        _mark(h, flags, i)


@njit(cache=True, nogil=True, error_model="numpy")
def volatility_features(
    rp, pad, log_range, w_vol, w_sharpe, rv, parkinson, sharpe, flags
):  # pragma: no cover - jitted
    """Realized vol sqrt(mean r^2), Parkinson vol and the per-bar Sharpe ratio mean(r)/std(r).

    `rp` is `padded_returns(lp, pad)` with pad >= max(w_vol, w_sharpe); `log_range` is
    log(high / low), taken by the caller with numpy's vectorised log (several times faster than
    one scalar log per row here). It may be the `parkinson` row itself: row i is read before it
    is written, and earlier values are kept in a ring.
    """
    n = log_range.shape[0]
    hl2_ring = np.zeros(w_vol)  # squared log ranges in the window (a log is dear to recompute)
    v0 = 0.0
    v1 = 0.0
    h0 = 0.0
    h1 = 0.0
    fill_v = 0
    fill_s = 0
    inv_4ln2 = 1.0 / (4.0 * math.log(2.0))
    for i in range(n):
        r = rp[pad + i]
        r_vol = rp[pad + i - w_vol]
        r_sh = rp[pad + i - w_sharpe]
        hl = log_range[i]
        hl2 = hl * hl
        v0 += r * r - r_vol * r_vol
        v1 += hl2 - hl2_ring[fill_v]
        hl2_ring[fill_v] = hl2
        h0 += r - r_sh
        h1 += r * r - r_sh * r_sh
        fill_v += 1
        if fill_v == w_vol:
            fill_v = 0
            v0 = 0.0
            v1 = 0.0
            for t in range(w_vol):
                x = rp[pad + i - w_vol + 1 + t]
                v0 += x * x
                v1 += hl2_ring[t]
        fill_s += 1
        if fill_s == w_sharpe:
            fill_s = 0
            h0 = 0.0
            h1 = 0.0
            for t in range(pad + i - w_sharpe + 1, pad + i + 1):
                x = rp[t]
                h0 += x
                h1 += x * x
        if i >= w_vol:
            rv[i] = math.sqrt(max(v0, 0.0) / w_vol)
            parkinson[i] = math.sqrt(max(v1, 0.0) / w_vol * inv_4ln2)
        else:
            rv[i] = _NAN
            parkinson[i] = _NAN
            flags[i] = True
        if i >= w_sharpe:
            mu = h0 / w_sharpe
            var = h1 / w_sharpe - mu * mu
            sharpe[i] = mu / math.sqrt(var) if var > 0.0 else 0.0
        else:
            sharpe[i] = _NAN
            flags[i] = True


@njit(cache=True, inline="always", error_model="numpy")
def _flow_row(close, volume, t):  # pragma: no cover - jitted
    """(sign(dclose) * volume, volume) of row t >= 1."""
    dc = close[t] - close[t - 1]
    sign = float((dc > 0.0) - (dc < 0.0))  # branch-free: the sign of a return is a coin flip
    return sign * volume[t], volume[t]


@njit(cache=True, inline="always", error_model="numpy")
def _vwap_row(close, high, low, volume, t):  # pragma: no cover - jitted
    """(typical price * volume, volume) of row t >= 0."""
    return (high[t] + low[t] + close[t]) / 3.0 * volume[t], volume[t]


@njit(cache=True, inline="always", error_model="numpy")
def _amihud_row(close, volume, rp, pad, t):  # pragma: no cover - jitted
    """(|r| / dollar volume, 0) of row t >= 0 or, where nothing traded, (0, 1)."""
    dollar_volume = close[t] * volume[t]
    if dollar_volume > 0.0:
        return abs(rp[pad + t]) / dollar_volume, 0.0
    return 0.0, 1.0


@njit(cache=True, nogil=True, error_model="numpy")
def liquidity_features(
    close,
    rp,
    pad,
    high,
    low,
    volume,
    w_flow,
    w_vwap,
    w_amihud,
    w_roll,
    flow,
    vwap,
    amihud,
    roll,
    flags,
):  # pragma: no cover - jitted
    """Signed-volume flow, close/VWAP - 1, log Amihud illiquidity and the Roll spread.

    flow = sum(sign(dclose) * volume) / sum(volume), a bounded rolling stand-in for OBV.
    amihud = mean(|r| / (close * volume)), of which the caller takes the log (one vectorised
    numpy pass beats a scalar log per row); a bar with zero volume makes it undefined (NaN).
    roll = 2 * sqrt(max(0, -cov(r_t, r_{t-1}))), the spread in return units.
    `rp` is `padded_returns(lp, pad)` with pad >= w_roll + 1.
    """
    n = close.shape[0]
    f0 = 0.0
    f1 = 0.0
    v0 = 0.0
    v1 = 0.0
    a0 = 0.0
    a1 = 0.0
    c0 = 0.0
    c1 = 0.0
    c2 = 0.0
    fill_f = 0
    fill_v = 0
    fill_a = 0
    fill_r = 0
    for i in range(n):
        # The helpers read row t only where it exists; they hold no branch on t, which would
        # keep LLVM from optimising the loop (measured 10x slower).
        x0, x1 = _flow_row(close, volume, i) if i >= 1 else (0.0, 0.0)
        t = i - w_flow
        y0, y1 = _flow_row(close, volume, t) if t >= 1 else (0.0, 0.0)
        f0 += x0 - y0
        f1 += x1 - y1
        x0, x1 = _vwap_row(close, high, low, volume, i)
        t = i - w_vwap
        y0, y1 = _vwap_row(close, high, low, volume, t) if t >= 0 else (0.0, 0.0)
        v0 += x0 - y0
        v1 += x1 - y1
        x0, x1 = _amihud_row(close, volume, rp, pad, i)
        t = i - w_amihud
        y0, y1 = _amihud_row(close, volume, rp, pad, t) if t >= 0 else (0.0, 0.0)
        a0 += x0 - y0
        a1 += x1 - y1
        p = pad + i
        q = p - w_roll
        c0 += rp[p] * rp[p - 1] - rp[q] * rp[q - 1]
        c1 += rp[p] - rp[q]
        c2 += rp[p - 1] - rp[q - 1]
        fill_f += 1
        if fill_f == w_flow:
            fill_f = 0
            f0 = 0.0
            f1 = 0.0
            for t in range(i - w_flow + 1, i + 1):
                x0, x1 = _flow_row(close, volume, t) if t >= 1 else (0.0, 0.0)
                f0 += x0
                f1 += x1
        fill_v += 1
        if fill_v == w_vwap:
            fill_v = 0
            v0 = 0.0
            v1 = 0.0
            for t in range(i - w_vwap + 1, i + 1):
                x0, x1 = _vwap_row(close, high, low, volume, t)
                v0 += x0
                v1 += x1
        fill_a += 1
        if fill_a == w_amihud:
            fill_a = 0
            a0 = 0.0
            a1 = 0.0
            for t in range(i - w_amihud + 1, i + 1):
                x0, x1 = _amihud_row(close, volume, rp, pad, t)
                a0 += x0
                a1 += x1
        fill_r += 1
        if fill_r == w_roll:
            fill_r = 0
            c0 = 0.0
            c1 = 0.0
            c2 = 0.0
            for t in range(p - w_roll + 1, p + 1):
                c0 += rp[t] * rp[t - 1]
                c1 += rp[t]
                c2 += rp[t - 1]
        if i >= w_flow and f1 > 0.0:
            flow[i] = f0 / f1
        else:
            flow[i] = _NAN
            flags[i] = True
        if i >= w_vwap - 1 and v1 > 0.0:
            vwap[i] = close[i] / (v0 / v1) - 1.0
        else:
            vwap[i] = _NAN
            flags[i] = True
        # The zero-volume count is a sum of 0/1 values, exact in floating point.
        if i >= w_amihud and a1 == 0.0 and a0 > 0.0:
            amihud[i] = a0 / w_amihud  # the caller takes the log, vectorised
        else:
            amihud[i] = _NAN
            flags[i] = True
        if i >= w_roll + 1:
            cov = c0 / w_roll - (c1 / w_roll) * (c2 / w_roll)
            roll[i] = 2.0 * math.sqrt(-cov) if cov < 0.0 else 0.0
        else:
            roll[i] = _NAN
            flags[i] = True


@njit(cache=True, nogil=True, error_model="numpy")
def shifted_zscore(x, w, out, flags):  # pragma: no cover - jitted
    """Rolling z-score (x - mean) / std over the last w rows (population std; 0 when flat).

    Sums are of x - K, where K is the window mean at the last exact recompute: for price or
    volume levels this avoids the cancellation of sum(x^2) - sum(x)^2 / w.
    """
    n = x.shape[0]
    k_shift = 0.0
    s1 = 0.0
    s2 = 0.0
    fill = 0
    for i in range(n):
        if i >= w:
            d = x[i - w] - k_shift
            s1 -= d
            s2 -= d * d
        d = x[i] - k_shift
        s1 += d
        s2 += d * d
        fill += 1
        if fill == w:
            fill = 0
            total = 0.0
            for t in range(i - w + 1, i + 1):
                total += x[t]
            k_shift = total / w
            s1 = 0.0
            s2 = 0.0
            for t in range(i - w + 1, i + 1):
                d = x[t] - k_shift
                s1 += d
                s2 += d * d
        if i < w - 1:
            out[i] = _NAN
            flags[i] = True
            continue
        mu = s1 / w
        var = s2 / w - mu * mu
        v = (x[i] - k_shift - mu) / math.sqrt(var) if var > 0.0 else 0.0
        out[i] = v
        _mark(v, flags, i)


@njit(cache=True, nogil=True, error_model="numpy")
def any_nan_columns(matrix, flags):  # pragma: no cover - jitted
    """flags[i] = any(isnan(matrix[:, i])) for a (features, rows) matrix, one pass."""
    f, n = matrix.shape
    for i in range(n):
        flags[i] = False
    for j in range(f):
        for i in range(n):
            if math.isnan(matrix[j, i]):
                flags[i] = True


@njit(cache=True, nogil=True, error_model="numpy")
def bars_look_valid(ts, open_, high, low, close, volume):  # pragma: no cover - jitted
    """One pass over a bar frame: strictly increasing ts, finite values, prices > 0, volume >= 0
    and high >= low. False sends the caller to its precise (slower) checks for the message."""
    for i in range(1, ts.shape[0]):
        if ts[i] <= ts[i - 1]:
            return False
    for i in range(close.shape[0]):
        if not bar_looks_valid(open_[i], high[i], low[i], close[i], volume[i]):
            return False
    return True


@njit(cache=True, inline="always", error_model="numpy")
def bar_looks_valid(o, h, lo, c, v):  # pragma: no cover - jitted
    """Finite values, prices > 0, volume >= 0 and high >= low (one bar of bars_look_valid)."""
    if not (o > 0.0 and h > 0.0 and lo > 0.0 and c > 0.0 and v >= 0.0 and h >= lo):
        return False  # also catches NaN, which fails every comparison
    return (
        math.isfinite(o)
        and math.isfinite(h)
        and math.isfinite(lo)
        and math.isfinite(c)
        and math.isfinite(v)
    )


@njit(cache=True, nogil=True, error_model="numpy")
def has_nan(x):  # pragma: no cover - jitted
    """any(isnan(x)) of a 1-d array, without numpy's temporaries (a tenth of their cost)."""
    for i in range(x.shape[0]):
        if math.isnan(x[i]):
            return True
    return False


# --- TA-Lib's recursive indicators (EMA, RSI, ATR), one row at a time ---------------------------
# ml.features runs them over whole series and ml.online one bar at a time; both call these steps,
# so the two planes share each recurrence (they equal TA-Lib's EMA, RSI and ATR, which the
# feature tests check on long series).

_TA_EPSILON = 1e-14  # TA-Lib's TA_IS_ZERO band


@njit(cache=True, inline="always", error_model="numpy")
def ta_is_zero(v):  # pragma: no cover - jitted
    return -_TA_EPSILON < v < _TA_EPSILON


@njit(cache=True, inline="always", error_model="numpy")
def ema_k(period):  # pragma: no cover - jitted
    return 2.0 / (period + 1)


@njit(cache=True, inline="always", error_model="numpy")
def ema_step(prev, x, k):  # pragma: no cover - jitted
    """TA-Lib's EMA recurrence past its seed (the SMA of the first `period` values)."""
    return ((x - prev) * k) + prev


@njit(cache=True, inline="always", error_model="numpy")
def true_range(h, lo, prev_close):  # pragma: no cover - jitted
    return max(h - lo, abs(prev_close - h), abs(prev_close - lo))


@njit(cache=True, inline="always", error_model="numpy")
def wilder_step(prev, x, p):  # pragma: no cover - jitted
    """Wilder's smoothing past the seed: (prev * (p - 1) + x) / p, as prev * (1 - 1/p) + x / p
    so that a series' dependent chain is one multiply and one add, not a division. It rounds
    differently from TA-Lib's form: RSI and ATR differ from TA-Lib's by up to ~2e-15 relative
    (most rows are not bit-equal); tests hold them within 1e-9."""
    return prev * ((p - 1) / p) + x * (1.0 / p)


@njit(cache=True, inline="always", error_model="numpy")
def rsi_fold(gain, loss, d, n, p):  # pragma: no cover - jitted
    """Fold the n-th close change d (n = 1, 2, ...) into RSI's (gain, loss), as TA-Lib does:
    summed over the first p changes and divided by p at the p-th, Wilder-smoothed after."""
    up = max(d, 0.0)  # branch-free: a close change's sign is a coin flip to the predictor
    down = -min(d, 0.0)
    if n <= p:
        gain += up
        loss += down
        if n == p:
            loss /= p
            gain /= p
        return gain, loss
    return wilder_step(gain, up, p), wilder_step(loss, down, p)


@njit(cache=True, inline="always", error_model="numpy")
def rsi_value(gain, loss):  # pragma: no cover - jitted
    tot = gain + loss
    return 100.0 * (gain / tot) if not ta_is_zero(tot) else 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def ema(x, period):  # pragma: no cover - jitted
    """TA-Lib EMA(x, period): NaN for the first period-1 rows, then the SMA seed and ema_step."""
    n = x.shape[0]
    out = np.full(n, np.nan)
    if period > n:
        return out
    total = 0.0
    for t in range(period):
        total += x[t]
    v = total / period
    out[period - 1] = v
    k = ema_k(period)
    for t in range(period, n):
        v = ema_step(v, x[t], k)
        out[t] = v
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def rsi(close, p):  # pragma: no cover - jitted
    """TA-Lib RSI(close, p): NaN for the first p rows."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    gain = 0.0
    loss = 0.0
    for t in range(1, n):
        gain, loss = rsi_fold(gain, loss, close[t] - close[t - 1], t, p)
        if t >= p:
            out[t] = rsi_value(gain, loss)
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def atr(high, low, close, p):  # pragma: no cover - jitted
    """TA-Lib ATR(high, low, close, p): NaN for the first p rows; the seed is the mean true range
    of rows 1..p, Wilder-smoothed after."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    total = 0.0
    v = 0.0
    for t in range(1, n):
        total, v = atr_fold(total, v, true_range(high[t], low[t], close[t - 1]), t, p)
        if t >= p:
            out[t] = v
    return out


@njit(cache=True, inline="always", error_model="numpy")
def atr_fold(total, v, tr, n, p):  # pragma: no cover - jitted
    """Fold the n-th true range (n = 1, 2, ...) into ATR's (total, value), as TA-Lib does:
    summed over the first p and divided by p at the p-th, Wilder-smoothed after."""
    if n < p:
        return total + tr, v
    if n == p:
        return total, (total + tr) / p
    return total, wilder_step(v, tr, p)


@njit(cache=True, inline="always", error_model="numpy")
def macd_signal_fold(signal, macd, n, sig):  # pragma: no cover - jitted
    """Fold the n-th MACD value (n = 0, 1, ...) into the signal EMA, as TA-Lib's MACD does:
    summed over the first `sig` values and divided at the last of them, ema_step after."""
    if n < sig - 1:
        return signal + macd
    if n == sig - 1:
        return (signal + macd) / sig
    return ema_step(signal, macd, ema_k(sig))


@njit(cache=True, nogil=True, error_model="numpy")
def macd(close, fast, slow, sig):  # pragma: no cover - jitted
    """TA-Lib MACD(close, fast, slow, sig) for fast < slow: (macd, signal, hist), NaN for the
    first slow + sig - 2 rows. Both EMAs start at row slow - 1, the fast one seeded with the SMA
    of the `fast` closes up to there (where TA-Lib seeds it), the slow one with all `slow`."""
    n = close.shape[0]
    m = np.full(n, np.nan)
    s = np.full(n, np.nan)
    hist = np.full(n, np.nan)
    start = slow - 1
    if start + sig - 1 >= n:
        return m, s, hist
    e_slow = 0.0
    for t in range(slow):
        e_slow += close[t]
    e_slow /= slow
    e_fast = 0.0
    for t in range(slow - fast, slow):
        e_fast += close[t]
    e_fast /= fast
    k_fast = ema_k(fast)
    k_slow = ema_k(slow)
    signal = 0.0
    for t in range(start, n):
        if t > start:
            e_slow = ema_step(e_slow, close[t], k_slow)
            e_fast = ema_step(e_fast, close[t], k_fast)
        value = e_fast - e_slow
        signal = macd_signal_fold(signal, value, t - start, sig)
        if t - start >= sig - 1:
            m[t] = value
            s[t] = signal
            hist[t] = value - signal
    return m, s, hist


@njit(cache=True, inline="always", error_model="numpy")
def adx_fold(mdm, pdm, trs, sumdx, adx, dp, dm, tr, n, p):  # pragma: no cover - jitted
    """Fold the n-th bar (n = 1, 2, ...; dp/dm its up/down moves, tr its true range) into
    TA-Lib's ADX state (-DM, +DM, TR sums, the DX seed sum, ADX): the sums seeded over bars
    1..p-1 and Wilder-smoothed after, ADX the mean DX of bars p..2p-1, then smoothed.
    Returns the new state and the ADX of the bar (NaN before bar 2p-1)."""
    if n <= p - 1:
        if dm > 0 and dp < dm:
            mdm += dm
        elif dp > 0 and dp > dm:
            pdm += dp
        return mdm, pdm, trs + tr, sumdx, adx, np.nan
    mdm -= mdm / p
    pdm -= pdm / p
    if dm > 0 and dp < dm:
        mdm += dm
    elif dp > 0 and dp > dm:
        pdm += dp
    trs = trs - trs / p + tr
    dx = np.nan
    if not ta_is_zero(trs):
        mdi = 100.0 * (mdm / trs)
        pdi = 100.0 * (pdm / trs)
        tot = mdi + pdi
        if not ta_is_zero(tot):
            dx = 100.0 * (abs(mdi - pdi) / tot)
    if n <= 2 * p - 1:
        if not math.isnan(dx):
            sumdx += dx
        if n == 2 * p - 1:
            adx = sumdx / p
    elif not math.isnan(dx):
        adx = (adx * (p - 1) + dx) / p
    return mdm, pdm, trs, sumdx, adx, adx if n >= 2 * p - 1 else np.nan


@njit(cache=True, nogil=True, error_model="numpy")
def adx(high, low, close, p):  # pragma: no cover - jitted
    """TA-Lib ADX(high, low, close, p): NaN for the first 2p - 1 rows."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    mdm = 0.0
    pdm = 0.0
    trs = 0.0
    sumdx = 0.0
    value = 0.0
    for t in range(1, n):
        mdm, pdm, trs, sumdx, value, out[t] = adx_fold(
            mdm, pdm, trs, sumdx, value, high[t] - high[t - 1], low[t - 1] - low[t],
            true_range(high[t], low[t], close[t - 1]), t, p,
        )  # fmt: skip
    return out


@njit(cache=True, inline="always", error_model="numpy")
def sma_fold(total, x_new, x_first, full):  # pragma: no cover - jitted
    """TA-Lib SMA's running total: add the newest value; once the window is `full`, read the
    window's sum and let its first value `x_first` leave. Returns (total, the sum or NaN)."""
    total += x_new
    if not full:
        return total, np.nan
    return total - x_first, total


@njit(cache=True, nogil=True, error_model="numpy")
def sma(x, p):  # pragma: no cover - jitted
    """TA-Lib SMA(x, p): NaN for the first p - 1 rows, then a running total from the first row."""
    n = x.shape[0]
    out = np.full(n, np.nan)
    total = 0.0
    for t in range(n):
        full = t >= p - 1
        total, window = sma_fold(total, x[t], x[t - p + 1] if full else 0.0, full)
        if full:
            out[t] = window / p
    return out
