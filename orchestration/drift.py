"""The drift sensor: retrains a series when its live inputs or its live hit rate drift.

For every registered series with a `champion` model, `check_series` (plain Python, no Dagster)
loads what the sensor compares:

- live rows: the `live_predictions` the live worker of the series' timeframe (the instance
  column, strategy@timeframe) wrote for the series' symbol with the champion's version, stamped
  after the champion's last training bar (`candleflow.train_end`)
  and at a bar of the series. Predictions of replayed history (ts <= train_end) are in-sample
  for the champion and are not live evidence.
- feature drift: `compute_features` of the stored bars at the live timestamps (what the live
  plane computed: same function, parity-tested) against the last `reference_bars` training rows.
- prediction drift: live p_up / p_down against the walk-forward OOS predictions stored with the
  champion (`model/oos_predictions.parquet`).
- hit rate: live argmax class against the realized training label, against the run's
  `oos_accuracy` minus a margin.

`ml.drift.evaluate` decides. The sensor requests one `retrain` run per series that should
retrain, unless that series triggered within `cooldown_s`; the cursor holds
{series key: last trigger epoch seconds}.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from infra.series import SeriesSpec
from infra.tracking import ModelTracker, registered_model_name
from ml.bundle import load_bundle
from ml.drift import (
    DriftConfig,
    DriftDecision,
    evaluate,
    feature_drift,
    live_hit_rate,
    prediction_drift,
)
from ml.features import compute_features
from ml.models.base import PROBA_COLUMNS
from orchestration.resources import BarStoreResource, MlflowResource, SeriesRegistryResource

__all__ = [
    "LIVE_PREDICTIONS",
    "OOS_PREDICTIONS_FILE",
    "TRAIN_END_TAG",
    "SeriesCheck",
    "build_drift_sensor",
    "check_series",
]

logger = logging.getLogger(__name__)

LIVE_PREDICTIONS = "live_predictions"
OOS_PREDICTIONS_FILE = "oos_predictions.parquet"
TRAIN_END_TAG = "candleflow.train_end"
CHAMPION = "champion"  # the registry alias of the model that trades
_MAX_TAG_CHARS = 4000  # Dagster run tags are meant to be short


@dataclass(frozen=True)
class SeriesCheck:
    """The outcome of one series' drift check: a decision, or why none could be made."""

    key: str  # series key, SYMBOL@TIMEFRAME (the partition key)
    decision: DriftDecision | None  # None when skipped
    skipped: str | None  # why no decision was made
    model_version: str | None = None  # champion version checked


def _skip(key: str, why: str, version: str | None = None) -> SeriesCheck:
    return SeriesCheck(key=key, decision=None, skipped=why, model_version=version)


def _live_rows(
    records: pd.DataFrame, symbol: str, timeframe: str, version: str, train_end: pd.Timestamp
) -> pd.DataFrame:
    needed = {"symbol", "ts", *PROBA_COLUMNS}
    if records.empty or not needed <= set(records.columns):
        return pd.DataFrame(columns=list(PROBA_COLUMNS), index=pd.DatetimeIndex([], tz=UTC))
    rows = records[records["symbol"] == symbol]
    if "instance" in rows.columns:
        # strategy@timeframe; rows from before the instance column say "default" (one worker)
        instance = rows["instance"].astype(str)
        rows = rows[~instance.str.contains("@") | instance.str.endswith(f"@{timeframe}")]
    if "model" in rows.columns:
        rows = rows[rows["model"].astype(str) == version]
    ts = pd.DatetimeIndex(pd.to_datetime(rows["ts"], utc=True), name="ts")
    out = pd.DataFrame(rows[list(PROBA_COLUMNS)].to_numpy(dtype=float), index=ts,
                       columns=list(PROBA_COLUMNS))
    out = out[out.index > train_end]
    return out[~out.index.duplicated(keep="last")].sort_index()


def check_series(
    spec: SeriesSpec,
    store: Any,
    tracker: ModelTracker,
    config: DriftConfig,
    work_dir: Path,
    records: pd.DataFrame | None = None,
) -> SeriesCheck:
    """Compare one series' live rows with its champion's training distribution.

    `store` is an open BarStore, `work_dir` where champion versions are downloaded (cached);
    `records` the `live_predictions` table when the caller already read it.
    """
    key = spec.key
    name = registered_model_name(spec.symbol, spec.timeframe)
    mv = tracker.alias_version(name, CHAMPION)
    if mv is None:
        return _skip(key, f"{key}: no {CHAMPION} model registered as {name}")
    version = str(mv.version)
    run = tracker.client.get_run(mv.run_id)
    train_end_raw = run.data.tags.get(TRAIN_END_TAG)
    if not train_end_raw:
        return _skip(key, f"{key}: champion v{version} has no {TRAIN_END_TAG} tag", version)
    train_end = pd.Timestamp(train_end_raw)
    train_end = train_end.tz_localize(UTC) if train_end.tz is None else train_end.tz_convert(UTC)
    if records is None:
        records = store.read_records(LIVE_PREDICTIONS)
    live = _live_rows(records, spec.symbol, spec.timeframe, version, train_end)
    bars = store.read_bars(spec.symbol, spec.timeframe)
    live = live[live.index.isin(pd.DatetimeIndex(bars["ts"]))]
    if len(live) < config.min_live:
        return _skip(
            key,
            f"{key}: {len(live)} live predictions of champion v{version} at stored bars after "
            f"train_end {train_end.isoformat()} (need {config.min_live}); replayed history "
            "up to train_end is in-sample for the champion and does not count",
            version,
        )
    path, got = tracker.download_model(name, CHAMPION, work_dir)
    if got != version:  # the alias moved between the two calls: check on the next tick
        return _skip(key, f"{key}: champion moved from v{version} to v{got} during the check")
    bundle = load_bundle(path)
    feats = compute_features(bars, bundle.feature_config)
    live_feats = feats.loc[live.index]
    live_feats = live_feats[~live_feats["warmup"]]
    live = live.loc[live_feats.index]
    trained = feats[(feats.index <= train_end) & ~feats["warmup"]]
    reference = trained.iloc[-config.reference_bars :]
    if len(reference) < config.psi_bins:
        return _skip(
            key, f"{key}: only {len(reference)} stored training rows up to train_end", version
        )
    f_report = feature_drift(reference, live_feats, bundle.columns, config)
    oos_path = path / OOS_PREDICTIONS_FILE
    p_report = None
    if oos_path.exists():
        p_report = prediction_drift(pd.read_parquet(oos_path), live, config)
    # Labels are measured at the fill prices the champion was backtested with.
    strategy_path = path / "strategy.json"
    fill = (
        json.loads(strategy_path.read_text()).get("fill", "next_open")
        if strategy_path.exists()
        else "next_open"
    )
    hit = live_hit_rate(live, bars, fill=fill)
    expected = tracker.run_metric(mv.run_id, "oos_accuracy")
    decision = evaluate(f_report, p_report, hit, expected, config)
    if p_report is None:
        decision.reasons.append(f"no {OOS_PREDICTIONS_FILE} with v{version}: no prediction drift")
    decision.metrics["model_version"] = version
    decision.metrics["train_end"] = train_end.isoformat()
    return SeriesCheck(key=key, decision=decision, skipped=None, model_version=version)


def _run_request(check: SeriesCheck, now: float) -> dg.RunRequest:
    assert check.decision is not None
    stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    reasons = " | ".join(check.decision.reasons)
    return dg.RunRequest(
        run_key=f"drift-{check.key}-{stamp}",
        partition_key=check.key,
        tags={
            "candleflow.trigger": "drift",
            "candleflow.drift.model_version": str(check.model_version),
            "candleflow.drift.reasons": reasons[:_MAX_TAG_CHARS],
            "candleflow.drift.evaluated_at": stamp,
        },
    )


def build_drift_sensor(
    job: dg.UnresolvedAssetJobDefinition | dg.JobDefinition,
    config: DriftConfig | None = None,
    clock: Callable[[], float] = time.time,
    model_cache: Path | None = None,
) -> dg.SensorDefinition:
    """The `drift_sensor` for `job` (the retrain job); `clock` gives the evaluation time.

    `model_cache` keeps downloaded champion versions between ticks (the live worker's cache);
    None downloads into a scratch directory on every tick.
    """
    cfg = config or DriftConfig()

    @dg.sensor(
        job=job,
        name="drift_sensor",
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Retrains a series when its live features drift from the training "
        "distribution (PSI and autocorrelation-adjusted KS) or its live hit rate falls below "
        f"the walk-forward accuracy - {cfg.hit_rate_margin}; at most once per "
        f"{cfg.cooldown_s:.0f}s per series.",
    )
    def drift_sensor(
        context: dg.SensorEvaluationContext,
        bar_store: BarStoreResource,
        series_registry: SeriesRegistryResource,
        mlflow: MlflowResource,
    ) -> dg.SensorResult | dg.SkipReason:
        now = float(clock())
        last: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
        specs = series_registry.registry().load()
        if not specs:
            return dg.SkipReason("no registered series")
        tracker = mlflow.tracker()
        runs: list[dg.RunRequest] = []
        notes: list[str] = []
        with bar_store.open() as store, tempfile.TemporaryDirectory() as scratch:
            tmp = model_cache or Path(scratch)
            records = store.read_records(LIVE_PREDICTIONS)
            for key in sorted(specs):
                since = now - last.get(key, -math.inf)
                if since < cfg.cooldown_s:
                    notes.append(
                        f"{key}: cooling down, last drift retrain {since:.0f}s ago "
                        f"(< {cfg.cooldown_s:.0f}s)"
                    )
                    continue
                check = check_series(specs[key], store, tracker, cfg, Path(tmp), records)
                if check.decision is None:
                    notes.append(str(check.skipped))
                    continue
                context.log.info("drift %s: %s", key, "; ".join(check.decision.reasons))
                if check.decision.retrain:
                    runs.append(_run_request(check, now))
                    last[key] = now
                else:
                    notes.append(f"{key}: {check.decision.reasons[0]}")
        for note in notes:
            context.log.info("drift: %s", note)
        if not runs:
            return dg.SkipReason("; ".join(notes) or "nothing to check")
        return dg.SensorResult(run_requests=runs, cursor=json.dumps(last, sort_keys=True))

    return drift_sensor
