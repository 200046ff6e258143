"""Backtest vs live dataflow: the same bars and model give the same orders, fills and equity."""

from __future__ import annotations

import pytest

from execution.config import StopConfig, StrategyConfig
from tests.streaming.conftest import assert_replay_equals_backtest, spx_bars, xgb_bundle

pytestmark = [pytest.mark.parity, pytest.mark.slow]


@pytest.mark.parametrize("stops", ["none", "atr"])
def test_replay_when_same_bars_and_model_then_live_equals_backtest(stops: str) -> None:
    bars = spx_bars(1500)
    bundle = xgb_bundle(bars.iloc[:700])
    config = StrategyConfig(stops=StopConfig(kind=stops, atr_mult=2.0))

    assert_replay_equals_backtest(bars, bundle, config)
