from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from execution.backtest import BacktestError, run_backtest
from execution.config import CostModel, SizingConfig, StopConfig, StrategyConfig
from execution.costs import cost_fraction
from tests.execution._synth import random_predictions, sma_predictions, synthetic_bars

CONFIGS = {
    "atr_tp_volcap": StrategyConfig(
        stops=StopConfig(kind="atr", take_profit_mult=2.0),
        costs=CostModel(commission_min=1.0, slippage_vol_mult=0.2, max_volume_share=0.1),
    ),
    "trailing_kelly": StrategyConfig(
        stops=StopConfig(kind="trailing", stop_pct=0.01), sizing=SizingConfig(method="kelly")
    ),
    "voltarget_next_close": StrategyConfig(
        stops=StopConfig(kind="fixed", stop_pct=0.015),
        sizing=SizingConfig(method="vol_target", max_leverage=2.0),
        fill="next_close",
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_run_backtest_when_several_symbols_then_equity_reconciles_with_trades(name: str) -> None:
    bars = synthetic_bars(800, symbols=("AAA", "BBB", "CCC"), seed=5)
    preds = random_predictions(bars, seed=6)
    config = CONFIGS[name]

    result = run_backtest(bars, preds, config)

    assert len(result.trades) > 20
    assert (result.fills["quantity"] > 0).all()
    reconciled = config.initial_cash + result.trades["pnl"].sum() + result.unrealized_pnl
    assert result.equity.iloc[-1] == pytest.approx(reconciled, abs=1e-6)
    assert result.positions["unrealized_pnl"].sum() == pytest.approx(result.unrealized_pnl)
    fee_total = result.fills["commission"].sum()
    assert result.trades["commission"].sum() <= fee_total + 1e-9
    assert (result.trades["costs"] >= result.trades["commission"] - 1e-12).all()


def test_run_backtest_when_called_then_one_equity_point_per_ts_and_inputs_untouched() -> None:
    bars = synthetic_bars(300, symbols=("AAA", "BBB"), seed=1)
    preds = random_predictions(bars)
    bars_before, preds_before = bars.copy(), preds.copy()

    result = run_backtest(bars.sample(frac=1.0, random_state=0), preds, StrategyConfig())

    assert list(result.equity.index) == sorted(bars["ts"].unique())
    assert result.equity.index.tz is not None
    pd.testing.assert_frame_equal(bars, bars_before)
    pd.testing.assert_frame_equal(preds, preds_before)
    assert result.metrics().n_bars == 300


def test_run_backtest_when_entry_decided_then_fills_at_next_open_with_costs() -> None:
    bars = synthetic_bars(200, seed=2)
    preds = sma_predictions(bars)
    config = StrategyConfig(costs=CostModel(max_volume_share=None))

    result = run_backtest(bars, preds, config)

    first = result.orders.iloc[0]
    fill = result.fills.iloc[0]
    decided = bars.index[bars["ts"] == first["ts"] - pd.Timedelta("1h")][0]
    next_open = bars["open"].iloc[decided + 1]
    assert fill["ts"] == bars["ts"].iloc[decided + 1]
    assert fill["price"] == pytest.approx(next_open * (1 + cost_fraction(config.costs, None)))


@pytest.mark.parametrize("cut", [150, 333, 520])
def test_run_backtest_when_bars_after_t_perturbed_then_history_up_to_t_unchanged(cut: int) -> None:
    bars = synthetic_bars(600, symbols=("AAA", "BBB"), seed=9)
    preds = random_predictions(bars, seed=10)
    config = CONFIGS["atr_tp_volcap"]
    t = bars["ts"].iloc[cut]
    later = bars["ts"] > t
    rng = np.random.default_rng(cut)
    shaken = bars.copy()
    factor = rng.uniform(0.8, 1.25, later.sum())
    for col in ("open", "high", "low", "close"):
        shaken.loc[later, col] = shaken.loc[later, col] * factor
    shaken.loc[later, "volume"] = rng.uniform(1.0, 10.0, later.sum())
    shaken_preds = preds.copy()
    shaken_preds.loc[later, ["p_down", "p_flat", "p_up"]] = rng.dirichlet([1, 1, 1], later.sum())

    base = run_backtest(bars, preds, config)
    other = run_backtest(shaken, shaken_preds, config)

    decided_by_t = t + pd.Timedelta("1h")  # an order's ts is the close of its decision bar
    for a, b in ((base.orders, other.orders),):
        pd.testing.assert_frame_equal(
            a[a["ts"] <= decided_by_t].reset_index(drop=True),
            b[b["ts"] <= decided_by_t].reset_index(drop=True),
        )
    pd.testing.assert_frame_equal(
        base.fills[base.fills["ts"] <= t].reset_index(drop=True),
        other.fills[other.fills["ts"] <= t].reset_index(drop=True),
    )
    pd.testing.assert_series_equal(base.equity[:t], other.equity[:t])
    assert not base.equity.equals(other.equity)


def test_run_backtest_when_duplicate_bars_then_error() -> None:
    bars = synthetic_bars(10)
    with pytest.raises(BacktestError, match="duplicate"):
        run_backtest(pd.concat([bars, bars]), random_predictions(bars), StrategyConfig())
