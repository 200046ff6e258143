"""Benchmark: run_backtest vs vectorbt Portfolio.from_signals on the same SMA-crossover signals.

    python -m bench.backtest [--rows N] [--repeat K] [--portfolio-rows M] [--out PATH]
                             [--skip-reference]

One synthetic symbol, fixed-fractional sizing with ATR stops, costs on. Both paths of run_backtest
are timed: the compiled fast path (path="fast", what "auto" picks) and the reference Python loop
(path="reference"), each cold (first call in the process; for the fast path that is numba
compiling, or loading its on-disk cache) and warm. Warm fast-path and vectorbt calls are
interleaved (fast, vectorbt, fast, vectorbt, ...) `--repeat` times after vectorbt's first call
(which compiles its numba kernels), so that a busy machine's load hits both alike, and the medians
count; each timed call starts after a gc.collect(), so that neither pays for the other's
garbage. vectorbt runs the same strategy with ATR stops too: a stop atr_mult ATRs (its ATR
indicator, known at the decision bar's close) below the entry, checked against each bar's open,
high and low. The ratio fast warm / vectorbt from_signals warm is measured in this run (goal
<= 1.0, issue 8); vectorbt's ATR is timed apart and left out of that ratio (the fast path
computes its ATR inside), and the ratio against ATR + from_signals is reported beside it, as is
the ratio against vectorbt's from_signals on the same entries and exits without any stops (less
work than the fast path does: the stricter baseline). The work is alike, not identical: the
fast path's risk halts are off here (vectorbt has none), its ATR is Wilder's (vectorbt's an
EMA), it sizes by risk per trade and re-enters after a stop while the signal holds (about 13k
entries on 1M bars against vectorbt's ~6.9k), so it does at least as much as vectorbt.

Then a portfolio: 5 symbols of `--portfolio-rows` bars each on one time axis, the same strategy,
through the fast path and the reference loop (median of `--repeat` interleaved pairs, after one
warm-up call each): the fast-vs-reference ratio. Both paths' results are checked to be identical
(single symbol and portfolio). Writes everything to $CANDLEFLOW_HOME/bench/backtest.json
(default ./var).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
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
    RiskLimits,
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


def run_vectorbt(
    bars: pd.DataFrame, up: np.ndarray, config: StrategyConfig, stops: bool = True
) -> tuple[float, float]:
    """Seconds of (vectorbt's ATR, from_signals + value) for the same strategy with ATR stops
    (`stops=False`: the same entries and exits without stops and without its ATR, the stricter
    baseline that vectorbt's fastest from_signals call gives).

    Like the fast path: a stop `atr_mult` ATRs below the entry (the ATR known at the decision
    bar's close), checked against each bar's open, high and low; half the cash per entry (the
    fast path's fixed-fractional size is capped at max_position_frac = 0.5 of equity here).
    """
    import vectorbt as vbt

    target = np.r_[False, up[:-1]]  # decided at t's close, traded at t + 1's open
    prev = np.r_[False, target[:-1]]
    o, h, lo, c = (bars[k].to_numpy() for k in ("open", "high", "low", "close"))
    gc.collect()
    if not stops:
        start = time.perf_counter()
        vbt.Portfolio.from_signals(
            close=c, entries=target & ~prev, exits=~target & prev, price=o,
            fees=config.costs.commission_bps * 1e-4,
            slippage=(0.5 * config.costs.spread_bps + config.costs.slippage_bps) * 1e-4,
            init_cash=config.initial_cash, size=config.risk.max_position_frac,
            size_type="percent", direction="longonly",
        ).value()  # fmt: skip
        return 0.0, time.perf_counter() - start
    start = time.perf_counter()
    atr = vbt.ATR.run(h, lo, c, window=config.stops.atr_period, ewm=True).atr.to_numpy()
    atr_s = time.perf_counter() - start
    sl_stop = np.r_[np.nan, config.stops.atr_mult * atr[:-1] / c[:-1]]
    start = time.perf_counter()
    pf = vbt.Portfolio.from_signals(
        close=c,
        entries=target & ~prev,
        exits=~target & prev,
        open=o,
        high=h,
        low=lo,
        price=o,
        fees=config.costs.commission_bps * 1e-4,
        slippage=(0.5 * config.costs.spread_bps + config.costs.slippage_bps) * 1e-4,
        sl_stop=sl_stop,
        init_cash=config.initial_cash,
        size=config.risk.max_position_frac,
        size_type="percent",
        direction="longonly",
    )
    pf.value()
    return atr_s, time.perf_counter() - start


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    # The other library's garbage is collected first: vectorbt leaves ~0.2 s of cyclic garbage
    # that would otherwise be collected inside whichever call comes next.
    gc.collect()
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _identical(a: BacktestResult, b: BacktestResult) -> bool:
    return bool(
        a.equity.equals(b.equity)
        and a.exposure.equals(b.exposure)
        and a.fills.equals(b.fills)
        and a.orders.equals(b.orders)
        and a.trades.equals(b.trades)
    )


def portfolio_inputs(rows: int, n_symbols: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """n_symbols synthetic walks of `rows` one-minute bars each, on one time axis."""
    frames, preds = [], []
    for k in range(n_symbols):
        bars = synthetic_bars(rows, seed=11 + k)
        bars.insert(0, "symbol", f"SYM{k}")
        bars.insert(1, "timeframe", "1m")
        frames.append(bars)
        preds.append(predictions_for(bars, sma_signal(bars["close"].to_numpy())))
    return pd.concat(frames, ignore_index=True), pd.concat(preds, ignore_index=True)


def bench_config() -> StrategyConfig:
    return StrategyConfig(
        strategy="bench",
        costs=CostModel(max_volume_share=None),
        sizing=SizingConfig(method="fixed_fractional", risk_per_trade=0.01),
        stops=StopConfig(kind="atr", atr_mult=2.0),
        decision=DecisionConfig(allow_short=False),
        # vectorbt has no drawdown or daily-loss halt, no de-risking and no trade cap: with the
        # defaults the fast path stopped trading at a 25% drawdown ~600k bars in, less work.
        risk=RiskLimits(daily_loss_halt=1.0, max_drawdown_halt=1.0, drawdown_derisk_start=1.0,
                        max_trades_per_day=1_000_000),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    home = Path(os.environ.get("CANDLEFLOW_HOME", "var"))
    parser.add_argument("--out", type=Path, default=home / "bench" / "backtest.json")
    parser.add_argument(
        "--skip-reference",
        action="store_true",
        help="time only the fast path and vectorbt on one symbol (the portfolio still runs)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="interleaved warm calls (median)")
    parser.add_argument(
        "--portfolio-rows", type=int, default=20_000, help="bars per symbol of the 5-symbol run"
    )
    args = parser.parse_args(argv)
    repeat = max(args.repeat, 1)

    print(f"building {args.rows} synthetic bars and SMA-crossover predictions ...", flush=True)
    bars = synthetic_bars(args.rows)
    bars.insert(0, "symbol", "SYN")
    bars.insert(1, "timeframe", "1m")
    up = sma_signal(bars["close"].to_numpy())
    preds = predictions_for(bars, up)
    config = bench_config()

    def fast() -> BacktestResult:
        return run_backtest(bars, preds, config, path="fast")

    times: dict[str, float] = {}
    results: dict[str, BacktestResult] = {}
    print("run_backtest path=fast (cold) ...", flush=True)
    times["fast_cold_s"], results["fast"] = _timed(fast)  # type: ignore[assignment]
    cache_hits = sum(_fast._kernel.stats.cache_hits.values())
    print("vectorbt from_signals (cold) ...", flush=True)
    times["vectorbt_cold_s"] = sum(run_vectorbt(bars, up, config))
    run_vectorbt(bars, up, config, stops=False)
    fast_warm, vbt_warm, atr_warm, plain_warm = [], [], [], []
    for k in range(repeat):
        fast_warm.append(_timed(fast)[0])
        atr_s, vbt_s = run_vectorbt(bars, up, config)
        vbt_warm.append(vbt_s)
        atr_warm.append(atr_s)
        plain_warm.append(run_vectorbt(bars, up, config, stops=False)[1])
        print(
            f"  warm pair {k + 1}: fast {fast_warm[-1]:.3f}s vectorbt from_signals "
            f"{vbt_warm[-1]:.3f}s (+ its ATR {atr_s:.3f}s; without stops {plain_warm[-1]:.3f}s)"
        )
    times["fast_warm_s"] = statistics.median(fast_warm)
    times["vectorbt_warm_s"] = statistics.median(vbt_warm)
    times["vectorbt_atr_warm_s"] = statistics.median(atr_warm)
    times["vectorbt_no_stops_warm_s"] = statistics.median(plain_warm)
    pair_ratios = [f / v for f, v in zip(fast_warm, vbt_warm, strict=True)]
    identical = None
    if not args.skip_reference:
        # The reference loop takes minutes at 1M bars: one call (its warm-up is the import).
        print("run_backtest path=reference ...", flush=True)
        times["reference_s"], results["reference"] = _timed(  # type: ignore[assignment]
            lambda: run_backtest(bars, preds, config, path="reference")
        )
        identical = _identical(results["reference"], results["fast"])
        print(f"fast path identical to reference: {identical}", flush=True)

    print(f"portfolio: 5 symbols x {args.portfolio_rows} bars ...", flush=True)
    p_bars, p_preds = portfolio_inputs(args.portfolio_rows)
    p_fast = run_backtest(p_bars, p_preds, config, path="fast")
    p_ref = run_backtest(p_bars, p_preds, config, path="reference")
    p_identical = _identical(p_ref, p_fast)
    p_fast_s, p_ref_s = [], []
    for k in range(repeat):
        p_fast_s.append(_timed(lambda: run_backtest(p_bars, p_preds, config, path="fast"))[0])
        p_ref_s.append(_timed(lambda: run_backtest(p_bars, p_preds, config, path="reference"))[0])
        print(f"  pair {k + 1}: fast {p_fast_s[-1]:.3f}s reference {p_ref_s[-1]:.3f}s")
    print(f"portfolio fast path identical to reference: {p_identical}", flush=True)

    warm_ratio = times["fast_warm_s"] / times["vectorbt_warm_s"]
    p_ratio = statistics.median(p_fast_s) / statistics.median(p_ref_s)
    out = {
        "rows": args.rows,
        **{k: round(v, 4) for k, v in times.items()},
        "fast_warm_ratio": round(warm_ratio, 3),
        "fast_warm_ratio_pairs_median": round(statistics.median(pair_ratios), 3),
        "fast_warm_ratio_best": round(min(fast_warm) / min(vbt_warm), 3),
        "fast_warm_ratio_vs_atr_and_from_signals": round(
            times["fast_warm_s"]
            / statistics.median(a + v for a, v in zip(atr_warm, vbt_warm, strict=True)),
            3,
        ),
        "fast_warm_ratio_vs_from_signals_without_stops": round(
            times["fast_warm_s"] / times["vectorbt_no_stops_warm_s"], 3
        ),
        "fast_cold_ratio": round(times["fast_cold_s"] / times["vectorbt_cold_s"], 3),
        "warm_repeats": repeat,
        "fast_cold_loaded_from_cache": cache_hits > 0,
        "fast_identical_to_reference": identical,
        "per_bar_us_fast_warm": round(times["fast_warm_s"] / args.rows * 1e6, 3),
        "trades": len(results["fast"].trades),
        "portfolio_symbols": 5,
        "portfolio_bars": len(p_bars),
        "portfolio_fast_s": round(statistics.median(p_fast_s), 4),
        "portfolio_reference_s": round(statistics.median(p_ref_s), 4),
        "portfolio_fast_vs_reference_ratio": round(p_ratio, 4),
        "portfolio_identical": p_identical,
        "portfolio_trades": len(p_fast.trades),
        "goal_ratio": GOAL_RATIO,
        "goal_met": warm_ratio <= GOAL_RATIO,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "measured_at": datetime.now(UTC).isoformat(),
    }
    if "reference_s" in times:
        out["reference_ratio_vs_vectorbt_warm"] = round(
            times["reference_s"] / times["vectorbt_warm_s"], 2
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"rows={args.rows} fast warm={times['fast_warm_s']:.3f}s "
        f"vectorbt warm={times['vectorbt_warm_s']:.3f}s (medians of {repeat} interleaved) "
        f"fast_warm_ratio={warm_ratio:.2f} (goal <= {GOAL_RATIO}; against from_signals without "
        f"stops {out['fast_warm_ratio_vs_from_signals_without_stops']:.2f}); portfolio 5x"
        f"{args.portfolio_rows}: fast {out['portfolio_fast_s']}s reference "
        f"{out['portfolio_reference_s']}s ratio={p_ratio:.4f} identical={p_identical} -> {args.out}"
    )
    return 0 if (identical is not False and p_identical) else 1


if __name__ == "__main__":
    raise SystemExit(main())
