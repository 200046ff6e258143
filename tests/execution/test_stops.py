from __future__ import annotations

import pytest

from execution.config import StopConfig
from execution.stops import (
    AtrEstimator,
    check_trigger,
    initial_levels,
    opens_protection,
    stop_distance,
    trail,
)


def test_check_trigger_when_gap_through_stop_then_fills_at_open() -> None:
    assert check_trigger(1, 95.0, None, 90.0, 92.0, 89.0) == ("stop", 90.0)
    assert check_trigger(-1, 105.0, None, 110.0, 111.0, 108.0) == ("stop", 110.0)


def test_check_trigger_when_low_touches_stop_then_fills_at_stop() -> None:
    assert check_trigger(1, 95.0, 110.0, 100.0, 101.0, 94.0) == ("stop", 95.0)


def test_check_trigger_when_bar_spans_both_then_stop_first() -> None:
    assert check_trigger(1, 95.0, 105.0, 100.0, 106.0, 94.0) == ("stop", 95.0)


def test_check_trigger_when_high_reaches_take_profit_then_fills_at_level() -> None:
    assert check_trigger(1, 95.0, 105.0, 100.0, 106.0, 99.0) == ("take_profit", 105.0)
    assert check_trigger(1, 95.0, 105.0, 100.0, 101.0, 99.0) is None


def test_initial_levels_when_short_with_take_profit_then_mirrored() -> None:
    cfg = StopConfig(kind="fixed", stop_pct=0.02, take_profit_mult=2.0)
    dist = stop_distance(cfg, 100.0, None)

    stop, tp = initial_levels(cfg, -1, 100.0, dist)

    assert stop == pytest.approx(102.0)
    assert tp == pytest.approx(96.0)


def test_trail_when_price_rises_then_stop_follows_and_never_falls() -> None:
    cfg = StopConfig(kind="trailing", stop_pct=0.1)
    stop, extreme = trail(cfg, 1, 90.0, 100.0, 120.0, 110.0)
    assert (stop, extreme) == (pytest.approx(108.0), 120.0)
    stop, extreme = trail(cfg, 1, stop, extreme, 115.0, 100.0)
    assert stop == pytest.approx(108.0)


def test_atr_when_more_bars_than_period_then_wilder_smoothing() -> None:
    atr = AtrEstimator(period=2)
    atr.update(11.0, 9.0, 10.0)  # tr 2
    atr.update(12.0, 10.0, 11.0)  # tr 2
    atr.update(15.0, 11.0, 14.0)  # tr 4 -> (2 * 1 + 4) / 2
    assert atr.value == pytest.approx(3.0)
    assert stop_distance(StopConfig(kind="atr", atr_mult=2.0), 100.0, atr.value) == 6.0


@pytest.mark.parametrize(
    ("is_entry", "protected", "new_qty", "has_stop", "has_tp", "opens"),
    [
        (True, False, 5.0, True, False, True),
        (True, False, 5.0, False, True, True),
        (False, False, 5.0, True, True, False),  # an exit never opens protection
        (True, True, 5.0, True, True, False),  # the first fill set the levels already
        (True, False, -2.0, True, True, False),  # the buy only reduced a short
        (True, False, 5.0, False, False, False),  # nothing to protect with
    ],
)
def test_opens_protection_when_fill_then_only_first_entry_fill_on_its_side_opens(
    is_entry: bool, protected: bool, new_qty: float, has_stop: bool, has_tp: bool, opens: bool
) -> None:
    assert opens_protection(is_entry, protected, 1, new_qty, has_stop, has_tp) is opens
