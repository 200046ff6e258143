"""Labels measure what the backtest's fills earn: on real S&P 500 bars, for both fill models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from execution.backtest import run_backtest
from execution.config import CostModel, RiskLimits, SizingConfig, StrategyConfig
from ml.features import compute_features
from ml.labels import direction_labels
from ml.pipeline import ResearchConfig, research_folds, research_labels

FILL_PRICE = {"next_open": "open", "next_close": "close"}


@pytest.mark.parametrize("fill", ["next_open", "next_close"])
@pytest.mark.parametrize("horizon", [1, 4])
def test_direction_labels_when_fill_model_given_then_return_runs_between_next_bar_fills(
    spx, fill, horizon
):
    # Arrange
    bars = spx.iloc[:600]
    price = bars[FILL_PRICE[fill]].to_numpy()
    # Act
    labels = direction_labels(bars, horizon, k=0.3, fill=fill)
    # Assert: entry at bar t + 1, exit h bars later; the label reads up to bar t + 1 + h.
    expected = np.full(len(bars), np.nan)
    expected[: -(horizon + 1)] = np.log(price[horizon + 1 :] / price[1:-horizon])
    np.testing.assert_allclose(labels.forward_return.to_numpy(), expected, rtol=0, atol=1e-12)
    assert labels.horizon == horizon + 1
    assert labels.values.iloc[-(horizon + 1) :].isna().all()
    assert labels.fill == fill


@pytest.mark.parametrize("fill", ["next_open", "next_close"])
def test_label_when_backtest_trades_it_then_label_return_equals_fill_to_fill_return(spx, fill):
    # Arrange: go long on every 7th decision for `horizon` bars, cost-free, fixed size.
    horizon = 3
    bars = spx.iloc[1000:1400].reset_index(drop=True)
    n = len(bars)
    long_at = np.arange(5, n - horizon - 2, 7)
    up = np.zeros(n, dtype=bool)
    for t in long_at:
        up[t : t + horizon] = True
    preds = pd.DataFrame(
        {
            "symbol": "SPX",
            "ts": bars["ts"],
            "p_down": 0.0,
            "p_flat": np.where(up, 0.0, 1.0),
            "p_up": np.where(up, 1.0, 0.0),
        }
    )
    config = StrategyConfig(
        costs=CostModel(
            commission_bps=0.0, spread_bps=0.0, slippage_bps=0.0, max_volume_share=None
        ),
        sizing=SizingConfig(method="fixed_quantity", fixed_quantity=1.0),
        risk=RiskLimits(max_position_frac=100.0, max_gross_exposure=100.0, max_risk_per_trade=1.0),
        fill=fill,
    )
    labels = direction_labels(bars, horizon, k=0.3, fill=fill)
    # Act
    trades = run_backtest(bars, preds, config).trades
    # Assert: each round trip's price return is exactly its entry bar's label return.
    assert len(trades) == len(long_at)
    earned = np.log(trades["exit_price"].to_numpy() / trades["entry_price"].to_numpy())
    decided = labels.forward_return.iloc[long_at].to_numpy()
    np.testing.assert_allclose(earned, decided, rtol=0, atol=1e-12)


def test_research_folds_when_next_bar_labels_then_purge_covers_label_reach(spx):
    # Arrange
    cfg = ResearchConfig(models=("xgboost",), n_folds=3, horizon=2)
    bars = spx.iloc[:1200]
    feats = compute_features(bars)
    labels = research_labels(bars, cfg, "next_open")
    # Act
    folds = research_folds(feats, cfg)
    # Assert: purge = span + 1, and no training label reads a test bar.
    for fold in folds:
        assert fold.purge == cfg.horizon + 1 >= labels.horizon
        before = fold.train_idx[fold.train_idx < fold.test_idx[0]]
        assert (before + labels.horizon < fold.test_idx[0]).all()
