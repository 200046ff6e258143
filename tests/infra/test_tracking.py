"""ModelTracker against a real MLflow tracking store (SQLite) and registry."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from infra.tracking import ModelTracker, PromotionRule, TrackingConfig, data_fingerprint


@pytest.fixture
def tracker(tmp_path: Path) -> ModelTracker:
    return ModelTracker(
        TrackingConfig(
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            artifact_root=tmp_path / "artifacts",
        )
    )


def _log(tracker: ModelTracker, tmp_path: Path, sharpe: float, tag: str) -> str:
    model_dir = tmp_path / f"model-{tag}"
    model_dir.mkdir()
    (model_dir / "weights.json").write_text(json.dumps({"tag": tag}))
    return tracker.log_training(
        run_name=f"run-{tag}",
        params={"max_depth": 3},
        fold_metrics=[{"accuracy": 0.5}, {"accuracy": 0.6}],
        summary_metrics={"oos_sharpe": sharpe},
        model_dir=model_dir,
        features=["f1", "f2"],
        fingerprint="abc",
    )


def test_promote_when_first_challenger_beats_floor_then_becomes_champion(tracker, tmp_path):
    run_id = _log(tracker, tmp_path, 0.8, "a")
    version = tracker.register("m", run_id)

    decision = tracker.promote("m", version, PromotionRule(), oos_trades=50)

    assert decision.promoted
    assert str(tracker.alias_version("m", "champion").version) == version
    path, got = tracker.download_model("m", "champion", tmp_path / "dl")
    assert got == version
    assert json.loads((path / "weights.json").read_text()) == {"tag": "a"}
    run = tracker.client.get_run(run_id)
    assert run.data.tags["candleflow.data_fingerprint"] == "abc"
    assert "candleflow.git_revision" in run.data.tags
    assert [m.value for m in tracker.client.get_metric_history(run_id, "fold_accuracy")] == [
        0.5,
        0.6,
    ]


def test_promote_when_challenger_is_worse_then_champion_stays(tracker, tmp_path):
    v1 = tracker.register("m", _log(tracker, tmp_path, 1.0, "a"))
    tracker.promote("m", v1, PromotionRule(), oos_trades=50)
    v2 = tracker.register("m", _log(tracker, tmp_path, 0.5, "b"))

    decision = tracker.promote("m", v2, PromotionRule(), oos_trades=50)

    assert not decision.promoted
    assert str(tracker.alias_version("m", "champion").version) == v1
    assert str(tracker.alias_version("m", "challenger").version) == v2


def test_promote_when_too_few_trades_then_refused(tracker, tmp_path):
    v1 = tracker.register("m", _log(tracker, tmp_path, 3.0, "a"))

    decision = tracker.promote("m", v1, PromotionRule(min_trades=10), oos_trades=3)

    assert not decision.promoted
    assert "min_trades" in decision.reason
    assert tracker.alias_version("m", "champion") is None


def test_download_when_no_champion_then_error_says_what_to_do(tracker, tmp_path):
    with pytest.raises(LookupError, match="make demo"):
        tracker.download_model("nope", "champion", tmp_path / "dl")


def test_fingerprint_when_value_changes_then_differs():
    a = pd.DataFrame({"x": [1.0, 2.0]})
    b = pd.DataFrame({"x": [1.0, 2.5]})
    assert data_fingerprint(a) == data_fingerprint(a.copy())
    assert data_fingerprint(a) != data_fingerprint(b)


def test_download_when_version_already_cached_then_not_downloaded_again(
    tracker, tmp_path, monkeypatch
):
    version = tracker.register("m", _log(tracker, tmp_path, 0.8, "a"))
    tracker.promote("m", version, PromotionRule(), oos_trades=50)
    first, _ = tracker.download_model("m", "champion", tmp_path / "cache")
    calls = []
    monkeypatch.setattr(
        tracker._mlflow.artifacts, "download_artifacts", lambda **kw: calls.append(kw)
    )

    again, got = tracker.download_model("m", "champion", tmp_path / "cache")

    assert again == first
    assert got == version
    assert calls == []
    assert json.loads((again / "weights.json").read_text()) == {"tag": "a"}


def test_download_when_alias_moves_then_new_version_is_fetched(tracker, tmp_path):
    v1 = tracker.register("m", _log(tracker, tmp_path, 0.5, "a"))
    tracker.promote("m", v1, PromotionRule(), oos_trades=50)
    tracker.download_model("m", "champion", tmp_path / "cache")
    v2 = tracker.register("m", _log(tracker, tmp_path, 0.9, "b"))
    tracker.promote("m", v2, PromotionRule(), oos_trades=50)

    path, got = tracker.download_model("m", "champion", tmp_path / "cache")

    assert got == v2
    assert json.loads((path / "weights.json").read_text()) == {"tag": "b"}


def _sma_bundle_dir(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    from infra.sources import load_bundled
    from ml.bundle import ModelBundle
    from ml.features import FeatureConfig, compute_features, feature_columns
    from ml.models import SmaCrossoverModel

    raw = load_bundled("sp500").frame.iloc[:400]
    bars = raw[["ts", "open", "high", "low", "close", "volume"]].reset_index(drop=True)
    bars["volume"] = bars["volume"].astype("float64")
    cfg = FeatureConfig()
    cols = tuple(feature_columns(cfg))
    feats = compute_features(bars, cfg)
    model = SmaCrossoverModel(fast=10, slow=50, confidence=0.6)
    ready = feats.loc[~feats["warmup"], list(cols)]
    model.fit(ready, pd.Series(1.0, index=ready.index))
    bundle = ModelBundle(model=model, feature_config=cfg, columns=cols, name="sma_crossover")
    path = bundle.save(tmp_path / "bundle")
    return path, bars.tail(bundle.history + 5).reset_index(drop=True)


def test_log_bundle_model_when_registered_then_logged_model_has_schema_and_loads(
    tracker, tmp_path
):
    import mlflow

    # Arrange
    bundle_dir, example = _sma_bundle_dir(tmp_path)
    run_id = _log(tracker, tmp_path, 0.8, "a")
    # Act
    model_id = tracker.log_bundle_model(run_id, bundle_dir, example, name="candleflow.SPX.1d")
    version = tracker.register("candleflow.SPX.1d", run_id, model_id=model_id)
    # Assert
    logged = tracker.client.get_logged_model(model_id)
    assert logged.source_run_id == run_id and str(logged.status) == "READY"
    mv = tracker.client.get_model_version("candleflow.SPX.1d", version)
    assert mv.tags["candleflow.logged_model_id"] == model_id
    pyfunc = mlflow.pyfunc.load_model(logged.artifact_location)
    assert [c.name for c in pyfunc.metadata.get_input_schema().inputs][:2] == ["ts", "open"]
    assert pyfunc.metadata.get_output_schema().input_names() == ["p_down", "p_flat", "p_up"]
    out = pyfunc.predict(example.assign(ts=example["ts"].dt.tz_localize(None)))  # naive UTC
    assert list(out.columns) == ["p_down", "p_flat", "p_up"] and len(out) > 0


def test_tracker_when_created_then_experiment_opens_as_model_training(tracker):
    exp = tracker.client.get_experiment(tracker.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_log_training_when_parent_given_then_nested_with_fold_metrics_as_steps(tracker, tmp_path):
    # Arrange
    parent = tracker.research_run("SPX@1d", "dagster-run-1")
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    # Act
    child = tracker.log_training(
        run_name="SPX@1d xgboost walk-forward",
        params={"family": "xgboost"},
        fold_metrics=[{"accuracy": 0.5}, {"accuracy": 0.6}, {"accuracy": 0.55}],
        summary_metrics={"oos_accuracy": 0.55},
        model_dir=model_dir,
        features=["f1"],
        fingerprint="abc",
        parent_run_id=parent,
    )
    tracker.finish_run(parent, {"xgboost.oos_accuracy": 0.55})
    # Assert
    assert tracker.research_run("SPX@1d", "dagster-run-1") == parent  # found, not duplicated
    assert tracker.research_run("SPX@1d", "dagster-run-2") != parent
    assert tracker.client.get_run(child).data.tags["mlflow.parentRunId"] == parent
    history = tracker.client.get_metric_history(child, "fold_accuracy")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.6), (2, 0.55)]
    assert tracker.client.get_run(parent).info.status == "FINISHED"


def test_git_revision_when_called_from_outside_the_checkout_then_names_candleflows_commit(
    tmp_path, monkeypatch
):
    from infra.tracking import git_revision

    monkeypatch.chdir(tmp_path)  # not a git checkout
    root = Path(__file__).resolve().parents[2]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()

    assert git_revision().removesuffix("-dirty") == head
    assert git_revision(tmp_path) == "unknown"
