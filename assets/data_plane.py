"""Data-plane assets: raw bars from a series' source, then validated bars in the store."""


import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from assets.partitions import SERIES
from infra.ingest import build_report, fetch_raw, prepare_ingest, read_history, write_ingest
from infra.sources import RawBars
from orchestration.resources import BarStoreResource, SeriesRegistryResource

__all__ = ["bars_version", "no_bars_reason", "raw_bars", "validated_bars"]

_INCREMENTAL_SOURCES = ("alphavantage", "binance", "mt5")


@dg.asset(
    partitions_def=SERIES,
    group_name="data",
    kinds={"python", "pandas"},
    description="Bars as the source delivers them, before the data contract. HTTP sources "
    "fetch incrementally from the last stored bar.",
)
def raw_bars(
    context: dg.AssetExecutionContext,
    series_registry: SeriesRegistryResource,
    bar_store: BarStoreResource,
) -> RawBars:
    spec = series_registry.get(context.partition_key)
    since = None
    if spec.source in _INCREMENTAL_SOURCES:
        with bar_store.open() as store:
            since = store.last_ts(spec.symbol, spec.timeframe)
    raw = fetch_raw(spec, since=since)
    context.add_output_metadata(
        {
            "rows": len(raw.frame),
            "source": raw.source,
            "incremental_since": str(since) if since else "full history",
            "preview": dg.MetadataValue.md(raw.frame.head(5).to_markdown()),
        }
    )
    return raw


@dg.asset(
    partitions_def=SERIES,
    group_name="data",
    kinds={"python", "great_expectations"},
    description="Bars that passed the data contract, upserted into the bar store; failing rows "
    "are quarantined with their reason. rows_in = accepted + quarantined, always.",
    check_specs=[
        dg.AssetCheckSpec(
            "bar_contract_suite",
            asset="validated_bars",
            blocking=True,
            description="Great Expectations suite on the accepted bars",
        ),
        dg.AssetCheckSpec(
            "row_accounting",
            asset="validated_bars",
            blocking=True,
            description="rows in = accepted + quarantined",
        ),
        dg.AssetCheckSpec(
            "calendar_gaps",
            asset="validated_bars",
            description="missing bars against the instrument's calendar: FX Sunday to Friday "
            "17:00 New York, equity exchange sessions (warn)",
        ),
        dg.AssetCheckSpec(
            "quarantine_rate",
            asset="validated_bars",
            description="warns when more than 1% of rows were quarantined",
        ),
    ],
)
def validated_bars(
    context: dg.AssetExecutionContext, raw_bars: RawBars, bar_store: BarStoreResource
) -> Iterator[Any]:
    with bar_store.open() as store:
        history = read_history(raw_bars, store)
    prepared = prepare_ingest(
        raw_bars, run_id=context.run.run_id, now=datetime.now(UTC), history=history
    )
    rep = prepared.result.report
    with bar_store.open() as store:
        if prepared.blocking_failures:
            report = build_report(prepared, written=0)
        else:
            report = write_ingest(prepared, store)
        stored = store.read_bars(raw_bars.symbol, raw_bars.timeframe)
    series = context.partition_key
    failed = ", ".join(prepared.blocking_failures)
    if stored.empty:
        # Nothing to research: fail here, with the reason, rather than in every later step.
        raise dg.Failure(
            description=no_bars_reason(series, rep.rows_in, rep.by_reason),
            metadata={"rows_in": rep.rows_in, "by_reason": dg.MetadataValue.json(
                dict(rep.by_reason))},
        )
    version = bars_version(stored)
    yield dg.Output(
        {**report.to_dict(), "data_version": version, "stored_rows": len(stored)},
        data_version=dg.DataVersion(version),
        metadata={
            "data_version": version,
            "stored_rows": len(stored),
            "rows_in": rep.rows_in,
            "accepted": rep.accepted,
            "quarantined": rep.quarantined,
            "written": report.written,
            "reordered": rep.reordered,
            "by_reason": dg.MetadataValue.json(dict(rep.by_reason)),
            "first_ts": report.first_ts or "",
            "last_ts": report.last_ts or "",
            "store": bar_store.kind,
        },
    )
    yield dg.AssetCheckResult(
        check_name="bar_contract_suite",
        passed=not prepared.blocking_failures,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{series}: Great Expectations suite on {rep.accepted} accepted bars; "
        + (f"failed: {failed}" if failed else "all expectations met"),
        metadata={
            "series": series,
            "blocking_failures": dg.MetadataValue.json(list(prepared.blocking_failures)),
            "results": dg.MetadataValue.json(_suite_results(prepared.suite)),
        },
    )
    yield dg.AssetCheckResult(
        check_name="row_accounting",
        passed=rep.rows_in == rep.accepted + rep.quarantined,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{series}: {rep.rows_in} rows in = {rep.accepted} accepted + "
        f"{rep.quarantined} quarantined",
        metadata={
            "series": series,
            "rows_in": rep.rows_in,
            "accepted": rep.accepted,
            "quarantined": rep.quarantined,
        },
    )
    gaps = list(getattr(rep, "gaps", []))[:20]
    yield dg.AssetCheckResult(
        check_name="calendar_gaps",
        passed=rep.gap_count == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{series}: {rep.gap_count} gaps, {rep.missing_bars} missing bars"
        if rep.gaps_checked
        else f"{series}: no calendar for this class and timeframe; gaps not checked",
        metadata={
            "series": series,
            "gap_count": rep.gap_count,
            "missing_bars": rep.missing_bars,
            "first_gaps": dg.MetadataValue.json(json.loads(json.dumps(gaps, default=str))),
        },
    )
    rate = rep.quarantined / rep.rows_in if rep.rows_in else 0.0
    yield dg.AssetCheckResult(
        check_name="quarantine_rate",
        passed=rate <= 0.01,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{series}: {rep.quarantined} of {rep.rows_in} rows quarantined ({rate:.2%})",
        metadata={"series": series, "quarantine_rate": rate},
    )


def bars_version(bars: Any) -> str:
    """The data version of a series: a content hash of its stored bars (ts and OHLCV)."""
    from infra.tracking import data_fingerprint

    cols = ["ts", "open", "high", "low", "close", "volume"]
    return data_fingerprint(bars[cols].reset_index(drop=True))[:16]


def no_bars_reason(key: str, rows_in: int, by_reason: Any) -> str:
    top = sorted(dict(by_reason).items(), key=lambda kv: -kv[1])[:3]
    reasons = ", ".join(f"{reason} {n}" for reason, n in top) or "the source returned no rows"
    return (
        f"{key}: no bars stored ({rows_in} rows in, none accepted: {reasons}); fix the input "
        f"(see `candleflow quarantine`) and ingest it again"
    )


def _suite_results(suite: Any) -> list[dict[str, Any]]:
    out = []
    for r in getattr(suite, "results", []):
        out.append(
            json.loads(
                json.dumps(
                    r if isinstance(r, dict) else getattr(r, "__dict__", str(r)), default=str
                )
            )
        )
    return out
