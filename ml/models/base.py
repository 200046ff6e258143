"""The one small model interface, shared helpers and the registry used to load saved models."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd

from ml.errors import ModelError, NotFittedError
from ml.labels import CLASSES, encode_classes

__all__ = [
    "CLASSES_ARRAY",
    "PROBA_COLUMNS",
    "BaseModel",
    "Model",
    "load_model",
    "read_meta",
    "register_model",
]

CLASSES_ARRAY = np.asarray(CLASSES, dtype=np.int64)  # column order of predict_proba
PROBA_COLUMNS: tuple[str, str, str] = ("p_down", "p_flat", "p_up")
_META = "meta.json"
_REGISTRY: dict[str, type[BaseModel]] = {}
# Built-in model names -> defining module, imported on demand by load_model.
_BUILTIN_MODULES = {
    "xgboost": "ml.models.xgb",
    "lstm": "ml.models.lstm",
    "meta": "ml.models.meta",
    "buy_and_hold": "ml.models.baselines",
    "flat": "ml.models.baselines",
    "sma_crossover": "ml.models.baselines",
}


@runtime_checkable
class Model(Protocol):
    """A 3-class direction classifier. predict_proba columns are [down, flat, up]."""

    name: ClassVar[str]  # registry key written to meta.json

    @property
    def params(self) -> dict[str, Any]: ...

    @property
    def classes_(self) -> np.ndarray: ...

    def fit(
        self, X: pd.DataFrame, y: pd.Series, sample_weight: pd.Series | np.ndarray | None = None
    ) -> Self: ...

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray: ...

    def save(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path) -> Self: ...


def register_model(cls: type[BaseModel]) -> type[BaseModel]:
    """Class decorator: make `load_model` able to load models saved by `cls`."""
    _REGISTRY[cls.name] = cls
    return cls


def read_meta(path: Path) -> dict[str, Any]:
    meta_path = Path(path) / _META
    if not meta_path.is_file():
        msg = f"no saved model at {path} (missing {_META})"
        raise ModelError(msg)
    return json.loads(meta_path.read_text())


def load_model(path: Path) -> BaseModel:
    """Load any registered model from the directory a `save` wrote."""
    meta = read_meta(path)
    name = meta.get("model")
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _REGISTRY:
        msg = f"{path} holds unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}"
        raise ModelError(msg)
    return _REGISTRY[name].load(path)


class BaseModel:
    """Common plumbing: label encoding, feature-name checks and the meta.json file."""

    name: ClassVar[str] = "base"

    def __init__(self) -> None:
        self.feature_names_: tuple[str, ...] | None = None

    @property
    def params(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def classes_(self) -> np.ndarray:
        return CLASSES_ARRAY.copy()

    @property
    def is_fitted(self) -> bool:
        return self.feature_names_ is not None

    def fit(
        self, X: pd.DataFrame, y: pd.Series, sample_weight: pd.Series | np.ndarray | None = None
    ) -> Self:
        raise NotImplementedError

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def predict_proba_row(self, x: np.ndarray) -> np.ndarray:
        """[p_down, p_flat, p_up] of one feature row, float64 in training column order.

        Equal to `predict_proba` of that row as a one-row frame (which is what this does);
        a model with a faster per-row path overrides it.
        """
        if self.feature_names_ is None:
            msg = f"{self.name}: predict_proba_row called before fit"
            raise NotFittedError(msg)
        frame = pd.DataFrame(np.reshape(x, (1, -1)), columns=list(self.feature_names_))
        return np.asarray(self.predict_proba(frame), dtype=np.float64)[0]

    def save(self, path: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, path: Path) -> Self:
        raise NotImplementedError

    def _fit_inputs(
        self, X: pd.DataFrame, y: pd.Series, sample_weight: pd.Series | np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Feature matrix, 0/1/2 targets and weights; remembers the feature names."""
        if not isinstance(X, pd.DataFrame):
            msg = f"{self.name}: X must be a DataFrame, got {type(X).__name__}"
            raise ModelError(msg)
        if len(X) != len(y):
            msg = f"{self.name}: X has {len(X)} rows but y has {len(y)}"
            raise ModelError(msg)
        if len(X) == 0:
            msg = f"{self.name}: cannot fit on zero rows"
            raise ModelError(msg)
        target = encode_classes(np.asarray(y))
        weights = None
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=np.float64)
            if weights.shape != (len(X),) or not np.isfinite(weights).all() or (weights < 0).any():
                msg = f"{self.name}: sample_weight must be {len(X)} finite values >= 0"
                raise ModelError(msg)
        self.feature_names_ = tuple(map(str, X.columns))
        return X.to_numpy(dtype=np.float64), target, weights

    def _predict_inputs(self, X: pd.DataFrame) -> np.ndarray:
        """The feature matrix in the training column order; missing columns raise ModelError."""
        if self.feature_names_ is None:
            msg = f"{self.name}: predict_proba called before fit"
            raise NotFittedError(msg)
        if tuple(map(str, X.columns)) == self.feature_names_:  # the live plane's common case
            return X.to_numpy(dtype=np.float64)
        by_name = {str(c): c for c in X.columns}  # names are kept as text (they go to JSON)
        missing = [c for c in self.feature_names_ if c not in by_name]
        if missing:
            msg = f"{self.name}: X lacks training columns {missing[:5]}"
            raise ModelError(msg)
        columns = [by_name[c] for c in self.feature_names_]
        return X.loc[:, columns].to_numpy(dtype=np.float64)

    def _write_meta(self, path: Path, extra: dict[str, Any] | None = None) -> Path:
        if self.feature_names_ is None:
            msg = f"{self.name}: save called before fit"
            raise NotFittedError(msg)
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"model": self.name, "params": self.params, "feature_names": self.feature_names_}
        meta.update(extra or {})
        (directory / _META).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def _read_meta(cls, path: Path) -> dict[str, Any]:
        meta = read_meta(path)
        if meta.get("model") != cls.name:
            msg = f"{path} holds a {meta.get('model')!r} model, not {cls.name!r}"
            raise ModelError(msg)
        return meta
