"""The model families of one series fitted in worker processes equal the sequential run."""

from __future__ import annotations

import math
from functools import partial

import pandas as pd
import pytest

from ml.features import compute_features
from ml.pipeline import ResearchConfig, research_folds, research_labels, run_family
from ml.walkforward import run_in_processes
from tests.ml.conftest import sp500_bars

CFG = ResearchConfig(
    models=("xgboost", "xgboost_garch", "lstm"), n_folds=3, xgb_estimators=20, lstm_epochs=1
)


def _fail_on(bad: int, item: int) -> int:
    if item == bad:
        msg = f"item {item} refused"
        raise ValueError(msg)
    return item * 2


def _same_metrics(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a
    )


@pytest.mark.slow
def test_run_family_when_families_fit_in_processes_then_identical_to_sequential():
    # Arrange: real daily bars, every model family and baseline, three folds
    bars = sp500_bars().iloc[-1500:].reset_index(drop=True)
    feats = compute_features(bars)
    labels = research_labels(bars, CFG)
    folds = research_folds(feats, CFG)
    families = [*CFG.models, *CFG.baselines]
    task = partial(run_family, features=feats, labels=labels, folds=folds, config=CFG)
    # Act
    sequential = [task(f) for f in families]
    parallel = run_in_processes(task, families, workers=2)
    # Assert: OOS predictions, per-fold and overall metrics exactly equal, fold by fold
    for family, seq, par in zip(families, sequential, parallel, strict=True):
        pd.testing.assert_frame_equal(par.predictions, seq.predictions, check_exact=True)
        pd.testing.assert_frame_equal(par.fold_metrics, seq.fold_metrics, check_exact=True)
        assert _same_metrics(par.overall_metrics, seq.overall_metrics), family
        assert len(par.models) == len(seq.models) == len(folds)
        assert par.garch == seq.garch, family


def test_run_in_processes_when_workers_run_then_results_keep_the_items_order():
    # Act
    out = run_in_processes(partial(_fail_on, -1), [3, 1, 2, 5], workers=2)
    # Assert
    assert out == [6, 2, 4, 10]


def test_run_in_processes_when_a_task_fails_in_a_worker_then_its_error_is_raised():
    # Act / Assert
    with pytest.raises(ValueError, match="item 2 refused"):
        run_in_processes(partial(_fail_on, 2), [1, 2, 3], workers=2)
