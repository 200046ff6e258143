"""Properties of validate_bars over generated OHLC bars with injected malformations."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quality import RULE_ORDER, is_on_grid, run_bar_suite
from tests.quality.factories import START, run

_MALFORMATIONS = (
    "nan", "none", "negative", "zero", "swap_high_low", "garbage_text", "number_as_text",
    "naive_ts", "garbage_ts", "misaligned_ts", "inf",
)  # fmt: skip
_VALUE_COLUMNS = ("open", "high", "low", "close", "volume")


@st.composite
def raw_frames(draw: st.DrawFn) -> pd.DataFrame:
    """A valid hourly walk, then malformed cells, duplicated rows and a shuffle."""
    n = draw(st.integers(min_value=0, max_value=40))
    steps = draw(st.lists(st.floats(-0.05, 0.05, allow_nan=False), min_size=n, max_size=n))
    close = 100.0 * np.exp(np.cumsum(steps)) if n else np.array([])
    open_ = np.concatenate(([100.0], close[:-1]))[:n]
    spread = np.array(draw(st.lists(st.floats(0.0, 0.02), min_size=n, max_size=n)))
    volume = draw(st.lists(st.sampled_from([0.0, 1.0, 5.0, 1e6]), min_size=n, max_size=n))
    frame = pd.DataFrame(
        {
            "ts": pd.date_range(START, periods=n, freq="1h"),
            "open": open_,
            "high": np.maximum(open_, close) * (1 + spread),
            "low": np.minimum(open_, close) * (1 - spread),
            "close": close,
            "volume": np.array(volume, dtype="float64"),
        }
    ).astype(object)
    if n:
        faults = draw(
            st.lists(
                st.tuples(
                    st.integers(0, n - 1),
                    st.sampled_from(_MALFORMATIONS),
                    st.sampled_from(_VALUE_COLUMNS),
                ),
                max_size=8,
            )
        )
        for row, kind, col in faults:
            _inject(frame, row, kind, col)
        dup_rows = draw(st.lists(st.integers(0, n - 1), max_size=4))
        frame = pd.concat([frame, frame.iloc[dup_rows]], ignore_index=True)
        if draw(st.booleans()):
            frame = frame.sample(frac=1.0, random_state=draw(st.integers(0, 1000)))
    return frame.reset_index(drop=True)


def _inject(frame: pd.DataFrame, row: int, kind: str, col: str) -> None:
    ts = frame.at[row, "ts"]
    if kind == "nan":
        frame.at[row, col] = float("nan")
    elif kind == "none":
        frame.at[row, col] = None
    elif kind == "negative":
        value = frame.at[row, col]
        number = value if isinstance(value, float) and np.isfinite(value) else 1.0
        frame.at[row, col] = -abs(number) - 1.0
    elif kind == "zero":
        frame.at[row, col] = 0.0
    elif kind == "swap_high_low":
        frame.at[row, "high"], frame.at[row, "low"] = frame.at[row, "low"], frame.at[row, "high"]
    elif kind == "garbage_text":
        frame.at[row, col] = "#N/A!"
    elif kind == "number_as_text":
        frame.at[row, col] = str(frame.at[row, col])
    elif kind == "naive_ts" and isinstance(ts, pd.Timestamp):
        frame.at[row, "ts"] = ts.tz_localize(None).isoformat()
    elif kind == "garbage_ts":
        frame.at[row, "ts"] = "yesterday-ish"
    elif kind == "misaligned_ts" and isinstance(ts, pd.Timestamp):
        frame.at[row, "ts"] = ts + pd.Timedelta(minutes=7)
    elif kind == "inf":
        frame.at[row, col] = float("inf")


def _assert_accepted_bars_valid(accepted: pd.DataFrame) -> None:
    prices = accepted[["open", "high", "low", "close"]]
    assert np.isfinite(accepted[["open", "high", "low", "close", "volume"]].to_numpy()).all()
    assert (prices > 0).all().all()
    assert (accepted["volume"] >= 0).all()
    assert (accepted["high"] >= accepted[["open", "close", "low"]].max(axis=1)).all()
    assert (accepted["low"] <= accepted[["open", "close"]].min(axis=1)).all()
    assert accepted["ts"].is_monotonic_increasing
    assert accepted["ts"].is_unique
    assert is_on_grid(accepted["ts"], "1h").all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_frames())
def test_validate_when_malformed_bars_then_accounted_and_accepted_bars_valid(raw):
    before = raw.copy(deep=True)

    result = run(raw)

    report = result.report
    assert report.rows_in == len(raw) == report.accepted + report.quarantined
    assert len(result.accepted) == report.accepted
    assert len(result.quarantined) == report.quarantined
    assert sum(report.by_reason.values()) == report.quarantined
    assert set(result.quarantined["reason"]) <= {code.value for code in RULE_ORDER}
    assert len(set(result.quarantined_positions.tolist())) == report.quarantined
    _assert_accepted_bars_valid(result.accepted)
    pd.testing.assert_frame_equal(raw, before)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_frames())
def test_validate_when_run_twice_then_same_result(raw):
    first, second = run(raw), run(raw)

    pd.testing.assert_frame_equal(first.accepted, second.accepted)
    pd.testing.assert_frame_equal(first.quarantined, second.quarantined)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_frames())
def test_suite_when_run_on_accepted_of_malformed_bars_then_no_blocking_failure(raw):
    result = run(raw)

    outcome = run_bar_suite(result.accepted)

    assert outcome.passed_blocking, outcome.blocking_failures
    # An empty accepted frame is the one warning this suite raises.
    assert outcome.success == (result.report.accepted > 0)
