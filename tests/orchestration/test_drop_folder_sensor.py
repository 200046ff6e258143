"""The drop-folder sensor evaluated against a real (ephemeral) Dagster instance and real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pandas as pd

from infra.series import SeriesRegistry
from orchestration.automation import build_drop_folder_sensor
from orchestration.resources import SeriesRegistryResource

T0 = 1_700_000_000.0


def _bars_csv(n: int, *, bad: bool = False) -> str:
    dates = pd.bdate_range("2024-01-02", periods=n)
    high, low = ("9", "11") if bad else ("11", "9")  # bad: high below low on every row
    rows = [f"{d:%Y-%m-%d},10,{high},{low},10.{i % 10},{100 + i}" for i, d in enumerate(dates)]
    return "Date,Open,High,Low,Close,Volume\n" + "\n".join(rows) + "\n"


def _write(path: Path, text: str, mtime: float) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _evaluate(sensor, instance, cursor, registry_path: Path):
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"series_registry": SeriesRegistryResource(path=str(registry_path))},
    ) as context:
        return sensor(context)


def test_drop_sensor_when_file_still_being_copied_then_waits_until_stable_and_ingests_whole(
    tmp_path,
):
    drop, registry = tmp_path / "drop", tmp_path / "series.json"
    drop.mkdir()
    clock = Clock(T0)
    sensor = build_drop_folder_sensor(drop, settle_s=5.0, clock=clock)
    whole = _bars_csv(200)
    path = drop / "ACME__1d.csv"
    with dg.instance_for_test() as instance:
        _write(path, whole[: len(whole) * 55 // 100], T0)  # 55% copied, a cut-off last line
        first = _evaluate(sensor, instance, None, registry)
        clock.now = T0 + 30
        _write(path, whole[: len(whole) * 90 // 100], T0 + 29)  # the copy goes on
        second = _evaluate(sensor, instance, first.cursor, registry)
        clock.now = T0 + 60
        _write(path, whole, T0 + 31)  # done
        third = _evaluate(sensor, instance, second.cursor, registry)
        clock.now = T0 + 90
        fourth = _evaluate(sensor, instance, third.cursor, registry)
        fifth = _evaluate(sensor, instance, fourth.cursor, registry)

    assert [first.run_requests, second.run_requests, third.run_requests] == [[], [], []]
    assert json.loads(third.cursor)["pending"] == {
        "ACME__1d.csv": [f"{path.stat().st_size}:{path.stat().st_mtime_ns}", T0 + 60]
    }
    assert [r.partition_key for r in fourth.run_requests] == ["ACME@1d"]
    assert fourth.dynamic_partitions_requests[0].partition_keys == ["ACME@1d"]
    assert SeriesRegistry(registry).get("ACME@1d").options["path"] == str(path)
    assert isinstance(fifth, dg.SkipReason)  # seen: not ingested twice


def test_drop_sensor_when_no_row_passes_or_file_unreadable_then_no_series_and_no_partition(
    tmp_path,
):
    drop, registry = tmp_path / "drop", tmp_path / "series.json"
    drop.mkdir()
    clock = Clock(T0 + 60)
    sensor = build_drop_folder_sensor(drop, settle_s=5.0, clock=clock)
    _write(drop / "NAIVE__1d.csv", _bars_csv(40, bad=True), T0)
    _write(drop / "GOOD__1d.csv", _bars_csv(40), T0)
    ambiguous = "Date,Open,High,Low,Close,Volume\n01.02.2024,1,2,0.5,1,1\n02.02.2024,1,2,0.5,1,1\n"
    _write(drop / "AMBIG__1d.csv", ambiguous, T0)  # 1 Feb or 2 Jan: refused, never guessed
    with dg.instance_for_test() as instance:
        first = _evaluate(sensor, instance, None, registry)
        clock.now = T0 + 90
        second = _evaluate(sensor, instance, first.cursor, registry)

    assert [r.partition_key for r in second.run_requests] == ["GOOD@1d"]
    assert second.dynamic_partitions_requests[0].partition_keys == ["GOOD@1d"]
    assert sorted(SeriesRegistry(registry).load()) == ["GOOD@1d"]
    assert sorted(json.loads(second.cursor)["seen"]) == [
        "AMBIG__1d.csv", "GOOD__1d.csv", "NAIVE__1d.csv",
    ]  # fmt: skip


def test_drop_sensor_when_cursor_predates_pending_files_then_read_and_nothing_re_ingested(
    tmp_path,
):
    drop, registry = tmp_path / "drop", tmp_path / "series.json"
    drop.mkdir()
    path = drop / "OLD__1d.csv"
    _write(path, _bars_csv(40), T0)
    legacy = json.dumps({"OLD__1d.csv": f"{path.stat().st_size}:{path.stat().st_mtime_ns}"})
    sensor = build_drop_folder_sensor(drop, settle_s=5.0, clock=Clock(T0 + 60))
    with dg.instance_for_test() as instance:
        result = _evaluate(sensor, instance, legacy, registry)

    assert result.run_requests == []
    assert json.loads(result.cursor) == {"seen": json.loads(legacy), "pending": {}}
