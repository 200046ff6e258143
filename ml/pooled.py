"""A pooled walk-forward: one model per fold trained across a universe of series (the way qlib
trains cross-sectionally), so N series of a timeframe cost n_folds fits, not N * n_folds.

The folds live on the shared time axis, the sorted union of every series' bar timestamps: the
last n_folds * test_size timestamps are the out-of-sample period, cut into n_folds consecutive
test windows by walk_forward_splits. For a window starting at T, a series' row trains only when

- it is no later than the window's training end on the shared axis (the purge + embargo gap
  before T, measured in shared-axis rows), and
- its label, which reads that series' next `labels.horizon` bars, ends strictly before T.

The second rule is what keeps a series with gaps (fewer bars than the shared axis) honest:
its label window may span more shared-axis rows than the purge. So no training label of any
series reads a bar at or after the first test bar of any series. Every series' test rows inside
the window are predicted by that fold's one model. GARCH-free: the pooled families take the
features as they are (GARCH would be one fit per series again).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml.errors import ModelError, SplitError
from ml.labels import Labels
from ml.metrics import classification_metrics
from ml.models.base import PROBA_COLUMNS, Model
from ml.walkforward import Fold, ModelFactory, overall_metrics, walk_forward_splits

__all__ = ["PooledResult", "pooled_time_axis", "run_pooled_walk_forward"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PooledResult:
    predictions: dict[str, pd.DataFrame]  # series -> p_down, p_flat, p_up, fold, label by ts
    fold_metrics: pd.DataFrame  # one row per fold: pooled metrics on labelled test rows + sizes
    overall_metrics: dict[str, float]  # over every series' labelled OOS rows
    models: tuple[Model, ...]  # one fitted model per fold, shared by every series
    folds: tuple[Fold, ...]  # on the shared time axis
    # series -> per fold, the ts of the rows that fold's model trained on
    train_ts: dict[str, tuple[pd.DatetimeIndex, ...]] = field(repr=False)


def pooled_time_axis(features: Mapping[str, pd.DataFrame]) -> pd.DatetimeIndex:
    """The sorted union of the series' post-warm-up timestamps."""
    parts = [
        f.index[~f["warmup"].to_numpy(dtype=bool)] if "warmup" in f.columns else f.index
        for f in features.values()
    ]
    if not parts:
        msg = "a pooled walk-forward needs at least one series"
        raise ModelError(msg)
    return pd.DatetimeIndex(parts[0].append(parts[1:]).unique()).sort_values()


def run_pooled_walk_forward(
    features: Mapping[str, pd.DataFrame],
    labels: Mapping[str, Labels],
    model_factory: ModelFactory,
    *,
    n_folds: int,
    purge: int,
    embargo: int = 0,
    oos_fraction: float = 0.5,
    feature_columns: list[str] | None = None,
    min_train_size: int = 50,
) -> PooledResult:
    """One model per fold over the rows of every series, see the module docstring.

    features / labels: series key -> the frames ml.features / ml.labels give for that series
    (same index each). purge must be >= every series' labels.horizon."""
    if features.keys() != labels.keys():
        msg = "features and labels must name the same series"
        raise ModelError(msg)
    for key, feats in features.items():
        if not feats.index.equals(labels[key].values.index):
            msg = f"{key}: features and labels must share the same index"
            raise ModelError(msg)
        if purge < labels[key].horizon:
            msg = f"{key}: purge {purge} < label horizon {labels[key].horizon}"
            raise SplitError(msg)
    axis = pooled_time_axis(features)
    test_size = max(1, int(len(axis) * oos_fraction) // n_folds)
    folds = walk_forward_splits(
        axis, n_folds=n_folds, test_size=test_size, purge=purge, embargo=embargo
    )
    first = next(iter(features.values()))
    columns = feature_columns or [c for c in first.columns if c != "warmup"]
    keys = list(features)

    # Per series: usable rows, labelled rows, and when each label's window ends.
    usable, labelled, label_end = {}, {}, {}
    for key in keys:
        feats, lab = features[key], labels[key]
        n = len(feats)
        usable[key] = (
            ~feats["warmup"].to_numpy(dtype=bool)
            if "warmup" in feats.columns
            else np.ones(n, dtype=bool)
        )
        labelled[key] = lab.valid.to_numpy()
        ends = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)  # never ends: never trains
        ts = feats.index.as_unit("ns").asi8  # Timestamp.value is in ns whatever the unit
        if n > lab.horizon:
            ends[: n - lab.horizon] = ts[lab.horizon :]
        label_end[key] = ends

    preds: dict[str, list[pd.DataFrame]] = {k: [] for k in keys}
    train_ts: dict[str, list[pd.DatetimeIndex]] = {k: [] for k in keys}
    models, rows = [], []
    for fold in folds:
        assert fold.test_start is not None
        assert fold.test_end is not None
        assert fold.train_end is not None
        test_start, test_end = fold.test_start.value, fold.test_end.value
        x_train, y_train, tests = [], [], {}
        for key in keys:
            feats = features[key]
            ts = feats.index.as_unit("ns").asi8  # Timestamp.value is in ns whatever the unit
            train = (
                (ts <= fold.train_end.value)
                & (label_end[key] < test_start)
                & usable[key]
                & labelled[key]
            )
            test = (ts >= test_start) & (ts <= test_end) & usable[key]
            x_train.append(feats.loc[train, columns])
            y_train.append(labels[key].values[train])
            train_ts[key].append(feats.index[train])
            tests[key] = test
        X = pd.concat(x_train)
        y = pd.concat(y_train)
        if len(X) < min_train_size:
            msg = f"fold {fold.fold_id}: {len(X)} pooled training rows < {min_train_size}"
            raise SplitError(msg)
        model = model_factory({})
        model.fit(X.reset_index(drop=True), y.reset_index(drop=True))
        fold_frames = []
        for key in keys:
            mask = tests[key]
            if not mask.any():
                continue
            x_test = features[key].loc[mask, columns]
            proba = np.asarray(model.predict_proba(x_test), dtype=np.float64)
            frame = pd.DataFrame(proba, index=x_test.index, columns=list(PROBA_COLUMNS))
            frame["fold"] = fold.fold_id
            frame["label"] = labels[key].values[mask].to_numpy()
            preds[key].append(frame)
            fold_frames.append(frame)
        pooled = pd.concat(fold_frames)
        scored = pooled["label"].notna()
        row = {"fold": fold.fold_id, "n_train": len(X), "n_test": len(pooled),
               "train_end": fold.train_end, "test_start": fold.test_start}
        if scored.any():
            row |= classification_metrics(
                pooled.loc[scored, "label"], pooled.loc[scored, list(PROBA_COLUMNS)].to_numpy()
            )
        rows.append(row)
        models.append(model)
        logger.info("pooled fold %d: %d train rows over %d series, %d test rows",
                    fold.fold_id, len(X), len(keys), len(pooled))

    predictions = {k: pd.concat(v) for k, v in preds.items() if v}
    overall = overall_metrics(pd.concat(list(predictions.values())))
    return PooledResult(
        predictions=predictions,
        fold_metrics=pd.DataFrame(rows).set_index("fold"),
        overall_metrics=overall,
        models=tuple(models),
        folds=tuple(folds),
        train_ts={k: tuple(v) for k, v in train_ts.items()},
    )
