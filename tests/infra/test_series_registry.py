"""The series registry under concurrent writers in separate processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from infra.series import SeriesRegistry, SeriesSpec


def _put_many(path: str, start: int) -> None:
    registry = SeriesRegistry(Path(path))
    for i in range(start, start + 25):
        registry.put(SeriesSpec(f"S{i}", "1d", "bundled", "equity", {"dataset": "sp500"}))


def test_put_when_four_processes_write_at_once_then_no_entry_is_lost(tmp_path):
    path = str(tmp_path / "series.json")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_put_many, args=(path, n * 25)) for n in range(4)]

    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)

    assert all(p.exitcode == 0 for p in procs)
    assert len(SeriesRegistry(Path(path)).load()) == 100
