"""Dagster resources: one per external system, each wrapping a real adapter from infra/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg

from infra.config import CandleflowConfig, StrategySection
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
    config_json: str = ""  # the resolved candleflow config, recorded with every run

    def tracker(self, run_tags: dict[str, str] | None = None) -> ModelTracker:
        """A tracker whose every run records the config and `run_tags`."""
        return ModelTracker(
            TrackingConfig(
                tracking_uri=self.tracking_uri,
                artifact_root=Path(self.artifact_root),
                experiment=self.experiment,
                run_config_json=self.config_json,
                run_tags=dict(run_tags or {}),
            )
        )


class ResearchResource(dg.ConfigurableResource):
    """The research recipe and the trading rules every backtest (and the live plane) uses.

    `config_json` carries the resolved config file (infra.config.CandleflowConfig.to_json; ""
    means every default). Any other field left None takes the file's value; set one (in code or
    in Dagster's launchpad) to override the file for a run.
    """

    config_json: str = ""
    models: list[str] | None = None
    n_folds: int | None = None
    oos_fraction: float | None = None
    lstm_epochs: int | None = None
    tune_trials: int | None = None  # Optuna trials per fold (xgboost families)
    min_trades: int | None = None
    initial_cash: float | None = None
    commission_bps: float | None = None
    spread_bps: float | None = None
    slippage_bps: float | None = None
    risk_per_trade: float | None = None
    stop_kind: str | None = None
    atr_mult: float | None = None
    reports_dir: str = "var/reports"

    def app_config(self) -> CandleflowConfig:
        """The config file with this resource's overrides applied."""
        base = CandleflowConfig.from_json(self.config_json)
        research = {
            k: v
            for k, v in {
                "models": self.models,
                "n_folds": self.n_folds,
                "oos_fraction": self.oos_fraction,
                "lstm_epochs": self.lstm_epochs,
                "tune_trials": self.tune_trials,
                "min_trades": self.min_trades,
            }.items()
            if v is not None
        }
        strategy: dict[str, Any] = {}
        if self.initial_cash is not None:
            strategy["initial_cash"] = self.initial_cash
        costs = {
            k: v
            for k, v in {
                "commission_bps": self.commission_bps,
                "spread_bps": self.spread_bps,
                "slippage_bps": self.slippage_bps,
            }.items()
            if v is not None
        }
        if costs:
            strategy["costs"] = costs
        if self.risk_per_trade is not None:
            strategy["sizing"] = {"risk_per_trade": self.risk_per_trade}
        stops = {
            k: v for k, v in {"kind": self.stop_kind, "atr_mult": self.atr_mult}.items()
            if v is not None
        }
        if stops:
            strategy["stops"] = stops
        if not research and not strategy:
            return base
        data = json.loads(base.to_json())
        data["research"].update(research)
        if data["research"].get("deploy") not in ("auto", *data["research"]["models"]):
            data["research"]["deploy"] = "auto"
        merged = CandleflowConfig.from_json(json.dumps(data))
        if strategy:
            values = _merge(dict(merged.strategy.values), strategy)
            merged = replace(merged, strategy=StrategySection(values, merged.strategy.rule))
        return merged

    def config(self) -> Any:
        """The research recipe (ml.pipeline.ResearchConfig)."""
        return self.app_config().research.recipe

    def strategy(self, spec: SeriesSpec) -> Any:
        """The trading rules of one series (execution.config.StrategyConfig)."""
        return self.app_config().strategy.for_series(spec)

    def min_trade_count(self) -> int:
        return self.app_config().research.min_trades


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
