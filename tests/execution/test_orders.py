"""The order lifecycle: events into the ledger, superseding decisions, ledger equals venue."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execution import _fast
from execution.backtest import run_backtest
from execution.broker import OrderRejectedError, submit_order
from execution.config import CostModel, RiskLimits, SizingConfig, StopConfig, StrategyConfig
from execution.domain import Fill, Order, Side
from execution.engine import EngineState, new_state, on_bar, on_event
from execution.orders import (
    Cancel,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderState,
    events_from_ack,
)
from execution.paper import PaperBroker
from execution.risk import RiskGovernor
from execution.signal import Bar, Prediction

T0 = datetime(2024, 1, 2, tzinfo=UTC)
NO_COSTS = CostModel(commission_bps=0.0, spread_bps=0.0, slippage_bps=0.0, max_volume_share=None)
LOOSE = RiskLimits(
    max_position_frac=100.0,
    max_gross_exposure=100.0,
    max_risk_per_trade=1.0,
    daily_loss_halt=1.0,
    max_drawdown_halt=1.0,
    drawdown_derisk_start=1.0,
    max_trades_per_day=1_000_000,
)
PATHS = [
    "reference",
    pytest.param("fast", marks=pytest.mark.skipif(not _fast.available(), reason="numba")),
]


def _bar(i: int, price: float = 100.0, volume: float = 1e6, symbol: str = "X") -> Bar:
    return Bar(
        symbol, "1h", T0 + timedelta(hours=i), price, price * 1.001, price * 0.999, price, volume
    )


def _up(bar: Bar) -> Prediction:
    return Prediction(bar.symbol, bar.ts, 0.05, 0.05, 0.9)


def _flat(bar: Bar) -> Prediction:
    return Prediction(bar.symbol, bar.ts, 0.05, 0.9, 0.05)


class _RejectingPaper(PaperBroker):
    """A paper venue that refuses the entries it is told to (no money, as MT5's 10019)."""

    def __init__(
        self, config: StrategyConfig, reject: set[int] | None = None, state_path=None
    ) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, state_path)
        self.reject = reject if reject is not None else set()
        self.sent = 0

    def submit(self, order: Order):  # type: ignore[no-untyped-def]
        k, self.sent = self.sent, self.sent + 1
        if k in self.reject:
            raise OrderRejectedError(order.client_id, 10019, "No money")
        return super().submit(order)


def _step(
    state: EngineState,
    broker: PaperBroker,
    bar: Bar,
    pred: Prediction | None,
    config: StrategyConfig,
) -> tuple[EngineState, list[Order]]:
    """One bar of the backtest loop (execution.backtest._run_reference) over any paper venue."""
    for event in broker.on_bar(bar):
        state, _ = on_event(state, event, config)
    broker.poll_events()
    state, commands = on_bar(state, bar, pred, config, RiskGovernor(config.risk))
    sent = []
    for command in commands:
        if isinstance(command, Cancel):
            answer = broker.cancel(command)
        else:
            sent.append(command)
            answer = submit_order(broker, command, command.ts)
        for event in answer:
            state, _ = on_event(state, event, config)
    return state, sent


# -- rejected entry, then a flat signal ------------------------------------------------------


def test_backtest_loop_when_entry_rejected_then_flat_signal_sends_nothing_and_stays_flat() -> None:
    config = StrategyConfig(strategy="t", costs=NO_COSTS)
    broker = _RejectingPaper(config, reject={0})
    state = new_state(config)

    state, first = _step(state, broker, _bar(0), _up(_bar(0)), config)
    state, second = _step(state, broker, _bar(1), _flat(_bar(1)), config)
    state, _ = _step(state, broker, _bar(2), None, config)

    assert [o.intent for o in first] == ["entry"]
    assert second == []
    assert state.positions == {}
    assert broker.positions() == {}
    assert state.symbols["X"].orders == {}


def test_engine_when_entry_rejected_then_next_long_signal_enters_again() -> None:
    config = StrategyConfig(strategy="t", costs=NO_COSTS)
    broker = _RejectingPaper(config, reject={0})
    state = new_state(config)

    state, _ = _step(state, broker, _bar(0), _up(_bar(0)), config)
    state, again = _step(state, broker, _bar(1), _up(_bar(1)), config)
    state, _ = _step(state, broker, _bar(2), None, config)

    assert [o.intent for o in again] == ["entry"]
    assert state.positions["X"].quantity == pytest.approx(again[0].quantity)


def test_on_bar_when_entry_partly_filled_and_working_then_cancels_it_and_exits_the_position() -> (
    None
):
    config = StrategyConfig(strategy="t", costs=NO_COSTS)
    gov = RiskGovernor(config.risk)
    state = new_state(config)
    state, (entry,) = on_bar(state, _bar(0), _up(_bar(0)), config, gov)
    fill = Fill(entry.client_id, "X", Side.BUY, 10.0, 100.0, 0.0, T0 + timedelta(hours=1))
    state, _ = on_event(state, fill, config)  # a fill implies the acceptance of its order
    assert state.symbols["X"].orders[entry.client_id].state is OrderState.PARTIALLY_FILLED

    state, commands = on_bar(state, _bar(1), _flat(_bar(1)), config, gov)

    cancel, exit_ = commands
    assert isinstance(cancel, Cancel)
    assert cancel.client_id == entry.client_id
    assert exit_.intent == "exit"
    assert exit_.quantity == pytest.approx(10.0)  # the position, not position + unfilled rest


def test_on_bar_when_entry_never_accepted_then_flat_decision_cancels_and_sells_nothing() -> None:
    config = StrategyConfig(strategy="t", costs=NO_COSTS)
    gov = RiskGovernor(config.risk)
    state = new_state(config)
    state, (entry,) = on_bar(state, _bar(0), _up(_bar(0)), config, gov)

    state, commands = on_bar(state, _bar(1), _flat(_bar(1)), config, gov)

    assert [type(c).__name__ for c in commands] == ["Cancel"]


def test_on_event_when_events_replayed_then_state_unchanged_after_terminal() -> None:
    config = StrategyConfig(strategy="t", costs=NO_COSTS)
    state = new_state(config)
    state, (entry,) = on_bar(state, _bar(0), _up(_bar(0)), config, RiskGovernor(config.risk))
    accepted = OrderAccepted(entry.client_id, "X", entry.ts)
    cancelled = OrderCancelled(entry.client_id, "X", entry.ts, entry.quantity, "superseded")

    for event in (accepted, cancelled, accepted, cancelled):
        state, _ = on_event(state, event, config)

    assert state.symbols["X"].orders == {}
    assert state.symbols["X"].direction == 0


def test_events_from_ack_when_rejected_status_then_rejected_with_whole_quantity() -> None:
    from execution.domain import OrderAck, OrderStatus

    order = Order("cf1", "X", Side.BUY, 5.0, T0, "entry")

    (event,) = events_from_ack(order, OrderAck("cf1", OrderStatus.REJECTED, message="closed"), T0)

    assert event == OrderRejected("cf1", "X", T0, "closed", 5.0)


# -- an exit supersedes the entry still working -------------------------------------------


def _partial_entry_case() -> tuple[pd.DataFrame, pd.DataFrame, StrategyConfig]:
    """25 units sized at bar 0, 10 fill per bar (10% of the 100 known), exit decided at bar 1."""
    n = 6
    ts = pd.date_range("2024-01-02", periods=n, freq="1h", tz="UTC")
    bars = pd.DataFrame(
        {
            "symbol": "X",
            "timeframe": "1h",
            "ts": ts,
            "open": 100.0,
            "high": 100.5,
            "low": 99.5,
            "close": 100.0,
            "volume": 100.0,
        }
    )
    up = np.array([1, 0, 0, 0, 0, 0], dtype=bool)
    preds = pd.DataFrame(
        {
            "symbol": "X",
            "ts": ts,
            "p_down": 0.05,
            "p_flat": np.where(up, 0.05, 0.9),
            "p_up": np.where(up, 0.9, 0.05),
        }
    )
    config = StrategyConfig(
        strategy="t",
        costs=CostModel(commission_bps=0.0, spread_bps=0.0, slippage_bps=0.0, max_volume_share=0.1),
        sizing=SizingConfig(method="fixed_quantity", fixed_quantity=25.0),
        risk=LOOSE,
        partial_fill="keep",
        partial_fill_bars=10,
    )
    return bars, preds, config


@pytest.mark.parametrize("path", PATHS)
def test_backtest_when_exit_decided_while_entry_partly_filled_then_no_entry_unit_fills_after(
    path: str,
) -> None:
    bars, preds, config = _partial_entry_case()

    result = run_backtest(bars, preds, config, path=path)

    entry_id, exit_id = result.orders["client_id"].tolist()
    decided = result.orders.loc[result.orders["intent"] == "exit", "ts"].iloc[0]
    entry_fills = result.fills[result.fills["client_id"] == entry_id]
    assert entry_fills["quantity"].sum() == pytest.approx(10.0)  # bar 1 only
    assert entry_fills.loc[entry_fills["ts"] > decided, "quantity"].sum() == 0.0
    exit_fills = result.fills[result.fills["client_id"] == exit_id]
    assert exit_fills["quantity"].sum() == pytest.approx(10.0)
    # flat within one bar of the decision: the exit fills at the next bar's open
    assert exit_fills["ts"].max() == bars["ts"].iloc[2]
    assert result.final_state.positions == {}
    assert result.exposure.iloc[2:].eq(0.0).all()


# -- the ledger always equals the venue ------------------------------------------------------

_ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["up", "down", "flat", "none"]),  # the decision at the bar's close
        st.sampled_from([1.0, 0.97, 1.03, 0.9, 1.1]),  # the open's gap (0.9 / 1.1 go through stops)
        st.sampled_from([20.0, 200.0, 1e6]),  # bar volume: partial fills when small
        st.booleans(),  # the venue rejects the next order sent
        st.booleans(),  # the worker restarts before the bar: engine from a snapshot, venue
        # from its state file
    ),
    min_size=5,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=_ACTIONS,
    policy=st.sampled_from([("cancel", 1), ("keep", 1), ("keep", 3)]),
    stops=st.sampled_from(["none", "fixed", "trailing"]),
    cash=st.sampled_from([1_000.0, 100_000.0]),
    short=st.booleans(),
)
def test_ledger_when_random_accepts_rejects_partials_cancels_and_stop_outs_then_equals_venue(
    tmp_path_factory: pytest.TempPathFactory,
    actions: list[tuple[str, float, float, bool, bool]],
    policy: tuple[str, int],
    stops: str,
    cash: float,
    short: bool,
) -> None:
    import pickle

    from execution.config import DecisionConfig

    path = tmp_path_factory.mktemp("venue") / "paper.json"
    config = StrategyConfig(
        strategy="prop",
        initial_cash=cash,
        costs=CostModel(max_volume_share=0.1, commission_min=0.5),
        sizing=SizingConfig(method="fixed_quantity", fixed_quantity=50.0),
        stops=StopConfig(kind=stops, stop_pct=0.05, take_profit_mult=1.5),
        risk=LOOSE,
        decision=DecisionConfig(allow_short=short),
        partial_fill=policy[0],
        partial_fill_bars=policy[1],
    )
    broker = _RejectingPaper(config, state_path=path)
    state = new_state(config)
    price = 100.0
    for i, (decision, gap, volume, reject, restart) in enumerate(actions):
        if restart:
            state = pickle.loads(pickle.dumps(state))
            broker = _RejectingPaper(config, broker.reject, state_path=path)
            broker.sent = max(broker.reject, default=-1) + 1
        price *= gap
        bar = Bar(
            "X", "1h", T0 + timedelta(hours=i), price, price * 1.01, price * 0.99, price, volume
        )
        if reject:
            broker.reject.add(broker.sent)
        pred = {
            "up": Prediction("X", bar.ts, 0.05, 0.05, 0.9),
            "down": Prediction("X", bar.ts, 0.9, 0.05, 0.05),
            "flat": Prediction("X", bar.ts, 0.05, 0.9, 0.05),
            "none": None,
        }[decision]
        state, _ = _step(state, broker, bar, pred, config)

        venue = {s: p.quantity for s, p in broker.positions().items()}
        ledger = {s: p.quantity for s, p in state.positions.items()}
        assert ledger == venue
        assert state.cash == broker.cash
        assert broker.cash >= -1e-9  # no margin: buys only take what the cash pays for
        working = {o.client_id for o in broker.open_orders()}
        tracked = {
            cid
            for cid, o in state.symbols["X"].orders.items()
            if o.intent not in ("stop", "take_profit")
        }
        assert tracked == working
        assert all(o.state is not OrderState.SUBMITTED for o in state.symbols["X"].orders.values())


def test_client_ids_when_two_timeframes_of_one_strategy_then_never_collide() -> None:
    config = StrategyConfig(strategy="t", costs=NO_COSTS)
    gov = RiskGovernor(config.risk)
    daily = Bar("X", "1d", T0, 100.0, 100.1, 99.9, 100.0, 1e6)
    hourly = Bar("X", "1h", T0, 100.0, 100.1, 99.9, 100.0, 1e6)

    _, (a,) = on_bar(new_state(config), daily, _up(daily), config, gov)
    _, (b,) = on_bar(new_state(config), hourly, _up(hourly), config, gov)

    assert a.client_id != b.client_id


# -- cash, instruments -----------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_backtest_when_all_in_sizing_and_opens_gap_up_then_cash_never_negative(path: str) -> None:
    n = 300
    rng = np.random.default_rng(3)
    ts = pd.date_range("2024-01-02", periods=n, freq="1D", tz="UTC")
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]] * (1.0 + np.abs(rng.normal(0.0, 0.01, n)))  # gaps up
    bars = pd.DataFrame(
        {
            "symbol": "SPX",
            "timeframe": "1d",
            "ts": ts,
            "open": open_,
            "high": np.maximum(open_, close) * 1.002,
            "low": np.minimum(open_, close) * 0.998,
            "close": close,
            "volume": 1e9,
        }
    )
    p_up = np.where(np.arange(n) % 7 < 4, 0.9, 0.05)
    preds = pd.DataFrame(
        {"symbol": "SPX", "ts": ts, "p_down": 0.05, "p_flat": 0.95 - p_up, "p_up": p_up}
    )
    config = StrategyConfig(
        sizing=SizingConfig(method="kelly", kelly_fraction=1.0, kelly_cap=1.0, max_leverage=1.0),
        risk=LOOSE,
        decision=__import__("execution.config", fromlist=["DecisionConfig"]).DecisionConfig(
            allow_short=False
        ),
        costs=CostModel(commission_bps=5.0),
    )

    result = run_backtest(bars, preds, config, path=path)

    f = result.fills
    flow = -(np.where(f["side"] == "buy", 1.0, -1.0) * f["quantity"] * f["price"] + f["commission"])
    cash = config.initial_cash + np.cumsum(flow.to_numpy())
    assert len(f) > 20
    assert cash.min() >= -1e-6
    assert result.final_state.cash >= -1e-6


def test_engine_when_entry_above_instrument_max_then_refused_not_capped() -> None:
    from execution.config import InstrumentConfig

    config = StrategyConfig(
        strategy="t",
        costs=NO_COSTS,
        sizing=SizingConfig(method="fixed_quantity", fixed_quantity=500.0),
        instruments={"X": InstrumentConfig(max_quantity=100.0)},
    )
    state, orders = on_bar(
        new_state(config), _bar(0), _up(_bar(0)), config, RiskGovernor(config.risk)
    )

    assert orders == []
    assert state.symbols["X"].direction == 0


def test_engine_when_fx_entry_sized_then_rounded_down_to_the_lot_step() -> None:
    config = StrategyConfig(strategy="t", costs=NO_COSTS)
    bar = Bar("EURUSD", "1h", T0, 1.1, 1.1011, 1.0989, 1.1, 5000.0)
    state, (order,) = on_bar(new_state(config), bar, _up(bar), config, RiskGovernor(config.risk))

    assert order.quantity % 1000.0 == 0.0
    assert 0 < order.quantity <= 0.5 * 100_000 / 1.1  # max_position_frac of equity
    assert math.isclose(order.quantity, 45_000.0)
