"""TimescaleDB goes away twice while the worker streams: the run completes and loses nothing.

The test starts its own server (infra/timescale/start_local.sh on a private port and data
directory, in the chroot `make test` builds), never the shared one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from streaming.dataflow import LIVE_TABLES
from tests.streaming.conftest import sma_bundle, spx_bars

pytestmark = [pytest.mark.timescale, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "candleflow"
CHROOT = Path(os.environ.get("CANDLEFLOW_TSDB_ROOT", "/var/cache/candleflow/tsdb-trixie"))
N_BARS = 700
OUTAGES = 2
TABLES = {
    "live_orders": ["client_id"],
    "live_fills": ["client_id", "ts"],
    "live_equity": ["ts"],
    "live_predictions": ["symbol", "ts"],
    "live_positions": ["symbol"],
}


class PrivateServer:
    """A TimescaleDB server of this test alone: own port, own data directory."""

    def __init__(self, port: int) -> None:
        self.pgdata = f"/var/lib/candleflow-pg-test-{uuid.uuid4().hex[:8]}"
        self.env = {
            k: v for k, v in os.environ.items() if k != "CANDLEFLOW_TIMESCALE_DSN"
        } | {"CANDLEFLOW_TSDB_PORT": str(port), "CANDLEFLOW_TSDB_PGDATA": self.pgdata}
        self.dsn = ""  # known once started: the script makes the server's password

    def _script(self, action: str) -> str:
        done = subprocess.run(
            ["bash", str(ROOT / "infra/timescale/start_local.sh"), action],
            env=self.env, check=True, capture_output=True, text=True, timeout=120,
        )
        return done.stdout.strip()

    def start(self) -> None:
        self.dsn = self._script("start").splitlines()[-1]

    def kill(self) -> None:
        self._script("kill")  # immediate shutdown: what a crash looks like to the client

    def remove(self) -> None:
        try:
            self._script("kill")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(CHROOT / self.pgdata.lstrip("/"), ignore_errors=True)
        for kept in (".password", ".superuser"):
            (CHROOT / (self.pgdata.lstrip("/") + kept)).unlink(missing_ok=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server():
    if not (CHROOT / "usr/lib/postgresql/17/bin/postgres").exists() or os.geteuid() != 0:
        if os.environ.get("CI") or os.environ.get("CANDLEFLOW_REQUIRE_TIMESCALE"):
            pytest.fail(f"the outage test needs root and the TimescaleDB chroot in {CHROOT}")
        pytest.skip(f"needs root and the TimescaleDB chroot in {CHROOT} (built by `make test`)")
    srv = PrivateServer(_free_port())
    srv.start()
    try:
        yield srv
    finally:
        srv.remove()


def _store(dsn: str):
    from infra.stores import TIMESCALE_SCHEMA, TimescaleBarStore

    return TimescaleBarStore(dsn, schema=TIMESCALE_SCHEMA)


def _reset(dsn: str) -> None:
    import psycopg

    from infra.stores import TIMESCALE_SCHEMA

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {TIMESCALE_SCHEMA} CASCADE")
    bars = spx_bars(N_BARS).assign(source="test", ingested_at=datetime(2024, 1, 1, tzinfo=UTC))
    with _store(dsn) as store:
        store.upsert_bars(bars)


def _read(dsn: str) -> dict[str, pd.DataFrame]:
    with _store(dsn) as store:
        return {t: store.read_records(t) for t in TABLES}


def _stream(home: Path, dsn: str, bundle: Path, speed: float) -> subprocess.Popen:
    env = {
        **os.environ,
        "CANDLEFLOW_HOME": str(home),
        "CANDLEFLOW_ENV": "timescale",
        "CANDLEFLOW_TIMESCALE_DSN": dsn,
        "CANDLEFLOW_BROKER": "paper",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("CANDLEFLOW_LIVE", None)
    log = (home / "worker.log").open("a")
    return subprocess.Popen(
        [str(BIN), "stream", "--series", "SPX@1d", "--bundle", str(bundle), "--speed",
         str(speed), "--snapshot-s", "1", "--metrics-port", "0"],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )


def test_stream_when_timescale_restarts_twice_mid_replay_then_run_completes_tables_equal(
    tmp_path: Path, server: PrivateServer
) -> None:
    bundle = sma_bundle().save(tmp_path / "bundle")
    _reset(server.dsn)
    ref_home = tmp_path / "ref"
    ref_home.mkdir()
    assert _stream(ref_home, server.dsn, bundle, speed=0).wait(timeout=300) == 0, (
        (ref_home / "worker.log").read_text()[-3000:]
    )
    reference = _read(server.dsn)
    _reset(server.dsn)

    home = tmp_path / "outage"
    home.mkdir()
    proc = _stream(home, server.dsn, bundle, speed=80)
    log = home / "worker.log"
    deadline = time.monotonic() + 120
    while "event=replay_start" not in log.read_text():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.1)
    for _ in range(OUTAGES):
        time.sleep(1.0)
        assert proc.poll() is None, "the replay ended before the outage; slow it down"
        before = log.read_text().count("event=store_recovered")
        server.kill()
        time.sleep(3.0)  # longer than a snapshot interval: the worker must wait it out
        server.start()
        while log.read_text().count("event=store_recovered") == before:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline + 120, "the worker never wrote again"
            time.sleep(0.1)
    rc = proc.wait(timeout=300)
    text = log.read_text()

    assert rc == 0, text[-3000:]
    # Each outage was waited out and ended: one store_recovered per sink partition that waited.
    recovered = text.count("event=store_recovered")
    assert OUTAGES <= recovered <= OUTAGES * len(LIVE_TABLES), text[-3000:]
    assert "database=timescale 127.0.0.1:" in text
    got = _read(server.dsn)
    bars_ts = set(spx_bars(N_BARS)["ts"])
    assert set(got["live_equity"]["ts"]) == bars_ts  # no bar lost
    assert len(reference["live_orders"]) > 0
    for table, key in TABLES.items():
        a = reference[table].sort_values(key).reset_index(drop=True)
        b = got[table].sort_values(key).reset_index(drop=True)
        assert not b.duplicated(key).any(), table
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=1e-9, obj=table)
