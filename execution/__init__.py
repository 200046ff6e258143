"""Execution core: decision, sizing, stops, risk, costs, orders and their lifecycle events,
instruments, the paper broker and the backtest.

Pure: no framework imports. Submodules load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BacktestResult",
    "Bar",
    "Cancel",
    "CostModel",
    "DecisionConfig",
    "EngineState",
    "Fill",
    "Instrument",
    "Order",
    "OrderAccepted",
    "OrderCancelled",
    "OrderEvent",
    "OrderExpired",
    "OrderIntent",
    "OrderRejected",
    "OrderState",
    "OrderSubmitted",
    "PaperBroker",
    "PortfolioView",
    "Position",
    "Prediction",
    "RiskDecision",
    "RiskGovernor",
    "RiskLimits",
    "Side",
    "SizingConfig",
    "StopConfig",
    "StrategyConfig",
    "TradeRecord",
    "bars_from_frame",
    "decide",
    "equity",
    "instrument_for",
    "make_client_id",
    "new_state",
    "on_bar",
    "on_event",
    "run_backtest",
    "strategy_instance",
]

_WHERE = {
    "BacktestResult": "execution.backtest",
    "run_backtest": "execution.backtest",
    "Bar": "execution.signal",
    "Prediction": "execution.signal",
    "bars_from_frame": "execution.signal",
    "CostModel": "execution.config",
    "DecisionConfig": "execution.config",
    "RiskLimits": "execution.config",
    "SizingConfig": "execution.config",
    "StopConfig": "execution.config",
    "StrategyConfig": "execution.config",
    "EngineState": "execution.engine",
    "equity": "execution.engine",
    "new_state": "execution.engine",
    "on_bar": "execution.engine",
    "on_event": "execution.engine",
    "Cancel": "execution.orders",
    "OrderAccepted": "execution.orders",
    "OrderCancelled": "execution.orders",
    "OrderEvent": "execution.orders",
    "OrderExpired": "execution.orders",
    "OrderRejected": "execution.orders",
    "OrderState": "execution.orders",
    "OrderSubmitted": "execution.orders",
    "Instrument": "execution.instruments",
    "instrument_for": "execution.instruments",
    "Fill": "execution.domain",
    "Order": "execution.domain",
    "Position": "execution.domain",
    "Side": "execution.domain",
    "make_client_id": "execution.domain",
    "strategy_instance": "execution.domain",
    "OrderIntent": "execution.risk",
    "PortfolioView": "execution.risk",
    "RiskDecision": "execution.risk",
    "RiskGovernor": "execution.risk",
    "PaperBroker": "execution.paper",
    "TradeRecord": "execution.ledger",
    "decide": "execution.decision",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        msg = f"module 'execution' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
