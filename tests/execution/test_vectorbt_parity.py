"""run_backtest agrees with vectorbt's Portfolio.from_signals in a matched configuration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from execution.backtest import run_backtest
from execution.config import (
    CostModel,
    DecisionConfig,
    RiskLimits,
    SizingConfig,
    StopConfig,
    StrategyConfig,
)
from tests.execution._synth import sma_predictions, synthetic_bars

vbt = pytest.importorskip("vectorbt")

LOOSE = RiskLimits(
    max_position_frac=100.0,
    max_gross_exposure=100.0,
    max_risk_per_trade=1.0,
    daily_loss_halt=1.0,
    max_drawdown_halt=1.0,
    drawdown_derisk_start=1.0,
    max_trades_per_day=1_000_000,
)


def _matched_config(fee_bps: float) -> StrategyConfig:
    return StrategyConfig(
        initial_cash=100_000.0,
        costs=CostModel(
            commission_bps=fee_bps,
            commission_min=0.0,
            spread_bps=0.0,
            slippage_bps=0.0,
            slippage_vol_mult=0.0,
            max_volume_share=None,
        ),
        sizing=SizingConfig(method="fixed_quantity", fixed_quantity=50.0),
        stops=StopConfig(kind="none"),
        risk=LOOSE,
        decision=DecisionConfig(min_confidence=0.4, allow_short=False),
        fill="next_open",
    )


def _vectorbt_equity(bars: pd.DataFrame, preds: pd.DataFrame, fee_bps: float) -> pd.Series:
    long_wanted = (preds["p_up"] > 0.5).to_numpy()
    # Decided at bar t's close, executed at bar t + 1's open.
    target = np.r_[False, long_wanted[:-1]]
    prev = np.r_[False, target[:-1]]
    entries = pd.Series(target & ~prev, index=bars["ts"])
    exits = pd.Series(~target & prev, index=bars["ts"])
    pf = vbt.Portfolio.from_signals(
        close=pd.Series(bars["close"].to_numpy(), index=bars["ts"]),
        entries=entries,
        exits=exits,
        price=pd.Series(bars["open"].to_numpy(), index=bars["ts"]),
        size=50.0,
        size_type="amount",
        fees=fee_bps * 1e-4,
        init_cash=100_000.0,
        direction="longonly",
        freq="1h",
    )
    return pf.value()


@pytest.mark.parametrize("fee_bps", [0.0, 10.0])
def test_equity_when_matched_config_then_equals_vectorbt(fee_bps: float) -> None:
    bars = synthetic_bars(2_000, seed=3)
    preds = sma_predictions(bars)

    result = run_backtest(bars, preds, _matched_config(fee_bps))
    expected = _vectorbt_equity(bars, preds, fee_bps)

    assert len(result.trades) > 10
    np.testing.assert_allclose(result.equity.to_numpy(), expected.to_numpy(), rtol=1e-6)
