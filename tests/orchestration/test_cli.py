"""The CLI as a user runs it: a real subprocess, a real embedded store under a temp home."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "candleflow"


def run(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CANDLEFLOW_HOME": str(home), "CANDLEFLOW_ENV": "local", **(env or {})}
    return subprocess.run(
        [str(BIN), *args], env=env, capture_output=True, text=True, check=False, timeout=300
    )


CSV = """Date,Open,High,Low,Close,Volume
2024-01-02,10,11,9,10.5,100
2024-01-03,10.5,12,10,11.5,120
2024-01-04,11.5,11.8,11,11.2,90
2024-01-05,11.2,11.0,12,11.6,80
2024-01-05,11.2,11.9,11,11.6,80
not-a-date,1,2,0.5,1.5,10
"""


def test_ingest_when_file_has_usual_columns_and_bad_rows_then_json_accounting_holds(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text(CSV)

    first = run(tmp_path / "home", "ingest", "--file", str(path), "--symbol", "ACME",
                "--timeframe", "1d", "--tz", "UTC")
    second = run(tmp_path / "home", "ingest", "--file", str(path), "--symbol", "ACME",
                 "--timeframe", "1d", "--tz", "UTC")

    assert first.returncode == 0, first.stderr
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert one["rows_in"] == 6
    assert one["rows_in"] == one["accepted"] + one["quarantined"]
    assert one["quarantined"] >= 2  # high < low, unparseable timestamp (and the duplicate key)
    assert one["written"] == one["accepted"] > 0
    assert two["written"] == 0 and two["accepted"] == one["accepted"]


def test_bars_when_csv_format_then_header_then_one_bar_a_line(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text(CSV)
    run(tmp_path / "home", "ingest", "--file", str(path), "--symbol", "ACME", "--timeframe", "1d",
        "--tz", "UTC")

    out = run(tmp_path / "home", "bars", "--symbol", "ACME", "--timeframe", "1d",
              "--start", "2024-01-03", "--format", "csv")

    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["ts"][:10] for r in rows] == ["2024-01-03", "2024-01-04", "2024-01-05"]
    assert float(rows[0]["close"]) == 11.5


@pytest.mark.parametrize(
    ("content", "reason"),
    [("a,b\n1,2\n", "no ts column"), (None, "not found")],
)
def test_ingest_when_input_unusable_then_nonzero_exit_and_one_line_reason(
    tmp_path, content, reason
):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)

    out = run(tmp_path / "home", "ingest", "--file", str(path), "--symbol", "X",
              "--timeframe", "1d")

    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("candleflow: error:") and reason in last.lower()
    assert out.stdout == ""


@pytest.mark.timescale
def test_ingest_when_timescale_env_then_dagster_resource_reads_the_same_bars(
    tmp_path, timescale_dsn
):
    from orchestration.resources import BarStoreResource

    path = tmp_path / "prices.csv"
    path.write_text(CSV)
    symbol = f"CLI{uuid.uuid4().hex[:8].upper()}"
    env = {"CANDLEFLOW_ENV": "timescale", "CANDLEFLOW_TIMESCALE_DSN": timescale_dsn}

    out = run(tmp_path / "home", "ingest", "--file", str(path), "--symbol", symbol,
              "--timeframe", "1d", "--tz", "UTC", env=env)

    assert out.returncode == 0, out.stderr
    accepted = json.loads(out.stdout)["accepted"]
    with BarStoreResource(kind="timescale", dsn=timescale_dsn).open() as store:
        assert store.count_bars(symbol, "1d") == accepted
