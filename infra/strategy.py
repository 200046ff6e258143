"""The trading rules of one series, built the same way for the backtest and the live worker."""

from __future__ import annotations

from execution.config import CostModel, SizingConfig, StopConfig, StrategyConfig
from execution.metrics import periods_per_year_for
from infra.series import SeriesSpec

__all__ = ["strategy_for"]


def strategy_for(
    spec: SeriesSpec,
    *,
    initial_cash: float = 100_000.0,
    commission_bps: float = 1.0,
    spread_bps: float = 1.0,
    slippage_bps: float = 1.0,
    risk_per_trade: float = 0.01,
    stop_kind: str = "atr",
    atr_mult: float = 2.0,
    name: str = "candleflow",
) -> StrategyConfig:
    """Defaults: 1 bp commission, 1 bp spread, 1 bp slippage, 1% risk per trade at a 2-ATR stop,
    annualised with the series' own bar frequency and instrument class."""
    return StrategyConfig(
        strategy=name,
        initial_cash=initial_cash,
        costs=CostModel(
            commission_bps=commission_bps, spread_bps=spread_bps, slippage_bps=slippage_bps
        ),
        sizing=SizingConfig(method="fixed_fractional", risk_per_trade=risk_per_trade),
        stops=StopConfig(kind=stop_kind, atr_mult=atr_mult),
        periods_per_year=periods_per_year_for(spec.timeframe, spec.instrument_class),
    )
