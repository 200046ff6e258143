"""Combinatorial purged cross-validation (Lopez de Prado, AFML ch. 12).

The rows are cut into N contiguous groups. Each split tests k of them and trains on the rest,
so there are C(N, k) splits; every group is tested in C(N-1, k-1) of them, and picking one
split per group in order gives phi = k / N * C(N, k) = C(N-1, k-1) complete out-of-sample
paths through the whole sample, instead of the walk-forward's single path.

Per test group [s, e] of a split, training rows are removed
- before it: rows s - purge .. s - 1, whose labels (reading up to purge bars ahead) reach into
  the group;
- after it: rows e + 1 .. e + purge + embargo, whose labels overlap the group's labels and whose
  features are serially correlated with its last rows.

Splits train on data after the test groups too: that is the point of CPCV, and it is honest
for the labels because of the purge. Per-fold GARCH features, which need training history
before every test row, do not apply here; run_cpcv trains without them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml.errors import SplitError
from ml.labels import Labels
from ml.models.base import PROBA_COLUMNS, Model
from ml.walkforward import Fold, run_walk_forward

__all__ = [
    "CpcvResult",
    "CpcvSplit",
    "cpcv_path_count",
    "cpcv_paths",
    "cpcv_splits",
    "group_bounds",
    "run_cpcv",
]

ModelFactory = Callable[[dict[str, Any]], Model]


@dataclass(frozen=True, eq=False)
class CpcvSplit:
    """One CPCV split. Positions index the rows of the frame that was split."""

    split_id: int
    test_groups: tuple[int, ...]  # group numbers 0..N-1 tested in this split
    train_idx: np.ndarray = field(repr=False)  # sorted int positions of training rows
    test_idx: np.ndarray = field(repr=False)  # sorted int positions of the test groups' rows
    purge: int
    embargo: int


def cpcv_path_count(n_groups: int, n_test_groups: int) -> int:
    """phi = k / N * C(N, k), which equals C(N - 1, k - 1)."""
    _check_groups(n_groups, n_test_groups)
    return math.comb(n_groups - 1, n_test_groups - 1)


def _check_groups(n_groups: int, n_test_groups: int) -> None:
    if not (isinstance(n_groups, int) and isinstance(n_test_groups, int)):
        msg = "n_groups and n_test_groups must be ints"
        raise SplitError(msg)
    if n_groups < 2 or not 1 <= n_test_groups < n_groups:
        msg = (
            "need n_groups >= 2 and 1 <= n_test_groups < n_groups, got "
            f"{n_groups}, {n_test_groups}"
        )
        raise SplitError(msg)


def group_bounds(n_rows: int, n_groups: int, start: int = 0) -> list[tuple[int, int]]:
    """(first, last) position of each of n_groups near-equal contiguous groups of rows
    start .. start + n_rows - 1."""
    edges = np.linspace(0, n_rows, n_groups + 1).astype(np.int64) + start
    return [(int(a), int(b) - 1) for a, b in itertools.pairwise(edges)]


def cpcv_splits(
    n: int,
    *,
    n_groups: int,
    n_test_groups: int,
    purge: int,
    embargo: int = 0,
    start: int = 0,
    min_train_size: int = 1,
) -> list[CpcvSplit]:
    """The C(N, k) splits of rows start .. n - 1 (rows before `start`, e.g. warm-up, are in no
    group and never trained on). See the module docstring for the purge and embargo."""
    _check_groups(n_groups, n_test_groups)
    if purge < 0 or embargo < 0 or not 0 <= start < n:
        msg = f"need purge >= 0, embargo >= 0 and 0 <= start < n, got {purge}, {embargo}, {start}"
        raise SplitError(msg)
    bounds = group_bounds(n - start, n_groups, start)
    if min(b - a + 1 for a, b in bounds) < 1:
        msg = f"{n - start} rows are too few for {n_groups} groups"
        raise SplitError(msg)
    splits = []
    for sid, combo in enumerate(itertools.combinations(range(n_groups), n_test_groups)):
        keep = np.zeros(n, dtype=bool)
        keep[start:] = True
        test = np.zeros(n, dtype=bool)
        for g in combo:
            first, last = bounds[g]
            test[first : last + 1] = True
            keep[max(start, first - purge) : min(n, last + 1 + purge + embargo)] = False
        train = np.flatnonzero(keep & ~test)
        if len(train) < min_train_size:
            msg = f"split {sid} (test groups {combo}): {len(train)} training rows"
            raise SplitError(msg)
        splits.append(
            CpcvSplit(
                split_id=sid,
                test_groups=tuple(combo),
                train_idx=train,
                test_idx=np.flatnonzero(test),
                purge=purge,
                embargo=embargo,
            )
        )
    return splits


def cpcv_paths(n_groups: int, n_test_groups: int) -> np.ndarray:
    """(phi, N) matrix: entry [p, g] is the split whose predictions path p uses for group g.

    Splits are in itertools.combinations order (as cpcv_splits numbers them); path p takes, for
    each group, the p-th split that tests it, so every split's every test group is used once.
    """
    phi = cpcv_path_count(n_groups, n_test_groups)
    out = np.full((phi, n_groups), -1, dtype=np.int64)
    seen = [0] * n_groups
    for sid, combo in enumerate(itertools.combinations(range(n_groups), n_test_groups)):
        for g in combo:
            out[seen[g], g] = sid
            seen[g] += 1
    return out


@dataclass(frozen=True)
class CpcvResult:
    paths: tuple[pd.DataFrame, ...]  # per path: p_down, p_flat, p_up, split, group by ts
    splits: tuple[CpcvSplit, ...]
    n_groups: int
    n_test_groups: int


def run_cpcv(
    features: pd.DataFrame,
    labels: Labels,
    model_factory: ModelFactory,
    *,
    n_groups: int,
    n_test_groups: int,
    embargo: int,
    feature_columns: list[str] | None = None,
) -> CpcvResult:
    """Fit one model per CPCV split on its purged training rows and predict its test groups,
    then assemble the phi out-of-sample paths over the post-warm-up rows.

    The purge is labels.horizon (the bars a label reads). Rows in warm-up (features["warmup"])
    are in no group.
    """
    warm = features["warmup"].to_numpy(dtype=bool) if "warmup" in features.columns else None
    start = int(np.argmin(warm)) if warm is not None and warm.any() else 0
    splits = cpcv_splits(
        len(features),
        n_groups=n_groups,
        n_test_groups=n_test_groups,
        purge=labels.horizon,
        embargo=embargo,
        start=start,
        min_train_size=50,
    )
    index = features.index
    folds = [
        Fold(
            fold_id=s.split_id,
            train_idx=s.train_idx,
            test_idx=s.test_idx,
            purge=s.purge,
            embargo=s.embargo,
            train_start=index[s.train_idx[0]],
            train_end=index[s.train_idx[-1]],
            test_start=index[s.test_idx[0]],
            test_end=index[s.test_idx[-1]],
        )
        for s in splits
    ]
    result = run_walk_forward(
        features, labels, model_factory, folds, garch=False, feature_columns=feature_columns
    )
    bounds = group_bounds(len(features) - start, n_groups, start)
    by_split = {sid: frame for sid, frame in result.predictions.groupby("fold")}
    paths = []
    for row in cpcv_paths(n_groups, n_test_groups):
        parts = []
        for g, sid in enumerate(row):
            first, last = bounds[g]
            rows = by_split[int(sid)]
            part = rows.loc[index[first] : index[last], list(PROBA_COLUMNS)].copy()
            part["split"] = int(sid)
            part["group"] = g
            parts.append(part)
        paths.append(pd.concat(parts))
    return CpcvResult(
        paths=tuple(paths),
        splits=tuple(splits),
        n_groups=n_groups,
        n_test_groups=n_test_groups,
    )
