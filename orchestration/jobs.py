"""Jobs: what a schedule, a sensor or a user runs."""

from __future__ import annotations

import dagster as dg

__all__ = ["ingest_job"]

ingest_job = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.groups("data"),
    description="Fetch, validate and store one series' bars (incremental for HTTP sources).",
)
