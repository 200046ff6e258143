"""The series registry: which instruments candleflow tracks and where their bars come from.

A series is one (symbol, timeframe) pair; its key, `SYMBOL@TIMEFRAME`, is also its Dagster
partition key. The registry is a small JSON file under CANDLEFLOW_HOME, written atomically.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from quality.schema import timeframe_to_timedelta

__all__ = [
    "SeriesRegistry",
    "SeriesSpec",
    "SeriesSpecError",
    "parse_series_key",
    "series_key",
]

_SOURCES = ("bundled", "file", "alphavantage", "binance", "mt5")
_CLASSES = ("equity", "fx", "crypto")


class SeriesSpecError(ValueError):
    """A series key or spec that candleflow cannot use."""


def series_key(symbol: str, timeframe: str) -> str:
    return f"{symbol}@{timeframe}"


def parse_series_key(key: str) -> tuple[str, str]:
    symbol, sep, timeframe = key.rpartition("@")
    if not sep or not symbol:
        msg = f"series key {key!r} must look like SYMBOL@TIMEFRAME, e.g. SPX@1d"
        raise SeriesSpecError(msg)
    timeframe_to_timedelta(timeframe)
    return symbol, timeframe


@dataclass(frozen=True)
class SeriesSpec:
    symbol: str
    timeframe: str
    source: str  # bundled | file | alphavantage | binance | mt5
    instrument_class: str = "equity"  # equity | fx | crypto: picks the trading calendar
    options: Mapping[str, Any] = field(default_factory=dict)  # source-specific: dataset, path...

    def __post_init__(self) -> None:
        timeframe_to_timedelta(self.timeframe)
        if self.source not in _SOURCES:
            msg = f"unknown source {self.source!r}; use one of {', '.join(_SOURCES)}"
            raise SeriesSpecError(msg)
        if self.instrument_class not in _CLASSES:
            msg = f"unknown instrument class {self.instrument_class!r}; use {', '.join(_CLASSES)}"
            raise SeriesSpecError(msg)
        if "@" in self.symbol or not self.symbol:
            msg = f"symbol {self.symbol!r} must be non-empty and must not contain '@'"
            raise SeriesSpecError(msg)

    @property
    def key(self) -> str:
        return series_key(self.symbol, self.timeframe)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SeriesSpec:
        allowed = {"symbol", "timeframe", "source", "instrument_class", "options"}
        unknown = set(data) - allowed
        if unknown:
            msg = f"unknown series fields: {', '.join(sorted(unknown))}"
            raise SeriesSpecError(msg)
        return cls(**{k: v for k, v in data.items()})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = dict(self.options)
        return d


class SeriesRegistry:
    """Series specs by key, persisted at `path` (JSON). Safe to re-add the same spec."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, SeriesSpec]:
        if not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            msg = f"series registry {self.path} is not valid JSON ({exc}); fix or delete it"
            raise SeriesSpecError(msg) from exc
        return {k: SeriesSpec.from_mapping(v) for k, v in raw.items()}

    def get(self, key: str) -> SeriesSpec:
        specs = self.load()
        if key not in specs:
            msg = (
                f"series {key!r} is not registered; known: {', '.join(sorted(specs)) or 'none'}. "
                "Register it with `candleflow ingest` or drop a file into the drop folder"
            )
            raise SeriesSpecError(msg)
        return specs[key]

    def put(self, spec: SeriesSpec) -> bool:
        """Add or replace a spec; returns True when the registry changed. The read-modify-write
        holds an exclusive lock (a `.lock` file beside the registry), so writers in other
        processes (the CLI, the drop-folder sensor, a research run) never lose each other's
        entries; readers need no lock (the file is replaced atomically)."""
        with self._locked():
            specs = self.load()
            if specs.get(spec.key) == spec:
                return False
            specs[spec.key] = spec
            self._write({k: v.to_dict() for k, v in sorted(specs.items())})
            return True

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".series-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
