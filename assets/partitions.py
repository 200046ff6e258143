"""The partitioning every per-instrument asset shares: one dynamic partition per series."""

from __future__ import annotations

import dagster as dg

__all__ = ["SERIES"]

# Keys are SYMBOL@TIMEFRAME (infra.series.series_key); added by `candleflow demo`, `candleflow
# ingest` and the drop-folder sensor, so a user can backfill one instrument at a time.
SERIES = dg.DynamicPartitionsDefinition(name="series")
