"""[research] pooled = true: the pooled_predictions asset trains one model per fold across the
series of a timeframe, through real Dagster materializations on bundled data."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from assets import data_plane, research
from infra.config import CandleflowConfig
from infra.series import SeriesRegistry, SeriesSpec
from infra.settings import Settings
from orchestration.definitions import build_defs, build_resources
from orchestration.resources import ResearchResource

SERIES = (
    SeriesSpec("SPX", "1d", "bundled", "equity", {"dataset": "sp500"}),
    SeriesSpec("IXIC", "1d", "bundled", "equity", {"dataset": "nasdaq"}),
)
KEY = dg.AssetKey("pooled_predictions")
POOLED = "pooled_xgboost"


def _keys(defs: dg.Definitions) -> set[dg.AssetKey]:
    return set(defs.resolve_asset_graph().get_all_asset_keys())


def test_definitions_when_pooled_set_then_pooled_asset_present_else_absent(tmp_path):
    # Act
    off = build_defs(Settings(home=tmp_path), CandleflowConfig())
    on = build_defs(
        Settings(home=tmp_path), CandleflowConfig.from_mapping({"research": {"pooled": True}})
    )
    # Assert
    assert KEY not in _keys(off)
    assert KEY in _keys(on)


def test_with_pooled_when_pooled_made_on_other_bars_then_series_left_out_with_versions():
    # Arrange: SPX's pooled predictions came from older bars, IXIC's from the snapshot's
    frame = pd.DataFrame({"p_up": [0.5]})
    pooled = {"1d": {"strategy": POOLED, "data_versions": {"SPX@1d": "old", "IXIC@1d": "v2"},
                     "predictions": {"SPX@1d": frame, "IXIC@1d": frame}}}
    per_series = {"SPX@1d": {"xgboost": frame}, "IXIC@1d": {"xgboost": frame}}
    # Act
    merged, left_out = research.with_pooled(per_series, pooled, {"SPX@1d": "v1", "IXIC@1d": "v2"})
    # Assert
    assert sorted(merged["IXIC@1d"]) == [POOLED, "xgboost"]
    assert sorted(merged["SPX@1d"]) == ["xgboost"]
    assert sorted(per_series["IXIC@1d"]) == ["xgboost"]  # the caller's dicts are not changed
    assert left_out == {POOLED: {"SPX@1d": "pooled predictions of data version old, bars "
                                           "snapshot v1"}}


@pytest.mark.slow
def test_pooled_predictions_when_two_series_then_one_fit_per_fold_predictions_each(tmp_path):
    # Arrange
    settings = Settings(home=tmp_path)
    registry = SeriesRegistry(settings.home / "series.json")
    for spec in SERIES:
        registry.put(spec)
    config = CandleflowConfig.from_mapping({"research": {"pooled": True}})
    resources = build_resources(settings, config)
    resources["research"] = ResearchResource(
        config_json=config.to_json(), models=["xgboost"], n_folds=3,
        reports_dir=str(settings.reports_dir),
    )
    per_series = [data_plane.raw_bars, data_plane.validated_bars, research.bars_snapshot,
                  research.features, research.labels]
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("series", [s.key for s in SERIES])
    for spec in SERIES:
        dg.materialize(per_series, partition_key=spec.key, resources=resources, instance=instance)
    # Act
    run = dg.materialize(
        [*per_series, research.pooled_predictions], resources=resources, instance=instance,
        selection=[research.pooled_predictions],
    )
    # Assert
    out = run.output_for_node("pooled_predictions")["1d"]
    assert out["fits"] == 3
    assert sorted(out["predictions"]) == sorted(s.key for s in SERIES)
    for pred in out["predictions"].values():
        assert set(pred["fold"]) == {0, 1, 2}


WALK = [data_plane.raw_bars, data_plane.validated_bars, research.bars_snapshot,
        research.features, research.labels, research.walk_forward]


def _report(resources, instance, *, with_pooled: bool):
    """The report run as the report job runs it; without `with_pooled` the pooled model is the
    one materialized before (a stale pooled_predictions)."""
    portfolio = research.build_portfolio_backtest(pooled=True)
    report = [research.cpcv, portfolio, research.research_report]
    run = dg.materialize(
        [*WALK, research.pooled_predictions, *report], resources=resources, instance=instance,
        selection=[*report, *([research.pooled_predictions] if with_pooled else [])],
    )
    return run, run.output_for_node("portfolio_backtest")["1d"]


@pytest.fixture(scope="module")
def pooled_report(tmp_path_factory):
    """SPX researched, the pooled model trained on SPX alone, then IXIC researched: one report
    with that stale pooled model, then one after the pooled model is retrained on both."""
    home = tmp_path_factory.mktemp("pooled")
    settings = Settings(home=home)
    registry = SeriesRegistry(settings.home / "series.json")
    for spec in SERIES:
        registry.put(spec)
    config = CandleflowConfig.from_mapping({"research": {"pooled": True}})
    resources = build_resources(settings, config)
    resources["research"] = ResearchResource(
        config_json=config.to_json(), models=["xgboost"], n_folds=3,
        reports_dir=str(settings.reports_dir),
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("series", [s.key for s in SERIES])
    dg.materialize(WALK, partition_key=SERIES[0].key, resources=resources, instance=instance)
    dg.materialize([*WALK, research.pooled_predictions], resources=resources, instance=instance,
                   selection=[research.pooled_predictions])
    dg.materialize(WALK, partition_key=SERIES[1].key, resources=resources, instance=instance)
    _, stale = _report(resources, instance, with_pooled=False)
    stale_results = settings.reports_dir / "portfolio_1d" / "inputs" / stale["inputs"]
    run, book = _report(resources, instance, with_pooled=True)
    return settings, run, book, stale, stale_results / "results.json"


@pytest.mark.slow
def test_report_when_pooled_then_pooled_row_trades_as_run_backtest_on_its_predictions(
    pooled_report,
):
    from assets._research_core import _prediction_frame
    from execution.backtest import run_backtest
    from infra.strategy import strategy_for

    settings, run, book, _, _ = pooled_report
    pooled = run.output_for_node("pooled_predictions")["1d"]["predictions"]
    results = json.loads((settings.reports_dir / "portfolio_1d" / "results.json").read_text())
    # Act: the pooled predictions traded directly, without the report's code
    with build_resources(settings)["bar_store"].open() as store:
        frames = {s.key: store.read_bars(s.symbol, s.timeframe) for s in SERIES}
    direct = run_backtest(
        pd.concat([frames[k][frames[k]["ts"] >= p.index[0]] for k, p in pooled.items()],
                  ignore_index=True),
        pd.concat([_prediction_frame(k.split("@")[0], p) for k, p in pooled.items()],
                  ignore_index=True),
        strategy_for(SERIES[0]),
    )
    # Assert
    assert sorted(pooled) == sorted(s.key for s in SERIES)
    row = next(r for r in results["strategies"] if r["strategy"] == POOLED)
    assert row["kind"] == "model"
    assert "warnings" not in row
    pd.testing.assert_frame_equal(book["strategies"][POOLED]["trades"], direct.trades)
    assert row["n_trades"] == len(direct.trades) > 0
    # the pooled fit is one more configuration tried: every model row is deflated by both
    assert book["trials"] == {"xgboost": 1, POOLED: 1}
    assert {r["n_trials"] for r in results["strategies"] if r["kind"] == "model"} == {2}


@pytest.mark.slow
def test_report_when_pooled_model_predates_a_series_then_row_warns_and_trades_the_rest(
    pooled_report,
):
    _, _, _, stale, _ = pooled_report
    # Assert: the stale pooled model knew SPX only
    traded = set(stale["strategies"][POOLED]["fills"]["symbol"])
    assert traded == {"SPX"}
    assert set(stale["strategies"]["xgboost"]["fills"]["symbol"]) == {"SPX", "IXIC"}
    assert stale["warnings"][POOLED] == [
        "IXIC@1d: left out: no pooled predictions; run `candleflow research --series IXIC@1d`"
    ]


@pytest.mark.slow
def test_pooled_predictions_when_materialized_then_mlflow_run_holds_folds_and_models(
    pooled_report,
):
    import mlflow

    settings, run, _, _, _ = pooled_report
    run_id = run.output_for_node("pooled_predictions")["1d"]["mlflow_run"]
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_uri)
    # Act
    logged = client.get_run(run_id)
    # Assert
    assert logged.data.tags["candleflow.role"] == "pooled"
    assert logged.data.params["n_series"] == "2"
    assert logged.data.params["family"] == "xgboost"
    steps = client.get_metric_history(run_id, "fold_n_train")
    assert [m.step for m in sorted(steps, key=lambda m: m.step)] == [0, 1, 2]
    assert 0.0 <= logged.data.metrics["oos_accuracy"] <= 1.0
    models = {f.path for f in client.list_artifacts(run_id, "model")}
    assert models == {"model/fold_0", "model/fold_1", "model/fold_2"}


@pytest.mark.slow
def test_reproduce_when_report_traded_pooled_model_then_numbers_rebuilt_exactly(pooled_report):
    from assets._reproduce import reproduce

    settings, _, _, _, stale_results = pooled_report
    for path in (settings.reports_dir / "portfolio_1d" / "results.json", stale_results):
        # Act
        recorded, diffs = reproduce(path)
        # Assert
        assert POOLED in {r["strategy"] for r in recorded["strategies"]}
        assert diffs == []
