"""Benchmark: bulk bar ingestion, appends and read-back for each store vs a naive baseline.

    python -m bench.ingest [--symbols 1] [--bars 1000000] [--baseline-rows 50000] [--appends 5]
                           [--repeats 3] [--reads 3]

Writes 1,000,000 synthetic 1m bars (one series by default) with ParquetBarStore.upsert_bars and
TimescaleBarStore.upsert_bars (binary COPY straight into the hypertable for rows no stored bar
overlaps), then an overlapping upsert (half the rows re-sent with changed values, half new: staging
merge plus COPY) and a no-op re-run, each TimescaleDB case the median of `--repeats` runs in fresh
schemas with this process's CPU share of the wall time (the rest is the server), then appends
one bar at a time to the 1M-bar series (median of `--appends`) and reads the whole series back
(median of `--reads`; goal: TimescaleDB within 1.2x of Parquet);
and a naive psycopg `executemany(INSERT ... ON CONFLICT)` on a sample, all in the same run (fresh
schemas, dropped afterwards). Prints a table and writes var/bench/ingest.json (under
CANDLEFLOW_HOME). Goals: COPY >= 250k rows/s and >= 20x the baseline. `--bars 100000` for a
smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from infra.stores import ParquetBarStore, TimescaleBarStore

GOAL_ROWS_PER_S = 250_000
GOAL_RATIO = 20.0
GOAL_READ_VS_PARQUET = 1.2

_INSERT = """
INSERT INTO bars AS b (symbol, timeframe, ts, open, high, low, close, volume, source,
                       ingested_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (symbol, timeframe, ts) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, source = EXCLUDED.source, ingested_at = EXCLUDED.ingested_at
WHERE (b.open, b.high, b.low, b.close, b.volume, b.source)
    IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close,
                      EXCLUDED.volume, EXCLUDED.source)
"""


def synthetic_bars(symbols: list[str], bars: int, seed: int = 11) -> pd.DataFrame:
    """Random-walk 1m bars from 2020-01-01 UTC for each symbol."""
    rng = np.random.default_rng(seed)
    frames = []
    ts = pd.date_range("2020-01-01", periods=bars, freq="1min", tz="UTC")
    now = pd.Timestamp(datetime.now(UTC))
    for symbol in symbols:
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, bars)))
        open_ = np.concatenate([[100.0], close[:-1]])
        spread = np.abs(rng.normal(0.0, 5e-4, bars))
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "timeframe": "1m",
                    "ts": ts,
                    "open": open_,
                    "high": np.maximum(open_, close) * (1 + spread),
                    "low": np.minimum(open_, close) * (1 - spread),
                    "close": close,
                    "volume": rng.lognormal(8.0, 0.5, bars),
                    "source": "bench",
                    "ingested_at": now,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _say(msg: str) -> None:
    print(f"[bench.ingest] {msg}", flush=True)


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _appends(store, frame: pd.DataFrame, symbol: str, n: int) -> dict[str, float]:
    """Median wall time of `n` one-bar appends after the newest bar of `symbol`."""
    series = frame[frame["symbol"] == symbol]
    last = series.iloc[-1:]
    times = []
    for i in range(n):
        one = last.assign(ts=last["ts"] + pd.Timedelta(minutes=i + 1))
        secs, written = _timed(lambda one=one: store.upsert_bars(one))
        assert written == 1
        times.append(secs)
    med = float(np.median(times))
    return {"rows": 1, "seconds": med, "rows_per_s": 1 / med, "series_bars": len(series)}


def _read_back(store, symbol: str, bars: int, reads: int) -> dict[str, float]:
    """Median wall time of `reads` whole-series reads (the first one warms the caches)."""
    times = []
    for _ in range(reads):
        secs, out = _timed(lambda: store.read_bars(symbol, "1m"))
        assert len(out) >= bars
        times.append(secs)
    med = float(np.median(times))
    return {"rows": len(out), "seconds": med, "rows_per_s": len(out) / med}


def _drop(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed_upsert(store, frame: pd.DataFrame, expect: int) -> dict[str, float]:
    """Wall time of one upsert, and the share of it this process spent on CPU (the rest is
    the server's work and waiting for it)."""
    cpu0 = _cpu()
    secs, written = _timed(lambda: store.upsert_bars(frame))
    client = _cpu() - cpu0
    assert written == expect, f"upsert wrote {written}, expected {expect}"
    return {
        "rows": len(frame),
        "seconds": secs,
        "rows_per_s": len(frame) / secs,
        "client_cpu_s": client,
        "client_share": client / secs,
    }


def _timescale_run(dsn: str, frame: pd.DataFrame, symbol: str, args) -> dict[str, dict]:
    """One fresh schema: a fresh load (binary COPY into the hypertable) and its read-back, an
    overlapping upsert (half the rows re-sent with changed values, half new: staging merge plus
    COPY), a no-op re-run and one-bar appends."""
    rows = len(frame)
    schema = f"cf_bench_{uuid.uuid4().hex[:8]}"
    out: dict[str, dict] = {}
    try:
        store = TimescaleBarStore(dsn, schema=schema)
        out["timescale_copy_upsert"] = _timed_upsert(store, frame, rows)
        assert store.count_bars(symbol, "1m") == args.bars
        out["timescale_read_series"] = _read_back(store, symbol, args.bars, args.reads)
        half = rows // 2
        shifted = frame.assign(
            ts=frame["ts"] + (frame["ts"].iloc[half] - frame["ts"].iloc[0]),
            close=frame["close"] * 1.001,
        )
        out["timescale_overlap_upsert"] = _timed_upsert(store, shifted, rows)
        out["timescale_copy_rerun_noop"] = _timed_upsert(store, shifted, 0)
        out["timescale_append_1_bar"] = _appends(store, shifted, symbol, args.appends)
        store.close()
    finally:
        _drop(dsn, schema)
    return out


def _median_of(runs: list[dict]) -> dict:
    """Field-wise median of repeated runs (rows/s recomputed from the median seconds)."""
    med = {k: float(np.median([r[k] for r in runs])) for k in runs[0] if k != "rows"}
    med["rows"] = runs[0]["rows"]
    med["rows_per_s"] = med["rows"] / med["seconds"]
    med["runs"] = [r["rows_per_s"] for r in runs]
    return med


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1)
    parser.add_argument("--bars", type=int, default=1_000_000, help="bars per symbol")
    parser.add_argument("--baseline-rows", type=int, default=50_000)
    parser.add_argument("--appends", type=int, default=5, help="single-bar appends to time")
    parser.add_argument("--repeats", type=int, default=3, help="TimescaleDB runs (medians)")
    parser.add_argument("--reads", type=int, default=3, help="read-backs per store (median)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    dsn = os.environ.get("CANDLEFLOW_TIMESCALE_DSN")
    if not dsn:
        _say("CANDLEFLOW_TIMESCALE_DSN is not set; run infra/timescale/start_local.sh first")
        return 2
    home = Path(os.environ.get("CANDLEFLOW_HOME", "var"))
    out_path = args.out or home / "bench" / "ingest.json"

    symbols = [f"BENCH{i}" for i in range(args.symbols)]
    _say(f"generating {args.symbols} x {args.bars:,} 1m bars")
    frame = synthetic_bars(symbols, args.bars)
    rows = len(frame)
    results: dict[str, dict[str, float]] = {}

    _say(f"phase 1/3: ParquetBarStore: upsert {rows:,} rows, re-run, appends, read-back")
    with tempfile.TemporaryDirectory() as tmp:
        store = ParquetBarStore(Path(tmp))
        secs, written = _timed(lambda: store.upsert_bars(frame))
        assert written == rows, f"parquet wrote {written} of {rows}"
        results["parquet_upsert"] = {"rows": rows, "seconds": secs, "rows_per_s": rows / secs}
        secs2, again = _timed(lambda: store.upsert_bars(frame))
        results["parquet_rerun_noop"] = {"rows": rows, "seconds": secs2, "rows_per_s": rows / secs2}
        assert again == 0
        results["parquet_append_1_bar"] = _appends(store, frame, symbols[0], args.appends)
        results["parquet_read_series"] = _read_back(store, symbols[0], args.bars, args.reads)
        store.close()

    _say(
        f"phase 2/3: TimescaleBarStore x {args.repeats}: COPY {rows:,} rows, overlapping upsert,"
        " re-run, appends, read-back (medians)"
    )
    runs = [_timescale_run(dsn, frame, symbols[0], args) for _ in range(args.repeats)]
    for name in runs[0]:
        results[name] = _median_of([run[name] for run in runs])

    schema = f"cf_bench_{uuid.uuid4().hex[:8]}"
    try:
        TimescaleBarStore(dsn, schema=schema).close()
        n = min(args.baseline_rows, rows)
        sample = frame.iloc[:n].assign(symbol="BASELINE")
        params = [
            (r.symbol, r.timeframe, r.ts.to_pydatetime(), r.open, r.high, r.low, r.close,
             r.volume, r.source, r.ingested_at.to_pydatetime())
            for r in sample.itertuples(index=False)
        ]  # fmt: skip
        _say(f"phase 3/3: baseline executemany INSERT ... ON CONFLICT, {n:,}-row sample")
        with psycopg.connect(dsn, autocommit=False) as conn:
            conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))

            def naive() -> None:
                with conn.cursor() as cur:
                    cur.executemany(_INSERT, params)
                conn.commit()

            secs, _ = _timed(naive)
        results["baseline_executemany"] = {
            "rows": n,
            "seconds": secs,
            "rows_per_s": n / secs,
            "extrapolated_from_sample": n < rows,
        }
    finally:
        _drop(dsn, schema)

    copy_rps = results["timescale_copy_upsert"]["rows_per_s"]
    base_rps = results["baseline_executemany"]["rows_per_s"]
    ratio = copy_rps / base_rps
    overlap_rps = results["timescale_overlap_upsert"]["rows_per_s"]
    read_ratio = (
        results["timescale_read_series"]["seconds"] / results["parquet_read_series"]["seconds"]
    )
    summary = {
        "rows": rows,
        "repeats": args.repeats,
        "load_average": os.getloadavg(),
        "copy_vs_baseline": ratio,
        "overlap_vs_baseline": overlap_rps / base_rps,
        "copy_client_share": results["timescale_copy_upsert"]["client_share"],
        "parquet_vs_baseline": results["parquet_upsert"]["rows_per_s"] / base_rps,
        "goal_copy_rows_per_s": GOAL_ROWS_PER_S,
        "goal_ratio": GOAL_RATIO,
        "copy_goal_met": copy_rps >= GOAL_ROWS_PER_S,
        "ratio_goal_met": ratio >= GOAL_RATIO,
        "read_vs_parquet": read_ratio,
        "goal_read_vs_parquet": GOAL_READ_VS_PARQUET,
        "read_goal_met": read_ratio <= GOAL_READ_VS_PARQUET,
    }

    print(f"{'phase':<28}{'rows':>12}{'seconds':>10}{'rows/s':>14}{'client cpu':>12}")
    for name, r in results.items():
        share = f"{r['client_share']:.0%}" if "client_share" in r else ""
        print(
            f"{name:<28}{r['rows']:>12,}{r['seconds']:>10.3f}{r['rows_per_s']:>14,.0f}{share:>12}"
        )
    print(
        f"TimescaleDB rows: medians of {args.repeats} runs; client cpu = this process's CPU"
        " over wall time (the rest is the server's work); load average "
        + " ".join(f"{x:.2f}" for x in summary["load_average"])
    )
    if results["baseline_executemany"]["extrapolated_from_sample"]:
        print(f"(baseline measured on a {n:,}-row sample; its rows/s is extrapolated to {rows:,})")
    print(f"COPY / baseline = {ratio:.1f}x (goal >= {GOAL_RATIO:.0f}x): "
          f"{'met' if summary['ratio_goal_met'] else 'NOT met'}")  # fmt: skip
    print(f"overlapping upsert / baseline = {summary['overlap_vs_baseline']:.1f}x")
    print(f"COPY = {copy_rps:,.0f} rows/s (goal >= {GOAL_ROWS_PER_S:,}): "
          f"{'met' if summary['copy_goal_met'] else 'NOT met'}")  # fmt: skip
    read_verdict = "met" if summary["read_goal_met"] else "NOT met"
    print(
        f"read-back TimescaleDB / Parquet = {read_ratio:.2f}x"
        f" (goal <= {GOAL_READ_VS_PARQUET}x): {read_verdict}"
    )

    out_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "ingest",
        "when": datetime.now(UTC).isoformat(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "results": results,
        "summary": summary,
    }
    out_path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    _say(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
