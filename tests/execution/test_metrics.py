"""Metrics: cross-checked against empyrical, hand-computed examples, and properties."""

from __future__ import annotations

import math

import empyrical
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execution.metrics import (
    InstrumentClass,
    Metrics,
    MetricsError,
    compute_metrics,
    conditional_value_at_risk,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    max_drawdown_duration,
    minimum_track_record_length,
    periods_per_year_for,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    profit_factor,
    returns_from_equity,
    sharpe_ratio,
    value_at_risk,
)

REL = 1e-9
NO_TRADES = pd.DataFrame({"pnl": pd.Series([], dtype="float64")})


def _equity(values: np.ndarray | list[float], freq: str = "D") -> pd.Series:
    index = pd.date_range("2020-01-01", periods=len(values), freq=freq, tz="UTC")
    return pd.Series(np.asarray(values, dtype=float), index=index, name="equity")


def _random_equity() -> pd.Series:
    rng = np.random.default_rng(4)  # a seed with a positive drift realised: PSR above 1/2
    rets = rng.normal(0.0004, 0.012, 600)
    return _equity(100_000.0 * np.concatenate(([1.0], np.cumprod(1.0 + rets))))


def _sp500_equity() -> pd.Series:
    from arch.data import sp500

    closes = sp500.load()["Adj Close"].iloc[-1500:]
    index = pd.DatetimeIndex(closes.index).tz_localize("UTC")
    return pd.Series(closes.to_numpy(dtype=float), index=index, name="equity")


@pytest.fixture(params=["random", "sp500"])
def equity(request: pytest.FixtureRequest) -> pd.Series:
    return _random_equity() if request.param == "random" else _sp500_equity()


def test_compute_metrics_when_compared_with_empyrical_then_definitions_agree(
    equity: pd.Series,
) -> None:
    # Arrange
    rets = equity.pct_change().iloc[1:]
    # Act
    m = compute_metrics(equity, NO_TRADES, periods_per_year=252)
    # Assert
    expected = {
        "total_return": empyrical.cum_returns_final(rets),
        "annual_return": empyrical.annual_return(rets, annualization=252),
        "annual_volatility": empyrical.annual_volatility(rets, annualization=252),
        "sharpe": empyrical.sharpe_ratio(rets, annualization=252),
        "sortino": empyrical.sortino_ratio(rets, annualization=252),
        "calmar": empyrical.calmar_ratio(rets, annualization=252),
        "max_drawdown": empyrical.max_drawdown(rets),
        "var_95": empyrical.value_at_risk(rets, cutoff=0.05),
        "cvar_95": empyrical.conditional_value_at_risk(rets, cutoff=0.05),
    }
    for name, value in expected.items():
        assert getattr(m, name) == pytest.approx(value, rel=REL), name


def test_sharpe_when_annual_risk_free_given_then_equals_empyrical_with_per_bar_rate() -> None:
    # Arrange
    equity = _random_equity()
    rets = returns_from_equity(equity)
    per_bar = 1.03 ** (1 / 252) - 1
    # Act
    m = compute_metrics(equity, NO_TRADES, periods_per_year=252, risk_free=0.03)
    # Assert
    assert m.sharpe == pytest.approx(
        empyrical.sharpe_ratio(rets, risk_free=per_bar, annualization=252), rel=REL
    )
    assert m.sortino == pytest.approx(
        empyrical.sortino_ratio(rets, required_return=per_bar, annualization=252), rel=REL
    )
    assert m.sharpe < compute_metrics(equity, NO_TRADES, periods_per_year=252).sharpe


def test_var_cvar_when_hand_computed_then_match() -> None:
    # Arrange: 21 returns -0.10, -0.09, ..., 0.10
    rets = np.round(np.arange(-10, 11) / 100.0, 10)
    # Act / Assert: 5th percentile at position 0.05 * 20 = 1 -> -0.09; tail = floor(20 * .05)+1
    assert value_at_risk(rets) == pytest.approx(-0.09, rel=REL)
    assert conditional_value_at_risk(rets) == pytest.approx((-0.10 - 0.09) / 2, rel=REL)


def test_max_drawdown_duration_when_recovered_spell_is_longest_then_counts_peak_to_recovery() -> (
    None
):
    # Arrange: spells: bars 2-3 (peak bar 1, back at 4) = 3 bars; bar 5 = 2 bars; bar 7 open = 1
    equity = _equity([100, 110, 105, 100, 111, 108, 112, 109])
    # Act
    bars, time = max_drawdown_duration(equity)
    # Assert
    assert (bars, time) == (3, pd.Timedelta(days=3))


def test_max_drawdown_duration_when_unrecovered_at_end_then_spell_runs_to_last_bar() -> None:
    # Arrange: peak at bar 1, never regained; a short spell earlier at bar 0 -> none
    equity = _equity([100, 120, 110, 115, 119, 90])
    # Act
    bars, time = max_drawdown_duration(equity)
    # Assert
    assert (bars, time) == (4, pd.Timedelta(days=4))


def test_max_drawdown_duration_when_bars_are_irregular_then_time_uses_timestamps() -> None:
    # Arrange: Friday peak, Monday dip, Tuesday recovery -> 2 bars but 4 days
    index = pd.DatetimeIndex(["2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"], tz="UTC")
    equity = pd.Series([100.0, 101.0, 99.0, 102.0], index=index)
    # Act
    bars, time = max_drawdown_duration(equity)
    # Assert
    assert (bars, time) == (2, pd.Timedelta(days=4))


def test_max_drawdown_duration_when_never_underwater_then_zero() -> None:
    assert max_drawdown_duration(_equity([1, 2, 2, 3])) == (0, pd.Timedelta(0))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-1_000_000, 1_000_000), max_size=40).map(
        lambda xs: np.array(xs, dtype=float) * 0.25
    )
)
def test_profit_factor_when_any_trades_then_above_one_exactly_when_total_pnl_positive(
    pnl: np.ndarray,
) -> None:
    # Act
    pf = profit_factor(pnl)
    # Assert
    assert (pf > 1) == (math.fsum(pnl) > 0)
    assert (pf < 1) == (math.fsum(pnl) < 0)


def test_profit_factor_when_edge_cases_then_documented_values() -> None:
    assert math.isnan(profit_factor(np.array([])))
    assert math.isnan(profit_factor(np.array([0.0, 0.0])))
    assert profit_factor(np.array([5.0, 0.0])) == math.inf
    assert profit_factor(np.array([-5.0, -1.0])) == 0.0
    assert profit_factor(np.array([30.0, -10.0, -5.0])) == pytest.approx(2.0)


def test_compute_metrics_when_trades_given_then_trade_stats_come_from_trades_not_bars() -> None:
    # Arrange: the equity rises on most bars, but two of three trades lose
    equity = _equity(np.linspace(100.0, 130.0, 50))
    trades = pd.DataFrame(
        {
            "symbol": ["A", "A", "A"],
            "pnl": [40.0, -5.0, -5.0],
            "costs": [1.0, 1.5, 0.5],
        }
    )
    # Act
    m = compute_metrics(equity, trades, periods_per_year=252)
    # Assert
    assert m.n_trades == 3
    assert m.win_rate == pytest.approx(1 / 3)
    assert m.profit_factor == pytest.approx(4.0)
    assert m.expectancy == pytest.approx(10.0)
    assert m.costs_paid == pytest.approx(3.0)


def test_compute_metrics_when_exposure_and_turnover_given_then_ratios_follow() -> None:
    # Arrange
    equity = _equity([100.0, 100.0, 100.0, 100.0, 100.0])
    exposure = pd.Series([0.0, 1.0, -0.5, 0.0, 1.5], index=equity.index)
    # Act
    m = compute_metrics(
        equity,
        NO_TRADES,
        periods_per_year=252,
        exposure=exposure,
        turnover_notional=800.0,
        costs_paid=2.5,
    )
    # Assert
    assert m.time_in_market == pytest.approx(0.6)
    assert m.mean_gross_exposure == pytest.approx(0.6)
    assert m.turnover == pytest.approx(8.0)
    assert m.annual_turnover == pytest.approx(8.0 * 252 / 4)
    assert m.costs_paid == 2.5
    assert math.isnan(m.sharpe)  # flat equity: 0 / 0
    assert math.isnan(m.calmar)
    assert m.max_drawdown == 0.0


def test_expected_max_sharpe_and_psr_when_paper_example_then_match_published_values() -> None:
    # Arrange: Bailey & Lopez de Prado (2014), section 5: annual SR 2.5 over 1250 days,
    # 100 trials with annualised SR variance 0.5, skew -3, kurtosis 10 -> SR0 0.1132, DSR 0.9004
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    # Act
    dsr = probabilistic_sharpe_ratio(2.5 / math.sqrt(250), 1250, -3.0, 10.0, sr0)
    # Assert
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_deflated_sharpe_when_one_trial_then_equals_psr_against_zero() -> None:
    # Arrange
    equity = _random_equity()
    rets = returns_from_equity(equity).to_numpy()
    m = compute_metrics(equity, NO_TRADES, periods_per_year=252)
    # Act
    dsr = deflated_sharpe_ratio(rets, n_trials=1, sharpe_variance=0.3)
    # Assert
    assert dsr == pytest.approx(m.psr, rel=REL)
    assert m.deflated_sharpe == pytest.approx(m.psr, rel=REL)
    assert 0.5 < m.psr < 1.0  # realised drift is positive -> PSR above one half


@settings(max_examples=60, deadline=None)
@given(
    n1=st.integers(1, 500),
    extra=st.integers(1, 500),
    variance=st.floats(1e-6, 1e-2),
)
def test_deflated_sharpe_when_more_trials_then_never_higher(
    n1: int, extra: int, variance: float
) -> None:
    # Arrange
    rets = returns_from_equity(_random_equity()).to_numpy()
    # Act
    fewer = deflated_sharpe_ratio(rets, n_trials=n1, sharpe_variance=variance)
    more = deflated_sharpe_ratio(rets, n_trials=n1 + extra, sharpe_variance=variance)
    # Assert
    assert more <= fewer
    assert more < fewer or fewer < 1e-12


def test_compute_metrics_when_trial_returns_given_then_dsr_below_psr_and_pbo_set() -> None:
    # Arrange
    rng = np.random.default_rng(3)
    trials = rng.normal(0.0, 0.01, (600, 12))
    equity = _random_equity()
    # Act
    m = compute_metrics(equity, NO_TRADES, periods_per_year=252, trial_returns=trials, n_trials=5)
    # Assert
    assert m.n_trials == 12
    assert m.deflated_sharpe < m.psr
    assert 0.0 <= m.pbo <= 1.0


def test_compute_metrics_when_many_trials_but_no_trial_sharpes_then_dsr_na_with_reason() -> None:
    # Act
    m = compute_metrics(_random_equity(), NO_TRADES, periods_per_year=252, n_trials=20)
    # Assert
    assert math.isnan(m.deflated_sharpe)
    assert "variance of trial Sharpe ratios" in m.notes["deflated_sharpe"]
    assert math.isnan(m.pbo)
    assert m.notes["pbo"]
    assert m.n_trials == 20


def test_compute_metrics_when_fewer_than_two_trials_trade_then_pbo_na_with_reason() -> None:
    # Arrange: one trading trial and two that never traded (constant zero returns)
    rng = np.random.default_rng(5)
    trials = np.zeros((600, 3))
    trials[:, 0] = rng.normal(0.0, 0.01, 600)
    # Act
    m = compute_metrics(_random_equity(), NO_TRADES, periods_per_year=252, trial_returns=trials)
    # Assert
    assert math.isnan(m.pbo)
    assert "1 of 3 trials traded" in m.notes["pbo"]
    assert m.n_trials == 3
    assert math.isnan(m.deflated_sharpe)
    assert "1 with a finite Sharpe ratio" in m.notes["deflated_sharpe"]


def test_compute_metrics_when_returns_constant_then_ratios_na_with_reason() -> None:
    # Arrange: a family that never trades keeps its cash
    equity = _equity(np.full(300, 100_000.0))
    trials = np.random.default_rng(2).normal(0.0, 0.01, (299, 4))
    # Act
    m = compute_metrics(equity, NO_TRADES, periods_per_year=252, trial_returns=trials)
    # Assert
    for name in ("sharpe", "psr", "deflated_sharpe", "min_track_record_length"):
        assert math.isnan(getattr(m, name))
        assert "constant" in m.notes[name]
    assert m.notes["win_rate"] == "no closed trades"
    assert 0.0 <= m.pbo <= 1.0


def test_compute_metrics_when_trial_sharpes_given_then_n_and_variance_come_from_them() -> None:
    # Arrange: 3 recorded return series, but 40 trials (e.g. Optuna) were evaluated on data
    rng = np.random.default_rng(8)
    trials = rng.normal(0.0, 0.01, (600, 3))
    sharpes = np.append(rng.normal(0.0, 0.05, 39), np.nan)  # one trial never traded
    # Act
    m = compute_metrics(
        _random_equity(),
        NO_TRADES,
        periods_per_year=252,
        trial_returns=trials,
        trial_sharpes=sharpes,
    )
    # Assert
    assert m.n_trials == 40
    assert m.sharpe_variance == pytest.approx(np.nanvar(sharpes, ddof=1), rel=REL)
    expected = probabilistic_sharpe_ratio(
        *_per_bar_moments(_random_equity()), expected_max_sharpe(40, m.sharpe_variance)
    )
    assert m.deflated_sharpe == pytest.approx(expected, rel=1e-9)


def _per_bar_moments(equity: pd.Series) -> tuple[float, int, float, float]:
    from scipy import stats

    rets = returns_from_equity(equity).to_numpy()
    return (
        float(np.mean(rets) / np.std(rets, ddof=1)),
        len(rets),
        float(stats.skew(rets)),
        float(stats.kurtosis(rets, fisher=False)),
    )


def test_min_track_record_length_when_record_is_that_long_then_psr_hits_confidence() -> None:
    # Arrange: the DSR paper's moments (SR 2.5 a year over 250 days, skew -3, kurtosis 10)
    sharpe, skew, kurt = 2.5 / math.sqrt(250), -3.0, 10.0
    # Act
    bars = minimum_track_record_length(sharpe, skew, kurt, benchmark=0.0, confidence=0.95)
    # Assert: PSR reaches 95% exactly at MinTRL and not a bar before
    assert probabilistic_sharpe_ratio(sharpe, bars, skew, kurt) == pytest.approx(0.95, abs=1e-12)
    assert probabilistic_sharpe_ratio(sharpe, math.floor(bars) - 1, skew, kurt) < 0.95
    # Fatter left tails need a longer record; a non-positive edge never gets there.
    assert minimum_track_record_length(sharpe, 0.0, 3.0) < bars
    assert minimum_track_record_length(-0.01, 0.0, 3.0) == math.inf


def test_selection_when_best_of_50_noise_strategies_then_psr_fooled_often_dsr_rarely() -> None:
    # Arrange: 200 experiments; in each, 50 zero-edge strategies over 1000 bars, keep the best
    n_experiments, n_strategies, n_bars, confidence = 200, 50, 1000, 0.95
    rng = np.random.default_rng(2014)
    psr_fooled = dsr_fooled = 0
    for _ in range(n_experiments):
        rets = rng.normal(0.0, 0.01, (n_bars, n_strategies))
        sharpes = rets.mean(axis=0) / rets.std(axis=0, ddof=1)
        best = rets[:, int(np.argmax(sharpes))]
        equity = _equity(np.concatenate(([1.0], np.cumprod(1.0 + best))))
        # Act
        m = compute_metrics(equity, NO_TRADES, periods_per_year=252, trial_sharpes=sharpes)
        psr_fooled += m.psr > confidence
        dsr_fooled += m.deflated_sharpe > confidence
    # Assert: under the null each SR is ~N(0, 1/T), so the best one's PSR clears 95% with
    # probability 1 - 0.95^50; the DSR is built to keep the false positives near 1 - 95%.
    psr_rate, dsr_rate = psr_fooled / n_experiments, dsr_fooled / n_experiments
    expected_psr = 1.0 - confidence**n_strategies
    tolerance = 4.0 * math.sqrt(expected_psr * (1.0 - expected_psr) / n_experiments)
    assert abs(psr_rate - expected_psr) <= tolerance + 0.02
    assert dsr_rate <= 1.0 - confidence


def test_pbo_when_one_trial_is_genuinely_better_then_low() -> None:
    # Arrange
    rng = np.random.default_rng(11)
    trials = rng.normal(0.0, 0.01, (1000, 20))
    trials[:, 4] += 0.002
    # Act
    result = probability_of_backtest_overfitting(trials, n_blocks=8)
    # Assert
    assert result.n_splits == 70
    assert len(result.logits) == 70
    assert result.pbo < 0.1


def test_pbo_when_trials_are_pure_noise_then_around_one_half() -> None:
    # Arrange: one noise matrix's PBO varies a lot (splits overlap), so average 20 seeds
    pbos = []
    for seed in range(20):
        trials = np.random.default_rng(seed).normal(0.0, 0.01, (400, 20))
        # Act
        pbos.append(probability_of_backtest_overfitting(trials, n_blocks=8).pbo)
    # Assert
    assert 0.35 < float(np.mean(pbos)) < 0.65


def test_pbo_when_one_trial_dominates_every_block_then_all_logits_maximal() -> None:
    # Arrange
    rng = np.random.default_rng(1)
    trials = rng.normal(0.0, 0.01, (160, 5))
    trials[:, 2] = np.abs(trials[:, 2]) + 0.05
    # Act
    result = probability_of_backtest_overfitting(trials, n_blocks=4)
    # Assert
    assert result.pbo == 0.0
    assert result.logits == pytest.approx([math.log(5.0)] * 6)


def test_pbo_when_bad_shapes_then_raises_precise_errors() -> None:
    with pytest.raises(MetricsError, match="at least 2 trials"):
        probability_of_backtest_overfitting(np.zeros((100, 1)))
    with pytest.raises(MetricsError, match="even number"):
        probability_of_backtest_overfitting(np.zeros((100, 3)), n_blocks=5)
    with pytest.raises(MetricsError, match="too few"):
        probability_of_backtest_overfitting(np.zeros((10, 3)), n_blocks=8)


@pytest.mark.parametrize(
    ("bar", "klass", "expected"),
    [
        ("1d", InstrumentClass.EQUITY, 252.0),
        ("1d", InstrumentClass.CRYPTO, 365.0),
        ("1h", InstrumentClass.FX, 6240.0),
        ("1h", "crypto", 8760.0),
        ("1h", "equity", 1638.0),
        ("1w", "fx", 52.0),
        (pd.Timedelta(minutes=15), "crypto", 35040.0),
    ],
)
def test_periods_per_year_for_when_known_bar_and_class_then_expected(
    bar: str | pd.Timedelta, klass: str, expected: float
) -> None:
    assert periods_per_year_for(bar, klass) == pytest.approx(expected)


def test_periods_per_year_for_when_unknown_class_then_raises() -> None:
    with pytest.raises(MetricsError, match="unknown instrument class"):
        periods_per_year_for("1d", "bonds")


def test_compute_metrics_when_index_is_naive_then_raises() -> None:
    equity = _equity([1.0, 2.0]).tz_localize(None)
    with pytest.raises(MetricsError, match="tz-aware UTC"):
        compute_metrics(equity, NO_TRADES, periods_per_year=252)


def test_compute_metrics_when_equity_not_positive_then_raises() -> None:
    with pytest.raises(MetricsError, match="> 0"):
        compute_metrics(_equity([1.0, 0.0, 1.0]), NO_TRADES, periods_per_year=252)


def test_compute_metrics_when_called_then_caller_frames_untouched() -> None:
    # Arrange
    equity = _random_equity()
    trades = pd.DataFrame({"pnl": [1.0, -2.0], "costs": [0.1, 0.1]})
    before_eq, before_tr = equity.copy(), trades.copy()
    # Act
    compute_metrics(equity, trades, periods_per_year=252)
    # Assert
    pd.testing.assert_series_equal(equity, before_eq)
    pd.testing.assert_frame_equal(trades, before_tr)


def test_metrics_to_dict_when_round_tripped_then_equal() -> None:
    # Arrange
    m = compute_metrics(_random_equity(), pd.DataFrame({"pnl": [3.0, 1.0]}), periods_per_year=252)
    # Act
    back = Metrics.from_dict(m.to_dict())
    # Assert: NaN fields compare unequal, so compare their NaN-ness separately
    for key, value in m.to_dict().items():
        other = back.to_dict()[key]
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(other), key
        else:
            assert other == value, key
    assert m.profit_factor == math.inf


def test_metrics_to_numeric_dict_when_called_then_all_floats_with_duration_in_seconds() -> None:
    # Arrange
    m = compute_metrics(_equity([100, 110, 105, 100, 111]), NO_TRADES, periods_per_year=252)
    # Act
    numeric = m.to_numeric_dict()
    # Assert
    assert all(type(v) is float for v in numeric.values())
    assert numeric["max_drawdown_duration_s"] == 3 * 86400.0
    assert numeric["max_drawdown_duration_bars"] == 3.0
    assert "max_drawdown_duration" not in numeric


def test_sharpe_ratio_when_constant_nonzero_returns_then_infinite() -> None:
    assert sharpe_ratio(np.full(10, 0.001), 252) == math.inf
