"""Trading calendars: the timeframe grid, sessions per instrument class, gap runs."""

from __future__ import annotations

import pandas as pd
import pytest

from quality import (
    Gap,
    UnknownInstrumentClassError,
    UnsupportedCalendarError,
    expected_timestamps,
    find_gaps,
    is_on_grid,
)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_expected_when_fx_hourly_over_weekend_then_closed_fri_22_to_sun_22():
    # 2024-01-05 is a Friday, 2024-01-07 a Sunday.
    got = expected_timestamps("fx", "1h", ts("2024-01-05 20:00"), ts("2024-01-07 23:00"))

    assert list(got) == [
        ts("2024-01-05 20:00"), ts("2024-01-05 21:00"), ts("2024-01-07 22:00"),
        ts("2024-01-07 23:00"),
    ]  # fmt: skip


def test_expected_when_crypto_then_every_bar_of_the_week():
    got = expected_timestamps("crypto", "4h", ts("2024-01-05 00:00"), ts("2024-01-08 00:00"))

    assert len(got) == 3 * 6 + 1


def test_expected_when_equity_daily_then_exchange_sessions_without_holidays():
    # Monday 2024-01-01 (New Year's Day) to Tuesday 2024-01-16 (Monday the 15th is MLK Day).
    got = expected_timestamps("equity", "1d", ts("2024-01-01"), ts("2024-01-16"))

    assert [d.strftime("%a %d") for d in got] == [
        "Tue 02", "Wed 03", "Thu 04", "Fri 05", "Mon 08", "Tue 09", "Wed 10", "Thu 11", "Fri 12",
        "Tue 16",
    ]  # fmt: skip


def test_expected_when_equity_special_closure_then_not_expected():
    # The NYSE closed on 2012-10-29 and 30 for Hurricane Sandy: a maintained calendar knows.
    got = expected_timestamps("equity", "1d", ts("2012-10-26"), ts("2012-10-31"))

    assert list(got) == [ts("2012-10-26"), ts("2012-10-31")]


def test_expected_when_equity_weekly_then_every_monday_even_a_holiday():
    got = expected_timestamps("equity", "1w", ts("2024-01-01"), ts("2024-01-15"))

    assert list(got) == [ts("2024-01-01"), ts("2024-01-08"), ts("2024-01-15")]


def test_expected_when_unknown_exchange_then_unsupported_calendar():
    with pytest.raises(UnsupportedCalendarError, match="unknown exchange calendar 'XNOPE'"):
        expected_timestamps("equity", "1d", ts("2024-01-01"), ts("2024-01-05"), exchange="XNOPE")


def test_expected_when_fx_hourly_in_summer_then_week_follows_new_york_17h():
    # 2024-07-05 is a Friday, 2024-07-07 a Sunday; New York is UTC-4 (EDT).
    got = expected_timestamps("fx", "1h", ts("2024-07-05 19:00"), ts("2024-07-07 22:00"))

    assert list(got) == [
        ts("2024-07-05 19:00"), ts("2024-07-05 20:00"), ts("2024-07-07 21:00"),
        ts("2024-07-07 22:00"),
    ]  # fmt: skip


def test_gaps_when_fx_summer_week_complete_then_no_friday_21h_gap():
    # An EDT trading week and the next week's open as a venue stamps them: Sunday 21:00 to
    # Friday 20:00 UTC, then Sunday 21:00 again. A fixed 22:00 UTC close would miss Friday 21:00.
    week = pd.date_range(ts("2024-07-07 21:00"), ts("2024-07-12 20:00"), freq="1h")
    present = week.append(pd.DatetimeIndex([ts("2024-07-14 21:00"), ts("2024-07-14 22:00")]))

    assert find_gaps(present, "fx", "1h") == ()


def test_expected_when_fx_daily_then_monday_to_friday():
    got = expected_timestamps("fx", "1d", ts("2024-01-01"), ts("2024-01-07"))

    assert len(got) == 5


def test_expected_when_equity_intraday_then_unsupported_calendar():
    with pytest.raises(UnsupportedCalendarError, match="intraday equity"):
        expected_timestamps("equity", "5m", ts("2024-01-01"), ts("2024-01-02"))


def test_expected_when_unknown_class_then_error():
    with pytest.raises(UnknownInstrumentClassError):
        expected_timestamps("bond", "1d", ts("2024-01-01"), ts("2024-01-02"))


def test_expected_when_start_off_grid_then_starts_at_next_grid_point():
    got = expected_timestamps("crypto", "1h", ts("2024-01-01 10:07"), ts("2024-01-01 12:00"))

    assert list(got) == [ts("2024-01-01 11:00"), ts("2024-01-01 12:00")]


def test_grid_when_weekly_then_mondays_only():
    stamps = pd.DatetimeIndex([ts("2024-01-01"), ts("2024-01-02"), ts("2024-01-08")])

    assert is_on_grid(stamps, "1w").tolist() == [True, False, True]


def test_grid_when_nat_then_false():
    stamps = pd.DatetimeIndex([ts("2024-01-01 10:00"), pd.NaT], tz="UTC")

    assert is_on_grid(stamps, "1h").tolist() == [True, False]


def test_gaps_when_weekend_missing_for_fx_then_no_gap():
    present = expected_timestamps("fx", "1h", ts("2024-01-05 00:00"), ts("2024-01-08 00:00"))

    assert find_gaps(present, "fx", "1h") == ()


def test_gaps_when_bars_missing_then_grouped_into_runs():
    present = pd.date_range(ts("2024-01-01"), periods=10, freq="1h").delete([2, 3, 7])

    gaps = find_gaps(present, "crypto", "1h")

    assert gaps == (
        Gap(ts("2024-01-01 02:00"), ts("2024-01-01 03:00"), 2),
        Gap(ts("2024-01-01 07:00"), ts("2024-01-01 07:00"), 1),
    )


def test_gaps_when_missing_run_spans_fx_weekend_then_one_run():
    present = pd.DatetimeIndex([ts("2024-01-05 19:00"), ts("2024-01-07 23:00")])

    gaps = find_gaps(present, "fx", "1h")

    assert gaps == (Gap(ts("2024-01-05 20:00"), ts("2024-01-07 22:00"), 3),)


def test_gaps_when_empty_then_none():
    assert find_gaps(pd.DatetimeIndex([], tz="UTC"), "crypto", "1m") == ()
