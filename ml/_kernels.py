"""Numba kernels for the causal rolling statistics of ml.features.

Every kernel is causal: output row i depends on input rows <= i only, so features computed on a
prefix of a frame equal, bit for bit, the features of the full frame on that prefix.

Rolling sums are kept in a ring buffer of the window's values: O(1) per row and series. Every
time the ring wraps (rows w-1, 2w-1, ... counted from the frame's first row) the sums are
recomputed exactly from the ring, so add/subtract rounding drift never spans more than one
window. Kernels write straight into rows of the caller's output matrix to avoid temporaries:
on a 1M-bar frame, memory traffic, not arithmetic, is what costs.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "acf_features",
    "any_nan_columns",
    "hurst_feature",
    "liquidity_features",
    "return_moments",
    "shifted_zscore",
    "volatility_features",
]

_NAN = np.nan


@njit(cache=True, inline="always")
def _push(ring, sums, x, slot):  # pragma: no cover - jitted
    """Put row values `x` in ring slot `slot`, replacing the row that leaves the window.

    NaN is stored as 0: inputs are NaN only in a leading prefix (the first returns), and each
    kernel emits output only once its window lies past that prefix. When the ring wraps, the
    sums are recomputed exactly from it, which bounds rounding drift to one window.
    """
    w, m = ring.shape
    for j in range(m):
        v = x[j]
        if math.isnan(v):
            v = 0.0
        sums[j] += v - ring[slot, j]
        ring[slot, j] = v
    if slot == w - 1:
        for j in range(m):
            s = 0.0
            for k in range(w):
                s += ring[k, j]
            sums[j] = s


@njit(cache=True, inline="always")
def _next(slot, w):  # pragma: no cover - jitted
    slot += 1
    return 0 if slot == w else slot


@njit(cache=True)
def return_moments(lp, w, mean, std, skew, kurt):  # pragma: no cover - jitted
    """Rolling mean, population std, skewness and excess kurtosis of 1-bar log returns."""
    n = lp.shape[0]
    ring = np.zeros((w, 4))
    sums = np.zeros(4)
    x = np.empty(4)
    slot = 0
    for i in range(n):
        r = lp[i] - lp[i - 1] if i >= 1 else _NAN
        r2 = r * r
        x[0] = r
        x[1] = r2
        x[2] = r2 * r
        x[3] = r2 * r2
        _push(ring, sums, x, slot)
        slot = _next(slot, w)
        if i < w:  # the window must hold w returns, and the first return is at row 1
            mean[i] = _NAN
            std[i] = _NAN
            skew[i] = _NAN
            kurt[i] = _NAN
            continue
        mu = sums[0] / w
        e2 = sums[1] / w
        e3 = sums[2] / w
        e4 = sums[3] / w
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


@njit(cache=True)
def acf_features(lp, w, lags, out):  # pragma: no cover - jitted
    """Autocorrelation of 1-bar log returns at lags 1..lags over the last w bars.

    acf_k = (mean(r_t * r_{t-k}) - mean(r)^2) / var(r), all means over the same w rows, so row
    i reads returns back to i - w - k + 1. out has shape (lags, n).
    """
    n = lp.shape[0]
    m = 2 + lags
    ring = np.zeros((w, m))
    sums = np.zeros(m)
    x = np.empty(m)
    slot = 0
    for i in range(n):
        r = lp[i] - lp[i - 1] if i >= 1 else _NAN
        x[0] = r
        x[1] = r * r
        for k in range(1, lags + 1):
            x[1 + k] = r * (lp[i - k] - lp[i - k - 1]) if i - k >= 1 else _NAN
        _push(ring, sums, x, slot)
        slot = _next(slot, w)
        if i < w + lags:  # every product r_t * r_{t-lags} in the window needs t - lags >= 1
            for k in range(lags):
                out[k, i] = _NAN
            continue
        mu = sums[0] / w
        var = sums[1] / w - mu * mu
        for k in range(1, lags + 1):
            out[k - 1, i] = (sums[1 + k] / w - mu * mu) / var if var > 0.0 else _NAN


@njit(cache=True)
def hurst_feature(lp, w, lags, out):  # pragma: no cover - jitted
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
    s1 = np.zeros(nl)
    s2 = np.zeros(nl)
    var = np.empty(nl)
    kmax = lags.max()
    for i in range(n):
        j_out = i - w
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
        if i % w == w - 1:
            # Exact recompute every w rows bounds the add/subtract rounding drift.
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
            continue
        ok = True
        for j in range(nl):
            mu = s1[j] / w
            var[j] = s2[j] / w - mu * mu
            if var[j] <= 0.0:
                ok = False
        if not ok:
            out[i] = _NAN
            continue
        h = _NAN
        if geometric:
            num = 1.0
            den = 1.0
            for j in range(nl):
                e = exps[j]
                while e > 0:
                    num *= var[j]
                    e -= 1
                while e < 0:
                    den *= var[j]
                    e += 1
            ratio = num / den
            if ratio > 0.0 and ratio < np.inf:
                h = coef * math.log(ratio)
        if math.isnan(h):
            h = 0.0
            for j in range(nl):
                h += weights[j] * 0.5 * math.log(var[j])
        out[i] = h


@njit(cache=True)
def volatility_features(lp, high, low, w_vol, w_sharpe, rv, parkinson, sharpe):  # pragma: no cover
    """Realized vol sqrt(mean r^2), Parkinson vol and the per-bar Sharpe ratio mean(r)/std(r)."""
    n = lp.shape[0]
    ring_v = np.zeros((w_vol, 2))
    sums_v = np.zeros(2)
    ring_s = np.zeros((w_sharpe, 2))
    sums_s = np.zeros(2)
    slot_v = 0
    slot_s = 0
    xv = np.empty(2)
    xs = np.empty(2)
    inv_4ln2 = 1.0 / (4.0 * math.log(2.0))
    for i in range(n):
        r = lp[i] - lp[i - 1] if i >= 1 else _NAN
        hl = math.log(high[i] / low[i])
        xv[0] = r * r
        xv[1] = hl * hl
        xs[0] = r
        xs[1] = r * r
        _push(ring_v, sums_v, xv, slot_v)
        slot_v = _next(slot_v, w_vol)
        _push(ring_s, sums_s, xs, slot_s)
        slot_s = _next(slot_s, w_sharpe)
        if i >= w_vol:
            rv[i] = math.sqrt(max(sums_v[0], 0.0) / w_vol)
            parkinson[i] = math.sqrt(max(sums_v[1], 0.0) / w_vol * inv_4ln2)
        else:
            rv[i] = _NAN
            parkinson[i] = _NAN
        if i >= w_sharpe:
            mu = sums_s[0] / w_sharpe
            var = sums_s[1] / w_sharpe - mu * mu
            sharpe[i] = mu / math.sqrt(var) if var > 0.0 else 0.0
        else:
            sharpe[i] = _NAN


@njit(cache=True)
def liquidity_features(
    close, lp, high, low, volume, w_flow, w_vwap, w_amihud, w_roll, flow, vwap, amihud, roll
):  # pragma: no cover - jitted
    """Signed-volume flow, close/VWAP - 1, log Amihud illiquidity and the Roll spread.

    flow = sum(sign(dclose) * volume) / sum(volume), a bounded rolling stand-in for OBV.
    amihud = log(mean(|r| / (close * volume))); a bar with zero volume makes it undefined (NaN).
    roll = 2 * sqrt(max(0, -cov(r_t, r_{t-1}))), the spread in return units.
    """
    n = close.shape[0]
    ring_f = np.zeros((w_flow, 2))
    sums_f = np.zeros(2)
    ring_v = np.zeros((w_vwap, 2))
    sums_v = np.zeros(2)
    # Amihud: sum of |r| / dollar volume, and a count of zero-volume bars (where it is undefined).
    ring_a = np.zeros((w_amihud, 2))
    sums_a = np.zeros(2)
    ring_r = np.zeros((w_roll, 3))
    sums_r = np.zeros(3)
    xf = np.empty(2)
    xv = np.empty(2)
    xa = np.empty(2)
    xr = np.empty(3)
    slot_f = 0
    slot_v = 0
    slot_a = 0
    slot_r = 0
    for i in range(n):
        r = lp[i] - lp[i - 1] if i >= 1 else _NAN
        r_prev = lp[i - 1] - lp[i - 2] if i >= 2 else _NAN
        if i >= 1:
            dc = close[i] - close[i - 1]
            sign = 1.0 if dc > 0.0 else (-1.0 if dc < 0.0 else 0.0)
            xf[0] = sign * volume[i]
            xf[1] = volume[i]
        else:
            xf[0] = _NAN
            xf[1] = _NAN
        xv[0] = (high[i] + low[i] + close[i]) / 3.0 * volume[i]
        xv[1] = volume[i]
        dollar_volume = close[i] * volume[i]
        if dollar_volume > 0.0:
            xa[0] = abs(r) / dollar_volume
            xa[1] = 0.0
        else:
            xa[0] = 0.0
            xa[1] = 1.0
        xr[0] = r * r_prev
        xr[1] = r
        xr[2] = r_prev
        _push(ring_f, sums_f, xf, slot_f)
        slot_f = _next(slot_f, w_flow)
        _push(ring_v, sums_v, xv, slot_v)
        slot_v = _next(slot_v, w_vwap)
        _push(ring_a, sums_a, xa, slot_a)
        slot_a = _next(slot_a, w_amihud)
        _push(ring_r, sums_r, xr, slot_r)
        slot_r = _next(slot_r, w_roll)
        flow[i] = sums_f[0] / sums_f[1] if i >= w_flow and sums_f[1] > 0.0 else _NAN
        if i >= w_vwap - 1 and sums_v[1] > 0.0:
            vwap[i] = close[i] / (sums_v[0] / sums_v[1]) - 1.0
        else:
            vwap[i] = _NAN
        # The zero-volume count is a sum of 0/1 values, exact in floating point.
        if i >= w_amihud and sums_a[1] == 0.0 and sums_a[0] > 0.0:
            amihud[i] = math.log(sums_a[0] / w_amihud)
        else:
            amihud[i] = _NAN
        if i >= w_roll + 1:
            cov = sums_r[0] / w_roll - (sums_r[1] / w_roll) * (sums_r[2] / w_roll)
            roll[i] = 2.0 * math.sqrt(-cov) if cov < 0.0 else 0.0
        else:
            roll[i] = _NAN


@njit(cache=True)
def shifted_zscore(x, w, out):  # pragma: no cover - jitted
    """Rolling z-score (x - mean) / std over the last w rows (population std; 0 when flat).

    Sums are of x - K, where K is the window mean at the last exact recompute: for price or
    volume levels this avoids the cancellation of sum(x^2) - sum(x)^2 / w.
    """
    n = x.shape[0]
    ring = np.zeros(w)
    k_shift = 0.0
    s1 = 0.0
    s2 = 0.0
    for i in range(n):
        slot = i % w
        if i >= w:
            d = ring[slot] - k_shift
            s1 -= d
            s2 -= d * d
        ring[slot] = x[i]
        d = x[i] - k_shift
        s1 += d
        s2 += d * d
        if slot == w - 1:
            total = 0.0
            for j in range(w):
                total += ring[j]
            k_shift = total / w
            s1 = 0.0
            s2 = 0.0
            for j in range(w):
                d = ring[j] - k_shift
                s1 += d
                s2 += d * d
        if i < w - 1:
            out[i] = _NAN
            continue
        mu = s1 / w
        var = s2 / w - mu * mu
        out[i] = (x[i] - k_shift - mu) / math.sqrt(var) if var > 0.0 else 0.0


@njit(cache=True)
def any_nan_columns(matrix, flags):  # pragma: no cover - jitted
    """flags[i] = any(isnan(matrix[:, i])) for a (features, rows) matrix, one pass."""
    f, n = matrix.shape
    for i in range(n):
        flags[i] = False
    for j in range(f):
        for i in range(n):
            if math.isnan(matrix[j, i]):
                flags[i] = True
