"""Models: fit / predict_proba / save / load round trips, LSTM causality, MetaAgent abstention."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import pytest

from ml.errors import ConfigError, ModelError, NotFittedError
from ml.features import compute_features
from ml.labels import direction_labels
from ml.models import (
    BaseModel,
    BuyAndHoldModel,
    FlatModel,
    LSTMModel,
    MetaAgent,
    Model,
    SmaCrossoverModel,
    XGBoostModel,
    load_model,
    sma_crossover_signal,
)

COLUMNS = ["sma_10_ratio", "sma_50_ratio", "rsi_14", "macd_hist", "log_ret_1", "ret_std_20"]


@pytest.fixture(scope="module")
def dataset(spx) -> tuple[pd.DataFrame, pd.Series]:
    bars = spx.iloc[:1400]
    feats = compute_features(bars)
    labels = direction_labels(bars, 1, k=0.3)
    keep = ~feats["warmup"] & labels.valid
    return feats.loc[keep, COLUMNS], labels.values[keep]


def tiny_lstm() -> LSTMModel:
    return LSTMModel(seq_len=5, hidden_size=4, epochs=3, batch_size=64, seed=3, device="cpu")


def _check_proba(proba: np.ndarray, n: int) -> None:
    assert proba.shape == (n, 3)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: XGBoostModel(n_estimators=20),
        tiny_lstm,
        lambda: MetaAgent([XGBoostModel(n_estimators=10), SmaCrossoverModel(), BuyAndHoldModel()]),
        FlatModel,
        SmaCrossoverModel,
    ],
    ids=["xgboost", "lstm", "meta", "flat", "sma"],
)
def test_model_when_saved_and_loaded_then_identical_probabilities(dataset, tmp_path, factory):
    # Arrange
    X, y = dataset
    model = factory().fit(X.iloc[:800], y.iloc[:800])
    X_test = X.iloc[800:]
    # Act
    before = model.predict_proba(X_test)
    model.save(tmp_path / "m")
    loaded = type(model).load(tmp_path / "m")
    generic = load_model(tmp_path / "m")
    # Assert
    assert isinstance(model, Model)
    _check_proba(before, len(X_test))
    np.testing.assert_array_equal(loaded.predict_proba(X_test), before)
    np.testing.assert_array_equal(generic.predict_proba(X_test), before)
    assert loaded.params == model.params
    assert model.classes_.tolist() == [-1, 0, 1]


@pytest.mark.parametrize("factory", [lambda: XGBoostModel(n_estimators=20), tiny_lstm])
def test_model_when_fitted_twice_with_same_seed_then_identical(dataset, factory):
    X, y = dataset
    a = factory().fit(X.iloc[:600], y.iloc[:600]).predict_proba(X.iloc[600:700])
    b = factory().fit(X.iloc[:600], y.iloc[:600]).predict_proba(X.iloc[600:700])
    np.testing.assert_array_equal(a, b)


def test_xgboost_when_training_fold_misses_a_class_then_still_three_columns(dataset):
    X, y = dataset
    keep = y != 0
    model = XGBoostModel(n_estimators=10).fit(X[keep].iloc[:300], y[keep].iloc[:300])
    proba = model.predict_proba(X.iloc[:50])
    _check_proba(proba, 50)


def test_lstm_when_later_rows_change_then_probabilities_up_to_i_unchanged(dataset):
    # Arrange
    X, y = dataset
    model = tiny_lstm().fit(X.iloc[:600], y.iloc[:600])
    X_test = X.iloc[600:700]
    changed = X_test.copy()
    changed.iloc[50:] = changed.iloc[50:] * 5.0 + 1.0
    # Act
    base = model.predict_proba(X_test)
    other = model.predict_proba(changed)
    # Assert: row i reads rows i-seq_len+1..i only; the first rows are zero-padded, not dropped.
    np.testing.assert_array_equal(other[:50], base[:50])
    assert not np.allclose(other[50:], base[50:])
    _check_proba(base, 100)


def test_lstm_when_one_row_predicted_then_no_warning(dataset):
    # A live bar scores one row: its window must be a writable copy (torch warns of read-only).
    X, y = dataset
    model = tiny_lstm().fit(X.iloc[:300], y.iloc[:300])

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proba = model.predict_proba(X.iloc[300:301])

    _check_proba(proba, 1)


def test_lstm_when_validation_tail_stops_improving_then_early_stops(dataset):
    X, y = dataset
    model = LSTMModel(seq_len=4, hidden_size=4, epochs=30, patience=1, seed=0, device="cpu")
    model.fit(X.iloc[:500], y.iloc[:500])
    assert model.best_epoch_ is not None
    assert 1 <= model.best_epoch_ < 30


def test_model_when_predict_before_fit_then_not_fitted(dataset):
    X, _ = dataset
    with pytest.raises(NotFittedError):
        XGBoostModel().predict_proba(X)


def test_model_when_column_missing_at_predict_then_model_error(dataset):
    X, y = dataset
    model = XGBoostModel(n_estimators=5).fit(X.iloc[:200], y.iloc[:200])
    with pytest.raises(ModelError, match="lacks training columns"):
        model.predict_proba(X.drop(columns=["rsi_14"]))


class FixedModel(BaseModel):
    """An agent answering fixed probabilities, to test the ensemble arithmetic."""

    name = "fixed_test"

    def __init__(self, proba: tuple[float, float, float]) -> None:
        super().__init__()
        self.proba = proba

    @property
    def params(self) -> dict[str, Any]:
        return {"proba": list(self.proba)}

    def fit(self, X, y, sample_weight=None) -> Self:
        self._fit_inputs(X, y, sample_weight)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.tile(np.asarray(self.proba), (len(X), 1))

    def save(self, path: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, path: Path) -> Self:
        raise NotImplementedError


def _meta(*probas, **kwargs) -> tuple[MetaAgent, pd.DataFrame]:
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0]})
    y = pd.Series([-1, 0, 1])
    meta = MetaAgent([FixedModel(p) for p in probas], **kwargs).fit(X, y)
    return meta, X


def test_meta_agent_when_agents_agree_confidently_then_no_abstain_and_up():
    meta, X = _meta((0.1, 0.1, 0.8), (0.05, 0.15, 0.8))
    decision = meta.decide(X)
    assert not decision["abstain"].any()
    assert (decision[["p_down", "p_flat", "p_up"]].to_numpy().argmax(axis=1) == 2).all()


def test_meta_agent_when_agents_disagree_then_abstains_flat():
    # Arrange: one says up, one says down, both confident: disagreement std = 0.7.
    meta, X = _meta((0.1, 0.1, 0.8), (0.8, 0.1, 0.1), disagreement_threshold=0.5)
    # Act
    decision = meta.decide(X)
    proba = meta.predict_proba(X)
    # Assert
    assert decision["disagreement"].iloc[0] == pytest.approx(0.7)
    assert decision["abstain"].all()
    np.testing.assert_allclose(proba, [[0.05, 0.9, 0.05]] * 3)


def test_meta_agent_when_low_confidence_then_abstains():
    meta, X = _meta((0.3, 0.3, 0.4), (0.3, 0.3, 0.4), confidence_threshold=0.45)
    decision = meta.decide(X)
    assert decision["confidence"].iloc[0] == pytest.approx(0.4)
    assert meta.abstain_mask(X).all()


def test_meta_agent_when_one_agent_uninformative_then_confident_agent_dominates():
    # Arrange: a uniform agent has confidence 0 and so no vote.
    meta, X = _meta((1 / 3, 1 / 3, 1 / 3), (0.1, 0.1, 0.8), disagreement_threshold=1.0)
    # Act
    proba = meta.predict_proba(X)
    # Assert
    np.testing.assert_allclose(proba[0], [0.1, 0.1, 0.8])


def test_meta_agent_when_weights_invalid_then_config_error():
    with pytest.raises(ConfigError, match="weights"):
        MetaAgent([FlatModel(), FlatModel()], weights=[1.0])


def test_sma_crossover_model_when_compared_with_signal_function_then_same_direction(spx):
    # Arrange
    bars = spx.iloc[:400]
    feats = compute_features(bars)
    signal = sma_crossover_signal(bars.set_index("ts")["close"], 10, 50)
    model = SmaCrossoverModel(fast=10, slow=50).fit(feats[COLUMNS], pd.Series(np.zeros(400)))
    # Act
    choice = model.predict_proba(feats[COLUMNS]).argmax(axis=1) - 1
    # Assert
    valid = feats["sma_50_ratio"].notna().to_numpy()
    np.testing.assert_array_equal(choice[valid], signal.to_numpy()[valid])
    assert (choice[~valid] == 0).all()
