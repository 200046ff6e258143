"""The pure steps of the live plane, without a dataflow."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from execution.broker import (
    Broker,
    BrokerUnavailableError,
    DuplicateOrderError,
    OrderRejectedError,
)
from execution.config import StrategyConfig
from execution.domain import Fill, Order, OrderAck, OrderStatus, Position, Side
from execution.paper import PaperBroker
from execution.risk import RiskGovernor
from execution.signal import Bar, Prediction, bars_from_frame
from ml.bundle import ModelBundle
from ml.features import FeatureConfig
from streaming.killswitch import engage_kill_switch, kill_switch_status, release_kill_switch
from streaming.models import LocalBundleProvider
from streaming.router import OrderRouter, RouteOutcome
from streaming.steps import (
    Arrival,
    PortfolioRuntime,
    Scored,
    Tick,
    aggregate_ticks,
    feature_step,
    portfolio_step,
)
from tests.streaming.conftest import spx_bars, xgb_bundle

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def _arrival(bar: Bar) -> Arrival:
    return Arrival(bar, time.perf_counter_ns())


def _bar(i: int, price: float = 100.0, symbol: str = "AAA") -> Bar:
    return Bar(symbol, "1d", T0 + timedelta(days=i), price, price * 1.01, price * 0.99, price, 1e6)


def _runtime(config: StrategyConfig, **kw) -> PortfolioRuntime:
    return PortfolioRuntime(
        config=config,
        governor=RiskGovernor(config.risk),
        symbols=kw.pop("symbols", ("AAA",)),
        router=kw.pop("router", OrderRouter()),
        **kw,
    )


def _up(bar: Bar) -> Prediction:
    return Prediction(bar.symbol, bar.ts, 0.05, 0.05, 0.9)


class _UnavailableBroker(Broker):
    name = "flaky"

    def __init__(self) -> None:
        self.down = True
        self.submitted: list[Order] = []

    def connect(self) -> None:
        pass

    def submit(self, order: Order) -> OrderAck:
        if any(o.client_id == order.client_id for o in self.submitted):
            raise DuplicateOrderError(order.client_id)
        self.submitted.append(order)
        return OrderAck(order.client_id, OrderStatus.ACCEPTED)

    def poll_fills(self) -> Sequence[Fill]:
        return []

    def positions(self) -> Mapping[str, Position]:
        if self.down:
            msg = "terminal not connected"
            raise BrokerUnavailableError(msg)
        return {}

    def open_orders(self) -> Sequence[Order]:
        return []

    def submitted_client_ids(self) -> frozenset[str]:
        return frozenset(o.client_id for o in self.submitted)


def test_feature_step_when_buffer_is_full_then_prediction_equals_batch(sma) -> None:
    bars = spx_bars(sma.history + 60)
    batch = sma.predict_frame(bars)
    provider = LocalBundleProvider(sma, version="v7")
    state, last = None, None
    for bar in bars_from_frame(bars):
        state, last = feature_step(state, _arrival(bar), provider)

    assert state.recent_n == sma.history
    assert last is not None and last.prediction is not None
    expected = batch.iloc[-1]
    got = last.prediction
    assert (got.p_down, got.p_flat, got.p_up) == pytest.approx(
        (expected["p_down"], expected["p_flat"], expected["p_up"]), abs=1e-12
    )
    assert got.model == "v7"
    assert got.ts == bars["ts"].iloc[-1].to_pydatetime()


def test_feature_step_when_xgboost_champion_then_every_prediction_equals_batch() -> None:
    # Arrange: the incremental features and the compiled trees against the batch path.
    bundle = xgb_bundle(spx_bars(800), n_estimators=40)
    bars = spx_bars(2000)
    batch = bundle.predict_frame(bars)
    provider = LocalBundleProvider(bundle)
    state, got = None, {}
    # Act
    for bar in bars_from_frame(bars):
        state, scored = feature_step(state, _arrival(bar), provider)
        if scored.prediction is not None:
            p = scored.prediction
            got[pd.Timestamp(p.ts)] = (p.p_down, p.p_flat, p.p_up)
    # Assert: the same bars predicted, and the same probabilities, bit for bit.
    assert list(got) == list(batch.index)
    np.testing.assert_array_equal(np.array(list(got.values())), batch.to_numpy())


def test_feature_step_when_feature_config_changes_then_features_rebuilt_from_recent_bars(
    sma,
) -> None:
    # Arrange: a champion swap to a bundle with other lookbacks mid-stream.
    other = ModelBundle(
        model=sma.model,
        feature_config=FeatureConfig(macd_fast=8, keltner_period=30),
        columns=sma.columns,
        name=sma.name,
    )
    bars = spx_bars(other.history + 400)
    frames = list(bars_from_frame(bars))
    state = None
    for bar in frames[:300]:
        state, _ = feature_step(state, _arrival(bar), LocalBundleProvider(sma))
    # Act
    for bar in frames[300:]:
        state, last = feature_step(state, _arrival(bar), LocalBundleProvider(other))
    # Assert: equal to the batch path over the bars the ring held at the swap, and after.
    held = min(300, other.history)
    expected = other.predict_frame(bars.iloc[300 - held :]).iloc[-1]
    got = last.prediction
    assert state.features.config == other.feature_config
    assert (got.p_down, got.p_flat, got.p_up) == pytest.approx(tuple(expected), abs=1e-12)


def test_feature_step_when_bar_is_not_newer_then_it_is_dropped(sma) -> None:
    provider = LocalBundleProvider(sma)
    state, _ = feature_step(None, _arrival(_bar(1)), provider)
    state, emitted = feature_step(state, _arrival(_bar(1, price=101.0)), provider)

    assert emitted is None
    assert state.bars_seen == 1


def test_feature_step_when_warming_up_then_prediction_is_none(sma) -> None:
    state, emitted = feature_step(None, _arrival(_bar(0)), LocalBundleProvider(sma))

    assert emitted is not None and emitted.prediction is None


def test_aggregate_ticks_when_bucket_changes_then_previous_bar_is_emitted() -> None:
    ticks = [
        Tick("EURUSD", T0 + timedelta(seconds=1), 1.10, 2.0),
        Tick("EURUSD", T0 + timedelta(seconds=20), 1.12, 1.0),
        Tick("EURUSD", T0 + timedelta(seconds=40), 1.09, 1.0),
        Tick("EURUSD", T0 + timedelta(seconds=59), 1.11, 3.0),
        Tick("EURUSD", T0 + timedelta(seconds=10), 1.50, 9.0),  # late: dropped
        Tick("EURUSD", T0 + timedelta(minutes=3, seconds=5), 1.13, 1.0),  # gap of 2 empty bars
        Tick("EURUSD", T0 + timedelta(minutes=4), 1.14, 1.0),
    ]
    state, out = None, []
    for tick in ticks:
        state, bar = aggregate_ticks(state, tick, "1m")
        if bar is not None:
            out.append(bar)

    assert out == [
        Bar("EURUSD", "1m", T0, 1.10, 1.12, 1.09, 1.11, 7.0),
        Bar("EURUSD", "1m", T0 + timedelta(minutes=3), 1.13, 1.13, 1.13, 1.13, 1.0),
    ]
    assert state.bucket == T0 + timedelta(minutes=4)


def test_router_when_venue_has_the_client_id_then_duplicate_is_not_resent() -> None:
    broker = _UnavailableBroker()
    order = Order("cf0123456789abcdef", "AAA", Side.BUY, 10.0, T0, "entry")
    router = OrderRouter()

    first = router.submit(broker, order)
    second = router.submit(broker, order)

    assert (first, second) == (RouteOutcome.SENT, RouteOutcome.DUPLICATE)
    assert len(broker.submitted) == 1


def test_portfolio_step_when_prediction_says_up_then_entry_is_filled_next_bar() -> None:
    config = StrategyConfig()
    rt = _runtime(config)
    b0, b1 = _bar(0), _bar(1, price=101.0)

    state, rec0 = portfolio_step(None, Scored(b0, _up(b0), 0), rt)
    state, rec1 = portfolio_step(state, Scored(b1, None, 0), rt)

    orders = [r.row for r in rec0 if r.table == "live_orders"]
    fills = [r.row for r in rec1 if r.table == "live_fills"]
    assert len(orders) == 1 and orders[0]["side"] == "buy"
    assert len(fills) == 1 and fills[0]["client_id"] == orders[0]["client_id"]
    assert state.engine.positions["AAA"].quantity == pytest.approx(fills[0]["quantity"])
    assert {r.table for r in rec1} >= {"live_equity", "live_positions", "live_fills"}


def test_portfolio_step_when_kill_switch_engaged_then_no_entry(tmp_path: Path) -> None:
    config = StrategyConfig()
    rt = _runtime(config, home=tmp_path)
    engage_kill_switch(tmp_path, flatten=False)
    b0 = _bar(0)

    state, records = portfolio_step(None, Scored(b0, _up(b0), 0), rt)

    assert not [r for r in records if r.table == "live_orders"]
    assert state.paper.open_orders() == []
    assert kill_switch_status(tmp_path)["engaged"] is True


def test_portfolio_step_when_kill_switch_engaged_then_exits_pass_and_no_new_entry(
    tmp_path: Path,
) -> None:
    config = StrategyConfig()
    rt = _runtime(config, home=tmp_path)
    bars = [_bar(i, price=100.0 + i) for i in range(5)]
    state, _ = portfolio_step(None, Scored(bars[0], _up(bars[0]), 0), rt)
    state, _ = portfolio_step(state, Scored(bars[1], _up(bars[1]), 0), rt)
    assert state.engine.positions["AAA"].quantity > 0
    engage_kill_switch(tmp_path, flatten=False)
    down = Prediction("AAA", bars[2].ts, 0.9, 0.05, 0.05)

    state, rec2 = portfolio_step(state, Scored(bars[2], down, 0), rt)
    state, _ = portfolio_step(state, Scored(bars[3], _up(bars[3]), 0), rt)
    release_kill_switch(tmp_path)
    state, rec4 = portfolio_step(state, Scored(bars[4], _up(bars[4]), 0), rt)

    assert [r.row["intent"] for r in rec2 if r.table == "live_orders"] == ["exit"]  # no short
    assert "AAA" not in state.engine.positions or state.engine.positions["AAA"].quantity == 0
    assert [r.row["intent"] for r in rec4 if r.table == "live_orders"] == ["entry"]


def test_portfolio_step_when_flatten_engaged_then_positions_close_once(tmp_path: Path) -> None:
    config = StrategyConfig()
    rt = _runtime(config, home=tmp_path)
    bars = [_bar(i, price=100.0 + i) for i in range(5)]
    state, _ = portfolio_step(None, Scored(bars[0], _up(bars[0]), 0), rt)
    state, _ = portfolio_step(state, Scored(bars[1], _up(bars[1]), 0), rt)
    assert state.engine.positions["AAA"].quantity > 0

    engage_kill_switch(tmp_path, flatten=True)
    state, rec2 = portfolio_step(state, Scored(bars[2], _up(bars[2]), 0), rt)
    state, rec3 = portfolio_step(state, Scored(bars[3], _up(bars[3]), 0), rt)
    state, rec4 = portfolio_step(state, Scored(bars[4], _up(bars[4]), 0), rt)

    flatten = [r.row for r in rec2 if r.table == "live_orders"]
    assert [o["intent"] for o in flatten] == ["flatten"]
    assert not [r for r in rec3 + rec4 if r.table == "live_orders"]
    assert "AAA" not in state.engine.positions
    release_kill_switch(tmp_path)
    assert kill_switch_status(tmp_path) == {"engaged": False, "flatten": False, "since": None}


def test_portfolio_step_when_venue_unavailable_then_no_trading_until_reconciled() -> None:
    config = StrategyConfig()
    broker = _UnavailableBroker()
    clock = [0.0]
    rt = _runtime(config, live_broker=broker, clock=lambda: clock[0])
    b0, b1 = _bar(0), _bar(1)

    state, _ = portfolio_step(None, Scored(b0, _up(b0), 0), rt)
    assert broker.submitted == [] and not rt.reconciled
    broker.down = False
    clock[0] = 0.5  # still inside the backoff: not asked again
    state, _ = portfolio_step(state, Scored(b1, _up(b1), 0), rt)
    assert broker.submitted == [] and not rt.reconciled
    clock[0] = 5.0
    b2 = _bar(2)
    state, records = portfolio_step(state, Scored(b2, _up(b2), 0), rt)

    assert rt.reconciled and rt.halted is None
    assert [o.intent for o in broker.submitted] == ["entry"]


class _NoMoneyBroker(_UnavailableBroker):
    """Connected, flat, and refuses every order (MT5 10019, no money)."""

    def submit(self, order: Order) -> OrderAck:
        self.submitted.append(order)
        raise OrderRejectedError(order.client_id, 10019, "No money")


def test_portfolio_step_when_entry_rejected_then_flat_signal_sends_nothing() -> None:
    config = StrategyConfig()
    broker = _NoMoneyBroker()
    broker.down = False
    rt = _runtime(config, live_broker=broker)
    b0, b1, b2 = _bar(0), _bar(1), _bar(2)

    state, _ = portfolio_step(None, Scored(b0, _up(b0), 0), rt)
    flat = Prediction("AAA", b1.ts, 0.05, 0.9, 0.05)
    state, _ = portfolio_step(state, Scored(b1, flat, 0), rt)
    state, _ = portfolio_step(state, Scored(b2, None, 0), rt)

    assert [o.intent for o in broker.submitted] == ["entry"]  # no exit to a flat account
    assert state.engine.positions == {}
    assert state.engine.symbols["AAA"].orders == {}
    assert rt.halted is None


def test_portfolio_step_when_ledger_disagrees_with_venue_then_trading_halts() -> None:
    config = StrategyConfig()
    broker = _UnavailableBroker()
    broker.down = False
    broker.positions = lambda: {"AAA": Position("AAA", 5.0, 100.0)}  # type: ignore[method-assign]
    rt = _runtime(config, live_broker=broker)
    b0 = _bar(0)

    portfolio_step(None, Scored(b0, _up(b0), 0), rt)

    assert rt.halted is not None and "AAA" in rt.halted
    assert broker.submitted == []


def test_portfolio_step_when_state_is_pickled_then_paper_broker_rolls_back_with_it(
    tmp_path: Path,
) -> None:
    import pickle

    config = StrategyConfig()
    rt = _runtime(config)
    b0, b1 = _bar(0), _bar(1, 101.0)
    state, _ = portfolio_step(None, Scored(b0, _up(b0), 0), rt)
    snap = pickle.dumps(state)
    state, first = portfolio_step(state, Scored(b1, None, 0), rt)

    resumed, again = portfolio_step(pickle.loads(snap), Scored(b1, None, 0), rt)

    fills = [r.row for r in first if r.table == "live_fills"]
    assert fills and fills == [r.row for r in again if r.table == "live_fills"]
    assert isinstance(resumed.paper, PaperBroker)
    assert resumed.paper.positions() == state.paper.positions()


def _portfolio_records(items: list[Scored], rt: PortfolioRuntime, state=None) -> list:
    out = []
    for item in items:
        state, recs = portfolio_step(state, item, rt)
        out.extend((r.table, dict(r.row)) for r in recs)
    return out


def test_portfolio_when_one_symbol_runs_far_ahead_then_records_equal_the_ordered_run() -> None:
    # Arrange: a partitioned source on several workers: all of AAA arrives before any of BBB.
    symbols = ("AAA", "BBB")
    ordered = [
        Scored(_bar(i, 100.0 + i % 7 + 3 * k, s), None, 0)
        for i in range(300)
        for k, s in enumerate(symbols)
    ]
    ahead = sorted(ordered, key=lambda s: (s.bar.symbol, s.bar.ts))
    # Act
    reference = _portfolio_records(ordered, _runtime(StrategyConfig(), symbols=symbols))
    reordered = _portfolio_records(ahead, _runtime(StrategyConfig(), symbols=symbols, reorder=True))
    # Assert
    assert len(reference) >= 600
    assert reordered == reference


def test_portfolio_when_snapshot_holds_a_plain_pending_list_then_it_resumes_in_order() -> None:
    symbols = ("AAA", "BBB")
    rt = _runtime(StrategyConfig(), symbols=symbols, reorder=True)
    items = [Scored(_bar(i, 100.0 + 3 * k, s), None, 0) for i in range(3) for k, s in
             enumerate(symbols)]  # fmt: skip
    reference = _portfolio_records(items, _runtime(StrategyConfig(), symbols=symbols))
    state, first = portfolio_step(None, items[0], rt)
    state.pending = [it for _, _, it in state.pending]  # as a pre-heap snapshot held it

    rest = _portfolio_records(items[1:], rt, state)

    assert first == []  # BBB has not reached the first ts yet
    assert rest == reference
