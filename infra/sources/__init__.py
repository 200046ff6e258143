"""Where bars come from: bundled datasets, files, and HTTP providers.

Every source returns RawBars: the bars exactly as delivered, never filtered or repaired; the
data contract in `quality/` decides what is accepted and quarantines the rest with a reason.
"""

from infra.sources.alphavantage import AlphaVantageSource
from infra.sources.base import (
    INSTRUMENT_CLASSES,
    RAW_COLUMNS,
    RateLimitedError,
    RawBars,
    SourceAuthError,
    SourceError,
    SourceFormatError,
    SourceRequestError,
    SourceUnavailableError,
)
from infra.sources.binance import BinanceKlinesSource
from infra.sources.bundled import BundledDataset, list_bundled, load_bundled
from infra.sources.files import (
    DROP_SETTLE_S,
    DropFile,
    DropScan,
    load_file,
    scan_drop_folder,
    watch_drop_folder,
)
from infra.sources.http import HttpClient, RetryPolicy

__all__ = [
    "DROP_SETTLE_S",
    "INSTRUMENT_CLASSES",
    "RAW_COLUMNS",
    "AlphaVantageSource",
    "BinanceKlinesSource",
    "BundledDataset",
    "DropFile",
    "DropScan",
    "HttpClient",
    "RateLimitedError",
    "RawBars",
    "RetryPolicy",
    "SourceAuthError",
    "SourceError",
    "SourceFormatError",
    "SourceRequestError",
    "SourceUnavailableError",
    "list_bundled",
    "load_bundled",
    "load_file",
    "scan_drop_folder",
    "watch_drop_folder",
]
