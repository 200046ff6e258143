"""The Great Expectations suite: passes on accepted bars, blocks bad frames, and agrees with
validate_bars rule for rule on the same faulty data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quality import UTC_CHECK_NAME, ReasonCode, coerce_bars, empty_bars, run_bar_suite
from tests.quality.factories import NOW, SOURCE, clean_bars, reasons_by_position, run, with_cells

# GX expectation (type, columns) per reason code. After coercion a missing cell and a
# non-numeric one are both null, so GX cannot tell MISSING_VALUE from NON_NUMERIC: they share
# the not-null expectations.
_NOT_NULL = "expect_column_values_to_not_be_null"
_BETWEEN = "expect_column_values_to_be_between"
_PAIR = "expect_column_pair_values_a_to_be_greater_than_b"
REASON_TO_GX: dict[tuple[ReasonCode, ...], list[tuple[str, tuple[str, ...]]]] = {
    (ReasonCode.MISSING_VALUE, ReasonCode.NON_NUMERIC): [
        (_NOT_NULL, (c,)) for c in ("open", "high", "low", "close", "volume")
    ],
    (ReasonCode.NON_POSITIVE_PRICE, ReasonCode.PRICE_OUT_OF_RANGE): [
        (_BETWEEN, (c,)) for c in ("open", "high", "low", "close")
    ],
    (ReasonCode.NEGATIVE_VOLUME,): [(_BETWEEN, ("volume",))],
    (ReasonCode.HIGH_BELOW_LOW,): [(_PAIR, ("high", "low"))],
    (ReasonCode.HIGH_BELOW_OPEN_CLOSE,): [(_PAIR, ("high", "open")), (_PAIR, ("high", "close"))],
    (ReasonCode.LOW_ABOVE_OPEN_CLOSE,): [(_PAIR, ("open", "low")), (_PAIR, ("close", "low"))],
}
_TS_REASONS = {
    ReasonCode.UNPARSEABLE_TS.value, ReasonCode.NAIVE_TS.value, ReasonCode.FUTURE_TS.value,
    ReasonCode.MISALIGNED_TS.value,
}  # fmt: skip


def _faulty_raw() -> pd.DataFrame:
    bars = clean_bars(60)
    raw = with_cells(bars, 1, open=None)
    raw = with_cells(raw, 2, close="n/a")
    raw = with_cells(raw, 3, volume="")
    raw = with_cells(raw, 4, open=-2.0)  # also breaks open >= low: precedence decides
    raw = with_cells(raw, 5, low=0.0)
    raw = with_cells(raw, 6, volume=-7)
    raw = with_cells(raw, 7, high=bars["low"][7] * 0.99)  # high < low (and < open, close)
    raw = with_cells(raw, 8, high=max(bars["open"][8], bars["close"][8]) - 1e-6)
    raw = with_cells(raw, 9, low=min(bars["open"][9], bars["close"][9]) + 1e-6)
    raw = with_cells(raw, 10, ts="2024-01-01 10:00")  # naive ts and a bad price
    raw = with_cells(raw, 10, open=-1.0)
    raw = with_cells(raw, 11, ts="garbage")
    raw = with_cells(raw, 12, high="1e400")  # inf: non-numeric
    raw = with_cells(raw, 13, high=1e308, close=1e308)  # finite but no price: out of range
    return pd.concat([raw, raw.iloc[[20, 21]]], ignore_index=True)  # duplicates


def _gx_index(outcome, expectation: str, columns: tuple[str, ...]) -> set[int]:
    (match,) = [r for r in outcome.results if r.expectation == expectation and r.columns == columns]
    return set(match.unexpected_index)


def test_suite_when_run_on_accepted_bars_then_passes_fully():
    result = run(_faulty_raw())

    outcome = run_bar_suite(result.accepted)

    assert outcome.success, outcome.blocking_failures + outcome.warnings
    assert outcome.passed_blocking
    assert any(r.expectation == _PAIR for r in outcome.results)


def test_suite_when_run_on_coerced_faulty_frame_then_agrees_with_validate_bars_rule_by_rule():
    raw = _faulty_raw()
    result = run(raw)
    coerced = coerce_bars(raw, symbol="BTCUSD", timeframe="1h", source=SOURCE, now=NOW)
    reasons = reasons_by_position(result)

    outcome = run_bar_suite(coerced, include_unexpected_index=True)

    # A row carries the first reason it fails, so GX's flagged rows for a rule, minus rows
    # already claimed by an earlier rule, must be exactly the rows quarantined for it.
    claimed = {p for p, r in reasons.items() if r in _TS_REASONS}
    for codes, gx_checks in REASON_TO_GX.items():
        flagged = set().union(*(_gx_index(outcome, e, cols) for e, cols in gx_checks))
        quarantined = {p for p, r in reasons.items() if r in {c.value for c in codes}}
        assert flagged - claimed == quarantined, codes
        assert quarantined, f"fixture injects no {codes}"
        claimed |= quarantined


def test_suite_when_each_faulty_row_breaks_one_rule_then_counts_equal_quarantine_counts():
    bars = clean_bars(60)
    raw = with_cells(bars, 1, volume=None)
    raw = with_cells(raw, 2, volume=np.nan)
    raw = with_cells(raw, 3, volume=-1.0)
    raw = with_cells(raw, 4, high=bars["close"][4] - 1e-6, open=bars["low"][4])  # high < close
    raw = with_cells(raw, 5, low=bars["open"][5] + 1e-6, close=bars["high"][5])  # low > open
    result = run(raw)
    coerced = coerce_bars(raw, symbol="BTCUSD", timeframe="1h", source=SOURCE, now=NOW)

    outcome = run_bar_suite(coerced)

    counts = {(r.expectation, r.columns): r.unexpected_count for r in outcome.results}
    by_reason = result.report.by_reason
    assert counts[(_NOT_NULL, ("volume",))] == by_reason[ReasonCode.MISSING_VALUE.value] == 2
    assert counts[(_BETWEEN, ("volume",))] == by_reason[ReasonCode.NEGATIVE_VOLUME.value] == 1
    assert counts[(_PAIR, ("high", "close"))] == by_reason["high_below_open_close"] == 1
    assert counts[(_PAIR, ("open", "low"))] == by_reason["low_above_open_close"] == 1
    assert counts[(_PAIR, ("high", "low"))] == 0


def test_suite_when_ohlc_broken_in_a_canonical_frame_then_blocking_failure():
    frame = run(clean_bars(10)).accepted
    frame.loc[3, "high"] = frame.loc[3, "low"] - 1.0

    outcome = run_bar_suite(frame)

    assert not outcome.passed_blocking
    failed = {(r.expectation, r.columns) for r in outcome.blocking_failures}
    assert (_PAIR, ("high", "low")) in failed


def test_suite_when_duplicate_and_unsorted_ts_then_key_and_order_block():
    frame = run(clean_bars(10)).accepted
    frame = pd.concat([frame, frame.iloc[[2]]], ignore_index=True)

    outcome = run_bar_suite(frame)

    failed = {r.expectation for r in outcome.blocking_failures}
    assert {"expect_compound_columns_to_be_unique", "expect_column_values_to_be_increasing"} <= (
        failed
    )


def test_suite_when_ts_in_another_timezone_then_utc_check_blocks():
    frame = run(clean_bars(5)).accepted
    frame["ts"] = frame["ts"].dt.tz_convert("Europe/Paris")

    outcome = run_bar_suite(frame)

    assert [r.expectation for r in outcome.blocking_failures] == [UTC_CHECK_NAME]


def test_suite_when_ts_naive_then_type_check_blocks():
    frame = run(clean_bars(5)).accepted
    frame["ts"] = frame["ts"].dt.tz_localize(None)

    outcome = run_bar_suite(frame)

    failed = {(r.expectation, r.columns) for r in outcome.blocking_failures}
    assert ("expect_column_values_to_be_of_type", ("ts",)) in failed


def test_suite_when_column_missing_then_schema_blocks():
    frame = run(clean_bars(5)).accepted.drop(columns=["source"])

    outcome = run_bar_suite(frame)

    assert "expect_table_columns_to_match_ordered_list" in {
        r.expectation for r in outcome.blocking_failures
    }


def test_suite_when_frame_empty_then_warning_only():
    outcome = run_bar_suite(empty_bars())

    assert outcome.passed_blocking
    assert not outcome.success
    assert [r.expectation for r in outcome.warnings] == ["expect_table_row_count_to_be_between"]


def test_suite_when_run_then_frame_not_mutated():
    frame = run(clean_bars(5)).accepted
    before = frame.copy(deep=True)

    run_bar_suite(frame)

    pd.testing.assert_frame_equal(frame, before)


def test_suite_when_given_non_frame_then_type_error():
    with pytest.raises(TypeError, match="DataFrame"):
        run_bar_suite([1, 2, 3])  # type: ignore[arg-type]


def test_suite_when_run_then_rule_ids_unique_and_severity_split_as_documented():
    outcome = run_bar_suite(run(clean_bars(5)).accepted)

    rules = [r.rule for r in outcome.results]
    assert len(rules) == len(set(rules))
    assert {r.rule for r in outcome.results if not r.blocking} == {"not_empty"}
    assert {"high_ge_low", "unique_key", "ts_strictly_increasing", "ts_utc"} <= set(rules)
