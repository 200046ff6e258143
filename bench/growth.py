"""Benchmark: how research cost grows with the bars of one series (the growth table).

    python -m bench.growth [--sizes 10000,30000,100000] [--families xgboost] [--large]

For each size, in a fresh process (so peak memory is that size's own): synthetic 1m bars,
compute_features, research_labels, research_folds and the purged walk-forward of each family
(ml.pipeline.run_family), timed apart. Prints a table with wall time, time per bar and peak
RSS, and the exponent b of wall ~ bars^b fitted over the sizes (1.0 is linear); the goal is
time per bar at the largest size within 1.2x of that at the 100k size (or the second largest).
`--large` adds 1,000,000 bars (about 20 minutes for xgboost on two busy cores); `--sizes
5000,20000` is the smoke run. `--families xgboost,xgboost_garch,lstm,meta` for the full set.
`--series 1,4 --workers 1,2` adds the multi-series rows, the real thing: S synthetic 1m series
of `--series-bars` bars, each written as a Parquet file and ingested by `candleflow ingest` into
a private CANDLEFLOW_HOME, then `candleflow research` of them all with `[executor] cli_runs =
"executor"`: one Dagster `research` run per series (`dagster job execute`) on the multiprocess
executor, W runs at once (max_concurrent_runs) and CPUs / W step processes per run
(max_concurrent), in a fresh copy of that home per row. Each row gives the time from the
command's start to the last research run's end (as Dagster recorded it), the command's wall
time (the portfolio report follows the runs) and the sum of the runs' own durations, with the
load average before and after; the 4-series ratio of 1 run at a time over 2 at once is checked
against the goal (>= 1.7) for each mode. The default `--modes executor,in_process_steps` times
both ways of running the runs: candleflow's multiprocess executor (each step a process forked
from its forkserver) and Dagster's in_process executor (W runs at once, each run's steps one
after another in the run's own process); `spawn` adds Dagster's spawn start, `in_process`
`cli_runs = "in_process"` (the series one after another in the CLI process; one row, W
ignored).
`--series ''` skips them, `--sizes ''` the growth table. `--pooled 20` adds the pooled
walk-forward (ml.pooled) of 20 such series, xgboost only: one fit per fold for all
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


def _ingest_series(home: Path, series: int, n: int) -> None:
    """Run in a child process: `series` synthetic 1m series of n bars, each written as a
    Parquet file and ingested by `candleflow ingest --file` into the CANDLEFLOW_HOME `home`."""
    from bench.ingest import synthetic_bars
    from orchestration.cli import main as candleflow

    os.environ["CANDLEFLOW_HOME"] = str(home)
    inbox = home / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    for seed in range(series):
        symbol = f"S{seed}"
        bars = synthetic_bars([symbol], n, seed=seed)
        path = inbox / f"{symbol}__1m.parquet"
        bars.loc[:, ["ts", "open", "high", "low", "close", "volume"]].to_parquet(path)
        code = candleflow(["ingest", "--file", str(path), "--symbol", symbol, "--timeframe", "1m",
                           "--instrument-class", "crypto"])  # fmt: skip
        if code != 0:
            msg = f"candleflow ingest of {path} exited {code}"
            raise RuntimeError(msg)


_SERIES_CONFIG = """[research]
models = {models}
cpcv_series = []

[executor]
kind = "{kind}"
max_concurrent = {steps}
max_concurrent_runs = {runs}
cli_runs = "{cli_runs}"
{start_method}"""


def _series_run(
    ingested: Path, n: int, families: list[str], workers: int, mode: str
) -> dict[str, float]:
    """`candleflow research` of every series ingested under `ingested`, in a copy of that home:
    one Dagster research run per series, `workers` at once, each run's steps at most
    CPUs / workers at once (so runs x steps = the CPU budget). Times the command and the
    research runs (command start to the last run's end, as Dagster recorded it)."""
    import shutil
    import tempfile

    cpus = os.cpu_count() or 1
    home = Path(tempfile.mkdtemp(prefix=f"growth-w{workers}-", dir=ingested.parent))
    shutil.copytree(ingested, home, dirs_exist_ok=True)
    config = home / "candleflow.toml"
    config.write_text(_SERIES_CONFIG.format(
        models=json.dumps(families), steps=max(1, cpus // workers), runs=workers,
        cli_runs="in_process" if mode == "in_process" else "executor",
        kind="in_process" if mode == "in_process_steps" else "multiprocess",
        start_method="" if mode in ("executor", "in_process", "in_process_steps") else
        f"config = {{ start_method = {{ {mode} = {{}} }} }}\n",
    ))  # fmt: skip
    env = {**os.environ, "CANDLEFLOW_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    env.pop("CANDLEFLOW_CONFIG", None)
    cmd = [str(Path(sys.executable).parent / "candleflow"), "--config", str(config), "research"]
    load_before = os.getloadavg()[0]
    started = time.time()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.time() - started
    if done.returncode != 0:
        msg = f"candleflow research exited {done.returncode}: {done.stderr[-2000:]}"
        raise RuntimeError(msg)
    times = json.loads(subprocess.run(
        [sys.executable, "-m", "bench.growth", "--child-run-times", str(home / "dagster")],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1])  # fmt: skip
    shutil.rmtree(home, ignore_errors=True)
    return {
        "series": times["runs"], "bars": n, "workers": workers, "steps_per_run": max(
            1, cpus // workers), "mode": mode,
        "research_s": times["last_end"] - started, "command_s": wall,
        "first_run_start_s": times["first_start"] - started,
        "runs_s_sum": times["runs_s_sum"], "succeeded": times["succeeded"],
        "load_avg_1m_before": load_before, "load_avg_1m": os.getloadavg()[0],
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
    parser.add_argument(
        "--sizes", default="10000,30000,100000", help="sizes of the growth table ('' for none)"
    )
    parser.add_argument("--families", default="xgboost")
    parser.add_argument("--large", action="store_true", help="add 1,000,000 bars")
    parser.add_argument(
        "--series", default="1,4", help="series counts for the multi-series rows ('' for none)"
    )
    parser.add_argument("--workers", default="1,2", help="concurrent runs for those rows")
    parser.add_argument("--series-bars", type=int, default=10_000)
    parser.add_argument(
        "--modes",
        default="executor,in_process_steps",
        help="how those rows run: executor (candleflow's multiprocess executor, "
        "forkserver start), spawn (Dagster's start method), forkserver (Dagster's "
        "preload), in_process (cli_runs = in_process: one after another), "
        "in_process_steps (runs at once on the in_process executor)",
    )
    parser.add_argument(
        "--pooled",
        type=int,
        default=0,
        help="also time the pooled walk-forward of this many series",
    )
    parser.add_argument("--child-pooled", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-ingest", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-run-times", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    if args.child is not None:
        print(json.dumps(_one(args.child, families)))
        return 0
    if args.child_ingest is not None:
        _ingest_series(args.child_ingest, int(args.series), args.series_bars)
        return 0
    if args.child_run_times is not None:
        from orchestration.launch import research_run_times

        print(json.dumps(research_run_times(args.child_run_times)))
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
    home = Path(os.environ.get("CANDLEFLOW_HOME", "var"))
    series_rows = _series_rows(args, families, home)
    pooled = _pooled_row(args, env) if args.pooled > 0 else None
    out_path = args.out or home / "bench" / "growth.json"
    payload: dict[str, object] = {
        "benchmark": "growth",
        "when": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "load_avg_1m": os.getloadavg()[0],
        "families": families,
        "rows": rows,
        "goal_per_bar_ratio": GOAL_PER_BAR_RATIO,
        "series_rows": series_rows,
        "pooled": pooled,
        "four_series_speedup_2_vs_1": {
            m: _speedup(series_rows, 4, m) for m in _modes(args) if m != "in_process"
        },
        "goal_two_worker_speedup": GOAL_TWO_WORKER_SPEEDUP,
    }
    if rows:
        payload.update(_growth_summary(rows))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(payload, indent=2))
    if rows:
        _print_growth(rows, families, payload)
    if series_rows:
        _print_series(series_rows)
    for method, speedup in payload["four_series_speedup_2_vs_1"].items():  # type: ignore[attr-defined]
        if speedup is not None:
            verdict = "met" if speedup >= GOAL_TWO_WORKER_SPEEDUP else "NOT met"
            print(
                f"4 series through Dagster ({method}): 1 run at a time / 2 at once = "
                f"{speedup:.2f}x (goal >= {GOAL_TWO_WORKER_SPEEDUP}): {verdict} on "
                f"{os.cpu_count()} CPUs at load {os.getloadavg()[0]:.1f}"
            )
    print(f"wrote {out_path}")
    return 0


def _growth_summary(rows: list[dict[str, float]]) -> dict[str, float | bool]:
    exponent = _fit_exponent(rows) if len(rows) > 1 else float("nan")
    # The reference: the 100k row when a larger one follows it, else the second largest.
    earlier = rows[:-1] or rows
    ref = next((r for r in earlier if r["bars"] == 100_000), earlier[-1])
    ratio = rows[-1]["us_per_bar"] / ref["us_per_bar"]
    return {
        "exponent": exponent,
        "per_bar_ratio_largest_vs_ref": ratio,
        "ref_bars": ref["bars"],
        "goal_met": ratio <= GOAL_PER_BAR_RATIO,
    }


def _print_growth(rows: list[dict[str, float]], families: list[str], payload: dict) -> None:
    cols = ["features_labels_s", *(f"{f}_s" for f in families)]
    print(f"{'bars':>10}{'total s':>10}{'us/bar':>9}{'peak MB':>9}  " + "  ".join(cols))
    for r in rows:
        parts = "  ".join(f"{r[c]:.1f}".rjust(len(c)) for c in cols)
        print(
            f"{r['bars']:>10,}{r['total_s']:>10.1f}{r['us_per_bar']:>9.0f}"
            f"{r['peak_rss_mb']:>9.0f}  {parts}"
        )
    print(
        f"fitted exponent {payload['exponent']:.2f} (1.0 = linear); time per bar at "
        f"{rows[-1]['bars']:,} is {payload['per_bar_ratio_largest_vs_ref']:.2f}x that at "
        f"{payload['ref_bars']:,} (goal <= {GOAL_PER_BAR_RATIO}): "
        f"{'met' if payload['goal_met'] else 'NOT met'} at load {payload['load_avg_1m']:.1f}"
    )


def _print_series(rows: list[dict[str, float]]) -> None:
    print(
        f"{'series':>7}{'bars':>8}{'runs':>5}{'steps':>6}  {'mode':<17}{'research s':>11}"
        f"{'command s':>10}{'sum runs s':>11}{'load':>11}"
    )
    for r in rows:
        print(
            f"{r['series']:>7}{r['bars']:>8,}{r['workers']:>5}{r['steps_per_run']:>6}  "
            f"{r['mode']:<17}{r['research_s']:>11.1f}{r['command_s']:>10.1f}"
            f"{r['runs_s_sum']:>11.1f}{r['load_avg_1m_before']:>5.1f}->{r['load_avg_1m']:<4.1f}"
        )
    print(
        "runs: research runs at once ([executor] max_concurrent_runs); steps: step processes "
        "per run (max_concurrent); research s: `candleflow research` start to the last "
        "research run's end (the portfolio report after it is in command s only)"
    )


def _modes(args: argparse.Namespace) -> list[str]:
    return [m for m in args.modes.split(",") if m]


def _series_rows(
    args: argparse.Namespace, families: list[str], home: Path
) -> list[dict[str, float]]:
    """The multi-series rows: per series count, one home with the series ingested, then per
    start method and worker count a `candleflow research` of them in a copy of it."""
    import shutil
    import tempfile

    rows = []
    root = Path(tempfile.mkdtemp(prefix="growth-series-", dir=_mkdir(home / "bench")))
    env = {**os.environ}
    env.pop("CANDLEFLOW_CONFIG", None)
    try:
        for series in sorted({int(s) for s in args.series.split(",") if s}):
            ingested = root / f"ingested-{series}"
            subprocess.run(
                [sys.executable, "-m", "bench.growth", "--child-ingest", str(ingested),
                 "--series", str(series), "--series-bars", str(args.series_bars)],
                check=True, capture_output=True, text=True, env=env,
            )  # fmt: skip
            for method in _modes(args):
                for workers in sorted({int(w) for w in args.workers.split(",") if w}):
                    if workers > series or (method == "in_process" and workers > 1):
                        continue  # more concurrent runs than series times the same as fewer
                    row = _series_run(ingested, args.series_bars, families, workers, method)
                    rows.append(row)
                    print(
                        f"[bench.growth] {series:>3} series x {args.series_bars:,} bars, "
                        f"{workers} run(s) at once ({method}): research "
                        f"{row['research_s']:.1f} s, command {row['command_s']:.1f} s at load "
                        f"{row['load_avg_1m']:.1f}",
                        flush=True,
                    )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


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


def _speedup(rows: list[dict[str, float]], series: int, method: str) -> float | None:
    """Research time of `series` series 1 run at a time over 2 at once (None unless both ran)."""
    wall = {
        r["workers"]: r["research_s"] for r in rows if r["series"] == series and r["mode"] == method
    }
    return wall[1] / wall[2] if 1 in wall and 2 in wall else None


if __name__ == "__main__":
    raise SystemExit(main())
