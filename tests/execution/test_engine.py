from __future__ import annotations

import copy
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from execution.broker import submit_order
from execution.config import CostModel, StopConfig, StrategyConfig
from execution.engine import EngineError, equity, new_state, on_bar, on_event
from execution.orders import Cancel, OrderAccepted
from execution.paper import PaperBroker
from execution.risk import RiskGovernor
from execution.signal import Prediction, bars_from_frame, predictions_from_frame
from tests.execution._synth import random_predictions, synthetic_bars

CONFIG = StrategyConfig(
    strategy="live",
    stops=StopConfig(kind="trailing", stop_pct=0.01, take_profit_mult=3.0),
    costs=CostModel(max_volume_share=0.2),
)


def _run(bars, preds, broker, state, governor, sink):
    for bar in bars:
        events = broker.on_bar(bar)
        broker.poll_events()
        for event in events:
            state, _ = on_event(state, event, CONFIG)
        sink["fills"].extend(events)
        state, commands = on_bar(state, bar, preds.get((bar.symbol, bar.ts)), CONFIG, governor)
        for command in commands:
            answer = (
                broker.cancel(command)
                if isinstance(command, Cancel)
                else submit_order(broker, command, command.ts)
            )
            for event in answer:
                state, _ = on_event(state, event, CONFIG)
        sink["orders"].extend(commands)
        sink["equity"].append(equity(state))
        for sym, ss in state.symbols.items():
            if ss.stop is not None:
                assert broker.resting_levels()[sym] == (ss.stop, ss.take_profit)
    return state


def _inputs():
    frame = synthetic_bars(150, symbols=("AAA", "BBB"), seed=4)
    bars = bars_from_frame(frame)
    preds = {(p.symbol, p.ts): p for p in predictions_from_frame(random_predictions(frame))}
    return bars, preds


def test_step_when_restarted_from_snapshot_and_state_file_then_identical_to_one_run(
    tmp_path: Path,
) -> None:
    bars, preds = _inputs()
    governor = RiskGovernor(CONFIG.risk)
    whole = {"fills": [], "orders": [], "equity": []}
    _run(bars, preds, PaperBroker(CONFIG), new_state(CONFIG), governor, whole)

    path = tmp_path / "broker.json"
    parts = {"fills": [], "orders": [], "equity": []}
    state = _run(bars[:171], preds, PaperBroker(CONFIG, path), new_state(CONFIG), governor, parts)
    snapshot = pickle.dumps(state)
    _run(bars[171:], preds, PaperBroker(CONFIG, path), pickle.loads(snapshot), governor, parts)

    assert len(whole["orders"]) > 10
    assert parts == whole


def test_on_bar_when_prediction_for_another_bar_then_refuses() -> None:
    bars, _ = _inputs()
    bar = bars[0]
    wrong = Prediction(bar.symbol, datetime(2030, 1, 1, tzinfo=UTC), 0.1, 0.1, 0.8)

    with pytest.raises(EngineError, match="does not belong"):
        on_bar(new_state(CONFIG), bar, wrong, CONFIG, RiskGovernor(CONFIG.risk))


def test_on_bar_when_same_direction_twice_then_one_entry_only() -> None:
    bars, _ = _inputs()
    state = new_state(CONFIG)
    gov = RiskGovernor(CONFIG.risk)
    a = [b for b in bars if b.symbol == "AAA"]

    state, first = on_bar(state, a[0], Prediction("AAA", a[0].ts, 0.1, 0.1, 0.8), CONFIG, gov)
    state, _ = on_event(state, OrderAccepted(first[0].client_id, "AAA", first[0].ts), CONFIG)
    state, second = on_bar(state, a[1], Prediction("AAA", a[1].ts, 0.1, 0.1, 0.8), CONFIG, gov)
    snapshot = copy.deepcopy(state)
    state, flip = on_bar(state, a[2], Prediction("AAA", a[2].ts, 0.8, 0.1, 0.1), CONFIG, gov)

    assert [o.intent for o in first] == ["entry"]
    assert first[0].stop_loss is not None
    assert first[0].take_profit is not None
    assert second == []
    # Nothing filled yet: the working entry is cancelled, nothing is sold, a short entry goes.
    assert isinstance(flip[0], Cancel)
    assert flip[0].client_id == first[0].client_id
    assert [(o.intent, o.side.value) for o in flip[1:]] == [("entry", "sell")]
    assert snapshot.seq < state.seq
