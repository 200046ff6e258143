"""Report: renders every section, opens offline, and shows exactly the metrics it was given."""

from __future__ import annotations

import base64
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
    PLOTLY_JS_FILE,
    SECTION_TITLES,
    ReportError,
    ReportInput,
    ReportMetadata,
    StrategyKind,
    StrategyResult,
    add_left_out,
    format_metric,
    monthly_returns,
    read_summary_json,
    relative_stats,
    render_report,
    series_breakdown,
    strategy_colours,
    worst_drawdowns,
    write_summary_json,
    yearly_returns,
)

FIXED_NOW = datetime(2024, 6, 30, 12, 0, tzinfo=UTC)
INDEX = pd.date_range("2023-01-02", periods=120, freq="B", tz="UTC")
PRICES = {
    "SPX": pd.Series(np.linspace(4000.0, 4400.0, len(INDEX)), INDEX),
    "NDX": pd.Series(np.linspace(12000.0, 11000.0, len(INDEX)), INDEX),
}


def _strategy(name: str, drift: float, seed: int, kind: StrategyKind) -> StrategyResult:
    rng = np.random.default_rng(seed)
    equity = pd.Series(100_000.0 * np.cumprod(1.0 + rng.normal(drift, 0.01, len(INDEX))), INDEX)
    trades = pd.DataFrame(
        {
            "symbol": ["SPX", "NDX"] * 4,
            "side": ["long", "short"] * 4,
            "quantity": np.full(8, 10.0),
            "entry_ts": INDEX[:8],
            "exit_ts": INDEX[1:9],
            "entry_price": PRICES["SPX"].to_numpy()[:8],
            "exit_price": PRICES["SPX"].to_numpy()[1:9],
            "pnl": rng.normal(50.0, 200.0, 8),
            "costs": np.full(8, 2.0),
        }
    )
    metrics = compute_metrics(equity, trades, periods_per_year=252, turnover_notional=4e5)
    exposure = pd.Series(0.5, index=INDEX)
    return StrategyResult(
        equity=equity, metrics=metrics, trades=trades, kind=kind, exposure=exposure
    )


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
        "prices": PRICES,
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


def _figures(doc: str) -> list[dict]:
    return [
        json.loads(m)
        for m in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', doc)
    ]


def _length(values: list | dict) -> int:
    """Points in a plotly array: a list, or typed-array JSON ({"dtype", "bdata"} in base64)."""
    if isinstance(values, list):
        return len(values)
    return len(base64.b64decode(values["bdata"])) // np.dtype(values["dtype"]).itemsize


def test_render_report_when_written_then_plotly_loads_from_a_file_beside_it(
    tmp_path: Path,
) -> None:
    # Arrange
    result = _input()
    # Act
    first = render_report(result, tmp_path / "report.html")
    second = render_report(result, tmp_path / "other.html")
    doc = first.read_text(encoding="utf-8")
    # Assert: one copy of the library for the directory, none inside the reports, no network
    library = tmp_path / PLOTLY_JS_FILE
    assert library.read_text(encoding="utf-8").lstrip().startswith("/**\n* plotly.js v")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "other.html",
        PLOTLY_JS_FILE,
        "report.html",
    ]
    assert "plotly.js v" not in doc
    assert re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", doc) == [PLOTLY_JS_FILE]
    assert re.findall(r"(?:src|href)=[\"']?https?:", doc) == []
    assert first.stat().st_size < 400_000 and second.stat().st_size < 400_000
    assert len(_figures(doc)) >= 12  # equity .. importance, each drawn from its own JSON


def test_render_report_when_inline_then_one_file_holds_the_library(tmp_path: Path) -> None:
    # Act
    path = render_report(_input(), tmp_path / "report.html", plotly_js="inline")
    doc = path.read_text(encoding="utf-8")
    # Assert
    assert not (tmp_path / PLOTLY_JS_FILE).exists()
    assert re.findall(r"<script[^>]*\bsrc=", doc) == []
    assert "plotly.js v" in doc


def test_render_report_when_standalone_asked_then_same_report_with_library_inline(
    tmp_path: Path,
) -> None:
    # Act
    path = render_report(_input(), tmp_path / "r.html", standalone=tmp_path / "mlflow" / "r.html")
    doc = path.read_text(encoding="utf-8")
    alone = (tmp_path / "mlflow" / "r.html").read_text(encoding="utf-8")
    # Assert
    assert re.findall(r"<script[^>]*\bsrc=", alone) == []
    assert "plotly.js v" in alone and "plotly.js v" not in doc
    assert _figures(alone) == _figures(doc)
    assert not (tmp_path / "mlflow" / PLOTLY_JS_FILE).exists()


def test_render_report_when_many_strategies_then_each_keeps_one_colour_in_every_chart(
    rendered: tuple[ReportInput, str],
) -> None:
    # Arrange
    result, doc = rendered
    expected = strategy_colours(list(result.strategies), result.benchmark)
    seen: dict[str, set[str]] = {}
    # Act
    for fig in _figures(doc):
        for trace in fig["data"]:
            name = trace.get("name")
            colour = (trace.get("line") or {}).get("color") or (trace.get("marker") or {}).get(
                "color"
            )
            if name in expected and isinstance(colour, str):
                seen.setdefault(name, set()).add(colour)
    # Assert
    assert set(seen) == set(expected)
    assert all(colours == {expected[n]} for n, colours in seen.items()), seen
    assert len(set(expected.values())) == len(expected)


def test_render_report_when_prices_given_then_every_trade_is_marked_on_its_symbol(
    rendered: tuple[ReportInput, str],
) -> None:
    # Arrange
    result, doc = rendered
    trades = result.strategies["xgb"].trades  # the first model is the one charted
    # Act
    charts = [f for f in _figures(doc) if "xgb trades" in str(f["layout"].get("title"))]
    # Assert
    assert len(charts) == 2
    for fig in charts:
        symbol = fig["layout"]["title"]["text"].split(":")[0]
        mine = trades[trades["symbol"] == symbol]
        entries = sum(_length(t["y"]) for t in fig["data"] if "entry" in t["name"])
        exits = next(t for t in fig["data"] if t["name"] == "exit")
        assert entries == len(mine)
        assert _length(exits["y"]) == len(mine)


def test_render_report_when_rolling_window_not_given_then_it_fits_the_sample(
    rendered: tuple[ReportInput, str],
) -> None:
    # Arrange: 120 daily bars; half a year (126 bars) would leave no rolling line at all
    _, doc = rendered
    # Act
    section = doc[doc.index('<section id="rolling_sharpe">') :]
    window = int(re.search(r"Window: (\d+) bars", section).group(1))
    # Assert
    assert 10 <= window <= 120 // 4


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


def test_add_left_out_when_run_twice_then_report_lists_only_the_last_warnings_under_title(
    tmp_path: Path,
) -> None:
    path = render_report(_input(), tmp_path / "r.html")
    first = "SAP@1d: left out: no predictions; run `candleflow research --series SAP@1d`"
    second = "BMW@1d: left out: no <predictions>"

    add_left_out(path, [first])
    add_left_out(path, [second], standalone=tmp_path / "copy.html")
    doc = path.read_text(encoding="utf-8")
    copy = (tmp_path / "copy.html").read_text(encoding="utf-8")

    assert first not in doc
    assert doc.count('id="left-out"') == 1
    assert html.escape(second) in doc
    assert doc.index("</h1>") < doc.index('id="left-out"') < doc.index("<nav>")
    assert html.escape(second) in copy and f'src="{PLOTLY_JS_FILE}"' not in copy


def test_render_report_when_optional_inputs_missing_then_sections_say_so(tmp_path: Path) -> None:
    # Arrange
    result = _input(folds=None, feature_importance=None, prices=None)
    # Act
    doc = render_report(result, tmp_path / "r.html").read_text(encoding="utf-8")
    # Assert
    assert re.findall(r"<h2>(.*?)</h2>", doc) == [html.escape(t) for t in SECTION_TITLES.values()]
    assert "No per-fold table was provided." in doc
    assert "No feature importance was provided." in doc
    assert "No prices were provided: the trades are listed only." in doc


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


def test_render_report_when_importance_per_series_then_caption_and_bars_name_them(
    tmp_path: Path,
) -> None:
    # Arrange
    importance = pd.DataFrame(
        {"SPX@1d": {"rsi_14": 0.4, "ret_1": 0.1}, "NDX@1d": {"rsi_14": 0.2, "ret_1": 0.3}}
    )
    caption = "xgboost gain importance, mean over folds 0 to 1, per series"
    # Act
    doc = render_report(
        _input(feature_importance=importance, importance_title=caption), tmp_path / "r.html"
    ).read_text(encoding="utf-8")
    # Assert
    section = doc[doc.index('<section id="importance">') :]
    assert caption in section
    bars = [t for f in _figures(section) for t in f["data"] if t["type"] == "bar"]
    assert [t["name"] for t in bars] == ["SPX@1d", "NDX@1d"]


def test_render_report_when_folds_have_windows_then_each_model_pnl_in_window_is_shown(
    tmp_path: Path,
) -> None:
    # Arrange: fold 0 of SPX covers the first 4 bars, so it holds the SPX trades entered on 0, 2
    folds = pd.DataFrame(
        {"symbol": ["SPX"], "fold": [0], "start": [INDEX[0]], "end": [INDEX[3]]},
        index=pd.Index(["SPX@1d"], name="series"),
    )
    result = _input(folds=folds)
    trades = result.strategies["xgb"].trades
    expected = float(trades["pnl"].iloc[[0, 2]].sum())
    # Act
    doc = render_report(result, tmp_path / "r.html").read_text(encoding="utf-8")
    # Assert
    section = doc[doc.index('<section id="folds">') : doc.index('<section id="importance">')]
    assert "<th>xgb P&amp;L</th>" in section
    values = [float(v) for v in re.findall(r'data-value="(-?[0-9.e+-]+)"', section)]
    assert expected in values


def test_worst_drawdowns_when_hand_computed_then_deepest_first_with_recovery() -> None:
    # Arrange: 100 -> 90 (back at 101), then 101 -> 80 still under water at the end
    index = pd.date_range("2024-01-01", periods=7, freq="D", tz="UTC")
    equity = pd.Series([100.0, 90.0, 95.0, 101.0, 90.0, 80.0, 85.0], index=index)
    # Act
    table = worst_drawdowns(equity, 5)
    # Assert
    assert list(table.index) == [1, 2]
    deepest, second = table.loc[1], table.loc[2]
    assert deepest["depth"] == pytest.approx(80.0 / 101.0 - 1)
    assert deepest["peak"] == index[3] and deepest["trough"] == index[5]
    assert pd.isna(deepest["recovery"]) and deepest["bars"] == 3
    assert second["depth"] == pytest.approx(-0.10)
    assert second["recovery"] == index[3] and second["duration"] == pd.Timedelta(days=3)


def test_worst_drawdowns_when_never_under_water_then_empty() -> None:
    equity = pd.Series([1.0, 2.0, 3.0], index=INDEX[:3])
    assert worst_drawdowns(equity).empty


def test_yearly_returns_when_two_years_then_they_compound_to_the_total() -> None:
    # Arrange
    index = pd.DatetimeIndex(["2023-06-01", "2023-12-29", "2024-03-01", "2024-12-31"], tz="UTC")
    equity = pd.Series([100.0, 120.0, 90.0, 108.0], index=index)
    # Act
    years = yearly_returns(equity)
    # Assert
    assert list(years.index) == [2023, 2024]
    assert years.loc[2023] == pytest.approx(0.20)
    assert years.loc[2024] == pytest.approx(-0.10)
    assert (1 + years).prod() - 1 == pytest.approx(108.0 / 100.0 - 1)


def test_series_breakdown_when_two_symbols_then_contributions_sum_to_closed_trade_return() -> None:
    # Arrange
    trades = pd.DataFrame(
        {"symbol": ["A", "B", "A"], "pnl": [100.0, -50.0, 30.0], "costs": [1.0, 1.0, 1.0]}
    )
    # Act
    table = series_breakdown({"m": (trades, 1000.0)}, {"A": pd.Series([10.0, 12.0], INDEX[:2])})
    # Assert
    by_symbol = table.set_index("symbol")
    assert by_symbol.loc["A", "trades"] == 2
    assert by_symbol.loc["A", "net_pnl"] == pytest.approx(130.0)
    assert by_symbol.loc["A", "symbol_buy_and_hold"] == pytest.approx(0.2)
    assert pd.isna(by_symbol.loc["B", "symbol_buy_and_hold"])
    assert table["contribution"].sum() == pytest.approx(80.0 / 1000.0)


def test_render_report_when_degenerate_rows_then_na_reasons_and_warnings_listed(
    tmp_path: Path,
) -> None:
    # Arrange: a family that never trades, a single-class warning, a labelled benchmark
    base = _input()
    strategies = dict(base.strategies)
    strategies["lstm"] = StrategyResult(
        equity=strategies["flat"].equity,
        metrics=strategies["flat"].metrics,
        trades=strategies["flat"].trades,
        kind=StrategyKind.MODEL,
        warnings=("EURUSD@1h: predicts 'flat' on 2373 of 2375 out-of-sample rows",),
    )
    strategies["buy_and_hold"] = StrategyResult(
        equity=strategies["buy_and_hold"].equity,
        metrics=strategies["buy_and_hold"].metrics,
        trades=strategies["buy_and_hold"].trades,
        kind=StrategyKind.BENCHMARK,
        description="fully invested, no risk rules",
    )
    # Act
    page = render_report(_input(strategies=strategies), tmp_path / "r.html").read_text()
    # Assert
    assert "predicts &#x27;flat&#x27; on 2373 of 2375" in page
    assert "fully invested, no risk rules" in page
    notes = page.split("Warnings and n/a reasons")[1]
    assert 'data-strategy="lstm" data-metric="sharpe"' in notes
    assert "the Sharpe ratio is undefined" in notes
    assert 'data-metric="sharpe" data-strategy="flat" data-value="nan" title="' in page


def test_render_report_when_cpcv_paths_given_then_path_sharpe_table_per_family(
    tmp_path: Path,
) -> None:
    # Arrange
    paths = pd.DataFrame(
        {
            "series": "SPX@1d",
            "family": ["xgboost"] * 5 + ["lstm"] * 5,
            "path": list(range(5)) * 2,
            "sharpe": [0.1, 0.4, -0.2, 0.3, 0.0, 0.5, 0.6, 0.4, 0.7, 0.2],
        }
    )
    # Act
    page = render_report(
        _input(cpcv_paths=paths, cpcv_summary={"SPX@1d": "N=6, k=2, phi=5"}),
        tmp_path / "r.html",
    ).read_text()
    # Assert
    section = page.split('<section id="cpcv">')[1].split("</section>")[0]
    assert "N=6, k=2, phi=5" in section
    assert "xgboost (SPX@1d)" in section
    assert "lstm (SPX@1d)" in section
    # paths, mean, std, min, median, max of xgboost's path Sharpe ratios
    row = section.split("xgboost (SPX@1d)</th>")[1].split("</tr>")[0]
    cells = [c.split(">")[-1] for c in row.split("</td>")[:-1]]
    assert cells[:2] == ["5", "0.12"]
    assert cells[3:] == ["-0.2", "0.1", "0.4"]


def test_relative_stats_when_twice_the_benchmark_then_beta_two_and_perfect_correlation() -> None:
    # Arrange: a strategy whose every bar return is exactly twice the benchmark's
    rng = np.random.default_rng(7)
    rb = rng.normal(0.0005, 0.01, len(INDEX) - 1)
    bench = pd.Series(100.0 * np.cumprod(np.r_[1.0, 1.0 + rb]), INDEX)
    strat = pd.Series(100.0 * np.cumprod(np.r_[1.0, 1.0 + 2.0 * rb]), INDEX)
    # Act
    stats = relative_stats(strat, bench, 252.0)
    # Assert
    assert stats["beta"] == pytest.approx(2.0)
    assert stats["alpha"] == pytest.approx(0.0, abs=1e-12)
    assert stats["correlation"] == pytest.approx(1.0)
    assert stats["information_ratio"] == pytest.approx(
        rb.mean() / rb.std(ddof=1) * math.sqrt(252.0)
    )


def test_render_report_when_exposure_given_then_charted_per_strategy(
    rendered: tuple[ReportInput, str],
) -> None:
    result, doc = rendered
    section = doc[doc.index('<section id="exposure">') : doc.index('<section id="series">')]
    names = [t["name"] for f in _figures(section) for t in f["data"]]
    assert names == [n for n, s in result.strategies.items() if s.exposure is not None]
