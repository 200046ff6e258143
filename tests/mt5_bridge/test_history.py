"""fetch_history: copy_rates_range -> raw UTC bar frame, and the lazy module loader."""

from __future__ import annotations

import sys
import types
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from execution.broker import BrokerUnavailableError
from mt5_bridge import RAW_BAR_COLUMNS, MT5NotInstalledError, fetch_history, load_mt5_module
from mt5_bridge import _codes as c
from mt5_bridge.simulator import RATES_DTYPE, SimulatedTerminal
from quality.schema import UnknownTimeframeError

OFFSET = timedelta(hours=3)
START = datetime(2024, 3, 4, 0, 0, tzinfo=UTC)


@pytest.fixture
def terminal() -> SimulatedTerminal:
    sim = SimulatedTerminal(server_utc_offset=OFFSET)
    sim.add_symbol("EURUSD", bid=1.1, ask=1.1002)
    utc_opens = [START + timedelta(hours=h) for h in range(-1, 5)]  # one bar before the window
    rows = [
        (int((t + OFFSET).timestamp()), 1.0 + i, 2.0 + i, 0.5 + i, 1.5 + i, 100 + i, 2,
         0 if i % 2 else 7 + i)
        for i, t in enumerate(utc_opens)
    ]  # fmt: skip
    sim.set_rates("EURUSD", c.TIMEFRAME_H1, np.array(rows, dtype=RATES_DTYPE))
    sim.initialize()
    return sim


def test_fetch_history_when_server_is_utc_plus_3_then_bars_in_utc_raw_format(terminal):
    # Arrange: [00:00, 03:00) UTC; "now" is 05:30, so every bar in the window is final
    end = START + timedelta(hours=3)
    now = START + timedelta(hours=5, minutes=30)

    # Act
    frame = fetch_history(terminal, "EURUSD", "1h", START, end, server_utc_offset=OFFSET, now=now)

    # Assert
    assert tuple(frame.columns) == RAW_BAR_COLUMNS
    assert frame["ts"].dtype == "datetime64[ns, UTC]"
    assert list(frame["ts"]) == [pd.Timestamp(START + timedelta(hours=h)) for h in range(3)]
    assert list(frame["open"]) == [2.0, 3.0, 4.0]
    # real_volume where the bar has one (rows 1 and 3 of the source have none), else ticks
    assert list(frame["volume"]) == [101.0, 9.0, 103.0]


def test_fetch_history_when_last_bar_still_forming_then_left_out(terminal):
    # Arrange: at 03:30 the 03:00 bar is still open
    now = START + timedelta(hours=3, minutes=30)

    # Act
    frame = fetch_history(
        terminal, "EURUSD", "1h", START, START + timedelta(hours=6), server_utc_offset=OFFSET,
        now=now,
    )  # fmt: skip

    # Assert
    assert frame["ts"].max() == pd.Timestamp(START + timedelta(hours=2))


def test_fetch_history_when_input_frame_is_fetched_twice_then_identical(terminal):
    args = (terminal, "EURUSD", "1h", START, START + timedelta(hours=3))
    kwargs = {"server_utc_offset": OFFSET, "now": START + timedelta(days=1)}
    pd.testing.assert_frame_equal(fetch_history(*args, **kwargs), fetch_history(*args, **kwargs))


def test_fetch_history_when_timeframe_unknown_then_error_lists_codes(terminal):
    with pytest.raises(UnknownTimeframeError, match="1m"):
        fetch_history(terminal, "EURUSD", "2h", START, START + timedelta(hours=1))


def test_fetch_history_when_naive_bounds_then_rejected(terminal):
    with pytest.raises(ValueError, match="tz-aware"):
        fetch_history(terminal, "EURUSD", "1h", datetime(2024, 3, 4), START)


def test_fetch_history_when_terminal_fails_then_unavailable_with_last_error(terminal):
    terminal.drop_connection()
    with pytest.raises(BrokerUnavailableError, match="-10004"):
        fetch_history(terminal, "EURUSD", "1h", START, START + timedelta(hours=1))


def test_load_mt5_module_when_package_missing_then_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "MetaTrader5", None)  # import now raises ImportError
    with pytest.raises(MT5NotInstalledError, match=r"pip install 'candleflow\[mt5\]'"):
        load_mt5_module()


def test_load_mt5_module_when_mt5linux_missing_then_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mt5linux", None)
    with pytest.raises(MT5NotInstalledError, match="pip install mt5linux"):
        load_mt5_module("mt5linux")


def test_load_mt5_module_when_mt5linux_present_then_client_built_with_host_and_port(monkeypatch):
    # Arrange
    fake = types.ModuleType("mt5linux")

    class Client:
        def __init__(self, host: str, port: int) -> None:
            self.address = (host, port)

    fake.MetaTrader5 = Client  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mt5linux", fake)

    # Act
    client = load_mt5_module("mt5linux", host="winebox", port=18813)

    # Assert
    assert client.address == ("winebox", 18813)


def test_load_mt5_module_when_package_present_then_that_module_is_returned(monkeypatch):
    stand_in = types.ModuleType("MetaTrader5")
    monkeypatch.setitem(sys.modules, "MetaTrader5", stand_in)
    assert load_mt5_module() is stand_in
