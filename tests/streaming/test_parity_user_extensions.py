"""Backtest vs live dataflow with a user feature and a user strategy rule: the live worker
computes the same user columns and decides with the same rule, so orders, fills and equity
are the backtest's."""

from __future__ import annotations

import pandas as pd
import pytest
from bytewax.testing import TestingSink, run_main

from execution.backtest import run_backtest
from execution.config import StrategyConfig
from ml.bundle import ModelBundle
from ml.features import FeatureConfig, compute_features, feature_columns
from ml.labels import direction_labels
from streaming.dataflow import StreamConfig, build_flow
from streaming.models import LocalBundleProvider
from streaming.sources import ReplaySource
from tests.streaming.conftest import spx_bars

pytestmark = [pytest.mark.parity, pytest.mark.slow]

FEATURE = "examples.user_feature:range_position"
RULE = "examples.user_rule:long_only_hold"


def _rows(records: list, table: str) -> pd.DataFrame:
    return pd.DataFrame([dict(r.row) for _, r in records if r.table == table])


def test_replay_when_user_feature_and_rule_then_live_equals_backtest() -> None:
    from ml.models import XGBoostModel

    bars = spx_bars(1200)
    cfg = FeatureConfig(user_features=(FEATURE,), feature_window=60)
    cols = tuple(feature_columns(cfg))
    train = bars.iloc[:700]
    feats = compute_features(train, cfg)
    labels = direction_labels(train, horizon=1).values
    ok = (~feats["warmup"]) & labels.notna()
    model = XGBoostModel(n_estimators=30, max_depth=3, n_jobs=1, seed=0)
    model.fit(feats.loc[ok, list(cols)], labels[ok])
    bundle = ModelBundle(model=model, feature_config=cfg, columns=cols, name="xgboost")
    config = StrategyConfig(rule=RULE)
    batch = bundle.predict_frame(bars).reset_index().assign(symbol="SPX")
    expected = run_backtest(bars, batch, config)
    assert len(expected.orders) >= 10, "the model must trade for the test to mean anything"
    assert set(expected.trades["side"]) == {"long"}  # the user rule decided

    out: list = []
    flow = build_flow(
        StreamConfig(strategy=config, symbols=("SPX",), progress_every=0),
        ReplaySource(bars),
        TestingSink(out),
        {"SPX": LocalBundleProvider(bundle)},
    )
    run_main(flow)

    orders = _rows(out, "live_orders")
    assert orders["client_id"].tolist() == expected.orders["client_id"].tolist()
    fills = _rows(out, "live_fills")
    assert fills["price"].to_numpy() == pytest.approx(
        expected.fills["price"].to_numpy(), rel=0, abs=1e-9
    )
    equity = _rows(out, "live_equity").drop_duplicates("ts", keep="last").set_index("ts")["equity"]
    assert equity.to_numpy() == pytest.approx(expected.equity.to_numpy(), rel=0, abs=1e-6)
    preds = _rows(out, "live_predictions")
    assert preds["p_up"].to_numpy() == pytest.approx(batch["p_up"].to_numpy(), rel=0, abs=1e-9)
