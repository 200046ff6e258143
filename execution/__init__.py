"""Execution core: decision, sizing, stops, risk, costs, the paper broker and the backtest.

Pure: no framework imports. Submodules load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BacktestResult",
    "Bar",
    "CostModel",
    "DecisionConfig",
    "EngineState",
    "Fill",
    "Order",
    "OrderIntent",
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
    "make_client_id",
    "new_state",
    "on_bar",
    "on_fill",
    "run_backtest",
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
    "on_fill": "execution.engine",
    "Fill": "execution.domain",
    "Order": "execution.domain",
    "Position": "execution.domain",
    "Side": "execution.domain",
    "make_client_id": "execution.domain",
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
