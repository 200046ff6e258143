"""The kill-switch file: fail-safe when corrupt, quiet about it, and never weakened by `on`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from streaming.killswitch import (
    engage_kill_switch,
    kill_switch_path,
    kill_switch_status,
    read_kill_switch,
    release_kill_switch,
)

T0 = datetime(2024, 1, 2, 9, 0, tzinfo=UTC)
T1 = datetime(2024, 1, 2, 10, 0, tzinfo=UTC)


def _unreadable_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "kill_switch_unreadable" in r.getMessage()]


def test_read_when_file_corrupt_for_many_bars_then_engaged_and_logged_once_per_change(
    tmp_path: Path, caplog
) -> None:
    path = kill_switch_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    caplog.set_level(logging.ERROR, logger="streaming.killswitch")

    states = [read_kill_switch(tmp_path) for _ in range(300)]
    path.write_text("still not json")
    states += [read_kill_switch(tmp_path) for _ in range(5)]

    assert all(s.engaged for s in states)
    assert len(_unreadable_lines(caplog)) == 2


def test_read_when_corrupt_file_is_fixed_and_corrupted_again_then_logged_again(
    tmp_path: Path, caplog
) -> None:
    path = kill_switch_path(tmp_path)
    path.parent.mkdir(parents=True)
    caplog.set_level(logging.ERROR, logger="streaming.killswitch")

    path.write_text("garbage")
    read_kill_switch(tmp_path)
    release_kill_switch(tmp_path)
    read_kill_switch(tmp_path)
    path.write_text("garbage")
    read_kill_switch(tmp_path)

    assert len(_unreadable_lines(caplog)) == 2


def test_engage_when_flatten_pending_then_plain_on_keeps_flatten_and_since(tmp_path: Path) -> None:
    engage_kill_switch(tmp_path, flatten=True, now=T0)

    engage_kill_switch(tmp_path, flatten=False, now=T1)

    assert kill_switch_status(tmp_path) == {
        "engaged": True,
        "flatten": True,
        "since": T0.isoformat(),
    }


def test_engage_when_on_then_on_flatten_then_a_new_flatten_engagement(tmp_path: Path) -> None:
    engage_kill_switch(tmp_path, flatten=False, now=T0)

    engage_kill_switch(tmp_path, flatten=True, now=T1)

    state = read_kill_switch(tmp_path)
    assert state.flatten is True and state.since == T1


def test_engage_when_file_corrupt_then_rewritten_readable(tmp_path: Path) -> None:
    path = kill_switch_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("garbage")

    engage_kill_switch(tmp_path, flatten=False, now=T0)

    assert read_kill_switch(tmp_path).since == T0
