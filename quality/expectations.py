"""The data contract as a Great Expectations 1.x suite, run on accepted (canonical) bar frames.

validate_bars enforces the contract row by row; this suite states the same rules declaratively
so that a stored partition can be re-checked and its results shown next to the asset. Each
expectation is either BLOCKING (the frame must not flow downstream: schema, dtypes, non-null,
positive prices no larger than the contract's default max_price, non-negative volume, OHLC
consistency, unique key, strictly increasing ts, UTC) or a WARNING (worth a look, not a stop:
an empty frame). Calendar gaps are warnings too; they are computed by validate_bars
(ValidationReport.gaps), not by this suite, because they need the instrument's calendar.

One frame holds one (symbol, timeframe) series, as validate_bars returns it: "ts strictly
increasing" is only meaningful per series.

Cost and side effects. Importing great_expectations takes seconds, so it is imported lazily on
the first run_bar_suite call, never when quality is imported (the live plane imports quality and
must start fast). The ephemeral context, data source, batch definition and suite are built once
per process and cached; a lock serialises validations on that shared context. Progress bars and
analytics are switched off through the context's own project config (analytics_enabled=False,
progress_bars disabled); os.environ is left untouched, so importing candleflow changes nothing
for other code in the process. (GX 1.24 ships no usage-statistics sender; the flag is set anyway
so that a later version that has one stays quiet.)

The one rule GX cannot state is "ts is in UTC" (its type check sees pd.Timestamp for any
timezone), so that check is computed with pandas and reported as the pseudo-expectation
`candleflow_ts_timezone_is_utc` beside the GX results.
"""

from __future__ import annotations

import functools
import logging
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import pandas as pd

from quality.contract import ContractConfig
from quality.errors import SuiteError
from quality.schema import BAR_COLUMNS, BAR_KEY, PRICE_COLUMNS, TIMEFRAMES

if TYPE_CHECKING:
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_suite import ExpectationSuite

__all__ = [
    "UTC_CHECK_NAME",
    "ExpectationResult",
    "SuiteOutcome",
    "run_bar_suite",
]

logger = logging.getLogger(__name__)

UTC_CHECK_NAME: Final = "candleflow_ts_timezone_is_utc"
_SUITE_NAME: Final = "candleflow_bars"


@dataclass(frozen=True, slots=True)
class ExpectationResult:
    """One expectation's outcome on one frame."""

    expectation: str  # GX type, e.g. "expect_column_values_to_not_be_null", or UTC_CHECK_NAME
    columns: tuple[str, ...]  # the column(s) it looks at; () for table-level expectations
    success: bool
    unexpected_count: int | None  # rows that broke it; None for table-level expectations
    unexpected_percent: float | None  # of the rows it looked at; None when not applicable
    blocking: bool  # True: a failure must stop downstream work; False: a warning
    rule: str  # stable id within the suite, e.g. "high_ge_low", "unique_key", "ts_utc"
    # Index labels of the offending rows, filled only with include_unexpected_index=True.
    unexpected_index: tuple[Any, ...] = ()
    error: str | None = None  # GX's exception message when the check itself crashed (=> failed)


@dataclass(frozen=True, slots=True)
class SuiteOutcome:
    """The suite's verdict on one frame."""

    success: bool  # every expectation, blocking and warning, passed
    results: tuple[ExpectationResult, ...]  # all of them, in suite order
    blocking_failures: tuple[ExpectationResult, ...]  # failed blocking ones: stop downstream
    warnings: tuple[ExpectationResult, ...]  # failed non-blocking ones: report, do not stop

    @property
    def passed_blocking(self) -> bool:
        """True when nothing blocking failed (warnings allowed)."""
        return not self.blocking_failures


def _import_gx() -> Any:
    """Import great_expectations (seconds; deferred on purpose).

    GX 1.24 imports the stdlib's deprecated `sre_constants`; that DeprecationWarning is GX's to
    fix, so it is silenced for the import only, keeping warnings-as-errors usable for our code.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import great_expectations as gx
        import great_expectations.data_context.types.base  # loaded here, used by _runtime
    return gx


def _expectations() -> list[Any]:
    """The suite, in order. `meta` carries the severity and a stable rule id."""
    gx = _import_gx()

    e = gx.expectations

    def blocking(rule: str) -> dict[str, Any]:
        return {"blocking": True, "rule": rule}

    def warning(rule: str) -> dict[str, Any]:
        return {"blocking": False, "rule": rule}

    items: list[Any] = [
        e.ExpectTableColumnsToMatchOrderedList(
            column_list=list(BAR_COLUMNS), meta=blocking("schema_columns")
        )
    ]
    for col in ("ts", "ingested_at"):
        # pandas reports tz-aware columns as pd.Timestamp and naive ones as numpy.datetime64.
        items.append(
            e.ExpectColumnValuesToBeOfType(
                column=col, type_="Timestamp", meta=blocking(f"{col}_tz_aware")
            )
        )
    for col in (*PRICE_COLUMNS, "volume"):
        items.append(
            e.ExpectColumnValuesToBeOfType(
                column=col, type_="float64", meta=blocking(f"{col}_type")
            )
        )
    for col in ("symbol", "timeframe", "source"):
        items.append(
            e.ExpectColumnValuesToBeOfType(column=col, type_="str", meta=blocking(f"{col}_type"))
        )
    for col in BAR_COLUMNS:
        items.append(e.ExpectColumnValuesToNotBeNull(column=col, meta=blocking(f"{col}_not_null")))
    max_price = ContractConfig().max_price
    for col in PRICE_COLUMNS:
        items.append(
            e.ExpectColumnValuesToBeBetween(
                column=col,
                min_value=0,
                strict_min=True,
                max_value=max_price,
                meta=blocking(f"{col}_positive_and_plausible"),
            )
        )
    items.append(
        e.ExpectColumnValuesToBeBetween(
            column="volume", min_value=0, meta=blocking("volume_non_negative")
        )
    )
    # Nulls are the not-null expectations' business; a pair with a null is not an OHLC fault.
    for a, b in (("high", "low"), ("high", "open"), ("high", "close")):
        items.append(
            e.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=a,
                column_B=b,
                or_equal=True,
                ignore_row_if="either_value_is_missing",
                meta=blocking(f"{a}_ge_{b}"),
            )
        )
    for a in ("open", "close"):
        items.append(
            e.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=a,
                column_B="low",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
                meta=blocking(f"{a}_ge_low"),
            )
        )
    items += [
        e.ExpectColumnValuesToBeInSet(
            column="timeframe", value_set=list(TIMEFRAMES), meta=blocking("timeframe_known")
        ),
        e.ExpectCompoundColumnsToBeUnique(column_list=list(BAR_KEY), meta=blocking("unique_key")),
        e.ExpectColumnValuesToBeIncreasing(
            column="ts", strictly=True, meta=blocking("ts_strictly_increasing")
        ),
        e.ExpectTableRowCountToBeBetween(min_value=1, meta=warning("not_empty")),
    ]
    return items


@dataclass(frozen=True, slots=True)
class _Runtime:
    batch_definition: BatchDefinition
    suite: ExpectationSuite
    order: dict[str, int]  # rule id -> position in the suite, to report in a stable order
    lock: threading.Lock


_BUILD_LOCK: Final = threading.Lock()


def _runtime() -> _Runtime:
    """The process-wide GX context and suite, built on first use under a lock."""
    with _BUILD_LOCK:
        return _build_runtime()


@functools.cache
def _build_runtime() -> _Runtime:
    gx = _import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    batch_definition = (
        context.data_sources.add_pandas("candleflow")
        .add_dataframe_asset("bars")
        .add_batch_definition_whole_dataframe("whole_frame")
    )
    items = _expectations()
    suite = context.suites.add(gx.ExpectationSuite(name=_SUITE_NAME, expectations=items))
    order = {item.meta["rule"]: i for i, item in enumerate(items)}
    logger.debug("built Great Expectations suite %s with %d expectations", _SUITE_NAME, len(items))
    return _Runtime(batch_definition, suite, order, threading.Lock())


def _columns(expectation_type: str, kwargs: dict[str, Any]) -> tuple[str, ...]:
    if expectation_type.startswith("expect_table_"):
        return ()  # table-level, even when it lists columns (the schema expectation)
    if "column" in kwargs:
        return (kwargs["column"],)
    if "column_A" in kwargs:
        return (kwargs["column_A"], kwargs["column_B"])
    return tuple(kwargs.get("column_list") or ())


def _utc_check(frame: pd.DataFrame) -> ExpectationResult:
    dtype = frame["ts"].dtype if "ts" in frame.columns else None
    is_utc = isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC"
    return ExpectationResult(
        expectation=UTC_CHECK_NAME,
        columns=("ts",),
        success=is_utc,
        unexpected_count=None,
        unexpected_percent=None,
        blocking=True,
        rule="ts_utc",
    )


def run_bar_suite(frame: pd.DataFrame, *, include_unexpected_index: bool = False) -> SuiteOutcome:
    """Run the bar suite on a canonical frame (e.g. ValidationResult.accepted).

    The frame is not modified. With include_unexpected_index=True each result also lists the
    index labels of its offending rows (GX "COMPLETE" result format: slower, for diagnostics
    and tests). The first call in a process pays the GX import and context set-up.
    """
    if not isinstance(frame, pd.DataFrame):
        msg = f"run_bar_suite needs a pandas DataFrame, got {type(frame).__name__}"
        raise TypeError(msg)
    runtime = _runtime()
    result_format = {"result_format": "COMPLETE" if include_unexpected_index else "SUMMARY"}
    # GX keeps the dataframe by reference; a shallow copy shields the caller's object from it.
    data = frame.copy(deep=False)
    with runtime.lock:
        batch = runtime.batch_definition.get_batch(batch_parameters={"dataframe": data})
        validation = batch.validate(runtime.suite, result_format=result_format)

    results: list[tuple[int, ExpectationResult]] = []
    for item in validation.results:
        config = item.expectation_config
        if config is None:
            msg = "GX returned a validation result without its expectation configuration"
            raise SuiteError(msg)
        meta = config.meta or {}
        body = item.result or {}
        index: Sequence[Any] = body.get("unexpected_index_list") or ()
        count = body.get("unexpected_count")
        info = item.exception_info or {}
        error = info.get("exception_message") if info.get("raised_exception") else None
        if error:
            logger.warning("expectation %s raised inside GX: %s", config.type, error)
        percent = body.get("unexpected_percent")
        results.append(
            (
                runtime.order.get(meta.get("rule", ""), len(runtime.order)),
                ExpectationResult(
                    expectation=config.type,
                    columns=_columns(config.type, config.kwargs),
                    success=bool(item.success),
                    unexpected_count=None if count is None else int(count),
                    unexpected_percent=None if percent is None else float(percent),
                    blocking=bool(meta.get("blocking", True)),
                    rule=str(meta.get("rule", config.type)),
                    unexpected_index=tuple(index) if include_unexpected_index else (),
                    error=error,
                ),
            )
        )
    ordered = [r for _, r in sorted(results, key=lambda pair: pair[0])]
    ordered.append(_utc_check(frame))
    blocking_failures = tuple(r for r in ordered if r.blocking and not r.success)
    warnings = tuple(r for r in ordered if not r.blocking and not r.success)
    return SuiteOutcome(
        success=not blocking_failures and not warnings,
        results=tuple(ordered),
        blocking_failures=blocking_failures,
        warnings=warnings,
    )
