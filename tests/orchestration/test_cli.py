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


def _one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode != 0, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("candleflow: error:"), out.stderr
    return last


@pytest.fixture(scope="module")
def spx_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("spx") / "home"
    out = run(home, "ingest", "--source", "bundled", "--dataset", "sp500", "--symbol", "SPX",
              "--timeframe", "1d")
    assert out.returncode == 0, out.stderr
    return home


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("ingest", "--source", "bundled", "--dataset", "sp500", "--symbol", "SPX",
          "--timeframe", "2d"), {}, "unknown timeframe '2d'"),
        (("ingest", "--source", "binance", "--symbol", "BTCUSDT", "--timeframe", "1h",
          "--start", "last-week"), {}, "cannot parse time 'last-week'"),
        (("stream", "--series", "SPX", "--metrics-port", "0"), {}, "is not SYMBOL@TIMEFRAME"),
        (("stream", "--series", "SPX@1d", "--metrics-port", "0"), {},
         "has no model in the registry"),
        (("stream", "--metrics-port", "0"), {"CANDLEFLOW_BROKER": "mt5"},
         "needs the explicit opt-in"),
        (("stream", "--metrics-port", "0"), {"CANDLEFLOW_BROKER": "mt5", "CANDLEFLOW_LIVE": "1"},
         "MetaTrader5 package is not installed"),
        (("stream", "--metrics-port", "0"), {"CANDLEFLOW_LIVE": "1"},
         "CANDLEFLOW_BROKER is not set"),
        (("stream", "--series", "SPX@1d", "--bundle", "/nope", "--metrics-port", "0"), {},
         "--bundle /nope: no such file"),
        (("bars", "--symbol", "SPY", "--timeframe", "1d"), {}, "stored series: SPX@1d"),
    ],
    ids=["timeframe-2d", "start-last-week", "series-no-timeframe", "no-model", "mt5-no-opt-in",
         "mt5-not-installed", "live-without-broker", "bundle-missing", "bars-unknown-series"],
)
def test_cli_when_user_error_then_one_line_and_nonzero_exit(spx_home, args, env, says):
    out = run(spx_home, *args, env=env)

    assert says in _one_line_error(out)


def test_stream_when_promotion_rule_rejected_the_model_then_says_so_and_how_to_deploy(spx_home):
    import mlflow

    from infra.settings import Settings

    settings = Settings.from_env({"CANDLEFLOW_HOME": str(spx_home)})
    (spx_home / "mlflow").mkdir(exist_ok=True)
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_uri)
    client.create_registered_model("candleflow.SPX.1d")
    exp = client.create_experiment("t", artifact_location=(spx_home / "art").as_uri())
    run_id = client.create_run(exp).info.run_id
    mv = client.create_model_version("candleflow.SPX.1d", f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias("candleflow.SPX.1d", "challenger", mv.version)
    client.set_model_version_tag("candleflow.SPX.1d", mv.version, "promotion",
                                 "not promoted: dsr=0.1200 <= 0.95")

    out = run(spx_home, "stream", "--series", "SPX@1d", "--metrics-port", "0")

    line = _one_line_error(out)
    assert "promotion rule rejected candleflow.SPX.1d v1 (not promoted: dsr=0.1200" in line
    assert f"mlflow artifacts download -r {run_id} -a model" in line and "--bundle" in line


def test_bars_when_reader_closes_the_pipe_then_no_traceback(spx_home):
    env = {**os.environ, "CANDLEFLOW_HOME": str(spx_home), "CANDLEFLOW_ENV": "local"}
    proc = subprocess.Popen([str(BIN), "bars", "--symbol", "SPX", "--timeframe", "1d"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)

    assert "Traceback" not in err and "BrokenPipe" not in err
    assert proc.returncode == 141


def test_version_when_asked_then_prints_package_version(tmp_path):
    from importlib.metadata import version

    out = run(tmp_path, "--version")

    assert out.returncode == 0
    assert out.stdout.strip() == f"candleflow {version('candleflow')}"


def test_kill_switch_when_on_flatten_then_plain_on_then_flatten_still_pending(tmp_path):
    first = run(tmp_path, "kill-switch", "on", "--flatten")
    second = run(tmp_path, "kill-switch", "on")

    assert first.returncode == second.returncode == 0
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert two == one and two["flatten"] is True
    assert "kept the pending flatten" in second.stderr


def test_ingest_when_nothing_accepted_then_nonzero_with_top_reasons_and_hint(tmp_path):
    path = tmp_path / "closes.csv"  # daily bars stamped at 16:00 with no zone: naive instants
    path.write_text("Date,Open,High,Low,Close,Volume\n2024-01-02 16:00,1,2,0.5,1.5,10\n"
                    "2024-01-03 16:00,1,2,0.5,1.5,10\n")

    out = run(tmp_path / "home", "ingest", "--file", str(path), "--symbol", "NONE",
              "--timeframe", "1d")

    assert out.returncode != 0
    assert json.loads(out.stdout)["accepted"] == 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("candleflow: error: nothing accepted for NONE@1d: 2 of 2 rows")
    assert "naive_ts 2" in last and "--tz" in last and "candleflow quarantine" in last
    assert not (tmp_path / "home" / "series.json").exists()  # nothing to research: no series


@pytest.mark.parametrize("store", ["local", pytest.param("timescale", marks=pytest.mark.timescale)])
def test_quarantine_when_rows_were_quarantined_then_printed_with_their_reason(
    tmp_path, store, request
):
    path = tmp_path / "prices.csv"
    path.write_text(CSV)
    symbol = f"Q{uuid.uuid4().hex[:8].upper()}"
    env = {"CANDLEFLOW_ENV": store}
    if store == "timescale":
        env["CANDLEFLOW_TIMESCALE_DSN"] = request.getfixturevalue("timescale_dsn")
    run(tmp_path / "home", "ingest", "--file", str(path), "--symbol", symbol, "--timeframe", "1d",
        env=env)

    out = run(tmp_path / "home", "quarantine", "--symbol", symbol, "--timeframe", "1d",
              "--format", "json", env=env)

    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert sorted(r["reason"] for r in rows) == ["high_below_low", "unparseable_ts"]
    assert any("not-a-date" in r["raw"] for r in rows)
    assert "2 quarantined rows" in out.stderr


def test_stream_when_strategy_names_a_rule_that_is_gone_then_one_line_user_error(
    spx_home, tmp_path
):
    from tests.streaming.conftest import sma_bundle

    bundle = sma_bundle().save(tmp_path / "bundle")
    strategy = tmp_path / "strategy.json"
    strategy.write_text(json.dumps({"rule": "execution.decision:gone"}))

    out = run(spx_home, "stream", "--series", "SPX@1d", "--bundle", str(bundle), "--strategy",
              str(strategy), "--metrics-port", "0")

    line = _one_line_error(out)
    assert out.returncode == 2
    assert "unexpected" not in line
    assert "execution.decision:gone" in line and "has no attribute" in line
