"""Buy and hold, fully invested: the passive benchmark, on real S&P 500 bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from execution.benchmark import buy_and_hold
from execution.config import CostModel, StrategyConfig
from execution.costs import cost_fraction


def _spx(rows: slice) -> pd.DataFrame:
    from tests.ml.conftest import sp500_bars

    return sp500_bars().iloc[rows].reset_index(drop=True)


@pytest.mark.parametrize("fill", ["next_open", "next_close"])
def test_buy_and_hold_when_cost_free_then_growth_is_fill_to_last_close(fill):
    # Arrange
    bars = _spx(slice(2000, 2600))
    config = StrategyConfig(
        costs=CostModel(commission_bps=0.0, spread_bps=0.0, slippage_bps=0.0), fill=fill
    )
    entry = bars["open" if fill == "next_open" else "close"].iloc[1]
    # Act
    res = buy_and_hold(bars, config)
    # Assert: fully invested from the fill bar, out at the last close
    growth = res.equity.iloc[-1] / res.equity.iloc[0]
    assert growth == pytest.approx(bars["close"].iloc[-1] / entry, rel=1e-12)
    np.testing.assert_allclose(res.exposure.iloc[1:-1], 1.0, rtol=1e-12)
    assert len(res.trades) == 1


def test_buy_and_hold_when_costs_then_paid_once_in_once_out_and_pnl_reconciles():
    # Arrange
    bars = _spx(slice(3000, 3500))
    costs = CostModel(commission_bps=2.0, spread_bps=3.0, slippage_bps=1.5)
    config = StrategyConfig(costs=costs)
    free = StrategyConfig(costs=CostModel(commission_bps=0.0, spread_bps=0.0, slippage_bps=0.0))
    # Act
    res = buy_and_hold(bars, config)
    ref = buy_and_hold(bars, free)
    # Assert: the cost drag is exactly one entry and one exit
    frac, comm = cost_fraction(costs, None), costs.commission_bps * 1e-4
    expected = (1 - frac) * (1 - comm) / ((1 + frac) * (1 + comm))
    ratio = res.equity.iloc[-1] / ref.equity.iloc[-1]
    assert ratio == pytest.approx(expected, rel=1e-12)
    pnl = res.trades["pnl"].sum()
    assert res.equity.iloc[-1] == pytest.approx(config.initial_cash + pnl, rel=1e-12)
    # Spends all the cash it has, costs included, and not a cent more (float rounding aside)
    cash = res.equity.iloc[1:-1] * (1.0 - res.exposure.iloc[1:-1])
    np.testing.assert_allclose(cash, 0.0, atol=1e-9 * config.initial_cash)


def test_buy_and_hold_when_two_symbols_then_cash_split_equally():
    # Arrange
    a = _spx(slice(0, 300)).assign(symbol="A")
    b = _spx(slice(1000, 1300)).assign(symbol="B", ts=a["ts"])
    free = StrategyConfig(costs=CostModel(commission_bps=0.0, spread_bps=0.0, slippage_bps=0.0))
    # Act
    res = buy_and_hold(pd.concat([a, b], ignore_index=True), free)
    # Assert
    half = free.initial_cash / 2
    expected = sum(
        half * bars["close"].iloc[-1] / bars["open"].iloc[1] for bars in (a, b)
    )
    assert res.equity.iloc[-1] == pytest.approx(expected, rel=1e-12)
    assert sorted(res.trades["symbol"]) == ["A", "B"]
