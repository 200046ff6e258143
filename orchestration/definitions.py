"""The Dagster code location `orchestration.definitions:defs`: wiring only, no logic."""

from __future__ import annotations

import dagster as dg

from assets import data_plane
from infra.settings import Environment, Settings
from orchestration.automation import build_drop_folder_sensor, daily_ingest_schedule
from orchestration.jobs import ingest_job
from orchestration.resources import BarStoreResource, MlflowResource, SeriesRegistryResource

__all__ = ["build_defs", "defs"]


def build_resources(settings: Settings) -> dict[str, object]:
    if settings.env is Environment.TIMESCALE:
        store = BarStoreResource(kind="timescale", dsn=dg.EnvVar("CANDLEFLOW_TIMESCALE_DSN"))
    else:
        store = BarStoreResource(kind="parquet", data_dir=str(settings.data_dir))
    return {
        "bar_store": store,
        "series_registry": SeriesRegistryResource(path=str(settings.home / "series.json")),
        "mlflow": MlflowResource(
            tracking_uri=settings.mlflow_uri,
            artifact_root=str(settings.mlflow_artifacts_dir),
        ),
        "io_manager": dg.FilesystemIOManager(base_dir=str(settings.home / "dagster" / "storage")),
    }


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=dg.load_assets_from_modules([data_plane]),
        jobs=[ingest_job],
        schedules=[daily_ingest_schedule],
        sensors=[build_drop_folder_sensor(settings.home / "drop")],
        resources=build_resources(settings),
    )


defs = build_defs(Settings.from_env())
