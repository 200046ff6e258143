"""Schedules and sensors: the daily incremental ingestion and the drop-folder watcher."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from assets.partitions import SERIES
from infra.series import SeriesSpec
from orchestration.jobs import ingest_job
from orchestration.resources import SeriesRegistryResource

__all__ = ["build_drop_folder_sensor", "daily_ingest_schedule"]


@dg.schedule(
    job=ingest_job,
    cron_schedule="30 6 * * *",
    execution_timezone="UTC",
    description="Every day at 06:30 UTC: incremental ingestion of every registered series.",
)
def daily_ingest_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    for key in context.instance.get_dynamic_partitions(SERIES.name):
        yield dg.RunRequest(run_key=f"daily-{day}-{key}", partition_key=key)


def build_drop_folder_sensor(drop_folder: Path) -> dg.SensorDefinition:
    """A sensor that ingests every new CSV/Parquet file named SYMBOL__TIMEFRAME.csv."""

    @dg.sensor(
        job=ingest_job,
        name="drop_folder_sensor",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Ingests files dropped into {drop_folder} named SYMBOL__TIMEFRAME.csv "
        "(or .parquet), e.g. AAPL__1d.csv.",
    )
    def drop_folder_sensor(
        context: dg.SensorEvaluationContext, series_registry: SeriesRegistryResource
    ) -> dg.SensorResult | dg.SkipReason:
        from infra.sources import scan_drop_folder

        if not drop_folder.exists():
            return dg.SkipReason(f"drop folder {drop_folder} does not exist yet")
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        found = scan_drop_folder(drop_folder, seen)
        registry = series_registry.registry()
        runs, new_keys = [], []
        for item in found:
            if item.error:
                context.log.warning("drop folder: %s", item.error)
                seen[item.path.name] = item.fingerprint
                continue
            spec = SeriesSpec(
                symbol=item.symbol,
                timeframe=item.timeframe,
                source="file",
                instrument_class="equity",
                options={"path": str(item.path)},
            )
            registry.put(spec)
            new_keys.append(spec.key)
            runs.append(
                dg.RunRequest(
                    run_key=f"{item.path.name}-{item.fingerprint}", partition_key=spec.key
                )
            )
            seen[item.path.name] = item.fingerprint
        if not runs and len(seen) == len(json.loads(context.cursor or "{}")):
            return dg.SkipReason("no new files")
        return dg.SensorResult(
            run_requests=runs,
            dynamic_partitions_requests=[SERIES.build_add_request(new_keys)] if new_keys else [],
            cursor=json.dumps(seen, sort_keys=True),
        )

    return drop_folder_sensor
