"""The pure ML core: features, labels, models, walk-forward splitting and metrics.

No framework imports (dagster, bytewax, mlflow, database clients): the batch assets and the live
dataflow both call these functions, so what was backtested is what trades.

Attributes are imported lazily (PEP 562): the live plane can import ml.features without paying
for optuna, arch or the model libraries.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "CLASSES": "ml.labels",
    "CLASS_TO_INDEX": "ml.labels",
    "ConfigError": "ml.errors",
    "FEATURE_COLUMNS": "ml.features",
    "FeatureConfig": "ml.features",
    "FeatureInputError": "ml.errors",
    "Fold": "ml.walkforward",
    "GarchParams": "ml.garch",
    "GarchVolForecaster": "ml.garch",
    "INDEX_TO_CLASS": "ml.labels",
    "LabelError": "ml.errors",
    "Labels": "ml.labels",
    "MLError": "ml.errors",
    "ModelError": "ml.errors",
    "NotFittedError": "ml.errors",
    "OptunaTuner": "ml.walkforward",
    "SplitError": "ml.errors",
    "TuningResult": "ml.walkforward",
    "WalkForwardResult": "ml.walkforward",
    "brier_multiclass": "ml.metrics",
    "classification_metrics": "ml.metrics",
    "compute_features": "ml.features",
    "direction_labels": "ml.labels",
    "encode_classes": "ml.labels",
    "feature_columns": "ml.features",
    "garch_volatility": "ml.garch",
    "required_history": "ml.features",
    "run_walk_forward": "ml.walkforward",
    "triple_barrier_labels": "ml.labels",
    "walk_forward_splits": "ml.walkforward",
}

__all__ = [
    "CLASSES",
    "CLASS_TO_INDEX",
    "FEATURE_COLUMNS",
    "INDEX_TO_CLASS",
    "ConfigError",
    "FeatureConfig",
    "FeatureInputError",
    "Fold",
    "GarchParams",
    "GarchVolForecaster",
    "LabelError",
    "Labels",
    "MLError",
    "ModelError",
    "NotFittedError",
    "OptunaTuner",
    "SplitError",
    "TuningResult",
    "WalkForwardResult",
    "brier_multiclass",
    "classification_metrics",
    "compute_features",
    "direction_labels",
    "encode_classes",
    "feature_columns",
    "garch_volatility",
    "required_history",
    "run_walk_forward",
    "triple_barrier_labels",
    "walk_forward_splits",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'ml' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
