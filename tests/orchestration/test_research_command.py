"""`candleflow research` end to end through Dagster, with a small recipe from a config file:
one good series, one fully quarantined series, a built-in and a user model family (the
examples/ one, by import path); the deployed family chosen by rule; provenance recorded."""

from __future__ import annotations

import json

import dagster as dg
import mlflow
import pytest

from assets.research import left_out_of, same_version_only, usable_series
from infra.config import CandleflowConfig
from infra.settings import Settings
from orchestration.commands import series_specs_for_research
from orchestration.demo import print_results, run_research

# Every row breaks the contract (high below low): nothing can be accepted.
BAD_CSV = "Date,Open,High,Low,Close,Volume\n" + "".join(
    f"2024-01-{d:02d},10,9,11,10,100\n" for d in range(2, 28)
)


@pytest.fixture(scope="module")
def researched(tmp_path_factory):
    root = tmp_path_factory.mktemp("research")
    (root / "bad.csv").write_text(BAD_CSV)
    (root / "candleflow.toml").write_text(
        """
[[universe.series]]
symbol = "SPX"
timeframe = "1d"
source = "bundled"
options = { dataset = "sp500" }

[[universe.series]]
symbol = "BAD"
timeframe = "1d"
source = "file"
options = { path = "bad.csv", tz = "UTC" }

[research]
models = ["xgboost", "examples.user_model:LogisticModel"]
baselines = ["buy_and_hold", "flat"]
n_folds = 2
xgb_estimators = 40
min_trades = 1
"""
    )
    settings = Settings(home=root / "home")
    config = CandleflowConfig.from_file(root / "candleflow.toml")
    said: list[str] = []
    code = run_research(
        settings, config, series_specs_for_research(settings, config, None), say=said.append
    )
    return settings, config, code, said


@pytest.mark.slow
def test_research_when_one_series_fully_quarantined_then_it_fails_with_reason_and_no_partition(
    researched,
):
    settings, _, code, said = researched

    assert code == 1
    text = "\n".join(said)
    assert "step validated_bars failed: BAD@1d: no bars stored" in text
    assert "high" in text.split("BAD@1d: no bars stored")[1].splitlines()[0]
    assert "FAILED series: BAD@1d" in text
    instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
    assert instance.get_dynamic_partitions("series") == ["SPX@1d"]


@pytest.mark.slow
def test_research_when_done_then_results_carry_data_version_code_and_config_hash(
    researched, capsys
):
    settings, config, _, _ = researched

    results = json.loads((settings.reports_dir / "portfolio_1d" / "results.json").read_text())
    print_results(settings, as_json=False)
    shown = capsys.readouterr().out

    assert results["series"] == ["SPX@1d"]
    names = [r["strategy"] for r in results["strategies"]]
    assert names[:2] == ["xgboost", "examples.user_model:LogisticModel"]
    assert results["config_hash"] == config.config_hash
    assert len(results["data_version"]) == 16 and results["code_revision"]
    assert f"config: {config.config_hash}" in shown and results["data_version"] in shown
    client = mlflow.MlflowClient(settings.mlflow_uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("candleflow").experiment_id],
        filter_string="tags.`candleflow.series` = 'SPX@1d'",
    )
    assert runs and all(r.data.tags["candleflow.config_hash"] == config.config_hash for r in runs)
    assert {r.data.tags["candleflow.data_version"] for r in runs} == set(
        results["data_versions"].values()
    )
    deployable = [r for r in runs if r.data.tags.get("candleflow.role") == "deployable"]
    choice = deployable[0].data.tags["candleflow.family_choice"]
    assert choice.startswith(deployable[0].data.tags["candleflow.family"] + ": ")
    assert "OOS trades" in choice and "LogisticModel" in choice


def test_usable_series_when_some_lack_predictions_then_left_out_with_a_warning():
    usable, left_out = usable_series(
        {"A@1d": {}, "B@1d": {}}, {"A@1d": object()}, ["A@1d", "B@1d", "C@1d"]
    )

    assert usable == ["A@1d"]
    assert left_out == {
        "B@1d": "B@1d: left out: no bars snapshot; run `candleflow research --series B@1d`",
        "C@1d": "C@1d: left out: no predictions; run `candleflow research --series C@1d`",
    }


def test_left_out_of_when_series_of_two_timeframes_left_out_then_each_portfolio_names_its_own():
    _, left_out = usable_series(
        {"MYSPX@1d": {}, "EURUSD@1h": {}},
        {"MYSPX@1d": object(), "EURUSD@1h": object()},
        ["MYSPX@1d", "MYDE@1d", "EURUSD@1h", "GBPUSD@1h"],
    )

    assert left_out_of(left_out, "1d") == [left_out["MYDE@1d"]]
    assert left_out_of(left_out, "1h") == [left_out["GBPUSD@1h"]]
    assert left_out_of(left_out, "1w") == []


def test_same_version_only_when_predictions_older_than_snapshot_then_left_out_naming_both():
    usable, left_out = same_version_only(
        ["A@1d", "B@1d", "C@1d"], {}, {"A@1d": "v1", "B@1d": "v1", "C@1d": None},
        {"A@1d": "v1", "B@1d": "v2", "C@1d": "v9"},
    )

    assert usable == ["A@1d", "C@1d"]  # C: recorded before predictions carried a version
    assert left_out == {
        "B@1d": "B@1d: left out: predictions of data version v1, bars snapshot v2; run "
        "`candleflow research --series B@1d`"
    }
