"""The backtest report: an HTML tearsheet and a JSON summary.

The tearsheet shows what quantstats, pyfolio and NautilusTrader's tearsheet show (equity,
underwater curves, worst drawdowns, calendar returns, return distribution, rolling Sharpe and
volatility, trade statistics) and what only candleflow has: the deflated Sharpe ratio and the
probability of backtest overfitting beside every strategy, per-fold and per-series breakdowns,
the trades on the price chart, and the lineage of the run.

plotly.js (4.7 MB) is not pasted into each report: by default one plotly.min.js, copied from
the installed plotly package, sits beside the reports of a directory; `plotly_js="inline"`
gives one file that opens anywhere (what MLflow's artifact viewer needs). Charts are drawn as
they scroll into view. Every number in the metrics table carries its exact value in a
`data-value` attribute beside the formatted text, so a reader (or a test) can check the table
against the Metrics it was rendered from.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.utils
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from execution._report_analytics import (
    EXTRA_STAT_LABELS,
    extra_stats,
    fold_breakdown,
    period_returns,
    relative_stats,
    series_breakdown,
    worst_drawdowns,
    yearly_returns,
)
from execution.metrics import Metrics, drawdown_series, returns_from_equity

__all__ = [
    "DISCLAIMER",
    "EXTRA_STAT_LABELS",
    "METRIC_LABELS",
    "PLOTLY_JS_FILE",
    "SECTION_TITLES",
    "PlotlyJs",
    "ReportError",
    "ReportInput",
    "ReportMetadata",
    "ReportSummary",
    "StrategyKind",
    "StrategyResult",
    "add_left_out",
    "format_metric",
    "left_out_warning",
    "monthly_returns",
    "read_summary_json",
    "relative_stats",
    "render_report",
    "series_breakdown",
    "strategy_colours",
    "worst_drawdowns",
    "write_summary_json",
    "yearly_returns",
]

logger = logging.getLogger(__name__)

SUMMARY_SCHEMA_VERSION: Final = 2

DISCLAIMER: Final = (
    "Research output, not investment advice. Past performance, simulated or real, is not a "
    "reliable indicator of future results. Backtests are simulations: they depend on the data, "
    "the cost and fill assumptions and the choices made while researching, and they overstate "
    "what live trading achieves. Trading involves risk of loss."
)

# Section id -> heading, in page order.
SECTION_TITLES: Final = {
    "equity": "Equity: strategies vs the benchmark",
    "metrics": "Metrics: strategies and baselines side by side",
    "drawdown": "Drawdown, one panel per strategy",
    "worst_drawdowns": "Five worst drawdowns",
    "yearly": "Yearly returns",
    "monthly": "Monthly returns",
    "distribution": "Distribution of monthly returns",
    "extra_stats": "Distribution and trade statistics",
    "rolling_sharpe": "Rolling Sharpe ratio",
    "rolling_vol": "Rolling volatility",
    "exposure": "Gross exposure",
    "series": "Per-series breakdown",
    "trades": "Trades on the price chart",
    "trade_pnl": "Trade P&L distribution",
    "folds": "Per-fold results",
    "cpcv": "Combinatorial purged cross-validation: path Sharpe ratios",
    "importance": "Feature importance",
    "lineage": "Lineage and metadata",
    "disclaimer": "Risk disclaimer",
}

METRIC_LABELS: Final = {
    "total_return": "Total return",
    "annual_return": "Annual return (CAGR)",
    "annual_volatility": "Annual volatility",
    "sharpe": "Sharpe ratio (ann.)",
    "sortino": "Sortino ratio (ann.)",
    "calmar": "Calmar ratio",
    "max_drawdown": "Max drawdown",
    "max_drawdown_duration_bars": "Longest drawdown (bars)",
    "max_drawdown_duration": "Longest drawdown (time)",
    "var_95": "VaR 95% (per bar)",
    "cvar_95": "CVaR 95% (per bar)",
    "time_in_market": "Time in market",
    "mean_gross_exposure": "Mean gross exposure",
    "turnover": "Turnover (x mean equity)",
    "annual_turnover": "Turnover per year",
    "costs_paid": "Costs paid",
    "n_trades": "Trades",
    "win_rate": "Win rate (trades)",
    "profit_factor": "Profit factor",
    "expectancy": "Expectancy (per trade)",
    "psr": "Probabilistic Sharpe (vs 0)",
    "deflated_sharpe": "Deflated Sharpe ratio",
    "n_trials": "Trials (N deflated for)",
    "min_track_record_length": "Min. track record (bars, PSR 95%)",
    "pbo": "Prob. of backtest overfitting",
    "start_equity": "Start equity",
    "end_equity": "End equity",
    "n_bars": "Bars",
    "periods_per_year": "Bars per year",
}

_PERCENT = frozenset(
    {
        "total_return",
        "annual_return",
        "annual_volatility",
        "max_drawdown",
        "var_95",
        "cvar_95",
        "time_in_market",
        "mean_gross_exposure",
        "win_rate",
        "pbo",
    }
)
_RATIO = frozenset({"sharpe", "sortino", "calmar", "profit_factor", "turnover", "annual_turnover"})
_PROBABILITY = frozenset({"psr", "deflated_sharpe"})
_MONEY = frozenset({"start_equity", "end_equity", "costs_paid", "expectancy"})
_COUNT = frozenset(
    {"n_bars", "n_trades", "n_trials", "max_drawdown_duration_bars", "min_track_record_length"}
)


class ReportError(ValueError):
    """Report inputs that cannot be rendered (missing benchmark, bad index, unknown keys)."""


class StrategyKind(StrEnum):
    MODEL = "model"
    BASELINE = "baseline"  # a simple rule every model must beat, traded like a model
    BENCHMARK = "benchmark"  # a passive reference (buy and hold, the always-long signal)


def _require_utc(ts: datetime, what: str) -> None:
    if ts.tzinfo is None or ts.utcoffset() != timedelta(0):
        msg = f"{what} must be a tz-aware UTC datetime, got {ts!r}"
        raise ReportError(msg)


@dataclass(frozen=True, slots=True)
class ReportMetadata:
    """Lineage of a backtest: enough to reproduce it."""

    generated_at: datetime  # when the report was made, UTC (injected, not read from a clock)
    data_fingerprint: str  # content hash of the bars the backtest read
    git_rev: str  # commit of the code that ran
    mlflow_run_ids: Mapping[str, str] = field(default_factory=dict)  # e.g. fold/model -> run id
    config: Mapping[str, Any] = field(default_factory=dict)  # the run's resolved configuration

    def __post_init__(self) -> None:
        _require_utc(self.generated_at, "generated_at")

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "data_fingerprint": self.data_fingerprint,
            "git_rev": self.git_rev,
            "mlflow_run_ids": dict(self.mlflow_run_ids),
            "config": _jsonable(self.config),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReportMetadata:
        _reject_unknown(data, {f.name for f in fields(cls)}, "metadata")
        return cls(
            generated_at=datetime.fromisoformat(data["generated_at"]),
            data_fingerprint=data["data_fingerprint"],
            git_rev=data["git_rev"],
            mlflow_run_ids=dict(data.get("mlflow_run_ids", {})),
            config=_from_jsonable(data.get("config", {})),
        )


@dataclass(frozen=True, slots=True, eq=False)
class StrategyResult:
    """One strategy's backtest: the curve, its metrics and its round-trip trades."""

    equity: pd.Series  # account equity per bar, tz-aware UTC index
    metrics: Metrics
    trades: pd.DataFrame  # one row per round trip; `pnl` (net) is what the report plots
    kind: StrategyKind = StrategyKind.MODEL
    description: str = ""  # what the row is, shown under its name (benchmarks must say)
    warnings: tuple[str, ...] = ()  # e.g. a model that collapsed onto one class
    exposure: pd.Series | None = None  # gross position notional / equity per bar, if known

    def __post_init__(self) -> None:
        index = self.equity.index
        if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
            msg = "strategy equity must be indexed by tz-aware UTC timestamps"
            raise ReportError(msg)
        if len(self.equity) < 2:
            msg = f"strategy equity needs at least 2 points, got {len(self.equity)}"
            raise ReportError(msg)
        if "pnl" not in self.trades.columns:
            msg = "strategy trades need a 'pnl' column (an empty frame with it is fine)"
            raise ReportError(msg)


@dataclass(frozen=True, slots=True, eq=False)
class ReportInput:
    """Everything a report shows. Strategies render in the mapping's order."""

    title: str
    strategies: Mapping[str, StrategyResult]  # model(s) and every baseline, by name
    metadata: ReportMetadata
    benchmark: str = "buy_and_hold"  # the strategy every other one is compared with
    # Per-fold table, one row per walk-forward fold (and series). With columns symbol, start
    # and end (the OOS window) each model's P&L and trades in the window are added.
    folds: pd.DataFrame | None = None
    # feature -> importance; a DataFrame has one column per series (or fold)
    feature_importance: pd.Series | pd.DataFrame | None = None
    importance_title: str | None = None  # what the importance is: model, series, folds
    rolling_window: int | None = None  # bars in the rolling windows; None: see _default_window
    prices: Mapping[str, pd.Series] | None = None  # close per symbol, for the trades chart
    primary: str | None = None  # whose trades are charted and listed; None: the first model
    # CPCV: one row per (series, family, path) with the path's annualised `sharpe`
    cpcv_paths: pd.DataFrame | None = None
    cpcv_summary: Mapping[str, Any] | None = None  # series -> groups, paths, PBO, run time
    # one line per series of this portfolio's timeframe that it does not hold, and why
    left_out: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.strategies:
            msg = "a report needs at least one strategy"
            raise ReportError(msg)
        if self.benchmark not in self.strategies:
            msg = (
                f"benchmark {self.benchmark!r} is not among the strategies "
                f"({', '.join(self.strategies)})"
            )
            raise ReportError(msg)
        if self.primary is not None and self.primary not in self.strategies:
            msg = f"primary {self.primary!r} is not among the strategies"
            raise ReportError(msg)
        if self.rolling_window is not None and self.rolling_window < 2:
            msg = f"rolling_window must be >= 2 bars, got {self.rolling_window}"
            raise ReportError(msg)


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """What the JSON summary holds, read back."""

    title: str
    benchmark: str
    metadata: ReportMetadata
    metrics: Mapping[str, Metrics]  # strategy name -> metrics, in report order
    kinds: Mapping[str, StrategyKind]


# ---------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------


def format_metric(name: str, value: Any) -> str:
    """The text shown for one metric: percent for returns and fractions, 2 decimals for ratios,
    3 for probabilities, thousands separators for money and counts; 'n/a' for NaN."""
    if isinstance(value, pd.Timedelta | timedelta):
        return _format_duration(pd.Timedelta(value))
    number = float(value)
    if math.isnan(number):
        return "n/a"
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    if name in _PERCENT:
        return f"{number:.2%}"
    if name in _RATIO:
        return f"{number:,.2f}"
    if name in _PROBABILITY:
        return f"{number:.3f}"
    if name in _MONEY:
        return f"{number:,.2f}"
    if name in _COUNT:
        return f"{int(number):,d}"
    return f"{number:,.6g}"


def _format_duration(td: pd.Timedelta) -> str:
    days = td.days
    hours, rem = divmod(td.seconds, 3600)
    minutes = rem // 60
    if days and not (hours or minutes):
        return f"{days}d"
    if days:
        return f"{days}d {hours:02d}:{minutes:02d}"
    return f"{hours:02d}:{minutes:02d}"


def _data_value(value: Any) -> str:
    """Exact machine-readable value for the data-value attribute."""
    if isinstance(value, pd.Timedelta | timedelta):
        return pd.Timedelta(value).isoformat()
    if isinstance(value, int | np.integer):
        return str(int(value))
    return repr(float(value))


def _format_cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return "n/a"
        return f"{number:,.4g}" if abs(number) < 1e5 else f"{number:,.0f}"
    if isinstance(value, pd.Timestamp | datetime):
        return pd.Timestamp(value).isoformat()
    return str(value)


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

_PLOT_CONFIG: Final = {"displaylogo": False, "responsive": True}
_MAX_POINTS: Final = 4000  # per trace: more than a screen shows, far less than 100k bars
_BENCHMARK_COLOUR: Final = "#444444"
# Plotly's default qualitative palette, benchmark excluded; strategy i keeps colour i everywhere.
_PALETTE: Final = (
    "#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A",
    "#19D3F3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52",
)  # fmt: skip
_BASE_LAYOUT: Final = {
    "font": {"family": "system-ui, sans-serif", "size": 12},
    "paper_bgcolor": "white",
    "plot_bgcolor": "white",
    "margin": {"l": 64, "r": 20, "t": 40, "b": 40},
    "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
    "hoverlabel": {"namelength": -1},
}
_AXIS: Final = {"gridcolor": "#e6e6e6", "zerolinecolor": "#999999", "automargin": True}
_TIME_AXIS: Final = {**_AXIS, "type": "date", "title": {"text": "time (UTC)"}}


def _figure_html(fig: go.Figure) -> str:
    """A placeholder div and the figure's JSON; the page script draws it when scrolled near, so
    the first chart shows without waiting for every chart to be built."""
    spec = fig.to_plotly_json()
    for trace in spec["data"]:
        # Seven significant digits are more than a chart shows; halves the bytes of every curve.
        trace["y"] = _as_float32(trace.get("y"))
    layout = _merged(_BASE_LAYOUT, spec["layout"])
    layout.pop("template", None)
    for key in list(layout):
        if key.startswith(("xaxis", "yaxis")):
            layout[key] = _merged(_AXIS, layout[key])
    layout.setdefault("xaxis", dict(_AXIS))
    layout.setdefault("yaxis", dict(_AXIS))
    spec["layout"] = layout
    height = int(spec["layout"].get("height") or 360)
    payload = json.dumps(
        {"data": spec["data"], "layout": spec["layout"]},
        cls=plotly.utils.PlotlyJSONEncoder,
        separators=(",", ":"),
    ).replace("</", "<\\/")
    return (
        f'<div class="fig" style="height:{height}px"></div>'
        f'<script type="application/json" class="fig-data">{payload}</script>'
    )


def _as_float32(values: Any) -> Any:
    """A float64 typed array (plotly's {"dtype": "f8", "bdata": base64}) as float32."""
    if isinstance(values, Mapping) and values.get("dtype") == "f8" and "shape" not in values:
        raw = np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.float64)
        return {"dtype": "f4", "bdata": base64.b64encode(raw.astype(np.float32)).decode()}
    return values


def _merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over` laid on top, nested mappings merged: a figure's own settings win."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _x(index: pd.Index) -> np.ndarray:
    """Milliseconds since the epoch (UTC): plotly.js reads numbers on a date axis as such, they
    encode in a third of the bytes of ISO strings, and offsets cannot be misread."""
    ns = pd.DatetimeIndex(index).tz_convert("UTC").as_unit("ns").asi8
    return ns / 1e6


def _thin(series: pd.Series, how: str = "last") -> pd.Series:
    """At most _MAX_POINTS points: the last (or the minimum) of each run of consecutive bars,
    so a drawdown's trough survives thinning."""
    n = len(series)
    if n <= _MAX_POINTS:
        return series
    step = math.ceil(n / _MAX_POINTS)
    bucket = np.arange(n) // step
    if how == "min":
        values = series.to_numpy(dtype=float)
        padded = np.full(step * (int(bucket[-1]) + 1), np.inf)
        padded[:n] = np.where(np.isnan(values), np.inf, values)
        rows = padded.reshape(-1, step)
        return series.iloc[np.arange(rows.shape[0]) * step + rows.argmin(axis=1)]
    picks = np.minimum((np.arange(bucket[-1] + 1) + 1) * step - 1, n - 1)
    return series.iloc[picks]


def strategy_colours(names: list[str], benchmark: str) -> dict[str, str]:
    """One colour per strategy, the same in every chart; the benchmark is dark grey."""
    colours, i = {}, 0
    for name in names:
        if name == benchmark:
            colours[name] = _BENCHMARK_COLOUR
        else:
            colours[name] = _PALETTE[i % len(_PALETTE)]
            i += 1
    return colours


def _colours(result: ReportInput) -> dict[str, str]:
    return strategy_colours(list(result.strategies), result.benchmark)


def _equity_figure(result: ReportInput) -> go.Figure:
    colours = _colours(result)
    fig = go.Figure()
    for name, strat in result.strategies.items():
        growth = _thin(strat.equity / float(strat.equity.iloc[0]) - 1.0)
        dash = "dash" if name == result.benchmark else "solid"
        fig.add_trace(
            go.Scatter(
                x=_x(growth.index),
                y=growth.to_numpy(),
                name=name,
                line={"dash": dash, "color": colours[name], "width": 1.6},
                hovertemplate="%{y:.2%}",
            )
        )
    fig.update_layout(height=420, hovermode="x unified")
    fig.update_xaxes(_TIME_AXIS)
    fig.update_yaxes(title_text="cumulative return", tickformat=".0%")
    return fig


def _drawdown_figure(result: ReportInput) -> go.Figure:
    """Small multiples on one shared y scale: one underwater panel per strategy."""
    colours = _colours(result)
    names = list(result.strategies)
    fig = make_subplots(
        rows=len(names),
        cols=1,
        shared_xaxes=True,
        shared_yaxes="all",
        vertical_spacing=min(0.04, 0.3 / max(len(names), 1)),
        subplot_titles=names,
    )
    for row, name in enumerate(names, start=1):
        dd = _thin(drawdown_series(result.strategies[name].equity), how="min")
        fig.add_trace(
            go.Scatter(
                x=_x(dd.index),
                y=dd.to_numpy(),
                name=name,
                fill="tozeroy",
                line={"color": colours[name], "width": 1},
                hovertemplate="%{y:.2%}",
                showlegend=False,
            ),
            row=row,
            col=1,
        )
    fig.update_layout(height=60 + 110 * len(names), hovermode="x")
    fig.update_xaxes(type="date")
    fig.update_xaxes(title_text="time (UTC)", row=len(names), col=1)
    fig.update_yaxes(tickformat=".0%", nticks=4)
    fig.update_annotations(font_size=12, x=0, xanchor="left")
    return fig


def monthly_returns(equity: pd.Series) -> pd.DataFrame:
    """Calendar-month returns of an equity curve as a year x month (1..12) table.

    The first month is measured from the curve's first value, later months from the previous
    month's last value, so the months compound to the total return.
    """
    rets = period_returns(equity, "ME")
    table = pd.DataFrame(
        {"year": rets.index.year, "month": rets.index.month, "ret": rets.to_numpy()}
    )
    return table.pivot_table(index="year", columns="month", values="ret", aggfunc="first").reindex(
        columns=range(1, 13)
    )


_MONTHS: Final = tuple("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())


def _monthly_figure(name: str, equity: pd.Series) -> go.Figure:
    table = monthly_returns(equity)
    table["year"] = yearly_returns(equity).reindex(table.index).to_numpy()
    z = table.to_numpy(dtype=float) * 100.0
    text = [[("" if math.isnan(v) else f"{v:.1f}") for v in row] for row in z]
    finite = np.abs(z[:, :12][np.isfinite(z[:, :12])])
    # Scale the colours to the bulk of the months so one extreme month does not grey the rest.
    zmax = float(np.quantile(finite, 0.95)) if finite.size else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[*_MONTHS, "Year"],
            y=[str(y) for y in table.index],
            text=text,
            texttemplate="%{text}",
            colorscale="RdYlGn",
            zmid=0.0,
            zmin=-max(zmax, 0.5),  # at least +-0.5%: a flat strategy stays one pale colour
            zmax=max(zmax, 0.5),
            colorbar={"title": {"text": "%"}},
            hovertemplate="%{y} %{x}: %{z:.2f}%<extra></extra>",
            xgap=1,
            ygap=1,
        )
    )
    fig.update_layout(
        title={"text": f"{name}: monthly returns (%)", "x": 0, "xanchor": "left", "y": 0.98},
        height=150 + 24 * len(table),
        margin={"t": 80},
    )
    fig.update_yaxes(autorange="reversed", type="category", gridcolor="rgba(0,0,0,0)")
    fig.update_xaxes(side="top", gridcolor="rgba(0,0,0,0)")
    return fig


def _yearly_figure(result: ReportInput) -> go.Figure:
    colours = _colours(result)
    fig = go.Figure()
    for name, strat in result.strategies.items():
        years = yearly_returns(strat.equity)
        fig.add_trace(
            go.Bar(
                x=[str(y) for y in years.index],
                y=years.to_numpy(),
                name=name,
                marker_color=colours[name],
                hovertemplate="%{x}: %{y:.2%}",
            )
        )
    fig.update_layout(height=360, barmode="group", hovermode="x unified")
    fig.update_xaxes(type="category", title_text="calendar year (UTC)")
    fig.update_yaxes(tickformat=".0%", title_text="return")
    return fig


def _distribution_figure(result: ReportInput) -> go.Figure:
    """Box plots of monthly returns, one per strategy (pyfolio's return quantiles)."""
    colours = _colours(result)
    fig = go.Figure()
    for name, strat in result.strategies.items():
        months = period_returns(strat.equity, "ME")
        fig.add_trace(
            go.Box(y=months.to_numpy(), name=name, marker_color=colours[name], boxmean=True)
        )
    fig.update_layout(height=360, showlegend=False)
    fig.update_yaxes(tickformat=".1%", title_text="monthly return")
    return fig


def _default_window(result: ReportInput) -> int:
    """About half a year of bars, but at most a quarter of the shortest curve, so the rolling
    line covers most of the sample; at least 10 bars where the data allows."""
    shortest = min(len(s.equity) for s in result.strategies.values())
    ppy = next(iter(result.strategies.values())).metrics.periods_per_year
    wanted = round(ppy / 2)
    return max(2, min(wanted, max(shortest // 4, min(10, shortest // 2))))


def _window_text(result: ReportInput, window: int) -> str:
    first = next(iter(result.strategies.values()))
    span = first.equity.index[min(window, len(first.equity) - 1)] - first.equity.index[0]
    return f"{window} bars (≈ {_format_duration(pd.Timedelta(span))})"


def _rolling_figure(result: ReportInput, window: int, what: str) -> go.Figure:
    colours = _colours(result)
    fig = go.Figure()
    for name, strat in result.strategies.items():
        rets = returns_from_equity(strat.equity)
        ppy = strat.metrics.periods_per_year
        sd = rets.rolling(window).std(ddof=1)
        if what == "sharpe":
            line = rets.rolling(window).mean() / sd.where(sd > 0) * math.sqrt(ppy)
        else:
            line = sd * math.sqrt(ppy)
        line = _thin(line.dropna())
        dash = "dash" if name == result.benchmark else "solid"
        fig.add_trace(
            go.Scatter(
                x=_x(line.index),
                y=line.to_numpy(),
                name=name,
                line={"color": colours[name], "width": 1.3, "dash": dash},
                hovertemplate="%{y:.2f}" if what == "sharpe" else "%{y:.1%}",
            )
        )
    fig.update_layout(height=340, hovermode="x unified")
    fig.update_xaxes(_TIME_AXIS)
    if what == "sharpe":
        fig.update_yaxes(title_text="Sharpe (ann.)", zeroline=True, zerolinewidth=1.5)
    else:
        fig.update_yaxes(title_text="volatility (ann.)", tickformat=".0%", rangemode="tozero")
    return fig


def _exposure_section(result: ReportInput, window: int) -> str:
    """Gross exposure (position notional over equity) per strategy, pyfolio's exposure plot,
    as a rolling mean: per bar it jumps between 0 and full as positions open and close."""
    colours = _colours(result)
    fig = go.Figure()
    for name, strat in result.strategies.items():
        if strat.exposure is None or not len(strat.exposure):
            continue
        mean = strat.exposure.astype(float).rolling(window, min_periods=1).mean()
        line = _thin(mean)
        fig.add_trace(
            go.Scatter(
                x=_x(line.index),
                y=line.to_numpy(),
                name=name,
                line={"color": colours[name], "width": 1.2},
                hovertemplate="%{y:.0%}",
            )
        )
    if not fig.data:
        return _not_provided("No exposure series were provided.")
    fig.update_layout(height=320, hovermode="x unified")
    fig.update_xaxes(_TIME_AXIS)
    fig.update_yaxes(
        title_text="mean gross exposure / equity", tickformat=".0%", rangemode="tozero"
    )
    note = f'<p class="note">Rolling mean over {html.escape(_window_text(result, window))}.</p>'
    return note + _figure_html(fig)


def _trade_pnl_figure(result: ReportInput) -> go.Figure | None:
    """Histograms of net P&L per trade, binned over the 1st..99th percentile of all trades so
    a few outliers do not squash the bulk into one bar."""
    colours = _colours(result)
    all_pnl = np.concatenate(
        [s.trades["pnl"].to_numpy(dtype=float) for s in result.strategies.values()]
    )
    if not len(all_pnl):
        return None
    lo, hi = np.quantile(all_pnl, [0.01, 0.99])
    size = (hi - lo) / 40 if hi > lo else 1.0
    fig = go.Figure()
    for name, strat in result.strategies.items():
        pnl = strat.trades["pnl"].to_numpy(dtype=float)
        if len(pnl):
            fig.add_trace(
                go.Histogram(
                    x=np.clip(pnl, lo, hi),
                    name=name,
                    opacity=0.55,
                    marker_color=colours[name],
                    xbins={"start": lo, "end": hi + size, "size": size},
                )
            )
    fig.update_layout(barmode="overlay", height=340)
    fig.update_xaxes(
        title_text="net P&L per trade (outer 1% on each side counted in the end bins)",
        tickformat=",.0f",
    )
    fig.update_yaxes(title_text="trades")
    return fig


def _primary(result: ReportInput) -> str:
    if result.primary is not None:
        return result.primary
    models = [n for n, s in result.strategies.items() if s.kind is StrategyKind.MODEL]
    return models[0] if models else next(iter(result.strategies))


def _trades_figure(symbol: str, close: pd.Series, trades: pd.DataFrame, name: str) -> go.Figure:
    """The symbol's close with the strategy's entries (triangles: up long, down short) and
    exits (crosses: green a winner, red a loser)."""
    fig = go.Figure()
    line = _thin(close)
    fig.add_trace(
        go.Scatter(
            x=_x(line.index),
            y=line.to_numpy(),
            name=f"{symbol} close",
            line={"color": "#888888", "width": 1},
            hovertemplate="%{y:,.5g}",
        )
    )
    if len(trades):
        for side, symbol_mark, colour in (
            ("long", "triangle-up", "#1a9850"),
            ("short", "triangle-down", "#d73027"),
        ):
            leg = trades[trades["side"] == side] if "side" in trades else trades.iloc[:0]
            if len(leg):
                fig.add_trace(
                    go.Scatter(
                        x=_x(pd.DatetimeIndex(leg["entry_ts"])),
                        y=leg["entry_price"].to_numpy(dtype=float),
                        mode="markers",
                        name=f"{side} entry",
                        marker={"symbol": symbol_mark, "color": colour, "size": 8},
                        customdata=leg["pnl"].to_numpy(dtype=float),
                        hovertemplate=f"{side} entry %{{y:,.5g}}<br>trade P&L %{{customdata:,.2f}}"
                        "<extra></extra>",
                    )
                )
        won = trades["pnl"].to_numpy(dtype=float) > 0
        fig.add_trace(
            go.Scatter(
                x=_x(pd.DatetimeIndex(trades["exit_ts"])),
                y=trades["exit_price"].to_numpy(dtype=float),
                mode="markers",
                name="exit",
                marker={
                    "symbol": "x-thin-open",
                    "line": {"width": 2},
                    "color": np.where(won, "#1a9850", "#d73027").tolist(),
                    "size": 7,
                },
                customdata=trades["pnl"].to_numpy(dtype=float),
                hovertemplate="exit %{y:,.5g}<br>trade P&L %{customdata:,.2f}<extra></extra>",
            )
        )
    fig.update_layout(title={"text": f"{symbol}: {name} trades"}, height=380, hovermode="closest")
    fig.update_xaxes(_TIME_AXIS)
    fig.update_yaxes(title_text="price", tickformat=",.5~g")
    return fig


def _importance_figure(result: ReportInput, top: int = 15) -> go.Figure:
    importance = result.feature_importance
    frame = importance.to_frame("all") if isinstance(importance, pd.Series) else importance
    frame = frame.astype(float).fillna(0.0)
    order = frame.mean(axis=1).sort_values(ascending=False).index[:top][::-1]
    fig = go.Figure()
    for i, column in enumerate(frame.columns):
        fig.add_trace(
            go.Bar(
                x=frame.loc[order, column].to_numpy(),
                y=[str(f) for f in order],
                name=str(column),
                orientation="h",
                marker_color=_PALETTE[i % len(_PALETTE)],
            )
        )
    fig.update_layout(
        height=120 + len(order) * (14 + 7 * min(len(frame.columns), 4)),
        barmode="group",
        showlegend=len(frame.columns) > 1,
    )
    fig.update_xaxes(title_text="importance (gain)", rangemode="tozero")
    fig.update_yaxes(type="category")
    return fig


# ---------------------------------------------------------------------------------------------
# Tables and sections
# ---------------------------------------------------------------------------------------------


def _metrics_table(result: ReportInput) -> str:
    names = list(result.strategies)
    head = "".join(
        f'<th scope="col" data-strategy="{html.escape(n)}">{html.escape(n)}'
        f'<br><span class="kind">{result.strategies[n].kind.value}</span>'
        + (
            f'<br><span class="kind description">{html.escape(d)}</span>'
            if (d := result.strategies[n].description)
            else ""
        )
        + "</th>"
        for n in names
    )
    rows = []
    for metric, label in METRIC_LABELS.items():
        cells = []
        for n in names:
            metrics = result.strategies[n].metrics
            value = getattr(metrics, metric)
            why = metrics.notes.get(metric, "")
            reason = f' title="{html.escape(why)}"' if why else ""
            cells.append(
                f'<td data-metric="{metric}" data-strategy="{html.escape(n)}" '
                f'data-value="{html.escape(_data_value(value))}"{reason}>'
                f"{html.escape(format_metric(metric, value))}</td>"
            )
        rows.append(f'<tr><th scope="row">{html.escape(label)}</th>{"".join(cells)}</tr>')
    return (
        f'<table class="metrics"><thead><tr><th>metric</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{_notes(result)}"
    )


def _notes(result: ReportInput) -> str:
    """Why each n/a is n/a, and the warnings (single-class models), under the table."""
    items = []
    for name, strat in result.strategies.items():
        for warning in strat.warnings:
            items.append(
                f'<li class="warning" data-strategy="{html.escape(name)}"><strong>'
                f"{html.escape(name)}</strong>: {html.escape(warning)}</li>"
            )
        for metric, why in strat.metrics.notes.items():
            label = METRIC_LABELS.get(metric, metric)
            items.append(
                f'<li class="na" data-strategy="{html.escape(name)}" '
                f'data-metric="{html.escape(metric)}">{html.escape(name)}, '
                f"{html.escape(label)}: n/a, {html.escape(why)}</li>"
            )
    if not items:
        return ""
    return f'<h3>Warnings and n/a reasons</h3><ul class="notes">{"".join(items)}</ul>'


def _cpcv_section(result: ReportInput) -> str:
    paths = result.cpcv_paths
    if paths is None or paths.empty:
        return _not_provided(
            "No CPCV run for this portfolio (it runs for the series named in the research "
            "config's cpcv_series)."
        )
    fig = go.Figure()
    for (series, family), group in paths.groupby(["series", "family"], sort=False):
        fig.add_trace(go.Box(y=group["sharpe"].to_numpy(), name=f"{family} ({series})"))
    fig.update_layout(yaxis_title="path Sharpe ratio (ann.)", height=380, showlegend=False)
    stats_ = (
        paths.groupby(["series", "family"], sort=False)["sharpe"]
        .describe()[["count", "mean", "std", "min", "50%", "max"]]
        .rename(columns={"count": "paths", "50%": "median"})
    )
    stats_.index = [f"{f} ({s})" for s, f in stats_.index]
    stats_.index.name = "family"
    info = result.cpcv_summary or {}
    text = ", ".join(f"{k}: {_format_cell(v)}" for k, v in info.items())
    return (
        f'<p class="cpcv-summary">{html.escape(text)}</p>'
        + _figure_html(fig)
        + _frame_table(stats_)
    )


# How each column of the analytics tables is written; anything else goes through _format_cell.
_STAT_FORMAT: Final = {
    "skew": "ratio",
    "kurtosis": "ratio",
    "best_bar": "pct",
    "worst_bar": "pct",
    "best_month": "pct",
    "worst_month": "pct",
    "best_year": "pct",
    "worst_year": "pct",
    "positive_months": "pct",
    "recovery_factor": "ratio",
    "ulcer_index": "pct",
    "avg_win": "money",
    "avg_loss": "money",
    "payoff_ratio": "ratio",
    "max_consecutive_wins": "count",
    "max_consecutive_losses": "count",
    "mean_holding": "duration",
    "beta": "ratio",
    "alpha": "pct",
    "correlation": "ratio",
    "information_ratio": "ratio",
    "depth": "pct",
    "bars": "count",
    "duration": "duration",
    "trades": "count",
    "net_pnl": "money",
    "contribution": "pct",
    "win_rate": "pct",
    "profit_factor": "ratio",
    "avg_pnl": "money",
    "costs": "money",
    "symbol_buy_and_hold": "pct",
    "quantity": "qty",
    "entry_price": "price",
    "exit_price": "price",
    "pnl": "money",
    "return": "pct",
    "rows": "count",
}


def _format_as(kind: str | None, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return "n/a" if kind != "time" else "—"
    if kind == "duration" or isinstance(value, pd.Timedelta | timedelta):
        return _format_duration(pd.Timedelta(value))
    if isinstance(value, pd.Timestamp | datetime):
        ts = pd.Timestamp(value)
        return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.strftime("%Y-%m-%d %H:%M")
    number = float(value) if isinstance(value, int | float | np.number) else None
    if number is None:
        return str(value)
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    if kind == "pct":
        return f"{number:.2%}"
    if kind == "ratio":
        return f"{number:,.2f}"
    if kind == "money":
        return f"{number:,.2f}"
    if kind == "count":
        return f"{int(number):,d}"
    if kind in {"qty", "price"}:
        return f"{number:,.6g}"
    return _format_cell(value)


def _kind_of(column: str) -> str | None:
    if column in _STAT_FORMAT:
        return _STAT_FORMAT[column]
    if column.endswith(" P&L"):
        return "money"
    if column.endswith(" trades"):
        return "count"
    if column.startswith("accuracy"):
        return "pct"
    return None


# Columns whose sign is the point (gains green, losses red); costs and hit rates are not.
_SIGNED: Final = frozenset(
    {"net_pnl", "contribution", "avg_pnl", "symbol_buy_and_hold", "pnl", "return", "depth"}
)


def _signed_class(column: str, value: Any) -> str:
    signed = column in _SIGNED or column.endswith(" P&L")
    if signed and isinstance(value, int | float | np.number):
        number = float(value)
        if number > 0:
            return ' class="pos"'
        if number < 0:
            return ' class="neg"'
    return ""


def _table(frame: pd.DataFrame, *, index: bool = True, css: str = "frame") -> str:
    """An HTML table whose cells are formatted by column (percent, money, counts, durations)
    and carry their exact value in data-value."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    index_head = f"<th>{html.escape(str(frame.index.name or ''))}</th>" if index else ""
    columns = [str(c) for c in frame.columns]
    kinds = [_kind_of(c) for c in columns]
    rows = []
    for idx, row in zip(frame.index, frame.itertuples(index=False), strict=True):
        cells = "".join(
            f'<td{_signed_class(c, v)} data-value="{html.escape(_raw(v))}">'
            f"{html.escape(_format_as(k, v))}</td>"
            for c, k, v in zip(columns, kinds, row, strict=True)
        )
        first = f"<th>{html.escape(_format_as(None, idx))}</th>" if index else ""
        rows.append(f"<tr>{first}{cells}</tr>")
    return (
        f'<table class="{css}"><thead><tr>{index_head}{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _raw(value: Any) -> str:
    if isinstance(value, pd.Timestamp | datetime):
        return "" if value is pd.NaT else pd.Timestamp(value).isoformat()
    if isinstance(value, pd.Timedelta | timedelta):
        return pd.Timedelta(value).isoformat()
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)


def _frame_table(frame: pd.DataFrame) -> str:
    return _table(frame)


def _extra_stats_table(result: ReportInput) -> str:
    bench = result.strategies[result.benchmark].equity
    stats = {
        n: extra_stats(s.equity, s.trades, bench, s.metrics.periods_per_year)
        for n, s in result.strategies.items()
    }
    frame = pd.DataFrame(stats).reindex(list(EXTRA_STAT_LABELS))
    names = list(result.strategies)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for key, label in EXTRA_STAT_LABELS.items():
        kind = _STAT_FORMAT[key]
        cells = "".join(
            f'<td data-stat="{key}" data-strategy="{html.escape(n)}" '
            f'data-value="{html.escape(_raw(frame.at[key, n]))}">'
            f"{html.escape(_format_as(kind, frame.at[key, n]))}</td>"
            for n in names
        )
        rows.append(f'<tr><th scope="row">{html.escape(label)}</th>{cells}</tr>')
    return (
        f'<table class="metrics"><thead><tr><th>statistic</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _drawdown_names(result: ReportInput) -> list[str]:
    """Strategies whose drawdowns and monthly tables are shown: the models and the benchmark."""
    return [
        n
        for n, s in result.strategies.items()
        if s.kind is StrategyKind.MODEL or n == result.benchmark
    ]


def _worst_drawdowns_section(result: ReportInput) -> str:
    parts = []
    for name in _drawdown_names(result):
        table = worst_drawdowns(result.strategies[name].equity, 5)
        body = (
            _table(table)
            if len(table)
            else _not_provided("Never under water: no drawdown to list.")
        )
        parts.append(f'<div class="cell"><h3>{html.escape(name)}</h3>{body}</div>')
    return (
        '<p class="note">Peak: last bar at the high-water mark; recovery: first bar back at it '
        "(— while still under water); duration runs from the peak to the recovery or the "
        f'last bar.</p><div class="grid">{"".join(parts)}</div>'
    )


def _yearly_section(result: ReportInput) -> str:
    table = pd.DataFrame({n: yearly_returns(s.equity) for n, s in result.strategies.items()})
    table.columns = [str(c) for c in table.columns]
    return _figure_html(_yearly_figure(result)) + _table_as_pct(table)


def _table_as_pct(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for idx, row in zip(frame.index, frame.itertuples(index=False), strict=True):
        cells = "".join(
            f'<td{_signed_class("return", v)} data-value="{html.escape(_raw(v))}">'
            f"{html.escape(_format_as('pct', v))}</td>"
            for v in row
        )
        rows.append(f"<tr><th>{html.escape(str(idx))}</th>{cells}</tr>")
    return (
        f'<table class="frame"><thead><tr><th>{html.escape(str(frame.index.name or ""))}</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _series_section(result: ReportInput) -> str:
    table = series_breakdown(
        {n: (s.trades, float(s.equity.iloc[0])) for n, s in result.strategies.items()},
        result.prices,
    )
    if table.empty:
        return _not_provided("No trades carry a symbol: nothing to break down by series.")
    colours = _colours(result)
    fig = go.Figure()
    for name in result.strategies:
        part = table[table["strategy"] == name]
        if len(part):
            fig.add_trace(
                go.Bar(
                    x=part["symbol"],
                    y=part["contribution"],
                    name=name,
                    marker_color=colours[name],
                    hovertemplate="%{x}: %{y:.2%}",
                )
            )
    fig.update_layout(height=340, barmode="group")
    fig.update_xaxes(type="category", title_text="series")
    fig.update_yaxes(tickformat=".1%", title_text="closed-trade P&L / start equity")
    note = (
        '<p class="note">Each series\' share of the shared-cash portfolio: closed round trips '
        "on that symbol. Contributions of one strategy add up to its closed-trade return; "
        "a position still open at the end (buy-and-hold's) is not in them. The last column "
        "is the symbol's own buy-and-hold return over the report's span.</p>"
    )
    return note + _figure_html(fig) + _table(table, index=False)


_TRADE_COLUMNS: Final = (
    "symbol", "side", "quantity", "entry_ts", "entry_price", "exit_ts", "exit_price", "pnl",
    "costs",
)  # fmt: skip
_MAX_TRADE_ROWS: Final = 500


def _trades_section(result: ReportInput) -> str:
    name = _primary(result)
    trades = result.strategies[name].trades
    parts = [
        f'<p class="note">Trades of <strong>{html.escape(name)}</strong>: entries are '
        "triangles (up long, down short), exits crosses (green a winner, red a loser).</p>"
    ]
    has_columns = {"symbol", "entry_ts", "exit_ts", "entry_price", "exit_price"} <= set(
        trades.columns
    )
    if result.prices and has_columns:
        for symbol, close in result.prices.items():
            mine = trades[trades["symbol"] == symbol]
            parts.append(_figure_html(_trades_figure(symbol, close, mine, name)))
    elif not result.prices:
        parts.append(_not_provided("No prices were provided: the trades are listed only."))
    if not len(trades):
        parts.append(_not_provided("No closed trades."))
        return "".join(parts)
    shown = trades[[c for c in _TRADE_COLUMNS if c in trades.columns]].copy()
    if {"quantity", "entry_price"} <= set(shown.columns):
        notional = (shown["quantity"].astype(float) * shown["entry_price"].astype(float)).abs()
        shown["return"] = shown["pnl"].astype(float) / notional.where(notional > 0)
    shown.index = pd.RangeIndex(1, len(shown) + 1, name="#")
    if len(shown) > _MAX_TRADE_ROWS:
        parts.append(
            f'<p class="note">The last {_MAX_TRADE_ROWS:,d} of {len(shown):,d} trades.</p>'
        )
        shown = shown.iloc[-_MAX_TRADE_ROWS:]
    parts.append(f'<div class="scroll">{_table(shown)}</div>')
    return "".join(parts)


def _folds_section(result: ReportInput) -> str:
    folds = result.folds
    if folds is None:
        return _not_provided("No per-fold table was provided.")
    if {"symbol", "start", "end"} <= set(folds.columns):
        shown = [n for n, s in result.strategies.items() if s.kind is StrategyKind.MODEL]
        folds = fold_breakdown(folds, {n: result.strategies[n].trades for n in shown})
        note = (
            '<p class="note">One row per series and walk-forward fold: the out-of-sample '
            "window, the models' hit rate on it, and each model's net P&L and trade count from "
            "trades entered on that series inside the window.</p>"
        )
        return note + f'<div class="scroll">{_table(folds)}</div>'
    return _table(folds)


def _importance_section(result: ReportInput) -> str:
    importance = result.feature_importance
    if importance is None or not len(importance):
        return _not_provided("No feature importance was provided.")
    caption = result.importance_title or "Feature importance"
    return f'<p class="note">{html.escape(caption)}</p>' + _figure_html(_importance_figure(result))


def _lineage(meta: ReportMetadata) -> str:
    runs = "".join(
        f"<li><code>{html.escape(str(k))}</code>: <code>{html.escape(str(v))}</code></li>"
        for k, v in meta.mlflow_run_ids.items()
    )
    config = json.dumps(_jsonable(meta.config), indent=2, sort_keys=True)
    return (
        "<dl>"
        f"<dt>Generated at (UTC)</dt><dd>{html.escape(meta.generated_at.isoformat())}</dd>"
        f"<dt>Data fingerprint</dt><dd><code>{html.escape(meta.data_fingerprint)}</code></dd>"
        f"<dt>Git revision</dt><dd><code>{html.escape(meta.git_rev)}</code></dd>"
        f"<dt>MLflow runs</dt><dd><ul>{runs or '<li>none recorded</li>'}</ul></dd>"
        "<dt>Configuration</dt><dd><details><summary>resolved configuration (JSON)</summary>"
        f"<pre>{html.escape(config)}</pre></details></dd>"
        "</dl>"
    )


def _section(key: str, body: str) -> str:
    return f'<section id="{key}"><h2>{html.escape(SECTION_TITLES[key])}</h2>{body}</section>'


def _not_provided(what: str) -> str:
    return f'<p class="missing">{html.escape(what)}</p>'


_CSS: Final = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222;
  padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem;
  margin-top: 2rem; } h3 { font-size: 1rem; margin: 0.4rem 0; }
nav { font-size: 0.85rem; line-height: 1.8; } nav a { margin-right: 0.8rem; color: #2a5db0; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: right; white-space: nowrap; }
th[scope="row"], .frame tbody th { text-align: left; font-weight: normal; }
thead th { background: #f4f4f4; position: sticky; top: 0; }
.kind { font-weight: normal; color: #777; font-size: 0.8rem; }
th .description { display: inline-block; white-space: normal; max-width: 11rem; }
.metrics { display: block; overflow-x: auto; max-width: 100%; }
.pos { color: #1a7f37; } .neg { color: #b42318; }
.missing, .note { color: #666; } .missing { font-style: italic; }
pre { background: #f8f8f8; padding: 0.5rem; overflow: auto; }
.scroll { max-height: 28rem; overflow: auto; border: 1px solid #eee; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1rem; }
.fig { width: 100%; } .fig-error { color: #b42318; font-weight: bold; }
#disclaimer { background: #fff7e6; padding: 0.5rem 1rem; border: 1px solid #f0d9a8; }
"""

# Draws each chart when it comes within a screen of the viewport (all of them before
# printing), so the page is readable while later charts are still unbuilt.
_BOOT_JS: Final = """
(function () {
  var config = %s;
  var figs = Array.prototype.slice.call(document.querySelectorAll('div.fig'));
  if (typeof Plotly === 'undefined') {
    figs.forEach(function (el) {
      el.style.height = 'auto';
      el.innerHTML = '<p class="fig-error">Chart not drawn: plotly.min.js was not found beside ' +
        'this file. Keep the report folder together.</p>';
    });
    return;
  }
  function draw(el) {
    if (el.dataset.drawn) { return; }
    el.dataset.drawn = '1';
    var spec = JSON.parse(el.nextElementSibling.textContent);
    Plotly.newPlot(el, spec.data, spec.layout, config);
  }
  window.addEventListener('beforeprint', function () { figs.forEach(draw); });
  var near = window.innerHeight + 800;
  figs.forEach(function (el) { if (el.getBoundingClientRect().top < near) { draw(el); } });
  if (!('IntersectionObserver' in window)) { figs.forEach(draw); return; }
  var io = new IntersectionObserver(function (entries) {
    entries.forEach(function (e) {
      if (e.isIntersecting) { io.unobserve(e.target); draw(e.target); }
    });
  }, {rootMargin: '800px 0px'});
  figs.forEach(function (el) { io.observe(el); });
})();
"""


class PlotlyJs(StrEnum):
    """Where the report's plotly.js comes from."""

    DIRECTORY = "directory"  # one plotly.min.js beside the report, shared by its directory
    INLINE = "inline"  # pasted into the file: one file that opens anywhere (MLflow's viewer)


PLOTLY_JS_FILE: Final = "plotly.min.js"


def _sections(result: ReportInput) -> dict[str, str]:
    window = result.rolling_window or _default_window(result)
    window_note = f'<p class="note">Window: {html.escape(_window_text(result, window))}.</p>'
    pnl_fig = _trade_pnl_figure(result)
    return {
        "equity": _figure_html(_equity_figure(result)),
        "metrics": _metrics_table(result),
        "drawdown": _figure_html(_drawdown_figure(result)),
        "worst_drawdowns": _worst_drawdowns_section(result),
        "yearly": _yearly_section(result),
        "monthly": "".join(
            _figure_html(_monthly_figure(n, result.strategies[n].equity))
            for n in _drawdown_names(result)
        ),
        "distribution": _figure_html(_distribution_figure(result)),
        "extra_stats": _extra_stats_table(result),
        "rolling_sharpe": window_note + _figure_html(_rolling_figure(result, window, "sharpe")),
        "rolling_vol": window_note + _figure_html(_rolling_figure(result, window, "vol")),
        "exposure": _exposure_section(result, window),
        "series": _series_section(result),
        "trades": _trades_section(result),
        "trade_pnl": _figure_html(pnl_fig)
        if pnl_fig is not None
        else _not_provided("No closed trades."),
        "folds": _folds_section(result),
        "cpcv": _cpcv_section(result),
        "importance": _importance_section(result),
        "lineage": _lineage(result.metadata),
        "disclaimer": f"<p>{html.escape(DISCLAIMER)}</p>",
    }


def _library_tag(plotly_js: PlotlyJs) -> str:
    if plotly_js is PlotlyJs.INLINE:
        return f'<script type="text/javascript">{get_plotlyjs()}</script>'
    return f'<script type="text/javascript" src="{PLOTLY_JS_FILE}" charset="utf-8"></script>'


def _build_html(result: ReportInput, plotly_js: PlotlyJs = PlotlyJs.DIRECTORY) -> str:
    bodies = _sections(result)
    sections = "".join(_section(key, bodies[key]) for key in SECTION_TITLES)
    nav = "".join(
        f'<a href="#{key}">{html.escape(title)}</a>' for key, title in SECTION_TITLES.items()
    )
    title = html.escape(result.title)
    library = _library_tag(plotly_js)
    boot = _BOOT_JS % json.dumps(_PLOT_CONFIG)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_CSS}</style></head>"
        f"<body><h1>{title}</h1>"
        f'<p class="kind">Benchmark: {html.escape(result.benchmark)}. '
        f"Generated {html.escape(result.metadata.generated_at.isoformat())}.</p>"
        f"{_left_out_block(result.left_out)}<nav>{nav}</nav>{sections}{library}<script>{boot}</script></body></html>\n"
    )


_LEFT_OUT_START, _LEFT_OUT_END = "<!-- left-out -->", "<!-- /left-out -->"


def _left_out_block(left_out: tuple[str, ...] | list[str]) -> str:
    """The series this portfolio does not hold, under the title: a reader sees the gap first."""
    items = "".join(f'<li class="warning">{html.escape(w)}</li>' for w in left_out)
    body = (
        f'<section id="left-out"><h3>Left out of this portfolio</h3><ul class="notes">{items}'
        "</ul></section>"
        if left_out
        else ""
    )
    return f"{_LEFT_OUT_START}{body}{_LEFT_OUT_END}"


def left_out_warning(key: str, why: str = "no predictions") -> str:
    """The warning that names a series left out of a portfolio and the command that fixes it."""
    return f"{key}: left out: {why}; run `candleflow research --series {key}`"


def add_left_out(
    path: Path, left_out: list[str] | tuple[str, ...], *, standalone: Path | None = None
) -> None:
    """Write the left-out warnings into a rendered report at `path` (replacing any there);
    `standalone` also gets the result as one self-contained file (plotly.js inline)."""
    path = Path(path)
    document = path.read_text(encoding="utf-8")
    block = _left_out_block(tuple(left_out))
    if _LEFT_OUT_START in document:
        head, rest = document.split(_LEFT_OUT_START, 1)
        document = head + block + rest.split(_LEFT_OUT_END, 1)[1]
    else:
        document = document.replace("<nav>", block + "<nav>", 1)
    path.write_text(document, encoding="utf-8")
    if standalone is not None:
        inline = document.replace(
            _library_tag(PlotlyJs.DIRECTORY), _library_tag(PlotlyJs.INLINE), 1
        )
        Path(standalone).write_text(inline, encoding="utf-8")


def _ensure_plotly_js(directory: Path) -> Path:
    """plotly.min.js from the installed plotly package, written once per directory (and again
    only when the installed version differs)."""
    target = directory / PLOTLY_JS_FILE
    library = get_plotlyjs()
    if not target.exists() or target.stat().st_size != len(library.encode("utf-8")):
        target.write_text(library, encoding="utf-8")
    return target


def render_report(
    result: ReportInput,
    path: Path,
    *,
    plotly_js: PlotlyJs | str = PlotlyJs.DIRECTORY,
    standalone: Path | None = None,
) -> Path:
    """Write the report as HTML at `path` and return the path.

    With plotly_js="directory" (the default) the charts load plotly.min.js from the same folder,
    written there once from the installed plotly package; "inline" pastes it into the file.
    Neither needs a network. `standalone` also writes a self-contained (inline) copy there,
    from the same rendering.
    """
    path = Path(path)
    mode = PlotlyJs(plotly_js)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is PlotlyJs.DIRECTORY:
        _ensure_plotly_js(path.parent)
    document = _build_html(result, mode)
    path.write_text(document, encoding="utf-8")
    logger.info("wrote backtest report %s (%d bytes, plotly.js %s)", path, len(document), mode)
    if standalone is not None:
        inline = document.replace(_library_tag(mode), _library_tag(PlotlyJs.INLINE), 1)
        Path(standalone).parent.mkdir(parents=True, exist_ok=True)
        Path(standalone).write_text(inline, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# JSON summary
# ---------------------------------------------------------------------------------------------

_NON_FINITE: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _jsonable(obj: Any) -> Any:
    """Strict-JSON form: non-finite floats as the strings NaN / Infinity / -Infinity, times as
    ISO strings. Values of other types become their str(), which does not read back."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool | str) or obj is None:
        return obj
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        number = float(obj)
        if math.isnan(number):
            return "NaN"
        if math.isinf(number):
            return "Infinity" if number > 0 else "-Infinity"
        return number
    if isinstance(obj, pd.Timedelta | timedelta):
        return pd.Timedelta(obj).isoformat()
    if isinstance(obj, datetime):
        return obj.isoformat()
    return str(obj)


def _from_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_jsonable(v) for v in obj]
    if isinstance(obj, str) and obj in _NON_FINITE:
        return _NON_FINITE[obj]
    return obj


def _reject_unknown(data: Mapping[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        msg = f"unknown keys in {what}: {', '.join(unknown)}"
        raise ReportError(msg)


def write_summary_json(result: ReportInput, path: Path) -> Path:
    """Write title, benchmark, lineage and every strategy's metrics as strict JSON."""
    payload = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "title": result.title,
        "benchmark": result.benchmark,
        "metadata": result.metadata.to_dict(),
        "strategies": {
            name: {
                "kind": strat.kind.value,
                "description": strat.description,
                "warnings": list(strat.warnings),
                "metrics": _jsonable(strat.metrics.to_dict()),
            }
            for name, strat in result.strategies.items()
        },
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    logger.info("wrote backtest summary %s", path)
    return path


def read_summary_json(path: Path) -> ReportSummary:
    """Read a summary written by write_summary_json."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    _reject_unknown(
        data, {"schema_version", "title", "benchmark", "metadata", "strategies"}, "summary"
    )
    if data.get("schema_version") != SUMMARY_SCHEMA_VERSION:
        msg = (
            f"summary schema_version {data.get('schema_version')!r} is not {SUMMARY_SCHEMA_VERSION}"
        )
        raise ReportError(msg)
    metrics = {}
    kinds = {}
    for name, entry in data["strategies"].items():
        _reject_unknown(entry, {"kind", "description", "warnings", "metrics"}, f"strategy {name!r}")
        metrics[name] = Metrics.from_dict(_from_jsonable(entry["metrics"]))
        kinds[name] = StrategyKind(entry["kind"])
    return ReportSummary(
        title=data["title"],
        benchmark=data["benchmark"],
        metadata=ReportMetadata.from_dict(data["metadata"]),
        metrics=metrics,
        kinds=kinds,
    )
