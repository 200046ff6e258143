"""Protective stops and take profits: distances, initial levels, trailing and intrabar triggers.

The same functions run in the engine (which mirrors the levels in its state) and in the paper
broker (which holds them resting and triggers them), so both always agree on a level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from execution.config import StopConfig

__all__ = [
    "AtrEstimator",
    "check_trigger",
    "initial_levels",
    "stop_distance",
    "trail",
]


@dataclass(slots=True)
class AtrEstimator:
    """Wilder's average true range; the plain mean of true ranges until `period` bars exist."""

    period: int
    prev_close: float = math.nan
    atr: float = math.nan
    count: int = 0

    def update(self, high: float, low: float, close: float) -> None:
        if self.count == 0:
            tr = high - low
        else:
            pc = self.prev_close
            tr = max(high - low, abs(high - pc), abs(low - pc))
        self.count += 1
        if self.count == 1:
            self.atr = tr
        elif self.count <= self.period:
            self.atr += (tr - self.atr) / self.count
        else:
            self.atr = (self.atr * (self.period - 1) + tr) / self.period
        self.prev_close = close

    @property
    def value(self) -> float | None:
        return self.atr if self.count > 0 else None


def stop_distance(config: StopConfig, price: float, atr: float | None) -> float | None:
    """Distance (price units, > 0) from the decision price to the stop; None without stops.

    "atr" falls back to the fixed percentage until the first bar's range is known.
    """
    if config.kind == "none":
        return None
    if config.kind == "atr" and atr is not None and atr > 0.0:
        return config.atr_mult * atr
    return config.stop_pct * price


def initial_levels(
    config: StopConfig, direction: int, price: float, distance: float | None
) -> tuple[float | None, float | None]:
    """(stop, take_profit) prices for a new position of `direction` decided at `price`."""
    if distance is None or direction == 0:
        return None, None
    stop = price - direction * distance
    tp = None
    if config.take_profit_mult is not None:
        tp = price + direction * config.take_profit_mult * distance
    return stop, tp


def trail(
    config: StopConfig, direction: int, stop: float, extreme: float, high: float, low: float
) -> tuple[float, float]:
    """(stop, extreme) after a bar: a trailing stop follows the best price by stop_pct."""
    if config.kind != "trailing":
        return stop, extreme
    if direction > 0:
        extreme = max(extreme, high)
        return max(stop, extreme * (1.0 - config.stop_pct)), extreme
    extreme = min(extreme, low)
    return min(stop, extreme * (1.0 + config.stop_pct)), extreme


def check_trigger(
    direction: int,
    stop: float | None,
    take_profit: float | None,
    open_: float,
    high: float,
    low: float,
) -> tuple[str, float] | None:
    """Which protective level a bar hits first and the raw price it executes at, or None.

    A gap through a level fills at the open; when one bar spans both levels the stop is assumed
    to come first (the conservative reading of an unknown intrabar path).
    """
    if direction > 0:
        if stop is not None and open_ <= stop:
            return "stop", open_
        if take_profit is not None and open_ >= take_profit:
            return "take_profit", open_
        if stop is not None and low <= stop:
            return "stop", stop
        if take_profit is not None and high >= take_profit:
            return "take_profit", take_profit
    elif direction < 0:
        if stop is not None and open_ >= stop:
            return "stop", open_
        if take_profit is not None and open_ <= take_profit:
            return "take_profit", open_
        if stop is not None and high >= stop:
            return "stop", stop
        if take_profit is not None and low <= take_profit:
            return "take_profit", take_profit
    return None
