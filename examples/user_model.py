"""A user model: multinomial logistic regression on a few features, plugged in by import path.

Reference it from candleflow.toml; no candleflow code changes:

```toml
[research]
models = ["xgboost", "examples.user_model:LogisticModel"]
```

A model implements the `ml.models.Model` protocol: `name`, `params`, `classes_`,
`fit(X, y)`, `predict_proba(X) -> [p_down, p_flat, p_up]`, `save(dir)`, `load(dir)`.
Subclassing `ml.models.BaseModel` (as here) gives label encoding and column checks for free.
Instead of a class, the reference may name a factory `(research_config, params) -> Model`.
The walk-forward, the deployable-model rule, the MLflow registry and the live worker treat it
like a built-in family: it can become the deployed champion.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from ml.errors import NotFittedError
from ml.models import BaseModel

__all__ = ["LogisticModel"]

_STATE = "logistic.json"


class LogisticModel(BaseModel):
    name = "examples.user_model:LogisticModel"

    def __init__(self, *, c: float = 0.5) -> None:
        super().__init__()
        self.c = float(c)
        self._model: LogisticRegression | None = None
        self._mean = np.zeros(0)  # standardisation learnt on the training rows only
        self._std = np.ones(0)

    @property
    def params(self) -> dict[str, Any]:
        return {"c": self.c}

    def fit(
        self, X: pd.DataFrame, y: pd.Series, sample_weight: pd.Series | np.ndarray | None = None
    ) -> Self:
        matrix, target, weights = self._fit_inputs(X, y, sample_weight)  # target: 0/1/2
        self._mean = np.nanmean(matrix, axis=0)
        self._std = np.nanstd(matrix, axis=0)
        self._std[~(self._std > 0)] = 1.0
        self._model = LogisticRegression(C=self.c, max_iter=1000)
        self._model.fit(self._scaled(matrix), target, sample_weight=weights)
        return self

    def _scaled(self, matrix: np.ndarray) -> np.ndarray:
        return np.nan_to_num((matrix - np.nan_to_num(self._mean)) / self._std)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        matrix = self._scaled(self._predict_inputs(X))
        model = self._fitted()
        out = np.zeros((len(matrix), 3))
        # A class absent from the training fold keeps probability 0.
        out[:, model.classes_] = model.predict_proba(matrix)
        return out

    def save(self, path: Path) -> None:
        directory = self._write_meta(path)
        model = self._fitted()
        state = {
            "classes": model.classes_.tolist(),
            "coef": model.coef_.tolist(),
            "intercept": model.intercept_.tolist(),
            "mean": np.nan_to_num(self._mean).tolist(),
            "std": self._std.tolist(),
        }
        (directory / _STATE).write_text(json.dumps(state))

    @classmethod
    def load(cls, path: Path) -> Self:
        meta = cls._read_meta(path)
        out = cls(**meta["params"])
        state = json.loads((Path(path) / _STATE).read_text())
        model = LogisticRegression(C=out.c)
        model.classes_ = np.asarray(state["classes"])
        model.coef_ = np.asarray(state["coef"], dtype=np.float64)
        model.intercept_ = np.asarray(state["intercept"], dtype=np.float64)
        out._model = model
        out._mean = np.asarray(state["mean"], dtype=np.float64)
        out._std = np.asarray(state["std"], dtype=np.float64)
        out.feature_names_ = tuple(meta["feature_names"])
        return out

    def _fitted(self) -> LogisticRegression:
        if self._model is None:
            msg = f"{self.name}: fit or load first"
            raise NotFittedError(msg)
        return self._model
