"""The live dataflow: bars -> per-symbol features and prediction -> one portfolio -> the store.

```
input -> stamp -> key_by_symbol -> features (stateful, per symbol)
      -> to_portfolio (one key) -> portfolio (stateful: venue events, on_event, on_bar, router)
      -> records -> store (one sink partition per live table, upserts on the table's key)
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

__all__ = [
    "LIVE_TABLES",
    "StoreRetry",
    "StoreSink",
    "StreamConfig",
    "build_flow",
    "records_to_frames",
]

logger = logging.getLogger(__name__)

LIVE_TABLES = ("live_orders", "live_fills", "live_equity", "live_predictions", "live_positions")
PORTFOLIO_KEY = "portfolio"


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


@dataclass(frozen=True)
class StoreRetry:
    """How the store sink waits out an unavailable store (a TimescaleDB restart, a network cut).

    While the store is down the sink retries with capped exponential backoff and the worker
    makes no progress: no new bar reaches the portfolio step, so no new risk is taken, and the
    records already produced stay in memory until they are written. An end-of-run close waits
    at most `close_wait_s`; the records of a run stopped that way come again on restart.
    """

    first_s: float = 0.5  # wait before the 2nd attempt; doubles each time
    max_s: float = 5.0  # the cap: a restarted server is seen within 5 s
    close_wait_s: float = 300.0

    def delay_s(self, attempt: int) -> float:
        return min(self.max_s, self.first_s * 2 ** max(0, attempt - 1))


class _StorePartition(StatefulSinkPartition[Record, None]):
    def __init__(
        self,
        open_store: Callable[[], Any],
        max_buffer: int,
        retry: StoreRetry,
        metrics: LiveMetrics | None,
        name: str = "store",
        *,
        part: str = "store",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open = open_store
        self._store: Any | None = None
        self._max = max_buffer
        self._retry = retry
        self._metrics = metrics
        self._name = name
        self._part = part
        self._sleep = sleep
        self._clock = clock
        self._buffer: list[Record] = []
        self._failed = False  # a write failed for good: close() must not write again
        self._with_store(lambda store: None, deadline=None)  # opens, waiting out an outage

    def write_batch(self, items: list[Record]) -> None:
        self._buffer.extend(items)
        if len(self._buffer) >= self._max:
            self._flush(deadline=None)

    def _flush(self, deadline: float | None) -> bool:
        if not self._buffer:
            return True
        frames = records_to_frames(self._buffer)

        def write(store: Any) -> None:
            # Each table is its own transaction; a retry after a cut rewrites the tables that
            # made it already, which the upsert on each table's key leaves unchanged.
            for table, (frame, key) in frames.items():
                store.upsert_records(table, frame, key)

        if not self._with_store(write, deadline=deadline):
            return False
        self._buffer = []
        return True

    def _with_store(self, action: Callable[[Any], None], deadline: float | None) -> bool:
        """Run `action` on the store, retrying while it is unavailable; False past `deadline`."""
        from infra.stores import StoreUnavailableError

        attempt = 0
        down_since: float | None = None
        while True:
            try:
                if self._store is None:
                    self._store = self._open()
                action(self._store)
            except StoreUnavailableError as exc:
                attempt += 1
                down_since = self._clock() if down_since is None else down_since
                delay = self._retry.delay_s(attempt)
                self._set_up(False)
                logger.warning(
                    "event=store_unavailable database=%s part=%s attempt=%d retry_in_s=%.1f "
                    "held_records=%d trading=paused error=%s",
                    self._name,
                    self._part,
                    attempt,
                    delay,
                    len(self._buffer),
                    exc,
                )
                if deadline is not None and self._clock() + delay > deadline:
                    return False
                self._sleep(delay)
                continue
            except Exception:
                self._failed = True
                raise
            if down_since is not None:
                logger.warning(
                    "event=store_recovered database=%s part=%s attempts=%d outage_s=%.1f "
                    "written_records=%d",
                    self._name,
                    self._part,
                    attempt,
                    self._clock() - down_since,
                    len(self._buffer),
                )
            self._set_up(True)
            return True

    def _set_up(self, up: bool) -> None:
        if self._metrics is not None:
            self._metrics.store_up.set(1 if up else 0)
            if not up:
                self._metrics.store_retries.inc()

    def snapshot(self) -> None:
        # Called at the end of every epoch, before the epoch's snapshot is committed: whatever
        # the committed state has produced is in the store by then, so nothing is lost on a
        # crash, and what is re-emitted after resume is an idempotent upsert. During an outage
        # this waits (retrying) so that no snapshot ever runs ahead of the store.
        self._flush(deadline=None)

    def close(self) -> None:
        if not self._failed:
            deadline = self._clock() + self._retry.close_wait_s
            if not self._flush(deadline=deadline):
                logger.error(
                    "event=store_close_unwritten records=%d reason=store still unavailable "
                    "after %.0f s; they are produced again when the worker restarts",
                    len(self._buffer),
                    self._retry.close_wait_s,
                )
        store, self._store = self._store, None
        close = getattr(store, "close", None)
        if close is not None:
            close()


class StoreSink(FixedPartitionedSink[Record, None]):
    """Upserts records into a BarStore (`upsert_records`); a re-emitted record changes nothing.

    One partition per live table (records arrive keyed by their table, see `build_flow`), so
    with several workers Bytewax spreads the tables' writes over them instead of funnelling
    every write through one worker (with -w 2 it was the portfolio step's own worker). Each
    partition holds its own store (a Parquet table's own lock, a TimescaleDB connection of its
    own) and writes only its table, one upsert per flush: a table's rows still change in one
    transaction, and two partitions never write the same table.

    Records are buffered and written at each epoch end (the snapshot interval) or when
    `max_buffer` records of the table are waiting. Every partition flushes at every epoch end,
    before the epoch's snapshot is committed, so the resume point is what it was with one
    partition: whatever the committed state produced is stored. `open_store` is called on the
    worker that owns a partition, again after an outage when the store could not be opened; an
    unavailable store is waited out (`StoreRetry`) by each partition, which logs its own lines.
    """

    def __init__(
        self,
        open_store: Callable[[], Any],
        max_buffer: int = 5000,
        *,
        retry: StoreRetry | None = None,
        metrics: LiveMetrics | None = None,
        name: str = "store",
    ) -> None:
        self._open = open_store
        self._name = name  # for log lines, e.g. "timescale 127.0.0.1:5432/candleflow"
        self._max = max_buffer
        self._retry = retry if retry is not None else StoreRetry()
        self._metrics = metrics

    def list_parts(self) -> list[str]:
        return list(LIVE_TABLES)

    def part_fn(self, item_key: str) -> int:
        """A live table's own partition (adler32, the default, puts two tables in one); a table
        that is not a live table fails here rather than writing into another's partition."""
        return LIVE_TABLES.index(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _StorePartition:
        return _StorePartition(
            self._open, self._max, self._retry, self._metrics, self._name, part=for_part
        )


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
    return [(rec.table, rec) for rec in item[1]]


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
    """The live dataflow; `sink` gets (table, Record) pairs (StoreSink, or a TestingSink).

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
