"""Feature engineering over canonical bar frames: one function for the batch and the live plane.

`compute_features(bars)` is causal: row t depends on bars at or before t only. Every feature is
scale-free (a ratio to price, a return, a bounded oscillator or a z-score) so that a model fitted
on one symbol can be applied to another. There is no expanding-window feature: OBV is replaced by
a rolling signed-volume flow, drawdown is measured from a rolling peak and VWAP is rolling, so a
live buffer of `required_history(config)` bars gives the same last row as the whole history.
User feature functions (`FeatureConfig.user_features`, see ml.user_features) add columns after
the built-ins; the live plane applies them to its newest `feature_window` bars.

The recursive (EMA-type) indicators of TA-Lib depend on where the data starts, with a weight that
decays geometrically; `required_history` adds enough bars for that weight to fall below
`FeatureConfig.convergence_tol`.

Speed: the rolling statistics are numba kernels (ml._kernels) that write straight into the output
matrix and flag their NaN rows as they go. On a long frame the work is split in two halves that
run on two threads (TA-Lib and the kernels release the GIL); the live plane's short buffer runs
in sequence. Both paths give the same bits.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import talib

from ml._bars import validated_bar_arrays
from ml._config import config_from_mapping
from ml._kernels import (
    acf_features,
    adx,
    atr,
    bollinger_features,
    copy_row,
    divide_row,
    ema,
    hurst_feature,
    keltner_features,
    lag_difference,
    liquidity_features,
    macd,
    padded_returns,
    ratio_minus_one,
    return_moments,
    rsi,
    shifted_zscore,
    sma,
    volatility_features,
    wma_ratio,
)
from ml.errors import ConfigError

__all__ = [
    "FEATURE_COLUMNS",
    "FeatureConfig",
    "builtin_feature_columns",
    "compute_features",
    "feature_columns",
    "required_history",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureConfig:
    """Lookbacks (in bars) of every feature. Unknown keys are rejected by `from_mapping`."""

    sma_periods: tuple[int, ...] = (10, 50)  # close / SMA - 1
    ema_periods: tuple[int, ...] = (12, 26)  # close / EMA - 1
    wma_period: int = 20  # close / WMA - 1
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    rsi_period: int = 14
    stoch_fastk: int = 14
    stoch_slowk: int = 3
    stoch_slowd: int = 3
    adx_period: int = 14
    roc_period: int = 10
    willr_period: int = 14
    bb_period: int = 20
    bb_k: float = 2.0  # band half-width in standard deviations
    atr_period: int = 14
    keltner_period: int = 20  # EMA of the Keltner middle line; ATR uses atr_period
    keltner_k: float = 2.0  # band half-width in ATRs
    flow_window: int = 20  # rolling signed-volume flow (the rolling stand-in for OBV)
    vwap_window: int = 20
    volume_z_window: int = 20
    return_lags: tuple[int, ...] = (1, 2, 5, 10, 20)  # log returns over these many bars
    stat_window: int = 20  # rolling mean / std / skew / kurtosis of 1-bar log returns
    zscore_window: int = 20  # z-score of the close
    autocorr_window: int = 100
    autocorr_lags: int = 10  # autocorrelation of returns at lags 1..autocorr_lags
    hurst_window: int = 100
    hurst_lags: tuple[int, ...] = (1, 2, 4, 8, 16)  # std of k-bar log-price changes ~ k^H
    vol_window: int = 20  # realized and Parkinson volatility (per bar, not annualised)
    sharpe_window: int = 60  # mean / std of 1-bar log returns (per bar)
    drawdown_window: int = 250  # close / rolling max close - 1
    amihud_window: int = 20  # log of mean |return| / (close * volume)
    roll_window: int = 20  # Roll (1984) spread from return autocovariance, in return units
    convergence_tol: float = 1e-12  # residual weight of pre-buffer bars in EMA-type features
    # User feature functions "module:function" (ml.user_features), added after the built-ins,
    # and the bars the live plane hands each of them (their longest lookback).
    user_features: tuple[str, ...] = ()
    feature_window: int = 250

    def __post_init__(self) -> None:
        ints = {
            k: v for k, v in self.__dict__.items() if isinstance(v, int) and not isinstance(v, bool)
        }
        for name, value in ints.items():
            if value < 1:
                msg = f"FeatureConfig.{name} must be >= 1, got {value}"
                raise ConfigError(msg)
        for name in ("sma_periods", "ema_periods", "return_lags", "hurst_lags"):
            values = getattr(self, name)
            if not values or any(int(v) < 1 for v in values) or len(set(values)) < len(values):
                msg = f"FeatureConfig.{name} must be distinct ints >= 1, got {values}"
                raise ConfigError(msg)
        if len(set(self.hurst_lags)) < 2:
            msg = f"FeatureConfig.hurst_lags needs >= 2 distinct lags, got {self.hurst_lags}"
            raise ConfigError(msg)
        for name in ("wma_period", "rsi_period", "adx_period", "bb_period", "atr_period"):
            if getattr(self, name) < 2:
                msg = f"FeatureConfig.{name} must be >= 2, got {getattr(self, name)}"
                raise ConfigError(msg)
        if self.macd_fast >= self.macd_slow:
            msg = f"macd_fast ({self.macd_fast}) must be < macd_slow ({self.macd_slow})"
            raise ConfigError(msg)
        for name in ("stat_window", "zscore_window", "sharpe_window", "roll_window"):
            if getattr(self, name) < 3:
                msg = f"FeatureConfig.{name} must be >= 3, got {getattr(self, name)}"
                raise ConfigError(msg)
        if self.autocorr_window <= self.autocorr_lags + 2:
            msg = "FeatureConfig.autocorr_window must exceed autocorr_lags + 2"
            raise ConfigError(msg)
        if not 0.0 < self.convergence_tol < 1e-3:
            msg = f"FeatureConfig.convergence_tol must be in (0, 1e-3), got {self.convergence_tol}"
            raise ConfigError(msg)
        if self.user_features:
            from ml.user_features import user_columns

            user_columns(self)  # importable, callable, right shape, no clash: checked now

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FeatureConfig:
        """Build from a plain mapping (e.g. parsed YAML); unknown keys raise ConfigError."""
        return config_from_mapping(cls, values)


def feature_columns(config: FeatureConfig = FeatureConfig()) -> tuple[str, ...]:
    """The feature column names `compute_features` returns for `config`, in order (no warmup):
    the built-ins, then the user features' columns."""
    if not config.user_features:
        return builtin_feature_columns(config)
    from ml.user_features import user_columns

    return builtin_feature_columns(config) + user_columns(config)


def builtin_feature_columns(config: FeatureConfig = FeatureConfig()) -> tuple[str, ...]:
    """The built-in feature columns of `config` (what ml.online computes incrementally)."""
    c = config
    cols: list[str] = []
    cols += [f"sma_{p}_ratio" for p in c.sma_periods]
    cols += [f"ema_{p}_ratio" for p in c.ema_periods]
    cols += [f"wma_{c.wma_period}_ratio", "macd", "macd_signal", "macd_hist"]
    cols += [f"rsi_{c.rsi_period}", "stoch_k", "stoch_d", f"adx_{c.adx_period}"]
    cols += [f"roc_{c.roc_period}", f"willr_{c.willr_period}"]
    cols += ["bb_upper_ratio", "bb_lower_ratio", "bb_width", "bb_pctb"]
    cols += [f"atr_{c.atr_period}_ratio", "kc_upper_ratio", "kc_lower_ratio", "kc_pos"]
    cols += [f"obv_flow_{c.flow_window}", f"vwap_{c.vwap_window}_ratio"]
    cols += [f"volume_z_{c.volume_z_window}"]
    cols += [f"log_ret_{k}" for k in c.return_lags]
    w = c.stat_window
    cols += [f"ret_mean_{w}", f"ret_std_{w}", f"ret_skew_{w}", f"ret_kurt_{w}"]
    cols += [f"close_z_{c.zscore_window}"]
    cols += [f"ret_acf_{k}" for k in range(1, c.autocorr_lags + 1)]
    cols += [f"hurst_{c.hurst_window}", f"rv_{c.vol_window}", f"parkinson_{c.vol_window}"]
    cols += [f"sharpe_{c.sharpe_window}", f"drawdown_{c.drawdown_window}"]
    cols += [f"amihud_{c.amihud_window}", f"roll_spread_{c.roll_window}"]
    return tuple(cols)


FEATURE_COLUMNS: tuple[str, ...] = feature_columns()


@functools.lru_cache(maxsize=64)
def _layout(config: FeatureConfig) -> tuple[tuple[str, ...], pd.Index, Mapping[str, int]]:
    """Column names, their (immutable, shared) pandas Index and row positions, per config.

    Cached because the live plane calls compute_features once per bar on a short buffer, where
    building the string Index costs about as much as computing a kernel.
    """
    cols = builtin_feature_columns(config)
    return cols, pd.Index(cols), {name: i for i, name in enumerate(cols)}


def _finite_lookback(c: FeatureConfig) -> int:
    """Bars of history that the windowed (non-recursive) features read, including the bar itself."""
    return max(
        max(c.sma_periods),
        c.wma_period,
        c.bb_period,
        c.stoch_fastk + c.stoch_slowk + c.stoch_slowd,
        c.willr_period,
        c.roc_period + 1,
        c.flow_window + 1,
        c.vwap_window,
        c.volume_z_window,
        max(c.return_lags) + 1,
        c.stat_window + 1,
        c.zscore_window,
        c.autocorr_window + c.autocorr_lags + 1,
        c.hurst_window + max(c.hurst_lags),
        c.vol_window + 1,
        c.sharpe_window + 1,
        c.drawdown_window,
        c.amihud_window + 1,
        c.roll_window + 2,
    )


def _bars_to_converge(alpha: float, tol: float) -> int:
    """Smallest k with (k + 1) * (1 - alpha)^k < tol.

    (1 - alpha)^k bounds the weight an exponential smoother still gives to its seed after k bars;
    the extra (k + 1) factor covers a smoother fed by another smoother (MACD signal, ADX).
    """
    decay = 1.0 - alpha
    k = math.ceil(math.log(tol) / math.log(decay))
    while (k + 1) * decay**k >= tol:
        k += 1
    return k


def required_history(config: FeatureConfig = FeatureConfig()) -> int:
    """Bars the live plane must buffer so that the last feature row equals the batch one.

    Equal means within `config.convergence_tol` of residual seed weight, which on real data gives
    relative differences far below 1e-9 (tests/ml/test_features.py proves it on S&P 500 bars).
    """
    c = config
    alphas = [2.0 / (p + 1) for p in (*c.ema_periods, c.macd_fast, c.macd_slow, c.macd_signal)]
    alphas += [2.0 / (c.keltner_period + 1)]
    alphas += [1.0 / p for p in (c.rsi_period, c.adx_period, c.atr_period)]  # Wilder smoothing
    converge = _bars_to_converge(min(alphas), c.convergence_tol)
    # Seed lookbacks of the recursive indicators (ADX seeds twice, MACD seeds slow then signal).
    seed = max(2 * c.adx_period, c.macd_slow + c.macd_signal, c.rsi_period + 1, c.atr_period + 1)
    builtin = max(_finite_lookback(c), seed + converge)
    return max(builtin, c.feature_window) if c.user_features else builtin


# From this many bars on, the statistical rows are computed on a worker thread (below it, the
# thread's start-up costs more than it saves; the live plane's buffer is far below it).
_THREAD_MIN_ROWS = 50_000


def _statistical_columns(c: FeatureConfig) -> list[str]:
    """The rows `_return_features` and `_dependence_features` write."""
    w = c.stat_window
    cols = [f"log_ret_{k}" for k in c.return_lags]
    cols += [f"ret_mean_{w}", f"ret_std_{w}", f"ret_skew_{w}", f"ret_kurt_{w}"]
    cols += [f"close_z_{c.zscore_window}", f"volume_z_{c.volume_z_window}"]
    cols += [f"ret_acf_{k}" for k in range(1, c.autocorr_lags + 1)]
    cols += [f"hurst_{c.hurst_window}", f"rv_{c.vol_window}", f"parkinson_{c.vol_window}"]
    cols += [f"sharpe_{c.sharpe_window}", f"obv_flow_{c.flow_window}"]
    cols += [f"vwap_{c.vwap_window}_ratio", f"amihud_{c.amihud_window}"]
    cols += [f"roll_spread_{c.roll_window}"]
    return cols


def _return_pad(c: FeatureConfig) -> int:
    """Zero returns put before the frame: the longest window plus the lags read past it."""
    return max(
        c.stat_window,
        c.autocorr_window + c.autocorr_lags,
        c.vol_window,
        c.sharpe_window,
        c.roll_window + 1,
    )


def _return_features(
    c: FeatureConfig,
    bars: Mapping[str, np.ndarray],
    lp: np.ndarray,
    rp: np.ndarray,
    rows: Mapping[str, np.ndarray],
    flags: np.ndarray,
) -> None:
    """Write log returns, their moments, the z-scores and the volatility rows; mark NaN rows.

    `lp` is the log close and `rp` its `padded_returns` with `_return_pad(c)` zeros in front.
    """
    h, lo, cl, v = bars["high"], bars["low"], bars["close"], bars["volume"]
    pad = _return_pad(c)
    for k in c.return_lags:
        lag_difference(lp, k, rows[f"log_ret_{k}"], flags)
    w = c.stat_window
    return_moments(
        rp,
        pad,
        w,
        rows[f"ret_mean_{w}"],
        rows[f"ret_std_{w}"],
        rows[f"ret_skew_{w}"],
        rows[f"ret_kurt_{w}"],
        flags,
    )
    shifted_zscore(cl, c.zscore_window, rows[f"close_z_{c.zscore_window}"], flags)
    shifted_zscore(v, c.volume_z_window, rows[f"volume_z_{c.volume_z_window}"], flags)
    parkinson = rows[f"parkinson_{c.vol_window}"]
    np.divide(h, lo, out=parkinson)
    np.log(parkinson, out=parkinson)  # the log range, read and overwritten by the kernel
    volatility_features(
        rp,
        pad,
        parkinson,
        c.vol_window,
        c.sharpe_window,
        rows[f"rv_{c.vol_window}"],
        parkinson,
        rows[f"sharpe_{c.sharpe_window}"],
        flags,
    )


def _dependence_features(
    c: FeatureConfig,
    lp: np.ndarray,
    rp: np.ndarray,
    rows: Mapping[str, np.ndarray],
    acf_rows: np.ndarray,
    flags: np.ndarray,
) -> None:
    """Write the autocorrelation and Hurst rows; mark NaN rows in `flags`."""
    pad = _return_pad(c)
    acf_features(rp, pad, c.autocorr_window, c.autocorr_lags, acf_rows, flags)
    hurst_lags = np.asarray(sorted(set(c.hurst_lags)), dtype=np.int64)
    hurst_feature(lp, c.hurst_window, hurst_lags, rows[f"hurst_{c.hurst_window}"], flags)


def _liquidity_features(
    c: FeatureConfig,
    bars: Mapping[str, np.ndarray],
    rp: np.ndarray,
    rows: Mapping[str, np.ndarray],
    flags: np.ndarray,
) -> None:
    """Write the signed-volume flow, VWAP, Amihud and Roll spread rows; mark NaN rows."""
    h, lo, cl, v = bars["high"], bars["low"], bars["close"], bars["volume"]
    pad = _return_pad(c)
    liquidity_features(
        cl,
        rp,
        pad,
        h,
        lo,
        v,
        c.flow_window,
        c.vwap_window,
        c.amihud_window,
        c.roll_window,
        rows[f"obv_flow_{c.flow_window}"],
        rows[f"vwap_{c.vwap_window}_ratio"],
        rows[f"amihud_{c.amihud_window}"],
        rows[f"roll_spread_{c.roll_window}"],
        flags,
    )
    amihud = rows[f"amihud_{c.amihud_window}"]
    np.log(amihud, out=amihud)  # the kernel wrote the mean; NaN stays NaN


def _close_indicators(
    c: FeatureConfig,
    bars: Mapping[str, np.ndarray],
    row: Callable[[str], np.ndarray],
    flags: np.ndarray,
) -> None:
    """Write the rows read from the close alone, made scale-free; mark NaN rows.

    SMA, EMA, MACD and RSI run ml._kernels' recurrences, the ones ml.online steps bar by bar
    (equal to TA-Lib's); ROC and MAX are TA-Lib's."""
    cl = bars["close"]
    for p in c.sma_periods:
        ratio_minus_one(cl, sma(cl, p), row(f"sma_{p}_ratio"), flags)
    for p in c.ema_periods:
        ratio_minus_one(cl, ema(cl, p), row(f"ema_{p}_ratio"), flags)
    wma_ratio(cl, c.wma_period, row(f"wma_{c.wma_period}_ratio"), flags)
    m, signal, hist = macd(cl, c.macd_fast, c.macd_slow, c.macd_signal)
    divide_row(m, cl, row("macd"), flags)
    divide_row(signal, cl, row("macd_signal"), flags)
    divide_row(hist, cl, row("macd_hist"), flags)
    copy_row(rsi(cl, c.rsi_period), row(f"rsi_{c.rsi_period}"), flags)
    copy_row(talib.ROC(cl, timeperiod=c.roc_period), row(f"roc_{c.roc_period}"), flags)
    bollinger_features(
        cl,
        sma(cl, c.bb_period),
        c.bb_period,
        float(c.bb_k),
        row("bb_upper_ratio"),
        row("bb_lower_ratio"),
        row("bb_width"),
        row("bb_pctb"),
        flags,
    )
    peak = talib.MAX(cl, timeperiod=c.drawdown_window)
    ratio_minus_one(cl, peak, row(f"drawdown_{c.drawdown_window}"), flags)


def _range_indicators(
    c: FeatureConfig,
    bars: Mapping[str, np.ndarray],
    row: Callable[[str], np.ndarray],
    flags: np.ndarray,
) -> None:
    """Write the rows that read the high-low range; mark NaN rows in `flags` (ADX, ATR and the
    Keltner EMA: ml._kernels' recurrences, shared with ml.online; the rest TA-Lib's)."""
    h, lo, cl = bars["high"], bars["low"], bars["close"]
    slowk, slowd = talib.STOCH(
        h,
        lo,
        cl,
        fastk_period=c.stoch_fastk,
        slowk_period=c.stoch_slowk,
        slowk_matype=talib.MA_Type.SMA,
        slowd_period=c.stoch_slowd,
        slowd_matype=talib.MA_Type.SMA,
    )
    copy_row(slowk, row("stoch_k"), flags)
    copy_row(slowd, row("stoch_d"), flags)
    copy_row(adx(h, lo, cl, c.adx_period), row(f"adx_{c.adx_period}"), flags)
    keltner_features(
        cl,
        ema(cl, c.keltner_period),
        atr(h, lo, cl, c.atr_period),
        float(c.keltner_k),
        row(f"atr_{c.atr_period}_ratio"),
        row("kc_upper_ratio"),
        row("kc_lower_ratio"),
        row("kc_pos"),
        flags,
    )
    willr = talib.WILLR(h, lo, cl, timeperiod=c.willr_period)
    copy_row(willr, row(f"willr_{c.willr_period}"), flags)


def compute_features(bars: pd.DataFrame, config: FeatureConfig = FeatureConfig()) -> pd.DataFrame:
    """Return the feature frame of one symbol's bars, indexed by ts, plus a bool `warmup` column.

    `bars` holds canonical bars (quality.schema) of one symbol sorted by ts: a `ts` column (or a
    DatetimeIndex) and open/high/low/close/volume. The input is not modified. Rows are never
    dropped: `warmup` is True where any feature is NaN (its lookback is not yet filled, or a
    volume feature is undefined because the window traded nothing). The user feature functions
    of `config.user_features` (ml.user_features) add their columns after the built-ins.
    """
    c = config
    index, arrays = validated_bar_arrays(bars)
    # The open is validated but read by no feature: it is the price the next decision fills at.
    n = len(arrays["close"])
    cols, columns, pos = _layout(c)
    # Every row is written exactly once below (checked at the end), so no NaN pre-fill: on a
    # large frame the first write into fresh pages is already the dominant memory cost.
    out = np.empty((len(cols), n))
    written: set[str] = set()
    # warmup[i]: some feature of row i is NaN; each kernel marks the NaN rows it writes.
    warmup = np.zeros(n, dtype=np.bool_)

    def row(name: str) -> np.ndarray:
        written.add(name)
        return out[pos[name]]

    if n == 0:
        frame = pd.DataFrame(out.T, index=index, columns=columns)
        for name in feature_columns(c)[len(cols) :]:  # user columns, empty too
            frame[name] = np.empty(0)
        frame["warmup"] = warmup
        return frame

    stat_rows = {name: row(name) for name in _statistical_columns(c)}
    first_acf = pos["ret_acf_1"]
    acf_rows = out[first_acf : first_acf + c.autocorr_lags]
    lp = np.log(arrays["close"])
    rp = padded_returns(lp, _return_pad(c))
    # Two halves of about equal cost that write disjoint rows, each half into its own flags.
    worker_flags = np.zeros(n, dtype=np.bool_)

    def worker_half() -> None:
        _dependence_features(c, lp, rp, stat_rows, acf_rows, worker_flags)
        _range_indicators(c, arrays, row, worker_flags)

    def caller_half() -> None:
        _close_indicators(c, arrays, row, warmup)
        _return_features(c, arrays, lp, rp, stat_rows, warmup)
        _liquidity_features(c, arrays, rp, stat_rows, warmup)

    if n >= _THREAD_MIN_ROWS and (os.cpu_count() or 1) > 1:
        # numba kernels and TA-Lib both release the GIL, so on a large frame one half runs on a
        # worker thread. The result is the same, bit for bit, as when run in sequence.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="features") as pool:
            done = pool.submit(worker_half)
            caller_half()
            done.result()
    else:
        worker_half()
        caller_half()
    np.logical_or(warmup, worker_flags, out=warmup)

    if len(written) != len(cols):
        missing = sorted(set(cols) - written)
        msg = f"compute_features left feature rows unwritten: {missing}"
        raise RuntimeError(msg)

    # out is (features, rows); its transpose becomes the frame's single float block without a copy.
    frame = pd.DataFrame(out.T, index=index, columns=columns, copy=False)
    frame["warmup"] = warmup
    if c.user_features:
        from ml.user_features import add_user_features

        return add_user_features(index, arrays, frame, c)
    return frame
