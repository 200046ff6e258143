"""Strategy rules by import path: the built-in is the default rule; a user rule decides in the
engine step that the backtest loop and the live dataflow share; the compiled path steps aside."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from execution import backtest
from execution.backtest import BacktestError, run_backtest
from execution.config import DecisionConfig, ExecutionConfigError, StrategyConfig
from execution.decision import (
    DecisionContext,
    apply_rule,
    builtin_rule,
    decide,
    is_builtin_rule,
    resolve_rule,
)
from execution.signal import Bar, Prediction
from tests.streaming.conftest import spx_bars

RULE = "examples.user_rule:long_only_hold"


def _predictions(bars: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    raw = rng.dirichlet((1.0, 1.0, 1.0), size=len(bars))
    return pd.DataFrame(
        {"symbol": "SPX", "ts": bars["ts"], "p_down": raw[:, 0], "p_flat": raw[:, 1],
         "p_up": raw[:, 2]}
    )


def _bar() -> Bar:
    ts = pd.Timestamp("2024-01-02", tz="UTC").to_pydatetime()
    return Bar("SPX", "1d", ts, 100.0, 101.0, 99.0, 100.5, 1e6)


def test_resolve_rule_when_empty_then_builtin_and_builtin_equals_decide():
    rule = resolve_rule("")
    bar = _bar()
    pred = Prediction("SPX", bar.ts, 0.7, 0.2, 0.1)

    assert rule is builtin_rule and is_builtin_rule("execution.decision:builtin_rule")
    assert not is_builtin_rule(RULE)
    assert apply_rule(rule, pred, DecisionConfig(), DecisionContext(bar, 0)) == decide(
        pred, DecisionConfig()
    ) == -1


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("examples.user_rule:nope", "has no attribute"),
        ("examples.nope:rule", "cannot import"),
        ("examples.user_rule:__all__", "not callable"),
        ("long_only_hold", "not an import path"),
    ],
)
def test_strategy_config_when_rule_reference_is_wrong_then_refused_naming_it(ref, expected):
    with pytest.raises(ExecutionConfigError, match=expected):
        StrategyConfig(rule=ref)


def test_apply_rule_when_rule_returns_other_than_direction_then_raises_and_short_obeys_config():
    bar = _bar()
    pred = Prediction("SPX", bar.ts, 0.7, 0.2, 0.1)
    ctx = DecisionContext(bar, 0)

    with pytest.raises(ExecutionConfigError, match="-1, 0 or \\+1"):
        apply_rule(lambda *_: 0.5, pred, DecisionConfig(), ctx)
    with pytest.raises(ExecutionConfigError, match="-1, 0 or \\+1"):
        apply_rule(lambda *_: "long", pred, DecisionConfig(), ctx)
    assert apply_rule(lambda *_: -1, pred, DecisionConfig(allow_short=False), ctx) == 0
    assert apply_rule(lambda *_: np.int64(1), pred, DecisionConfig(), ctx) == 1


def test_backtest_when_user_rule_then_it_decides_and_differs_from_builtin_as_written():
    bars = spx_bars(800)
    preds = _predictions(bars)
    builtin = run_backtest(bars, preds, StrategyConfig())
    user = run_backtest(bars, preds, StrategyConfig(rule=RULE))

    assert (builtin.trades["side"] == "short").any(), "the built-in rule goes short here"
    assert len(user.trades) > 5 and (user.trades["side"] == "long").all()  # long only
    assert len(user.trades) < len(builtin.trades)  # it holds longs through flat calls


def test_backtest_when_user_rule_then_fast_path_refuses_and_auto_runs_the_reference_loop():
    bars = spx_bars(600)
    preds = _predictions(bars, seed=2)
    config = StrategyConfig(rule=RULE)

    with pytest.raises(BacktestError, match="not the built-in one"):
        run_backtest(bars, preds, config, path="fast")
    auto = run_backtest(bars, preds, config)
    reference = run_backtest(bars, preds, config, path="reference")
    assert auto.orders["client_id"].tolist() == reference.orders["client_id"].tolist()
    assert auto.equity.to_numpy() == pytest.approx(reference.equity.to_numpy(), abs=1e-9)


def test_backtest_when_builtin_rule_named_explicitly_then_same_as_default_on_fast_path():
    bars = spx_bars(600)
    preds = _predictions(bars, seed=3)
    default = run_backtest(bars, preds, StrategyConfig(), path="fast")
    named = run_backtest(
        bars, preds, StrategyConfig(rule="execution.decision:builtin_rule"), path="fast"
    )
    assert named.orders["client_id"].tolist() == default.orders["client_id"].tolist()


def test_backtest_when_user_rule_then_reference_loop_reason_logged_once_at_info(caplog):
    bars = spx_bars(300)
    preds = _predictions(bars, seed=3)
    config = StrategyConfig(rule=RULE)
    backtest._note_reference_loop.cache_clear()  # other tests in this process may have said it

    with caplog.at_level(logging.INFO, logger="execution.backtest"):
        run_backtest(bars, preds, config)
        run_backtest(bars, preds, config)

    said = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO
            and "event=backtest_reference_loop" in r.getMessage()]
    assert said == [f"event=backtest_reference_loop rule={RULE} reason=the strategy rule {RULE} "
                    "is not the built-in one"]


def test_strategy_json_when_rule_saved_beside_the_model_then_live_reload_carries_it():
    saved = json.dumps(StrategyConfig(rule=RULE).to_dict())  # what the deployable step writes

    loaded = StrategyConfig.from_dict(json.loads(saved))  # what the live worker reads

    assert loaded.rule == RULE
    assert resolve_rule(loaded.rule).__qualname__ == "long_only_hold"
