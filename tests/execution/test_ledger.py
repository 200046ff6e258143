from __future__ import annotations

import pytest

from execution.ledger import committed_direction, fully_filled, in_flight_units


@pytest.mark.parametrize(
    ("cancel_requested", "protective", "expected"),
    [(False, False, -4.0), (True, False, 0.0), (False, True, 0.0)],
)
def test_in_flight_units_when_order_working_then_counts_unless_cancelled_or_protective(
    cancel_requested: bool, protective: bool, expected: float
) -> None:
    assert in_flight_units(-1, 4.0, cancel_requested, protective) == expected


@pytest.mark.parametrize(
    ("expected", "direction"), [(2.5, 1), (-0.5, -1), (0.0, 0), (1e-12, 0), (-1e-12, 0)]
)
def test_committed_direction_when_expected_position_then_its_sign_with_dust_flat(
    expected: float, direction: int
) -> None:
    assert committed_direction(expected) == direction


@pytest.mark.parametrize(
    ("remaining", "done"), [(0.0, True), (1e-9, True), (-1e-12, True), (2e-9, False)]
)
def test_fully_filled_when_rest_is_dust_then_done(remaining: float, done: bool) -> None:
    assert fully_filled(remaining) is done
