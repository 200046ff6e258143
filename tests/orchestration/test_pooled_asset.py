"""[research] pooled = true: the pooled_predictions asset trains one model per fold across the
series of a timeframe, through real Dagster materializations on bundled data."""

from __future__ import annotations

import dagster as dg
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
