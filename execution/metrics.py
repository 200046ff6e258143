"""Performance metrics of a backtest: one module of definitions, pure functions over plain pandas.

Conventions, so that every number in a report means one thing:

- Returns are simple per-bar returns of the equity curve, r_t = E_t / E_{t-1} - 1; an equity
  curve of n points gives n - 1 returns. Nothing is resampled to days: annualisation uses the
  explicit `periods_per_year` of the bar frequency (see `periods_per_year_for`).
- Return-based definitions follow empyrical (quantopian/empyrical, empyrical-reloaded) so the
  numbers can be cross-checked: annual return is geometric (CAGR from the number of bars),
  volatility and Sharpe use the sample standard deviation (ddof=1), Sortino's denominator is
  empyrical's downside deviation sqrt(mean(min(r - mar, 0)^2)) over *all* bars, VaR is the
  linearly interpolated 5th percentile, CVaR the mean of the worst floor((n - 1) * 0.05) + 1
  returns. Max drawdown, VaR and CVaR are returns, so losses are negative numbers.
- Trade statistics come from the trades frame (one row per round trip, `pnl` net of costs),
  never from bars.
- The deflated Sharpe ratio (Bailey & Lopez de Prado 2014), the minimum track record length
  (Bailey & Lopez de Prado 2012) and the probability of backtest overfitting via CSCV (Bailey,
  Borwein, Lopez de Prado & Zhu 2016) use *per-bar* (non-annualised) Sharpe ratios, as in the
  papers.
- A number the inputs cannot define is NaN, never an exception, and `Metrics.notes` says why
  (constant returns, fewer than two trials with a Sharpe ratio, too few rows for CSCV), so a
  degenerate strategy still gets a report.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import timedelta
from enum import StrEnum
from typing import Any, Final

import numpy as np
import pandas as pd
from scipy import stats

from quality.schema import timeframe_to_timedelta

__all__ = [
    "InstrumentClass",
    "Metrics",
    "MetricsError",
    "PboResult",
    "annual_return",
    "annual_volatility",
    "calmar_ratio",
    "compute_metrics",
    "conditional_value_at_risk",
    "deflated_sharpe_ratio",
    "downside_deviation",
    "drawdown_series",
    "expectancy",
    "expected_max_sharpe",
    "max_drawdown",
    "max_drawdown_duration",
    "minimum_track_record_length",
    "pbo_with_reason",
    "periods_per_year_for",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "profit_factor",
    "returns_from_equity",
    "sharpe_ratio",
    "sortino_ratio",
    "total_return",
    "value_at_risk",
    "win_rate",
]

logger = logging.getLogger(__name__)

_EULER_GAMMA: Final = 0.5772156649015329
_DAY: Final = timedelta(days=1)
_WEEK: Final = timedelta(weeks=1)


class MetricsError(ValueError):
    """Inputs a metric cannot be computed from (wrong index, non-positive equity, bad shapes)."""


class InstrumentClass(StrEnum):
    """How an instrument's sessions fill a year, which fixes the annualisation factor."""

    EQUITY = "equity"  # exchange sessions: 252 days a year, 6.5 hours a day
    FX = "fx"  # 24x5: 260 days a year, 24 hours a day
    CRYPTO = "crypto"  # 24x7: 365 days a year, 24 hours a day


# (trading days per year, trading hours per day) for each class.
_SESSIONS: Final = {
    InstrumentClass.EQUITY: (252, 6.5),
    InstrumentClass.FX: (260, 24.0),
    InstrumentClass.CRYPTO: (365, 24.0),
}


def periods_per_year_for(
    bar: str | timedelta | pd.Timedelta, instrument_class: InstrumentClass | str
) -> float:
    """Bars per year for a bar length (timeframe code or timedelta) and an instrument class.

    Intraday bars count the bars in the trading hours of the trading days (equities 1h:
    252 * 6.5 = 1638; fx 1h: 260 * 24 = 6240; crypto 1h: 365 * 24 = 8760). Daily bars are the
    trading days (252 / 260 / 365). Bars of a week or longer count 52 weeks a year for every
    class, since a weekly bar spans the whole week whatever the sessions. The result can be
    fractional (equities 4h: 409.5); that is what the annualisation needs.
    """
    length = timeframe_to_timedelta(bar) if isinstance(bar, str) else pd.Timedelta(bar)
    length = pd.Timedelta(length)
    if length <= pd.Timedelta(0):
        msg = f"bar length must be positive, got {length}"
        raise MetricsError(msg)
    try:
        klass = InstrumentClass(instrument_class)
    except ValueError:
        msg = (
            f"unknown instrument class {instrument_class!r}; use one of "
            f"{', '.join(c.value for c in InstrumentClass)}"
        )
        raise MetricsError(msg) from None
    days, hours = _SESSIONS[klass]
    if length >= pd.Timedelta(_WEEK):
        return 52.0 * (pd.Timedelta(_WEEK) / length)
    if length >= pd.Timedelta(_DAY):
        return days * (pd.Timedelta(_DAY) / length)
    return days * (pd.Timedelta(hours=hours) / length)


# ---------------------------------------------------------------------------------------------
# Return-based definitions. `returns` is a 1-D array-like of simple per-bar returns.
# ---------------------------------------------------------------------------------------------


def _as_returns(returns: pd.Series | np.ndarray) -> np.ndarray:
    arr = np.asarray(returns, dtype=np.float64)
    if arr.ndim != 1:
        msg = f"returns must be one-dimensional, got shape {arr.shape}"
        raise MetricsError(msg)
    if not np.isfinite(arr).all():
        msg = "returns must be finite (no NaN or inf)"
        raise MetricsError(msg)
    return arr


def _check_ppy(periods_per_year: float) -> float:
    if not (math.isfinite(periods_per_year) and periods_per_year > 0):
        msg = f"periods_per_year must be a positive finite number, got {periods_per_year!r}"
        raise MetricsError(msg)
    return float(periods_per_year)


def _divide(num: float, den: float) -> float:
    """num / den with IEEE semantics (x/0 = +-inf, 0/0 = NaN) instead of ZeroDivisionError."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.divide(np.float64(num), np.float64(den)))


def _std(arr: np.ndarray) -> float:
    """Sample std (ddof=1); exactly 0 for constant input, where the float mean's last-bit
    residue would otherwise turn an infinite ratio into a huge finite one."""
    if len(arr) < 2:
        return math.nan
    if arr.max() == arr.min():
        return 0.0
    return float(np.std(arr, ddof=1))


def returns_from_equity(equity: pd.Series) -> pd.Series:
    """Simple per-bar returns of an equity curve, indexed by the later bar of each pair."""
    values = equity.to_numpy(dtype=np.float64)
    out = values[1:] / values[:-1] - 1.0
    return pd.Series(out, index=equity.index[1:], name="return")


def total_return(returns: pd.Series | np.ndarray) -> float:
    """Compounded return over the whole sample, prod(1 + r) - 1."""
    arr = _as_returns(returns)
    return float(np.prod(1.0 + arr) - 1.0)


def annual_return(returns: pd.Series | np.ndarray, periods_per_year: float) -> float:
    """Geometric annual return (CAGR): (prod(1 + r)) ** (periods_per_year / n) - 1."""
    arr = _as_returns(returns)
    ppy = _check_ppy(periods_per_year)
    if len(arr) == 0:
        return math.nan
    growth = float(np.prod(1.0 + arr))
    if growth <= 0:
        return -1.0
    return growth ** (ppy / len(arr)) - 1.0


def annual_volatility(returns: pd.Series | np.ndarray, periods_per_year: float) -> float:
    """Sample standard deviation of returns (ddof=1) times sqrt(periods_per_year)."""
    arr = _as_returns(returns)
    return _std(arr) * math.sqrt(_check_ppy(periods_per_year))


def sharpe_ratio(
    returns: pd.Series | np.ndarray, periods_per_year: float, risk_free: float = 0.0
) -> float:
    """Annualised Sharpe ratio: mean(r - rf) / std(r - rf, ddof=1) * sqrt(periods_per_year).

    `risk_free` is the per-bar risk-free return (compute_metrics converts an annual rate).
    NaN for fewer than two returns or 0/0; +-inf for a non-zero mean with zero dispersion.
    """
    arr = _as_returns(returns) - risk_free
    ppy = _check_ppy(periods_per_year)
    if len(arr) < 2:
        return math.nan
    return _divide(float(np.mean(arr)), _std(arr)) * math.sqrt(ppy)


def downside_deviation(
    returns: pd.Series | np.ndarray, periods_per_year: float, required_return: float = 0.0
) -> float:
    """Annualised downside deviation: sqrt(mean(min(r - mar, 0)^2)) * sqrt(periods_per_year).

    The mean runs over all bars, not only the losing ones (Sortino & Price; empyrical).
    """
    arr = _as_returns(returns)
    ppy = _check_ppy(periods_per_year)
    if len(arr) == 0:
        return math.nan
    below = np.minimum(arr - required_return, 0.0)
    return math.sqrt(float(np.mean(below**2))) * math.sqrt(ppy)


def sortino_ratio(
    returns: pd.Series | np.ndarray, periods_per_year: float, required_return: float = 0.0
) -> float:
    """Annualised mean excess return over the annualised downside deviation (empyrical)."""
    arr = _as_returns(returns)
    ppy = _check_ppy(periods_per_year)
    if len(arr) < 2:
        return math.nan
    mean_annual = float(np.mean(arr - required_return)) * ppy
    return _divide(mean_annual, downside_deviation(arr, ppy, required_return))


def drawdown_series(equity: pd.Series) -> pd.Series:
    """Fractional distance below the running peak at each bar (0 at a peak, negative below)."""
    values = equity.to_numpy(dtype=np.float64)
    peak = np.maximum.accumulate(values)
    return pd.Series(values / peak - 1.0, index=equity.index, name="drawdown")


def max_drawdown(returns: pd.Series | np.ndarray) -> float:
    """Worst peak-to-trough loss of the compounded returns, a number in [-1, 0].

    The running peak starts at the initial wealth (1), so a loss on the first bar counts.
    """
    arr = _as_returns(returns)
    if len(arr) == 0:
        return math.nan
    wealth = np.concatenate(([1.0], np.cumprod(1.0 + arr)))
    peak = np.maximum.accumulate(wealth)
    return float(np.min(wealth / peak - 1.0))


def max_drawdown_duration(equity: pd.Series) -> tuple[int, pd.Timedelta]:
    """Longest underwater spell: (bars, time) from the peak bar to the first bar back at the peak.

    A spell still underwater at the last bar ends at the last bar. The time is measured between
    the timestamps of the same two bars, so it counts weekends and gaps that the bar count does
    not. (0, 0) when the curve never falls below its running peak.
    """
    values = equity.to_numpy(dtype=np.float64)
    index = pd.DatetimeIndex(equity.index)
    peak = np.maximum.accumulate(values)
    underwater = values < peak
    best_bars, best_time = 0, pd.Timedelta(0)
    i, n = 0, len(values)
    while i < n:
        if not underwater[i]:
            i += 1
            continue
        start = i - 1  # the bar before a spell is at the peak; bar 0 is never underwater
        while i < n and underwater[i]:
            i += 1
        end = i if i < n else n - 1
        if end - start > best_bars:
            best_bars, best_time = end - start, index[end] - index[start]
    return best_bars, pd.Timedelta(best_time)


def calmar_ratio(returns: pd.Series | np.ndarray, periods_per_year: float) -> float:
    """Annual return over |max drawdown|; NaN when there is no drawdown (empyrical)."""
    mdd = max_drawdown(returns)
    if not mdd < 0:
        return math.nan
    ratio = annual_return(returns, periods_per_year) / abs(mdd)
    return ratio if math.isfinite(ratio) else math.nan


def value_at_risk(returns: pd.Series | np.ndarray, cutoff: float = 0.05) -> float:
    """Historical VaR: the `cutoff` quantile of returns, linearly interpolated (a return)."""
    arr = _as_returns(returns)
    if len(arr) == 0:
        return math.nan
    return float(np.percentile(arr, 100.0 * cutoff))


def conditional_value_at_risk(returns: pd.Series | np.ndarray, cutoff: float = 0.05) -> float:
    """Historical CVaR (expected shortfall): mean of the worst floor((n - 1) * cutoff) + 1
    returns, so the tail always holds at least the single worst bar (empyrical)."""
    arr = _as_returns(returns)
    if len(arr) == 0:
        return math.nan
    k = int((len(arr) - 1) * cutoff)
    return float(np.mean(np.partition(arr, k)[: k + 1]))


# ---------------------------------------------------------------------------------------------
# Trade-based definitions. `pnl` is one net P&L per closed trade.
# ---------------------------------------------------------------------------------------------


def _as_pnl(pnl: pd.Series | np.ndarray) -> np.ndarray:
    arr = np.asarray(pnl, dtype=np.float64)
    if arr.ndim != 1 or not np.isfinite(arr).all():
        msg = "trade pnl must be a one-dimensional array of finite numbers"
        raise MetricsError(msg)
    return arr


def profit_factor(pnl: pd.Series | np.ndarray) -> float:
    """Gross profit / gross loss of trades.

    inf when there are profits and no losses, 0 with losses and no profits, NaN when there are
    no trades or every trade is exactly flat (0/0). Sums use math.fsum so that the ratio is
    > 1 exactly when the summed P&L is > 0.
    """
    arr = _as_pnl(pnl)
    gross_profit = math.fsum(arr[arr > 0])
    gross_loss = math.fsum(-arr[arr < 0])  # not -fsum: -0.0 would make x / -0.0 = -inf
    return _divide(gross_profit, gross_loss)


def win_rate(pnl: pd.Series | np.ndarray) -> float:
    """Fraction of trades with positive net P&L; NaN when there are no trades."""
    arr = _as_pnl(pnl)
    return float(np.mean(arr > 0)) if len(arr) else math.nan


def expectancy(pnl: pd.Series | np.ndarray) -> float:
    """Mean net P&L per trade (account currency); NaN when there are no trades."""
    arr = _as_pnl(pnl)
    return math.fsum(arr) / len(arr) if len(arr) else math.nan


# ---------------------------------------------------------------------------------------------
# Selection-bias adjustments (per-bar Sharpe ratios throughout).
# ---------------------------------------------------------------------------------------------


def probabilistic_sharpe_ratio(
    sharpe: float, n_obs: int, skew: float, kurtosis: float, benchmark: float = 0.0
) -> float:
    """P(true SR > benchmark) given an estimated per-bar SR (Bailey & Lopez de Prado 2012).

    PSR = Phi((SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2)), with g3 the
    skewness and g4 the (non-excess, Pearson) kurtosis of the returns.
    """
    if n_obs < 2 or not math.isfinite(sharpe):
        return math.nan
    variance = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if not variance > 0:
        return math.nan
    z = (sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(variance)
    return float(stats.norm.cdf(z))


def minimum_track_record_length(
    sharpe: float, skew: float, kurtosis: float, benchmark: float = 0.0, confidence: float = 0.95
) -> float:
    """Bars of track record needed for PSR(benchmark) to reach `confidence` (Bailey & Lopez de
    Prado 2012): MinTRL = 1 + (1 - g3 SR + (g4 - 1) / 4 SR^2) (z_c / (SR - SR*))^2, per-bar SR,
    g4 the Pearson kurtosis. inf when SR <= SR* (no record is long enough); NaN when undefined.
    """
    if not (math.isfinite(sharpe) and math.isfinite(skew) and math.isfinite(kurtosis)):
        return math.nan
    if not 0.0 < confidence < 1.0:
        msg = f"confidence must be in (0, 1), got {confidence!r}"
        raise MetricsError(msg)
    if sharpe <= benchmark:
        return math.inf
    variance = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if not variance > 0:
        return math.nan
    z = float(stats.norm.ppf(confidence))
    return 1.0 + variance * (z / (sharpe - benchmark)) ** 2


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum per-bar SR of `n_trials` unskilled trials (the DSR's benchmark SR*).

    SR* = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e))); 0 for one trial.
    """
    if n_trials < 1:
        msg = f"n_trials must be >= 1, got {n_trials}"
        raise MetricsError(msg)
    if not (math.isfinite(sharpe_variance) and sharpe_variance >= 0):
        msg = f"sharpe_variance must be a finite number >= 0, got {sharpe_variance!r}"
        raise MetricsError(msg)
    if n_trials == 1:
        return 0.0
    quantiles = (1.0 - _EULER_GAMMA) * stats.norm.ppf(1.0 - 1.0 / n_trials) + (
        _EULER_GAMMA * stats.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    )
    return math.sqrt(sharpe_variance) * float(quantiles)


def _moments(arr: np.ndarray) -> tuple[float, float, float]:
    """Per-bar Sharpe, skewness and Pearson kurtosis (biased moments, as in the DSR paper)."""
    sd = _std(arr)
    sharpe = _divide(float(np.mean(arr)), sd)
    if not sd > 0:
        return sharpe, math.nan, math.nan
    return sharpe, float(stats.skew(arr)), float(stats.kurtosis(arr, fisher=False))


def deflated_sharpe_ratio(
    returns: pd.Series | np.ndarray, *, n_trials: int, sharpe_variance: float
) -> float:
    """Deflated Sharpe ratio (Bailey & Lopez de Prado 2014): the PSR of the returns against the
    SR that the best of `n_trials` unskilled trials would reach by luck.

    `sharpe_variance` is the variance of the trials' per-bar Sharpe ratios. With one trial the
    benchmark is 0 and the DSR equals the PSR against 0.
    """
    arr = _as_returns(returns)
    sharpe, skew, kurt = _moments(arr)
    benchmark = expected_max_sharpe(n_trials, sharpe_variance)
    return probabilistic_sharpe_ratio(sharpe, len(arr), skew, kurt, benchmark)


@dataclass(frozen=True, slots=True)
class PboResult:
    """Outcome of CSCV: the probability of backtest overfitting and its evidence."""

    pbo: float  # fraction of splits whose in-sample best trial ranks at or below the OOS median
    logits: tuple[float, ...]  # one rank logit per split, log(w / (1 - w)), w = OOS rank / (N + 1)
    n_splits: int  # number of combinations C(S, S/2)
    n_blocks: int  # S


def probability_of_backtest_overfitting(
    trial_returns: pd.DataFrame | np.ndarray, n_blocks: int = 16
) -> PboResult:
    """Probability of backtest overfitting by combinatorially symmetric cross-validation.

    `trial_returns` is a T x N matrix: one column of per-bar returns per trial (configuration),
    on the same bars. The rows are cut into `n_blocks` (S, even) contiguous blocks of equal size;
    the oldest T mod S rows are dropped so the blocks are even. For each of the C(S, S/2) ways
    to choose half the blocks as in-sample, the trial with the best in-sample per-bar Sharpe is
    ranked among all trials on the out-of-sample rest (average rank for ties); its relative rank
    w = rank / (N + 1) gives the logit log(w / (1 - w)). PBO is the fraction of logits <= 0,
    i.e. how often the in-sample winner is no better than the median out of sample.
    """
    matrix = np.asarray(trial_returns, dtype=np.float64)
    if matrix.ndim != 2:
        msg = f"trial_returns must be a T x N matrix, got shape {matrix.shape}"
        raise MetricsError(msg)
    n_rows, n_trials = matrix.shape
    if n_trials < 2:
        msg = f"PBO needs at least 2 trials (columns), got {n_trials}"
        raise MetricsError(msg)
    if n_blocks < 2 or n_blocks % 2:
        msg = f"n_blocks must be an even number >= 2, got {n_blocks}"
        raise MetricsError(msg)
    block_len = n_rows // n_blocks
    if block_len < 2:
        msg = f"{n_rows} rows are too few for {n_blocks} blocks of at least 2 rows each"
        raise MetricsError(msg)
    if not np.isfinite(matrix).all():
        msg = "trial_returns must be finite (no NaN or inf)"
        raise MetricsError(msg)
    blocks = matrix[n_rows - block_len * n_blocks :].reshape(n_blocks, block_len, n_trials)
    # Per-block sums let each split's Sharpe come from a matrix product instead of a re-slice.
    block_sum = blocks.sum(axis=1)
    block_sumsq = (blocks**2).sum(axis=1)
    combos = list(itertools.combinations(range(n_blocks), n_blocks // 2))
    is_mask = np.zeros((len(combos), n_blocks))
    for row, combo in enumerate(combos):
        is_mask[row, list(combo)] = 1.0
    count = block_len * (n_blocks // 2)

    def split_sharpe(mask: np.ndarray) -> np.ndarray:
        mean = (mask @ block_sum) / count
        var = ((mask @ block_sumsq) - count * mean**2) / (count - 1)
        sd = np.sqrt(np.clip(var, 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            sharpe = mean / sd
        # A trial with no dispersion has no meaningful Sharpe; it can never be the IS winner.
        return np.where(np.isnan(sharpe), -np.inf, sharpe)

    is_sharpe = split_sharpe(is_mask)
    oos_sharpe = split_sharpe(1.0 - is_mask)
    best = np.argmax(is_sharpe, axis=1)
    best_oos = oos_sharpe[np.arange(len(combos)), best][:, None]
    less = (oos_sharpe < best_oos).sum(axis=1)
    equal = (oos_sharpe == best_oos).sum(axis=1)  # includes the winner itself
    rank = less + (equal + 1) / 2.0
    omega = rank / (n_trials + 1)
    logits = np.log(omega / (1.0 - omega))
    return PboResult(
        pbo=float(np.mean(logits <= 0)),
        logits=tuple(float(x) for x in logits),
        n_splits=len(combos),
        n_blocks=n_blocks,
    )


# ---------------------------------------------------------------------------------------------
# The bundle.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metrics:
    """Every performance number of one strategy's backtest. Fractions, not percent.

    NaN marks a number that the inputs cannot define (no trades, no exposure series, zero
    dispersion, a single trial for PBO); see each function's docstring.
    """

    periods_per_year: float  # annualisation factor used for every annualised number
    n_bars: int  # points on the equity curve (returns = n_bars - 1)
    start_equity: float
    end_equity: float
    total_return: float
    annual_return: float  # geometric (CAGR)
    annual_volatility: float
    sharpe: float  # annualised, against the configured risk-free rate
    sortino: float  # annualised, minimum acceptable return = the per-bar risk-free rate
    calmar: float
    max_drawdown: float  # <= 0
    max_drawdown_duration_bars: int  # longest underwater spell in bars
    max_drawdown_duration: pd.Timedelta  # the same spell in time
    var_95: float  # per-bar historical VaR, a return (loss < 0)
    cvar_95: float  # per-bar historical expected shortfall, a return (loss < 0)
    time_in_market: float  # fraction of bars with non-zero gross exposure
    mean_gross_exposure: float  # mean of gross exposure / equity over bars
    turnover: float  # traded notional / mean equity over the whole sample
    annual_turnover: float  # turnover per year
    costs_paid: float  # account currency
    n_trades: int
    win_rate: float  # from trades
    profit_factor: float  # from trades; inf with no losing trade, NaN with no trades
    expectancy: float  # mean net trade P&L, account currency
    psr: float  # probabilistic Sharpe ratio against SR = 0
    deflated_sharpe: float  # PSR against the expected best SR of n_trials unskilled trials
    n_trials: int  # trials the DSR deflates for (every configuration evaluated on data)
    pbo: float  # probability of backtest overfitting (CSCV); NaN with fewer than 2 trials
    # bars of record for PSR(0) to reach 95% (inf when SR <= 0)
    min_track_record_length: float = math.nan
    sharpe_variance: float = math.nan  # variance of the trials' per-bar SRs the DSR used
    notes: Mapping[str, str] = field(default_factory=dict)  # metric -> why it is NaN

    def to_dict(self) -> dict[str, Any]:
        """Plain values: floats (inf/NaN kept), ints, and the duration as an ISO 8601 string."""
        out = asdict(self)
        out["max_drawdown_duration"] = self.max_drawdown_duration.isoformat()
        out["notes"] = dict(self.notes)
        return out

    def to_numeric_dict(self) -> dict[str, float]:
        """Every field as a float, for metric loggers such as MLflow's log_metrics; the
        duration becomes `max_drawdown_duration_s` (seconds)."""
        out: dict[str, float] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "notes":
                continue
            if isinstance(value, pd.Timedelta):
                out[f"{f.name}_s"] = value.total_seconds()
            else:
                out[f.name] = float(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metrics:
        """Inverse of to_dict; rejects missing and unknown keys."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(names - set(data))
        if unknown or missing:
            msg = f"metrics dict mismatch: unknown keys {unknown}, missing keys {missing}"
            raise MetricsError(msg)
        values = dict(data)
        values["max_drawdown_duration"] = pd.Timedelta(values["max_drawdown_duration"])
        values["notes"] = {str(k): str(v) for k, v in dict(values["notes"]).items()}
        for name in ("n_bars", "max_drawdown_duration_bars", "n_trades", "n_trials"):
            values[name] = int(values[name])
        return cls(**values)


def pbo_with_reason(matrix: np.ndarray, n_blocks: int) -> tuple[float, str]:
    """CSCV's PBO over the trials (columns) that have dispersion, or NaN and why it cannot be
    computed; n_blocks shrinks (stays even) when the rows are too few for it."""
    varied = matrix[:, matrix.std(axis=0) > 0] if len(matrix) else matrix
    if varied.shape[1] < 2:
        return math.nan, (
            f"{varied.shape[1]} of {matrix.shape[1]} trials traded (non-constant returns); "
            "CSCV needs at least 2"
        )
    blocks = n_blocks
    while blocks > 2 and len(varied) // blocks < 2:
        blocks -= 2
    if len(varied) // blocks < 2:
        return math.nan, f"{len(varied)} rows are too few for CSCV blocks of 2 rows"
    return probability_of_backtest_overfitting(varied, n_blocks=blocks).pbo, ""


def _check_equity(equity: pd.Series) -> pd.Series:
    if not isinstance(equity, pd.Series):
        msg = f"equity must be a pandas Series, got {type(equity).__name__}"
        raise MetricsError(msg)
    index = equity.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        msg = "equity must be indexed by tz-aware UTC timestamps"
        raise MetricsError(msg)
    if str(index.tz) not in {"UTC", "UTC+00:00"}:
        msg = f"equity index must be in UTC, got tz {index.tz}"
        raise MetricsError(msg)
    if len(equity) < 2:
        msg = f"equity needs at least 2 points, got {len(equity)}"
        raise MetricsError(msg)
    if not (index.is_monotonic_increasing and index.is_unique):
        msg = "equity index must be strictly increasing"
        raise MetricsError(msg)
    values = equity.to_numpy(dtype=np.float64)
    if not (np.isfinite(values).all() and (values > 0).all()):
        msg = "equity must be finite and > 0 at every bar (returns are undefined otherwise)"
        raise MetricsError(msg)
    return equity.astype(np.float64)


def compute_metrics(
    equity: pd.Series,
    trades: pd.DataFrame,
    *,
    periods_per_year: float,
    exposure: pd.Series | None = None,
    turnover_notional: float | None = None,
    costs_paid: float | None = None,
    n_trials: int = 1,
    trial_returns: pd.DataFrame | np.ndarray | None = None,
    trial_sharpes: np.ndarray | list[float] | tuple[float, ...] | None = None,
    risk_free: float = 0.0,
    pbo_blocks: int = 16,
) -> Metrics:
    """All metrics of one strategy.

    equity: account equity per bar, tz-aware UTC index, > 0. trades: one row per round trip
    with a `pnl` column (net of costs) and, optionally, `costs`. exposure: gross exposure /
    equity per bar (None -> exposure metrics NaN). turnover_notional: traded notional over the
    sample, e.g. the sum of |quantity * price| of the fills (None -> NaN). costs_paid: total
    costs; None -> the sum of trades["costs"] when that column exists, else NaN.
    n_trials: how many configurations were tried to arrive at this one; trial_returns: the
    T x N per-bar returns of the trials that were recorded (CSCV's PBO needs N >= 2 of them
    with dispersion); trial_sharpes: the per-bar Sharpe ratio of every trial evaluated on data
    (NaN for one that never traded), when there are more trials than recorded return series.
    The DSR deflates for max(n_trials, N, len(trial_sharpes)) trials and the variance of the
    finite trial Sharpe ratios (trial_sharpes if given, else those of trial_returns). With more
    than one trial and fewer than two finite trial Sharpe ratios, the DSR is NaN with a note.
    risk_free: annual risk-free rate, converted to a per-bar rate (1 + rf) ** (1/ppy) - 1.
    """
    eq = _check_equity(equity)
    ppy = _check_ppy(periods_per_year)
    if not isinstance(trades, pd.DataFrame) or "pnl" not in trades.columns:
        msg = "trades must be a DataFrame with a 'pnl' column (net P&L per trade)"
        raise MetricsError(msg)
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        msg = f"n_trials must be an int >= 1, got {n_trials!r}"
        raise MetricsError(msg)
    rf = (1.0 + risk_free) ** (1.0 / ppy) - 1.0
    rets = returns_from_equity(eq).to_numpy()
    pnl = _as_pnl(trades["pnl"])

    notes: dict[str, str] = {}
    n_recorded = 0
    pool: list[float] = []
    pbo = math.nan
    if trial_returns is not None:
        matrix = np.asarray(trial_returns, dtype=np.float64)
        if matrix.ndim != 2:
            msg = f"trial_returns must be a T x N matrix, got shape {matrix.shape}"
            raise MetricsError(msg)
        if not np.isfinite(matrix).all():
            msg = "trial_returns must be finite (no NaN or inf)"
            raise MetricsError(msg)
        n_recorded = matrix.shape[1]
        pool = [_moments(col)[0] for col in matrix.T]
        pbo, why = pbo_with_reason(matrix, pbo_blocks)
        if why:
            notes["pbo"] = why
    else:
        notes["pbo"] = "a single configuration (no trial return series): nothing was selected"
    if trial_sharpes is not None:
        pool = [float(x) for x in np.asarray(trial_sharpes, dtype=np.float64).ravel()]
    finite = np.array([x for x in pool if math.isfinite(x)], dtype=np.float64)
    effective_trials = max(n_trials, n_recorded, len(pool))
    sharpe_var = float(np.var(finite, ddof=1)) if len(finite) >= 2 else math.nan
    if effective_trials == 1:
        sharpe_var = 0.0 if math.isnan(sharpe_var) else sharpe_var
    elif math.isnan(sharpe_var):
        notes["deflated_sharpe"] = (
            f"{effective_trials} trials but {len(finite)} with a finite Sharpe ratio: the "
            "variance of trial Sharpe ratios needs at least 2"
        )

    excess = rets - rf
    sharpe_bar, skew, kurt = _moments(excess)
    dd_bars, dd_time = max_drawdown_duration(eq)

    if exposure is not None:
        expo = np.abs(np.asarray(exposure, dtype=np.float64))
        if expo.ndim != 1 or len(expo) == 0 or not np.isfinite(expo).all():
            msg = "exposure must be a non-empty one-dimensional series of finite numbers"
            raise MetricsError(msg)
        time_in_market = float(np.mean(expo > 0))
        mean_gross = float(np.mean(expo))
    else:
        time_in_market = mean_gross = math.nan

    if turnover_notional is not None:
        turnover = float(turnover_notional) / float(eq.mean())
        annual_turnover = turnover * ppy / len(rets)
    else:
        turnover = annual_turnover = math.nan

    if costs_paid is not None:
        costs = float(costs_paid)
    elif "costs" in trades.columns:
        costs = math.fsum(_as_pnl(trades["costs"]))
    else:
        costs = math.nan

    psr = probabilistic_sharpe_ratio(sharpe_bar, len(excess), skew, kurt, 0.0)
    dsr = (
        probabilistic_sharpe_ratio(
            sharpe_bar, len(excess), skew, kurt, expected_max_sharpe(effective_trials, sharpe_var)
        )
        if math.isfinite(sharpe_var)
        else math.nan
    )
    if not math.isfinite(sharpe_bar):
        why = (
            "returns are constant (no exposure): the Sharpe ratio is undefined"
            if _std(excess) == 0
            else "fewer than 2 returns: the Sharpe ratio is undefined"
        )
        for name in ("sharpe", "sortino", "psr", "deflated_sharpe", "min_track_record_length"):
            notes[name] = why
    if not len(pnl):
        for name in ("win_rate", "profit_factor", "expectancy"):
            notes[name] = "no closed trades"

    first, last = float(eq.iloc[0]), float(eq.iloc[-1])
    return Metrics(
        periods_per_year=ppy,
        n_bars=len(eq),
        start_equity=first,
        end_equity=last,
        total_return=last / first - 1.0,
        annual_return=annual_return(rets, ppy),
        annual_volatility=annual_volatility(rets, ppy),
        sharpe=sharpe_ratio(rets, ppy, rf),
        sortino=sortino_ratio(rets, ppy, rf),
        calmar=calmar_ratio(rets, ppy),
        max_drawdown=float(drawdown_series(eq).min()),
        max_drawdown_duration_bars=dd_bars,
        max_drawdown_duration=dd_time,
        var_95=value_at_risk(rets, 0.05),
        cvar_95=conditional_value_at_risk(rets, 0.05),
        time_in_market=time_in_market,
        mean_gross_exposure=mean_gross,
        turnover=turnover,
        annual_turnover=annual_turnover,
        costs_paid=costs,
        n_trades=len(pnl),
        win_rate=win_rate(pnl),
        profit_factor=profit_factor(pnl),
        expectancy=expectancy(pnl),
        psr=psr,
        deflated_sharpe=dsr,
        n_trials=effective_trials,
        pbo=pbo,
        min_track_record_length=minimum_track_record_length(sharpe_bar, skew, kurt),
        sharpe_variance=sharpe_var,
        notes=notes,
    )
