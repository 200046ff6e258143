"""Every `candleflow ingest` / `quarantine` line of the README's "Bring your own data" runs as
written: files the README names are written here, HTTP sources answer from local servers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from infra.sources import AlphaVantageSource, BinanceKlinesSource, RetryPolicy
from orchestration.cli import main
from tests.infra.fixtures_http.server import Reply, load_fixture, running_server
from tests.infra.test_sources_binance import NOW as BINANCE_NOW
from tests.infra.test_sources_binance import klines_endpoint
from tests.test_readme import _shell_lines, _words

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Bring your own data"


def _section_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    section = ROOT / "README.md"
    lines = [line for line in _shell_lines(section) if line in text[start:end]]
    commands = [_words(line)[1:] for line in lines if _words(line)[:1] == ["candleflow"]]
    # The section's `research` lines run whole research graphs: test_research_command does.
    return [argv for argv in commands if argv[:1] in (["ingest"], ["quarantine"])]


def _yahoo(days: int = 60) -> str:
    dates = pd.bdate_range("2024-01-02", periods=days)
    rows = [f"{d:%Y-%m-%d},{100 + i},{101 + i},{99 + i},{100.5 + i},{99.5 + i},{1000 + i}"
            for i, d in enumerate(dates)]  # fmt: skip
    return "Date,Open,High,Low,Close,Adj Close,Volume\n" + "\n".join(rows) + "\n"


def _german(days: int = 60) -> str:
    # dd.mm.yyyy dates whose first days are all <= 12: only the whole column tells the order.
    dates = pd.bdate_range("2024-03-01", periods=days)
    rows = [f"{d:%d.%m.%Y},{50 + i},{51 + i},{49 + i},{50.5 + i},{7000 + i}"
            for i, d in enumerate(dates)]  # fmt: skip
    rows[5] = f"{dates[5]:%d.%m.%Y},55,50,56,55.5,7005"  # high below low: quarantined
    return "Datum,Open,High,Low,Schluss,Volume\n" + "\n".join(rows) + "\n"


def _eu_hourly() -> str:
    # London wall-clock hours across the spring-forward change: 01:00 on 31 March never was.
    stamps = pd.date_range("2024-03-30 20:00", "2024-04-02 20:00", freq="h")
    rows = [f"{t:%d/%m/%Y %H:%M},{1.08 + i * 1e-4:.4f},{1.09 + i * 1e-4:.4f},"
            f"{1.07 + i * 1e-4:.4f},{1.085 + i * 1e-4:.4f},{10 + i}"
            for i, t in enumerate(stamps)]  # fmt: skip
    return "Date,Open,High,Low,Close,Volume\n" + "\n".join(rows) + "\n"


FILES = {"prices.csv": _yahoo, "de.csv": _german, "eu.csv": _eu_hourly}
QUARANTINED = {"prices.csv": {}, "de.csv": {"high_below_low": 1}, "eu.csv": {"nonexistent_ts": 1}}


@pytest.fixture
def http_sources(monkeypatch):
    with running_server() as binance, running_server() as alphavantage:
        binance.responder = klines_endpoint
        daily = load_fixture("av_daily_ibm.json")
        alphavantage.responder = lambda seen: Reply(200, daily)
        retry = RetryPolicy(max_attempts=1, backoff_base_s=0.0, jitter_ratio=0.0)
        monkeypatch.setattr(
            "infra.sources.BinanceKlinesSource",
            lambda: BinanceKlinesSource(
                base_url=binance.url, retry=retry, now=lambda: BINANCE_NOW, sleep=lambda s: None
            ),
        )
        monkeypatch.setattr(
            "infra.sources.AlphaVantageSource.from_env",
            classmethod(
                lambda cls, env=None, **kw: AlphaVantageSource(
                    env["ALPHAVANTAGE_API_KEY"], base_url=alphavantage.url, retry=retry,
                    sleep=lambda s: None, now=lambda: pd.Timestamp("2024-01-08 12:00", tz="UTC"),
                )
            ),
        )  # fmt: skip
        yield


def test_readme_section_when_read_then_it_shows_ingest_examples_for_files_and_sources():
    sources = {a[a.index("--source") + 1] for a in _section_commands() if "--source" in a}
    files = {a[a.index("--file") + 1] for a in _section_commands() if "--file" in a}

    assert sources == {"binance", "alphavantage"}
    assert files == set(FILES)


@pytest.mark.parametrize("argv", _section_commands(), ids=lambda a: " ".join(a)[:70])
def test_readme_ingest_example_when_run_as_written_then_bars_accepted(
    argv, tmp_path, monkeypatch, capsys, http_sources
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CANDLEFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CANDLEFLOW_ENV", "local")
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", "readme-key")
    for name, content in FILES.items():
        (tmp_path / name).write_text(content())
    if argv[0] == "quarantine":  # shows what the de.csv example before it refused
        de = next(a for a in _section_commands() if "de.csv" in a)
        assert main(de) == 0
        capsys.readouterr()

    code = main(argv)

    out = capsys.readouterr()
    assert code == 0, out.err
    if argv[0] == "ingest":
        report = json.loads(out.out)
        assert report["accepted"] > 0
        assert report["accepted"] + report["quarantined"] == report["rows_in"]
        if "--file" in argv:
            assert report["by_reason"] == QUARANTINED[argv[argv.index("--file") + 1]]
    else:
        assert "1 quarantined rows for SAP@1d: high_below_low 1" in out.err
        assert "high_below_low" in out.out


def test_ingest_when_date_format_given_then_the_file_is_read_with_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CANDLEFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CANDLEFLOW_ENV", "local")
    path = tmp_path / "us.csv"  # month first, every day <= 12: only the format can tell
    path.write_text("Date,Open,High,Low,Close,Volume\n01/02/2024 00:00,1,2,0.5,1,1\n"
                    "01/03/2024 00:00,1,2,0.5,1.2,1\n")  # fmt: skip

    refused = main(["ingest", "--file", str(path), "--symbol", "US", "--timeframe", "1d"])
    said = capsys.readouterr().err.strip().splitlines()[-1]
    code = main(["ingest", "--file", str(path), "--symbol", "US", "--timeframe", "1d",
                 "--date-format", "%m/%d/%Y %H:%M"])  # fmt: skip

    assert refused == 2 and "cannot tell day from month" in said
    assert code == 0
    assert json.loads(capsys.readouterr().out)["first_ts"] == "2024-01-02T00:00:00+00:00"
