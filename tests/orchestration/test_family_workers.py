"""[executor] family_workers: the walk_forward step fits one series' model families in several
processes, and what it logs and returns equals the sequential run."""

from __future__ import annotations

import pandas as pd
import pytest

from assets import _research_core as core
from infra.config import ConfigFileError, ExecutorSection
from infra.series import SeriesSpec
from infra.tracking import ModelTracker, TrackingConfig
from ml.pipeline import ResearchConfig
from tests.ml.conftest import sp500_bars

SPEC = SeriesSpec("SPX", "1d", "bundled", "equity", {"dataset": "sp500"})
CFG = ResearchConfig(models=("xgboost", "xgboost_garch"), n_folds=2, xgb_estimators=10)


def test_family_processes_when_budget_configured_then_bounded_by_it_and_the_families():
    # Act / Assert
    assert ExecutorSection().family_processes(6) == 1  # default: one after another
    assert ExecutorSection(family_workers=0, max_concurrent=3).family_processes(6) == 3
    assert ExecutorSection(family_workers=0, max_concurrent=3).family_processes(2) == 2
    assert ExecutorSection(family_workers=4).family_processes(6) == 4
    assert ExecutorSection(family_workers=4).family_processes(1) == 1


def test_config_when_family_workers_given_then_parsed_and_negative_refused():
    # Act
    cfg = ExecutorSection.from_mapping({"family_workers": 2})
    # Assert
    assert cfg.family_workers == 2
    assert cfg.to_dict()["family_workers"] == 2
    with pytest.raises(ConfigFileError, match="family_workers must be >= 0"):
        ExecutorSection.from_mapping({"family_workers": -1})


@pytest.mark.slow
def test_walk_forward_all_when_families_fit_in_processes_then_equal_to_sequential(tmp_path):
    # Arrange: the same series researched twice, into two MLflow stores
    bars = sp500_bars().iloc[-900:].reset_index(drop=True)
    feats = core.features_of(bars, CFG)
    labels = core.labels_of(bars, CFG)
    out = {}
    for workers in (1, 2):
        root = tmp_path / f"w{workers}"
        tracker = ModelTracker(TrackingConfig(f"sqlite:///{root / 'mlflow.db'}", root / "art"))
        # Act
        out[workers] = core.walk_forward_all(
            SPEC, feats, labels, CFG, tracker, log=lambda _: None, dagster_run_id="r",
            workers=workers,
        )
    # Assert: same families in the same order, identical predictions, metrics and trials
    seq, par = out[1], out[2]
    assert list(par.predictions) == list(seq.predictions) == [*CFG.models, *CFG.baselines]
    for family in seq.predictions:
        pd.testing.assert_frame_equal(
            par.predictions[family], seq.predictions[family], check_exact=True
        )
        assert par.predictions[family].attrs == seq.predictions[family].attrs
    assert par.fold_metrics == seq.fold_metrics
    assert par.accuracy == seq.accuracy
    assert par.trials == seq.trials
    assert (par.oos_rows, par.oos_start, par.oos_end) == (seq.oos_rows, seq.oos_start, seq.oos_end)


@pytest.mark.slow
def test_walk_forward_asset_when_family_workers_2_then_oos_predictions_equal_sequential(tmp_path):
    # Arrange: one bundled series researched by Dagster twice, family_workers 1 then 2
    import dagster as dg

    from assets import data_plane, research
    from infra.config import CandleflowConfig
    from infra.series import SeriesRegistry
    from infra.settings import Settings
    from orchestration.definitions import build_resources
    from orchestration.resources import ResearchResource

    steps = [data_plane.raw_bars, data_plane.validated_bars, research.bars_snapshot,
             research.features, research.labels, research.walk_forward]
    out = {}
    for workers in (1, 2):
        settings = Settings(home=tmp_path / f"home{workers}")
        SeriesRegistry(settings.home / "series.json").put(SPEC)
        config = CandleflowConfig.from_mapping({"executor": {"family_workers": workers}})
        resources = build_resources(settings, config)
        resources["research"] = ResearchResource(
            config_json=config.to_json(), models=list(CFG.models), n_folds=2,
            reports_dir=str(settings.reports_dir),
        )
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("series", [SPEC.key])
        # Act
        run = dg.materialize(steps, partition_key=SPEC.key, resources=resources,
                             instance=instance)
        out[workers] = run.output_for_node("walk_forward", "oos_predictions")
    # Assert
    assert list(out[2]) == list(out[1])
    for family in out[1]:
        pd.testing.assert_frame_equal(out[2][family], out[1][family], check_exact=True)
