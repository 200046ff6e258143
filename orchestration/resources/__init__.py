"""Dagster resources: one per external system, each wrapping a real adapter from infra/."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg

from infra.series import SeriesRegistry, SeriesSpec
from infra.tracking import ModelTracker, TrackingConfig

__all__ = ["BarStoreResource", "MlflowResource", "SeriesRegistryResource"]


class BarStoreResource(dg.ConfigurableResource):
    """The bar store: embedded Parquet (default) or TimescaleDB through psycopg 3."""

    kind: str = "parquet"  # parquet | timescale
    data_dir: str = "var/data"  # parquet only
    dsn: str | None = None  # timescale only; pass dg.EnvVar("CANDLEFLOW_TIMESCALE_DSN")
    db_schema: str = "candleflow"  # timescale only

    @contextmanager
    def open(self) -> Iterator[Any]:
        from infra.stores import open_store

        store = open_store(
            self.kind, data_dir=Path(self.data_dir), dsn=self.dsn, schema=self.db_schema
        )
        try:
            yield store
        finally:
            store.close()


class SeriesRegistryResource(dg.ConfigurableResource):
    """Which series exist and where their bars come from (a JSON file under CANDLEFLOW_HOME)."""

    path: str = "var/series.json"

    def registry(self) -> SeriesRegistry:
        return SeriesRegistry(Path(self.path))

    def get(self, key: str) -> SeriesSpec:
        return self.registry().get(key)


class MlflowResource(dg.ConfigurableResource):
    """The MLflow tracking server and model registry (local SQLite by default)."""

    tracking_uri: str
    artifact_root: str = "var/mlflow/artifacts"
    experiment: str = "candleflow"

    def tracker(self) -> ModelTracker:
        return ModelTracker(
            TrackingConfig(
                tracking_uri=self.tracking_uri,
                artifact_root=Path(self.artifact_root),
                experiment=self.experiment,
            )
        )
