"""Benchmark: run_backtest vs vectorbt Portfolio.from_signals on the same SMA-crossover signals.

    python -m bench.backtest [--rows N] [--out PATH]

One synthetic symbol, fixed-fractional sizing with ATR stops, costs on. run_backtest is timed
cold (first call in the process) and warm (second call); vectorbt warm is its second call (the
first compiles its numba kernels). Prints the ratios (goal: warm <= 1.5x vectorbt) and writes
them to $CANDLEFLOW_HOME/bench/backtest.json (default ./var).
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
from execution.backtest import run_backtest
from execution.config import (
    CostModel,
    DecisionConfig,
    SizingConfig,
    StopConfig,
    StrategyConfig,
)

GOAL_RATIO = 1.5


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
    for label in ("cold", "warm"):
        print(f"run_backtest ({label}) ...", flush=True)
        start = time.perf_counter()
        result = run_backtest(bars, preds, config)
        times[f"run_backtest_{label}_s"] = time.perf_counter() - start
        print(f"  {times[f'run_backtest_{label}_s']:.2f}s, {len(result.trades)} trades", flush=True)
    for label in ("cold", "warm"):
        print(f"vectorbt from_signals ({label}) ...", flush=True)
        times[f"vectorbt_{label}_s"] = run_vectorbt(bars, up, config)
        print(f"  {times[f'vectorbt_{label}_s']:.3f}s", flush=True)

    warm_ratio = times["run_backtest_warm_s"] / times["vectorbt_warm_s"]
    cold_ratio = times["run_backtest_cold_s"] / times["vectorbt_cold_s"]
    out = {
        "rows": args.rows,
        **{k: round(v, 4) for k, v in times.items()},
        "warm_ratio": round(warm_ratio, 2),
        "cold_ratio": round(cold_ratio, 2),
        "per_bar_us_warm": round(times["run_backtest_warm_s"] / args.rows * 1e6, 3),
        "trades": len(result.trades),
        "goal_ratio": GOAL_RATIO,
        "goal_met": warm_ratio <= GOAL_RATIO,
        "path": "reference python loop",
        "machine": platform.platform(),
        "python": platform.python_version(),
        "measured_at": datetime.now(UTC).isoformat(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"rows={args.rows} run_backtest warm={times['run_backtest_warm_s']:.2f}s "
        f"vectorbt warm={times['vectorbt_warm_s']:.3f}s ratio={warm_ratio:.1f} "
        f"(goal <= {GOAL_RATIO}); cold ratio={cold_ratio:.1f} -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
