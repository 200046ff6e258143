"""Schedules evaluated against a real (ephemeral) Dagster instance."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from orchestration.automation import daily_ingest_schedule, weekly_retrain_schedule


def _requests(schedule, when: datetime) -> list[dg.RunRequest]:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("series", ["SPX@1d", "IXIC@1d"])
        with dg.build_schedule_context(
            instance=instance, scheduled_execution_time=when
        ) as context:
            return list(schedule(context))


def test_daily_schedule_when_ticks_then_one_run_per_series_keyed_by_day():
    runs = _requests(daily_ingest_schedule, datetime(2026, 11, 23, 6, 30, tzinfo=UTC))

    assert sorted((r.partition_key, r.run_key) for r in runs) == [
        ("IXIC@1d", "daily-2026-11-23-IXIC@1d"),
        ("SPX@1d", "daily-2026-11-23-SPX@1d"),
    ]


def test_weekly_schedule_when_ticks_then_one_run_per_series_keyed_by_iso_week():
    runs = _requests(weekly_retrain_schedule, datetime(2026, 11, 28, 7, 0, tzinfo=UTC))

    assert sorted(r.run_key for r in runs) == ["weekly-2026-W48-IXIC@1d", "weekly-2026-W48-SPX@1d"]
