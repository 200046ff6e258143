"""The replay source resumes after the last bar it emitted, even on another set of series."""

from __future__ import annotations

import pandas as pd

from streaming.sources import ReplaySource


def _frame(symbols: list[str], days: int = 10) -> pd.DataFrame:
    ts = pd.date_range("2020-01-01", periods=days, freq="D", tz="UTC")
    rows = [
        {"symbol": s, "timeframe": "1d", "ts": t, "open": 1.0, "high": 1.0, "low": 1.0,
         "close": 1.0, "volume": 1.0}
        for t in ts for s in symbols
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _drain(part) -> list:
    out = []
    while True:
        try:
            out.extend(part.next_batch())
        except StopIteration:
            return out


def test_replay_when_resumed_on_same_bars_then_continues_with_the_next_bar():
    frame = _frame(["IXIC", "SPX"])
    first = ReplaySource(frame).build_part("s", "replay", None)
    emitted = [first.next_batch()[0] for _ in range(7)]

    rest = _drain(ReplaySource(frame).build_part("s", "replay", first.snapshot()))

    assert len(emitted) + len(rest) == len(frame)
    assert (rest[0].ts, rest[0].symbol) > (emitted[-1].ts, emitted[-1].symbol)


def test_replay_when_resumed_on_fewer_series_then_no_bar_after_the_snapshot_is_skipped():
    first = ReplaySource(_frame(["GOOG", "IXIC", "SPX"])).build_part("s", "replay", None)
    for _ in range(9):  # three days of three series
        last = first.next_batch()[0]

    rest = _drain(ReplaySource(_frame(["IXIC"])).build_part("s", "replay", first.snapshot()))

    assert [b.ts for b in rest] == list(pd.date_range(last.ts, periods=10, freq="D")[1:8])


def test_replay_when_snapshot_is_a_legacy_position_then_resumes_at_that_index():
    frame = _frame(["SPX"])

    rest = _drain(ReplaySource(frame).build_part("s", "replay", 4))

    assert len(rest) == len(frame) - 4
