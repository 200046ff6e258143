"""The CLI's commands. Each takes the parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from execution.broker import LiveTradingNotEnabledError
from execution.config import ExecutionConfigError
from infra.config import CONFIG_ENV_VAR, CandleflowConfig, load_config, resolve_config_path
from infra.series import SeriesRegistry, SeriesSpec, SeriesSpecError
from infra.settings import Settings, SettingsError
from infra.sources import SourceError
from infra.stores import StoreError
from infra.tracking import RegistryError
from quality.schema import UnknownTimeframeError

__all__ = ["USER_ERRORS"]

logger = logging.getLogger("candleflow")


# Errors whose message tells the user what to do: printed as one line, exit code 2.
USER_ERRORS = (
    RegistryError,
    SettingsError,
    SeriesSpecError,
    FileNotFoundError,
    SourceError,
    StoreError,
    UnknownTimeframeError,
    LiveTradingNotEnabledError,
    ExecutionConfigError,  # a strategy.json or config naming a rule that is not there
)

BUNDLED_SERIES = (
    SeriesSpec("SPX", "1d", "bundled", "equity", {"dataset": "sp500"}),
    SeriesSpec("IXIC", "1d", "bundled", "equity", {"dataset": "nasdaq"}),
)
SAMPLE_SERIES = (
    SeriesSpec("GOOG", "1d", "bundled", "equity", {"dataset": "goog"}),
    SeriesSpec("EURUSD", "1h", "bundled", "fx", {"dataset": "eurusd"}),
)


def _settings() -> Settings:
    return Settings.from_env()


def _config(args: argparse.Namespace) -> CandleflowConfig:
    """The config file of this command; exported as CANDLEFLOW_CONFIG so the Dagster and worker
    processes this command starts read the same file."""
    path = resolve_config_path(getattr(args, "config", None))
    config = load_config(path)
    if config.path is not None:
        os.environ[CONFIG_ENV_VAR] = str(config.path)
        logger.debug("config %s (hash %s)", config.path, config.config_hash)
    return config


def _say(msg: str) -> None:
    print(f"[candleflow] {msg}", file=sys.stderr, flush=True)


@contextmanager
def open_store(settings: Settings) -> Iterator[Any]:
    from infra.stores import store_for

    store = store_for(settings)
    try:
        yield store
    finally:
        store.close()


_DAGSTER_YAML = (
    "telemetry:\n  enabled: false\n"
    "run_coordinator:\n  module: dagster._core.run_coordinator\n"
    "  class: QueuedRunCoordinator\n  config:\n    max_concurrent_runs: {runs}\n"
)


def init_home(settings: Settings, max_concurrent_runs: int | None = None) -> None:
    """Create CANDLEFLOW_HOME with a Dagster instance config whose storage lives inside it; the
    run queue takes `max_concurrent_runs` ([executor] in the config). A dagster.yaml edited by
    hand is left alone."""
    for d in (
        settings.home,
        settings.data_dir,
        settings.dagster_home,
        settings.reports_dir,
        settings.home / "drop",
        settings.mlflow_artifacts_dir,
    ):
        d.mkdir(parents=True, exist_ok=True)
    cfg = settings.dagster_home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(_DAGSTER_YAML.format(runs=max_concurrent_runs or 2))
    elif max_concurrent_runs is not None:
        ours = {_DAGSTER_YAML.format(runs=n) for n in range(1, 1025)}
        wanted = _DAGSTER_YAML.format(runs=max_concurrent_runs)
        if cfg.read_text() in ours and cfg.read_text() != wanted:
            cfg.write_text(wanted)


def cmd_init_home(args: argparse.Namespace) -> int:
    settings = _settings()
    init_home(settings, _config(args).executor.max_concurrent_runs)
    _say(f"CANDLEFLOW_HOME={settings.home} (Dagster instance in {settings.dagster_home})")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from infra.config import example_toml

    path: Path = args.path
    if path.exists() and not args.force:
        msg = f"{path} exists; pass --force to overwrite it"
        raise SettingsError(msg)
    path.write_text(example_toml())
    _say(f"wrote {path}: edit it, then `candleflow --config {path} research`")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from infra.ingest import fetch_raw, prepare_ingest, read_history, write_ingest

    settings = _settings()
    init_home(settings)
    source = args.source or ("file" if args.file else None)
    if source is None:
        msg = "give --file PATH or --source bundled|alphavantage|binance"
        raise SeriesSpecError(msg)
    options: dict[str, Any] = {}
    if source == "file":
        if args.file is None:
            msg = "--source file needs --file PATH"
            raise SeriesSpecError(msg)
        if not args.file.exists():
            msg = f"file not found: {args.file}"
            raise FileNotFoundError(msg)
        options["path"] = str(args.file.resolve())
        if args.tz:
            options["tz"] = args.tz
        if args.map:
            options["column_map"] = _parse_map(args.map)
        if args.date_format:
            options["date_format"] = args.date_format
        if args.dayfirst is not None:
            options["dayfirst"] = args.dayfirst
    elif source == "bundled":
        options["dataset"] = args.dataset or args.symbol.lower()
    spec = SeriesSpec(args.symbol, args.timeframe, source, args.instrument_class, options)
    run_id = f"cli-{uuid.uuid4().hex[:12]}"
    with open_store(settings) as store:
        since = _parse_since(args.start) or (
            store.last_ts(spec.symbol, spec.timeframe)
            if source in ("alphavantage", "binance")
            else None
        )
        raw = fetch_raw(spec, since=since, progress=_say)
        if len(raw) >= _PROGRESS_MIN_ROWS:
            _say(f"validating {len(raw):,} rows")
        history = read_history(raw, store)
        prepared = prepare_ingest(raw, run_id=run_id, now=datetime.now(UTC), history=history)
        if len(raw) >= _PROGRESS_MIN_ROWS:
            rep = prepared.result.report
            _say(f"writing {rep.accepted:,} bars and {rep.quarantined:,} quarantined rows")
        report = write_ingest(prepared, store)
        stored = report.accepted > 0 or store.last_ts(spec.symbol, spec.timeframe) is not None
    print(json.dumps(report.to_dict(), default=str, sort_keys=True))
    if report.accepted == 0:
        from orchestration.cli import CliError

        raise CliError(_nothing_accepted(report, spec))
    if stored:  # an empty or fully quarantined series gets no registry entry, no partition
        register_series(settings, spec)
    return 0


_PROGRESS_MIN_ROWS = 200_000
# What to try when every row failed for one reason: the flags that change how rows are read.
_HINTS = {
    "naive_ts": "give the time zone of the timestamps with --tz (e.g. --tz UTC)",
    "unparseable_ts": "check the ts column (--map COLUMN=ts) and give --date-format",
    "misaligned_ts": "check --timeframe, and --tz for local times: bars open on the UTC grid",
    "future_ts": "check --tz: the stamps are later than now",
    "missing_value": "check the OHLCV columns (--map COLUMN=FIELD)",
    "non_numeric": "check the OHLCV columns (--map COLUMN=FIELD); decimal commas are not read",
    "duplicate_key": "check --timeframe: several rows share one bar time",
    "nonexistent_ts": "check --tz: these local times do not exist in that zone",
    "ambiguous_ts": "check --tz, or give stamps with offsets: these local times occur twice",
    "price_out_of_range": "check the price columns (--map COLUMN=FIELD) and their unit",
}


def _nothing_accepted(report: Any, spec: SeriesSpec) -> str:
    if report.rows_in == 0:
        return f"nothing accepted for {spec.key}: the source delivered no rows"
    top = sorted(report.by_reason.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    reasons = ", ".join(f"{reason} {count}" for reason, count in top)
    hint = _HINTS.get(top[0][0], "fix the rows or the options") if top else ""
    return (
        f"nothing accepted for {spec.key}: {report.quarantined} of {report.rows_in} rows "
        f"quarantined ({reasons}); {hint}; see them with `candleflow quarantine --symbol "
        f"{spec.symbol} --timeframe {spec.timeframe}`"
    )


def cmd_quarantine(args: argparse.Namespace) -> int:
    settings = _settings()
    with open_store(settings) as store:
        frame = store.read_quarantine(args.symbol, args.timeframe)
    if args.reason:
        frame = frame[frame["reason"] == args.reason]
    total = len(frame)
    if total:
        counts = frame["reason"].value_counts()
        summary = ", ".join(f"{reason} {count}" for reason, count in counts.items())
        _say(f"{total} quarantined rows for {args.symbol}@{args.timeframe}: {summary}")
    else:
        _say(f"no quarantined rows for {args.symbol}@{args.timeframe}")
    cols = ["ts", "reason", "detail", "raw", "source", "run_id", "quarantined_at"]
    out = frame.loc[:, cols]
    if args.limit and total > args.limit:
        out = out.head(args.limit)
        _say(f"showing the first {args.limit}; --limit 0 shows all")
    if args.format == "csv":
        out.to_csv(sys.stdout, index=False, date_format="%Y-%m-%dT%H:%M:%S%z")
    elif args.format == "json":
        print(out.to_json(orient="records", date_format="iso"))
    elif total:
        print(out.loc[:, ["ts", "reason", "detail", "raw"]].to_string(index=False))
    return 0


def register_series(settings: Settings, spec: SeriesSpec) -> None:
    """Add the series to the registry and its partition to the Dagster instance."""
    from orchestration.demo import register_partitions

    SeriesRegistry(settings.home / "series.json").put(spec)
    register_partitions(settings, [spec.key])


def _parse_since(value: str | None) -> datetime | None:
    from orchestration.cli import _parse_time

    return _parse_time(value) if value else None


def _parse_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        src, sep, dst = item.partition("=")
        if not sep or not src or not dst:
            msg = f"--map expects COLUMN=FIELD (e.g. Datum=ts), got {item!r}"
            raise SeriesSpecError(msg)
        out[dst] = src  # sources take {canonical field: file header}
    return out


def cmd_bars(args: argparse.Namespace) -> int:
    from orchestration.cli import _parse_time

    settings = _settings()
    start, end = _parse_time(args.start), _parse_time(args.end)
    with open_store(settings) as store:
        if args.resample:
            frame = store.resample(args.symbol, args.timeframe, args.resample, start, end)
        else:
            frame = store.read_bars(args.symbol, args.timeframe, start, end)
        stored = [] if not frame.empty else sorted(store.list_series())
    if frame.empty and (args.symbol, args.timeframe) not in stored:
        listed = ", ".join(f"{s}@{tf}" for s, tf in stored) or "none (run `candleflow ingest`)"
        msg = f"no bars stored for {args.symbol}@{args.timeframe}; stored series: {listed}"
        raise SeriesSpecError(msg)
    if frame.empty:
        _say(f"no bars stored for {args.symbol}@{args.timeframe} in that range")
    if args.format == "csv":
        out = frame.copy()
        for col in ("ts", "ingested_at"):
            if col in out:
                out[col] = out[col].map(lambda t: t.isoformat())
        out.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        records = json.loads(frame.to_json(orient="records", date_format="iso"))
        print(json.dumps(records))
    else:
        cols = [c for c in ("ts", "open", "high", "low", "close", "volume") if c in frame]
        print(frame[cols].to_string(index=False) if not frame.empty else "(no bars)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from orchestration.demo import run_demo

    return run_demo(_settings(), series=args.series, say=_say, config=_config(args))


def cmd_research(args: argparse.Namespace) -> int:
    from orchestration.demo import run_research

    settings, config = _settings(), _config(args)
    specs = series_specs_for_research(settings, config, args.series)
    return run_research(settings, config, specs, say=_say)


def cmd_promote(args: argparse.Namespace) -> int:
    from infra.series import parse_series_key
    from infra.tracking import ModelTracker, TrackingConfig, registered_model_name

    settings = _settings()
    symbol, timeframe = parse_series_key(args.series)
    tracker = ModelTracker(
        TrackingConfig(settings.mlflow_uri, settings.mlflow_artifacts_dir,
                       run_config_json=_config(args).to_json())
    )
    decision = tracker.approve(registered_model_name(symbol, timeframe), args.version)
    _say(f"{args.series}: {decision.reason}")
    print(json.dumps({"series": args.series, "champion_version": decision.champion_version}))
    return 0


def series_specs_for_research(
    settings: Settings, config: CandleflowConfig, requested: list[str] | None
) -> list[SeriesSpec]:
    """The config's universe (else every registered series), narrowed to `requested`."""
    registered = SeriesRegistry(settings.home / "series.json").load()
    pool = {s.key: s for s in config.universe.series} or dict(registered)
    if requested:
        known = {**registered, **pool}
        missing = [k for k in requested if k not in known]
        if missing:
            msg = (
                f"unknown series {', '.join(missing)}; add them to [universe] in the config or "
                f"ingest them first (known: {', '.join(sorted(known)) or 'none'})"
            )
            raise SeriesSpecError(msg)
        return [known[k] for k in requested]
    if not pool:
        msg = (
            "no series to research: list them under [[universe.series]] in candleflow.toml "
            "(`candleflow init` writes an example) or ingest one with `candleflow ingest`"
        )
        raise SeriesSpecError(msg)
    return list(pool.values())


def cmd_results(args: argparse.Namespace) -> int:
    from orchestration.demo import print_results

    config = _config(args)
    reports_dir = Path(config.reports.dir) if config.reports.dir else None
    return print_results(_settings(), as_json=args.json, reports_dir=reports_dir)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from assets._reproduce import ReproduceError, reproduce
    from orchestration.cli import CliError
    from orchestration.demo import reports_dir_of

    paths = list(args.results) or sorted(
        reports_dir_of(_settings(), _config(args)).glob("portfolio_*/results.json")
    )
    if not paths:
        msg = "no report yet: run `candleflow research` (or `candleflow demo`) first"
        raise CliError(msg)
    failed = 0
    for path in paths:
        try:
            recorded, diffs = reproduce(path)
        except ReproduceError as exc:
            raise CliError(str(exc)) from None
        what = (
            f"portfolio {recorded['portfolio']} of {recorded.get('generated_at', '?')} "
            f"(data version {recorded.get('data_version', '?')}, config "
            f"{recorded.get('config_hash', '?')}, inputs {recorded.get('inputs')})"
        )
        if diffs:
            failed += 1
            _say(f"{what}: {len(diffs)} numbers differ")
            for line in diffs[:20]:
                _say(f"  {line}")
        else:
            n = sum(
                isinstance(v, int | float) for row in recorded["strategies"] for v in row.values()
            )
            _say(f"{what}: all {n} numbers of {len(recorded['strategies'])} strategies "
                 "reproduced exactly")
    return 1 if failed else 0


def cmd_stream(args: argparse.Namespace) -> int:
    from streaming.worker import NoChampionError, run_worker, with_live_section

    # Flags win over the file's [live] section; CANDLEFLOW_BROKER wins over its broker.
    names = ("symbols", "source", "workers", "snapshot_s", "poll_s", "metrics_port")
    settings, merged = with_live_section(
        _settings(), _config(args).live, {n: getattr(args, n, None) for n in names}, os.environ
    )
    for name in names:
        setattr(args, name, merged.get(name))
    try:
        summary = run_worker(settings, args)
    except NoChampionError as exc:
        if exc.version is None or "cmd_promote" not in globals():
            raise
        msg = (
            f"{exc}; or approve it as champion: `candleflow promote --series {exc.series} "
            f"--version {exc.version}`"
        )
        raise NoChampionError(msg) from None
    status = summary.status
    how = f"stopped by {summary.stopped_by}" if summary.stopped_by else "source ended"
    _say(
        f"stream {how}: {summary.bars} bars, {summary.orders} orders, {summary.fills} fills "
        f"this run; equity {_money(status.equity)} (P&L {_money(status.pnl)})"
    )
    if not status.positions:
        _say("positions: flat")
    for symbol, pos in sorted(status.positions.items()):
        _say(f"position {symbol}: {pos['quantity']:+.6g} @ {pos['avg_price']:.6g}")
    if summary.stopped_by:
        _say("a restart resumes from the last snapshot")
    return 0


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def cmd_live(args: argparse.Namespace) -> int:
    from streaming.killswitch import kill_switch_status
    from streaming.worker import live_books, live_status

    settings = _settings()
    kill = kill_switch_status(settings.home)
    instance = getattr(args, "instance", None)
    if args.json:
        status = live_status(settings, instance)  # several books: refused unless one is named
        print(json.dumps({**status.to_dict(), "kill_switch": kill}, default=str, sort_keys=True))
        return 0
    books = [instance] if instance else live_books(settings)
    if len(books) > 1:  # one worker per timeframe: each book on its own
        for book in books:
            print(f"book          {book}")
            _print_book(live_status(settings, book), kill)
        return 0
    status = live_status(settings, books[0] if books else None)
    if status.last_ts is None:
        print("no live records yet: run `candleflow stream`")
        return 0
    _print_book(status, kill)
    return 0


def _print_book(status: Any, kill: dict[str, Any]) -> None:
    lines = [
        f"last bar      {status.last_ts.isoformat()}",
        f"equity        {_money(status.equity)}   cash {_money(status.cash)}",
        f"P&L           {_money(status.pnl)} since the first live bar, "
        f"{_money(status.pnl_today)} today (UTC)",
        f"kill switch   {'ON' if kill['engaged'] else 'off'}"
        + (" (flatten)" if kill["flatten"] else ""),
        f"records       {status.orders} orders, {status.fills} fills",
        "positions" + ("     flat" if not status.positions else ""),
    ]
    lines += [
        f"  {s:<10} {p['quantity']:+14.6g} @ {p['avg_price']:.6g}"
        for s, p in sorted(status.positions.items())
    ]
    lines.append("open orders" + ("   none" if not status.open_orders else ""))
    lines += [
        f"  {o['client_id']} {o['symbol']} {o['side']} {o['quantity']:.6g} ({o['intent']})"
        for o in status.open_orders
    ]
    print("\n".join(lines))


def cmd_kill_switch(args: argparse.Namespace) -> int:
    from streaming.worker import engage_kill_switch, kill_switch_status, release_kill_switch

    settings = _settings()
    if args.action == "on":
        engage_kill_switch(settings.home, flatten=args.flatten)
        state = kill_switch_status(settings.home)
        _say(
            "kill switch ON: the worker sends no new orders"
            + (" and flattens open positions" if state["flatten"] else "")
            + (" (kept the pending flatten)" if state["flatten"] and not args.flatten else "")
        )
    elif args.action == "off":
        release_kill_switch(settings.home)
        _say("kill switch OFF")
    print(json.dumps(kill_switch_status(settings.home), default=str))
    return 0


def series_specs_for_demo(requested: list[str] | None) -> list[SeriesSpec]:
    specs = list(BUNDLED_SERIES)
    try:
        import backtesting  # noqa: F401

        specs += list(SAMPLE_SERIES)
    except ImportError:
        _say("optional samples (GOOG, EURUSD) need `pip install 'candleflow[samples]'`; skipped")
    if requested:
        by_key = {s.key: s for s in specs}
        missing = [k for k in requested if k not in by_key]
        if missing:
            msg = f"unknown demo series {missing}; choose from {sorted(by_key)}"
            raise SeriesSpecError(msg)
        specs = [by_key[k] for k in requested]
    return specs


def home_path(settings: Settings, *parts: str) -> Path:
    return settings.home.joinpath(*parts)
