"""The backtest report: one self-contained HTML file and a JSON summary.

The HTML embeds plotly.js inline (once, in the head), so the file opens offline and can be
attached to an MLflow run or mailed as is. Every number in the metrics table carries its exact
value in a `data-value` attribute beside the formatted text, so a reader (or a test) can check
the table against the Metrics it was rendered from.
"""

from __future__ import annotations

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
import plotly.io as pio
from plotly.offline import get_plotlyjs

from execution.metrics import Metrics, drawdown_series, returns_from_equity

__all__ = [
    "DISCLAIMER",
    "METRIC_LABELS",
    "SECTION_TITLES",
    "ReportError",
    "ReportInput",
    "ReportMetadata",
    "ReportSummary",
    "StrategyKind",
    "StrategyResult",
    "format_metric",
    "monthly_returns",
    "read_summary_json",
    "render_report",
    "write_summary_json",
]

logger = logging.getLogger(__name__)

SUMMARY_SCHEMA_VERSION: Final = 1

DISCLAIMER: Final = (
    "Research output, not investment advice. Past performance, simulated or real, is not a "
    "reliable indicator of future results. Backtests are simulations: they depend on the data, "
    "the cost and fill assumptions and the choices made while researching, and they overstate "
    "what live trading achieves. Trading involves risk of loss."
)

# Section id -> heading, in page order.
SECTION_TITLES: Final = {
    "equity": "Equity: strategies vs buy-and-hold",
    "drawdown": "Drawdown",
    "monthly": "Monthly returns",
    "rolling_sharpe": "Rolling Sharpe ratio",
    "trade_pnl": "Trade P&L distribution",
    "folds": "Per-fold results",
    "importance": "Feature importance",
    "metrics": "Metrics: strategies and baselines side by side",
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
    "n_trials": "Trials",
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
_COUNT = frozenset({"n_bars", "n_trades", "n_trials", "max_drawdown_duration_bars"})


class ReportError(ValueError):
    """Report inputs that cannot be rendered (missing benchmark, bad index, unknown keys)."""


class StrategyKind(StrEnum):
    MODEL = "model"
    BASELINE = "baseline"


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
    folds: pd.DataFrame | None = None  # per-fold table, one row per walk-forward fold
    feature_importance: pd.Series | None = None  # feature name -> importance
    rolling_window: int | None = None  # bars in the rolling Sharpe window; None: ~a quarter

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


def _figure_html(fig: go.Figure) -> str:
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 40, "b": 40})
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, config=_PLOT_CONFIG)


def _x(index: pd.Index) -> np.ndarray:
    """UTC wall times without an offset: plotly.js does not reliably honour ISO offsets, and
    every axis here is labelled UTC."""
    return pd.DatetimeIndex(index).tz_convert("UTC").tz_localize(None).to_numpy()


def _equity_figure(result: ReportInput) -> go.Figure:
    fig = go.Figure()
    for name, strat in result.strategies.items():
        growth = strat.equity / float(strat.equity.iloc[0])
        dash = "dash" if name == result.benchmark else "solid"
        fig.add_trace(
            go.Scatter(x=_x(growth.index), y=growth.to_numpy(), name=name, line={"dash": dash})
        )
    fig.update_layout(
        yaxis_title="growth of 1 unit of equity", xaxis_title="time (UTC)", height=420
    )
    return fig


def _drawdown_figure(result: ReportInput) -> go.Figure:
    fig = go.Figure()
    for name, strat in result.strategies.items():
        dd = drawdown_series(strat.equity)
        fig.add_trace(go.Scatter(x=_x(dd.index), y=dd.to_numpy(), name=name, fill="tozeroy"))
    fig.update_layout(
        yaxis_title="drawdown", yaxis_tickformat=".0%", xaxis_title="time (UTC)", height=340
    )
    return fig


def monthly_returns(equity: pd.Series) -> pd.DataFrame:
    """Calendar-month returns of an equity curve as a year x month (1..12) table.

    The first month is measured from the curve's first value, later months from the previous
    month's last value, so the months compound to the total return.
    """
    month_end = equity.resample("ME").last().dropna()
    previous = month_end.shift(1)
    previous.iloc[0] = float(equity.iloc[0])
    rets = month_end / previous - 1.0
    table = pd.DataFrame(
        {"year": rets.index.year, "month": rets.index.month, "ret": rets.to_numpy()}
    )
    return table.pivot_table(index="year", columns="month", values="ret", aggfunc="first").reindex(
        columns=range(1, 13)
    )


def _monthly_figure(name: str, equity: pd.Series) -> go.Figure:
    table = monthly_returns(equity)
    z = table.to_numpy(dtype=float) * 100.0
    text = [[("" if math.isnan(v) else f"{v:.1f}") for v in row] for row in z]
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=months,
            y=[str(y) for y in table.index],
            text=text,
            texttemplate="%{text}",
            colorscale="RdYlGn",
            zmid=0.0,
            colorbar={"title": "%"},
        )
    )
    fig.update_layout(title=f"{name}: monthly returns (%)", height=140 + 28 * len(table))
    return fig


def _default_window(result: ReportInput) -> int:
    shortest = min(len(s.equity) for s in result.strategies.values())
    ppy = next(iter(result.strategies.values())).metrics.periods_per_year
    # About a quarter of a year, but never more than half the sample, so the line exists.
    return max(2, min(round(ppy / 4), shortest // 2))


def _rolling_sharpe_figure(result: ReportInput, window: int) -> go.Figure:
    fig = go.Figure()
    for name, strat in result.strategies.items():
        rets = returns_from_equity(strat.equity)
        ppy = strat.metrics.periods_per_year
        mean = rets.rolling(window).mean()
        sd = rets.rolling(window).std(ddof=1)
        sharpe = (mean / sd.where(sd > 0)) * math.sqrt(ppy)
        fig.add_trace(go.Scatter(x=_x(sharpe.index), y=sharpe.to_numpy(), name=name))
    fig.update_layout(
        yaxis_title=f"Sharpe over {window} bars (ann.)", xaxis_title="time (UTC)", height=340
    )
    return fig


def _trade_pnl_figure(result: ReportInput) -> go.Figure | None:
    fig = go.Figure()
    for name, strat in result.strategies.items():
        pnl = strat.trades["pnl"].to_numpy(dtype=float)
        if len(pnl):
            fig.add_trace(go.Histogram(x=pnl, name=name, opacity=0.6, nbinsx=40))
    if not fig.data:
        return None
    fig.update_layout(barmode="overlay", xaxis_title="net P&L per trade", height=340)
    return fig


def _importance_figure(importance: pd.Series, top: int = 30) -> go.Figure:
    ordered = importance.astype(float).sort_values(ascending=False).iloc[:top].iloc[::-1]
    fig = go.Figure(
        go.Bar(x=ordered.to_numpy(), y=[str(i) for i in ordered.index], orientation="h")
    )
    fig.update_layout(height=120 + 22 * len(ordered), xaxis_title="importance")
    return fig


# ---------------------------------------------------------------------------------------------
# Tables and sections
# ---------------------------------------------------------------------------------------------


def _metrics_table(result: ReportInput) -> str:
    names = list(result.strategies)
    head = "".join(
        f'<th scope="col" data-strategy="{html.escape(n)}">{html.escape(n)}'
        f'<br><span class="kind">{result.strategies[n].kind.value}</span></th>'
        for n in names
    )
    rows = []
    for metric, label in METRIC_LABELS.items():
        cells = []
        for n in names:
            value = getattr(result.strategies[n].metrics, metric)
            cells.append(
                f'<td data-metric="{metric}" data-strategy="{html.escape(n)}" '
                f'data-value="{html.escape(_data_value(value))}">'
                f"{html.escape(format_metric(metric, value))}</td>"
            )
        rows.append(f'<tr><th scope="row">{html.escape(label)}</th>{"".join(cells)}</tr>')
    return (
        f'<table class="metrics"><thead><tr><th>metric</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _frame_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    index_name = html.escape(str(frame.index.name or ""))
    rows = []
    for idx, row in zip(frame.index, frame.itertuples(index=False), strict=True):
        cells = "".join(f"<td>{html.escape(_format_cell(v))}</td>" for v in row)
        rows.append(f"<tr><th>{html.escape(_format_cell(idx))}</th>{cells}</tr>")
    return (
        f'<table class="frame"><thead><tr><th>{index_name}</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


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
        f"<dt>Configuration</dt><dd><pre>{html.escape(config)}</pre></dd>"
        "</dl>"
    )


def _section(key: str, body: str) -> str:
    return f'<section id="{key}"><h2>{html.escape(SECTION_TITLES[key])}</h2>{body}</section>'


def _not_provided(what: str) -> str:
    return f'<p class="missing">{html.escape(what)}</p>'


_CSS: Final = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th[scope="row"], .frame tbody th { text-align: left; font-weight: normal; }
thead th { background: #f4f4f4; } .kind { font-weight: normal; color: #777; font-size: 0.8rem; }
.missing { color: #777; font-style: italic; } pre { background: #f8f8f8; padding: 0.5rem; }
#disclaimer { background: #fff7e6; padding: 0.5rem 1rem; border: 1px solid #f0d9a8; }
"""


def _build_html(result: ReportInput) -> str:
    window = result.rolling_window or _default_window(result)
    sections = [
        _section("equity", _figure_html(_equity_figure(result))),
        _section("drawdown", _figure_html(_drawdown_figure(result))),
    ]
    monthly_names = [
        n
        for n, s in result.strategies.items()
        if s.kind is StrategyKind.MODEL or n == result.benchmark
    ]
    sections.append(
        _section(
            "monthly",
            "".join(
                _figure_html(_monthly_figure(n, result.strategies[n].equity)) for n in monthly_names
            ),
        )
    )
    sections.append(
        _section("rolling_sharpe", _figure_html(_rolling_sharpe_figure(result, window)))
    )
    pnl_fig = _trade_pnl_figure(result)
    sections.append(
        _section(
            "trade_pnl",
            _figure_html(pnl_fig) if pnl_fig is not None else _not_provided("No closed trades."),
        )
    )
    sections.append(
        _section(
            "folds",
            _frame_table(result.folds)
            if result.folds is not None
            else _not_provided("No per-fold table was provided."),
        )
    )
    importance = result.feature_importance
    sections.append(
        _section(
            "importance",
            _figure_html(_importance_figure(importance))
            if importance is not None and len(importance)
            else _not_provided("No feature importance was provided."),
        )
    )
    sections.append(_section("metrics", _metrics_table(result)))
    sections.append(_section("lineage", _lineage(result.metadata)))
    sections.append(_section("disclaimer", f"<p>{html.escape(DISCLAIMER)}</p>"))
    title = html.escape(result.title)
    # plotly.js goes in once, inline, so the file needs no network to open.
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
        f"<body><h1>{title}</h1>"
        f'<p class="kind">Benchmark: {html.escape(result.benchmark)}. '
        f"Generated {html.escape(result.metadata.generated_at.isoformat())}.</p>"
        f"{''.join(sections)}</body></html>\n"
    )


def render_report(result: ReportInput, path: Path) -> Path:
    """Write the report as one self-contained HTML file at `path` and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = _build_html(result)
    path.write_text(document, encoding="utf-8")
    logger.info("wrote backtest report %s (%d bytes)", path, len(document))
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
            name: {"kind": strat.kind.value, "metrics": _jsonable(strat.metrics.to_dict())}
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
        _reject_unknown(entry, {"kind", "metrics"}, f"strategy {name!r}")
        metrics[name] = Metrics.from_dict(_from_jsonable(entry["metrics"]))
        kinds[name] = StrategyKind(entry["kind"])
    return ReportSummary(
        title=data["title"],
        benchmark=data["benchmark"],
        metadata=ReportMetadata.from_dict(data["metadata"]),
        metrics=metrics,
        kinds=kinds,
    )
