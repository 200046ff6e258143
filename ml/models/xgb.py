"""Gradient-boosted trees (xgboost) behind the Model interface."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import xgboost as xgb

from ml.errors import ConfigError, NotFittedError
from ml.models.base import BaseModel, register_model

__all__ = ["XGBoostModel"]


@register_model
class XGBoostModel(BaseModel):
    """multi:softprob over the 3 classes; NaN features are handled natively by xgboost.

    Uses the native booster API with num_class=3, so a training fold that happens to miss a
    class still yields 3 probability columns. Deterministic for a given seed and n_jobs.
    """

    name = "xgboost"

    def __init__(
        self,
        *,
        n_estimators: int = 150,
        max_depth: int = 3,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        min_child_weight: float = 1.0,
        reg_lambda: float = 1.0,
        n_jobs: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if n_estimators < 1 or max_depth < 1 or n_jobs < 1:
            msg = "n_estimators, max_depth and n_jobs must be >= 1"
            raise ConfigError(msg)
        if not (0 < subsample <= 1 and 0 < colsample_bytree <= 1 and learning_rate > 0):
            msg = "subsample and colsample_bytree must be in (0, 1]; learning_rate > 0"
            raise ConfigError(msg)
        self._params = {
            "n_estimators": int(n_estimators),
            "max_depth": int(max_depth),
            "learning_rate": float(learning_rate),
            "subsample": float(subsample),
            "colsample_bytree": float(colsample_bytree),
            "min_child_weight": float(min_child_weight),
            "reg_lambda": float(reg_lambda),
            "n_jobs": int(n_jobs),
            "seed": int(seed),
        }
        self.booster_: xgb.Booster | None = None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def _booster_params(self) -> dict[str, Any]:
        p = self._params
        return {
            "objective": "multi:softprob",
            "num_class": 3,
            "eval_metric": "mlogloss",
            "tree_method": "hist",
            "max_depth": p["max_depth"],
            "eta": p["learning_rate"],
            "subsample": p["subsample"],
            "colsample_bytree": p["colsample_bytree"],
            "min_child_weight": p["min_child_weight"],
            "lambda": p["reg_lambda"],
            "nthread": p["n_jobs"],
            "seed": p["seed"],
            "verbosity": 0,
        }

    def fit(
        self, X: pd.DataFrame, y: pd.Series, sample_weight: pd.Series | np.ndarray | None = None
    ) -> Self:
        features, target, weights = self._fit_inputs(X, y, sample_weight)
        dtrain = xgb.DMatrix(features, label=target, weight=weights, nthread=self._params["n_jobs"])
        self.booster_ = xgb.train(
            self._booster_params(), dtrain, num_boost_round=self._params["n_estimators"]
        )
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        features = self._predict_inputs(X)
        if self.booster_ is None:
            msg = "xgboost: predict_proba called before fit"
            raise NotFittedError(msg)
        # inplace_predict skips building a DMatrix (a third of a one-row prediction's cost) and
        # returns the same probabilities for dense float input.
        proba = self.booster_.inplace_predict(features)
        return np.asarray(proba, dtype=np.float64).reshape(len(X), 3)

    def save(self, path: Path) -> None:
        if self.booster_ is None:
            msg = "xgboost: save called before fit"
            raise NotFittedError(msg)
        directory = self._write_meta(path)
        # UBJSON is xgboost's exact binary format: the loaded booster predicts identically.
        self.booster_.save_model(str(directory / "model.ubj"))

    @classmethod
    def load(cls, path: Path) -> Self:
        meta = cls._read_meta(path)
        model = cls(**meta["params"])
        booster = xgb.Booster()
        booster.load_model(str(Path(path) / "model.ubj"))
        booster.set_param({"nthread": meta["params"]["n_jobs"]})
        model.booster_ = booster
        model.feature_names_ = tuple(meta["feature_names"])
        return model
