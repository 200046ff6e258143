"""Ingestion: a source's raw bars → the data contract → the store, with the accounting reported.

The CLI and the Dagster assets call the same functions here, so a file ingested by hand and a
scheduled ingestion behave identically. Re-running any of it is idempotent: bars upsert on
(symbol, timeframe, ts) and quarantined rows on their fingerprint and reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pandas as pd

from infra.series import SeriesSpec
from infra.sources import RawBars

__all__ = [
    "IngestReport",
    "PreparedIngest",
    "build_report",
    "check_raw",
    "fetch_raw",
    "ingest_raw",
    "prepare_ingest",
    "read_history",
    "write_ingest",
]

logger = logging.getLogger(__name__)

HISTORY_BARS: Final = 500  # stored bars each ingest validates its new rows with


@dataclass(frozen=True)
class IngestReport:
    series: str
    source: str
    run_id: str
    rows_in: int
    accepted: int
    quarantined: int
    written: int
    reordered: int
    by_reason: Mapping[str, int] = field(default_factory=dict)
    gap_count: int = 0
    first_ts: str | None = None
    last_ts: str | None = None
    suite_success: bool = True
    blocking_failures: tuple[str, ...] = ()
    history_bars: int = 0  # stored bars the new rows were validated with (read_history)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["by_reason"] = dict(self.by_reason)
        d["blocking_failures"] = list(self.blocking_failures)
        return d


def fetch_raw(
    spec: SeriesSpec,
    *,
    since: datetime | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> RawBars:
    """Load a series' raw bars from its source. HTTP sources fetch only bars after `since`.

    File options: path, column_map, tz, date_format, dayfirst (see infra.sources.load_file).
    `progress` receives one-line messages while a large file loads.
    """
    from infra import sources

    env = os.environ if environ is None else environ
    opts = dict(spec.options)
    if spec.source == "bundled":
        raw = sources.load_bundled(opts.get("dataset", spec.symbol.lower()))
        return _rename(raw, spec)
    if spec.source == "file":
        return sources.load_file(
            Path(opts["path"]),
            symbol=spec.symbol,
            timeframe=spec.timeframe,
            column_map=opts.get("column_map"),
            tz=opts.get("tz"),
            date_format=opts.get("date_format"),
            dayfirst=opts.get("dayfirst"),
            instrument_class=spec.instrument_class,
            progress=progress,
        )
    if spec.source == "alphavantage":
        src = sources.AlphaVantageSource.from_env(env)
        if spec.instrument_class == "fx":
            base, quote = opts.get("pair", spec.symbol[:3] + "/" + spec.symbol[3:]).split("/")
            return src.fetch_fx_intraday(base, quote, since=since)
        return src.fetch_daily(spec.symbol, since=since)
    if spec.source == "binance":
        return sources.BinanceKlinesSource().fetch(
            spec.symbol, spec.timeframe, since=since
        )
    msg = f"source {spec.source!r} is not ingestible here; MT5 history comes through mt5_bridge"
    raise NotImplementedError(msg)


def _rename(raw: RawBars, spec: SeriesSpec) -> RawBars:
    if raw.symbol == spec.symbol and raw.timeframe == spec.timeframe:
        return raw
    from dataclasses import replace

    return replace(raw, symbol=spec.symbol, timeframe=spec.timeframe)


@dataclass(frozen=True)
class PreparedIngest:
    """Raw bars after the data contract, before anything is written."""

    raw: RawBars
    run_id: str
    result: Any  # quality.ValidationResult, of the new rows only
    suite: Any  # quality.SuiteOutcome on the accepted rows
    history: int = 0  # stored bars validated with the new rows as context

    @property
    def blocking_failures(self) -> tuple[str, ...]:
        return tuple(str(f) for f in self.suite.blocking_failures)


def read_history(raw: RawBars, store: Any, *, bars: int = HISTORY_BARS) -> pd.DataFrame:
    """The last `bars` stored bars of raw's series before raw's earliest stamp (may be empty).

    prepare_ingest validates them together with the new rows, so that rules comparing a bar
    with its neighbours (duplicates, stale runs, spikes) see the series, not just the batch.
    """
    from quality.schema import empty_bars, timeframe_to_timedelta

    first = _earliest_stamp(raw.frame["ts"])
    if first is None:
        return empty_bars()
    # Calendar time for `bars` bars, with room for weekends, holidays and session breaks.
    span = max(timeframe_to_timedelta(raw.timeframe) * bars * 4, timedelta(days=14))
    try:
        start = first - span
    except OverflowError:
        start = None
    stored = store.read_bars(raw.symbol, raw.timeframe, start, first.to_pydatetime())
    return stored.tail(bars).reset_index(drop=True)


def _earliest_stamp(ts: pd.Series) -> pd.Timestamp | None:
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        stamps = ts
    else:
        aware = [v for v in ts if isinstance(v, pd.Timestamp) and v.tzinfo is not None]
        stamps = pd.Series(pd.to_datetime(aware, utc=True)) if aware else pd.Series([])
    first = stamps.min() if len(stamps) else None
    return None if first is None or pd.isna(first) else pd.Timestamp(first).tz_convert("UTC")


def prepare_ingest(
    raw: RawBars, *, run_id: str, now: datetime, history: pd.DataFrame | None = None
) -> PreparedIngest:
    """Run the row-level contract and the Great Expectations suite; write nothing.

    `history` (read_history) is stored bars just before the new rows: validated with them as
    context, never accepted or quarantined again. Stored bars are final: a stored bar that the
    new rows show to be a spike or stale is logged, not rewritten.
    """
    from quality import run_bar_suite, validate_bars

    h = 0 if history is None else len(history)
    frame = raw.frame
    if h:
        # Object columns keep the new rows' cells as they came (an int volume stays an int), so
        # their quarantine records read exactly as they would without history.
        context = history.loc[:, list(raw.frame.columns)].astype(object)
        frame = pd.concat([context, raw.frame.astype(object)], ignore_index=True)
    result = validate_bars(
        frame,
        symbol=raw.symbol,
        timeframe=raw.timeframe,
        source=raw.source,
        instrument_class=raw.instrument_class,
        run_id=run_id,
        now=now,
        ts_faults={pos + h: fault for pos, fault in raw.ts_faults.items()},
    )
    if h:
        result = _without_history(result, history, raw)
    rep = result.report
    if rep.rows_in != rep.accepted + rep.quarantined:
        msg = f"accounting broken: {rep.rows_in} in != {rep.accepted} + {rep.quarantined}"
        raise AssertionError(msg)
    return PreparedIngest(
        raw=raw, run_id=run_id, result=result, suite=run_bar_suite(result.accepted), history=h
    )


def _without_history(result: Any, history: pd.DataFrame, raw: RawBars) -> Any:
    """The validation of history + new rows, reduced to the new rows."""
    from quality import ValidationResult

    h = len(history)
    new = result.quarantined_positions >= h
    late = result.quarantined.loc[~new]
    if len(late):
        logger.warning(
            "%s@%s: %d stored bar(s) before this batch would now be quarantined (%s); stored "
            "bars are not rewritten",
            raw.symbol,
            raw.timeframe,
            len(late),
            ", ".join(
                f"{t.isoformat()} {r}" for t, r in zip(late["ts"], late["reason"], strict=True)
            ),
        )
    quarantined = result.quarantined.loc[new].reset_index(drop=True)
    accepted = result.accepted.loc[~result.accepted["ts"].isin(history["ts"])]
    last_stored = history["ts"].iloc[-1]
    gaps = tuple(g for g in result.report.gaps if g.start > last_stored)
    by_reason: dict[str, int] = {}
    for reason in quarantined["reason"]:
        by_reason[reason] = by_reason.get(reason, 0) + 1
    report = replace(
        result.report,
        rows_in=len(raw),
        accepted=len(accepted),
        quarantined=len(quarantined),
        by_reason={r: by_reason[r] for r in sorted(by_reason, key=_reason_rank)},
        gaps=gaps,
        gap_count=len(gaps),
        missing_bars=sum(g.missing_bars for g in gaps),
    )
    return ValidationResult(
        accepted=accepted.reset_index(drop=True),
        quarantined=quarantined,
        report=report,
        quarantined_positions=result.quarantined_positions[new] - h,
    )


def _reason_rank(reason: str) -> int:
    from quality import RULE_ORDER

    return [code.value for code in RULE_ORDER].index(reason)


def check_raw(raw: RawBars, *, now: datetime) -> Any:
    """The data contract's ValidationReport on `raw`: no suite, nothing written (a dry run)."""
    from quality import validate_bars

    return validate_bars(
        raw.frame,
        symbol=raw.symbol,
        timeframe=raw.timeframe,
        source=raw.source,
        instrument_class=raw.instrument_class,
        run_id="check",
        now=now,
        ts_faults=raw.ts_faults,
    ).report


def write_ingest(prepared: PreparedIngest, store: Any) -> IngestReport:
    """Write accepted bars and quarantined rows (both idempotent upserts)."""
    if prepared.blocking_failures:
        names = ", ".join(prepared.blocking_failures)
        msg = f"accepted bars fail blocking expectations ({names}); nothing was written"
        raise ValueError(msg)
    raw, result = prepared.raw, prepared.result
    rep = result.report
    if rep.quarantined:
        store.upsert_quarantine(result.quarantined)
    written = store.upsert_bars(result.accepted) if rep.accepted else 0
    logger.info(
        "ingested %s@%s from %s: %d in, %d accepted, %d quarantined",
        raw.symbol,
        raw.timeframe,
        raw.source,
        rep.rows_in,
        rep.accepted,
        rep.quarantined,
    )
    return build_report(prepared, written=int(written))


def build_report(prepared: PreparedIngest, *, written: int) -> IngestReport:
    raw, rep, acc = prepared.raw, prepared.result.report, prepared.result.accepted
    return IngestReport(
        series=f"{raw.symbol}@{raw.timeframe}",
        source=raw.source,
        run_id=prepared.run_id,
        rows_in=rep.rows_in,
        accepted=rep.accepted,
        quarantined=rep.quarantined,
        written=written,
        reordered=rep.reordered,
        by_reason=dict(rep.by_reason),
        gap_count=rep.gap_count,
        first_ts=None if acc.empty else acc["ts"].iloc[0].isoformat(),
        last_ts=None if acc.empty else acc["ts"].iloc[-1].isoformat(),
        suite_success=bool(prepared.suite.success),
        blocking_failures=prepared.blocking_failures,
        history_bars=prepared.history,
    )


def ingest_raw(raw: RawBars, store: Any, *, run_id: str, now: datetime) -> IngestReport:
    """read_history, prepare_ingest, write_ingest: the whole ingestion of one batch of raw bars."""
    history = read_history(raw, store)
    return write_ingest(prepare_ingest(raw, run_id=run_id, now=now, history=history), store)
