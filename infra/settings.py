"""Typed, frozen settings: which wiring to use and where things live.

Read from the environment only by `Settings.from_env`, called at the edges (CLI, Dagster
definitions, the streaming worker), never at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

__all__ = ["Broker", "Environment", "Settings", "SettingsError"]


class SettingsError(ValueError):
    """A setting is missing or has a value candleflow cannot use."""


class Environment(StrEnum):
    LOCAL = "local"  # embedded Parquet store, local SQLite for Dagster and MLflow, paper broker
    TIMESCALE = "timescale"  # TimescaleDB store


class Broker(StrEnum):
    PAPER = "paper"
    MT5 = "mt5"


@dataclass(frozen=True)
class Settings:
    env: Environment = Environment.LOCAL
    home: Path = Path("var")  # CANDLEFLOW_HOME: data, Dagster instance, MLflow store, reports
    timescale_dsn: str | None = field(default=None, repr=False)  # secret: never logged
    broker: Broker = Broker.PAPER
    live: bool = False  # CANDLEFLOW_LIVE=1: the explicit opt-in a live broker requires
    broker_named: bool = False  # CANDLEFLOW_BROKER was set (live trading must name its venue)
    mlflow_tracking_uri: str | None = None  # MLFLOW_TRACKING_URI; default: SQLite under home

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        try:
            environment = Environment(env.get("CANDLEFLOW_ENV", "local").strip().lower())
        except ValueError:
            msg = (
                f"CANDLEFLOW_ENV={env.get('CANDLEFLOW_ENV')!r} is not valid; "
                "use 'local' (embedded Parquet) or 'timescale'"
            )
            raise SettingsError(msg) from None
        try:
            broker = Broker(env.get("CANDLEFLOW_BROKER", "paper").strip().lower())
        except ValueError:
            msg = f"CANDLEFLOW_BROKER={env.get('CANDLEFLOW_BROKER')!r} is not valid; use paper|mt5"
            raise SettingsError(msg) from None
        dsn = env.get("CANDLEFLOW_TIMESCALE_DSN") or None
        if environment is Environment.TIMESCALE and not dsn:
            msg = (
                "CANDLEFLOW_ENV=timescale needs CANDLEFLOW_TIMESCALE_DSN, e.g. "
                "postgresql://user:password@host:5432/dbname"
            )
            raise SettingsError(msg)
        return cls(
            env=environment,
            home=Path(env.get("CANDLEFLOW_HOME", "var")).resolve(),
            timescale_dsn=dsn,
            broker=broker,
            live=env.get("CANDLEFLOW_LIVE", "0").strip() == "1",
            broker_named=bool((env.get("CANDLEFLOW_BROKER") or "").strip()),
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI") or None,
        )

    def with_(self, **changes: Any) -> Settings:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            msg = f"unknown settings: {', '.join(sorted(unknown))}"
            raise SettingsError(msg)
        return replace(self, **changes)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def mlflow_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.home / 'mlflow' / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.home / "mlflow" / "artifacts"
