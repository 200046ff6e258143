"""Direction classifiers behind one interface: fit, predict_proba [down, flat, up], save, load.

Attributes are imported lazily (PEP 562) so that using one model does not import the libraries
of the others (torch, xgboost).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "CLASSES_ARRAY": "ml.models.base",
    "PROBA_COLUMNS": "ml.models.base",
    "BaseModel": "ml.models.base",
    "Model": "ml.models.base",
    "load_model": "ml.models.base",
    "BuyAndHoldModel": "ml.models.baselines",
    "FlatModel": "ml.models.baselines",
    "SmaCrossoverModel": "ml.models.baselines",
    "sma_crossover_signal": "ml.models.baselines",
    "LSTMModel": "ml.models.lstm",
    "MetaAgent": "ml.models.meta",
    "XGBoostModel": "ml.models.xgb",
}

__all__ = [
    "CLASSES_ARRAY",
    "PROBA_COLUMNS",
    "BaseModel",
    "BuyAndHoldModel",
    "FlatModel",
    "LSTMModel",
    "MetaAgent",
    "Model",
    "SmaCrossoverModel",
    "XGBoostModel",
    "load_model",
    "sma_crossover_signal",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'ml.models' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
