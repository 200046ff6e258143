"""Report: renders every section, opens offline, and shows exactly the metrics it was given."""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from execution.metrics import Metrics, compute_metrics
from execution.report import (
    DISCLAIMER,
    METRIC_LABELS,
    SECTION_TITLES,
    ReportError,
    ReportInput,
    ReportMetadata,
    StrategyKind,
    StrategyResult,
    format_metric,
    monthly_returns,
    read_summary_json,
    render_report,
    write_summary_json,
)

FIXED_NOW = datetime(2024, 6, 30, 12, 0, tzinfo=UTC)
INDEX = pd.date_range("2023-01-02", periods=120, freq="B", tz="UTC")


def _strategy(name: str, drift: float, seed: int, kind: StrategyKind) -> StrategyResult:
    rng = np.random.default_rng(seed)
    equity = pd.Series(100_000.0 * np.cumprod(1.0 + rng.normal(drift, 0.01, len(INDEX))), INDEX)
    trades = pd.DataFrame(
        {
            "symbol": ["SPX"] * 8,
            "entry_ts": INDEX[:8],
            "exit_ts": INDEX[1:9],
            "pnl": rng.normal(50.0, 200.0, 8),
            "costs": np.full(8, 2.0),
        }
    )
    metrics = compute_metrics(equity, trades, periods_per_year=252, turnover_notional=4e5)
    return StrategyResult(equity=equity, metrics=metrics, trades=trades, kind=kind)


def _flat() -> StrategyResult:
    equity = pd.Series(100_000.0, index=INDEX)
    trades = pd.DataFrame({"pnl": pd.Series([], dtype=float)})
    metrics = compute_metrics(equity, trades, periods_per_year=252)
    return StrategyResult(equity=equity, metrics=metrics, trades=trades, kind=StrategyKind.BASELINE)


def _metadata() -> ReportMetadata:
    return ReportMetadata(
        generated_at=FIXED_NOW,
        data_fingerprint="sha256:0123abcd",
        git_rev="a1b2c3d",
        mlflow_run_ids={"fold-0": "run0", "fold-1": "run1"},
        config={"model": "xgboost", "threshold": 0.55, "cap": math.inf, "symbols": ["SPX"]},
    )


def _input(**overrides: object) -> ReportInput:
    strategies = {
        "xgb": _strategy("xgb", 0.0008, 1, StrategyKind.MODEL),
        "buy_and_hold": _strategy("buy_and_hold", 0.0003, 2, StrategyKind.BASELINE),
        "sma_crossover": _strategy("sma_crossover", 0.0001, 3, StrategyKind.BASELINE),
        "flat": _flat(),
    }
    values: dict[str, object] = {
        "title": "SPX daily <walk-forward>",
        "strategies": strategies,
        "metadata": _metadata(),
        "folds": pd.DataFrame(
            {"train_end": INDEX[[40, 80]], "sharpe": [1.2, -0.3], "n_trades": [4, 4]},
            index=pd.Index([0, 1], name="fold"),
        ),
        "feature_importance": pd.Series({"rsi_14": 0.4, "ret_1": 0.35, "atr_14": 0.25}),
    }
    values.update(overrides)
    return ReportInput(**values)  # type: ignore[arg-type]


class _MetricCells(HTMLParser):
    """Collects (metric, strategy) -> (data-value, text) from the metrics table."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], tuple[str, str]] = {}
        self._open: tuple[str, str, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "td" and "data-metric" in a:
            self._open = (a["data-metric"] or "", a["data-strategy"] or "", a["data-value"] or "")
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._open is not None:
            metric, strategy, value = self._open
            self.cells[(metric, strategy)] = (value, "".join(self._text))
            self._open = None


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReportInput, str]:
    result = _input()
    path = render_report(result, tmp_path_factory.mktemp("report") / "out" / "report.html")
    return result, path.read_text(encoding="utf-8")


def test_render_report_when_full_input_then_every_section_heading_present(
    rendered: tuple[ReportInput, str],
) -> None:
    # Arrange
    _, doc = rendered
    # Act
    headings = re.findall(r"<h2>(.*?)</h2>", doc)
    # Assert
    assert headings == [html.escape(t) for t in SECTION_TITLES.values()]
    assert html.escape(DISCLAIMER) in doc
    assert "not investment advice" in doc
    assert "Past performance" in doc


def test_render_report_when_written_then_self_contained_offline(
    rendered: tuple[ReportInput, str],
) -> None:
    # Arrange
    _, doc = rendered
    # Act
    remote_refs = re.findall(r"<(?:script|link|img|iframe)[^>]+(?:src|href)=[\"']?https?:", doc)
    # Assert
    assert remote_refs == []
    assert re.findall(r"<script[^>]*\bsrc=", doc) == []
    assert "plotly.js v" in doc[:2_000_000]  # the library itself is inline
    assert doc.count("Plotly.newPlot(") >= 7  # equity, drawdown, 2 heatmaps, rolling, pnl, fi


def test_render_report_when_metrics_given_then_table_shows_exactly_those_values(
    rendered: tuple[ReportInput, str],
) -> None:
    # Arrange
    result, doc = rendered
    parser = _MetricCells()
    # Act
    parser.feed(doc)
    # Assert
    assert len(parser.cells) == len(METRIC_LABELS) * len(result.strategies)
    for name, strategy in result.strategies.items():
        for metric in METRIC_LABELS:
            expected = getattr(strategy.metrics, metric)
            data_value, text = parser.cells[(metric, name)]
            assert text == format_metric(metric, expected), (name, metric)
            if isinstance(expected, pd.Timedelta):
                assert pd.Timedelta(data_value) == expected
            elif isinstance(expected, float) and math.isnan(expected):
                assert math.isnan(float(data_value)), (name, metric)
            else:
                assert float(data_value) == expected, (name, metric)


def test_render_report_when_known_metric_values_then_formatted_sensibly(tmp_path: Path) -> None:
    # Arrange: pin a few values so the formatting is checked independently of format_metric
    base = _input()
    model = base.strategies["xgb"]
    pinned = dataclasses.replace(
        model.metrics,
        total_return=0.123456,
        sharpe=1.23456,
        max_drawdown=-0.0876,
        psr=0.97531,
        n_trades=1234,
        costs_paid=12345.678,
        profit_factor=math.inf,
        max_drawdown_duration=pd.Timedelta(days=3, hours=4),
    )
    strategies = dict(base.strategies)
    strategies["xgb"] = dataclasses.replace(model, metrics=pinned)
    parser = _MetricCells()
    # Act
    path = render_report(_input(strategies=strategies), tmp_path / "r.html")
    parser.feed(path.read_text(encoding="utf-8"))
    # Assert
    shown = {m: parser.cells[(m, "xgb")][1] for m in METRIC_LABELS}
    assert shown["total_return"] == "12.35%"
    assert shown["sharpe"] == "1.23"
    assert shown["max_drawdown"] == "-8.76%"
    assert shown["psr"] == "0.975"
    assert shown["n_trades"] == "1,234"
    assert shown["costs_paid"] == "12,345.68"
    assert shown["profit_factor"] == "∞"
    assert shown["max_drawdown_duration"] == "3d 04:00"
    assert parser.cells[("sharpe", "flat")][1] == "n/a"


def test_render_report_when_title_has_markup_then_escaped(
    rendered: tuple[ReportInput, str],
) -> None:
    _, doc = rendered
    assert "SPX daily &lt;walk-forward&gt;" in doc
    assert "<walk-forward>" not in doc


def test_render_report_when_optional_inputs_missing_then_sections_say_so(tmp_path: Path) -> None:
    # Arrange
    result = _input(folds=None, feature_importance=None)
    # Act
    doc = render_report(result, tmp_path / "r.html").read_text(encoding="utf-8")
    # Assert
    assert re.findall(r"<h2>(.*?)</h2>", doc) == [html.escape(t) for t in SECTION_TITLES.values()]
    assert "No per-fold table was provided." in doc
    assert "No feature importance was provided." in doc


def test_render_report_when_lineage_given_then_footer_lists_it(
    rendered: tuple[ReportInput, str],
) -> None:
    _, doc = rendered
    lineage = doc[doc.index('<section id="lineage">') :]
    for text in ("sha256:0123abcd", "a1b2c3d", "run0", "run1", "xgboost", FIXED_NOW.isoformat()):
        assert text in lineage


def test_write_summary_json_when_read_back_then_round_trips(tmp_path: Path) -> None:
    # Arrange
    result = _input()
    # Act
    path = write_summary_json(result, tmp_path / "summary.json")
    summary = read_summary_json(path)
    # Assert
    json.loads(path.read_text(), parse_constant=_reject_constant)  # strict JSON: no NaN tokens
    assert summary.title == result.title
    assert summary.benchmark == "buy_and_hold"
    assert summary.metadata == result.metadata
    assert list(summary.metrics) == list(result.strategies)
    assert summary.kinds["xgb"] is StrategyKind.MODEL
    assert summary.kinds["flat"] is StrategyKind.BASELINE
    for name, strategy in result.strategies.items():
        _assert_metrics_equal(summary.metrics[name], strategy.metrics)


def _reject_constant(token: str) -> float:
    msg = f"non-standard JSON constant {token}"
    raise AssertionError(msg)


def _assert_metrics_equal(got: Metrics, want: Metrics) -> None:
    for f in dataclasses.fields(Metrics):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if isinstance(b, float) and math.isnan(b):
            assert math.isnan(a), f.name
        else:
            assert a == b, f.name
            assert type(a) is type(b) or isinstance(a, float), f.name


def test_read_summary_json_when_unknown_key_then_raises(tmp_path: Path) -> None:
    # Arrange
    path = write_summary_json(_input(), tmp_path / "summary.json")
    data = json.loads(path.read_text())
    data["surprise"] = 1
    path.write_text(json.dumps(data))
    # Act / Assert
    with pytest.raises(ReportError, match="unknown keys in summary: surprise"):
        read_summary_json(path)


def test_report_input_when_benchmark_missing_then_raises() -> None:
    with pytest.raises(ReportError, match="benchmark 'spy' is not among the strategies"):
        _input(benchmark="spy")


def test_report_metadata_when_naive_time_then_raises() -> None:
    with pytest.raises(ReportError, match="tz-aware UTC"):
        ReportMetadata(
            generated_at=datetime(2024, 1, 1),
            data_fingerprint="x",
            git_rev="y",
        )


def test_report_metadata_when_non_utc_offset_then_raises() -> None:
    from datetime import timezone

    with pytest.raises(ReportError, match="tz-aware UTC"):
        ReportMetadata(
            generated_at=datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2))),
            data_fingerprint="x",
            git_rev="y",
        )


def test_monthly_returns_when_hand_computed_then_months_compound_to_total() -> None:
    # Arrange: 100 at the start, 110 at the end of January, 99 at the end of February
    index = pd.DatetimeIndex(["2024-01-01", "2024-01-31", "2024-02-15", "2024-02-29"], tz="UTC")
    equity = pd.Series([100.0, 110.0, 105.0, 99.0], index=index)
    # Act
    table = monthly_returns(equity)
    # Assert
    assert table.loc[2024, 1] == pytest.approx(0.10)
    assert table.loc[2024, 2] == pytest.approx(-0.10)
    assert table.loc[2024].isna().sum() == 10
    assert (1 + table.loc[2024].dropna()).prod() - 1 == pytest.approx(99.0 / 100.0 - 1)
