"""The research graph through real Dagster materializations, real MLflow (SQLite) and the
embedded store, on bundled real data for two symbols."""

from __future__ import annotations

import json

import dagster as dg
import mlflow
import pytest

from assets import data_plane, research
from infra.series import SeriesRegistry, SeriesSpec
from infra.settings import Settings
from infra.tracking import registered_model_name
from orchestration.definitions import build_resources
from orchestration.resources import ResearchResource

SERIES = (
    SeriesSpec("SPX", "1d", "bundled", "equity", {"dataset": "sp500"}),
    SeriesSpec("IXIC", "1d", "bundled", "equity", {"dataset": "nasdaq"}),
)
PER_SERIES = [
    data_plane.raw_bars,
    data_plane.validated_bars,
    research.bars_snapshot,
    research.features,
    research.labels,
    research.walk_forward,
    research.deployable_model,
]


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home)
    registry = SeriesRegistry(home / "series.json")
    for spec in SERIES:
        registry.put(spec)
    resources = build_resources(settings)
    resources["research"] = ResearchResource(
        models=["xgboost", "xgboost_garch"], n_folds=3, reports_dir=str(settings.reports_dir)
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("series", [s.key for s in SERIES])
    runs = [
        dg.materialize(PER_SERIES, partition_key=s.key, resources=resources, instance=instance)
        for s in SERIES
    ]
    report = dg.materialize(
        [*PER_SERIES, research.cpcv, research.portfolio_backtest, research.research_report],
        resources=resources,
        instance=instance,
        selection=[research.cpcv, research.portfolio_backtest, research.research_report],
    )
    return settings, runs, report


@pytest.mark.slow
def test_research_graph_when_materialized_then_checks_pass_and_lineage_recorded(materialized):
    settings, runs, report = materialized

    for run in runs:
        checks = {e.check_name: e.passed for e in run.get_asset_check_evaluations()}
        assert checks["no_look_ahead"]
        assert checks["label_fill_alignment"]
        assert checks["bar_contract_suite"]
    checks = {e.check_name: e.passed for e in report.get_asset_check_evaluations()}
    assert checks["metric_consistency"]
    for evaluation in report.get_asset_check_evaluations():
        assert "1d: IXIC@1d, SPX@1d" in evaluation.description
    look = next(e for e in runs[0].get_asset_check_evaluations() if e.check_name == "no_look_ahead")
    assert look.description.startswith(f"{SERIES[0].key}: ")
    book_meta = next(iter(report.asset_materializations_for_node("portfolio_backtest"))).metadata
    assert isinstance(book_meta["1d.xgboost.sharpe"], dg.FloatMetadataValue)
    assert "| xgboost | model |" in book_meta["scorecard_1d"].value
    oos_meta = next(
        m.metadata
        for m in runs[0].asset_materializations_for_node("walk_forward")
        if m.asset_key == dg.AssetKey("oos_predictions")
    )
    for family in ("xgboost", "xgboost_garch", "buy_and_hold"):
        assert isinstance(oos_meta[f"{family}.n_trades"], dg.FloatMetadataValue), family
    assert "| buy_and_hold | baseline |" in oos_meta["scorecard"].value
    wf_meta = next(
        m.metadata
        for m in runs[0].asset_materializations_for_node("walk_forward")
        if m.asset_key == dg.AssetKey("oos_predictions")
    )
    run_ids = wf_meta["mlflow_runs"].value
    client = mlflow.MlflowClient(settings.mlflow_uri)
    logged = client.get_run(run_ids["xgboost"])
    assert logged.data.tags["candleflow.data_fingerprint"]
    assert logged.data.tags["candleflow.git_revision"]
    assert any(k.startswith("fold_") for k in logged.data.metrics)
    # Trading metrics of the OOS predictions sit beside the classification metrics.
    assert {"oos_sharpe", "oos_total_return", "oos_max_drawdown", "oos_trades"} <= set(
        logged.data.metrics
    )
    assert "oos_accuracy" in logged.data.metrics


@pytest.mark.slow
def test_research_report_when_materialized_then_html_and_results_match_metrics(materialized):
    settings, _, report = materialized

    results = json.loads((settings.reports_dir / "portfolio_1d" / "results.json").read_text())
    summary = json.loads((settings.reports_dir / "portfolio_1d" / "summary.json").read_text())

    assert results["series"] == ["IXIC@1d", "SPX@1d"]
    names = [r["strategy"] for r in results["strategies"]]
    assert names == [
        "xgboost", "xgboost_garch", "sma_crossover", "flat", "always_long", "buy_and_hold"
    ]
    rows = {r["strategy"]: r for r in results["strategies"]}
    for row in results["strategies"]:
        metrics = summary["strategies"][row["strategy"]]["metrics"]
        assert row["n_trades"] == metrics["n_trades"]
    # Two benchmarks, labelled apart; every model deflated for all configurations tried.
    assert "no sizing, stops or risk rules" in rows["buy_and_hold"]["description"]
    assert "risk rules" in rows["always_long"]["description"]
    assert rows["buy_and_hold"]["n_trades"] == len(results["series"])
    assert rows["xgboost"]["n_trials"] == rows["xgboost_garch"]["n_trials"] >= 2
    assert rows["flat"]["n_trials"] == 1
    assert "min_trl_years" in rows["xgboost"]
    # CPCV ran for SPX (the GARCH-free family only): phi = k/N * C(N, k) paths
    cpcv = results["cpcv"]["SPX@1d"]
    assert cpcv["path_sharpe"]["xgboost"]["paths"] == cpcv["n_paths"] == 5
    assert "CSCV needs at least 2" in cpcv["pbo_note"]
    html = (settings.reports_dir / "portfolio_1d" / "report.html").read_text()
    assert (settings.reports_dir / "portfolio_1d" / "plotly.min.js").is_file()
    assert "Monthly returns" in html
    assert "Deflated Sharpe" in html
    importance = html[html.index('<section id="importance">') :][:600]
    assert "not provided" not in importance.lower()
    assert "xgboost gain importance" in importance
    assert "IXIC@1d" in importance and "SPX@1d" in importance
    trades = html[html.index('<section id="trades">') : html.index('<section id="trade_pnl">')]
    assert "IXIC: xgboost trades" in trades and "SPX: xgboost trades" in trades
    assert "Combinatorial purged cross-validation" in html


@pytest.mark.slow
def test_deployable_model_when_registered_then_alias_follows_promotion_rule(materialized):
    settings, runs, _ = materialized
    client = mlflow.MlflowClient(settings.mlflow_uri)

    for spec, run in zip(SERIES, runs, strict=True):
        meta = next(iter(run.asset_materializations_for_node("deployable_model"))).metadata
        name = registered_model_name(spec.symbol, spec.timeframe)
        challenger = client.get_model_version_by_alias(name, "challenger")
        assert str(challenger.version) == meta["version"].value
        promoted = meta["promotion"].value.startswith("promoted")
        sharpe, trades = meta["oos_sharpe"].value, meta["oos_trades"].value
        assert promoted == (sharpe > 0 and trades >= 10)
        if promoted:
            champion = client.get_model_version_by_alias(name, "champion")
            assert champion.version == challenger.version
