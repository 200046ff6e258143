"""The research assets' pure core: degenerate portfolios never crash, every trial is counted."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from assets import _research_core as core
from infra.series import SeriesRegistry, SeriesSpec
from infra.strategy import strategy_for
from ml.pipeline import ResearchConfig

SPEC = SeriesSpec("SPX", "1d", "bundled", "equity", {"dataset": "sp500"})
CFG = ResearchConfig(models=("xgboost", "lstm"))


class _Store:
    def __init__(self, bars: pd.DataFrame) -> None:
        self.bars = bars

    def read_bars(self, symbol: str, timeframe: str) -> pd.DataFrame:
        return self.bars


class _Research:
    def config(self) -> ResearchConfig:
        return CFG

    def strategy(self, spec: SeriesSpec):
        return strategy_for(spec)


def _predictions(index: pd.DatetimeIndex, p_up: np.ndarray) -> pd.DataFrame:
    rest = (1.0 - p_up) / 2.0
    frame = pd.DataFrame({"p_down": rest, "p_flat": rest, "p_up": p_up}, index=index)
    frame["fold"] = 0
    frame["label"] = np.nan
    return frame


@pytest.fixture(scope="module")
def bars():
    from tests.ml.conftest import sp500_bars

    return sp500_bars().iloc[-600:].reset_index(drop=True)


def test_portfolio_backtests_when_no_model_trades_then_na_with_reasons_not_an_error(
    bars, tmp_path
):
    # Arrange: both models collapse onto 'flat'; nothing trades but the baselines
    registry = SeriesRegistry(tmp_path / "series.json")
    registry.put(SPEC)
    index = pd.DatetimeIndex(bars["ts"].iloc[100:])
    flat = _predictions(index, np.full(len(index), 0.2))
    preds = {SPEC.key: {f: flat for f in (*CFG.models, *CFG.baselines)}}
    # Act
    books = core.portfolio_backtests(
        preds, registry, _Store(bars), _Research(), log=lambda _: None
    )
    # Assert
    book = books["1d"]
    for family in CFG.models:
        m = book["strategies"][family]["metrics"]
        assert m["n_trades"] == 0
        assert math.isnan(m["pbo"]) and "CSCV needs at least 2" in m["notes"]["pbo"]
        assert math.isnan(m["deflated_sharpe"]) and m["notes"]["deflated_sharpe"]
        assert m["n_trials"] == len(CFG.models)
        assert "effectively a single-class model" in book["warnings"][family][0]
    assert book["kinds"]["buy_and_hold"] == book["kinds"]["always_long"] == "benchmark"
    assert book["strategies"]["buy_and_hold"]["metrics"]["n_trades"] == 1
    assert not core.consistency(books)


def test_trial_pool_when_a_family_was_tuned_then_every_optuna_trial_counts(bars):
    # Arrange: xgboost tuned (2 folds x 3 trials recorded), lstm untuned
    index = pd.DatetimeIndex(bars["ts"].iloc[100:])
    tuned = _predictions(index, np.full(len(index), 0.6))
    tuned.attrs["trial_sharpes"] = [0.01, -0.02, 0.03, 0.0, 0.02, float("nan")]
    plain = _predictions(index, np.full(len(index), 0.6))
    preds = {SPEC.key: {"xgboost": tuned, "lstm": plain}}
    rets = pd.DataFrame(
        {"xgboost": np.random.default_rng(0).normal(0, 0.01, 50),
         "lstm": np.random.default_rng(1).normal(0, 0.01, 50)}
    )
    # Act
    pool, counts = core.trial_pool(preds, [SPEC.key], ("xgboost", "lstm"), rets)
    # Assert
    assert counts == {"xgboost": 6, "lstm": 1}
    assert len(pool) == 7
    lstm_sharpe = rets["lstm"].mean() / rets["lstm"].std(ddof=1)
    assert pool[-1] == pytest.approx(lstm_sharpe, rel=1e-12)
