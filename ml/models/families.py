"""The built-in model families as factories `(research config, params) -> Model`.

A family is referenced by name (these) or by import path `module:attribute` (a user's); both
resolve through `ml.models.family_factory`, so built-ins and user models share one mechanism.
The config argument is duck-typed (any object with the `ResearchConfig` fields used here).
"""

from __future__ import annotations

from typing import Any

from ml.models.base import Model

__all__ = ["buy_and_hold", "flat", "lstm", "meta", "sma_crossover", "xgboost"]


def xgboost(config: Any, params: dict[str, Any]) -> Model:
    from ml.models.xgb import XGBoostModel

    return XGBoostModel(n_estimators=config.xgb_estimators, seed=config.seed, **params)


def lstm(config: Any, params: dict[str, Any]) -> Model:
    from ml.models.lstm import LSTMModel

    return LSTMModel(
        epochs=config.lstm_epochs, seq_len=config.lstm_seq_len, seed=config.seed, **params
    )


def meta(config: Any, params: dict[str, Any]) -> Model:
    from ml.models.meta import MetaAgent

    return MetaAgent([xgboost(config, {}), lstm(config, {})], **params)


def buy_and_hold(config: Any, params: dict[str, Any]) -> Model:
    from ml.models.baselines import BuyAndHoldModel

    return BuyAndHoldModel(**params)


def flat(config: Any, params: dict[str, Any]) -> Model:
    from ml.models.baselines import FlatModel

    return FlatModel(**params)


def sma_crossover(config: Any, params: dict[str, Any]) -> Model:
    from ml.models.baselines import SmaCrossoverModel

    return SmaCrossoverModel(**params)
