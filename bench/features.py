"""Benchmark: the full feature set vs the bare TA-Lib calls for the same indicators.

    python -m bench.features [--rows N] [--repeats R] [--out PATH]

Prints both timings and their ratio (goal: <= 2.0) and writes them as JSON to
$CANDLEFLOW_HOME/bench/features.json (default ./var). Numba kernels are compiled (or loaded
from cache) before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import talib

from ml import _kernels, features
from ml._bars import validated_bar_arrays
from ml.features import FeatureConfig, compute_features, feature_columns

GOAL_RATIO = 2.0


def synthetic_bars(rows: int, seed: int = 7) -> pd.DataFrame:
    """A geometric random walk with plausible OHLCV, one-minute bars from 2020-01-01 UTC."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, rows)))
    open_ = np.empty(rows)
    open_[0] = 100.0
    open_[1:] = close[:-1]
    spread = np.abs(rng.normal(0.0, 5e-4, rows))
    high = np.maximum(open_, close) * (1.0 + spread)
    low = np.minimum(open_, close) * (1.0 - spread)
    volume = rng.lognormal(8.0, 0.5, rows)
    ts = pd.date_range("2020-01-01", periods=rows, freq="1min", tz="UTC")
    return pd.DataFrame(
        {"ts": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


def bare_talib(bars: pd.DataFrame, config: FeatureConfig) -> None:
    """The TA-Lib calls behind the indicator features, nothing else."""
    c = config
    h = bars["high"].to_numpy(np.float64)
    lo = bars["low"].to_numpy(np.float64)
    cl = bars["close"].to_numpy(np.float64)
    v = bars["volume"].to_numpy(np.float64)
    for p in c.sma_periods:
        talib.SMA(cl, timeperiod=p)
    for p in c.ema_periods:
        talib.EMA(cl, timeperiod=p)
    talib.WMA(cl, timeperiod=c.wma_period)
    talib.MACD(cl, fastperiod=c.macd_fast, slowperiod=c.macd_slow, signalperiod=c.macd_signal)
    talib.RSI(cl, timeperiod=c.rsi_period)
    talib.STOCH(
        h,
        lo,
        cl,
        fastk_period=c.stoch_fastk,
        slowk_period=c.stoch_slowk,
        slowk_matype=talib.MA_Type.SMA,
        slowd_period=c.stoch_slowd,
        slowd_matype=talib.MA_Type.SMA,
    )
    talib.ADX(h, lo, cl, timeperiod=c.adx_period)
    talib.ROC(cl, timeperiod=c.roc_period)
    talib.WILLR(h, lo, cl, timeperiod=c.willr_period)
    talib.BBANDS(
        cl, timeperiod=c.bb_period, nbdevup=c.bb_k, nbdevdn=c.bb_k, matype=talib.MA_Type.SMA
    )
    talib.ATR(h, lo, cl, timeperiod=c.atr_period)
    talib.EMA(cl, timeperiod=c.keltner_period)
    talib.OBV(cl, v)
    talib.MAX(cl, timeperiod=c.drawdown_window)


def kernel_breakdown(bars: pd.DataFrame, config: FeatureConfig, repeats: int) -> dict[str, float]:
    """Median seconds of each statistical numba kernel alone, writing into pre-touched rows (and
    of the SMA/EMA/MACD/RSI/ATR/ADX recurrences beside the TA-Lib calls they replaced)."""
    c = config
    h = bars["high"].to_numpy(np.float64)
    lo = bars["low"].to_numpy(np.float64)
    cl = bars["close"].to_numpy(np.float64)
    v = bars["volume"].to_numpy(np.float64)
    lp = np.log(cl)
    n = len(cl)
    pad = features._return_pad(c)
    rp = _kernels.padded_returns(lp, pad)
    rows = np.zeros((c.autocorr_lags, n))
    one, two, three, four = (np.zeros(n) for _ in range(4))
    flags = np.zeros(n, dtype=np.bool_)
    lags = np.asarray(sorted(set(c.hurst_lags)), dtype=np.int64)
    log_range = np.log(h / lo)
    calls: dict[str, Callable[[], object]] = {
        "return_moments": lambda: _kernels.return_moments(
            rp, pad, c.stat_window, one, two, three, four, flags
        ),
        "acf_features": lambda: _kernels.acf_features(
            rp, pad, c.autocorr_window, c.autocorr_lags, rows, flags
        ),
        "hurst_feature": lambda: _kernels.hurst_feature(lp, c.hurst_window, lags, one, flags),
        "volatility_features": lambda: _kernels.volatility_features(
            rp, pad, log_range, c.vol_window, c.sharpe_window, one, two, three, flags
        ),
        "liquidity_features": lambda: _kernels.liquidity_features(
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
            one,
            two,
            three,
            four,
            flags,
        ),
        "shifted_zscore_x2": lambda: (
            _kernels.shifted_zscore(cl, c.zscore_window, one, flags),
            _kernels.shifted_zscore(v, c.volume_z_window, two, flags),
        ),
        # the recurrences ml.features and ml.online share, against the TA-Lib calls they replace
        "sma_ema_macd_rsi_atr_adx": lambda: (
            [_kernels.sma(cl, p) for p in (*c.sma_periods, c.bb_period)],
            [_kernels.ema(cl, p) for p in (*c.ema_periods, c.keltner_period)],
            _kernels.macd(cl, c.macd_fast, c.macd_slow, c.macd_signal),
            _kernels.rsi(cl, c.rsi_period),
            _kernels.atr(h, lo, cl, c.atr_period),
            _kernels.adx(h, lo, cl, c.adx_period),
        ),
        "sma_ema_macd_rsi_atr_adx_talib": lambda: (
            [talib.SMA(cl, timeperiod=p) for p in (*c.sma_periods, c.bb_period)],
            [talib.EMA(cl, timeperiod=p) for p in (*c.ema_periods, c.keltner_period)],
            talib.MACD(cl, c.macd_fast, c.macd_slow, c.macd_signal),
            talib.RSI(cl, timeperiod=c.rsi_period),
            talib.ATR(h, lo, cl, timeperiod=c.atr_period),
            talib.ADX(h, lo, cl, timeperiod=c.adx_period),
        ),
    }
    return {name: round(statistics.median(_time(fn, repeats)), 4) for name, fn in calls.items()}


def group_breakdown(bars: pd.DataFrame, config: FeatureConfig, repeats: int) -> dict[str, float]:
    """Median seconds of each feature group of compute_features, run alone on one thread.

    Each run writes into a fresh output matrix, as compute_features does, so first-touch page
    faults are counted where they happen. The groups are the units compute_features splits
    between its two threads on a large frame.
    """
    c = config
    cols = feature_columns(c)
    pos = {name: i for i, name in enumerate(cols)}
    timings: dict[str, list[float]] = {}
    for _ in range(repeats):
        start = time.perf_counter()
        _, arrays = validated_bar_arrays(bars)
        timings.setdefault("validate", []).append(time.perf_counter() - start)
        n = len(arrays["close"])
        out = np.empty((len(cols), n))
        flags = np.zeros(n, dtype=np.bool_)
        rows = {name: out[pos[name]] for name in cols}
        acf_rows = out[pos["ret_acf_1"] : pos["ret_acf_1"] + c.autocorr_lags]
        start = time.perf_counter()
        lp = np.log(arrays["close"])
        rp = _kernels.padded_returns(lp, features._return_pad(c))
        timings.setdefault("log_returns", []).append(time.perf_counter() - start)
        groups: dict[str, Callable[[], object]] = {
            "close_indicators": partial(
                features._close_indicators, c, arrays, rows.__getitem__, flags
            ),
            "range_indicators": partial(
                features._range_indicators, c, arrays, rows.__getitem__, flags
            ),
            "return_features": partial(features._return_features, c, arrays, lp, rp, rows, flags),
            "liquidity_features": partial(features._liquidity_features, c, arrays, rp, rows, flags),
            "dependence_features (acf, hurst)": partial(
                features._dependence_features, c, lp, rp, rows, acf_rows, flags
            ),
        }
        for name, fn in groups.items():
            timings.setdefault(name, []).extend(_time(fn, 1))
        del out
    return {name: round(statistics.median(ts), 4) for name, ts in timings.items()}


def live_buffer_latency(config: FeatureConfig, rows: int = 600, calls: int = 200) -> float:
    """Median seconds of compute_features on a live-plane-sized buffer (one call per bar)."""
    buffer = synthetic_bars(rows, seed=11)
    compute_features(buffer, config)
    return statistics.median(_time(lambda: compute_features(buffer, config), calls))


def _time(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    home = Path(os.environ.get("CANDLEFLOW_HOME", "var"))
    parser.add_argument("--out", type=Path, default=home / "bench" / "features.json")
    args = parser.parse_args(argv)

    config = FeatureConfig()
    bars = synthetic_bars(args.rows)
    compute_features(bars.iloc[:1000], config)  # compile / load the numba kernels
    talib_times = _time(lambda: bare_talib(bars, config), args.repeats)
    feature_times = _time(lambda: compute_features(bars, config), args.repeats)
    kernels = kernel_breakdown(bars, config, args.repeats)
    groups = group_breakdown(bars, config, args.repeats)
    live_s = live_buffer_latency(config)
    # Floor: allocating and writing once a fresh (features, rows) float64 matrix, which any
    # implementation returning these columns pays (page faults dominate on small VMs).
    n_cols = len(feature_columns(config)) + 1
    floor_s = statistics.median(_time(lambda: np.ones((n_cols, args.rows)), args.repeats))
    talib_s = statistics.median(talib_times)
    features_s = statistics.median(feature_times)
    ratio = features_s / talib_s
    result = {
        "rows": args.rows,
        "repeats": args.repeats,
        "feature_columns": len(feature_columns(config)),
        "talib_median_s": round(talib_s, 4),
        "features_median_s": round(features_s, 4),
        "talib_times_s": [round(t, 4) for t in talib_times],
        "features_times_s": [round(t, 4) for t in feature_times],
        "ratio": round(ratio, 3),
        "kernel_median_s": kernels,
        "group_median_s": groups,
        "live_buffer_rows": 600,
        "live_buffer_median_ms": round(live_s * 1e3, 4),
        "output_alloc_floor_s": round(floor_s, 4),
        "goal_ratio": GOAL_RATIO,
        "goal_met": ratio <= GOAL_RATIO,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "measured_at": datetime.now(UTC).isoformat(),
    }
    print(f"allocating + writing the output matrix once: {floor_s:.3f}s")
    print("numba kernels alone (median s): " + ", ".join(f"{k}={t}" for k, t in kernels.items()))
    print("feature groups alone (median s): " + ", ".join(f"{k}={t}" for k, t in groups.items()))
    print(f"live buffer (600 bars): median {live_s * 1e3:.3f} ms per call")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"rows={args.rows} talib={talib_s:.3f}s features={features_s:.3f}s "
        f"ratio={ratio:.2f} (goal <= {GOAL_RATIO}) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
