"""Feature engineering over canonical bar frames: one function for the batch and the live plane.

`compute_features(bars)` is causal: row t depends on bars at or before t only. Every feature is
scale-free (a ratio to price, a return, a bounded oscillator or a z-score) so that a model fitted
on one symbol can be applied to another. There is no expanding-window feature: OBV is replaced by
a rolling signed-volume flow, drawdown is measured from a rolling peak and VWAP is rolling, so a
live buffer of `required_history(config)` bars gives the same last row as the whole history.

The recursive (EMA-type) indicators of TA-Lib depend on where the data starts, with a weight that
decays geometrically; `required_history` adds enough bars for that weight to fall below
`FeatureConfig.convergence_tol`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import talib

from ml._bars import validated_bar_arrays
from ml._config import config_from_mapping
from ml._kernels import (
    acf_features,
    any_nan_columns,
    hurst_feature,
    liquidity_features,
    return_moments,
    shifted_zscore,
    volatility_features,
)
from ml.errors import ConfigError

__all__ = [
    "FEATURE_COLUMNS",
    "FeatureConfig",
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

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FeatureConfig:
        """Build from a plain mapping (e.g. parsed YAML); unknown keys raise ConfigError."""
        return config_from_mapping(cls, values)


def feature_columns(config: FeatureConfig = FeatureConfig()) -> tuple[str, ...]:
    """The feature column names `compute_features` returns for `config`, in order (no warmup)."""
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
    return max(_finite_lookback(c), seed + converge)


def _safe_div(num: np.ndarray, den: np.ndarray, zero: float = np.nan) -> np.ndarray:
    """num / den with `zero` where den == 0 (NaN stays NaN)."""
    out = np.full_like(num, zero)
    np.divide(num, den, out=out, where=den != 0)
    out[np.isnan(num) | np.isnan(den)] = np.nan
    return out


def _ratio_minus_one(num: np.ndarray, den: np.ndarray, row: np.ndarray) -> None:
    """row[:] = num / den - 1 without temporaries."""
    np.divide(num, den, out=row)
    row -= 1.0


def compute_features(bars: pd.DataFrame, config: FeatureConfig = FeatureConfig()) -> pd.DataFrame:
    """Return the feature frame of one symbol's bars, indexed by ts, plus a bool `warmup` column.

    `bars` holds canonical bars (quality.schema) of one symbol sorted by ts: a `ts` column (or a
    DatetimeIndex) and open/high/low/close/volume. The input is not modified. Rows are never
    dropped: `warmup` is True where any feature is NaN (its lookback is not yet filled, or a
    volume feature is undefined because the window traded nothing).
    """
    c = config
    index, a = validated_bar_arrays(bars)
    # The open is validated but read by no feature: it is the price the next decision fills at.
    h, lo, cl, v = a["high"], a["low"], a["close"], a["volume"]
    n = len(cl)
    cols = feature_columns(c)
    # NaN-initialised so that a row a future edit forgets to write reads as warm-up, not garbage.
    out = np.full((len(cols), n), np.nan)
    pos = {name: i for i, name in enumerate(cols)}

    def put(name: str, values: np.ndarray) -> None:
        out[pos[name]] = values

    def row(name: str) -> np.ndarray:
        return out[pos[name]]

    if n == 0:
        frame = pd.DataFrame(out.T, index=index, columns=list(cols))
        frame["warmup"] = np.zeros(0, dtype=bool)
        return frame

    # --- TA-Lib indicators, made scale-free by dividing by the close --------------------------
    for p in c.sma_periods:
        _ratio_minus_one(cl, talib.SMA(cl, timeperiod=p), row(f"sma_{p}_ratio"))
    for p in c.ema_periods:
        _ratio_minus_one(cl, talib.EMA(cl, timeperiod=p), row(f"ema_{p}_ratio"))
    wma = talib.WMA(cl, timeperiod=c.wma_period)
    _ratio_minus_one(cl, wma, row(f"wma_{c.wma_period}_ratio"))
    macd, signal, hist = talib.MACD(
        cl, fastperiod=c.macd_fast, slowperiod=c.macd_slow, signalperiod=c.macd_signal
    )
    np.divide(macd, cl, out=row("macd"))
    np.divide(signal, cl, out=row("macd_signal"))
    np.divide(hist, cl, out=row("macd_hist"))
    put(f"rsi_{c.rsi_period}", talib.RSI(cl, timeperiod=c.rsi_period))
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
    put("stoch_k", slowk)
    put("stoch_d", slowd)
    put(f"adx_{c.adx_period}", talib.ADX(h, lo, cl, timeperiod=c.adx_period))
    put(f"roc_{c.roc_period}", talib.ROC(cl, timeperiod=c.roc_period))
    put(f"willr_{c.willr_period}", talib.WILLR(h, lo, cl, timeperiod=c.willr_period))
    upper, middle, lower = talib.BBANDS(
        cl, timeperiod=c.bb_period, nbdevup=c.bb_k, nbdevdn=c.bb_k, matype=talib.MA_Type.SMA
    )
    _ratio_minus_one(upper, cl, row("bb_upper_ratio"))
    _ratio_minus_one(lower, cl, row("bb_lower_ratio"))
    width = upper - lower
    put("bb_width", _safe_div(width, middle))
    put("bb_pctb", _safe_div(cl - lower, width, zero=0.5))
    atr = talib.ATR(h, lo, cl, timeperiod=c.atr_period)
    np.divide(atr, cl, out=row(f"atr_{c.atr_period}_ratio"))
    kc_mid = talib.EMA(cl, timeperiod=c.keltner_period)
    kc_up = kc_mid + c.keltner_k * atr
    kc_dn = kc_mid - c.keltner_k * atr
    _ratio_minus_one(kc_up, cl, row("kc_upper_ratio"))
    _ratio_minus_one(kc_dn, cl, row("kc_lower_ratio"))
    put("kc_pos", _safe_div(cl - kc_dn, kc_up - kc_dn, zero=0.5))
    drawdown = row(f"drawdown_{c.drawdown_window}")
    _ratio_minus_one(cl, talib.MAX(cl, timeperiod=c.drawdown_window), drawdown)

    # --- statistical features: numba kernels writing straight into the output rows -----------
    lp = np.log(cl)
    for k in c.return_lags:
        target = row(f"log_ret_{k}")
        target[: min(k, n)] = np.nan
        if n > k:
            np.subtract(lp[k:], lp[:-k], out=target[k:])
    w = c.stat_window
    return_moments(
        lp, w, row(f"ret_mean_{w}"), row(f"ret_std_{w}"), row(f"ret_skew_{w}"), row(f"ret_kurt_{w}")
    )
    shifted_zscore(cl, c.zscore_window, row(f"close_z_{c.zscore_window}"))
    shifted_zscore(v, c.volume_z_window, row(f"volume_z_{c.volume_z_window}"))
    first_acf = pos["ret_acf_1"]
    acf_features(
        lp, c.autocorr_window, c.autocorr_lags, out[first_acf : first_acf + c.autocorr_lags]
    )
    hurst_lags = np.asarray(sorted(set(c.hurst_lags)), dtype=np.int64)
    hurst_feature(lp, c.hurst_window, hurst_lags, row(f"hurst_{c.hurst_window}"))
    volatility_features(
        lp,
        h,
        lo,
        c.vol_window,
        c.sharpe_window,
        row(f"rv_{c.vol_window}"),
        row(f"parkinson_{c.vol_window}"),
        row(f"sharpe_{c.sharpe_window}"),
    )
    liquidity_features(
        cl,
        lp,
        h,
        lo,
        v,
        c.flow_window,
        c.vwap_window,
        c.amihud_window,
        c.roll_window,
        row(f"obv_flow_{c.flow_window}"),
        row(f"vwap_{c.vwap_window}_ratio"),
        row(f"amihud_{c.amihud_window}"),
        row(f"roll_spread_{c.roll_window}"),
    )

    # out is (features, rows); its transpose becomes the frame's single float block without a copy.
    frame = pd.DataFrame(out.T, index=index, columns=list(cols), copy=False)
    warmup = np.empty(n, dtype=np.bool_)
    any_nan_columns(out, warmup)
    frame["warmup"] = warmup
    return frame
