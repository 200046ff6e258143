"""The live dataflow: bars -> per-symbol features and prediction -> one portfolio -> the store.

```
input -> stamp -> key_by_symbol -> features (stateful, per symbol)
      -> to_portfolio (one key) -> portfolio (stateful: fills, on_fill, on_bar, order router)
      -> records -> store (upserts on each table's key)
```

The portfolio step needs the bars of all symbols in (ts, symbol) order. A replay source on one
worker delivers them so; with several workers or several source partitions set
`StreamConfig.reorder` and the step waits until every symbol has reached a ts before it
processes that ts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pandas as pd
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import FixedPartitionedSink, Sink, StatefulSinkPartition

from execution.broker import Broker
from execution.config import StrategyConfig
from execution.engine import bar_close_ts
from execution.reconcile import ReconcileConfig
from execution.signal import Bar
from streaming.metrics import LiveMetrics
from streaming.models import ModelProvider
from streaming.router import OrderRouter
from streaming.steps import (
    Arrival,
    PortfolioRuntime,
    Record,
    Scored,
    make_feature_mapper,
    make_portfolio_mapper,
)

__all__ = ["LIVE_TABLES", "StoreSink", "StreamConfig", "build_flow", "records_to_frames"]

logger = logging.getLogger(__name__)

LIVE_TABLES = ("live_orders", "live_fills", "live_equity", "live_predictions", "live_positions")
PORTFOLIO_KEY = "portfolio"
STORE_PART = "store"


@dataclass(frozen=True)
class StreamConfig:
    strategy: StrategyConfig
    symbols: tuple[str, ...]  # every symbol the portfolio trades
    home: Path | None = None  # CANDLEFLOW_HOME: kill switch under home/live/KILL
    reorder: bool = False  # see the module docstring
    progress_every: int = 1000  # log a progress line every N bars (0: never)
    flow_id: str = "candleflow_live"
    # Bars that closed before this are history a live source replays to fill the feature buffer:
    # the portfolio sees them (marks, ATR) but with no prediction, so nothing is ever traded on
    # a bar that closed before the worker started. None (replay of the store): trade every bar.
    trade_after: datetime | None = None
    reconcile_backoff_s: tuple[float, ...] = field(default=(1.0, 2.0, 5.0, 10.0, 30.0))
    # Ledger vs venue: at start and every N bars; a mismatch halts new risk or adopts the venue.
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)

    def __post_init__(self) -> None:
        if not self.symbols:
            msg = "StreamConfig.symbols must name at least one symbol"
            raise ValueError(msg)
        if self.progress_every < 0:
            msg = f"progress_every must be >= 0, got {self.progress_every}"
            raise ValueError(msg)


def records_to_frames(records: Sequence[Record]) -> dict[str, tuple[pd.DataFrame, tuple[str, ...]]]:
    """Group records by table into frames, the last record of a key winning within the batch."""
    by_table: dict[str, dict[tuple[Any, ...], Mapping[str, Any]]] = {}
    keys: dict[str, tuple[str, ...]] = {}
    for rec in records:
        rows = by_table.setdefault(rec.table, {})
        keys[rec.table] = rec.key
        rows[tuple(rec.row[k] for k in rec.key)] = rec.row
    return {
        table: (pd.DataFrame(list(rows.values())), keys[table]) for table, rows in by_table.items()
    }


class _StorePartition(StatefulSinkPartition[Record, None]):
    def __init__(self, store: Any, max_buffer: int) -> None:
        self._store = store
        self._max = max_buffer
        self._buffer: list[Record] = []

    def write_batch(self, items: list[Record]) -> None:
        self._buffer.extend(items)
        if len(self._buffer) >= self._max:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        for table, (frame, key) in records_to_frames(self._buffer).items():
            self._store.upsert_records(table, frame, key)
        self._buffer = []

    def snapshot(self) -> None:
        # Called at the end of every epoch, before the epoch's snapshot is committed: whatever
        # the committed state has produced is in the store by then, so nothing is lost on a
        # crash, and what is re-emitted after resume is an idempotent upsert.
        self._flush()

    def close(self) -> None:
        self._flush()
        close = getattr(self._store, "close", None)
        if close is not None:
            close()


class StoreSink(FixedPartitionedSink[Record, None]):
    """Upserts records into a BarStore (`upsert_records`); a re-emitted record changes nothing.

    Records are buffered and written at each epoch end (the snapshot interval) or when
    `max_buffer` records are waiting: one upsert per table per flush instead of per bar.
    `open_store` is called once, on the worker that owns the single partition.
    """

    def __init__(self, open_store: Callable[[], Any], max_buffer: int = 5000) -> None:
        self._open = open_store
        self._max = max_buffer

    def list_parts(self) -> list[str]:
        return [STORE_PART]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _StorePartition:
        return _StorePartition(self._open(), self._max)


def _stamp(bar: Bar) -> Arrival:
    return Arrival(bar, time.perf_counter_ns())


def _to_portfolio(item: tuple[str, Scored | None]) -> list[tuple[str, Scored]]:
    return [] if item[1] is None else [(PORTFOLIO_KEY, item[1])]


def _history_guard(
    trade_after: datetime | None,
) -> Callable[[tuple[str, Scored]], tuple[str, Scored]]:
    def guard(item: tuple[str, Scored]) -> tuple[str, Scored]:
        key, scored = item
        if trade_after is None or scored.prediction is None:
            return item
        if bar_close_ts(scored.bar) < trade_after:
            return key, replace(scored, prediction=None)
        return item

    return guard


def _records(item: tuple[str, list[Record]]) -> list[tuple[str, Record]]:
    return [(STORE_PART, rec) for rec in item[1]]


def build_flow(
    config: StreamConfig,
    source: Source[Bar],
    sink: Sink[tuple[str, Record]],
    providers: Mapping[str, ModelProvider] | Callable[[str], ModelProvider],
    *,
    governor: Any | None = None,
    live_broker: Broker | None = None,
    metrics: LiveMetrics | None = None,
    router: OrderRouter | None = None,
    on_bar_done: Callable[[Scored, int], None] | None = None,
) -> Dataflow:
    """The live dataflow; `sink` gets ("store", Record) pairs (StoreSink, or a TestingSink).

    `live_broker` None trades on the paper broker (held in the snapshot
    state with the ledger); otherwise the given venue, already connected."""
    from execution.risk import RiskGovernor

    runtime = PortfolioRuntime(
        config=config.strategy,
        governor=governor if governor is not None else RiskGovernor(config.strategy.risk),
        symbols=tuple(config.symbols),
        router=router if router is not None else OrderRouter(metrics),
        live_broker=live_broker,
        home=config.home,
        reorder=config.reorder,
        metrics=metrics,
        reconcile_backoff_s=config.reconcile_backoff_s,
        reconcile=config.reconcile,
        progress_every=config.progress_every,
        on_bar_done=on_bar_done,
    )
    flow = Dataflow(config.flow_id)
    bars = op.input("input", flow, source)
    arrivals = op.map("stamp", bars, _stamp)
    keyed = op.key_on("key_by_symbol", arrivals, lambda a: a.bar.symbol)
    scored = op.stateful_map("features", keyed, make_feature_mapper(providers))
    to_portfolio = op.map(
        "history_guard",
        op.flat_map("to_portfolio", scored, _to_portfolio),
        _history_guard(config.trade_after),
    )
    records = op.stateful_map("portfolio", to_portfolio, make_portfolio_mapper(runtime))
    rows = op.flat_map("records", records, _records)
    op.output("store", rows, sink)
    return flow
