"""Jobs: what a schedule, a sensor or a user runs."""

from __future__ import annotations

import dagster as dg

__all__ = ["REPORT_JOB", "RESEARCH_JOB", "RETRAIN_JOB", "ingest_job", "report_job",
           "research_job", "retrain_job"]

RESEARCH_JOB = "research"
RETRAIN_JOB = "retrain"
REPORT_JOB = "portfolio_report"

ingest_job = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.groups("data"),
    description="Fetch, validate and store one series' bars (incremental for HTTP sources).",
)

research_job = dg.define_asset_job(
    RESEARCH_JOB,
    selection=dg.AssetSelection.groups("data", "research"),
    description="One series end to end: ingest, validate, features, labels, walk-forward "
    "training in MLflow, OOS predictions, deployable model and its promotion.",
)

retrain_job = dg.define_asset_job(
    RETRAIN_JOB,
    selection=dg.AssetSelection.groups("research"),
    description="Retrain one series from the bars already stored (started by sensors and the "
    "weekly schedule).",
)

report_job = dg.define_asset_job(
    REPORT_JOB,
    # with [research] pooled = true the pooled model is retrained here, upstream of the report
    selection=dg.AssetSelection.groups("report", "pooled"),
    description="Portfolio backtests (one per timeframe, shared cash) and their HTML reports; "
    "with [research] pooled = true, first the pooled walk-forward they trade.",
)
