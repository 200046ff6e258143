"""`candleflow stream` stopped by Ctrl-C or `docker stop`: the bar finishes, nothing is lost."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from infra.stores import ParquetBarStore
from tests.streaming.conftest import sma_bundle, spx_bars

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "candleflow"
N_BARS = 400


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return sma_bundle().save(tmp_path_factory.mktemp("bundle") / "sma")


def _home(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    home = tmp_path / "home"
    bars = spx_bars(N_BARS).assign(source="test", ingested_at=datetime(2024, 1, 1, tzinfo=UTC))
    with ParquetBarStore(home / "data") as store:
        store.upsert_bars(bars)
    env = {**os.environ, "CANDLEFLOW_HOME": str(home), "CANDLEFLOW_ENV": "local",
           "CANDLEFLOW_BROKER": "paper", "OMP_NUM_THREADS": "1"}
    env.pop("CANDLEFLOW_LIVE", None)
    return home, env


def _stream(env: dict[str, str], bundle: Path, speed: float, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN), "stream", "--series", "SPX@1d", "--bundle", str(bundle), "--speed",
         str(speed), "--snapshot-s", "1", "--metrics-port", "0"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stream_when_signalled_then_stops_cleanly_with_summary_and_resumes_losing_nothing(
    tmp_path: Path, bundle: Path, sig: signal.Signals
) -> None:
    home, env = _home(tmp_path)
    log = tmp_path / "first.log"
    proc = _stream(env, bundle, speed=40, log=log)
    deadline = time.monotonic() + 120
    while "event=replay_start" not in log.read_text():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.1)
    time.sleep(2.0)

    proc.send_signal(sig)
    rc = proc.wait(timeout=60)
    text = log.read_text()

    assert rc == 0, text[-3000:]
    assert "Traceback" not in text and "panic" not in text
    banner = next(line for line in text.splitlines() if "event=worker_flow" in line)
    assert "broker=paper" in banner and "series=SPX@1d" in banner
    assert "models=SPX:file:sma" in banner and "kill_switch=off" in banner
    assert "resume=fresh start" in banner
    summary = re.search(rf"stream stopped by {sig.name}: (\d+) bars, (\d+) orders", text)
    assert summary, text[-2000:]
    done = int(summary.group(1))
    assert 0 < done < N_BARS
    assert "position SPX:" in text or "positions: flat" in text
    stored = ParquetBarStore(home / "data").read_records("live_equity")
    assert len(stored) == done  # every bar the summary counts is in the store

    second = tmp_path / "second.log"
    assert _stream(env, bundle, speed=0, log=second).wait(timeout=200) == 0
    again = second.read_text()
    assert f"position={done}" in again  # resumed right after the last processed bar
    assert "resume=snapshot in" in again
    equity = ParquetBarStore(home / "data").read_records("live_equity")
    assert set(equity["ts"]) == set(spx_bars(N_BARS)["ts"]) and not equity["ts"].duplicated().any()

    status = subprocess.run([str(BIN), "live", "status", "--json"], env=env, capture_output=True,
                            text=True, check=True, timeout=120)
    book = json.loads(status.stdout)
    last = equity.sort_values("ts").iloc[-1]
    assert book["equity"] == pytest.approx(float(last["equity"]))
    assert book["last_ts"] == last["ts"].isoformat()
    assert book["kill_switch"]["engaged"] is False
