"""Dagster resources: one per external system, each wrapping a real adapter from infra/."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg

from infra.series import SeriesRegistry, SeriesSpec
from infra.stores import TIMESCALE_SCHEMA
from infra.tracking import ModelTracker, TrackingConfig

__all__ = ["BarStoreResource", "MlflowResource", "ResearchResource", "SeriesRegistryResource"]


class BarStoreResource(dg.ConfigurableResource):
    """The bar store: embedded Parquet (default) or TimescaleDB through psycopg 3."""

    kind: str = "parquet"  # parquet | timescale
    data_dir: str = "var/data"  # parquet only
    dsn: str | None = None  # timescale only; pass dg.EnvVar("CANDLEFLOW_TIMESCALE_DSN")
    db_schema: str = TIMESCALE_SCHEMA  # timescale only; the CLI and live worker use it too

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


class ResearchResource(dg.ConfigurableResource):
    """The research recipe and the trading rules every backtest (and the live plane) uses."""

    models: list[str] = ["xgboost", "xgboost_garch", "lstm", "meta"]
    n_folds: int = 5
    oos_fraction: float = 0.5
    lstm_epochs: int = 6
    tune_trials: int = 0  # Optuna trials per fold (xgboost families); recorded in MLflow
    min_trades: int = 10
    initial_cash: float = 100_000.0
    commission_bps: float = 1.0
    spread_bps: float = 1.0
    slippage_bps: float = 1.0
    risk_per_trade: float = 0.01
    stop_kind: str = "atr"
    atr_mult: float = 2.0
    reports_dir: str = "var/reports"

    def config(self) -> Any:
        from ml.pipeline import ResearchConfig

        return ResearchConfig(
            models=tuple(self.models),
            n_folds=self.n_folds,
            oos_fraction=self.oos_fraction,
            lstm_epochs=self.lstm_epochs,
            tune_trials=self.tune_trials,
        )

    def strategy(self, spec: SeriesSpec) -> Any:
        from infra.strategy import strategy_for

        return strategy_for(
            spec,
            initial_cash=self.initial_cash,
            commission_bps=self.commission_bps,
            spread_bps=self.spread_bps,
            slippage_bps=self.slippage_bps,
            risk_per_trade=self.risk_per_trade,
            stop_kind=self.stop_kind,
            atr_mult=self.atr_mult,
        )
