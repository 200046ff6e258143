"""`candleflow results` reads what the report asset wrote and prints one row per strategy."""

from __future__ import annotations

import json

from infra.series import SeriesRegistry, SeriesSpec
from infra.settings import Settings
from orchestration.demo import print_results


def test_results_when_metric_undefined_then_prints_na_not_nan(tmp_path, capsys):
    settings = Settings(home=tmp_path)
    out = settings.reports_dir / "portfolio_1d"
    out.mkdir(parents=True)
    row = {"ann_return": 0.05, "sharpe": 0.5, "deflated_sharpe": 0.7, "sortino": 0.6,
           "max_drawdown": -0.1, "n_trades": 12, "win_rate": 0.5, "profit_factor": 1.2}
    flat = {k: "nan" for k in row} | {"n_trades": 0, "ann_return": 0.0, "max_drawdown": 0.0}
    (out / "results.json").write_text(json.dumps({
        "series": ["SPX@1d"], "oos_start": "a", "oos_end": "b", "n_folds": 5,
        "strategies": [{"strategy": "xgboost", **row}, {"strategy": "flat", **flat}],
        "report_path": str(out / "report.html"), "mlflow_runs": {"report": "r1"},
    }))

    code = print_results(settings, as_json=False)

    text = capsys.readouterr().out
    assert code == 0
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert "nan" not in lines["flat"]
    assert lines["flat"].split()[2:5] == ["n/a", "n/a", "n/a"]
    assert "+5.00%" in lines["xgboost"]
    assert "report=r1" in text


def test_results_when_nothing_ran_then_exit_1_and_says_what_to_do(tmp_path, capsys):
    code = print_results(Settings(home=tmp_path), as_json=False)

    assert code == 1
    assert "make demo" in capsys.readouterr().err


def test_results_when_registered_series_not_in_any_report_then_warned_under_its_timeframe(
    tmp_path, capsys
):
    settings = Settings(home=tmp_path)
    registry = SeriesRegistry(tmp_path / "series.json")
    for symbol, tf in (("SPX", "1d"), ("SAP", "1d"), ("EURUSD", "1h")):
        registry.put(SeriesSpec(symbol, tf, "file", "equity", {"path": f"{symbol}.csv"}))
    out = settings.reports_dir / "portfolio_1d"
    out.mkdir(parents=True)
    (out / "results.json").write_text(json.dumps({
        "portfolio": "1d", "series": ["SPX@1d"], "strategies": [], "left_out": [],
    }))

    print_results(settings, as_json=False)
    text = capsys.readouterr().out
    print_results(settings, as_json=True)
    shown = json.loads(capsys.readouterr().out)

    sap = "SAP@1d: left out: no predictions; run `candleflow research --series SAP@1d`"
    assert f"warning: {sap}" in text.split("== portfolio_1d")[1]
    assert "warning: EURUSD@1h: left out: no predictions; run `candleflow research --series " \
        "EURUSD@1h` (no portfolio of its timeframe yet)" in text
    assert shown["portfolio_1d"]["left_out"] == [sap]
