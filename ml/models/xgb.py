"""Gradient-boosted trees (xgboost) behind the Model interface.

Scoring one row through xgboost's Python API costs 50-250 us (argument checks, a JSON config,
ctypes); the live plane scores one bar at a time, so `predict_proba_row` walks the booster's
trees itself, compiled once into flat arrays, with xgboost's arithmetic: features compared as
float32, margins summed in float32 in tree order from the booster's intercept, which gives
xgboost's margins bit for bit. Both paths then take the softmax of those margins in one numba
function (in float64), so `predict_proba` and `predict_proba_row` agree bit for bit; xgboost's
own float32 softmax would differ from either in the last float32 digit (1e-7).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import xgboost as xgb
from numba import njit

from ml.errors import ConfigError, ModelError, NotFittedError
from ml.models.base import BaseModel, register_model

__all__ = ["XGBoostModel"]


@register_model
class XGBoostModel(BaseModel):
    """multi:softprob over the 3 classes; NaN features are handled natively by xgboost.

    Uses the native booster API with num_class=3, so a training fold that happens to miss a
    class still yields 3 probability columns. Deterministic for a given seed and n_jobs.

    One thread by default: two OpenMP threads collapse on a busy host (a 10k-bar walk-forward
    took 186 s with two and 17 s with one at load 8 on two cores); research runs spread over
    processes through Dagster's executors instead.
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
        n_jobs: int = 1,
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
        self._trees: _Trees | None = None

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
        self._trees = None
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        features = self._predict_inputs(X)
        if self.booster_ is None:
            msg = "xgboost: predict_proba called before fit"
            raise NotFittedError(msg)
        # inplace_predict skips building a DMatrix (a third of a one-row prediction's cost).
        margin = self.booster_.inplace_predict(features, predict_type="margin")
        margin = np.ascontiguousarray(np.asarray(margin, dtype=np.float32).reshape(len(X), 3))
        proba = np.empty(margin.shape, dtype=np.float64)
        _softmax_rows(margin, proba)
        return proba

    def predict_proba_row(self, x: np.ndarray) -> np.ndarray:
        """[p_down, p_flat, p_up] of one feature row (float64, in training column order)."""
        if self.booster_ is None:
            msg = "xgboost: predict_proba_row called before fit"
            raise NotFittedError(msg)
        if self._trees is None:
            self._trees = _Trees.from_booster(self.booster_)
        return self._trees.score(x)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_trees"] = None  # rebuilt from the booster on first use
        return state

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


class _Trees:
    """A booster's trees as flat arrays: children, split feature, float32 threshold, default."""

    def __init__(self, model: dict[str, Any]) -> None:
        learner = model["learner"]
        base = learner["learner_model_param"]["base_score"].strip("[]").split(",")
        n_class = max(int(learner["learner_model_param"].get("num_class", "1")), 1)
        intercept = np.asarray([float(v) for v in base], dtype=np.float32)
        self.base = np.broadcast_to(intercept, (n_class,)).copy()
        booster = learner["gradient_booster"]
        if booster["name"] != "gbtree":
            msg = f"xgboost: row scoring supports gbtree boosters, not {booster['name']}"
            raise ModelError(msg)
        trees = booster["model"]["trees"]
        offsets = np.cumsum([0] + [len(t["left_children"]) for t in trees])

        def flat(key: str, dtype: Any) -> np.ndarray:
            parts = [np.asarray(t[key], dtype=dtype) for t in trees]
            return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

        left = flat("left_children", np.int64)
        right = flat("right_children", np.int64)
        for i, tree in enumerate(trees):
            if any(tree["split_type"]):
                msg = "xgboost: row scoring does not support categorical splits"
                raise ModelError(msg)
            lo, hi = offsets[i], offsets[i + 1]
            internal = left[lo:hi] >= 0
            left[lo:hi][internal] += lo
            right[lo:hi][internal] += lo
        self.left = left
        self.right = right
        self.feature = flat("split_indices", np.int64)
        self.threshold = flat("split_conditions", np.float32)  # the leaf value at a leaf
        self.default_left = flat("default_left", np.bool_)
        self.roots = offsets[:-1].astype(np.int64)
        self.groups = np.asarray(booster["model"]["tree_info"], dtype=np.int64)
        self.n_features = int(learner["learner_model_param"]["num_feature"])

    @classmethod
    def from_booster(cls, booster: xgb.Booster) -> _Trees:
        return cls(json.loads(booster.save_raw("json")))

    def score(self, x: np.ndarray) -> np.ndarray:
        if x.shape != (self.n_features,):
            msg = f"xgboost: the row has {x.shape[0]} features, the model {self.n_features}"
            raise ModelError(msg)
        # Fresh buffers per call: worker threads share one model, and the kernel drops the GIL.
        margin = np.empty(len(self.base), dtype=np.float32)
        out = np.empty(len(self.base), dtype=np.float64)
        _score_trees(
            x.astype(np.float32),  # xgboost compares features as float32
            self.left, self.right, self.feature, self.threshold, self.default_left,
            self.roots, self.groups, self.base, margin, out,
        )  # fmt: skip
        return out


@njit(cache=True, inline="always", error_model="numpy")
def _softmax(margin, out):  # pragma: no cover - jitted
    """out = softmax(margin) in float64 (margin is xgboost's float32 margin)."""
    top = np.float64(margin[0])
    for c in range(1, margin.shape[0]):
        top = max(top, np.float64(margin[c]))
    total = 0.0
    for c in range(margin.shape[0]):
        e = math.exp(np.float64(margin[c]) - top)
        out[c] = e
        total += e
    for c in range(margin.shape[0]):
        out[c] /= total


@njit(cache=True, nogil=True, error_model="numpy")
def _softmax_rows(margin, out):  # pragma: no cover - jitted
    for i in range(margin.shape[0]):
        _softmax(margin[i], out[i])


@njit(cache=True, nogil=True, error_model="numpy")
def _score_trees(
    x, left, right, feature, threshold, default_left, roots, groups, base, margin, out
):  # pragma: no cover - jitted
    """Walk every tree for one float32 row; margins in float32 as xgboost sums them."""
    for c in range(margin.shape[0]):
        margin[c] = base[c]
    for t in range(roots.shape[0]):
        n = roots[t]
        while left[n] >= 0:
            v = x[feature[n]]
            if math.isnan(v):
                n = left[n] if default_left[n] else right[n]
            elif v < threshold[n]:
                n = left[n]
            else:
                n = right[n]
        margin[groups[t]] += threshold[n]
    _softmax(margin, out)
