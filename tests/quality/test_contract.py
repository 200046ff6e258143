"""validate_bars: one test per reason code, precedence, accounting, idempotency, purity."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from quality import (
    BAR_COLUMNS,
    QUARANTINE_COLUMNS,
    ContractConfig,
    ContractConfigError,
    RawFrameError,
    ReasonCode,
    UnknownInstrumentClassError,
    UnknownTimeframeError,
    coerce_bars,
    validate_bars,
)
from tests.quality.factories import (
    NOW,
    SOURCE,
    START,
    clean_bars,
    reasons_by_position,
    run,
    with_cells,
)


def _only_reason(raw: pd.DataFrame, **kwargs: object) -> dict[int, str]:
    result = run(raw, **kwargs)
    assert result.report.rows_in == result.report.accepted + result.report.quarantined
    return reasons_by_position(result)


# --- one test per reason code -------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_ts", ["not a date", None, float("nan"), 1_704_067_200, "01/02/2024", "9999-12-31T00:00Z"]
)
def test_validate_when_ts_unparseable_then_unparseable_ts(bad_ts):
    raw = with_cells(clean_bars(), 3, ts=bad_ts)

    reasons = _only_reason(raw)

    assert reasons == {3: ReasonCode.UNPARSEABLE_TS.value}


@pytest.mark.parametrize(
    "naive_ts", ["2024-01-01 03:00", "2024-01-01T03:00:00", datetime(2024, 1, 1, 3)]
)
def test_validate_when_ts_naive_then_naive_ts(naive_ts):
    raw = with_cells(clean_bars(), 3, ts=naive_ts)

    reasons = _only_reason(raw)

    assert reasons == {3: ReasonCode.NAIVE_TS.value}


def test_validate_when_whole_ts_column_naive_then_every_row_naive_ts():
    raw = clean_bars(5)
    raw["ts"] = raw["ts"].dt.tz_localize(None)

    result = run(raw)

    assert result.report.by_reason == {ReasonCode.NAIVE_TS.value: 5}
    assert result.accepted.empty


def test_validate_when_ts_after_now_then_future_ts():
    raw = with_cells(clean_bars(), 39, ts=pd.Timestamp(NOW) + pd.Timedelta(hours=1))

    reasons = _only_reason(raw)

    assert reasons == {39: ReasonCode.FUTURE_TS.value}


def test_validate_when_ts_off_grid_then_misaligned_ts():
    raw = with_cells(clean_bars(), 3, ts="2024-01-01T03:07:00Z")

    result = run(raw)

    assert reasons_by_position(result) == {3: ReasonCode.MISALIGNED_TS.value}
    assert result.quarantined["detail"].iloc[0] == (
        "ts 2024-01-01T03:07:00+00:00 is not on the 1h grid"
    )


@pytest.mark.parametrize(("col", "value"), [("open", None), ("volume", np.nan), ("close", "  ")])
def test_validate_when_value_missing_then_missing_value(col, value):
    raw = with_cells(clean_bars(), 4, **{col: value})

    result = run(raw)

    assert reasons_by_position(result) == {4: ReasonCode.MISSING_VALUE.value}
    assert result.quarantined["detail"].iloc[0] == f"missing {col}"


@pytest.mark.parametrize("value", ["abc", "inf", True, "1,234.5"])
def test_validate_when_value_not_a_finite_number_then_non_numeric(value):
    raw = with_cells(clean_bars(), 4, high=value)

    reasons = _only_reason(raw)

    assert reasons == {4: ReasonCode.NON_NUMERIC.value}


def test_validate_when_numbers_arrive_as_text_then_accepted_as_numbers():
    raw = clean_bars(5).astype({"open": str, "high": str, "low": str, "close": str})

    result = run(raw)

    assert result.report.quarantined == 0
    np.testing.assert_allclose(result.accepted["open"], clean_bars(5)["open"])


@pytest.mark.parametrize(("col", "value"), [("open", -1.0), ("low", 0.0)])
def test_validate_when_price_not_positive_then_non_positive_price(col, value):
    raw = with_cells(clean_bars(), 5, **{col: value})

    reasons = _only_reason(raw)

    assert reasons == {5: ReasonCode.NON_POSITIVE_PRICE.value}


def test_validate_when_volume_negative_then_negative_volume():
    raw = with_cells(clean_bars(), 5, volume=-3.0)

    reasons = _only_reason(raw)

    assert reasons == {5: ReasonCode.NEGATIVE_VOLUME.value}


def test_validate_when_high_below_low_then_high_below_low():
    bars = clean_bars()
    raw = with_cells(bars, 6, high=bars["low"][6], low=bars["high"][6])

    reasons = _only_reason(raw)

    assert reasons == {6: ReasonCode.HIGH_BELOW_LOW.value}


def test_validate_when_high_below_close_then_high_below_open_close_with_detail():
    raw = with_cells(clean_bars(), 7, open=10.0, high=9.5, low=9.4, close=9.8)

    result = run(raw)

    assert reasons_by_position(result) == {7: ReasonCode.HIGH_BELOW_OPEN_CLOSE.value}
    assert result.quarantined["detail"].iloc[0] == "high 9.5 < max(open 10.0, close 9.8)"


def test_validate_when_low_above_open_then_low_above_open_close():
    bars = clean_bars()
    low = min(bars["open"][8], bars["close"][8]) + 1e-6
    raw = with_cells(bars, 8, low=low)

    reasons = _only_reason(raw)

    assert reasons == {8: ReasonCode.LOW_ABOVE_OPEN_CLOSE.value}


def test_validate_when_duplicates_then_first_kept_and_rest_duplicate_key():
    bars = clean_bars()
    exact = bars.iloc[[5]]
    conflicting = bars.iloc[[6]].assign(
        close=bars["close"][6] * 1.0001, high=bars["high"][6] * 1.01
    )
    raw = pd.concat([bars, exact, conflicting], ignore_index=True)

    result = run(raw)

    assert reasons_by_position(result) == {
        40: ReasonCode.DUPLICATE_KEY.value,
        41: ReasonCode.DUPLICATE_KEY.value,
    }
    details = result.quarantined["detail"].tolist()
    assert details[0].startswith("exact duplicate of row 5")
    assert details[1].startswith("conflicting duplicate of row 6")
    kept = result.accepted.set_index("ts").loc[bars["ts"][6], "close"]
    assert kept == bars["close"][6]


def test_validate_when_long_zero_volume_flat_run_then_repeats_stale_price():
    bars = clean_bars()
    flat = bars["close"][9]
    raw = bars.copy()
    raw.loc[10:15, ["open", "high", "low", "close"]] = flat
    raw.loc[10:15, "volume"] = 0.0

    reasons = _only_reason(raw)

    # Bars 10-15 repeat one bar: the first four (stale_min_run_intraday - 1) could be a quiet
    # market, the fifth and sixth are a frozen feed.
    assert reasons == {p: ReasonCode.STALE_PRICE.value for p in (14, 15)}


def test_validate_when_flat_run_shorter_than_threshold_then_accepted():
    bars = clean_bars()
    raw = bars.copy()
    raw.loc[10:13, ["open", "high", "low", "close"]] = bars["close"][9]
    raw.loc[10:13, "volume"] = 0.0

    result = run(raw)

    assert result.report.quarantined == 0


def test_validate_when_one_bar_spike_reverts_then_price_spike():
    bars = clean_bars()
    raw = with_cells(bars, 20, close=bars["close"][20] * 5, high=bars["close"][20] * 5.01)

    result = run(raw)

    assert reasons_by_position(result) == {20: ReasonCode.PRICE_SPIKE.value}
    assert "reversed" in result.quarantined["detail"].iloc[0]


def test_validate_when_level_shift_then_not_a_spike():
    raw = clean_bars()
    raw.loc[20:, ["open", "high", "low", "close"]] *= 5.0

    result = run(raw)

    assert result.report.quarantined == 0


def test_validate_when_spike_threshold_raised_then_spike_accepted():
    bars = clean_bars()
    raw = with_cells(bars, 20, close=bars["close"][20] * 5, high=bars["close"][20] * 5.01)

    result = run(raw, config=ContractConfig(spike_z_threshold=1e9))

    assert result.report.quarantined == 0


@pytest.mark.parametrize("rows", [range(20, 25), range(3, 4)])
def test_validate_when_price_astronomical_then_price_out_of_range_however_long_or_short(rows):
    bars = clean_bars(40 if len(rows) > 1 else 10)
    raw = bars.copy()
    raw.loc[list(rows), ["high", "close"]] = 1e308  # a 5-bar excursion, or a 10-bar batch

    result = run(raw)

    assert reasons_by_position(result) == {
        p: ReasonCode.PRICE_OUT_OF_RANGE.value for p in rows
    }
    assert "> max_price" in result.quarantined["detail"].iloc[0]
    assert result.accepted[["high", "close"]].max().max() < 1e9


@pytest.mark.parametrize("code", [ReasonCode.NONEXISTENT_TS, ReasonCode.AMBIGUOUS_TS])
def test_validate_when_source_reports_ts_fault_then_quarantined_with_its_reason(code):
    raw = with_cells(clean_bars(), 7, ts="2024-03-31 02:30")

    result = validate_bars(
        raw, symbol="X", timeframe="1h", source=SOURCE, instrument_class="crypto",
        run_id="r", now=NOW, ts_faults={7: (code, "local time skipped")},
    )  # fmt: skip

    assert reasons_by_position(result) == {7: code.value}
    assert result.quarantined["detail"].item() == "local time skipped"


def test_validate_when_series_nearly_flat_then_ordinary_move_not_a_spike():
    bars = clean_bars(60)
    rng = np.random.default_rng(1)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-5, 60)))  # near-constant returns
    close[30] *= 1.0015  # a 0.15% move that reverts: z about 100 on this series' own MAD
    raw = bars.assign(open=close, high=close * 1.0001, low=close * 0.9999, close=close)

    result = run(raw)

    assert result.report.quarantined == 0


def test_validate_when_series_perfectly_flat_then_reverting_spike_still_caught():
    bars = clean_bars(40)
    close = np.full(40, 100.0)
    close[20] = 150.0
    raw = bars.assign(open=close, high=close, low=close, close=close, volume=1.0)

    result = run(raw)

    assert reasons_by_position(result) == {20: ReasonCode.PRICE_SPIKE.value}


def test_reason_codes_when_listed_then_each_has_a_test_above():
    tested = {
        "UNPARSEABLE_TS", "NAIVE_TS", "FUTURE_TS", "MISALIGNED_TS", "MISSING_VALUE",
        "NON_NUMERIC", "NON_POSITIVE_PRICE", "NEGATIVE_VOLUME", "HIGH_BELOW_LOW",
        "HIGH_BELOW_OPEN_CLOSE", "LOW_ABOVE_OPEN_CLOSE", "DUPLICATE_KEY", "STALE_PRICE",
        "PRICE_SPIKE", "NONEXISTENT_TS", "AMBIGUOUS_TS", "PRICE_OUT_OF_RANGE",
    }  # fmt: skip

    assert {code.name for code in ReasonCode} == tested


# --- precedence, ordering, accounting -----------------------------------------------------


def test_validate_when_row_fails_several_rules_then_first_in_order_wins():
    raw = with_cells(clean_bars(), 2, ts="2024-01-01 02:00", open=-5.0, volume=None)

    reasons = _only_reason(raw)

    assert reasons == {2: ReasonCode.NAIVE_TS.value}


def test_validate_when_rows_out_of_order_then_sorted_and_counted_not_quarantined():
    bars = clean_bars()
    shuffled = bars.sample(frac=1.0, random_state=7).reset_index(drop=True)

    result = run(shuffled)

    assert result.report.quarantined == 0
    assert result.report.reordered > 0
    pd.testing.assert_frame_equal(result.accepted, run(bars).accepted)


def test_validate_when_in_order_then_reordered_zero():
    result = run(clean_bars())

    assert result.report.reordered == 0


def test_validate_when_many_faults_then_rows_in_equals_accepted_plus_quarantined():
    bars = clean_bars()
    raw = with_cells(bars, 1, ts="junk")
    raw = with_cells(raw, 2, open=None)
    raw = with_cells(raw, 3, volume=-1)
    raw = pd.concat([raw, raw.iloc[[10, 10, 11]]], ignore_index=True)

    report = run(raw).report

    assert report.rows_in == len(raw) == report.accepted + report.quarantined
    assert sum(report.by_reason.values()) == report.quarantined
    assert report.by_reason[ReasonCode.DUPLICATE_KEY.value] == 3


def test_validate_when_empty_frame_then_empty_outputs():
    raw = clean_bars(0)

    result = run(raw)

    assert (result.report.rows_in, result.report.accepted, result.report.quarantined) == (0, 0, 0)
    assert list(result.accepted.columns) == list(BAR_COLUMNS)
    assert list(result.quarantined.columns) == list(QUARANTINE_COLUMNS)


# --- outputs ------------------------------------------------------------------------------


def test_validate_when_clean_then_accepted_is_canonical_with_ingested_at_now():
    result = run(clean_bars())

    accepted = result.accepted
    assert list(accepted.columns) == list(BAR_COLUMNS)
    assert str(accepted["ts"].dtype) == "datetime64[ns, UTC]"
    assert (accepted["ingested_at"] == pd.Timestamp(NOW)).all()
    assert accepted["ts"].is_monotonic_increasing
    assert (accepted["symbol"] == "BTCUSD").all()


def test_validate_when_quarantined_then_raw_json_and_fingerprint_are_traceable():
    raw = with_cells(clean_bars(), 3, close="garbage")

    row = run(raw).quarantined.iloc[0]

    assert json.loads(row["raw"])["close"] == "garbage"
    assert json.loads(row["raw"])["ts"] == str(raw["ts"][3])
    expected = hashlib.sha256(f"{SOURCE}\n{row['raw']}".encode()).hexdigest()
    assert row["row_fingerprint"] == expected
    assert row["run_id"] == "run-1"
    assert row["quarantined_at"] == pd.Timestamp(NOW)
    assert row["ts"] == raw["ts"][3]


def test_validate_when_run_twice_then_identical_frames_and_fingerprints():
    raw = with_cells(clean_bars(), 3, ts="junk")
    raw = pd.concat([raw, raw.iloc[[7]]], ignore_index=True)

    first, second = run(raw), run(raw)

    pd.testing.assert_frame_equal(first.accepted, second.accepted)
    pd.testing.assert_frame_equal(first.quarantined, second.quarantined)
    assert first.report == second.report


def test_validate_when_fed_its_own_accepted_output_then_nothing_changes():
    raw = with_cells(clean_bars(), 3, high=-1)
    first = run(raw)

    second = run(first.accepted)

    assert second.report.quarantined == 0
    pd.testing.assert_frame_equal(second.accepted, first.accepted)


def test_validate_when_called_then_input_not_mutated():
    raw = with_cells(clean_bars(), 3, ts="junk", open="12.5")
    raw = with_cells(raw, 4, ts=datetime(2024, 1, 1, 4))
    before = raw.copy(deep=True)

    run(raw.iloc[::-1])
    run(raw)

    pd.testing.assert_frame_equal(raw, before)


def test_validate_when_frame_lacks_a_column_then_raw_frame_error():
    with pytest.raises(RawFrameError, match="missing columns: volume"):
        run(clean_bars().drop(columns=["volume"]))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"now": datetime(2024, 6, 1)}, RawFrameError),
        ({"timeframe": "7m"}, UnknownTimeframeError),
        ({"instrument_class": "bond"}, UnknownInstrumentClassError),
        ({"run_id": ""}, RawFrameError),
    ],
)
def test_validate_when_arguments_invalid_then_precise_error(kwargs, error):
    args = {
        "symbol": "X", "timeframe": "1h", "source": "s", "instrument_class": "fx",
        "run_id": "r", "now": NOW,
    } | kwargs  # fmt: skip

    with pytest.raises(error):
        validate_bars(clean_bars(3), **args)


def test_validate_when_aware_non_utc_strings_then_converted_to_utc():
    raw = with_cells(clean_bars(3), 1, ts="2024-01-01T06:00:00+05:00")

    result = run(raw)

    assert result.report.quarantined == 0
    assert result.accepted["ts"][1] == START + pd.Timedelta(hours=1)


def test_coerce_when_faulty_rows_then_kept_row_for_row_with_nulls():
    raw = with_cells(clean_bars(4), 1, ts="junk", close="x")

    coerced = coerce_bars(raw, symbol="X", timeframe="1h", source="s", now=NOW)

    assert len(coerced) == 4
    assert pd.isna(coerced["ts"][1])
    assert np.isnan(coerced["close"][1])


# --- config -------------------------------------------------------------------------------


def test_config_when_unknown_key_then_rejected_with_its_name():
    with pytest.raises(ContractConfigError, match="spike_z"):
        ContractConfig.from_mapping({"spike_z": 3.0})


def test_config_when_known_keys_then_built():
    config = ContractConfig.from_mapping({"spike_z_threshold": 8.0, "stale_min_run_intraday": 4})

    assert (config.spike_z_threshold, config.stale_min_run_intraday) == (8.0, 4)


@pytest.mark.parametrize(
    "mapping",
    [{"spike_z_threshold": 0}, {"stale_min_run_daily": 1}, {"spike_min_returns": 10.5},
     {"spike_revert_fraction": 2.0}, {"spike_z_threshold": "12"}],
)  # fmt: skip
def test_config_when_value_out_of_range_then_rejected(mapping):
    with pytest.raises(ContractConfigError):
        ContractConfig.from_mapping(mapping)


def test_validate_when_bars_missing_then_gap_reported():
    raw = clean_bars().drop(index=[5, 6, 7, 20])

    report = run(raw).report

    assert report.gaps_checked
    assert report.gap_count == 2
    assert report.missing_bars == 4
    first = report.gaps[0]
    assert (first.start, first.end, first.missing_bars) == (
        START + pd.Timedelta(hours=5),
        START + pd.Timedelta(hours=7),
        3,
    )
    assert report.as_metadata()["gaps"][1][2] == 1


def test_validate_when_equity_intraday_then_gaps_not_checked():
    report = run(clean_bars(), instrument_class="equity").report

    assert not report.gaps_checked
    assert report.gaps == ()


def test_validate_when_now_not_utc_then_compared_as_an_instant():
    raw = clean_bars(3)
    tokyo_now = datetime(2024, 1, 1, 10, 30, tzinfo=UTC).astimezone(
        pd.Timestamp("2024-01-01", tz="Asia/Tokyo").tzinfo
    )

    result = validate_bars(
        raw, symbol="X", timeframe="1h", source="s", instrument_class="crypto", run_id="r",
        now=tokyo_now,
    )  # fmt: skip

    assert result.report.quarantined == 0
    assert str(result.accepted["ingested_at"].dtype) == "datetime64[ns, UTC]"


def test_validate_when_ts_column_in_another_timezone_then_converted_to_utc():
    raw = clean_bars(3)
    raw["ts"] = raw["ts"].dt.tz_convert("America/New_York")

    result = run(raw)

    assert result.report.quarantined == 0
    pd.testing.assert_series_equal(result.accepted["ts"], clean_bars(3)["ts"].astype("M8[ns, UTC]"))


def test_validate_when_columns_use_pandas_string_dtype_then_parsed():
    raw = clean_bars(5)
    raw["ts"] = raw["ts"].map(lambda t: t.isoformat()).astype("str")
    raw["close"] = raw["close"].astype("str")

    result = run(raw)

    assert result.report.quarantined == 0
    assert result.accepted["ts"].tolist() == clean_bars(5)["ts"].tolist()
