"""CSV and Parquet bar files, and the drop-folder scan."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pandas as pd
import pytest

from infra.sources import (
    SourceFormatError,
    SourceUnavailableError,
    load_file,
    scan_drop_folder,
    watch_drop_folder,
)
from quality import ReasonCode

YAHOO_CSV = """Date,Open,High,Low,Close,Adj Close,Volume
2024-01-02,10.0,11.0,9.5,10.5,5.25,1000
2024-01-03,10.5,12.0,10.0,11.5,5.75,2000
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_load_file_when_yahoo_csv_then_close_is_close_not_adj_close(tmp_path):
    path = write(tmp_path / "x.csv", YAHOO_CSV)

    raw = load_file(path, symbol="X", timeframe="1d", tz="UTC")

    assert list(raw.frame.columns) == ["ts", "open", "high", "low", "close", "volume"]
    assert list(raw.frame["close"]) == [10.5, 11.5]
    assert list(raw.frame["volume"]) == [1000, 2000]
    assert raw.source == f"file:{path.resolve()}"
    assert (raw.symbol, raw.timeframe, raw.instrument_class) == ("X", "1d", "equity")


def test_load_file_when_naive_stamps_and_tz_then_localised_and_converted_to_utc(tmp_path):
    path = write(
        tmp_path / "x.csv",
        "timestamp,open,high,low,close,volume\n"
        "2024-01-02 09:30,1,2,0.5,1.5,10\n"
        "2024-07-02 09:30,1,2,0.5,1.5,10\n",
    )

    raw = load_file(path, symbol="X", timeframe="1m", tz="America/New_York")

    assert str(raw.frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert list(raw.frame["ts"]) == [
        pd.Timestamp("2024-01-02 14:30", tz="UTC"),  # EST, UTC-5
        pd.Timestamp("2024-07-02 13:30", tz="UTC"),  # EDT, UTC-4
    ]


@pytest.mark.parametrize("tz", [None, "Europe/Berlin", "America/New_York", "Asia/Tokyo"])
def test_load_file_when_daily_dates_without_or_with_exchange_tz_then_session_at_utc_midnight(
    tmp_path, tz
):
    path = write(tmp_path / "x.csv", YAHOO_CSV)

    raw = load_file(path, symbol="X", timeframe="1d", tz=tz)

    assert str(raw.frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert list(raw.frame["ts"]) == [
        pd.Timestamp("2024-01-02", tz="UTC"),
        pd.Timestamp("2024-01-03", tz="UTC"),
    ]


def test_load_file_when_daily_stamps_at_local_midnight_with_offset_then_that_session(tmp_path):
    path = write(
        tmp_path / "x.csv",
        "ts,open,high,low,close,volume\n"
        "2024-01-02T00:00:00+01:00,1,2,0.5,1.5,10\n"
        "2024-07-02T00:00:00+02:00,1,2,0.5,1.5,10\n",
    )

    raw = load_file(path, symbol="X", timeframe="1d")

    assert list(raw.frame["ts"]) == [
        pd.Timestamp("2024-01-02", tz="UTC"),
        pd.Timestamp("2024-07-02", tz="UTC"),
    ]


def test_load_file_when_intraday_naive_and_no_tz_then_error_names_tz(tmp_path):
    path = write(tmp_path / "x.csv", "ts,open,high,low,close,volume\n2024-01-02 09:30,1,1,1,1,1\n")

    with pytest.raises(SourceFormatError, match="--tz") as info:
        load_file(path, symbol="X", timeframe="1m")

    assert "\n" not in str(info.value)


def _dated_csv(path: Path, fmt: str, start: str, days: int) -> Path:
    dates = pd.date_range(start, periods=days, freq="D")
    lines = ["Date,Open,High,Low,Close,Volume"]
    lines += [f"{d.strftime(fmt)},10,11,9,10.5,100" for d in dates]
    return write(path, "\n".join(lines) + "\n")


def test_load_file_when_dd_mm_yyyy_and_first_days_at_most_12_then_read_day_first(tmp_path):
    path = _dated_csv(tmp_path / "x.csv", "%d.%m.%Y", "2020-01-01", 40)  # 01.01 .. 12.01 first

    raw = load_file(path, symbol="X", timeframe="1d")

    assert list(raw.frame["ts"]) == list(pd.date_range("2020-01-01", periods=40, tz="UTC"))


def test_load_file_when_mm_dd_yyyy_then_read_month_first(tmp_path):
    path = _dated_csv(tmp_path / "x.csv", "%m/%d/%Y", "2020-01-01", 40)

    raw = load_file(path, symbol="X", timeframe="1d")

    assert list(raw.frame["ts"]) == list(pd.date_range("2020-01-01", periods=40, tz="UTC"))


def test_load_file_when_days_and_months_all_at_most_12_then_refused_naming_options(tmp_path):
    path = _dated_csv(tmp_path / "x.csv", "%d.%m.%Y", "2020-01-01", 3)  # 01.01, 02.01, 03.01

    with pytest.raises(SourceFormatError, match="cannot tell day from month") as info:
        load_file(path, symbol="X", timeframe="1d")

    assert "--dayfirst" in str(info.value) and "--date-format" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("options", "expected"),
    [({"dayfirst": True}, "2020-01-02"), ({"dayfirst": False}, "2020-02-01"),
     ({"date_format": "%m.%d.%Y"}, "2020-02-01")],
)  # fmt: skip
def test_load_file_when_order_given_then_used_as_given(tmp_path, options, expected):
    path = _dated_csv(tmp_path / "x.csv", "%d.%m.%Y", "2020-01-01", 3)

    raw = load_file(path, symbol="X", timeframe="1d", **options)

    assert raw.frame["ts"].iloc[1] == pd.Timestamp(expected, tz="UTC")


@pytest.mark.parametrize(
    ("fmt", "options", "flag"),
    [("%d.%m.%Y", {"dayfirst": False}, "--no-dayfirst"), ("%m/%d/%Y", {"dayfirst": True},
     "--dayfirst")],
)  # fmt: skip
def test_load_file_when_given_order_impossible_for_some_dates_then_refused_not_misread(
    tmp_path, fmt, options, flag
):
    path = _dated_csv(tmp_path / "x.csv", fmt, "2024-01-10", 8)  # the 13th onwards fit one order

    with pytest.raises(SourceFormatError, match=f"{flag} cannot be right") as info:
        load_file(path, symbol="X", timeframe="1d", **options)

    assert "month 13" in str(info.value) and "\n" not in str(info.value)


def test_load_file_when_given_order_and_day_over_31_then_fits_neither_not_the_other_flag(
    tmp_path,
):
    path = write(tmp_path / "x.csv", "Date,Open,High,Low,Close,Volume\n45/03/2024,1,2,0.5,1.5,1\n")

    with pytest.raises(SourceFormatError, match="fit neither day-first nor month-first"):
        load_file(path, symbol="X", timeframe="1d", dayfirst=True)


def test_load_file_when_orders_contradict_within_column_then_refused(tmp_path):
    path = write(
        tmp_path / "x.csv",
        "Date,Open,High,Low,Close,Volume\n13.01.2020,1,2,0.5,1.5,1\n01/14/2020,1,2,0.5,1.5,1\n",
    )

    with pytest.raises(SourceFormatError, match="neither day-first nor month-first"):
        load_file(path, symbol="X", timeframe="1d")


def test_load_file_when_year_3000_then_that_row_faulted_as_unparseable_not_a_crash(tmp_path):
    path = write(
        tmp_path / "x.csv",
        "timestamp,open,high,low,close,volume\n"
        "2024-01-02T00:00:00Z,1,2,0.5,1.5,10\n"
        "3000-01-02T00:00:00Z,1,2,0.5,1.5,10\n",
    )

    raw = load_file(path, symbol="X", timeframe="1d")

    assert raw.frame["ts"].iloc[0] == pd.Timestamp("2024-01-02", tz="UTC")
    assert raw.frame["ts"].iloc[1] == "3000-01-02T00:00:00Z"
    reason, detail = raw.ts_faults[1]
    assert reason == ReasonCode.UNPARSEABLE_TS and "outside the supported range" in detail


def test_load_file_when_local_time_in_dst_gap_then_faulted_nonexistent(tmp_path):
    path = write(
        tmp_path / "x.csv",
        "timestamp,open,high,low,close,volume\n"
        "2024-03-31 01:00,1,2,0.5,1.5,10\n"
        "2024-03-31 02:00,1,2,0.5,1.5,10\n"
        "2024-03-31 03:00,1,2,0.5,1.5,10\n",
    )

    raw = load_file(path, symbol="X", timeframe="1h", tz="Europe/Berlin")

    assert list(raw.ts_faults) == [1]
    assert raw.ts_faults[1][0] == ReasonCode.NONEXISTENT_TS
    assert raw.frame["ts"].iloc[2] == pd.Timestamp("2024-03-31 01:00", tz="UTC")


def test_load_file_when_repeated_dst_hour_in_order_then_inferred_not_faulted(tmp_path):
    path = write(
        tmp_path / "x.csv",
        "timestamp,open,high,low,close,volume\n"
        "2024-10-27 01:00,1,2,0.5,1.5,10\n"
        "2024-10-27 02:00,1,2,0.5,1.5,10\n"
        "2024-10-27 02:00,1,2,0.5,1.5,10\n"
        "2024-10-27 03:00,1,2,0.5,1.5,10\n",
    )

    raw = load_file(path, symbol="X", timeframe="1h", tz="Europe/Berlin")

    assert raw.ts_faults == {}
    assert list(raw.frame["ts"].dt.hour) == [23, 0, 1, 2]


def test_load_file_when_two_close_columns_then_refused_as_ambiguous(tmp_path):
    path = write(
        tmp_path / "x.csv",
        "timestamp,open,high,low,close,close,volume\n2024-01-02T00:00:00Z,1,2,0.5,1.5,1.4,10\n",
    )

    with pytest.raises(SourceFormatError, match=r"\['close'\] appear more than once"):
        load_file(path, symbol="X", timeframe="1d")


def test_load_file_when_large_csv_then_progress_reported(tmp_path, monkeypatch):
    import infra.sources.files as files

    monkeypatch.setattr(files, "PROGRESS_MIN_BYTES", 10)
    monkeypatch.setattr(files, "_CHUNK_ROWS", 1)
    path = write(tmp_path / "x.csv", YAHOO_CSV)
    said: list[str] = []

    raw = load_file(path, symbol="X", timeframe="1d", progress=said.append)

    assert len(raw) == 2
    assert said[0].startswith("x.csv: reading")
    assert any("100% read (2 rows)" in line for line in said)
    assert said[-1].startswith("x.csv: 2 rows read in")


def test_load_file_when_stamps_carry_offsets_then_converted_to_utc(tmp_path):
    path = write(
        tmp_path / "x.csv",
        "ts,open,high,low,close,volume\n"
        "2024-01-02T10:00:00+01:00,1,2,0.5,1.5,10\n"
        "2024-01-02T10:00:00Z,1,2,0.5,1.5,10\n",
    )

    raw = load_file(path, symbol="X", timeframe="1h", tz="Asia/Tokyo")  # offsets win

    assert list(raw.frame["ts"]) == [
        pd.Timestamp("2024-01-02 09:00", tz="UTC"),
        pd.Timestamp("2024-01-02 10:00", tz="UTC"),
    ]


def test_load_file_when_headers_differ_in_case_and_vol_then_recognised(tmp_path):
    path = write(
        tmp_path / "x.csv",
        " DATETIME ,OPEN,High,low,CLOSE,Vol\n2024-01-02,1,2,0.5,1.5,10\n",
    )

    raw = load_file(path, symbol="X", timeframe="1d", tz="UTC")

    assert raw.frame.iloc[0].to_dict() == {
        "ts": pd.Timestamp("2024-01-02", tz="UTC"),
        "open": 1,
        "high": 2,
        "low": 0.5,
        "close": 1.5,
        "volume": 10,
    }


def test_load_file_when_column_map_then_uses_mapped_headers(tmp_path):
    path = write(
        tmp_path / "x.csv",
        "when,o,h,l,Last,Close,volume\n2024-01-02,1,2,0.5,1.5,99,10\n",
    )

    raw = load_file(
        path,
        symbol="X",
        timeframe="1d",
        column_map={"ts": "when", "open": "o", "high": "h", "low": "l", "close": "Last"},
        tz="UTC",
    )

    assert raw.frame["close"].item() == 1.5
    assert raw.frame["open"].item() == 1


def test_load_file_when_column_map_has_unknown_key_then_format_error(tmp_path):
    path = write(tmp_path / "x.csv", YAHOO_CSV)

    with pytest.raises(SourceFormatError, match=r"unknown keys \['price'\]"):
        load_file(path, symbol="X", timeframe="1d", column_map={"price": "Close"})


def test_load_file_when_columns_missing_then_error_names_found_expected_and_fix(tmp_path):
    path = write(tmp_path / "x.csv", "Date,Price,Amount\n2024-01-02,1,2\n")

    with pytest.raises(SourceFormatError) as info:
        load_file(path, symbol="X", timeframe="1d")

    message = str(info.value)
    assert "no open column" in message
    assert "no volume column" in message
    assert "['Date', 'Price', 'Amount']" in message
    assert "['ts', 'open', 'high', 'low', 'close', 'volume']" in message
    assert "column_map" in message
    assert "\n" not in message


def test_load_file_when_rows_are_garbage_then_kept_raw_not_dropped(tmp_path):
    path = write(
        tmp_path / "x.csv",
        "date,open,high,low,close,volume\n"
        "2024-01-02,1,2,0.5,1.5,10\n"
        "yesterday,abc,2,0.5,1.5,10\n"
        ",1,2,0.5,1.5,\n"
        "2024-01-05,1,2,0.5,1.5,10\n",
    )

    raw = load_file(path, symbol="X", timeframe="1d", tz="UTC")

    frame = raw.frame
    assert len(frame) == 4
    assert frame["ts"].iloc[0] == pd.Timestamp("2024-01-02", tz="UTC")
    assert frame["ts"].iloc[1] == "yesterday"  # raw text, for the quarantine record
    assert pd.isna(frame["ts"].iloc[2])
    assert frame["open"].iloc[1] == "abc"
    assert pd.isna(frame["volume"].iloc[2])


def test_load_file_when_date_and_time_columns_then_combined(tmp_path):
    path = write(
        tmp_path / "x.csv",
        "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<VOL>\n"
        "2024.01.02\t10:00:00\t1\t2\t0.5\t1.5\t10\n",
    )

    raw = load_file(path, symbol="X", timeframe="1h", tz="UTC")

    assert raw.frame["ts"].item() == pd.Timestamp("2024-01-02 10:00", tz="UTC")


def test_load_file_when_two_timestamp_candidates_then_ambiguity_error(tmp_path):
    path = write(tmp_path / "x.csv", "timestamp,datetime,open,high,low,close,volume\n")

    with pytest.raises(SourceFormatError, match="ts is ambiguous"):
        load_file(path, symbol="X", timeframe="1d")


def test_load_file_when_semicolon_delimited_then_read(tmp_path):
    path = write(tmp_path / "x.csv", "date;open;high;low;close;volume\n2024-01-02;1;2;0.5;1.5;10\n")

    raw = load_file(path, symbol="X", timeframe="1d", tz="UTC")

    assert raw.frame["close"].item() == 1.5


def test_load_file_when_gzipped_csv_then_read(tmp_path):
    path = tmp_path / "x.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(YAHOO_CSV)

    raw = load_file(path, symbol="X", timeframe="1d", tz="UTC")

    assert len(raw) == 2


def test_load_file_when_parquet_with_aware_index_column_then_utc(tmp_path):
    path = tmp_path / "x.parquet"
    pd.DataFrame(
        {
            "Timestamp": pd.date_range("2024-01-02 09:00", periods=3, freq="h", tz="Europe/Paris"),
            "Open": [1.0, 2.0, 3.0],
            "High": [1.0, 2.0, 3.0],
            "Low": [1.0, 2.0, 3.0],
            "Close": [1.0, 2.0, 3.0],
            "Volume": [5, 6, 7],
        }
    ).to_parquet(path)

    raw = load_file(path, symbol="X", timeframe="1h")

    assert str(raw.frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert raw.frame["ts"].iloc[0] == pd.Timestamp("2024-01-02 08:00", tz="UTC")


def test_load_file_when_missing_then_unavailable(tmp_path):
    with pytest.raises(SourceUnavailableError, match="does not exist"):
        load_file(tmp_path / "nope.csv", symbol="X", timeframe="1d")


def test_load_file_when_parquet_is_corrupt_then_one_line_format_error(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"this is not parquet")

    with pytest.raises(SourceFormatError, match="cannot read") as info:
        load_file(path, symbol="X", timeframe="1d")

    assert "\n" not in str(info.value)


def test_load_file_when_extension_unsupported_then_format_error(tmp_path):
    path = write(tmp_path / "x.xlsx", "whatever")

    with pytest.raises(SourceFormatError, match="unsupported file type"):
        load_file(path, symbol="X", timeframe="1d")


def _touch(path: Path, text: str, mtime: float) -> Path:
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


def test_scan_drop_folder_when_files_new_then_parsed_names_and_errors_reported(tmp_path):
    # Arrange
    t = 1_700_000_000.0
    good = _touch(tmp_path / "AAPL__1d.csv", YAHOO_CSV, t)
    _touch(tmp_path / "BTCUSDT__1h.parquet", "x", t)
    _touch(tmp_path / "prices.csv", YAHOO_CSV, t)
    _touch(tmp_path / "AAPL__2d.csv", YAHOO_CSV, t)
    _touch(tmp_path / "notes.txt", "hi", t)
    _touch(tmp_path / ".partial.csv", "x", t)

    # Act
    found = {f.path.name: f for f in scan_drop_folder(tmp_path, {}, now=t + 60)}

    # Assert
    assert sorted(found) == [
        "AAPL__1d.csv",
        "AAPL__2d.csv",
        "BTCUSDT__1h.parquet",
        "notes.txt",
        "prices.csv",
    ]
    assert (found["AAPL__1d.csv"].symbol, found["AAPL__1d.csv"].timeframe) == ("AAPL", "1d")
    assert found["AAPL__1d.csv"].error is None
    assert found["AAPL__1d.csv"].path == good
    assert (found["BTCUSDT__1h.parquet"].symbol, found["BTCUSDT__1h.parquet"].timeframe) == (
        "BTCUSDT",
        "1h",
    )
    assert "naming convention" in found["prices.csv"].error
    assert "unknown timeframe '2d'" in found["AAPL__2d.csv"].error
    assert "unsupported file type" in found["notes.txt"].error
    assert found["prices.csv"].symbol is None


def test_scan_drop_folder_when_fingerprint_seen_then_skipped_until_file_changes(tmp_path):
    t = 1_700_000_000.0
    path = _touch(tmp_path / "AAPL__1d.csv", YAHOO_CSV, t)
    first = scan_drop_folder(tmp_path, {}, now=t + 60)
    seen = {f.path.name: f.fingerprint for f in first}

    unchanged = scan_drop_folder(tmp_path, seen, now=t + 60)
    _touch(path, YAHOO_CSV + "2024-01-04,1,2,0.5,1.5,1,3\n", t + 100)
    changed = scan_drop_folder(tmp_path, seen, now=t + 200)

    assert unchanged == []
    assert [f.path.name for f in changed] == ["AAPL__1d.csv"]
    assert changed[0].fingerprint != seen["AAPL__1d.csv"]


def test_scan_drop_folder_when_file_still_settling_then_left_for_next_scan(tmp_path):
    t = 1_700_000_000.0
    _touch(tmp_path / "AAPL__1d.csv", YAHOO_CSV, t)

    early = scan_drop_folder(tmp_path, {}, settle_s=5.0, now=t + 1)
    later = scan_drop_folder(tmp_path, {}, settle_s=5.0, now=t + 10)

    assert early == []
    assert len(later) == 1


def test_watch_drop_folder_when_file_grows_between_scans_then_pending_until_unchanged(tmp_path):
    t = 1_700_000_000.0
    path = _touch(tmp_path / "AAPL__1d.csv", YAHOO_CSV[:50], t)

    first = watch_drop_folder(tmp_path, {}, {}, settle_s=5.0, now=t + 30)
    _touch(path, YAHOO_CSV, t + 31)
    grown = watch_drop_folder(tmp_path, {}, first.pending, settle_s=5.0, now=t + 32)
    early = watch_drop_folder(tmp_path, {}, grown.pending, settle_s=5.0, now=t + 35)
    stable = watch_drop_folder(tmp_path, {}, early.pending, settle_s=5.0, now=t + 40)

    assert (first.ready, grown.ready, early.ready) == ((), (), ())
    assert grown.pending["AAPL__1d.csv"][1] == t + 32  # a change restarts the wait
    assert [f.path.name for f in stable.ready] == ["AAPL__1d.csv"]
    assert stable.pending == {}


def test_load_file_when_two_digit_years_then_posix_century_rule(tmp_path):
    path = write(
        tmp_path / "x.csv",
        "Date,Open,High,Low,Close,Volume\n31.12.99,1,2,0.5,1.5,1\n13.01.24,1,2,0.5,1.5,1\n",
    )

    raw = load_file(path, symbol="X", timeframe="1d")

    assert list(raw.frame["ts"]) == [
        pd.Timestamp("1999-12-31", tz="UTC"),
        pd.Timestamp("2024-01-13", tz="UTC"),
    ]
