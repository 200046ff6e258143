"""Benchmark: run_backtest vs vectorbt Portfolio.from_signals on the same SMA-crossover signals.

    python -m bench.backtest [--rows N] [--out PATH] [--skip-reference]

One synthetic symbol, fixed-fractional sizing with ATR stops, costs on. Both paths of run_backtest
are timed: the compiled fast path (path="fast", what "auto" picks for one symbol) and the reference
Python loop (path="reference"), each cold (first call in the process; for the fast path that is
numba compiling, or loading its on-disk cache) and warm (the best of `--repeat` further calls, so
that a busy machine's noise does not decide the ratio). vectorbt warm is the best of as many
calls after its first (which compiles its numba kernels). The two paths' results are checked to
be identical. Prints the ratios (goal: fast path warm <= 1.0x vectorbt, issue 8) and writes them
to $CANDLEFLOW_HOME/bench/backtest.json (default ./var).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from bench.features import synthetic_bars
from execution import _fast
from execution.backtest import BacktestResult, run_backtest
from execution.config import (
    CostModel,
    DecisionConfig,
    SizingConfig,
    StopConfig,
    StrategyConfig,
)

GOAL_RATIO = 1.0


def sma_signal(close: np.ndarray, fast: int = 20, slow: int = 100) -> np.ndarray:
    """True where the fast SMA of closes is above the slow one (known at each bar's close)."""
    s = pd.Series(close)
    return (s.rolling(fast).mean() > s.rolling(slow).mean()).to_numpy()


def predictions_for(bars: pd.DataFrame, up: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": bars["symbol"],
            "ts": bars["ts"],
            "p_down": 0.1,
            "p_flat": np.where(up, 0.1, 0.8),
            "p_up": np.where(up, 0.8, 0.1),
        }
    )


def run_vectorbt(bars: pd.DataFrame, up: np.ndarray, config: StrategyConfig) -> float:
    import vectorbt as vbt

    target = np.r_[False, up[:-1]]  # decided at t's close, traded at t + 1's open
    prev = np.r_[False, target[:-1]]
    start = time.perf_counter()
    pf = vbt.Portfolio.from_signals(
        close=bars["close"].to_numpy(),
        entries=target & ~prev,
        exits=~target & prev,
        price=bars["open"].to_numpy(),
        fees=config.costs.commission_bps * 1e-4,
        slippage=(0.5 * config.costs.spread_bps + config.costs.slippage_bps) * 1e-4,
        sl_stop=0.02,
        init_cash=config.initial_cash,
        size=0.5,
        size_type="percent",
        direction="longonly",
    )
    pf.value()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    home = Path(os.environ.get("CANDLEFLOW_HOME", "var"))
    parser.add_argument("--out", type=Path, default=home / "bench" / "backtest.json")
    parser.add_argument(
        "--skip-reference", action="store_true", help="time only the fast path and vectorbt"
    )
    parser.add_argument("--repeat", type=int, default=3, help="warm calls; the best one counts")
    args = parser.parse_args(argv)

    print(f"building {args.rows} synthetic bars and SMA-crossover predictions ...", flush=True)
    bars = synthetic_bars(args.rows)
    bars.insert(0, "symbol", "SYN")
    bars.insert(1, "timeframe", "1m")
    up = sma_signal(bars["close"].to_numpy())
    preds = predictions_for(bars, up)
    config = StrategyConfig(
        strategy="bench",
        costs=CostModel(max_volume_share=None),
        sizing=SizingConfig(method="fixed_fractional", risk_per_trade=0.01),
        stops=StopConfig(kind="atr", atr_mult=2.0),
        decision=DecisionConfig(allow_short=False),
    )

    times: dict[str, float] = {}
    results: dict[str, BacktestResult] = {}
    paths = ("fast",) if args.skip_reference else ("fast", "reference")
    cache_hits = 0
    for path in paths:
        for label in ("cold", "warm"):
            # The reference loop takes minutes at 1M bars: one warm call is enough there.
            calls = 1 if label == "cold" or path == "reference" else max(args.repeat, 1)
            best = float("inf")
            for _ in range(calls):
                print(f"run_backtest path={path} ({label}) ...", flush=True)
                start = time.perf_counter()
                results[path] = run_backtest(bars, preds, config, path=path)
                elapsed = time.perf_counter() - start
                best = min(best, elapsed)
                print(f"  {elapsed:.3f}s, {len(results[path].trades)} trades", flush=True)
            times[f"{path}_{label}_s"] = best
            if path == "fast" and label == "cold":
                cache_hits = sum(_fast._kernel.stats.cache_hits.values())
    identical = None
    if "reference" in results:
        a, b = results["reference"], results["fast"]
        identical = (
            a.equity.equals(b.equity)
            and a.fills.equals(b.fills)
            and a.orders.equals(b.orders)
            and a.trades.equals(b.trades)
        )
        print(f"fast path identical to reference: {identical}", flush=True)
    for label in ("cold", "warm"):
        calls = 1 if label == "cold" else max(args.repeat, 1)
        best = float("inf")
        for _ in range(calls):
            print(f"vectorbt from_signals ({label}) ...", flush=True)
            elapsed = run_vectorbt(bars, up, config)
            best = min(best, elapsed)
            print(f"  {elapsed:.3f}s", flush=True)
        times[f"vectorbt_{label}_s"] = best

    vbt_warm, vbt_cold = times["vectorbt_warm_s"], times["vectorbt_cold_s"]
    ratios = {f"{p}_warm_ratio": round(times[f"{p}_warm_s"] / vbt_warm, 2) for p in paths}
    ratios |= {f"{p}_cold_ratio": round(times[f"{p}_cold_s"] / vbt_cold, 2) for p in paths}
    warm_ratio = times["fast_warm_s"] / vbt_warm
    out = {
        "rows": args.rows,
        **{k: round(v, 4) for k, v in times.items()},
        **ratios,
        "fast_cold_loaded_from_cache": cache_hits > 0,
        "fast_identical_to_reference": identical,
        "per_bar_us_fast_warm": round(times["fast_warm_s"] / args.rows * 1e6, 3),
        "trades": len(results["fast"].trades),
        "goal_ratio": GOAL_RATIO,
        "goal_met": warm_ratio <= GOAL_RATIO,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "measured_at": datetime.now(UTC).isoformat(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    summary = " ".join(f"{k}={v}" for k, v in ratios.items())
    print(
        f"rows={args.rows} fast warm={times['fast_warm_s']:.3f}s "
        f"vectorbt warm={vbt_warm:.3f}s {summary} (goal fast warm <= {GOAL_RATIO}) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
