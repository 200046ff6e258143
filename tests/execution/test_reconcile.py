"""Pure reconciliation: ledger vs venue, and the fills that adopt the venue's state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from execution.domain import Position, Side
from execution.reconcile import ReconcileConfig, ReconcilePolicy, adoption_fills, compare

TS = datetime(2024, 3, 4, 13, tzinfo=UTC)


def test_compare_when_positions_equal_then_ok():
    report = compare({"EURUSD": 45_000.0}, {"EURUSD": 45_000.0 + 1e-9})
    assert report.ok
    assert report.describe() == "agree"


def test_compare_when_venue_closed_what_ledger_holds_then_position_mismatch():
    report = compare({"EURUSD": 45_000.0}, {})

    (m,) = report.mismatches
    assert (m.kind, m.symbol, m.ledger, m.venue) == ("position", "EURUSD", 45_000.0, 0.0)
    assert "EURUSD" in report.describe()


def test_compare_when_venue_already_holds_an_order_in_flight_then_no_mismatch():
    # The deal of a sent order is not in the ledger yet (history shows it late)
    report = compare({}, {"EURUSD": 10_000.0}, in_flight={"EURUSD": 10_000.0})
    assert report.ok


def test_compare_when_venue_works_an_order_the_ledger_does_not_know_then_orders_mismatch():
    report = compare({}, {}, venue_working={"XAUUSD": -30.0})
    assert [m.kind for m in report.mismatches] == ["orders"]


def test_compare_when_an_order_fate_is_unknown_then_unresolved_mismatch():
    report = compare({}, {}, unresolved=[("cf0123", "EURUSD")])
    assert report.count("unresolved") == 1
    assert "cf0123" in report.describe()


def test_adoption_fills_when_ledger_flat_and_venue_long_then_buy_at_venue_price():
    report = compare({}, {"EURUSD": 20_000.0})

    (fill,) = adoption_fills(report, {"EURUSD": Position("EURUSD", 20_000.0, 1.1002)}, {}, TS)

    assert (fill.side, fill.quantity, fill.price) == (Side.BUY, 20_000.0, 1.1002)
    assert fill.client_id.startswith("reconcile-EURUSD-")


def test_adoption_fills_when_venue_closed_the_ledger_position_then_sell_at_mark():
    report = compare({"EURUSD": 20_000.0}, {})

    (fill,) = adoption_fills(report, {}, {"EURUSD": 1.0950}, TS)

    assert (fill.side, fill.quantity, fill.price) == (Side.SELL, 20_000.0, 1.0950)


def test_config_when_confirm_checks_zero_then_refused():
    with pytest.raises(ValueError, match="confirm_checks"):
        ReconcileConfig(confirm_checks=0)


def test_config_when_policy_given_as_text_then_parsed_or_refused():
    assert ReconcileConfig(policy="adopt").policy is ReconcilePolicy.ADOPT  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="policy"):
        ReconcileConfig(policy="ignore")  # type: ignore[arg-type]
