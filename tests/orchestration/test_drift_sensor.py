"""The drift sensor on real stored data: bundled S&P 500 bars, a registered champion in MLflow,
and live predictions in the store as the live worker writes them."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from infra.ingest import ingest_raw
from infra.series import SeriesRegistry, SeriesSpec
from infra.sources import load_bundled
from infra.stores import open_store
from infra.tracking import ModelTracker, TrackingConfig, data_fingerprint, registered_model_name
from ml.features import compute_features
from ml.models.base import PROBA_COLUMNS
from ml.pipeline import ResearchConfig, fit_deployable, research_folds, research_labels, run_family
from orchestration.drift import LIVE_PREDICTIONS, build_drift_sensor
from orchestration.jobs import retrain_job
from orchestration.resources import BarStoreResource, MlflowResource, SeriesRegistryResource

CUTOFF = pd.Timestamp("2016-12-30", tz="UTC")  # last training bar: 2016's last session
N_LIVE = 300
KEY = "SPX@1d"
NOW = datetime(2019, 6, 1, 12, 0, tzinfo=UTC).timestamp()

pytestmark = pytest.mark.slow  # ~15 s: ingestion, a small walk-forward and MLflow on SQLite


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Stored bars, the series registry and an MLflow registry with a champion trained on the
    bars up to CUTOFF (as the research plane registers it)."""
    root = tmp_path_factory.mktemp("drift")
    data_dir = root / "data"
    with open_store("parquet", data_dir=data_dir) as store:
        ingest_raw(load_bundled("sp500"), store, run_id="test-ingest",
                   now=datetime(2019, 1, 2, tzinfo=UTC))
        bars = store.read_bars("SPX", "1d")
    SeriesRegistry(root / "series.json").put(
        SeriesSpec("SPX", "1d", "bundled", options={"dataset": "sp500"})
    )
    train = bars[bars["ts"] <= CUTOFF].reset_index(drop=True)
    cfg = ResearchConfig(xgb_estimators=20)
    bundle = fit_deployable(train, cfg)
    feats = compute_features(train)
    oos = run_family("xgboost", feats, research_labels(train, cfg), research_folds(feats, cfg),
                     cfg).predictions
    labelled = oos[oos["label"].notna()]
    hits = labelled[list(PROBA_COLUMNS)].to_numpy().argmax(axis=1) - 1 == labelled["label"]
    oos_accuracy = float(hits.mean())
    tracker = ModelTracker(TrackingConfig(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts"))
    model_dir = bundle.save(root / "bundle")
    oos.to_parquet(model_dir / "oos_predictions.parquet")
    run_id = tracker.log_training(
        run_name="SPX@1d xgboost deployable",
        params={"series": KEY},
        fold_metrics=[],
        summary_metrics={"oos_accuracy": oos_accuracy},
        model_dir=model_dir,
        features=list(bundle.columns),
        fingerprint=data_fingerprint(train.set_index("ts")[["close"]]),
        tags={"candleflow.train_end": train["ts"].iloc[-1].isoformat()},
    )
    name = registered_model_name("SPX", "1d")
    version = tracker.register(name, run_id)
    tracker.client.set_registered_model_alias(name, "champion", version)
    return {"root": root, "data_dir": data_dir, "bundle": bundle, "version": version,
            "oos_accuracy": oos_accuracy}


def _store_copy(world: dict, tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(world["data_dir"], dst)
    return dst


def _write_live(world: dict, data_dir: Path, *, flip: bool = False, after: bool = True) -> None:
    """Live predictions of the champion for N_LIVE bars, computed from the stored bars."""
    with open_store("parquet", data_dir=data_dir) as store:
        bars = store.read_bars("SPX", "1d")
        live_ts = bars["ts"][bars["ts"] > CUTOFF] if after else bars["ts"][bars["ts"] <= CUTOFF]
        live_ts = live_ts.iloc[:N_LIVE] if after else live_ts.iloc[-N_LIVE:]
        proba = world["bundle"].predict_frame(bars[bars["ts"] <= live_ts.iloc[-1]])
        proba = proba.loc[pd.DatetimeIndex(live_ts)]
        if flip:
            proba = proba.rename(columns={"p_up": "p_down", "p_down": "p_up"})
        frame = pd.DataFrame({
            "symbol": "SPX",
            "ts": proba.index,
            "p_down": proba["p_down"].to_numpy(),
            "p_flat": proba["p_flat"].to_numpy(),
            "p_up": proba["p_up"].to_numpy(),
            "model": world["version"],
        })
        store.upsert_records(LIVE_PREDICTIONS, frame, key=["symbol", "ts"])


def _shift_volatility(data_dir: Path, factor: float) -> None:
    """Replace the stored bars after CUTOFF by the same bars with `factor` x the log moves."""
    with open_store("parquet", data_dir=data_dir) as store:
        bars = store.read_bars("SPX", "1d")
        after = bars["ts"] > CUTOFF
        anchor = np.log(bars.loc[~after, "close"].iloc[-1])
        log_close = np.log(bars.loc[after, "close"].to_numpy())
        prev = np.concatenate([[anchor], log_close[:-1]])
        new_close = anchor + np.cumsum(factor * (log_close - prev))
        new_prev = np.concatenate([[anchor], new_close[:-1]])
        shifted = bars.loc[after].copy()
        for col in ("open", "high", "low"):
            moved = factor * (np.log(shifted[col].to_numpy()) - prev)
            shifted[col] = np.exp(new_prev + moved)
        shifted["close"] = np.exp(new_close)
        ohlc = shifted[["open", "high", "low", "close"]]
        shifted["high"], shifted["low"] = ohlc.max(axis=1), ohlc.min(axis=1)
        store.upsert_bars(shifted)


def _evaluate(world: dict, data_dir: Path, *, now: float = NOW, cursor: str | None = None):
    root = world["root"]
    sensor = build_drift_sensor(retrain_job, clock=lambda: now)
    context = dg.build_sensor_context(
        cursor=cursor,
        instance=dg.DagsterInstance.ephemeral(),
        resources={
            "bar_store": BarStoreResource(kind="parquet", data_dir=str(data_dir)),
            "series_registry": SeriesRegistryResource(path=str(root / "series.json")),
            "mlflow": MlflowResource(
                tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
                artifact_root=str(root / "artifacts"),
            ),
        },
    )
    return sensor(context)


def test_drift_sensor_when_live_bars_are_the_real_next_bars_then_no_run(world, tmp_path):
    data_dir = _store_copy(world, tmp_path)
    _write_live(world, data_dir)

    result = _evaluate(world, data_dir)

    assert isinstance(result, dg.SkipReason)
    assert "no drift" in result.skip_message


def test_drift_sensor_when_volatility_x5_after_cutoff_then_retrain_names_features(world, tmp_path):
    data_dir = _store_copy(world, tmp_path)
    _shift_volatility(data_dir, 5.0)
    _write_live(world, data_dir)

    result = _evaluate(world, data_dir)

    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests
    assert request.partition_key == KEY
    assert request.run_key.endswith("20190601T120000Z")
    reasons = request.tags["candleflow.drift.reasons"]
    assert reasons.startswith("feature drift")
    assert "log_ret_1" in reasons
    assert json.loads(result.cursor) == {KEY: NOW}


def test_drift_sensor_when_live_predictions_flipped_then_hit_rate_retrain(world, tmp_path):
    data_dir = _store_copy(world, tmp_path)
    _write_live(world, data_dir, flip=True)

    result = _evaluate(world, data_dir)

    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests
    reasons = request.tags["candleflow.drift.reasons"]
    assert "hit rate: live" in reasons
    assert f"walk-forward accuracy {world['oos_accuracy']:.3f}" in reasons
    assert "feature drift" not in reasons


def test_drift_sensor_when_triggered_within_cooldown_then_skipped_and_after_it_runs(
    world, tmp_path
):
    data_dir = _store_copy(world, tmp_path)
    _write_live(world, data_dir, flip=True)
    first = _evaluate(world, data_dir)
    assert isinstance(first, dg.SensorResult)

    again = _evaluate(world, data_dir, now=NOW + 3600, cursor=first.cursor)
    later = _evaluate(world, data_dir, now=NOW + 86_401, cursor=first.cursor)

    assert isinstance(again, dg.SkipReason)
    assert "cooling down" in again.skip_message
    assert isinstance(later, dg.SensorResult)
    assert later.run_requests[0].run_key != first.run_requests[0].run_key


def test_drift_sensor_when_live_predictions_only_replay_training_bars_then_skip(
    world, tmp_path
):
    data_dir = _store_copy(world, tmp_path)
    _write_live(world, data_dir, after=False)

    result = _evaluate(world, data_dir)

    assert isinstance(result, dg.SkipReason)
    assert "0 live predictions" in result.skip_message
    assert "in-sample" in result.skip_message
