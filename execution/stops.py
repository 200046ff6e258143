"""Protective stops and take profits: distances, initial levels, trailing and intrabar triggers.

The same functions run in the engine (which mirrors the levels in its state), in the paper
broker (which holds them resting and triggers them) and, compiled, in the fast backtest path
(`execution._fast`), so all agree on a level. The rules are the scalar functions (`atr_step`,
`trail_stop`, `trigger_code`, `opens_protection`); the objects and config-taking helpers wrap them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from execution.config import STOP_KINDS, StopConfig

__all__ = [
    "STOP_KIND_CODES",
    "TRIGGER_NONE",
    "TRIGGER_STOP",
    "TRIGGER_TAKE_PROFIT",
    "AtrEstimator",
    "atr_step",
    "check_trigger",
    "distance_of",
    "initial_levels",
    "levels_of",
    "opens_protection",
    "stop_distance",
    "trail",
    "trail_stop",
    "trigger_code",
]

TRIGGER_NONE, TRIGGER_STOP, TRIGGER_TAKE_PROFIT = 0, 1, 2
# Integer codes of StopConfig.kind, for the scalar rules (0 "none", 2 "atr").
STOP_KIND_CODES = {kind: code for code, kind in enumerate(STOP_KINDS)}


def atr_step(
    count: int, atr: float, prev_close: float, high: float, low: float, period: int
) -> tuple[int, float]:
    """(count, atr) after one more bar: Wilder's ATR, the plain mean until `period` bars."""
    tr = high - low
    if count > 0:
        a = abs(high - prev_close)
        if a > tr:
            tr = a
        b = abs(low - prev_close)
        if b > tr:
            tr = b
    count += 1
    if count == 1:
        atr = tr
    elif count <= period:
        atr += (tr - atr) / count
    else:
        atr = (atr * (period - 1) + tr) / period
    return count, atr


@dataclass(slots=True)
class AtrEstimator:
    """Wilder's average true range; the plain mean of true ranges until `period` bars exist."""

    period: int
    prev_close: float = math.nan
    atr: float = math.nan
    count: int = 0

    def update(self, high: float, low: float, close: float) -> None:
        self.count, self.atr = atr_step(
            self.count, self.atr, self.prev_close, high, low, self.period
        )
        self.prev_close = close

    @property
    def value(self) -> float | None:
        return self.atr if self.count > 0 else None


def distance_of(
    kind: int, price: float, atr_count: int, atr: float, atr_mult: float, stop_pct: float
) -> float:
    """The rule of `stop_distance` on scalars for a kind (STOP_KIND_CODES) other than "none"."""
    if kind == 2 and atr_count > 0 and atr > 0.0:
        return atr_mult * atr
    return stop_pct * price


def stop_distance(config: StopConfig, price: float, atr: float | None) -> float | None:
    """Distance (price units, > 0) from the decision price to the stop; None without stops.

    "atr" falls back to the fixed percentage until the first bar's range is known.
    """
    if config.kind == "none":
        return None
    return distance_of(
        STOP_KIND_CODES[config.kind],
        price,
        0 if atr is None else 1,
        0.0 if atr is None else atr,
        config.atr_mult,
        config.stop_pct,
    )


def opens_protection(
    is_entry: bool, protected: bool, sign: int, new_qty: float, has_stop: bool, has_tp: bool
) -> bool:
    """True when a fill on side `sign` of an order with a stop and/or take profit opens the
    position's protection: an entry whose fill leaves the position on its side, while no
    protection is open yet (the first fill sets the levels, later fills keep them)."""
    return is_entry and not protected and new_qty * sign > 0.0 and (has_stop or has_tp)


def levels_of(
    direction: int, price: float, distance: float, take_profit_mult: float
) -> tuple[float, float]:
    """(stop, take_profit) on scalars; the take profit is meaningless when none is configured."""
    return price - direction * distance, price + direction * take_profit_mult * distance


def initial_levels(
    config: StopConfig, direction: int, price: float, distance: float | None
) -> tuple[float | None, float | None]:
    """(stop, take_profit) prices for a new position of `direction` decided at `price`."""
    if distance is None or direction == 0:
        return None, None
    mult = config.take_profit_mult
    stop, tp = levels_of(direction, price, distance, mult if mult is not None else 0.0)
    return stop, (tp if mult is not None else None)


def trail_stop(
    direction: int, stop: float, extreme: float, high: float, low: float, stop_pct: float
) -> tuple[float, float]:
    """(stop, extreme) after a bar: the stop follows the best price by stop_pct, never back."""
    if direction > 0:
        if high > extreme:
            extreme = high
        cand = extreme * (1.0 - stop_pct)
        return (cand if cand > stop else stop), extreme
    if low < extreme:
        extreme = low
    cand = extreme * (1.0 + stop_pct)
    return (cand if cand < stop else stop), extreme


def trail(
    config: StopConfig, direction: int, stop: float, extreme: float, high: float, low: float
) -> tuple[float, float]:
    """(stop, extreme) after a bar: a trailing stop follows the best price by stop_pct."""
    if config.kind != "trailing":
        return stop, extreme
    return trail_stop(direction, stop, extreme, high, low, config.stop_pct)


def trigger_code(
    direction: int,
    has_stop: bool,
    stop: float,
    has_tp: bool,
    take_profit: float,
    open_: float,
    high: float,
    low: float,
) -> tuple[int, float]:
    """(TRIGGER_*, raw price) of the protective level a bar hits first; (TRIGGER_NONE, 0.0).

    A gap through a level fills at the open; when one bar spans both levels the stop is assumed
    to come first (the conservative reading of an unknown intrabar path).
    """
    if direction > 0:
        if has_stop and open_ <= stop:
            return TRIGGER_STOP, open_
        if has_tp and open_ >= take_profit:
            return TRIGGER_TAKE_PROFIT, open_
        if has_stop and low <= stop:
            return TRIGGER_STOP, stop
        if has_tp and high >= take_profit:
            return TRIGGER_TAKE_PROFIT, take_profit
    elif direction < 0:
        if has_stop and open_ >= stop:
            return TRIGGER_STOP, open_
        if has_tp and open_ <= take_profit:
            return TRIGGER_TAKE_PROFIT, open_
        if has_stop and high >= stop:
            return TRIGGER_STOP, stop
        if has_tp and low <= take_profit:
            return TRIGGER_TAKE_PROFIT, take_profit
    return TRIGGER_NONE, 0.0


def check_trigger(
    direction: int,
    stop: float | None,
    take_profit: float | None,
    open_: float,
    high: float,
    low: float,
) -> tuple[str, float] | None:
    """Which protective level a bar hits first ("stop" / "take_profit") and its raw price."""
    code, price = trigger_code(
        direction,
        stop is not None,
        stop if stop is not None else 0.0,
        take_profit is not None,
        take_profit if take_profit is not None else 0.0,
        open_,
        high,
        low,
    )
    if code == TRIGGER_NONE:
        return None
    return ("stop" if code == TRIGGER_STOP else "take_profit"), price
