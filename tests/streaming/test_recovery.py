"""Kill the worker process at random points, restart it, and get the uninterrupted result."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from infra.stores import ParquetBarStore
from tests.streaming.conftest import sma_bundle, spx_bars

pytestmark = [pytest.mark.recovery, pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
N_BARS = 700
KILLS = 10


def _prepare_home(home: Path, bundle_dir: Path) -> dict[str, str]:
    bars = spx_bars(N_BARS).assign(source="test", ingested_at=datetime(2024, 1, 1, tzinfo=UTC))
    with ParquetBarStore(home / "data") as store:
        store.upsert_bars(bars)
    env = {
        **os.environ,
        "CANDLEFLOW_HOME": str(home),
        "CANDLEFLOW_ENV": "local",
        "CANDLEFLOW_BROKER": "paper",
        "CANDLEFLOW_STREAM_SYMBOLS": "SPX@1d",
        "CANDLEFLOW_STREAM_BUNDLE": str(bundle_dir),
        "CANDLEFLOW_STREAM_SPEED": "60",  # bars per second, so a kill lands mid-stream
        "CANDLEFLOW_METRICS_PORT": "0",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("BYTEWAX_RECOVERY_DIRECTORY", None)
    (home / "recovery").mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "bytewax.recovery", str(home / "recovery"), "1"],
        check=True,
        env=env,
        cwd=ROOT,
    )
    return env


def _worker(home: Path, env: dict[str, str]) -> subprocess.Popen:
    log = (home / "worker.log").open("a")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bytewax.run",
            "streaming.worker:get_flow()",
            "-r",
            str(home / "recovery"),
            "-s",
            "1",
            "-b",
            "0",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _read(home: Path) -> dict[str, pd.DataFrame]:
    store = ParquetBarStore(home / "data")
    return {
        t: store.read_records(t)
        for t in ("live_orders", "live_fills", "live_equity", "live_predictions", "live_positions")
    }


def _started(home: Path, runs: int) -> bool:
    log = home / "worker.log"
    return log.exists() and log.read_text().count("event=replay_start") >= runs


def test_worker_when_killed_repeatedly_then_result_equals_uninterrupted_run(tmp_path: Path) -> None:
    bundle_dir = sma_bundle().save(tmp_path / "bundle")
    clean_home, crash_home = tmp_path / "clean", tmp_path / "crash"
    clean_env = _prepare_home(clean_home, bundle_dir)
    crash_env = _prepare_home(crash_home, bundle_dir)
    clean_env = {**clean_env, "CANDLEFLOW_STREAM_SPEED": "0"}
    assert _worker(clean_home, clean_env).wait(timeout=120) == 0

    rng = random.Random(7)
    kills = 0
    for run in range(1, 40):
        proc = _worker(crash_home, crash_env)
        deadline = time.monotonic() + 60
        while not _started(crash_home, run) and proc.poll() is None:
            assert time.monotonic() < deadline, "worker did not start"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.2, 2.0))
        if proc.poll() is not None:
            assert proc.returncode == 0, (crash_home / "worker.log").read_text()[-3000:]
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        if kills >= KILLS:
            final = _worker(crash_home, crash_env)
            assert final.wait(timeout=120) == 0, (crash_home / "worker.log").read_text()[-3000:]
            break
    assert kills >= KILLS, f"the replay ended after {kills} kills; slow it down"

    clean, crashed = _read(clean_home), _read(crash_home)
    bars_ts = set(spx_bars(N_BARS)["ts"])
    assert set(crashed["live_equity"]["ts"]) == bars_ts  # no lost bar
    assert set(crashed["live_positions"]["ts"]) <= bars_ts
    assert len(clean["live_orders"]) > 0
    for table, key in (
        ("live_orders", ["client_id"]),
        ("live_fills", ["client_id", "ts"]),
        ("live_equity", ["ts"]),
        ("live_predictions", ["symbol", "ts"]),
        ("live_positions", ["symbol"]),
    ):
        a = clean[table].sort_values(key).reset_index(drop=True)
        b = crashed[table].sort_values(key).reset_index(drop=True)
        assert not b.duplicated(key).any()
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=1e-9, obj=table)
    # The paper broker lives in the snapshot with the ledger: after every kill both roll back
    # together, so no replayed order ever met a broker that had already seen it.
    log = (crash_home / "worker.log").read_text()
    assert "event=order_duplicate" not in log
    assert log.count("event=replay_start") >= KILLS + 1


def test_bytewax_run_when_given_a_new_recovery_dir_then_banner_names_it_and_warns_of_the_book(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {**_prepare_home(home, sma_bundle().save(tmp_path / "bundle")),
           "CANDLEFLOW_STREAM_SPEED": "0", "CANDLEFLOW_STREAM_MAX_BARS": "300"}  # fmt: skip
    assert _worker(home, env).wait(timeout=120) == 0
    first = (home / "worker.log").read_text()
    fresh = home / "recovery-new"
    fresh.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(fresh), "1"], check=True,
                   env=env, cwd=ROOT)  # fmt: skip
    (home / "worker.log").write_text("")

    second = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "streaming.worker:get_flow()", "-r", str(fresh),
         "-s", "1", "-b", "0"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert "resume=fresh start" in first
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resume=no snapshot in {fresh};" in second.stderr
    assert "event=fresh_start_over_book" in second.stderr
    assert "event=worker_done stopped_by=end of source bars=300" in second.stderr
    assert str(home / "recovery") + " " not in second.stderr  # not the default directory


def test_bytewax_run_recovery_dir_when_parsed_then_only_from_bytewax_run_argv() -> None:
    from streaming.worker import bytewax_run_recovery_dir

    run_py = str(Path("/x/site-packages/bytewax/run.py"))
    assert bytewax_run_recovery_dir([run_py, "m:f()", "-r", "d1"], {}) == Path("d1")
    assert bytewax_run_recovery_dir([run_py, "-rd2"], {}) == Path("d2")
    assert bytewax_run_recovery_dir([run_py, "--recovery-directory=d3"], {}) == Path("d3")
    assert bytewax_run_recovery_dir([run_py], {"BYTEWAX_RECOVERY_DIRECTORY": "d4"}) == Path("d4")
    assert bytewax_run_recovery_dir([run_py, "m:f()"], {}) is None
    assert bytewax_run_recovery_dir(["pytest", "-rA"], {}) is None  # someone else's -r
