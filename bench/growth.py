"""Benchmark: how research cost grows with the bars of one series (the growth table).

    python -m bench.growth [--sizes 10000,30000,100000] [--families xgboost] [--large]

For each size, in a fresh process (so peak memory is that size's own): synthetic 1m bars,
compute_features, research_labels, research_folds and the purged walk-forward of each family
(ml.pipeline.run_family), timed apart. Prints a table with wall time, time per bar and peak
RSS, and the exponent b of wall ~ bars^b fitted over the sizes (1.0 is linear); the goal is
time per bar at the largest size within 1.2x of that at the 100k size (or the second largest).
`--large` adds 1,000,000 bars (about 20 minutes for xgboost on two busy cores); `--sizes
5000,20000` is the smoke run. `--families xgboost,xgboost_garch,lstm,meta` for the full set.
`--family-workers 2` also times the families of one series (the smallest size) fitted one after
another and in 2 processes at once ([executor] family_workers), checks both give identical
predictions, and prints the wall-time ratio with the load average.
`--series 1,4,5,20 --workers 1,2` adds the multi-series rows: S series of `--series-bars` bars
each, researched one series per task over a spawned pool of W processes (what the multiprocess
executor with max_concurrent W does with one step per series; Dagster itself is not in the
timing), wall time and the peak RSS of the parent and of the largest worker, and prints the
4-series ratio of 1 worker over 2 (goal >= 1.7). `--series ''` skips them. `--pooled 20` adds
the pooled walk-forward (ml.pooled) of 20 such series, xgboost only: one fit per fold for all
of them, timed beside the per-series walk-forwards of the same series, with the fit counts.
Writes var/bench/growth.json (under CANDLEFLOW_HOME).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

GOAL_PER_BAR_RATIO = 1.2
GOAL_TWO_WORKER_SPEEDUP = 1.7


def _one(n: int, families: list[str]) -> dict[str, float]:
    """Run in a child process: the research steps on n bars; times and peak RSS."""
    from bench.ingest import synthetic_bars
    from ml.features import compute_features
    from ml.pipeline import ResearchConfig, research_folds, research_labels, run_family

    cfg = ResearchConfig(models=tuple(families))
    bars = synthetic_bars(["GROWTH"], n)
    out: dict[str, float] = {"bars": n}
    t0 = time.perf_counter()
    feats = compute_features(bars)
    labels = research_labels(bars, cfg)
    folds = research_folds(feats, cfg)
    out["features_labels_s"] = time.perf_counter() - t0
    for family in families:
        t = time.perf_counter()
        run_family(family, feats, labels, folds, cfg)
        out[f"{family}_s"] = time.perf_counter() - t
    out["total_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _families_parallel(n: int, families: list[str], workers: int) -> dict[str, float]:
    """Run in a child process: every family of one series fitted sequentially, then in
    `workers` processes (as the walk_forward step does); wall times and an identity check."""
    from functools import partial

    from bench.ingest import synthetic_bars
    from ml.features import compute_features
    from ml.pipeline import ResearchConfig, research_folds, research_labels, run_family
    from ml.walkforward import run_in_processes

    cfg = ResearchConfig(models=tuple(families))
    bars = synthetic_bars(["GROWTH"], n)
    feats = compute_features(bars)
    labels = research_labels(bars, cfg)
    task = partial(
        run_family, features=feats, labels=labels, folds=research_folds(feats, cfg), config=cfg
    )
    items = [*cfg.models, *cfg.baselines]
    t = time.perf_counter()
    seq = [task(f) for f in items]
    seq_s = time.perf_counter() - t
    t = time.perf_counter()
    par = run_in_processes(task, items, workers=workers)
    par_s = time.perf_counter() - t
    same = all(
        a.predictions.equals(b.predictions) and a.fold_metrics.equals(b.fold_metrics)
        for a, b in zip(seq, par, strict=True)
    )
    return {"bars": n, "workers": workers, "sequential_s": seq_s, "parallel_s": par_s,
            "speedup": seq_s / par_s, "identical": float(same), "load_avg_1m": os.getloadavg()[0]}


def _research_one_series(seed: int, n: int, families: tuple[str, ...]) -> float:
    """One series' research (features, labels, folds, each family's walk-forward); wall s."""
    from bench.ingest import synthetic_bars
    from ml.features import compute_features
    from ml.pipeline import ResearchConfig, research_folds, research_labels, run_family

    t = time.perf_counter()
    cfg = ResearchConfig(models=families)
    bars = synthetic_bars([f"S{seed}"], n, seed=seed)
    feats = compute_features(bars)
    labels = research_labels(bars, cfg)
    folds = research_folds(feats, cfg)
    for family in families:
        run_family(family, feats, labels, folds, cfg)
    return time.perf_counter() - t


def _series_run(series: int, n: int, families: list[str], workers: int) -> dict[str, float]:
    """Run in a child process: `series` series of n bars over `workers` processes."""
    from functools import partial

    from ml.walkforward import run_in_processes

    task = partial(_research_one_series, n=n, families=tuple(families))
    t = time.perf_counter()
    per_series = run_in_processes(task, list(range(series)), workers=workers)
    wall = time.perf_counter() - t
    return {
        "series": series, "bars": n, "workers": workers, "wall_s": wall,
        "series_s_sum": sum(per_series),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "load_avg_1m": os.getloadavg()[0],
    }  # fmt: skip


def _pooled_run(series: int, n: int) -> dict[str, float]:
    """Run in a child process: `series` series of n bars, the pooled walk-forward (one xgboost
    fit per fold) against one walk-forward per series, both timed after features and labels."""
    from bench.ingest import synthetic_bars
    from ml.features import compute_features
    from ml.pipeline import (
        ResearchConfig,
        make_factory,
        research_folds,
        research_labels,
        run_family,
    )
    from ml.pooled import run_pooled_walk_forward

    cfg = ResearchConfig(models=("xgboost",))
    feats, labels = {}, {}
    for seed in range(series):
        bars = synthetic_bars([f"S{seed}"], n, seed=seed)
        feats[f"S{seed}"] = compute_features(bars)
        labels[f"S{seed}"] = research_labels(bars, cfg)
    t = time.perf_counter()
    pooled = run_pooled_walk_forward(
        feats, labels, make_factory("xgboost", cfg), n_folds=cfg.n_folds,
        purge=cfg.horizon + 1, embargo=cfg.embargo,
    )  # fmt: skip
    pooled_s = time.perf_counter() - t
    t = time.perf_counter()
    folds = 0
    for key in feats:
        f = research_folds(feats[key], cfg)
        folds += len(f)
        run_family("xgboost", feats[key], labels[key], f, cfg)
    per_series_s = time.perf_counter() - t
    return {
        "series": series, "bars": n, "pooled_s": pooled_s, "pooled_fits": len(pooled.models),
        "per_series_s": per_series_s, "per_series_fits": folds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_avg_1m": os.getloadavg()[0],
    }  # fmt: skip


def _fit_exponent(rows: list[dict[str, float]]) -> float:
    xs = [math.log(r["bars"]) for r in rows]
    ys = [math.log(r["total_s"]) for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__)
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--families", default="xgboost")
    parser.add_argument("--large", action="store_true", help="add 1,000,000 bars")
    parser.add_argument("--family-workers", type=int, default=0,
                        help="also time one series' families in this many processes")
    parser.add_argument("--series", default="1,4,5,20",
                        help="series counts for the multi-series rows ('' for none)")
    parser.add_argument("--workers", default="1,2", help="worker counts for those rows")
    parser.add_argument("--series-bars", type=int, default=10_000)
    parser.add_argument("--pooled", type=int, default=0,
                        help="also time the pooled walk-forward of this many series")
    parser.add_argument("--child-pooled", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-series", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-families", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    if args.child is not None:
        print(json.dumps(_one(args.child, families)))
        return 0
    if args.child_families is not None:
        print(json.dumps(_families_parallel(args.child_families, families, args.family_workers)))
        return 0
    if args.child_series is not None:
        row = _series_run(args.child_series, args.series_bars, families, args.child_workers)
        print(json.dumps(row))
        return 0
    if args.child_pooled is not None:
        print(json.dumps(_pooled_run(args.child_pooled, args.series_bars)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.large:
        sizes.append(1_000_000)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    rows = []
    for n in sorted(set(sizes)):
        cmd = [sys.executable, "-m", "bench.growth", "--child", str(n), "--families",
               ",".join(families)]  # fmt: skip
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["us_per_bar"] = row["total_s"] / n * 1e6
        rows.append(row)
        print(
            f"[bench.growth] {n:>9,} bars: {row['total_s']:8.1f} s "
            f"({row['us_per_bar']:7.0f} us/bar), peak RSS {row['peak_rss_mb']:7.0f} MB",
            flush=True,
        )
    fam: dict[str, float] | None = None
    if args.family_workers > 1:
        cmd = [sys.executable, "-m", "bench.growth", "--child-families", str(min(sizes)),
               "--families", ",".join(families), "--family-workers", str(args.family_workers)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        fam = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"[bench.growth] families of one {fam['bars']:,}-bar series: sequential "
            f"{fam['sequential_s']:.1f} s, {args.family_workers} processes {fam['parallel_s']:.1f}"
            f" s ({fam['speedup']:.2f}x, identical={bool(fam['identical'])}) at load "
            f"{fam['load_avg_1m']:.1f}",
            flush=True,
        )
    series_rows = _series_rows(args, families, env)
    pooled = _pooled_row(args, env) if args.pooled > 0 else None
    exponent = _fit_exponent(rows) if len(rows) > 1 else float("nan")
    # The reference: the 100k row when a larger one follows it, else the second largest.
    earlier = rows[:-1] or rows
    ref = next((r for r in earlier if r["bars"] == 100_000), earlier[-1])
    ratio = rows[-1]["us_per_bar"] / ref["us_per_bar"]
    home = Path(os.environ.get("CANDLEFLOW_HOME", "var"))
    out_path = args.out or home / "bench" / "growth.json"
    payload = {
        "benchmark": "growth",
        "when": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "load_avg_1m": os.getloadavg()[0],
        "families": families,
        "rows": rows,
        "exponent": exponent,
        "per_bar_ratio_largest_vs_ref": ratio,
        "ref_bars": ref["bars"],
        "goal_per_bar_ratio": GOAL_PER_BAR_RATIO,
        "goal_met": ratio <= GOAL_PER_BAR_RATIO,
        "families_parallel": fam,
        "series_rows": series_rows,
        "pooled": pooled,
        "four_series_speedup_2_vs_1": _speedup(series_rows, 4),
        "goal_two_worker_speedup": GOAL_TWO_WORKER_SPEEDUP,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(payload, indent=2))
    cols = ["features_labels_s", *(f"{f}_s" for f in families)]
    print(f"{'bars':>10}{'total s':>10}{'us/bar':>9}{'peak MB':>9}  " + "  ".join(cols))
    for r in rows:
        parts = "  ".join(f"{r[c]:.1f}".rjust(len(c)) for c in cols)
        print(
            f"{r['bars']:>10,}{r['total_s']:>10.1f}{r['us_per_bar']:>9.0f}"
            f"{r['peak_rss_mb']:>9.0f}  {parts}"
        )
    print(
        f"fitted exponent {exponent:.2f} (1.0 = linear); time per bar at {rows[-1]['bars']:,} is "
        f"{ratio:.2f}x that at {ref['bars']:,} (goal <= {GOAL_PER_BAR_RATIO}): "
        f"{'met' if payload['goal_met'] else 'NOT met'} at load {payload['load_avg_1m']:.1f}; "
        f"wrote {out_path}"
    )
    speedup = payload["four_series_speedup_2_vs_1"]
    if speedup is not None:
        verdict = "met" if speedup >= GOAL_TWO_WORKER_SPEEDUP else "NOT met"
        print(
            f"4 series: 1 worker / 2 workers = {speedup:.2f}x (goal >= "
            f"{GOAL_TWO_WORKER_SPEEDUP}): {verdict}"
            f" on {os.cpu_count()} CPUs at load {os.getloadavg()[0]:.1f}"
        )
    return 0


def _series_rows(
    args: argparse.Namespace, families: list[str], env: dict[str, str]
) -> list[dict[str, float]]:
    """The multi-series rows, each (series, workers) in a fresh child process."""
    rows = []
    for workers in sorted({int(w) for w in args.workers.split(",") if w}):
        for series in sorted({int(s) for s in args.series.split(",") if s}):
            cmd = [sys.executable, "-m", "bench.growth", "--child-series", str(series),
                   "--child-workers", str(workers), "--series-bars", str(args.series_bars),
                   "--families", ",".join(families)]  # fmt: skip
            done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            worker = row["peak_worker_rss_mb"]
            print(
                f"[bench.growth] {series:>3} series x {args.series_bars:,} bars on {workers} "
                f"worker(s): {row['wall_s']:7.1f} s (sum of series {row['series_s_sum']:.1f} s), "
                f"peak RSS {row['peak_rss_mb']:.0f} MB"
                + (f", largest worker {worker:.0f} MB" if worker else "")
                + f" at load {row['load_avg_1m']:.1f}",
                flush=True,
            )
    return rows


def _pooled_row(args: argparse.Namespace, env: dict[str, str]) -> dict[str, float]:
    cmd = [sys.executable, "-m", "bench.growth", "--child-pooled", str(args.pooled),
           "--series-bars", str(args.series_bars)]  # fmt: skip
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"[bench.growth] pooled {row['series']} series x {row['bars']:,} bars: "
        f"{row['pooled_s']:.1f} s for {row['pooled_fits']} fits; per series "
        f"{row['per_series_s']:.1f} s for {row['per_series_fits']} fits; peak RSS "
        f"{row['peak_rss_mb']:.0f} MB at load {row['load_avg_1m']:.1f}",
        flush=True,
    )
    return row


def _speedup(rows: list[dict[str, float]], series: int) -> float | None:
    """Wall time of `series` series on 1 worker over that on 2 (None when not both ran)."""
    wall = {r["workers"]: r["wall_s"] for r in rows if r["series"] == series}
    return wall[1] / wall[2] if 1 in wall and 2 in wall else None


if __name__ == "__main__":
    raise SystemExit(main())
