"""The compiled fast path on portfolios equals the reference loop exactly (issue 8).

Several symbols share one account: cash, equity, the day's trade count and the drawdown state
are the portfolio's, and the risk governor caps an entry by what the other symbols hold. The
bars are merged on one time axis in (ts, symbol) order with ragged calendars (symbols start
late, skip bars), as live feeds deliver them.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execution import _fast
from execution.backtest import BacktestResult, run_backtest
from execution.config import (
    CostModel,
    InstrumentConfig,
    RiskLimits,
    SizingConfig,
    StopConfig,
    StrategyConfig,
)
from tests.execution._synth import random_predictions, synthetic_bars
from tests.execution.test_fast_path import _CONFIG, CONFIGS, assert_same_result

pytestmark = pytest.mark.skipif(not _fast.available(), reason="numba is not installed")

SYMBOLS = ("EEE", "BBB", "DDD", "AAA", "CCC")


def ragged_bars(n: int, symbols: tuple[str, ...], seed: int, keep: float = 0.85) -> pd.DataFrame:
    """Bars of several symbols on one hourly axis; each symbol misses about 1 - keep of them
    and the later symbols start later."""
    bars = synthetic_bars(n, symbols=symbols, seed=seed)
    rng = np.random.default_rng(seed + 100)
    rank = bars["symbol"].map({s: k for k, s in enumerate(symbols)})
    start = bars.groupby("symbol")["ts"].transform("min") + pd.to_timedelta(rank * 7, unit="h")
    kept = (rng.random(len(bars)) < keep) & (bars["ts"] >= start)
    return bars[kept].sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _both(
    bars: pd.DataFrame, preds: pd.DataFrame, config: StrategyConfig
) -> tuple[BacktestResult, BacktestResult]:
    return (
        run_backtest(bars, preds, config, path="reference"),
        run_backtest(bars, preds, config, path="fast"),
    )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fast_portfolio_when_config_varies_then_identical_to_reference(name: str) -> None:
    bars = ragged_bars(240, SYMBOLS, seed=31)
    preds = random_predictions(bars, seed=32)

    ref, fast = _both(bars, preds, CONFIGS[name])

    assert_same_result(ref, fast)
    assert ref.fills["symbol"].nunique() >= 2 or name == "zero_trades_allowed"


def test_fast_portfolio_when_gross_exposure_binds_then_other_symbols_cut_entries() -> None:
    bars = ragged_bars(300, SYMBOLS, seed=41)
    preds = random_predictions(bars, seed=42)
    tight = StrategyConfig(
        sizing=SizingConfig(method="fixed_quantity", fixed_quantity=300.0),
        risk=RiskLimits(max_position_frac=1.0, max_gross_exposure=0.9, max_risk_per_trade=1.0),
        costs=CostModel(max_volume_share=None),
        stops=StopConfig(kind="atr", take_profit_mult=2.0),
    )

    ref, fast = _both(bars, preds, tight)

    assert_same_result(ref, fast)
    # 300 units at ~100 is 30% of the account, under max_position_frac: what cuts an entry is
    # the gross cap over what the other symbols hold, which a loose cap never does
    loose = dataclasses.replace(
        tight,
        risk=dataclasses.replace(tight.risk, max_gross_exposure=100.0),
    )
    unbound = run_backtest(bars, preds, loose, path="fast")
    cut = fast.orders[fast.orders["intent"] == "entry"]["quantity"] < 300.0
    assert cut.sum() > 10
    assert (unbound.orders[unbound.orders["intent"] == "entry"]["quantity"] < 300.0).sum() == 0


def test_fast_portfolio_when_timeframes_differ_per_symbol_then_identical() -> None:
    bars = ragged_bars(200, ("AAA", "BBB", "CCC"), seed=51)
    bars["timeframe"] = bars["symbol"].map({"AAA": "1h", "BBB": "4h", "CCC": "1d"})
    preds = random_predictions(bars, seed=52)
    config = StrategyConfig(
        stops=StopConfig(kind="trailing", stop_pct=0.01, take_profit_mult=2.0),
        fill="next_close",
        costs=CostModel(max_volume_share=0.05),
    )

    ref, fast = _both(bars, preds, config)

    assert_same_result(ref, fast)


_TIGHT = st.builds(
    StrategyConfig,
    initial_cash=st.sampled_from([2_000.0, 20_000.0, 100_000.0]),
    sizing=st.builds(
        SizingConfig,
        method=st.sampled_from(["fixed_fractional", "kelly", "fixed_quantity"]),
        max_leverage=st.sampled_from([1.0, 3.0]),
        fixed_quantity=st.sampled_from([40.0, 400.0]),
    ),
    stops=st.builds(
        StopConfig,
        kind=st.sampled_from(["fixed", "atr", "trailing"]),
        stop_pct=st.sampled_from([0.004, 0.02]),
        take_profit_mult=st.sampled_from([None, 1.0]),
    ),
    costs=st.builds(
        CostModel,
        commission_min=st.sampled_from([0.0, 2.0]),
        max_volume_share=st.sampled_from([None, 0.01, 0.2]),
        volume_window=st.sampled_from([1, 4]),
    ),
    risk=st.builds(
        RiskLimits,
        max_position_frac=st.sampled_from([0.3, 2.0]),
        max_gross_exposure=st.sampled_from([0.5, 1.5, 5.0]),
        max_trades_per_day=st.sampled_from([4, 50]),
        daily_loss_halt=st.sampled_from([0.01, 0.5]),
    ),
    partial_fill=st.sampled_from(["cancel", "keep"]),
    partial_fill_bars=st.sampled_from([2, 3]),
    allow_margin=st.booleans(),
    instruments=st.sampled_from(
        [
            {},
            # entries below the minimum and above the maximum are refused
            {"BBB": InstrumentConfig(quantity_step=10.0, min_quantity=30.0, max_quantity=250.0)},
            {"AAA": InstrumentConfig(max_volume_share=0.002), "CCC": InstrumentConfig()},
        ]
    ),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=st.one_of(_TIGHT, _CONFIG),
    seed=st.integers(0, 2**16),
    n_symbols=st.integers(2, 5),
)
def test_fast_portfolio_when_random_portfolio_then_identical_to_reference(
    config: StrategyConfig, seed: int, n_symbols: int
) -> None:
    bars = ragged_bars(150, SYMBOLS[:n_symbols], seed=seed, keep=0.8)
    preds = random_predictions(bars, seed=seed + 1).sample(frac=0.9, random_state=seed)

    ref, fast = _both(bars, preds, config)

    assert_same_result(ref, fast)


def test_run_backtest_when_several_symbols_then_fast_path_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bars = ragged_bars(100, ("AAA", "BBB"), seed=1)
    preds = random_predictions(bars)
    caplog.set_level(logging.DEBUG, logger="execution.backtest")

    auto = run_backtest(bars, preds, StrategyConfig())

    assert "ran the compiled fast path" in caplog.text
    caplog.clear()
    ref = run_backtest(bars, preds, StrategyConfig(), path="reference")
    assert "runs the reference loop: requested" in caplog.text
    assert_same_result(ref, auto)


def test_run_backtest_when_a_symbol_has_two_timeframes_then_reference_runs_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bars = ragged_bars(60, ("AAA", "BBB"), seed=2)
    bars.loc[bars.index[:3], "timeframe"] = "4h"
    bars = bars.drop_duplicates(["symbol", "ts"])
    preds = random_predictions(bars)
    caplog.set_level(logging.DEBUG, logger="execution.backtest")

    auto = run_backtest(bars, preds, StrategyConfig())

    assert "runs the reference loop: several timeframes for one symbol" in caplog.text
    assert_same_result(run_backtest(bars, preds, StrategyConfig(), path="reference"), auto)
