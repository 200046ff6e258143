"""The Dagster code location `orchestration.definitions:defs`: wiring only, no logic."""

from __future__ import annotations

import dagster as dg

from assets import data_plane, research
from infra.config import CandleflowConfig, load_config
from infra.redact import install_redaction
from infra.settings import Environment, Settings
from orchestration.automation import (
    alert_on_drift_retrain,
    alert_on_run_failure,
    build_drop_folder_sensor,
    daily_ingest_schedule,
    report_after_retrain,
    retrain_on_new_bars,
    weekly_retrain_schedule,
)
from orchestration.drift import build_drift_sensor
from orchestration.executors import executor_for
from orchestration.jobs import (
    REPORT_JOB,
    RESEARCH_JOB,
    RETRAIN_JOB,
    ingest_job,
    report_job,
    research_job,
    retrain_job,
)
from orchestration.resources import (
    BarStoreResource,
    MlflowResource,
    ResearchResource,
    SeriesRegistryResource,
)

__all__ = ["REPORT_JOB", "RESEARCH_JOB", "RETRAIN_JOB", "build_defs", "build_resources", "defs"]


def build_resources(
    settings: Settings, config: CandleflowConfig | None = None
) -> dict[str, object]:
    config = config or CandleflowConfig()
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
            config_json=config.to_json(),
        ),
        "research": ResearchResource(
            config_json=config.to_json(),
            reports_dir=config.reports.dir or str(settings.reports_dir),
        ),
        "io_manager": dg.FilesystemIOManager(base_dir=str(settings.home / "dagster" / "storage")),
    }


def build_defs(settings: Settings, config: CandleflowConfig | None = None) -> dg.Definitions:
    pooled = (config or CandleflowConfig()).research.pooled
    return dg.Definitions(
        # [research] pooled = true adds pooled_predictions, traded by the portfolio backtest
        assets=[*dg.load_assets_from_modules([data_plane]), *research.assets_for(pooled=pooled)],
        asset_checks=dg.load_asset_checks_from_modules([data_plane, research]),
        jobs=[ingest_job, research_job, retrain_job, report_job],
        schedules=[daily_ingest_schedule, weekly_retrain_schedule],
        sensors=[
            build_drop_folder_sensor(settings.home / "drop"),
            retrain_on_new_bars,
            report_after_retrain,
            alert_on_run_failure,
            alert_on_drift_retrain,
            build_drift_sensor(retrain_job, model_cache=settings.home / "live" / "models"),
        ],
        resources=build_resources(settings, config),
        executor=executor_for((config or CandleflowConfig()).executor),
    )


# Dagster's webserver, daemon and run workers load this module: scrub secrets from their logs.
install_redaction()
# The code location is an edge: the environment (CANDLEFLOW_CONFIG, else ./candleflow.toml)
# picks the config file, so Dagster's run and step processes read the file the CLI read.
defs = build_defs(Settings.from_env(), load_config())
