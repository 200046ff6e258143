"""Bundled datasets, read from the installed packages that ship them."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from infra.sources import SourceError, SourceUnavailableError, list_bundled, load_bundled


def test_list_bundled_when_called_then_names_all_four_with_their_licences():
    datasets = {d.name: d for d in list_bundled()}

    assert sorted(datasets) == ["eurusd", "goog", "nasdaq", "sp500"]
    assert datasets["sp500"].extra is None
    assert datasets["goog"].extra == "samples"
    assert datasets["eurusd"].licence == "AGPL-3.0"
    assert datasets["sp500"].available()


def test_load_bundled_when_sp500_then_over_4000_daily_utc_bars():
    raw = load_bundled("sp500")

    frame = raw.frame
    assert len(frame) > 4000
    assert (raw.symbol, raw.timeframe, raw.source, raw.instrument_class) == (
        "SPX",
        "1d",
        "bundled:arch.sp500",
        "equity",
    )
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert frame["ts"].is_monotonic_increasing
    assert (frame["ts"] == frame["ts"].dt.normalize()).all()  # dates at 00:00 UTC
    assert frame["ts"].iloc[0] == pd.Timestamp("1999-01-04", tz="UTC")
    assert frame["close"].iloc[0] == pytest.approx(1228.099976)  # Close, not Adj Close


def test_load_bundled_when_nasdaq_then_named_for_the_composite_index():
    raw = load_bundled("nasdaq")

    assert raw.symbol == "IXIC"
    assert raw.frame["close"].iloc[-1] == pytest.approx(6635.28, abs=0.01)


@pytest.mark.parametrize(
    ("name", "symbol", "timeframe", "instrument_class", "rows"),
    [("goog", "GOOG", "1d", "equity", 2148), ("eurusd", "EURUSD", "1h", "fx", 5000)],
)
def test_load_bundled_when_backtesting_installed_then_samples_load(
    name, symbol, timeframe, instrument_class, rows
):
    pytest.importorskip("backtesting")

    raw = load_bundled(name)

    assert (raw.symbol, raw.timeframe, raw.instrument_class) == (
        symbol,
        timeframe,
        instrument_class,
    )
    assert len(raw) == rows
    assert str(raw.frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert raw.source == f"bundled:backtesting.{name}"


def test_load_bundled_when_backtesting_missing_then_unavailable_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "backtesting", None)  # makes `import backtesting` fail
    monkeypatch.setitem(sys.modules, "backtesting.test", None)

    with pytest.raises(SourceUnavailableError, match=r"pip install 'candleflow\[samples\]'"):
        load_bundled("goog")


def test_load_bundled_when_name_unknown_then_error_lists_available():
    with pytest.raises(SourceError, match="available: sp500, nasdaq, goog, eurusd"):
        load_bundled("ftse")
