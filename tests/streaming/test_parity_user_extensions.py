"""Backtest vs live dataflow with a user feature and a user strategy rule: the live worker
computes the same user columns and decides with the same rule, so orders, fills and equity
are the backtest's."""

from __future__ import annotations

import pytest

from execution.config import StrategyConfig
from ml.bundle import ModelBundle
from ml.features import FeatureConfig, compute_features, feature_columns
from ml.labels import direction_labels
from tests.streaming.conftest import assert_replay_equals_backtest, spx_bars

pytestmark = [pytest.mark.parity, pytest.mark.slow]

FEATURE = "examples.user_feature:range_position"
RULE = "examples.user_rule:long_only_hold"


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

    expected = assert_replay_equals_backtest(bars, bundle, config)
    assert set(expected.trades["side"]) == {"long"}  # the user rule decided
