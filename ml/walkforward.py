"""Walk-forward splitting with purge and embargo, and the per-fold train / predict loop.

Layout: the last n_folds * test_size rows are the out-of-sample (OOS) period, cut into n_folds
consecutive test windows. For each window the model trains on earlier rows only (forward_only,
the default), ending `purge + embargo` rows before the window starts:

- purge removes training rows whose label window reaches into the test window: the label at row
  i reads bars up to i + horizon, so purge >= horizon keeps every training label strictly before
  the first test bar.
- embargo adds a further gap for serial correlation in the features (EMA and GARCH memory).

With forward_only=False (purged k-fold style, train on both sides), rows after the test window
are used too, except the first purge + embargo of them: their labels start inside the span the
test labels read, and their features are serially correlated with the test rows.

`run_walk_forward` fits a fresh model per fold on the training rows (optionally tuned with
Optuna on an inner walk-forward split of those rows only), refits GARCH(1,1) on the fold's
training returns and filters it forward through the test rows as an extra feature, and collects
the OOS probabilities and per-fold metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd

from ml.errors import ModelError, SplitError
from ml.garch import GarchParams, GarchVolForecaster
from ml.labels import Labels
from ml.metrics import classification_metrics
from ml.models.base import PROBA_COLUMNS, Model

__all__ = [
    "Fold",
    "OptunaTuner",
    "TuningResult",
    "WalkForwardResult",
    "overall_metrics",
    "run_walk_forward",
    "signal_sharpe",
    "walk_forward_splits",
]

logger = logging.getLogger(__name__)

ModelFactory = Callable[[dict[str, Any]], Model]
GARCH_COLUMN = "garch_vol"


@dataclass(frozen=True, eq=False)
class Fold:
    """One walk-forward fold. Positions index the rows of the frame that was split."""

    fold_id: int
    train_idx: np.ndarray = field(repr=False)  # sorted int positions of training rows
    test_idx: np.ndarray = field(repr=False)  # sorted, contiguous int positions of test rows
    purge: int  # rows dropped before the test window (and after it when not forward-only)
    embargo: int  # further rows dropped between training and test
    train_start: pd.Timestamp | None  # ts of the first training row (None for an int split)
    train_end: pd.Timestamp | None  # ts of the last training row before the test window
    test_start: pd.Timestamp | None
    test_end: pd.Timestamp | None

    @property
    def test_start_pos(self) -> int:
        return int(self.test_idx[0])

    @property
    def test_end_pos(self) -> int:
        return int(self.test_idx[-1])

    @property
    def train_end_pos(self) -> int:
        """Position of the last training row before the test window (-1 if there is none)."""
        before = self.train_idx[self.train_idx < self.test_idx[0]]
        return int(before[-1]) if len(before) else -1


def walk_forward_splits(
    index: pd.DatetimeIndex | int,
    *,
    n_folds: int,
    test_size: int | None = None,
    train_size: int | None = None,
    purge: int,
    embargo: int = 0,
    forward_only: bool = True,
    min_train_size: int = 1,
) -> list[Fold]:
    """Split `index` (or range(n)) into n_folds walk-forward folds, see the module docstring.

    train_size=None trains on everything before the test window (expanding); an int keeps only
    the last train_size rows before the gap (rolling; forward_only only). test_size=None uses
    n // (n_folds + 1). Raises SplitError when a fold would have < min_train_size train rows.
    """
    if isinstance(index, (int, np.integer)):
        n = int(index)
        ts_index: pd.DatetimeIndex | None = None
    elif isinstance(index, pd.DatetimeIndex):
        n = len(index)
        ts_index = index
        if n > 1 and not (index[1:] > index[:-1]).all():
            msg = "index must be sorted and unique"
            raise SplitError(msg)
    else:
        msg = f"index must be a DatetimeIndex or an int, got {type(index).__name__}"
        raise SplitError(msg)
    if n_folds < 1 or purge < 0 or embargo < 0 or min_train_size < 1:
        msg = "need n_folds >= 1, purge >= 0, embargo >= 0, min_train_size >= 1"
        raise SplitError(msg)
    if train_size is not None and (train_size < 1 or not forward_only):
        msg = "train_size must be >= 1 and only applies to forward-only splits"
        raise SplitError(msg)
    size = n // (n_folds + 1) if test_size is None else int(test_size)
    if size < 1 or n_folds * size >= n:
        msg = f"{n_folds} test windows of {size} rows do not fit in {n} rows with training rows"
        raise SplitError(msg)

    def stamp(pos: int) -> pd.Timestamp | None:
        return None if ts_index is None else ts_index[pos]

    folds = []
    oos_start = n - n_folds * size
    for k in range(n_folds):
        start = oos_start + k * size
        stop = start + size
        gap = purge + embargo
        hi = start - gap  # training rows before the test window are < hi
        lo = 0 if train_size is None else max(0, hi - train_size)
        before = np.arange(lo, max(lo, hi), dtype=np.int64)
        after = np.arange(min(n, stop + gap), n, dtype=np.int64)
        train = before if forward_only else np.concatenate([before, after])
        if len(train) < min_train_size:
            msg = (
                f"fold {k}: {len(train)} training rows < min_train_size {min_train_size} "
                f"(test rows {start}..{stop - 1}, purge {purge}, embargo {embargo})"
            )
            raise SplitError(msg)
        folds.append(
            Fold(
                fold_id=k,
                train_idx=train,
                test_idx=np.arange(start, stop, dtype=np.int64),
                purge=purge,
                embargo=embargo,
                train_start=stamp(int(train[0])),
                train_end=stamp(int(before[-1])) if len(before) else None,
                test_start=stamp(start),
                test_end=stamp(stop - 1),
            )
        )
    return folds


@dataclass(frozen=True)
class TuningResult:
    best_params: dict[str, Any]
    best_value: float  # mean inner-fold metric of the best trial (lower is better)
    n_trials: int  # trials actually run
    # Per-bar Sharpe ratio of each trial's inner-fold predictions traded as a signal (long on
    # up, short on down, flat otherwise, earning the label's forward return); NaN when a trial
    # never took a position or no forward returns were given. What the deflated Sharpe ratio
    # needs of every configuration that was evaluated on data.
    trial_sharpes: tuple[float, ...] = ()


def signal_sharpe(proba: np.ndarray, forward_return: np.ndarray) -> float:
    """Per-bar Sharpe of trading the argmax class (up +1, flat 0, down -1) for the label's
    forward log return; NaN when the position never changes the outcome (zero dispersion)."""
    position = np.asarray(proba).argmax(axis=1) - 1
    pnl = position * np.expm1(np.asarray(forward_return, dtype=np.float64))
    pnl = pnl[np.isfinite(pnl)]
    if len(pnl) < 2 or pnl.max() == pnl.min():
        return float("nan")
    return float(pnl.mean() / pnl.std(ddof=1))


@dataclass(frozen=True)
class OptunaTuner:
    """Hyper-parameter search inside one training fold, on an inner walk-forward split of it.

    search_space(trial) returns the params passed to the model factory. The objective is the mean
    log loss over the inner folds; the inner folds use the outer fold's purge and embargo.
    """

    search_space: Callable[[optuna.Trial], dict[str, Any]]
    n_trials: int = 10
    inner_folds: int = 3
    seed: int = 0

    def tune(
        self,
        X: pd.DataFrame,
        y: pd.Series,
        model_factory: ModelFactory,
        *,
        purge: int,
        embargo: int,
        forward_return: pd.Series | None = None,
    ) -> TuningResult:
        """Search on X, y (the outer fold's training rows only). forward_return, aligned with
        y, lets each trial's inner-fold predictions be scored as a trading signal too."""
        inner = walk_forward_splits(
            len(X), n_folds=self.inner_folds, purge=purge, embargo=embargo, min_train_size=10
        )
        if forward_return is not None and not forward_return.index.equals(y.index):
            msg = "forward_return must share y's index"
            raise ModelError(msg)
        sharpes: dict[int, float] = {}

        def objective(trial: optuna.Trial) -> float:
            params = self.search_space(trial)
            losses, probas, rows = [], [], []
            for fold in inner:
                model = model_factory(params)
                model.fit(X.iloc[fold.train_idx], y.iloc[fold.train_idx])
                proba = model.predict_proba(X.iloc[fold.test_idx])
                losses.append(classification_metrics(y.iloc[fold.test_idx], proba)["log_loss"])
                probas.append(np.asarray(proba))
                rows.append(fold.test_idx)
            if forward_return is not None:
                fwd = forward_return.to_numpy()[np.concatenate(rows)]
                sharpes[trial.number] = signal_sharpe(np.concatenate(probas), fwd)
            return float(np.mean(losses))

        study = optuna.create_study(
            direction="minimize", sampler=optuna.samplers.TPESampler(seed=self.seed)
        )
        study.optimize(objective, n_trials=self.n_trials)
        return TuningResult(
            # Re-running the search space on the frozen best trial also returns its fixed params.
            best_params=self.search_space(study.best_trial),  # type: ignore[arg-type]
            best_value=float(study.best_value),
            n_trials=len(study.trials),
            trial_sharpes=tuple(sharpes.get(t.number, float("nan")) for t in study.trials),
        )


@dataclass(frozen=True)
class WalkForwardResult:
    predictions: pd.DataFrame  # by ts: p_down, p_flat, p_up, fold, label (NaN if none)
    fold_metrics: pd.DataFrame  # one row per fold: metrics on labelled test rows + sizes
    overall_metrics: dict[str, float]  # metrics over all labelled OOS rows
    models: tuple[Model, ...]  # the fitted model of each fold
    folds: tuple[Fold, ...]
    train_rows: tuple[np.ndarray, ...]  # positions actually trained on, per fold
    tuning: tuple[TuningResult | None, ...]
    garch: tuple[GarchParams | None, ...]  # per-fold GARCH parameters (None without GARCH)


def _garch_feature(
    returns: pd.Series, fold: Fold, first_train: int
) -> tuple[pd.Series, GarchParams]:
    """GARCH vol for rows first_train..end, fitted on returns before the test window only."""
    fit_stop = fold.train_end_pos + 1
    forecaster = GarchVolForecaster().fit(returns.iloc[first_train:fit_stop])
    vol = forecaster.filter(returns.iloc[first_train:])
    assert forecaster.params_ is not None
    return vol, forecaster.params_


def run_walk_forward(
    features: pd.DataFrame,
    labels: Labels,
    model_factory: ModelFactory,
    folds: list[Fold],
    *,
    tuner: OptunaTuner | None = None,
    garch: bool = True,
    returns: pd.Series | None = None,
    feature_columns: list[str] | None = None,
) -> WalkForwardResult:
    """Train one model per fold and predict its test rows.

    features: the compute_features frame (indexed by ts, may hold `warmup`); labels: from
    ml.labels on the same bars. Rows in warm-up are neither trained on nor predicted; training
    rows also need a label. garch=True adds GARCH(1,1) vol (column garch_vol) fitted per fold on
    `returns` (default: features["log_ret_1"]) of the training rows before the test window.
    Every fold's purge must be >= labels.horizon.
    """
    if not features.index.equals(labels.values.index):
        msg = "features and labels must share the same index (compute both from the same bars)"
        raise ModelError(msg)
    for fold in folds:
        if fold.purge < labels.horizon:
            msg = f"fold {fold.fold_id}: purge {fold.purge} < label horizon {labels.horizon}"
            raise SplitError(msg)
        if fold.test_end_pos >= len(features):
            msg = f"fold {fold.fold_id} reaches row {fold.test_end_pos} of {len(features)}"
            raise SplitError(msg)
    columns = feature_columns or [c for c in features.columns if c != "warmup"]
    usable = (
        ~features["warmup"].to_numpy(dtype=bool)
        if "warmup" in features.columns
        else np.ones(len(features), dtype=bool)
    )
    labelled = labels.valid.to_numpy()
    if garch:
        if returns is None:
            if "log_ret_1" not in features.columns:
                msg = "garch=True needs `returns` or a log_ret_1 feature column"
                raise ModelError(msg)
            returns = features["log_ret_1"]
        if not returns.index.equals(features.index):
            msg = "returns must share the features' index"
            raise ModelError(msg)

    pred_frames, fold_rows, models, trained, tunings, garch_params = [], [], [], [], [], []
    for fold in folds:
        train_pos = fold.train_idx[usable[fold.train_idx] & labelled[fold.train_idx]]
        test_pos = fold.test_idx[usable[fold.test_idx]]
        if len(train_pos) == 0 or len(test_pos) == 0:
            msg = (
                f"fold {fold.fold_id}: {len(train_pos)} usable train and {len(test_pos)} test rows"
            )
            raise SplitError(msg)
        X = features[columns]
        params_g: GarchParams | None = None
        if garch:
            assert returns is not None
            first = int(train_pos[0])
            if fold.train_end_pos < first or test_pos[0] < first:
                msg = f"fold {fold.fold_id}: GARCH needs training rows before the test window"
                raise ModelError(msg)
            vol, params_g = _garch_feature(returns, fold, first)
            X = X.iloc[first:].assign(**{GARCH_COLUMN: vol.to_numpy()})
            X_train = X.iloc[train_pos - first]
            X_test = X.iloc[test_pos - first]
        else:
            X_train = X.iloc[train_pos]
            X_test = X.iloc[test_pos]
        y_train = labels.values.iloc[train_pos]
        tuning = None
        params: dict[str, Any] = {}
        if tuner is not None:
            tuning = tuner.tune(
                X_train,
                y_train,
                model_factory,
                purge=fold.purge,
                embargo=fold.embargo,
                forward_return=labels.forward_return.iloc[train_pos],
            )
            params = tuning.best_params
        model = model_factory(params)
        model.fit(X_train, y_train)
        proba = np.asarray(model.predict_proba(X_test), dtype=np.float64)
        frame = pd.DataFrame(proba, index=X_test.index, columns=list(PROBA_COLUMNS))
        frame["fold"] = fold.fold_id
        frame["label"] = labels.values.iloc[test_pos].to_numpy()
        pred_frames.append(frame)
        scored = frame["label"].notna().to_numpy()
        row: dict[str, Any] = {"fold": fold.fold_id, "n_train": len(train_pos)}
        row |= {"n_test": len(test_pos), "train_end": fold.train_end, "test_start": fold.test_start}
        if scored.any():
            row |= classification_metrics(frame["label"][scored], proba[scored])
        row["n_trials"] = tuning.n_trials if tuning else 0
        fold_rows.append(row)
        models.append(model)
        trained.append(train_pos)
        tunings.append(tuning)
        garch_params.append(params_g)
        logger.info(
            "fold %d: %d train rows, %d test rows", fold.fold_id, len(train_pos), len(test_pos)
        )

    predictions = pd.concat(pred_frames)
    overall = overall_metrics(predictions)
    return WalkForwardResult(
        predictions=predictions,
        fold_metrics=pd.DataFrame(fold_rows).set_index("fold"),
        overall_metrics=overall,
        models=tuple(models),
        folds=tuple(folds),
        train_rows=tuple(trained),
        tuning=tuple(tunings),
        garch=tuple(garch_params),
    )


def overall_metrics(predictions: pd.DataFrame) -> dict[str, float]:
    """Classification metrics over every labelled OOS row of `predictions` ({"n": 0} if none)."""
    scored = predictions["label"].notna()
    if not scored.any():
        return {"n": 0.0}
    return classification_metrics(
        predictions.loc[scored, "label"], predictions.loc[scored, list(PROBA_COLUMNS)].to_numpy()
    )
