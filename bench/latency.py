"""Benchmark: throughput and per-bar latency of the live dataflow, bar arrival to broker order.

    python -m bench.latency [--bars N] [--train N] [--trees N] [--runs 1x1,10x1,10x2,10x2p]
                            [--out PATH]

Replays real S&P 500 daily bars through the dataflow (paper broker, no store) with an XGBoost
bundle over the full feature set, once per run `SYMBOLSxWORKERS` (10 symbols: the S&P bars under
ten names at ten price scales; two workers: Bytewax's -w 2, the replay split by symbol, with
the reorder barrier; `10x2p`: a Bytewax cluster of two processes of one worker each, as -p 2
runs it, forked from the bench and joined on 127.0.0.1). Measured with time.perf_counter_ns
inside the dataflow: `bar`: arrival at the first step -> portfolio step done (every bar);
`order`: arrival -> order handed to the broker (bars that trade);
`bars_per_s`: bars / (last bar done - first bar arrived), the JIT caches loaded beforehand;
`bars_per_cpu_s`: bars / the process's CPU seconds over the run (start included), the cost of
the work whatever share of a core a loaded host leaves it; `wall_s` includes the dataflow's
start; each run records the 1-minute load average before and after it. The baseline is the
batch path the live step replaces, `bundle.predict_frame(buffer)` on rolling buffers, timed in
the same run. Goals: p99 <= 1 ms and >= 5,000 bars/s per worker (1 symbol, 1 worker). Writes
$CANDLEFLOW_HOME/bench/latency.json (default ./var).
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

GOAL_P99_MS = 1.0
GOAL_BARS_PER_S = 5000.0


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


def _replicated(bars: Any, n_symbols: int) -> Any:
    """The S&P bars under `n_symbols` names at different price scales, in (ts, symbol) order."""
    import pandas as pd

    if n_symbols == 1:
        return bars
    frames = []
    for k in range(n_symbols):
        f = bars.assign(symbol=f"S{k:02d}")
        for col in ("open", "high", "low", "close"):
            f[col] = f[col] * (1.0 + 0.05 * k)
        frames.append(f)
    return pd.concat(frames).sort_values(["ts", "symbol"]).reset_index(drop=True)


def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def _run(bundle: Any, bars: Any, workers: int, processes: int = 1) -> dict[str, Any]:
    """One replay through the dataflow; latencies and throughput. `processes` > 1: a Bytewax
    cluster of that many processes (forked from this one, `workers` each) on 127.0.0.1, each
    sending back what it measured (perf_counter_ns is CLOCK_MONOTONIC, one clock for all)."""
    import gc

    from bytewax.testing import TestingSink, cluster_main, run_main

    from execution.config import StrategyConfig
    from streaming.dataflow import StreamConfig, build_flow
    from streaming.models import LocalBundleProvider
    from streaming.router import OrderRouter
    from streaming.sources import ReplaySource

    symbols = tuple(sorted(bars["symbol"].unique()))
    split = workers * processes > 1
    bar_ns: list[int] = []
    order_ns: list[int] = []
    span = [None, 0]  # first arrival, last done (perf_counter_ns)
    router = OrderRouter(on_submit=lambda _order, ns: order_ns.append(ns))

    def done(item: Any, end_ns: int) -> None:
        bar_ns.append(end_ns - item.received_ns)
        if span[0] is None or item.received_ns < span[0]:
            span[0] = item.received_ns
        span[1] = max(span[1], end_ns)

    out: list = []
    provider = LocalBundleProvider(bundle)
    flow = build_flow(
        StreamConfig(strategy=StrategyConfig(), symbols=symbols, progress_every=0, reorder=split),
        ReplaySource(bars, by_symbol=split),
        TestingSink(out),
        {s: provider for s in symbols},
        router=router,
        on_bar_done=done,
    )
    gc.collect()
    gc.freeze()  # the setup's objects are never garbage: keep them out of every collection
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    cpu_start = time.process_time()
    if processes > 1:
        import multiprocessing

        addresses = [f"127.0.0.1:{port}" for port in _free_ports(processes)]

        def member(proc_id: int, conn: Any) -> None:
            cpu0 = time.process_time()
            cluster_main(flow, addresses, proc_id, worker_count_per_proc=workers)
            conn.send((bar_ns, order_ns, span, time.process_time() - cpu0))

        ctx = multiprocessing.get_context("fork")  # the flow holds closures: no pickling
        pipes = [ctx.Pipe(duplex=False) for _ in range(processes)]
        members = [ctx.Process(target=member, args=(k, w)) for k, (_r, w) in enumerate(pipes)]
        for proc in members:
            proc.start()
        parts = [r.recv() for r, _w in pipes]
        for proc in members:
            proc.join()
        cpu = sum(p[3] for p in parts)
        for part_bars, part_orders, part_span, _cpu in parts:
            bar_ns.extend(part_bars)  # the portfolio step (one key) ran in one of them
            order_ns.extend(part_orders)
            if part_span[0] is not None:
                span[0] = part_span[0] if span[0] is None else min(span[0], part_span[0])
                span[1] = max(span[1], part_span[1])
    elif workers == 1:
        run_main(flow)
        cpu = time.process_time() - cpu_start
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
        cpu = time.process_time() - cpu_start
    wall = time.perf_counter() - start
    gc.unfreeze()
    hist = bundle.history
    steady = bar_ns[hist * len(symbols) :]  # past the warm-up
    busy_s = (span[1] - span[0]) / 1e9 if span[0] is not None else float("nan")
    return {
        "symbols": len(symbols),
        "workers": workers,
        "processes": processes,
        "bars": len(bars),
        "orders": len(order_ns),
        "wall_s": wall,
        "bars_per_s": len(bar_ns) / busy_s,
        "bars_per_s_with_start": len(bars) / wall,
        # CPU seconds of this process (of the cluster's processes) over the run, dataflow start
        # included: what the work
        # costs whatever share of a core the host's load left it; bars_per_s is wall-clock.
        "cpu_s": cpu,
        "bars_per_cpu_s": len(bars) / cpu,
        "load_avg_1m": [load_before, os.getloadavg()[0]],  # before, after
        "bar_latency": _summary(steady),
        "order_latency": _summary(order_ns),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    parser.add_argument("--bars", type=int, default=4000, help="bars to replay per symbol")
    parser.add_argument("--train", type=int, default=1000, help="bars to train the model on")
    parser.add_argument("--trees", type=int, default=150, help="xgboost n_estimators")
    parser.add_argument(
        "--runs",
        default="1x1,10x1,10x2,10x2p",
        help="comma-separated SYMBOLSxWORKERS replays (SYMBOLSxNp: N processes of one worker)",
    )
    parser.add_argument("--baseline-samples", type=int, default=200)
    home = Path(os.environ.get("CANDLEFLOW_HOME", "var"))
    parser.add_argument("--out", type=Path, default=home / "bench" / "latency.json")
    args = parser.parse_args(argv)
    # One bar at a time gains nothing from OpenMP threads; see streaming.worker.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from infra.sources import load_bundled
    from ml.bundle import ModelBundle
    from ml.features import FeatureConfig, compute_features, feature_columns
    from ml.labels import direction_labels
    from ml.models import XGBoostModel
    from ml.online import OnlineFeatures

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
    # Load the JIT caches (features, trees) before timing, as a long-running worker has.
    warm = OnlineFeatures(cfg)
    for row in bars[["open", "high", "low", "close", "volume"]].to_numpy()[: bundle.history]:
        last = warm.update(*row)
    bundle.predict_row(last)

    runs = []
    for spec in args.runs.split(","):
        text = spec.strip().lower()
        processes = text.endswith("p")  # SYMBOLSxNp: N processes of one worker each
        n_symbols, count = (int(v) for v in text.rstrip("p").split("x"))
        runs.append(
            _run(bundle, _replicated(bars, n_symbols), 1 if processes else count,
                 count if processes else 1)
        )  # fmt: skip

    # Baseline: the batch path on the same rolling buffers, in the same process.
    hist = bundle.history
    ohlcv = bars.set_index("ts")[["open", "high", "low", "close", "volume"]]
    base_ns: list[int] = []
    feat_ns: list[int] = []
    step = max(1, (len(ohlcv) - hist) // max(args.baseline_samples, 1))
    for end in range(hist, len(ohlcv), step):
        buf = ohlcv.iloc[end - hist : end]
        t0 = time.perf_counter_ns()
        bundle.predict_frame(buf)
        t1 = time.perf_counter_ns()
        compute_features(buf, cfg)
        t2 = time.perf_counter_ns()
        base_ns.append(t1 - t0)
        feat_ns.append(t2 - t1)

    main_run = runs[0]
    result = {
        "when": datetime.now(UTC).isoformat(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "bars": main_run["bars"],
        "buffer_bars": hist,
        "trees": args.trees,
        "orders": main_run["orders"],
        "wall_s": main_run["wall_s"],
        "bars_per_s": main_run["bars_per_s"],
        "bars_per_cpu_s": main_run["bars_per_cpu_s"],
        "bar_latency": main_run["bar_latency"],
        "order_latency": main_run["order_latency"],
        "runs": runs,
        "baseline_predict_frame": _summary(base_ns),
        "compute_features_only": _summary(feat_ns),
        "goal": {"p99_ms": GOAL_P99_MS, "bars_per_s": GOAL_BARS_PER_S},
    }
    base = result["baseline_predict_frame"]
    result["ratio_p50_bar_vs_baseline"] = result["bar_latency"]["p50_ms"] / base["p50_ms"]
    result["ratio_p99_bar_vs_baseline"] = result["bar_latency"]["p99_ms"] / base["p99_ms"]
    result["meets_goal"] = bool(
        result["order_latency"]["p99_ms"] <= GOAL_P99_MS and result["bars_per_s"] >= GOAL_BARS_PER_S
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))

    print(f"{'symbols':>8}{'workers':>8}{'procs':>6}{'bars':>8}{'bars/s':>9}{'bars/cpu-s':>11}"
          f"  bar->done p50/p99 ms  bar->order p50/p99 ms  load")  # fmt: skip
    for r in runs:
        bl, ol = r["bar_latency"], r["order_latency"]
        print(
            f"{r['symbols']:>8}{r['workers']:>8}{r['processes']:>6}{r['bars']:>8}{r['bars_per_s']:>9.0f}"
            f"{r['bars_per_cpu_s']:>11.0f}"
            f"  {bl['p50_ms']:.3f} / {bl['p99_ms']:.3f}"
            f"          {ol['p50_ms']:.3f} / {ol['p99_ms']:.3f}"
            f"        {r['load_avg_1m'][0]:.1f}-{r['load_avg_1m'][1]:.1f}"
        )
    print(
        f"baseline predict_frame (buffer {hist}): p50 {base['p50_ms']:.3f} ms  "
        f"p99 {base['p99_ms']:.3f} ms  (compute_features alone p50 "
        f"{result['compute_features_only']['p50_ms']:.3f} ms)"
    )
    print(
        f"goal p99 <= {GOAL_P99_MS} ms and >= {GOAL_BARS_PER_S:.0f} bars/s (1 symbol, 1 worker): "
        f"{'met' if result['meets_goal'] else 'NOT met'} at load {result['load_avg_1m']:.1f}; "
        f"wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
