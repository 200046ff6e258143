"""The compiled fast path on one symbol equals the reference loop exactly, and dispatch is right."""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execution import _fast
from execution.backtest import BacktestError, BacktestResult, _client_ids, run_backtest
from execution.config import (
    CostModel,
    DecisionConfig,
    InstrumentConfig,
    RiskLimits,
    SizingConfig,
    StopConfig,
    StrategyConfig,
)
from tests.execution._synth import random_predictions, sma_predictions, synthetic_bars

pytestmark = pytest.mark.skipif(not _fast.available(), reason="numba is not installed")

LOOSE = RiskLimits(
    max_position_frac=100.0,
    max_gross_exposure=100.0,
    max_risk_per_trade=1.0,
    daily_loss_halt=1.0,
    max_drawdown_halt=1.0,
    drawdown_derisk_start=1.0,
    max_trades_per_day=1_000_000,
)

CONFIGS: dict[str, StrategyConfig] = {
    "default": StrategyConfig(),
    "ff_atr_uncapped": StrategyConfig(
        costs=CostModel(max_volume_share=None),
        stops=StopConfig(kind="atr", atr_mult=2.0),
    ),
    "ff_atr_tp_volcap_volslip": StrategyConfig(
        stops=StopConfig(kind="atr", take_profit_mult=2.0),
        costs=CostModel(commission_min=1.0, slippage_vol_mult=0.2, max_volume_share=0.1),
    ),
    "fixed_tp_tiny_volcap": StrategyConfig(
        stops=StopConfig(kind="fixed", stop_pct=0.01, take_profit_mult=1.5),
        costs=CostModel(max_volume_share=0.005),
    ),
    "trailing_kelly": StrategyConfig(
        stops=StopConfig(kind="trailing", stop_pct=0.01), sizing=SizingConfig(method="kelly")
    ),
    "trailing_tp_next_close": StrategyConfig(
        stops=StopConfig(kind="trailing", stop_pct=0.008, take_profit_mult=3.0),
        fill="next_close",
        costs=CostModel(max_volume_share=None),
    ),
    "voltarget_fixed_next_close": StrategyConfig(
        stops=StopConfig(kind="fixed", stop_pct=0.015),
        sizing=SizingConfig(method="vol_target", max_leverage=2.0),
        fill="next_close",
    ),
    "voltarget_none_short_window": StrategyConfig(
        sizing=SizingConfig(method="vol_target", target_vol=0.5),
        vol_window=5,
        costs=CostModel(slippage_vol_mult=0.5, max_volume_share=None),
    ),
    "fixed_quantity_loose": StrategyConfig(
        sizing=SizingConfig(method="fixed_quantity", fixed_quantity=50.0),
        stops=StopConfig(kind="atr", atr_mult=1.0, take_profit_mult=1.0, atr_period=3),
        risk=LOOSE,
    ),
    "long_only_kelly_margin": StrategyConfig(
        sizing=SizingConfig(method="kelly", kelly_fraction=1.0, kelly_cap=1.0),
        decision=DecisionConfig(allow_short=False, abstain_margin=0.1, min_confidence=0.3),
    ),
    "daily_loss_halt": StrategyConfig(
        risk=RiskLimits(daily_loss_halt=0.002),
        sizing=SizingConfig(method="fixed_quantity", fixed_quantity=200.0),
        costs=CostModel(commission_bps=20.0, max_volume_share=None),
    ),
    "drawdown_derisk_and_halt": StrategyConfig(
        risk=RiskLimits(drawdown_derisk_start=0.005, max_drawdown_halt=0.03),
        sizing=SizingConfig(method="vol_target", target_vol=1.0, max_leverage=3.0),
        costs=CostModel(commission_bps=10.0, max_volume_share=None),
    ),
    "max_trades_per_day": StrategyConfig(
        risk=RiskLimits(max_trades_per_day=2), stops=StopConfig(kind="fixed")
    ),
    "zero_trades_allowed": StrategyConfig(risk=RiskLimits(max_trades_per_day=0)),
    "commission_min_heavy": StrategyConfig(
        costs=CostModel(commission_bps=0.0, commission_min=25.0, spread_bps=10.0)
    ),
    "keep_partials_volume_window": StrategyConfig(
        costs=CostModel(max_volume_share=0.02, volume_window=5),
        stops=StopConfig(kind="atr", take_profit_mult=2.0),
        partial_fill="keep",
        partial_fill_bars=4,
    ),
    "leveraged_sizing_cash_bound": StrategyConfig(
        sizing=SizingConfig(method="kelly", kelly_fraction=1.0, kelly_cap=3.0, max_leverage=3.0),
        risk=LOOSE,
        costs=CostModel(max_volume_share=None, commission_min=3.0),
    ),
    "instrument_steps_and_limits": StrategyConfig(
        sizing=SizingConfig(method="fixed_quantity", fixed_quantity=333.0),
        instruments={"AAA": InstrumentConfig(quantity_step=25.0, max_quantity=400.0)},
        risk=LOOSE,
    ),
}


def _same_value(a: Any, b: Any, where: str) -> None:
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            _same_value(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _same_value(a[k], b[k], f"{where}[{k}]")
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert type(a) is type(b), where
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_result(ref: BacktestResult, fast: BacktestResult) -> None:
    for name in ("orders", "fills", "trades", "positions"):
        pd.testing.assert_frame_equal(getattr(ref, name), getattr(fast, name), check_exact=True)
    pd.testing.assert_series_equal(ref.equity, fast.equity, check_exact=True)
    pd.testing.assert_series_equal(ref.exposure, fast.exposure, check_exact=True)
    _same_value(ref.final_state, fast.final_state, "final_state")
    assert ref.unrealized_pnl == fast.unrealized_pnl


def _both(
    bars: pd.DataFrame, preds: pd.DataFrame, config: StrategyConfig
) -> tuple[BacktestResult, BacktestResult]:
    return (
        run_backtest(bars, preds, config, path="reference"),
        run_backtest(bars, preds, config, path="fast"),
    )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fast_path_when_config_varies_then_identical_to_reference(name: str) -> None:
    bars = synthetic_bars(700, seed=11)
    preds = random_predictions(bars, seed=12)

    ref, fast = _both(bars, preds, CONFIGS[name])

    assert_same_result(ref, fast)
    assert len(ref.fills) > 0 or name == "zero_trades_allowed"


def test_fast_path_when_features_exercised_then_partial_fills_stops_and_halts_occur() -> None:
    bars = synthetic_bars(700, seed=11)
    preds = random_predictions(bars, seed=12)

    capped = run_backtest(bars, preds, CONFIGS["fixed_tp_tiny_volcap"], path="fast")
    stops = run_backtest(bars, preds, CONFIGS["fixed_quantity_loose"], path="fast")
    halted = run_backtest(bars, preds, CONFIGS["max_trades_per_day"], path="fast")

    assert capped.fills["client_id"].duplicated().any()  # one order filled over several bars
    assert len(capped.fills) > 256  # past the kernel's first buffers: it grew them and resumed
    kinds = set(stops.orders["intent"])
    assert kinds == {"entry", "exit"}
    assert (~stops.fills["client_id"].isin(stops.orders["client_id"])).sum() > 5  # stop / tp
    per_day = halted.orders[halted.orders["intent"] == "entry"].groupby(halted.orders["ts"].dt.date)
    assert per_day.size().max() <= 2


def test_fast_path_when_sma_signals_long_only_then_identical_to_reference() -> None:
    bars = synthetic_bars(1500, seed=3)
    preds = sma_predictions(bars)
    config = StrategyConfig(
        costs=CostModel(max_volume_share=None),
        stops=StopConfig(kind="atr", atr_mult=2.0),
        decision=DecisionConfig(allow_short=False),
    )

    ref, fast = _both(bars, preds, config)

    assert_same_result(ref, fast)
    assert len(ref.trades) > 10


def test_fast_path_when_bars_shuffled_untagged_and_predictions_sparse_then_identical() -> None:
    bars = synthetic_bars(500, seed=21).drop(columns=["timeframe"])
    preds = random_predictions(bars, seed=22)
    preds = preds.iloc[::3]
    extra = preds.iloc[:4].assign(ts=preds["ts"].iloc[:4] + pd.Timedelta("30min"))
    preds = pd.concat([preds, extra], ignore_index=True)
    shuffled = bars.sample(frac=1.0, random_state=1)
    config = StrategyConfig(
        stops=StopConfig(kind="trailing", stop_pct=0.01, take_profit_mult=2.0), fill="next_close"
    )

    ref, fast = _both(shuffled, preds, config)

    assert_same_result(ref, fast)


def test_fast_path_when_daily_bars_span_days_then_day_state_identical() -> None:
    bars = synthetic_bars(400, seed=5, freq="1D")
    bars["timeframe"] = "1d"
    preds = random_predictions(bars, seed=6)
    config = StrategyConfig(
        risk=RiskLimits(daily_loss_halt=0.01, max_trades_per_day=1),
        stops=StopConfig(kind="atr", take_profit_mult=1.0),
        fill="next_close",
    )

    ref, fast = _both(bars, preds, config)

    assert_same_result(ref, fast)


_COSTS = st.builds(
    CostModel,
    commission_bps=st.sampled_from([0.0, 1.0, 5.0]),
    commission_min=st.sampled_from([0.0, 2.0]),
    spread_bps=st.sampled_from([0.0, 2.0]),
    slippage_bps=st.sampled_from([0.0, 1.0]),
    slippage_vol_mult=st.sampled_from([0.0, 0.3]),
    max_volume_share=st.sampled_from([None, 0.0, 0.003, 0.05, 1.0]),
    volume_window=st.sampled_from([1, 3]),
)
_SIZING = st.builds(
    SizingConfig,
    method=st.sampled_from(["fixed_fractional", "vol_target", "kelly", "fixed_quantity"]),
    risk_per_trade=st.sampled_from([0.005, 0.02]),
    max_leverage=st.sampled_from([0.5, 1.0, 3.0]),
    fixed_quantity=st.sampled_from([1.0, 150.0]),
)
_STOPS = st.builds(
    StopConfig,
    kind=st.sampled_from(["none", "fixed", "atr", "trailing"]),
    stop_pct=st.sampled_from([0.005, 0.02]),
    atr_mult=st.sampled_from([0.5, 2.0]),
    take_profit_mult=st.sampled_from([None, 0.8, 2.0]),
    atr_period=st.sampled_from([1, 14]),
)
_RISK = st.builds(
    RiskLimits,
    max_position_frac=st.sampled_from([0.2, 0.5, 2.0]),
    max_risk_per_trade=st.sampled_from([0.005, 0.02]),
    daily_loss_halt=st.sampled_from([0.003, 0.05]),
    max_drawdown_halt=st.sampled_from([0.02, 0.25]),
    drawdown_derisk_start=st.sampled_from([0.0, 0.01]),
    max_trades_per_day=st.sampled_from([0, 3, 20]),
)
_CONFIG = st.builds(
    StrategyConfig,
    costs=_COSTS,
    sizing=_SIZING,
    stops=_STOPS,
    risk=_RISK,
    decision=st.builds(
        DecisionConfig,
        allow_short=st.booleans(),
        abstain_margin=st.sampled_from([0.0, 0.2]),
    ),
    fill=st.sampled_from(["next_open", "next_close"]),
    vol_window=st.sampled_from([2, 20]),
    partial_fill=st.sampled_from(["cancel", "keep"]),
    partial_fill_bars=st.sampled_from([1, 3]),
    allow_margin=st.booleans(),
    instruments=st.sampled_from(
        [
            {},
            {"AAA": InstrumentConfig(quantity_step=5.0, min_quantity=10.0, max_quantity=400.0)},
            {"AAA": InstrumentConfig(max_volume_share=0.0)},
        ]
    ),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(config=_CONFIG, seed=st.integers(0, 2**16))
def test_fast_path_when_any_supported_config_then_identical_to_reference(
    config: StrategyConfig, seed: int
) -> None:
    bars = synthetic_bars(300, seed=seed)
    preds = random_predictions(bars, seed=seed + 1)

    ref, fast = _both(bars, preds, config)

    assert_same_result(ref, fast)


def test_run_backtest_when_one_symbol_then_fast_path_runs(caplog: pytest.LogCaptureFixture) -> None:
    bars = synthetic_bars(100, seed=1)
    caplog.set_level(logging.DEBUG, logger="execution.backtest")

    run_backtest(bars, random_predictions(bars), StrategyConfig())

    assert "ran the compiled fast path" in caplog.text


def test_run_backtest_when_numba_missing_then_reference_loop_runs_silently(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bars = synthetic_bars(200, seed=2)
    preds = random_predictions(bars)
    expected = run_backtest(bars, preds, StrategyConfig(), path="fast")
    monkeypatch.setattr(_fast, "numba", None)
    caplog.set_level(logging.DEBUG, logger="execution.backtest")

    result = run_backtest(bars, preds, StrategyConfig())

    assert "runs the reference loop: numba is not installed" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert_same_result(result, expected)


def test_run_backtest_when_sub_microsecond_timestamps_then_fast_path_declines() -> None:
    bars = synthetic_bars(50, seed=3)
    bars["ts"] = bars["ts"] + pd.Timedelta(nanoseconds=1)
    preds = random_predictions(bars)

    with pytest.raises(BacktestError, match="sub-microsecond"):
        run_backtest(bars, preds, StrategyConfig(), path="fast")


def test_run_backtest_when_inputs_invalid_then_reference_errors_raised() -> None:
    bars = synthetic_bars(20, seed=4)
    preds = random_predictions(bars)
    bad = preds.assign(p_up=preds["p_up"] + 0.5)

    with pytest.raises(BacktestError, match="duplicate"):
        run_backtest(pd.concat([bars, bars]), preds, StrategyConfig())
    with pytest.raises(ValueError, match="prediction probabilities"):
        run_backtest(bars, bad, StrategyConfig())
    with pytest.raises(BacktestError, match="path must be one of"):
        run_backtest(bars, preds, StrategyConfig(), path="turbo")


def test_client_ids_when_timestamps_have_microseconds_then_match_make_client_id() -> None:
    from execution.domain import make_client_id

    ts = pd.DatetimeIndex(
        ["2021-01-04 00:00:00", "2021-01-04 09:30:00.000123", "1999-12-31 23:59:59.5"], tz="UTC"
    )
    ns = ts.as_unit("ns").asi8

    ids = _client_ids("s", "SYM", "1h", ns, np.array(["entry", "exit", "stop"], dtype=object))

    assert [x.decode() for x in ids] == [
        make_client_id("s", "SYM", t.to_pydatetime(), intent, timeframe="1h")
        for t, intent in zip(ts, ["entry", "exit", "stop"], strict=True)
    ]


def test_kernel_when_compiled_then_order_lifecycle_rules_are_the_reference_functions() -> None:
    from execution import ledger, paper, stops

    shared = {
        "_cash_limited": paper.cash_limited_quantity,
        "_end_of_bar_step": paper.end_of_bar_step,
        "_fill_complete": paper.fill_complete,
        "_in_flight_units": ledger.in_flight_units,
        "_committed_direction": ledger.committed_direction,
        "_fully_filled": ledger.fully_filled,
        "_opens_protection": stops.opens_protection,
    }

    for name, rule in shared.items():
        assert getattr(_fast, name).py_func.__code__ is rule.__code__, name


def test_client_ids_when_messages_straddle_sha256_blocks_then_equal_hashlib() -> None:
    import hashlib

    from execution.domain import make_client_id

    messages = [("m" * size).encode() for size in range(0, 200)]
    messages.append("stratégie|SYM|1h|2021-01-04T00:00:00+00:00|entry".encode())

    ids = _fast.client_ids(np.array(messages, dtype=object).astype("S"))

    assert [x.decode() for x in ids] == [
        "cf" + hashlib.sha256(m).hexdigest()[:16] for m in messages
    ]
    long_name = "a-strategy-name-long-enough-to-need-a-second-sha256-block"
    bar_ts = pd.Timestamp("2021-01-04", tz="UTC")
    got = _client_ids(long_name, "SYM", "", np.array([bar_ts.value]), np.array(["entry"]))
    assert got[0].decode() == make_client_id(long_name, "SYM", bar_ts.to_pydatetime(), "entry")


def test_protective_client_ids_when_many_entries_then_match_protective_client_id() -> None:
    from execution.backtest import _protective_client_ids
    from execution.paper import protective_client_id

    entries = _client_ids(
        "s", "SYM", "1m", np.arange(4) * 60_000_000_000, np.array(["entry"] * 4, dtype=object)
    )
    stop = np.array([True, False, True, False])

    ids = _protective_client_ids(entries, stop)

    assert [x.decode() for x in ids] == [
        protective_client_id(e.decode(), "stop" if k else "take_profit")
        for e, k in zip(entries, stop, strict=True)
    ]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["SYN"] * 1000, "SYN"),
        (["SYN"] * 999 + ["SYM"], None),
        (["SYN", "SYNX"], None),
        (["SYNX", "SYN"], None),
        (["SYN", None], None),
        (["é", "é"], "é"),
        (["", ""], ""),
        (["", "a"], None),
        (["ab", "ba"], None),
    ],
)
def test_single_value_when_arrow_strings_then_as_comparing_every_row(
    values: list[str | None], expected: str | None
) -> None:
    col = pd.Series(values, dtype=pd.StringDtype("pyarrow", na_value=np.nan))

    assert _fast._single_value(col) == expected
    assert _fast._single_value(col.iloc[1:]) == (values[1] if len(set(values[1:])) == 1 else None)
    assert _fast._single_value(col.astype(object)) == expected


def test_iso_utc_when_any_instant_in_range_then_equals_isoformat() -> None:
    from datetime import UTC, datetime, timedelta

    rng = np.random.default_rng(7)
    lo, hi = pd.Timestamp.min.value // 1000 + 1, pd.Timestamp.max.value // 1000
    us = rng.integers(lo, hi, 5000)
    us[::2] = us[::2] // 1_000_000 * 1_000_000 + 1_000_000  # whole seconds: no fraction part
    edges = [0, -1, 1, 951_782_400_000_000, 951_868_799_999_999, 4_102_444_800_000_000, lo, hi]
    us = np.r_[us, edges]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)

    got = _fast.iso_utc(us * 1000)

    assert [x.decode() for x in got] == [
        (epoch + timedelta(microseconds=int(u))).isoformat() for u in us
    ]
