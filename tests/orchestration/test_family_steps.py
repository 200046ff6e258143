"""Each model family of a series is its own step of the walk_forward graph: the executor spreads
them (multiprocess: a process each, max_concurrent at a time), and what the research job
records equals the in-process run, where the steps run one after another."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from infra.config import ConfigFileError, ExecutorSection

SERIES = "SPX@1d"
FAMILIES = ["xgboost", "xgboost_garch", "buy_and_hold", "flat"]
RECIPE = """
[[universe.series]]
symbol = "SPX"
timeframe = "1d"
source = "bundled"
options = { dataset = "sp500" }

[research]
models = ["xgboost", "xgboost_garch"]
baselines = ["buy_and_hold", "flat"]
n_folds = 2
xgb_estimators = 30
cpcv_series = []
min_trades = 1

[executor]
cli_runs = "executor"
"""
EXECUTORS = {
    "in_process": 'kind = "in_process"\n',
    "multiprocess": 'kind = "multiprocess"\nmax_concurrent = 2\n',
}


def test_config_when_family_workers_given_then_one_line_error_names_max_concurrent():
    # Act
    with pytest.raises(ConfigFileError) as caught:
        ExecutorSection.from_mapping({"family_workers": 2})
    # Assert
    message = str(caught.value)
    assert "family_workers was removed" in message
    assert "max_concurrent" in message
    assert "\n" not in message


def _research(root, executor: str) -> dict[str, Any]:
    """`candleflow research` of one series, each run on `executor`: what it recorded."""
    import dagster as dg
    import mlflow

    from infra.config import CandleflowConfig
    from infra.settings import Settings
    from orchestration.commands import series_specs_for_research
    from orchestration.definitions import RESEARCH_JOB, build_defs
    from orchestration.demo import run_research

    root.mkdir()
    (root / "candleflow.toml").write_text(RECIPE + EXECUTORS[executor])
    settings = Settings(home=root / "home")
    config = CandleflowConfig.from_file(root / "candleflow.toml")
    said: list[str] = []
    code = run_research(
        settings, config, series_specs_for_research(settings, config, None), say=said.append
    )
    assert code == 0, "\n".join(said)
    instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
    [run] = instance.get_runs(dg.RunsFilter(job_name=RESEARCH_JOB))
    starts = {
        r.dagster_event.step_key: r.dagster_event.pid
        for r in instance.all_logs(run.run_id)
        if r.dagster_event is not None and r.dagster_event.is_step_start
    }
    defs = build_defs(settings, config)
    fold_models = defs.load_asset_value("fold_models", partition_key=SERIES, instance=instance)
    client = mlflow.MlflowClient(settings.mlflow_uri)
    runs = {f: client.get_run(run_id).data for f, run_id in fold_models.items()}
    return {
        "step_pids": starts,
        "oos_predictions": defs.load_asset_value(
            "oos_predictions", partition_key=SERIES, instance=instance
        ),
        "families": list(fold_models),
        "params": {f: d.params for f, d in runs.items()},
        "metrics": {f: d.metrics for f, d in runs.items()},
    }


def _same_numbers(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a
    )


@pytest.mark.slow
def test_research_job_when_multiprocess_max_concurrent_2_then_one_step_per_family_and_same_results(
    tmp_path, monkeypatch
):
    # Arrange: the CLI points the step processes at its home and config; undo that afterwards
    for name in ("CANDLEFLOW_HOME", "DAGSTER_HOME", "CANDLEFLOW_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    # Act
    out = {kind: _research(tmp_path / kind, kind) for kind in EXECUTORS}
    # Assert: one step per family, each its own process on multiprocess, all one on in_process
    fit_steps = [f"walk_forward.fit_family[{f}]" for f in FAMILIES]
    seq, par = out["in_process"], out["multiprocess"]
    for run in (seq, par):
        assert set(fit_steps) <= set(run["step_pids"])
        assert "walk_forward.record_walk_forward" in run["step_pids"]
    assert len({seq["step_pids"][s] for s in fit_steps}) == 1
    assert len({par["step_pids"][s] for s in fit_steps}) == len(FAMILIES)
    # ... and the same families, predictions and MLflow runs as the sequential run
    assert par["families"] == seq["families"] == FAMILIES
    assert list(par["oos_predictions"]) == list(seq["oos_predictions"]) == FAMILIES
    for family in FAMILIES:
        pd.testing.assert_frame_equal(
            par["oos_predictions"][family], seq["oos_predictions"][family], check_exact=True
        )
        assert par["oos_predictions"][family].attrs == seq["oos_predictions"][family].attrs
        assert par["params"][family] == seq["params"][family]
        assert _same_numbers(par["metrics"][family], seq["metrics"][family]), family


def test_family_steps_when_names_are_reserved_or_not_step_safe_then_each_gets_a_valid_key():
    # Arrange: `meta` (a default family) is a name Dagster reserves; an import path has . and :
    from assets.research import walk_forward_families
    from infra.config import CandleflowConfig
    from orchestration.resources import ResearchResource

    config = CandleflowConfig.from_mapping({})
    families = ["xgboost", "meta", "examples.user_model:LogisticModel"]
    research = ResearchResource(config_json=config.to_json(), models=families, reports_dir=".")
    # Act
    outputs = list(walk_forward_families(research=research))
    # Assert: every configured family once, in order, each under its own valid step key
    assert [o.value for o in outputs] == [*families, "buy_and_hold", "sma_crossover", "flat"]
    keys = [o.mapping_key for o in outputs]
    assert keys == ["xgboost", "meta_", "examples_user_model_LogisticModel", "buy_and_hold",
                    "sma_crossover", "flat"]
