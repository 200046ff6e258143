"""The canonical bar schema and the data contract: what a valid bar is, and why a row was not.

`validate_bars` splits raw bars into accepted canonical bars and quarantined rows (one
ReasonCode each); `run_bar_suite` re-checks a canonical frame with the same contract written as
a Great Expectations suite (great_expectations is imported lazily, on the first call).
"""

from quality.calendars import (
    INSTRUMENT_CLASSES,
    Gap,
    expected_timestamps,
    find_gaps,
    is_on_grid,
)
from quality.contract import (
    RAW_COLUMNS,
    ContractConfig,
    ValidationReport,
    ValidationResult,
    coerce_bars,
    validate_bars,
)
from quality.errors import (
    ContractConfigError,
    QualityError,
    RawFrameError,
    SuiteError,
    UnknownInstrumentClassError,
    UnsupportedCalendarError,
)
from quality.expectations import UTC_CHECK_NAME, ExpectationResult, SuiteOutcome, run_bar_suite
from quality.reasons import RULE_ORDER, ReasonCode
from quality.schema import (
    BAR_COLUMNS,
    BAR_KEY,
    BAR_SCHEMA,
    PRICE_COLUMNS,
    QUARANTINE_COLUMNS,
    QUARANTINE_KEY,
    QUARANTINE_SCHEMA,
    TIMEFRAMES,
    UnknownTimeframeError,
    empty_bars,
    timeframe_to_timedelta,
    to_canonical_frame,
)

__all__ = [
    "BAR_COLUMNS",
    "BAR_KEY",
    "BAR_SCHEMA",
    "INSTRUMENT_CLASSES",
    "PRICE_COLUMNS",
    "QUARANTINE_COLUMNS",
    "QUARANTINE_KEY",
    "QUARANTINE_SCHEMA",
    "RAW_COLUMNS",
    "RULE_ORDER",
    "TIMEFRAMES",
    "UTC_CHECK_NAME",
    "ContractConfig",
    "ContractConfigError",
    "ExpectationResult",
    "Gap",
    "QualityError",
    "RawFrameError",
    "ReasonCode",
    "SuiteError",
    "SuiteOutcome",
    "UnknownInstrumentClassError",
    "UnknownTimeframeError",
    "UnsupportedCalendarError",
    "ValidationReport",
    "ValidationResult",
    "coerce_bars",
    "empty_bars",
    "expected_timestamps",
    "find_gaps",
    "is_on_grid",
    "run_bar_suite",
    "timeframe_to_timedelta",
    "to_canonical_frame",
    "validate_bars",
]
