"""The kill switch: a file under CANDLEFLOW_HOME/live/KILL that every portfolio step reads.

Engaged, the live plane opens no new positions; with `flatten` it also closes every open
position once (orders with intent "flatten"). A file, not a message, so that an operator can
pull it from a shell (`candleflow live kill`) while the worker is busy, crashed or restarting,
and it survives restarts.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "KillSwitchState",
    "engage_kill_switch",
    "kill_switch_path",
    "kill_switch_status",
    "read_kill_switch",
    "release_kill_switch",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KillSwitchState:
    engaged: bool
    flatten: bool  # close open positions, not only stop opening new ones
    since: datetime | None  # when it was engaged (UTC); identifies one engagement

    def to_dict(self) -> dict[str, Any]:
        return {
            "engaged": self.engaged,
            "flatten": self.flatten,
            "since": None if self.since is None else self.since.isoformat(),
        }


RELEASED = KillSwitchState(engaged=False, flatten=False, since=None)
# The content of each unreadable switch file last reported, so each corruption logs once.
_last_unreadable: dict[Path, str] = {}


def kill_switch_path(home: Path) -> Path:
    return Path(home) / "live" / "KILL"


def engage_kill_switch(home: Path, *, flatten: bool, now: datetime | None = None) -> None:
    """Stop new entries (and with `flatten`, close all positions) from the next bar on.

    Engaging a switch that is already on never weakens it: a pending flatten stays pending
    (same engagement, same `since`), so `on --flatten` then `on` still closes the positions.
    """
    when = now or datetime.now(UTC)
    path = kill_switch_path(home)
    current = read_kill_switch(home)
    if current.engaged and current.since is not None and (current.flatten or not flatten):
        logger.warning(
            "event=kill_switch_already_engaged flatten=%s since=%s",
            current.flatten,
            current.since.isoformat(),
        )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"flatten": bool(flatten), "since": when.isoformat()}))
    os.replace(tmp, path)
    logger.warning("event=kill_switch_engaged flatten=%s since=%s", flatten, when.isoformat())


def release_kill_switch(home: Path) -> None:
    path = kill_switch_path(home)
    if path.exists():
        path.unlink()
        logger.warning("event=kill_switch_released")


def read_kill_switch(home: Path) -> KillSwitchState:
    """The switch as the portfolio step sees it. An unreadable file counts as engaged."""
    path = kill_switch_path(home)
    try:
        raw = path.read_text()
    except FileNotFoundError:
        _last_unreadable.pop(path, None)
        return RELEASED
    try:
        data = json.loads(raw)
        since = datetime.fromisoformat(data["since"])
        flatten = bool(data.get("flatten", False))
    except (ValueError, KeyError, TypeError):
        # Fail safe: somebody meant to stop trading; a corrupt file must not resume it. Said
        # once per content, not once per bar that reads it.
        if _last_unreadable.get(path) != raw:
            _last_unreadable[path] = raw
            logger.error(
                "event=kill_switch_unreadable path=%s engaged=true reason=not the JSON "
                "`candleflow kill-switch on` writes; run `candleflow kill-switch off` or `on` "
                "to replace it",
                path,
            )
        return KillSwitchState(engaged=True, flatten=False, since=None)
    _last_unreadable.pop(path, None)
    return KillSwitchState(engaged=True, flatten=flatten, since=since)


def kill_switch_status(home: Path) -> dict[str, Any]:
    """JSON-able status: {"engaged": bool, "flatten": bool, "since": iso str | None}."""
    return read_kill_switch(home).to_dict()
