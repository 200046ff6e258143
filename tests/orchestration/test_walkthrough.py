"""examples/walkthrough.sh as a user runs it (a Yahoo-style and a dd.mm.yyyy CSV of real index
bars → ingest → research → results), then what happens to its report afterwards: new bars
ingested for a researched series, and series registered but never researched."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from examples.user_model import LogisticModel
from examples.walkthrough_csvs import write_sample_csvs
from infra.config import CandleflowConfig
from infra.series import SeriesRegistry
from infra.settings import Settings
from infra.stores import store_for
from orchestration.demo import print_results, run_report, run_research

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "candleflow"
QUICK = """
[research]
models = ["xgboost"]
baselines = ["buy_and_hold", "flat"]
n_folds = 2
xgb_estimators = 40
min_trades = 1
"""
STEPS = ("sample CSVs", "ingest SPX500@1d", "ingest NASDAQ@1d", "first stored NASDAQ bars",
         "research SPX500@1d NASDAQ@1d", "results")


def _cli(home: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CANDLEFLOW_HOME": str(home), "CANDLEFLOW_CONFIG": str(config),
           "CANDLEFLOW_ENV": "local"}
    out = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True,
                         check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def _numbers(results: dict) -> dict:
    """What a report computed: the strategies' metrics, the series and their data versions."""
    return {k: results[k] for k in ("series", "strategies", "data_version", "data_versions",
                                    "oos_start", "oos_end")}


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    work = tmp_path_factory.mktemp("walkthrough")
    config = work / "quick.toml"
    config.write_text(QUICK)
    env = {**os.environ, "CANDLEFLOW_HOME": str(work / "home"), "CANDLEFLOW_CONFIG": str(config),
           "CANDLEFLOW_ENV": "local", "PYTHON": sys.executable, "CANDLEFLOW": str(BIN)}
    done = subprocess.run([str(ROOT / "examples" / "walkthrough.sh"), str(work)], env=env,
                          capture_output=True, text=True, check=False, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    settings = Settings(home=work / "home")
    results = json.loads((settings.reports_dir / "portfolio_1d" / "results.json").read_text())
    return work, config, settings, done, results


@pytest.mark.slow
def test_walkthrough_when_run_then_report_names_both_series_and_each_step_is_timed(walked):
    work, _, settings, done, results = walked

    assert results["series"] == ["NASDAQ@1d", "SPX500@1d"]
    html = (settings.reports_dir / "portfolio_1d" / "report.html").read_text()
    assert "NASDAQ@1d" in html and "SPX500@1d" in html
    assert "series: NASDAQ@1d, SPX500@1d" in done.stdout
    timed = done.stderr.split("== wall time per step")[1].strip().splitlines()
    assert [line.split("  ")[0].split(" (")[0] for line in timed] == list(STEPS)
    assert all(re.search(r"\d+\.\d s$", line) for line in timed)
    # The dd.mm.yyyy file, whose first days are all <= 12, was read day first: every session
    # of the CSV is stored on its own date.
    csv = pd.read_csv(work / "ixic_dmy.csv")
    expected = pd.to_datetime(csv["Date"], format="%d.%m.%Y", utc=True)
    store = store_for(settings)
    try:
        stored = store.read_bars("NASDAQ", "1d")
    finally:
        store.close()
    assert list(stored["ts"]) == list(expected)
    assert stored["ts"].iloc[0] == pd.Timestamp("2013-01-02", tz="UTC")


@pytest.mark.slow
def test_report_when_rerun_after_new_bars_ingested_then_reproduces_its_numbers(walked):
    work, config_path, settings, _, results = walked
    config = CandleflowConfig.from_file(config_path)
    store = store_for(settings)
    try:
        before = store.count_bars("SPX500", "1d")
    finally:
        store.close()
    later = write_sample_csvs(work / "later", "2017-01-01", "2017-06-30")
    _cli(settings.home, config_path, "ingest", "--file", str(later["spx_yahoo"]),
         "--symbol", "SPX500", "--timeframe", "1d")
    store = store_for(settings)
    try:
        after = store.count_bars("SPX500", "1d")
    finally:
        store.close()

    assert run_report(settings, config, say=lambda _: None)
    again = json.loads((settings.reports_dir / "portfolio_1d" / "results.json").read_text())

    assert after > before  # the store moved on ...
    assert _numbers(again) == _numbers(results)  # ... the report read its pinned version


@pytest.mark.slow
def test_report_when_series_registered_but_never_researched_then_named_in_its_own_portfolio(
    walked, capsys
):
    work, config_path, settings, _, _ = walked
    config = CandleflowConfig.from_file(config_path)
    _cli(settings.home, config_path, "ingest", "--file", str(work / "spx_yahoo.csv"),
         "--symbol", "SAP", "--timeframe", "1d")
    hourly = work / "hourly.csv"
    closes = pd.read_csv(work / "spx_yahoo.csv").head(48)
    closes["Date"] = pd.date_range("2024-01-02 00:00", periods=48, freq="h", tz="UTC")
    closes.to_csv(hourly, index=False)
    _cli(settings.home, config_path, "ingest", "--file", str(hourly), "--symbol", "HOURLY",
         "--timeframe", "1h")

    assert run_report(settings, config, say=lambda _: None)
    results = json.loads((settings.reports_dir / "portfolio_1d" / "results.json").read_text())
    html = (settings.reports_dir / "portfolio_1d" / "report.html").read_text()
    print_results(settings, as_json=False)
    shown = capsys.readouterr().out

    sap = "SAP@1d: left out: no predictions; run `candleflow research --series SAP@1d`"
    assert results["series"] == ["NASDAQ@1d", "SPX500@1d"]
    assert results["left_out"] == [sap]  # HOURLY@1h is no part of the 1d portfolio
    assert sap in html
    assert "HOURLY" not in html
    logged = mlflow.MlflowClient(settings.mlflow_uri).download_artifacts(
        results["mlflow_runs"]["report"], "report/report.html", str(work / "logged")
    )
    assert sap in Path(logged).read_text()  # the self-contained copy in MLflow says it too
    assert f"warning: {sap}" in shown
    assert "warning: HOURLY@1h: left out: no predictions" in shown


class BrokenModel(LogisticModel):
    """A user family whose training fails: its research run stops after the bars snapshot."""

    name = "tests.orchestration.test_walkthrough:BrokenModel"

    def fit(self, X, y, sample_weight=None):
        msg = "this family never trains"
        raise RuntimeError(msg)


@pytest.mark.slow
def test_report_when_research_failed_after_a_new_snapshot_then_series_left_out_not_mixed(
    walked, tmp_path
):
    work, config_path, settings, _, _ = walked
    shutil.copytree(settings.home, tmp_path / "home")
    copy = Settings(home=tmp_path / "home")
    later = write_sample_csvs(work / "later_ixic", "2017-01-01", "2017-06-30")
    _cli(copy.home, config_path, "ingest", "--file", str(later["ixic_dmy"]), "--symbol", "NASDAQ",
         "--timeframe", "1d")
    broken = tmp_path / "broken.toml"
    broken.write_text(QUICK.replace('models = ["xgboost"]', f'models = ["{BrokenModel.name}"]'))
    spec = SeriesRegistry(copy.home / "series.json").get("NASDAQ@1d")
    said: list[str] = []

    failed = run_research(copy, CandleflowConfig.from_file(broken), [spec], say=said.append)
    assert run_report(copy, CandleflowConfig.from_file(config_path), say=said.append)
    results = json.loads((copy.reports_dir / "portfolio_1d" / "results.json").read_text())

    step = "walk_forward.fit_family[tests_orchestration_test_walkthrough_BrokenModel]"
    [line] = [s for s in said if s.strip().startswith(f"step {step} failed: ")]
    assert failed == 1 and line.endswith("this family never trains")
    assert results["series"] == ["SPX500@1d"]  # not NASDAQ's old predictions on its new bars
    [warning] = [w for w in results["left_out"] if w.startswith("NASDAQ@1d")]
    assert re.fullmatch(
        r"NASDAQ@1d: left out: predictions of data version [0-9a-f]{16}, bars snapshot "
        r"[0-9a-f]{16}; run `candleflow research --series NASDAQ@1d`",
        warning,
    )


@pytest.mark.slow
def test_reproduce_when_research_reran_on_new_bars_then_the_older_report_is_rebuilt_exactly(
    walked, tmp_path
):
    from assets._reproduce import reproduce

    work, config_path, settings, _, results = walked
    shutil.copytree(settings.home, tmp_path / "home")
    copy = Settings(home=tmp_path / "home")
    config = CandleflowConfig.from_file(config_path)
    old = copy.reports_dir / "portfolio_1d" / "inputs" / results["inputs"] / "results.json"
    later = write_sample_csvs(work / "later_spx", "2017-01-01", "2017-06-30")
    _cli(copy.home, config_path, "ingest", "--file", str(later["spx_yahoo"]), "--symbol",
         "SPX500", "--timeframe", "1d")
    spec = SeriesRegistry(copy.home / "series.json").get("SPX500@1d")
    assert run_research(copy, config, [spec], say=lambda _: None) == 0
    assert run_report(copy, config, say=lambda _: None)
    latest = json.loads((copy.reports_dir / "portfolio_1d" / "results.json").read_text())
    assert latest["data_versions"]["SPX500@1d"] != results["data_versions"]["SPX500@1d"]

    recorded, diffs = reproduce(old)
    shown = _cli(copy.home, config_path, "reproduce", str(old))

    assert recorded["strategies"] == results["strategies"]  # the older report, kept whole
    assert diffs == []
    assert "reproduced exactly" in shown.stderr
    # The comparison can fail: traded on other predictions, the rebuilt numbers differ.
    kept = old.parent / "predictions" / "0" / "xgboost.parquet"
    frame = pd.read_parquet(kept)
    frame[:] = frame.to_numpy()[::-1]
    frame.to_parquet(kept)
    _, tampered = reproduce(old)
    assert any(line.startswith("xgboost.") for line in tampered)
