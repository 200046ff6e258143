"""Baselines every model must beat: always up (buy and hold), always flat, SMA crossover.

They implement the Model interface so they run through the same walk-forward and backtest code.
Their probabilities put `confidence` on the chosen class and split the rest evenly, so log loss
and Brier stay finite and comparable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from ml.errors import ConfigError, ModelError
from ml.models.base import BaseModel, register_model

__all__ = [
    "BuyAndHoldModel",
    "FlatModel",
    "SmaCrossoverModel",
    "sma_crossover_signal",
]


def _one_hot(choice: np.ndarray, confidence: float) -> np.ndarray:
    """Rows of probabilities putting `confidence` on class index choice (0/1/2)."""
    rest = (1.0 - confidence) / 2.0
    proba = np.full((len(choice), 3), rest)
    proba[np.arange(len(choice)), choice] = confidence
    return proba


def _check_confidence(confidence: float) -> float:
    if not 1.0 / 3.0 <= confidence <= 1.0:
        msg = f"confidence must be in [1/3, 1], got {confidence}"
        raise ConfigError(msg)
    return float(confidence)


class _ConstantModel(BaseModel):
    choice: int = 1  # class index predicted on every row

    def __init__(self, *, confidence: float = 0.6) -> None:
        super().__init__()
        self.confidence = _check_confidence(confidence)

    @property
    def params(self) -> dict[str, Any]:
        return {"confidence": self.confidence}

    def fit(
        self, X: pd.DataFrame, y: pd.Series, sample_weight: pd.Series | np.ndarray | None = None
    ) -> Self:
        self._fit_inputs(X, y, sample_weight)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self._predict_inputs(X)
        return _one_hot(np.full(len(X), self.choice, dtype=np.int64), self.confidence)

    def save(self, path: Path) -> None:
        self._write_meta(path)

    @classmethod
    def load(cls, path: Path) -> Self:
        meta = cls._read_meta(path)
        model = cls(**meta["params"])
        model.feature_names_ = tuple(meta["feature_names"])
        return model


@register_model
class BuyAndHoldModel(_ConstantModel):
    """Always up."""

    name = "buy_and_hold"
    choice = 2


@register_model
class FlatModel(_ConstantModel):
    """Always flat: never trades."""

    name = "flat"
    choice = 1


def sma_crossover_signal(close: pd.Series, fast: int = 10, slow: int = 50) -> pd.Series:
    """+1 where SMA(fast) > SMA(slow), -1 where below, 0 while either is warming up or equal."""
    if not 1 <= fast < slow:
        msg = f"need 1 <= fast < slow, got fast={fast}, slow={slow}"
        raise ConfigError(msg)
    sma_fast = close.rolling(fast, min_periods=fast).mean()
    sma_slow = close.rolling(slow, min_periods=slow).mean()
    signal = np.sign(sma_fast - sma_slow).fillna(0.0)
    return signal.rename("sma_crossover")


@register_model
class SmaCrossoverModel(BaseModel):
    """Up when SMA(fast) > SMA(slow), down when below, flat when undefined.

    Reads the feature columns sma_{fast}_ratio and sma_{slow}_ratio (close / SMA - 1) of
    ml.features: SMA(fast) > SMA(slow) exactly when sma_{fast}_ratio < sma_{slow}_ratio.
    """

    name = "sma_crossover"

    def __init__(self, *, fast: int = 10, slow: int = 50, confidence: float = 0.6) -> None:
        super().__init__()
        if not 1 <= fast < slow:
            msg = f"need 1 <= fast < slow, got fast={fast}, slow={slow}"
            raise ConfigError(msg)
        self.fast = int(fast)
        self.slow = int(slow)
        self.confidence = _check_confidence(confidence)

    @property
    def params(self) -> dict[str, Any]:
        return {"fast": self.fast, "slow": self.slow, "confidence": self.confidence}

    @property
    def _columns(self) -> tuple[str, str]:
        return f"sma_{self.fast}_ratio", f"sma_{self.slow}_ratio"

    def fit(
        self, X: pd.DataFrame, y: pd.Series, sample_weight: pd.Series | np.ndarray | None = None
    ) -> Self:
        missing = [c for c in self._columns if c not in X.columns]
        if missing:
            msg = f"sma_crossover needs feature columns {missing}"
            raise ModelError(msg)
        self._fit_inputs(X, y, sample_weight)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self._predict_inputs(X)
        fast_col, slow_col = self._columns
        fast = X[fast_col].to_numpy(dtype=np.float64)
        slow = X[slow_col].to_numpy(dtype=np.float64)
        choice = np.where(fast < slow, 2, np.where(fast > slow, 0, 1))
        choice[np.isnan(fast) | np.isnan(slow)] = 1
        return _one_hot(choice.astype(np.int64), self.confidence)

    def save(self, path: Path) -> None:
        self._write_meta(path)

    @classmethod
    def load(cls, path: Path) -> Self:
        meta = cls._read_meta(path)
        model = cls(**meta["params"])
        model.feature_names_ = tuple(meta["feature_names"])
        return model
