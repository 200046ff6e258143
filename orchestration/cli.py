"""The `candleflow` command line. Output for people goes to stderr; machine output to stdout."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["main"]

logger = logging.getLogger("candleflow")


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        msg = f"cannot parse time {value!r}; use ISO 8601, e.g. 2018-01-31 or 2018-01-31T14:00Z"
        raise CliError(msg) from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("candleflow")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="candleflow",
        description="Market bars to trading decisions: research (Dagster) and live (Bytewax).",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    p.add_argument(
        "--config",
        type=Path,
        help="config file (default: $CANDLEFLOW_CONFIG, else ./candleflow.toml, else defaults)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("init-home", help="create CANDLEFLOW_HOME and its Dagster instance config")
    init = sub.add_parser("init", help="write a commented example candleflow.toml")
    init.add_argument("path", nargs="?", type=Path, default=Path("candleflow.toml"))
    init.add_argument("--force", action="store_true", help="overwrite an existing file")

    rs = sub.add_parser(
        "research", help="run the research graph through Dagster and print the results table"
    )
    rs.add_argument(
        "--series", nargs="*", help="SYMBOL@TIMEFRAME keys (default: all in the config)"
    )
    pr = sub.add_parser(
        "promote", help="approve a challenger: make it the champion (for require_approval)"
    )
    pr.add_argument("--series", required=True, help="SYMBOL@TIMEFRAME")
    pr.add_argument("--version", help="registry version (default: the challenger)")

    demo = sub.add_parser("demo", help="run the whole research pipeline on bundled real data")
    demo.add_argument("--series", nargs="*", help="series keys (default: the bundled ones)")

    ing = sub.add_parser("ingest", help="ingest bars from a file or a source into the store")
    ing.add_argument(
        "--source", default=None, choices=["file", "bundled", "alphavantage", "binance"]
    )
    ing.add_argument("--file", type=Path, help="CSV or Parquet file (implies --source file)")
    ing.add_argument("--dataset", help="bundled dataset name: sp500, nasdaq, goog, eurusd")
    ing.add_argument("--symbol", required=True)
    ing.add_argument("--timeframe", required=True, help="1m 5m 15m 30m 1h 4h 1d 1w")
    ing.add_argument("--tz", help="time zone of naive timestamps in the file, e.g. UTC")
    ing.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="COL=FIELD",
        help="column mapping, e.g. --map Datum=ts --map Schluss=close",
    )
    ing.add_argument("--instrument-class", default="equity", choices=["equity", "fx", "crypto"])
    ing.add_argument("--start", help="first bar to fetch (HTTP sources)")
    ing.add_argument(
        "--date-format",
        help="strftime format of the file's timestamps, e.g. '%%d.%%m.%%Y %%H:%%M'",
    )
    ing.add_argument(
        "--dayfirst",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read 01.02.2024 as 1 February (--no-dayfirst: 2 January); needed only when the "
        "file itself cannot tell",
    )

    qua = sub.add_parser("quarantine", help="print quarantined rows of a series with their reason")
    qua.add_argument("--symbol", required=True)
    qua.add_argument("--timeframe", required=True)
    qua.add_argument("--reason", help="only rows quarantined for this reason, e.g. naive_ts")
    qua.add_argument("--limit", type=int, default=50, help="rows to print (0 = all; default 50)")
    qua.add_argument("--format", default="table", choices=["table", "csv", "json"])

    bars = sub.add_parser("bars", help="print stored bars")
    bars.add_argument("--symbol", required=True)
    bars.add_argument("--timeframe", required=True)
    bars.add_argument("--start")
    bars.add_argument("--end")
    bars.add_argument("--format", default="table", choices=["table", "csv", "json"])
    bars.add_argument("--resample", help="aggregate to a coarser timeframe")

    res = sub.add_parser("results", help="print the latest walk-forward backtest results")
    res.add_argument("--json", action="store_true")

    rep = sub.add_parser(
        "reproduce",
        help="rebuild a portfolio backtest from the inputs its report recorded; compare numbers",
    )
    rep.add_argument(
        "results", nargs="*", type=Path,
        help="results.json files (default: every portfolio's latest under the reports dir)",
    )

    st = sub.add_parser("stream", help="run the live streaming worker (paper broker by default)")
    st.add_argument(
        "--series",
        dest="symbols",
        nargs="*",
        help="SYMBOL@TIMEFRAME keys to trade (default: every stored series with a champion)",
    )
    st.add_argument(
        "--speed", type=float, default=0.0, help="replay bars per second, 0 = as fast as possible"
    )
    st.add_argument(
        "--source",
        default=None,
        choices=["replay", "binance", "mt5"],
        help="replay stored bars (default; or the config's [live] source), or poll Binance "
        "klines / an MT5 terminal live "
        "(live sources need --series)",
    )
    st.add_argument(
        "--poll-s", type=float, help="live sources: seconds between polls (binance 5, mt5 1)"
    )
    st.add_argument("--workers", type=int, default=None, help="default [live] workers, 1")
    st.add_argument(
        "--max-bars", type=int, help="stop after this many bars (live sources: per symbol)"
    )
    st.add_argument(
        "--snapshot-s", type=float, default=None, help="recovery snapshot interval ([live], 5)"
    )
    st.add_argument("--recovery-dir", type=Path, help="default $CANDLEFLOW_HOME/live/recovery")
    st.add_argument("--bundle", type=Path, help="trade this saved model bundle, not the champion")
    st.add_argument("--strategy", type=Path, help="StrategyConfig JSON (default: the champion's)")
    st.add_argument("--metrics-port", type=int, help="Prometheus port (default 9464, 0 = off)")
    st.add_argument(
        "--wait-for-champion",
        type=float,
        metavar="SECONDS",
        help="no champion model yet: check again every SECONDS instead of exiting",
    )

    live = sub.add_parser("live", help="the live book: positions, orders, equity, P&L")
    live.add_argument("action", choices=["status"])
    live.add_argument("--json", action="store_true", help="one JSON object on stdout")
    live.add_argument(
        "--instance",
        metavar="STRATEGY@TIMEFRAME",
        help="the book of this worker (one per timeframe); default: the only one, or each",
    )

    ks = sub.add_parser("kill-switch", help="halt new orders (and optionally flatten)")
    ks.add_argument("action", choices=["on", "off", "status"])
    ks.add_argument("--flatten", action="store_true", help="also close open positions")
    for child in sub.choices.values():  # `--config` is accepted after the command too
        child.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Great Expectations logs its own internals at INFO; users need its results, not that.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # MLflow's SQLite store runs its schema migrations through alembic, a dozen INFO lines a run.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # MLflow draws a progress bar per model download (the worker fetches one per series); the
    # log already says which model was loaded.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from infra.redact import install_redaction, redact

    install_redaction()
    from infra.alerts import install_alert_logging

    notifier = install_alert_logging()
    from orchestration import commands

    handler = getattr(commands, "cmd_" + args.command.replace("-", "_"))
    try:
        return _run(handler, args, notifier)
    except (CliError, *commands.USER_ERRORS) as exc:
        _error(redact(str(exc)))
        return 2
    except BrokenPipeError:
        # The reader went away (`candleflow bars ... | head`): stop quietly, like `cat` does.
        # Python would try to flush stdout again at exit and fail once more: point it at null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command the pipe ended
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:
        # A bug, not a user error: one line, the traceback only on request (and redacted).
        if args.verbose:
            logger.exception("unexpected error")
        _error(
            f"unexpected {type(exc).__name__}: {redact(str(exc))}"
            + ("" if args.verbose else " (run with -v for the traceback)")
        )
        return 1


def _run(handler: Any, args: argparse.Namespace, notifier: Any) -> int:
    try:
        return int(handler(args) or 0)
    finally:
        notifier.flush(timeout_s=10.0)  # an alert this command raised (kill switch) goes out


def _error(message: str) -> None:
    first = " ".join(message.split())  # one line, whatever the exception text held
    print(f"candleflow: error: {first}", file=sys.stderr)


def emit_json(obj: object) -> None:
    print(json.dumps(obj, default=str, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
