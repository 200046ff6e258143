"""Walk-forward splits (purge, embargo, coverage) and the per-fold training loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.errors import SplitError
from ml.features import compute_features
from ml.labels import direction_labels
from ml.models import SmaCrossoverModel, XGBoostModel
from ml.walkforward import OptunaTuner, run_walk_forward, signal_sharpe, walk_forward_splits

split_params = st.fixed_dictionaries(
    {
        "n": st.integers(50, 2000),
        "n_folds": st.integers(1, 8),
        "purge": st.integers(0, 20),
        "embargo": st.integers(0, 20),
        "train_size": st.one_of(st.none(), st.integers(5, 500)),
        "forward_only": st.booleans(),
    }
)


@settings(max_examples=200, deadline=None)
@given(p=split_params)
def test_walk_forward_splits_when_any_sizes_then_purged_embargoed_ordered_and_covering(p):
    # Arrange
    n, n_folds = p["n"], p["n_folds"]
    train_size = p["train_size"] if p["forward_only"] else None
    # Act
    try:
        folds = walk_forward_splits(
            n,
            n_folds=n_folds,
            purge=p["purge"],
            embargo=p["embargo"],
            train_size=train_size,
            forward_only=p["forward_only"],
        )
    except SplitError:
        return  # sizes that leave no training rows are refused, never silently shrunk
    # Assert
    gap = p["purge"] + p["embargo"]
    tests = [f.test_idx for f in folds]
    oos = np.concatenate(tests)
    assert (np.diff(oos) == 1).all()  # consecutive, ordered, non-overlapping windows
    assert oos[-1] == n - 1  # the OOS period runs to the end
    for fold in folds:
        test = fold.test_idx
        train = fold.train_idx
        assert len(np.intersect1d(train, test)) == 0
        before = train[train < test[0]]
        after = train[train > test[-1]]
        assert (before < test[0] - gap).all()  # purge + embargo gap before the test window
        assert (after > test[-1] + gap).all()  # and after it when training on both sides
        if p["forward_only"]:
            assert len(after) == 0
            assert before[-1] == test[0] - gap - 1  # nothing else is dropped
            if train_size is not None:
                assert len(before) <= train_size


def test_walk_forward_splits_when_datetime_index_then_fold_timestamps_match_positions():
    index = pd.date_range("2024-01-01", periods=100, freq="1h", tz="UTC")
    folds = walk_forward_splits(index, n_folds=3, test_size=20, purge=2, embargo=1)
    assert [f.test_start for f in folds] == [index[40], index[60], index[80]]
    assert folds[0].train_end == index[40 - 3 - 1]
    assert folds[-1].test_end == index[-1]


def test_walk_forward_splits_when_no_room_for_training_then_split_error():
    with pytest.raises(SplitError):
        walk_forward_splits(10, n_folds=5, test_size=2, purge=0)


@pytest.fixture(scope="module")
def spx_ml(spx):
    bars = spx.iloc[:1500]
    feats = compute_features(bars)
    labels = direction_labels(bars, horizon=3, k=0.3)
    cols = ["sma_10_ratio", "sma_50_ratio", "rsi_14", "macd_hist", "log_ret_1", "ret_std_20"]
    return feats[[*cols, "warmup"]], labels


def test_run_walk_forward_when_run_then_oos_predictions_come_from_models_not_trained_on_them(
    spx_ml,
):
    # Arrange
    feats, labels = spx_ml
    folds = walk_forward_splits(feats.index, n_folds=3, test_size=150, purge=3, embargo=2)
    # Act
    result = run_walk_forward(
        feats, labels, lambda params: XGBoostModel(n_estimators=15, **params), folds
    )
    # Assert
    preds = result.predictions
    assert list(preds.columns) == ["p_down", "p_flat", "p_up", "fold", "label"]
    assert preds.index.is_monotonic_increasing
    assert preds.index.is_unique
    np.testing.assert_allclose(preds[["p_down", "p_flat", "p_up"]].sum(axis=1), 1.0, atol=1e-6)
    for fold, trained in zip(result.folds, result.train_rows, strict=True):
        fold_preds = preds[preds["fold"] == fold.fold_id]
        assert fold_preds.index.equals(feats.index[fold.test_idx])
        # Every training row's label window (row + horizon) ends before the first test bar.
        assert (trained + labels.horizon < fold.test_idx[0]).all()
        assert fold.train_end < fold_preds.index.min()
        assert fold.train_end <= feats.index[fold.test_idx[0] - fold.purge - 1]
        assert not feats["warmup"].to_numpy()[trained].any()
        assert labels.valid.to_numpy()[trained].all()
    assert set(result.fold_metrics.columns) >= {"accuracy", "f1_macro", "log_loss", "brier"}
    assert result.overall_metrics["n"] == preds["label"].notna().sum()
    assert all(g is not None and g.n_train > 100 for g in result.garch)
    assert result.models[0].feature_names_[-1] == "garch_vol"


def test_run_walk_forward_when_purge_shorter_than_horizon_then_split_error(spx_ml):
    feats, labels = spx_ml
    folds = walk_forward_splits(feats.index, n_folds=2, test_size=100, purge=1)
    with pytest.raises(SplitError, match="purge 1 < label horizon 3"):
        run_walk_forward(feats, labels, lambda p: SmaCrossoverModel(), folds)


def test_run_walk_forward_when_tuner_given_then_trials_run_inside_training_rows(spx_ml):
    # Arrange
    feats, labels = spx_ml
    folds = walk_forward_splits(feats.index, n_folds=2, test_size=150, purge=3)
    seen_rows: list[pd.Index] = []

    def factory(params):
        model = XGBoostModel(n_estimators=5, **params)
        original_fit = model.fit

        def recording_fit(X, y, sample_weight=None):
            seen_rows.append(X.index)
            return original_fit(X, y, sample_weight)

        model.fit = recording_fit  # type: ignore[method-assign]
        return model

    tuner = OptunaTuner(
        search_space=lambda trial: {"max_depth": trial.suggest_int("max_depth", 1, 3)},
        n_trials=2,
        inner_folds=2,
    )
    # Act
    result = run_walk_forward(feats, labels, factory, folds, tuner=tuner, garch=False)
    # Assert
    assert [t.n_trials for t in result.tuning] == [2, 2]
    assert result.fold_metrics["n_trials"].tolist() == [2, 2]
    assert all(1 <= t.best_params["max_depth"] <= 3 for t in result.tuning)
    first_test = feats.index[folds[0].test_idx[0]]
    # 2 trials x 2 inner folds + the final fit happen before fold 0's test window.
    assert all(rows.max() < first_test for rows in seen_rows[:5])


def test_run_walk_forward_when_returns_after_train_end_change_then_fold_garch_unchanged(spx_ml):
    # Arrange
    feats, labels = spx_ml
    folds = walk_forward_splits(feats.index, n_folds=2, test_size=150, purge=3)
    returns = feats["log_ret_1"]
    shocked = returns.copy()
    shocked.iloc[folds[0].train_end_pos + 1 :] *= 5.0

    def factory(params):
        return SmaCrossoverModel()

    # Act
    base = run_walk_forward(feats, labels, factory, folds, returns=returns)
    changed = run_walk_forward(feats, labels, factory, folds, returns=shocked)
    # Assert: fold 0's GARCH fit saw no return after its training rows; fold 1's did.
    assert changed.garch[0] == base.garch[0]
    assert changed.garch[1] != base.garch[1]


def test_tuner_when_tuning_a_fold_then_objective_never_sees_a_test_fold_bar(spx_ml):
    # Arrange: a tuner whose every fit and prediction records the bars it was shown
    feats, labels = spx_ml
    folds = walk_forward_splits(feats.index, n_folds=3, test_size=120, purge=3, embargo=2)
    seen: dict[int, list[pd.Index]] = {}
    current: list[pd.Index] = []

    class SpyModel(SmaCrossoverModel):
        def fit(self, X, y, sample_weight=None):
            current.append(X.index)
            return super().fit(X, y, sample_weight)

        def predict_proba(self, X):
            current.append(X.index)
            return super().predict_proba(X)

    class SpyTuner(OptunaTuner):
        def tune(self, X, y, model_factory, **kwargs):
            current.clear()
            result = super().tune(X, y, lambda p: SpyModel(), **kwargs)
            seen[len(seen)] = list(current)
            return result

    tuner = SpyTuner(search_space=lambda trial: {}, n_trials=2, inner_folds=2)
    # Act
    result = run_walk_forward(feats, labels, lambda p: SmaCrossoverModel(), folds, tuner=tuner)
    # Assert: every bar a tuning objective touched lies before its fold's purge gap
    assert len(seen) == len(folds)
    for fold, calls in zip(folds, seen.values(), strict=True):
        assert calls, "the objective fitted nothing"
        touched = pd.DatetimeIndex(np.unique(np.concatenate([c.to_numpy() for c in calls])))
        test_bars = feats.index[fold.test_idx]
        assert not touched.isin(test_bars).any()
        assert touched.max() <= feats.index[fold.test_idx[0] - fold.purge - fold.embargo - 1]
    # Each trial was also scored as a trading signal on its inner folds.
    assert all(len(t.trial_sharpes) == t.n_trials == 2 for t in result.tuning)


def test_signal_sharpe_when_always_right_then_positive_and_when_flat_then_nan():
    # Arrange
    fwd = np.array([0.01, -0.02, 0.015, -0.005, 0.02])
    right = np.eye(3)[np.where(fwd > 0, 2, 0)]
    flat = np.eye(3)[np.ones(len(fwd), dtype=int)]
    # Act / Assert
    assert signal_sharpe(right, fwd) > 0
    assert np.isnan(signal_sharpe(flat, fwd))
