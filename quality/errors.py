"""The quality package's exceptions: one base, one class per way a caller can misuse it."""

from __future__ import annotations

__all__ = [
    "ContractConfigError",
    "QualityError",
    "RawFrameError",
    "SuiteError",
    "UnknownInstrumentClassError",
    "UnsupportedCalendarError",
]


class QualityError(Exception):
    """Base of every error raised by the quality package."""


class ContractConfigError(QualityError, ValueError):
    """A ContractConfig was given an unknown key or an out-of-range value."""


class RawFrameError(QualityError, ValueError):
    """The raw frame itself is unusable (missing columns, bad arguments), not just some rows."""


class UnknownInstrumentClassError(QualityError, ValueError):
    """An instrument class that is not one of quality.calendars.INSTRUMENT_CLASSES."""


class UnsupportedCalendarError(QualityError, NotImplementedError):
    """No trading calendar is defined for this (instrument class, timeframe) pair."""


class SuiteError(QualityError, RuntimeError):
    """Great Expectations answered in a shape run_bar_suite cannot read."""
