"""The dataflow end to end on TestingSource / ReplaySource with run_main."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from execution.config import StrategyConfig
from execution.signal import bars_from_frame
from infra.stores import ParquetBarStore
from streaming.dataflow import StoreSink, StreamConfig, build_flow
from streaming.models import LocalBundleProvider
from streaming.sources import ReplaySource
from tests.streaming.conftest import spx_bars


def _two_symbols(n: int) -> pd.DataFrame:
    a = spx_bars(n, "SPX")
    b = spx_bars(n, "SPY").assign(
        open=lambda f: f["open"] / 10,
        high=lambda f: f["high"] / 10,
        low=lambda f: f["low"] / 10,
        close=lambda f: f["close"] / 10,
    )
    return pd.concat([a, b]).sort_values(["ts", "symbol"]).reset_index(drop=True)


def test_flow_when_two_symbols_stream_then_every_bar_has_equity_and_orders_are_stored(
    sma, tmp_path: Path
) -> None:
    bars = _two_symbols(sma.history + 150)
    store = ParquetBarStore(tmp_path / "data")
    provider = LocalBundleProvider(sma)
    config = StreamConfig(strategy=StrategyConfig(), symbols=("SPX", "SPY"), progress_every=0)

    flow = build_flow(
        config,
        TestingSource(bars_from_frame(bars)),
        StoreSink(lambda: store, max_buffer=100),
        {"SPX": provider, "SPY": provider},
    )
    run_main(flow)

    store = ParquetBarStore(tmp_path / "data")
    equity = store.read_records("live_equity")
    assert len(equity) == bars["ts"].nunique()
    preds = store.read_records("live_predictions")
    warm = len(sma.predict_frame(bars[bars["symbol"] == "SPX"]))
    assert len(preds) == 2 * warm  # the bars past the model's warm-up, both symbols
    orders = store.read_records("live_orders")
    assert len(orders) > 0 and orders["client_id"].is_unique
    fills = store.read_records("live_fills")
    assert set(fills["client_id"]) <= set(orders["client_id"])
    positions = store.read_records("live_positions").set_index("symbol")
    assert set(positions.index) == {"SPX", "SPY"}


def test_flow_when_records_are_written_twice_then_store_is_unchanged(sma, tmp_path: Path) -> None:
    bars = spx_bars(sma.history + 80)
    data = tmp_path / "data"
    config = StreamConfig(strategy=StrategyConfig(), symbols=("SPX",), progress_every=0)
    tables = ("live_orders", "live_fills", "live_equity")
    snapshots = []
    for _ in range(2):
        run_main(
            build_flow(
                config,
                ReplaySource(bars),
                StoreSink(lambda: ParquetBarStore(data)),
                {"SPX": LocalBundleProvider(sma)},
            )
        )
        snapshots.append({t: ParquetBarStore(data).read_records(t) for t in tables})

    first, second = snapshots
    for table in tables:
        pd.testing.assert_frame_equal(first[table], second[table], obj=table)
    assert len(first["live_equity"]) == len(bars)


def test_replay_source_when_resumed_from_snapshot_then_continues_after_last_bar() -> None:
    bars = spx_bars(10)
    source = ReplaySource(bars, batch_size=3)
    part = source.build_part("input", "replay", None)
    emitted = part.next_batch()
    resumed = source.build_part("input", "replay", part.snapshot())

    rest = []
    for _ in range(10):
        try:
            rest.extend(resumed.next_batch())
        except StopIteration:
            break

    assert [b.ts for b in emitted + rest] == list(bars["ts"])


def test_replay_source_when_max_bars_then_stops_there() -> None:
    part = ReplaySource(spx_bars(10), batch_size=4, max_bars=6).build_part("i", "replay", None)

    assert len(part.next_batch()) == 4
    assert len(part.next_batch()) == 2
    with pytest.raises(StopIteration):
        part.next_batch()


def test_flow_when_aborted_and_resumed_with_recovery_then_result_equals_uninterrupted(
    sma, tmp_path: Path
) -> None:
    bars = bars_from_frame(spx_bars(sma.history + 120))
    config = StreamConfig(strategy=StrategyConfig(), symbols=("SPX",), progress_every=0)
    providers = {"SPX": LocalBundleProvider(sma)}
    clean: list = []
    run_main(build_flow(config, TestingSource(bars), TestingSink(clean), providers))

    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(tmp_path)
    cut = sma.history + 60
    items = [*bars[:cut], TestingSource.ABORT(), *bars[cut:]]
    resumed: list = []
    source = TestingSource(items)
    run_main(
        build_flow(config, source, TestingSink(resumed), providers),
        epoch_interval=timedelta(0),
        recovery_config=recovery,
    )
    run_main(
        build_flow(config, source, TestingSink(resumed), providers),
        epoch_interval=timedelta(0),
        recovery_config=recovery,
    )

    def table(out: list, name: str) -> dict:
        return {tuple(r.row[k] for k in r.key): dict(r.row) for _, r in out if r.table == name}

    for name in ("live_orders", "live_fills", "live_equity", "live_predictions"):
        assert table(resumed, name) == table(clean, name), name


def _three_symbols(n: int) -> pd.DataFrame:
    frames = []
    for k, symbol in enumerate(("AAA", "BBB", "CCC")):
        f = spx_bars(n, symbol)
        for col in ("open", "high", "low", "close"):
            f[col] = f[col] * (1.0 + 0.1 * k)
        frames.append(f)
    return pd.concat(frames).sort_values(["ts", "symbol"]).reset_index(drop=True)


def _cluster_flow(bars: pd.DataFrame, sink, reorder: bool, by_symbol: bool = False):
    from tests.streaming.conftest import xgb_bundle

    # XGBoost: its compiled trees are shared by the worker threads of a process.
    bundle = xgb_bundle(spx_bars(600), n_estimators=20)
    symbols = ("AAA", "BBB", "CCC")
    config = StreamConfig(
        strategy=StrategyConfig(), symbols=symbols, progress_every=0, reorder=reorder
    )
    return build_flow(
        config,
        ReplaySource(bars, by_symbol=by_symbol),
        sink,
        {s: LocalBundleProvider(bundle) for s in symbols},
    )


def _tables(out: list) -> dict[str, dict]:
    tables: dict[str, dict] = {}
    for _, rec in out:
        tables.setdefault(rec.table, {})[tuple(rec.row[k] for k in rec.key)] = dict(rec.row)
    return tables


def _cluster_process(data_dir: str, addresses: list[str], proc_id: int, n: int) -> None:
    from bytewax.testing import cluster_main

    bars = _three_symbols(n)
    sink = StoreSink(lambda: ParquetBarStore(Path(data_dir)))
    cluster_main(_cluster_flow(bars, sink, reorder=True, by_symbol=True), addresses, proc_id)


def test_flow_when_run_on_two_workers_or_two_processes_then_tables_equal_one_worker(
    sma, tmp_path: Path
) -> None:
    import multiprocessing
    import socket

    from bytewax.testing import cluster_main

    # Arrange: a three-symbol replay; features are keyed by symbol, so they spread over workers.
    n = sma.history + 120
    bars = _three_symbols(n)
    one: list = []
    run_main(_cluster_flow(bars, TestingSink(one), reorder=False))
    reference = _tables(one)
    # Act: -w 2 (two worker threads in one process), the replay read in one partition and
    # in one partition per symbol (each worker reads its own symbols)
    two: list = []
    cluster_main(
        _cluster_flow(bars, TestingSink(two), reorder=True), [], 0, worker_count_per_proc=2
    )
    split: list = []
    cluster_main(
        _cluster_flow(bars, TestingSink(split), reorder=True, by_symbol=True),
        [],
        0,
        worker_count_per_proc=2,
    )
    # Act: -p 2 (two processes on localhost), one partition per symbol, through the store sink
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    addresses = [f"127.0.0.1:{p}" for p in ports]
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_cluster_process, args=(str(tmp_path / "data"), addresses, i, n))
        for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    # Assert
    assert [p.exitcode for p in procs] == [0, 0]
    assert _tables(two) == reference
    assert _tables(split) == reference
    _assert_stored_equal(ParquetBarStore(tmp_path / "data"), one)


def _assert_stored_equal(store, one: list) -> None:
    """The live tables in `store` hold exactly the records of the one-worker run `one`."""
    reference = _tables(one)
    for table in ("live_orders", "live_fills", "live_equity", "live_predictions"):
        assert len(reference[table]) > 0, table
        stored = store.read_records(table)
        expected = pd.DataFrame(list(reference[table].values()))
        key = list(next(r for _, r in one if r.table == table).key)
        pd.testing.assert_frame_equal(
            stored.sort_values(key).reset_index(drop=True)[sorted(expected.columns)],
            expected.sort_values(key).reset_index(drop=True)[sorted(expected.columns)],
            check_dtype=False,
            obj=table,
        )


@pytest.mark.parametrize(
    "kind", ["parquet", pytest.param("timescale", marks=pytest.mark.timescale)]
)
def test_store_sink_when_two_workers_then_tables_written_from_both_and_equal_one_worker(
    sma, tmp_path: Path, request, kind: str
) -> None:
    import threading
    import uuid

    from bytewax.testing import cluster_main

    from infra.stores import TimescaleBarStore
    from streaming.dataflow import LIVE_TABLES
    from tests.infra.test_stores_contract import drop_schema

    # Arrange: a three-symbol replay, the reference from one worker
    bars = _three_symbols(sma.history + 120)
    one: list = []
    run_main(_cluster_flow(bars, TestingSink(one), reorder=False))
    schema = f"cf_test_{uuid.uuid4().hex[:10]}"
    dsn = request.getfixturevalue("timescale_dsn") if kind == "timescale" else ""
    opened_on: list[int] = []

    def open_store():
        opened_on.append(threading.get_ident())
        if kind == "parquet":
            return ParquetBarStore(tmp_path / "data")
        return TimescaleBarStore(dsn, schema=schema)

    try:
        # Act: -w 2, the replay split by symbol, every write through the store sink
        cluster_main(
            _cluster_flow(bars, StoreSink(open_store), reorder=True, by_symbol=True),
            [],
            0,
            worker_count_per_proc=2,
        )
        # Assert: a store (partition) per live table, on both workers; the tables as one
        # worker leaves them
        assert len(opened_on) == len(LIVE_TABLES)
        assert len(set(opened_on)) == 2
        with open_store() as store:
            _assert_stored_equal(store, one)
    finally:
        if kind == "timescale":
            drop_schema(dsn, schema)


def test_replay_when_split_by_symbol_then_each_partition_resumes_after_its_own_last_bar() -> None:
    bars = _three_symbols(12)
    source = ReplaySource(bars, by_symbol=True, batch_size=2)
    assert source.list_parts() == ["AAA", "BBB", "CCC"]
    first = source.build_part("input", "BBB", None)
    emitted = first.next_batch() + first.next_batch()
    resumed = ReplaySource(bars, by_symbol=True).build_part("input", "BBB", first.snapshot())
    rest = []
    while True:
        try:
            rest.extend(resumed.next_batch())
        except StopIteration:
            break
    expected = list(bars.loc[bars["symbol"] == "BBB", "ts"])
    assert {b.symbol for b in emitted + rest} == {"BBB"}
    assert [b.ts for b in emitted + rest] == expected  # nothing lost, nothing twice


def test_replay_when_split_by_symbol_with_max_bars_then_the_whole_replay_stops_there() -> None:
    bars = _three_symbols(12)
    source = ReplaySource(bars, by_symbol=True, max_bars=7)
    counts = {}
    for part in source.list_parts():
        p = source.build_part("input", part, None)
        n = 0
        while True:
            try:
                n += len(p.next_batch())
            except StopIteration:
                break
        counts[part] = n
    assert counts == {"AAA": 3, "BBB": 2, "CCC": 2}
