"""Bar stores: where canonical bars, quarantined rows and backtest/live records are kept.

`open_store("parquet", data_dir=...)` is the embedded default; `open_store("timescale",
dsn=...)` uses TimescaleDB through psycopg 3. Both implement the same `BarStore` contract.
"""

from __future__ import annotations

from pathlib import Path

from infra.settings import Environment, Settings
from infra.stores._base import BarStore, StoreError, StoreUnavailableError
from infra.stores._parquet import ParquetBarStore
from infra.stores._timescale import TimescaleBarStore

__all__ = [
    "TIMESCALE_SCHEMA",
    "BarStore",
    "ParquetBarStore",
    "StoreError",
    "StoreUnavailableError",
    "TimescaleBarStore",
    "describe_store",
    "open_store",
    "store_for",
]

STORE_KINDS = ("parquet", "timescale")
# The schema candleflow's tables live in on a TimescaleDB server; the CLI, the Dagster resource
# and the live worker must all use the same one.
TIMESCALE_SCHEMA = "candleflow"


def open_store(
    kind: str,
    *,
    data_dir: Path | None = None,
    dsn: str | None = None,
    schema: str = "public",
) -> BarStore:
    """Open the store of `kind` ("parquet" or "timescale"); close it (or use `with`) when done."""
    if kind == "parquet":
        if data_dir is None:
            msg = "the parquet store needs data_dir (CANDLEFLOW_HOME/data by default)"
            raise StoreError(msg)
        return ParquetBarStore(Path(data_dir))
    if kind == "timescale":
        if not dsn:
            msg = (
                "the timescale store needs a DSN: set CANDLEFLOW_TIMESCALE_DSN "
                "(postgresql://user:password@host:5432/db) or start a local server with "
                "`bash infra/timescale/start_local.sh`, which prints one"
            )
            raise StoreError(msg)
        return TimescaleBarStore(dsn, schema=schema)
    msg = f"unknown store kind {kind!r}; use one of {', '.join(STORE_KINDS)}"
    raise StoreError(msg)


def store_for(settings: Settings) -> BarStore:
    """The store the environment picks: Parquet under CANDLEFLOW_HOME, or TimescaleDB."""
    if settings.env is Environment.TIMESCALE:
        return open_store("timescale", dsn=settings.timescale_dsn, schema=TIMESCALE_SCHEMA)
    return open_store("parquet", data_dir=settings.data_dir)


def describe_store(settings: Settings) -> str:
    """Where `store_for(settings)` keeps things, for log lines; never the DSN (it holds a
    password): "timescale host:port/dbname" or "parquet <data dir>"."""
    if settings.env is Environment.TIMESCALE and settings.timescale_dsn:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            info = conninfo_to_dict(settings.timescale_dsn)
        except psycopg.ProgrammingError:  # refused, with its reason, when the store opens
            return "timescale (unparseable DSN)"
        host, port = info.get("host") or "localhost", info.get("port") or 5432
        return f"timescale {host}:{port}/{info.get('dbname') or '?'}"
    return f"parquet {settings.data_dir}"
