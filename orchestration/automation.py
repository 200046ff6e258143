"""Schedules and sensors: the daily incremental ingestion and the drop-folder watcher."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from assets.partitions import SERIES
from infra.series import SeriesSpec
from orchestration.jobs import ingest_job, report_job, retrain_job
from orchestration.resources import SeriesRegistryResource

__all__ = [
    "alert_on_drift_retrain",
    "alert_on_run_failure",
    "build_drop_folder_sensor",
    "daily_ingest_schedule",
    "report_after_retrain",
    "retrain_on_new_bars",
    "weekly_retrain_schedule",
]


@dg.schedule(
    job=ingest_job,
    cron_schedule="30 6 * * *",
    execution_timezone="UTC",
    description="Every day at 06:30 UTC: incremental ingestion of every registered series.",
)
def daily_ingest_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
    yield from _every_series(context, "daily-" + context.scheduled_execution_time.strftime("%F"))


def _every_series(context: dg.ScheduleEvaluationContext, tick: str) -> Iterator[dg.RunRequest]:
    """One run per registered series; the run key makes a re-evaluated tick a no-op."""
    for key in context.instance.get_dynamic_partitions(SERIES.name):
        yield dg.RunRequest(run_key=f"{tick}-{key}", partition_key=key)


def build_drop_folder_sensor(
    drop_folder: Path,
    *,
    settle_s: float | None = None,
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    """A sensor that ingests every new CSV/Parquet file named SYMBOL__TIMEFRAME.csv once it is
    stable (infra.sources.watch_drop_folder; `settle_s` defaults to DROP_SETTLE_S). A file no
    row of which passes the data contract creates no series and no partition."""
    from infra.sources import DROP_SETTLE_S

    settle = DROP_SETTLE_S if settle_s is None else settle_s

    @dg.sensor(
        job=ingest_job,
        name="drop_folder_sensor",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Ingests files dropped into {drop_folder} named SYMBOL__TIMEFRAME.csv "
        f"(or .parquet), e.g. AAPL__1d.csv, once unchanged for {settle:g} s.",
    )
    def drop_folder_sensor(
        context: dg.SensorEvaluationContext, series_registry: SeriesRegistryResource
    ) -> dg.SensorResult | dg.SkipReason:
        from infra.sources import watch_drop_folder

        if not drop_folder.exists():
            return dg.SkipReason(f"drop folder {drop_folder} does not exist yet")
        seen, pending = _drop_cursor(context.cursor)
        scan = watch_drop_folder(drop_folder, seen, pending, settle_s=settle, now=clock())
        registry = series_registry.registry()
        runs, new_keys = [], []
        seen = dict(seen)
        for item in scan.ready:
            seen[item.path.name] = item.fingerprint
            if item.error:
                context.log.warning("drop folder: %s", item.error)
                continue
            spec = SeriesSpec(
                symbol=item.symbol,
                timeframe=item.timeframe,
                source="file",
                instrument_class="equity",
                options={"path": str(item.path)},
            )
            refusal = _refusal(spec)
            if refusal:
                context.log.warning("drop folder: %s: %s", item.path.name, refusal)
                continue
            registry.put(spec)
            new_keys.append(spec.key)
            runs.append(
                dg.RunRequest(
                    run_key=f"{item.path.name}-{item.fingerprint}", partition_key=spec.key
                )
            )
        cursor = json.dumps({"seen": seen, "pending": scan.pending}, sort_keys=True)
        if not runs and cursor == context.cursor:
            return dg.SkipReason("no new stable files")
        return dg.SensorResult(
            run_requests=runs,
            dynamic_partitions_requests=[SERIES.build_add_request(new_keys)] if new_keys else [],
            cursor=cursor,
        )

    return drop_folder_sensor


def _drop_cursor(cursor: str | None) -> tuple[dict[str, str], dict[str, tuple[str, float]]]:
    data = json.loads(cursor) if cursor else {}
    if "seen" not in data:  # the cursor before pending files were tracked: {name: fingerprint}
        return dict(data), {}
    pending = {name: (fp, float(t)) for name, (fp, t) in data.get("pending", {}).items()}
    return dict(data["seen"]), pending


def _refusal(spec: SeriesSpec) -> str | None:
    """Why a dropped file must not become a series (unreadable, or no row accepted), or None."""
    from infra.ingest import check_raw, fetch_raw
    from infra.sources import SourceError

    try:
        report = check_raw(fetch_raw(spec), now=datetime.now(UTC))
    except SourceError as exc:
        return f"{exc}; no series created"
    if report.accepted:
        return None
    top = sorted(report.by_reason.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    reasons = ", ".join(f"{reason} {count}" for reason, count in top) or "no rows"
    return f"no row passes the data contract ({reasons}); no series or partition created"


@dg.schedule(
    job=retrain_job,
    cron_schedule="0 7 * * 6",
    execution_timezone="UTC",
    description="Every Saturday at 07:00 UTC: retrain every registered series.",
)
def weekly_retrain_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
    yield from _every_series(
        context, "weekly-" + context.scheduled_execution_time.strftime("%G-W%V")
    )


@dg.asset_sensor(
    asset_key=dg.AssetKey("validated_bars"),
    job=retrain_job,
    name="retrain_on_new_bars",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Retrains a series when validated_bars materializes with new bars written.",
)
def retrain_on_new_bars(
    context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry
) -> Iterator[dg.RunRequest | dg.SkipReason]:
    mat = asset_event.asset_materialization
    if mat is None or mat.partition is None:
        yield dg.SkipReason("materialization without a partition")
        return
    written = mat.metadata.get("written")
    if written is None or int(written.value) == 0:  # type: ignore[arg-type]
        yield dg.SkipReason(f"{mat.partition}: no new bars written; nothing to retrain")
        return
    # The research job trains in the same run that wrote the bars: no second training.
    run = context.instance.get_run_by_id(asset_event.run_id) if asset_event.run_id else None
    if run is not None and run.job_name == "research":
        yield dg.SkipReason(f"{mat.partition}: trained in the same research run")
        return
    yield dg.RunRequest(run_key=f"retrain-{asset_event.run_id}-{mat.partition}",
                        partition_key=mat.partition)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[retrain_job],
    request_job=report_job,
    name="report_after_retrain",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Rebuilds the portfolio backtests and reports after a retrain succeeds.",
)
def report_after_retrain(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    return dg.RunRequest(run_key=f"report-after-{context.dagster_run.run_id}")


def _failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The asset checks of a run that did not pass, as "asset:check" names."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    failed = []
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event is not None else None
        if evaluation is not None and not evaluation.passed:
            failed.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")
    return sorted(set(failed))


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts (webhook / Telegram, infra.alerts) when a run fails, naming the "
    "blocking asset checks that failed in it.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext) -> None:
    from infra.alerts import get_notifier

    run = context.dagster_run
    checks = _failed_checks(context.instance, run.run_id)
    partition = run.tags.get("dagster/partition")
    text = (
        f"Dagster run {run.run_id[:8]} of {run.job_name}"
        + (f" ({partition})" if partition else "")
        + " failed"
        + (f"; failed checks: {', '.join(checks)}" if checks else "")
        + f": {context.failure_event.message or 'see the run in the Dagster UI'}"
    )
    notifier = get_notifier()
    notifier.notify("run_failed", text, severity="error", key=f"run_failed:{run.job_name}")
    notifier.flush(timeout_s=10.0)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.STARTED,
    monitored_jobs=[retrain_job],
    name="alert_on_drift_retrain",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts when the drift sensor's retraining of a series starts.",
)
def alert_on_drift_retrain(context: dg.RunStatusSensorContext) -> None:
    from infra.alerts import get_notifier

    tags = context.dagster_run.tags
    if tags.get("candleflow.trigger") != "drift":
        return
    series = tags.get("dagster/partition", "?")
    text = (
        f"drift retraining of {series} started (model v{tags.get('candleflow.drift.model_version')}"
        f"): {tags.get('candleflow.drift.reasons', '')}"
    )
    notifier = get_notifier()
    notifier.notify("drift_retrain", text, severity="warning", key=f"drift_retrain:{series}")
    notifier.flush(timeout_s=10.0)
