"""Benchmark: per-bar latency of the live dataflow, from bar arrival to order handed to the broker.

    python -m bench.latency [--bars N] [--train N] [--trees N] [--out PATH]

Replays real S&P 500 daily bars through the dataflow (one worker, paper broker, no store) with
an XGBoost bundle over the full feature set. Measured with time.perf_counter_ns inside the
dataflow: `bar`: arrival at the first step -> portfolio step done (every bar); `order`: arrival
-> order handed to the broker (bars that trade). The baseline is the bare
`bundle.predict_frame(buffer)` call on the same buffers, timed in the same run; the ratios say
how much the dataflow adds. Goals: p99 <= 5 ms and >= 1000 bars/s per worker. Writes
var/bench/latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

GOAL_P99_MS = 5.0
GOAL_BARS_PER_S = 1000.0


def _pct(values_ns: list[int], q: float) -> float:
    return (
        float(np.percentile(np.asarray(values_ns, dtype=np.float64), q) / 1e6)
        if values_ns
        else float("nan")
    )


def _summary(values_ns: list[int]) -> dict[str, float]:
    return {
        "n": len(values_ns),
        "p50_ms": _pct(values_ns, 50),
        "p99_ms": _pct(values_ns, 99),
        "max_ms": float(max(values_ns) / 1e6) if values_ns else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    parser.add_argument("--bars", type=int, default=4000, help="bars to replay")
    parser.add_argument("--train", type=int, default=1000, help="bars to train the model on")
    parser.add_argument("--trees", type=int, default=150, help="xgboost n_estimators")
    parser.add_argument("--out", type=Path, default=Path("var/bench/latency.json"))
    args = parser.parse_args(argv)
    # One bar at a time gains nothing from OpenMP threads; see streaming.worker.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from bytewax.testing import TestingSink, run_main

    from execution.config import StrategyConfig
    from infra.sources import load_bundled
    from ml.bundle import ModelBundle
    from ml.features import FeatureConfig, compute_features, feature_columns
    from ml.labels import direction_labels
    from ml.models import XGBoostModel
    from streaming.dataflow import StreamConfig, build_flow
    from streaming.models import LocalBundleProvider
    from streaming.router import OrderRouter
    from streaming.sources import ReplaySource

    raw = load_bundled("sp500").frame.iloc[: args.bars]
    bars = raw.assign(symbol="SPX", timeframe="1d", volume=raw["volume"].astype("float64"))
    cfg = FeatureConfig()
    cols = tuple(feature_columns(cfg))
    train = bars.iloc[: args.train]
    feats = compute_features(train, cfg)
    labels = direction_labels(train).values
    ok = (~feats["warmup"]) & labels.notna()
    model = XGBoostModel(n_estimators=args.trees, n_jobs=1, seed=0)
    model.fit(feats.loc[ok, list(cols)], labels[ok])
    bundle = ModelBundle(model=model, feature_config=cfg, columns=cols, name="xgboost")

    bar_ns: list[int] = []
    order_ns: list[int] = []
    router = OrderRouter(on_submit=lambda _order, ns: order_ns.append(ns))

    def done(item: Any, end_ns: int) -> None:
        bar_ns.append(end_ns - item.received_ns)

    out: list = []
    flow = build_flow(
        StreamConfig(strategy=StrategyConfig(), symbols=("SPX",), progress_every=0),
        ReplaySource(bars),
        TestingSink(out),
        {"SPX": LocalBundleProvider(bundle)},
        router=router,
        on_bar_done=done,
    )
    start = time.perf_counter()
    run_main(flow)
    wall = time.perf_counter() - start

    # Baseline: the bare model call on the same rolling buffers, in the same process.
    hist = bundle.history
    ohlcv = bars.set_index("ts")[["open", "high", "low", "close", "volume"]]
    base_ns: list[int] = []
    feat_ns: list[int] = []
    for end in range(hist, len(ohlcv), max(1, (len(ohlcv) - hist) // 1000)):
        buf = ohlcv.iloc[end - hist : end]
        t0 = time.perf_counter_ns()
        bundle.predict_frame(buf)
        t1 = time.perf_counter_ns()
        compute_features(buf, cfg)
        t2 = time.perf_counter_ns()
        base_ns.append(t1 - t0)
        feat_ns.append(t2 - t1)

    steady = bar_ns[hist:]  # past the warm-up, every bar carries a full buffer
    result = {
        "when": datetime.now(UTC).isoformat(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "bars": len(bars),
        "buffer_bars": hist,
        "trees": args.trees,
        "orders": len(order_ns),
        "wall_s": wall,
        "bars_per_s": len(bars) / wall,
        "bar_latency": _summary(steady),
        "order_latency": _summary(order_ns),
        "baseline_predict_frame": _summary(base_ns),
        "compute_features_only": _summary(feat_ns),
        "goal": {"p99_ms": GOAL_P99_MS, "bars_per_s": GOAL_BARS_PER_S},
    }
    base = result["baseline_predict_frame"]
    result["ratio_p50_bar_vs_baseline"] = result["bar_latency"]["p50_ms"] / base["p50_ms"]
    result["ratio_p99_bar_vs_baseline"] = result["bar_latency"]["p99_ms"] / base["p99_ms"]
    result["meets_goal"] = bool(
        result["bar_latency"]["p99_ms"] <= GOAL_P99_MS and result["bars_per_s"] >= GOAL_BARS_PER_S
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))

    bl, ol = result["bar_latency"], result["order_latency"]
    print(
        f"bars {len(bars)} (buffer {hist}), {len(order_ns)} orders, "
        f"{result['bars_per_s']:.0f} bars/s per worker"
    )
    print(f"bar   -> done : p50 {bl['p50_ms']:.3f} ms  p99 {bl['p99_ms']:.3f} ms")
    print(f"bar   -> order: p50 {ol['p50_ms']:.3f} ms  p99 {ol['p99_ms']:.3f} ms")
    print(
        f"baseline predict_frame: p50 {base['p50_ms']:.3f} ms  p99 {base['p99_ms']:.3f} ms"
        f"  (compute_features alone p50 {result['compute_features_only']['p50_ms']:.3f} ms)"
    )
    print(
        f"ratio bar/baseline: p50 {result['ratio_p50_bar_vs_baseline']:.2f}  "
        f"p99 {result['ratio_p99_bar_vs_baseline']:.2f}"
    )
    print(
        f"goal p99 <= {GOAL_P99_MS} ms and >= {GOAL_BARS_PER_S:.0f} bars/s: "
        f"{'met' if result['meets_goal'] else 'NOT met'}; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
