"""Direction classifiers behind one interface: fit, predict_proba [down, flat, up], save, load.

Attributes are imported lazily (PEP 562) so that using one model does not import the libraries
of the others (torch, xgboost).

Model families are found by reference: a built-in name (`FAMILIES`, each an import path of a
factory in `ml.models.families`) or a user's import path `module:attribute`, where the
attribute is a `Model` class (built as `cls(**params)`) or a factory `(config, params) -> Model`.
`family_factory(ref)` resolves either; `resolve_ref("module:attribute")` imports one object.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from ml.errors import ConfigError

# Built-in family name -> import path of its factory (config, params) -> Model.
FAMILIES: Mapping[str, str] = {
    "xgboost": "ml.models.families:xgboost",
    "xgboost_garch": "ml.models.families:xgboost",  # + the per-fold GARCH feature
    "lstm": "ml.models.families:lstm",
    "meta": "ml.models.families:meta",
    "buy_and_hold": "ml.models.families:buy_and_hold",
    "flat": "ml.models.families:flat",
    "sma_crossover": "ml.models.families:sma_crossover",
}


def resolve_ref(ref: str) -> Any:
    """Import `module:attribute` (dots allowed in both); ConfigError names what is missing."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        msg = f"{ref!r} is not an import path; write module:attribute, e.g. mypkg.models:MyModel"
        raise ConfigError(msg)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"cannot import {module_name!r} (from {ref!r}): {exc}"
        raise ConfigError(msg) from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            msg = f"{module_name!r} has no attribute {attr!r} (from {ref!r})"
            raise ConfigError(msg)
        obj = getattr(obj, part)
    return obj


def family_factory(ref: str) -> Callable[[Any, dict[str, Any]], Any]:
    """The factory `(research config, params) -> Model` of a built-in name or an import path."""
    path = FAMILIES.get(ref, ref)
    if ":" not in path:
        msg = f"unknown model family {ref!r}; use one of {', '.join(FAMILIES)} or module:Class"
        raise ConfigError(msg)
    obj = resolve_ref(path)
    if inspect.isclass(obj):
        missing = [m for m in ("fit", "predict_proba", "save", "load") if not hasattr(obj, m)]
        if missing:
            msg = f"{ref} is not a Model: it lacks {', '.join(missing)}"
            raise ConfigError(msg)
        return lambda _config, params: obj(**params)
    if not callable(obj):
        msg = f"{ref} is neither a Model class nor a factory (config, params) -> Model"
        raise ConfigError(msg)
    return obj  # type: ignore[no-any-return]


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
    "FAMILIES",
    "PROBA_COLUMNS",
    "BaseModel",
    "BuyAndHoldModel",
    "FlatModel",
    "LSTMModel",
    "MetaAgent",
    "Model",
    "SmaCrossoverModel",
    "XGBoostModel",
    "family_factory",
    "load_model",
    "resolve_ref",
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
