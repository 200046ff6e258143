"""Datasets that ship inside installed packages, loaded where they are: nothing is copied.

"sp500" and "nasdaq" come from arch (arch.data, NCSA licence), daily index bars 1999-2018.
"goog" and "eurusd" come from backtesting.py's test data; backtesting is AGPL-3 and therefore
only an optional extra (`candleflow[samples]`), imported when one of them is asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import pandas as pd

from infra.sources.base import RAW_COLUMNS, RawBars, SourceError, SourceUnavailableError

__all__ = ["BundledDataset", "list_bundled", "load_bundled"]

_SAMPLES_HINT: Final = "pip install 'candleflow[samples]'"


@dataclass(frozen=True)
class BundledDataset:
    name: str  # what load_bundled takes
    symbol: str  # the instrument the data really is
    timeframe: str
    instrument_class: str
    description: str
    provider: str  # the Python package holding the data
    licence: str  # the provider's licence
    extra: str | None  # the candleflow extra that installs the provider, None if a core dep

    @property
    def source(self) -> str:
        return f"bundled:{self.provider}.{self.name}"

    def available(self) -> bool:
        """Whether the provider package can be imported here."""
        return importlib.util.find_spec(self.provider) is not None


_DATASETS: Final = (
    BundledDataset(
        name="sp500",
        symbol="SPX",
        timeframe="1d",
        instrument_class="equity",
        description="S&P 500 index (^GSPC), daily, 1999-01-04..2018-12-31, from arch.data",
        provider="arch",
        licence="NCSA",
        extra=None,
    ),
    BundledDataset(
        name="nasdaq",
        # The closes (2208.05 on 1999-01-04, 6635.28 on 2018-12-31) are the NASDAQ Composite's,
        # not the NASDAQ-100's (NDX closed 1998 near 1836).
        symbol="IXIC",
        timeframe="1d",
        instrument_class="equity",
        description="NASDAQ Composite index (^IXIC), daily, 1999-01-04..2018-12-31, from arch.data",
        provider="arch",
        licence="NCSA",
        extra=None,
    ),
    BundledDataset(
        name="goog",
        symbol="GOOG",
        timeframe="1d",
        instrument_class="equity",
        description="Alphabet (NASDAQ:GOOG), daily, 2004-08-19..2013-03-01, from backtesting.test",
        provider="backtesting",
        licence="AGPL-3.0",
        extra="samples",
    ),
    BundledDataset(
        name="eurusd",
        symbol="EURUSD",
        timeframe="1h",
        instrument_class="fx",
        # Stamps are taken as UTC: every trading week opens Sunday 21:00 in northern summer and
        # 22:00 in winter, which is 17:00 New York, the FX week's open, in UTC.
        description="EUR/USD, hourly, 2017-04-19..2018-02-07, from backtesting.test",
        provider="backtesting",
        licence="AGPL-3.0",
        extra="samples",
    ),
)


def list_bundled() -> list[BundledDataset]:
    """Every bundled dataset, whether or not its provider is installed (see .available())."""
    return list(_DATASETS)


def load_bundled(name: str) -> RawBars:
    """Load one bundled dataset; ts is the bar's open time in UTC (dates at 00:00 UTC)."""
    by_name = {d.name: d for d in _DATASETS}
    if name not in by_name:
        msg = f"unknown bundled dataset {name!r}; available: {', '.join(by_name)}"
        raise SourceError(msg)
    dataset = by_name[name]
    frame = _to_raw(_LOADERS[name]())
    return RawBars(
        frame=frame,
        symbol=dataset.symbol,
        timeframe=dataset.timeframe,
        source=dataset.source,
        instrument_class=dataset.instrument_class,
    )


def _load_arch(module: str) -> pd.DataFrame:
    return importlib.import_module(f"arch.data.{module}").load()


def _load_backtesting(attr: str) -> pd.DataFrame:
    try:
        test_data = importlib.import_module("backtesting.test")
    except ImportError:
        msg = (
            f"the {attr} sample needs the optional package backtesting (AGPL-3.0): {_SAMPLES_HINT}"
        )
        raise SourceUnavailableError(msg) from None
    return getattr(test_data, attr)


_LOADERS: Final[dict[str, Callable[[], pd.DataFrame]]] = {
    "sp500": lambda: _load_arch("sp500"),
    "nasdaq": lambda: _load_arch("nasdaq"),
    "goog": lambda: _load_backtesting("GOOG"),
    "eurusd": lambda: _load_backtesting("EURUSD"),
}


def _to_raw(data: pd.DataFrame) -> pd.DataFrame:
    """Index-stamped OHLCV (Open, High, ... Volume; Adj Close is not close) -> raw columns."""
    index = pd.DatetimeIndex(data.index)
    ts = (index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")).as_unit("ns")
    return pd.DataFrame(
        {
            "ts": ts,
            "open": data["Open"].to_numpy(),
            "high": data["High"].to_numpy(),
            "low": data["Low"].to_numpy(),
            "close": data["Close"].to_numpy(),
            "volume": data["Volume"].to_numpy(),
        },
        columns=list(RAW_COLUMNS),
    )
