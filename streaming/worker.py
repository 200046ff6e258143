"""The live worker: wires settings into the dataflow and runs it with recovery.

The bars come from a replay of the store (`--source replay`, the default) or live from Binance
klines or an MT5 terminal (`--source binance|mt5`, which need `--series SYMBOL@TIMEFRAME`). A
live source first replays `history - 1` closed bars of the bundle to fill the feature buffer;
the dataflow never trades on them (`StreamConfig.trade_after` is the worker's start time).

Run it from the project CLI (`run_from_cli(settings, args)`), or with Bytewax's own runner:

```
python -m bytewax.recovery var/live/recovery 1          # once
CANDLEFLOW_STREAM_SYMBOLS=SPX@1d python -m bytewax.run "streaming.worker:get_flow()" \
    -r var/live/recovery -s 5 -b 0
```

`get_flow()` reads the same options from the environment (CANDLEFLOW_STREAM_SYMBOLS,
CANDLEFLOW_STREAM_SPEED, CANDLEFLOW_STREAM_MAX_BARS, CANDLEFLOW_STREAM_BUNDLE,
CANDLEFLOW_STREAM_STRATEGY, CANDLEFLOW_STREAM_WORKERS, CANDLEFLOW_STREAM_SOURCE,
CANDLEFLOW_STREAM_POLL_S, CANDLEFLOW_BINANCE_URL).
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from bytewax.dataflow import Dataflow

from execution.broker import Broker, LiveTradingNotEnabledError
from execution.config import StrategyConfig
from execution.domain import strategy_instance
from execution.risk import RiskGovernor
from infra.settings import Broker as BrokerChoice
from infra.settings import Settings, SettingsError
from streaming.dataflow import StoreSink, StreamConfig, build_flow
from streaming.killswitch import engage_kill_switch, kill_switch_status, release_kill_switch
from streaming.metrics import LiveMetrics, serve_metrics
from streaming.models import ChampionProvider, LocalBundleProvider, ModelProvider
from streaming.sources import (
    BinancePollingSource,
    MT5PollingSource,
    ReplaySource,
    load_replay_bars,
)

__all__ = [
    "LIVE_SOURCES",
    "SOURCES",
    "LiveStatus",
    "NoChampionError",
    "WorkerArgs",
    "WorkerArgsError",
    "WorkerFlow",
    "WorkerSummary",
    "build_worker_flow",
    "engage_kill_switch",
    "ensure_recovery_dir",
    "get_flow",
    "kill_switch_status",
    "live_books",
    "live_broker_from_settings",
    "live_status",
    "release_kill_switch",
    "require_champions",
    "run_from_cli",
    "run_worker",
]

logger = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 9464
LIVE_SOURCES = ("binance", "mt5")
SOURCES = ("replay", *LIVE_SOURCES)
# The Binance client's own retries, cut short so that the source's non-blocking backoff waits
# out a longer outage instead of the client sleeping inside the worker.
_BINANCE_CLIENT_ATTEMPTS = 2


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WorkerArgsError(SettingsError):
    """The worker arguments do not fit together (printed by the CLI as one line, exit 2)."""


@dataclass(frozen=True)
class WorkerArgs:
    symbols: tuple[str, ...] | None = None  # "SYM@TF"; None: every stored series with a champion
    speed: float = 0.0  # replay bars per second; 0 = as fast as possible
    recovery_dir: Path | None = None  # default home/live/recovery
    snapshot_s: float = 5.0
    workers: int = 1
    max_bars: int | None = None
    bundle: Path | None = None  # trade this saved bundle instead of the registry champion
    strategy: Path | None = None  # StrategyConfig as JSON (StrategyConfig.from_dict)
    metrics_port: int = DEFAULT_METRICS_PORT  # 0 disables
    source: str = "replay"  # one of SOURCES
    poll_s: float | None = None  # live sources: seconds between polls (None: the source default)
    binance_url: str | None = None  # Binance REST base URL (None: api.binance.com)
    wait_for_champion_s: float = 0.0  # > 0: no champion yet, check again after this (compose)
    no_recovery: bool = False  # run without a recovery directory (bytewax.run without -r)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            msg = f"unknown stream source {self.source!r}; use one of {', '.join(SOURCES)}"
            raise WorkerArgsError(msg)
        if self.live and not self.symbols:
            msg = (
                f"--source {self.source} needs the series to trade: pass "
                "--series SYMBOL@TIMEFRAME (e.g. BTCUSDT@1h)"
            )
            raise WorkerArgsError(msg)
        if self.poll_s is not None and self.poll_s < 0:
            msg = f"--poll-s must be >= 0, got {self.poll_s}"
            raise WorkerArgsError(msg)
        if self.symbols:
            _parse_series(self.symbols)
        for flag, path in (("--bundle", self.bundle), ("--strategy", self.strategy)):
            if path is not None and not Path(path).exists():
                msg = f"{flag} {path}: no such file or directory"
                raise WorkerArgsError(msg)

    @property
    def live(self) -> bool:
        """True for a source that polls a venue (as opposed to a replay of the store)."""
        return self.source in LIVE_SOURCES

    @classmethod
    def from_namespace(cls, args: Any) -> WorkerArgs:
        def get(name: str, default: Any = None) -> Any:
            value = getattr(args, name, default)
            return default if value is None else value

        symbols = get("symbols")
        return cls(
            symbols=tuple(symbols) if symbols else None,
            speed=float(get("speed", 0.0)),
            recovery_dir=Path(get("recovery_dir")) if get("recovery_dir") else None,
            snapshot_s=float(get("snapshot_s", 5.0)),
            workers=int(get("workers", 1)),
            max_bars=get("max_bars"),
            bundle=Path(get("bundle")) if get("bundle") else None,
            strategy=Path(get("strategy")) if get("strategy") else None,
            metrics_port=int(get("metrics_port", _metrics_port_from_env())),
            source=str(get("source", "replay")),
            poll_s=float(get("poll_s")) if get("poll_s") is not None else None,
            binance_url=get("binance_url", os.environ.get("CANDLEFLOW_BINANCE_URL") or None),
            wait_for_champion_s=float(get("wait_for_champion", 0.0)),
        )


def _metrics_port_from_env() -> int:
    return int(os.environ.get("CANDLEFLOW_METRICS_PORT", str(DEFAULT_METRICS_PORT)))


def _parse_series(items: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        symbol, sep, tf = item.partition("@")
        if not sep or not symbol or not tf:
            msg = f"--series {item!r} is not SYMBOL@TIMEFRAME (e.g. {item or 'SPX'}@1d)"
            raise WorkerArgsError(msg)
        out.append((symbol, tf))
    return out


def _limit_native_threads() -> None:
    # xgboost builds a DMatrix per prediction with every OpenMP thread by default; on a busy
    # machine the thread hand-off costs ~20 ms per bar instead of ~1 ms. One bar at a time
    # gains nothing from threads. Must run before the OpenMP runtime starts.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _open_store(settings: Settings) -> Any:
    from infra.stores import store_for

    return store_for(settings)


def describe_store(settings: Settings) -> str:
    from infra.stores import describe_store as describe

    return describe(settings)


def live_broker_from_settings(settings: Settings, instance: str = "default") -> Broker | None:
    """None for the paper broker; a connected MT5 broker only with the explicit live opt-in.

    CANDLEFLOW_LIVE=1 must name its venue: without CANDLEFLOW_BROKER the worker refuses rather
    than trade on the paper broker while the operator believes it is live. `instance` (the
    worker's strategy instance, execution.domain.strategy_instance) is who the journal says
    sent each order.
    """
    if not _venue_named(settings):
        return None
    return _connect_venue(settings, instance, _venue_module())


def _venue_named(settings: Settings) -> bool:
    """Whether the settings trade at a venue; refuses a venue without the explicit opt-in."""
    if settings.live and not settings.broker_named:
        msg = (
            "CANDLEFLOW_LIVE=1 but CANDLEFLOW_BROKER is not set: name the venue to trade live "
            "(CANDLEFLOW_BROKER=mt5), or unset CANDLEFLOW_LIVE to trade on the paper broker"
        )
        raise LiveTradingNotEnabledError(msg)
    if settings.broker is BrokerChoice.PAPER:
        if settings.live:
            logger.warning(
                "event=live_on_paper reason=CANDLEFLOW_LIVE=1 with CANDLEFLOW_BROKER=paper: "
                "orders go to the simulated paper broker, not to a venue"
            )
        return False
    if not settings.live:
        msg = (
            f"CANDLEFLOW_BROKER={settings.broker} trades real money and needs the explicit "
            "opt-in: set CANDLEFLOW_LIVE=1 and CANDLEFLOW_BROKER=mt5 (or use the paper broker)"
        )
        raise LiveTradingNotEnabledError(msg)
    return True


def _venue_module() -> Any:
    """The MetaTrader5 package, or one line saying it is missing (before any model download)."""
    from mt5_bridge import load_mt5_module

    try:
        return load_mt5_module("MetaTrader5")
    except ImportError as exc:
        msg = f"CANDLEFLOW_BROKER=mt5: {exc}"
        raise WorkerArgsError(msg) from None


def _connect_venue(settings: Settings, instance: str, module: Any) -> Broker:
    from mt5_bridge import MT5Broker, MT5Config, MT5ConfigError

    try:
        config = MT5Config.from_env(instance=instance)
    except MT5ConfigError as exc:
        msg = f"CANDLEFLOW_BROKER=mt5: {exc}"
        raise WorkerArgsError(msg) from None
    from infra.journal import open_journal

    # The write-ahead order journal and fill watermark survive restarts under the home.
    broker = MT5Broker.from_settings(settings, module, config, journal=open_journal(settings.home))
    broker.connect()
    return broker


@functools.cache
def _tracker(settings: Settings) -> Any:
    """One registry client per worker process (series lookup, strategy, champion providers)."""
    from infra.tracking import ModelTracker, TrackingConfig

    return ModelTracker(TrackingConfig(settings.mlflow_uri, settings.mlflow_artifacts_dir))


def _providers(
    settings: Settings, series: Sequence[tuple[str, str]], bundle: Path | None
) -> dict[str, ModelProvider]:
    if bundle is not None:
        from ml.bundle import load_bundle
        from ml.errors import ModelError

        try:
            loaded = load_bundle(bundle)
        except ModelError as exc:
            msg = f"--bundle {bundle}: {exc}"
            raise WorkerArgsError(msg) from None
        local = LocalBundleProvider(loaded, version=f"file:{bundle.name}")
        return dict.fromkeys((s for s, _ in series), local)
    from infra.tracking import registered_model_name

    tracker = _tracker(settings)
    cache = settings.home / "live" / "models"
    return {
        symbol: ChampionProvider(tracker, registered_model_name(symbol, tf), cache, 60.0)
        for symbol, tf in series
    }


def _series(settings: Settings, args: WorkerArgs, store: Any) -> list[tuple[str, str]]:
    if args.symbols:
        return _parse_series(args.symbols)
    if args.live:  # WorkerArgs refuses this; kept for a hand-built namespace
        msg = f"--source {args.source} needs the series: pass --series SYMBOL@TIMEFRAME"
        raise WorkerArgsError(msg)
    stored = list(store.list_series())
    if args.bundle is not None:
        return stored
    from infra.tracking import registered_model_name

    tracker = _tracker(settings)
    with_champion = [
        (s, tf)
        for s, tf in stored
        if tracker.alias_version(registered_model_name(s, tf), "champion") is not None
    ]
    if not with_champion:
        msg = (
            "no stored series has a champion model; run the research pipeline first or name "
            "the series (--series SYM@TF) and a --bundle DIR"
        )
        raise NoChampionError(msg)
    by_tf: dict[str, list[tuple[str, str]]] = {}
    for s, tf in with_champion:
        by_tf.setdefault(tf, []).append((s, tf))
    chosen = max(by_tf.values(), key=len)
    others = [f"{s}@{tf}" for s, tf in with_champion if (s, tf) not in chosen]
    if others:
        logger.warning(
            "event=series_skipped series=%s reason=one worker trades one timeframe; start "
            "another worker with --series for them",
            ",".join(others),
        )
    return chosen


class NoChampionError(WorkerArgsError):
    """A series to trade has no champion model in the registry."""

    def __init__(self, msg: str, series: str | None = None, version: str | None = None) -> None:
        super().__init__(msg)
        self.series = series  # "SYM@TF" when one series was refused
        self.version = version  # the challenger the promotion rule rejected, if any


def require_champions(settings: Settings, series: Sequence[tuple[str, str]]) -> None:
    """Refuse, in one line that says why and what to do, a series without a champion model."""
    from infra.tracking import registered_model_name

    tracker = _tracker(settings)
    for symbol, tf in series:
        name = registered_model_name(symbol, tf)
        if tracker.alias_version(name, "champion") is not None:
            continue
        challenger = tracker.alias_version(name, "challenger")
        if challenger is None:
            msg = (
                f"{symbol}@{tf} has no model in the registry ({name}); run the research "
                "pipeline first (`candleflow demo` or the Dagster research job), or trade a "
                "saved bundle with --bundle DIR"
            )
            raise NoChampionError(msg)
        reason = (challenger.tags or {}).get("promotion", "no promotion decision recorded")
        msg = (
            f"{symbol}@{tf} has no champion: the promotion rule rejected {name} "
            f"v{challenger.version} ({reason}); to deploy it anyway, download it with "
            f"`MLFLOW_TRACKING_URI={settings.mlflow_uri} mlflow artifacts download -r "
            f"{challenger.run_id} -a model -d {symbol}-v{challenger.version}` and run "
            f"`candleflow stream --series {symbol}@{tf} --bundle "
            f"{symbol}-v{challenger.version}/model`"
        )
        raise NoChampionError(msg, f"{symbol}@{tf}", str(challenger.version))


def _strategy(
    settings: Settings, path: Path | None, series: Sequence[tuple[str, str]], bundle: Path | None
) -> StrategyConfig:
    """The trading rules: a given file, else the ones the champion was backtested with."""
    if path is not None:
        return StrategyConfig.from_dict(json.loads(Path(path).read_text()))
    candidates = [bundle / "strategy.json"] if bundle is not None else []
    if bundle is None:
        from infra.tracking import registered_model_name

        tracker = _tracker(settings)
        symbol, tf = series[0]
        # The same cache the champion provider loads from: the model is downloaded once.
        cache = settings.home / "live" / "models"
        model_dir, _ = tracker.download_model(registered_model_name(symbol, tf), "champion", cache)
        candidates.append(model_dir / "strategy.json")
    for candidate in candidates:
        if candidate.exists():
            logger.info("event=strategy_loaded path=%s", candidate)
            return StrategyConfig.from_dict(json.loads(candidate.read_text()))
    from infra.series import SeriesSpec
    from infra.strategy import strategy_for

    symbol, tf = series[0]
    logger.warning("event=strategy_default reason=no strategy.json beside the model")
    return strategy_for(SeriesSpec(symbol, tf, "file", "equity", {"path": "-"}))


def _mt5_module(mt5: Any | None) -> tuple[Any, Any | None]:
    """The terminal module and its MT5Config: the injected one (no config), else the package."""
    if mt5 is not None:
        return mt5, None
    from mt5_bridge import MT5Config, load_mt5_module

    try:
        module = load_mt5_module("MetaTrader5")
    except ImportError as exc:
        msg = (
            "--source mt5: the MetaTrader5 package is not installed (it runs on Windows next to "
            "an MT5 terminal: pip install 'candleflow[mt5]'); use --source binance or replay"
        )
        raise WorkerArgsError(msg) from exc
    return module, MT5Config.from_env()


def _warmup_bars(providers: Mapping[str, ModelProvider], series: Sequence[tuple[str, str]]) -> int:
    """history - 1 bars: the first live bar then fills the feature buffer."""
    return max(providers[s].bundle().history for s, _ in series) - 1


def _source(
    args: WorkerArgs,
    series: Sequence[tuple[str, str]],
    providers: Mapping[str, ModelProvider],
    load: Callable[[], Any],
    *,
    mt5: Any | None,
    klines: Any | None,
    clock: Callable[[], datetime],
    mt5_config: Any | None = None,
) -> Any:
    """The Bytewax source for `args.source`; `mt5` None loads the MetaTrader5 package."""
    if args.source == "replay":
        # Several workers: one partition per symbol, so every worker reads and scores its own
        # symbols (the portfolio step reorders them, StreamConfig.reorder).
        split = args.workers > 1 and len(series) > 1
        return ReplaySource(
            load,
            speed=args.speed,
            max_bars=args.max_bars,
            by_symbol=split,
            symbols=[s for s, _ in series] if split else None,
        )
    symbols = [s for s, _ in series]
    timeframe = series[0][1]
    warmup = _warmup_bars(providers, series)
    polling: dict[str, Any] = {"warmup_bars": warmup, "max_bars": args.max_bars, "now": clock}
    if args.poll_s is not None:
        polling["poll_s"] = args.poll_s
    if args.source == "binance":
        if klines is None:
            from infra.sources import BinanceKlinesSource, RetryPolicy

            base = {"base_url": args.binance_url} if args.binance_url else {}
            klines = BinanceKlinesSource(
                **base, retry=RetryPolicy(max_attempts=_BINANCE_CLIENT_ATTEMPTS)
            )
        return BinancePollingSource(symbols, timeframe, klines=klines, **polling)
    if args.source == "mt5":
        module, config = _mt5_module(mt5)
        config = config if config is not None else mt5_config
        return MT5PollingSource(module, symbols, timeframe, config=config, **polling)
    msg = f"unknown stream source {args.source!r}; use one of {', '.join(SOURCES)}"
    raise WorkerArgsError(msg)


class AlertingGovernor(RiskGovernor):
    """The risk governor, saying once per halt that a daily-loss or drawdown limit stops new
    risk (`event=risk_halt`, which the alert handler forwards)."""

    HALTS = ("daily_loss_halt", "max_drawdown_halt")

    def __init__(self, limits: Any) -> None:
        super().__init__(limits)
        self._halted: str | None = None

    def check(self, intent: Any, view: Any) -> Any:
        decision = super().check(intent, view)
        if decision.reason in self.HALTS and decision.reason != self._halted:
            self._halted = decision.reason
            logger.error(
                "event=risk_halt reason=%s symbol=%s equity=%.2f peak=%.2f day_start=%.2f "
                "action=no new risk until the limit clears",
                decision.reason,
                intent.symbol,
                view.equity,
                view.peak_equity,
                view.day_start_equity,
            )
        elif decision.reason == "ok" and self._halted is not None:
            logger.warning("event=risk_halt_cleared was=%s", self._halted)
            self._halted = None
        return decision


class WorkerFlow(NamedTuple):
    flow: Dataflow
    instance: str  # the strategy instance it trades as (strategy@timeframe)


def build_worker_flow(
    settings: Settings,
    args: WorkerArgs,
    *,
    metrics: LiveMetrics | None = None,
    providers: Mapping[str, ModelProvider] | None = None,
    mt5: Any | None = None,
    klines: Any | None = None,
    clock: Callable[[], datetime] | None = None,
) -> WorkerFlow:
    """The dataflow the worker runs, from settings and worker arguments, and its instance.

    `mt5` (a terminal module) and `klines` (an infra.sources.BinanceKlinesSource) replace the
    venue clients of the live sources; `clock` (UTC now) is the live sources' clock and the
    start time before which no bar is traded.
    """
    _limit_native_threads()
    now = clock or _utcnow
    venue = _venue_named(settings)  # refuses mt5 without the opt-in, first thing
    venue_module = _venue_module() if venue else None
    if args.live:
        series = _series(settings, args, None)  # named series only: no store needed
    else:
        with _open_store(settings) as store:
            series = _series(settings, args, store)
    timeframes = {tf for _, tf in series}
    if len(timeframes) > 1:
        msg = f"one worker trades one timeframe; got {sorted(timeframes)}"
        raise ValueError(msg)
    mt5_config = None
    if args.source == "mt5":  # a missing package is told before any model is downloaded
        mt5, mt5_config = _mt5_module(mt5)
    if args.bundle is None and providers is None:
        require_champions(settings, series)
    config = StreamConfig(
        strategy=_strategy(settings, args.strategy, series, args.bundle),
        symbols=tuple(s for s, _ in series),
        home=settings.home,
        reorder=args.workers > 1 or (args.live and len(series) > 1),
        trade_after=now() if args.live else None,
    )
    instance = strategy_instance(config.strategy.strategy, series[0][1])
    live = _connect_venue(settings, instance, venue_module) if venue else None

    def load() -> Any:
        with _open_store(settings) as st:
            return load_replay_bars(st, series)

    sink = StoreSink(lambda: _open_store(settings), metrics=metrics, name=describe_store(settings))
    provs = providers if providers is not None else _providers(settings, series, args.bundle)
    source = _source(
        args, series, provs, load, mt5=mt5, klines=klines, clock=now, mt5_config=mt5_config
    )
    kill = kill_switch_status(settings.home)
    logger.info(
        "event=worker_flow instance=%s source=%s series=%s broker=%s workers=%d models=%s "
        "kill_switch=%s resume=%s",
        instance,
        args.source,
        ",".join(f"{s}@{tf}" for s, tf in series),
        "paper" if live is None else live.name,
        args.workers,
        ",".join(f"{s}:{_model_version(provs[s])}" for s, _ in series),
        ("on" + (" (flatten pending)" if kill["flatten"] else "")) if kill["engaged"] else "off",
        _resume_point(settings, args, instance),
    )
    governor = AlertingGovernor(config.strategy.risk)
    flow = build_flow(
        config, source, sink, provs, governor=governor, live_broker=live, metrics=metrics
    )
    return WorkerFlow(flow, instance)


def _model_version(provider: ModelProvider) -> str:
    from streaming.models import ModelUnavailableError

    try:
        provider.bundle()  # a champion is loaded (once) so that its version is known
    except ModelUnavailableError as exc:
        return f"unavailable ({exc})"
    return provider.version


def _resume_point(settings: Settings, args: WorkerArgs, instance: str) -> str:
    last = live_status(settings, instance).last_ts
    recovery = None if args.no_recovery else (
        args.recovery_dir or settings.home / "live" / "recovery")  # fmt: skip
    if recovery is None or not _holds_snapshot(Path(recovery)):
        where = "no recovery directory" if recovery is None else f"no snapshot in {recovery}"
        if last is None:
            return "fresh start" if recovery is not None else f"fresh start ({where})"
        # A replay from the first bar upserts into the book the store already holds: the same
        # series and config give the same rows again; other series would mix into that book.
        logger.warning(
            "event=fresh_start_over_book instance=%s last_live_bar=%s reason=%s: this run starts "
            "from the first bar and writes into that book; resume from the recovery directory "
            "that wrote it, or trade another strategy name for a separate book",
            instance, last.isoformat(), where,
        )  # fmt: skip
        return f"{where}; the store's last live bar is {last.isoformat()}"
    after = f" after the bar of {last.isoformat()}" if last is not None else ""
    return f"snapshot in {recovery}{after}"


def _holds_snapshot(recovery: Path) -> bool:
    """Whether Bytewax's recovery partitions in `recovery` hold any snapshot (freshly
    initialised ones hold none); a partition that cannot be read counts as holding one."""
    import sqlite3

    for part in recovery.glob("part-*.sqlite3"):
        try:
            with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True)) as db:
                if db.execute("SELECT 1 FROM snaps LIMIT 1").fetchone() is not None:
                    return True
        except sqlite3.Error:
            return True
    return False


def _is_bytewax_run(argv: Sequence[str]) -> bool:
    """Whether this process is `python -m bytewax.run` (argv[0] its run.py)."""
    return bool(argv) and Path(argv[0]).parts[-2:] == ("bytewax", "run.py")


def bytewax_run_recovery_dir(argv: Sequence[str], env: Mapping[str, str]) -> Path | None:
    """The recovery directory `python -m bytewax.run` was given (`-r DIR`, `-rDIR`,
    `--recovery-directory[=]DIR`, else BYTEWAX_RECOVERY_DIRECTORY); None: it runs without one.
    `argv` is read only when it is bytewax.run's (argv[0] its run.py)."""
    for k, arg in enumerate(argv if _is_bytewax_run(argv) else ()):
        if arg in ("-r", "--recovery-directory") and k + 1 < len(argv):
            return Path(argv[k + 1])
        if arg.startswith("--recovery-directory="):
            return Path(arg.split("=", 1)[1])
        if arg.startswith("-r") and len(arg) > 2 and not arg.startswith("--"):
            return Path(arg[2:])
    raw = (env.get("BYTEWAX_RECOVERY_DIRECTORY") or "").strip()
    return Path(raw) if raw else None


def ensure_recovery_dir(path: Path, partitions: int = 1) -> Path:
    """Create the recovery partitions once; an existing set is kept (that is the resume)."""
    from bytewax.recovery import init_db_dir

    path.mkdir(parents=True, exist_ok=True)
    if not any(path.glob("part-*.sqlite3")):
        init_db_dir(path, partitions)
        logger.info("event=recovery_initialized dir=%s partitions=%d", path, partitions)
    return path


@dataclass(frozen=True)
class LiveStatus:
    """What the store says about the live book: the state after the last processed bar."""

    last_ts: datetime | None  # the last bar with an equity record
    equity: float | None
    cash: float | None
    first_equity: float | None  # equity after the first recorded bar: P&L is measured from it
    day_start_equity: float | None  # the last equity of the previous UTC day
    positions: dict[str, dict[str, float]]  # symbol -> {"quantity", "avg_price"}, open only
    open_orders: list[dict[str, Any]]  # orders of the last bar without a fill yet
    orders: int  # orders recorded, all runs
    fills: int
    instance: str | None = None  # the book: the strategy instance that trades it

    @property
    def pnl(self) -> float | None:
        if self.equity is None or self.first_equity is None:
            return None
        return self.equity - self.first_equity

    @property
    def pnl_today(self) -> float | None:
        if self.equity is None or self.day_start_equity is None:
            return None
        return self.equity - self.day_start_equity

    def to_dict(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "last_ts": None if self.last_ts is None else self.last_ts.isoformat(),
            "equity": self.equity,
            "cash": self.cash,
            "pnl": self.pnl,
            "pnl_today": self.pnl_today,
            "positions": self.positions,
            "open_orders": self.open_orders,
            "orders": self.orders,
            "fills": self.fills,
        }


_STATUS_TABLES = ("live_equity", "live_positions", "live_orders", "live_fills")


def live_books(settings: Settings) -> list[str]:
    """The strategy instances with live records in the store (one per worker that ran)."""
    with _open_store(settings) as store:
        tables = {t: store.read_records(t) for t in _STATUS_TABLES}
    return _books(tables)


def _books(tables: Mapping[str, Any]) -> list[str]:
    found: set[str] = set()
    for frame in tables.values():
        if "instance" in frame.columns:
            found |= set(frame["instance"].astype(str))
    return sorted(found)


def live_status(settings: Settings, instance: str | None = None) -> LiveStatus:
    """Positions, working orders, equity and P&L of one live book, from the store.

    A book is what one worker (a strategy instance, execution.domain.strategy_instance) trades;
    `instance` None is the store's only book, and a store with several refuses to choose.
    """
    with _open_store(settings) as store:
        tables = {t: store.read_records(t) for t in _STATUS_TABLES}
    if instance is None:
        books = _books(tables)
        if len(books) > 1:
            msg = (
                f"the store holds the live books of {len(books)} workers ({', '.join(books)}); "
                "name one with --instance"
            )
            raise WorkerArgsError(msg)
        instance = books[0] if books else None
    if instance is not None:
        tables = {
            t: f[f["instance"].astype(str) == instance] if "instance" in f.columns else f
            for t, f in tables.items()
        }
    return _status_of(tables, instance)


def _empty_status() -> LiveStatus:
    import pandas as pd

    return _status_of({t: pd.DataFrame() for t in _STATUS_TABLES}, None)


def _status_of(tables: Mapping[str, Any], instance: str | None) -> LiveStatus:
    import pandas as pd

    eq, pos, orders, fills = (tables[t] for t in _STATUS_TABLES)
    last_ts = equity = cash = first = day_start = None
    if not eq.empty:
        eq = eq.sort_values("ts")
        last = eq.iloc[-1]
        last_ts = pd.Timestamp(last["ts"]).to_pydatetime()
        equity, cash = float(last["equity"]), float(last["cash"])
        first = float(eq.iloc[0]["equity"])
        day = pd.Timestamp(last_ts).normalize()
        before = eq[pd.to_datetime(eq["ts"], utc=True) < day]
        day_start = float(before.iloc[-1]["equity"]) if not before.empty else first
    positions = {
        str(r["symbol"]): {"quantity": float(r["quantity"]), "avg_price": float(r["avg_price"])}
        for _, r in (pos.iterrows() if not pos.empty else iter(()))
        if abs(float(r["quantity"])) > 1e-12
    }
    working: list[dict[str, Any]] = []
    if not orders.empty and last_ts is not None:
        filled = set(fills["client_id"]) if not fills.empty else set()
        latest = orders[pd.to_datetime(orders["ts"], utc=True) >= pd.Timestamp(last_ts)]
        for _, r in latest.iterrows():
            if r["client_id"] not in filled:
                working.append(
                    {
                        k: (v.isoformat() if hasattr(v, "isoformat") else v)
                        for k, v in r.items()
                        if k in ("client_id", "symbol", "side", "quantity", "intent", "ts")
                    }
                )
    return LiveStatus(
        last_ts=last_ts,
        equity=equity,
        cash=cash,
        first_equity=first,
        day_start_equity=day_start,
        positions=positions,
        open_orders=working,
        orders=len(orders),
        fills=len(fills),
        instance=instance,
    )


@dataclass(frozen=True)
class WorkerSummary:
    """What one run of the worker did, and the book it left."""

    bars: int  # bars the portfolio step processed in this run
    orders: int  # orders recorded in this run
    fills: int  # fills recorded in this run
    stopped_by: str | None  # "SIGINT"/"SIGTERM", or None when the source ended
    status: LiveStatus


def _bars_processed(metrics: LiveMetrics) -> int:
    total = 0.0
    for family in metrics.registry.collect():
        if family.name == "bars_processed":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return int(total)


class _StopOnSignal:
    """SIGINT and SIGTERM end the sources (the current bar finishes, the last epoch is
    snapshotted and the store flushed); a second signal exits at once."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignal:
        import signal
        import threading

        from streaming.sources import request_stop

        request_stop(False)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        import signal

        from streaming.sources import request_stop

        name = signal.Signals(signum).name
        if self.received is not None:
            logger.warning("event=worker_forced_stop signal=%s", name)
            os._exit(128 + signum)
        self.received = name
        logger.warning(
            "event=stop_requested signal=%s action=finishing the current bar, snapshotting "
            "(send it again to exit at once; a restart resumes from the last snapshot)",
            name,
        )
        request_stop()

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _flow_when_champion(
    settings: Settings, args: WorkerArgs, metrics: LiveMetrics
) -> WorkerFlow | None:
    """The flow and its instance; with `wait_for_champion_s`, waits (None if stopped meanwhile)
    while no series has a champion, instead of refusing: a fresh deployment starts before
    research has run."""
    from streaming.sources import wait_for_stop

    while True:
        try:
            return build_worker_flow(settings, args, metrics=metrics)
        except NoChampionError as exc:
            if args.wait_for_champion_s <= 0:
                raise
            logger.warning(
                "event=waiting_for_champion retry_in_s=%.0f reason=%s",
                args.wait_for_champion_s,
                exc,
            )
            if wait_for_stop(args.wait_for_champion_s):
                return None


def run_worker(settings: Settings, args: Any) -> WorkerSummary:
    """Run the live worker until its source ends (a replay) or SIGINT/SIGTERM stops it."""
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    wargs = args if isinstance(args, WorkerArgs) else WorkerArgs.from_namespace(args)
    metrics = LiveMetrics.create()
    serve_metrics(metrics, wargs.metrics_port)
    with _StopOnSignal() as stop:
        built = _flow_when_champion(settings, wargs, metrics)
        if built is None:  # stopped while waiting for a champion
            return WorkerSummary(0, 0, 0, stop.received, _empty_status())
        flow, instance = built
        before = live_status(settings, instance)
        recovery = ensure_recovery_dir(wargs.recovery_dir or settings.home / "live" / "recovery")
        logger.info("event=worker_start recovery_dir=%s snapshot_s=%s", recovery, wargs.snapshot_s)
        cli_main(
            flow,
            workers_per_process=wargs.workers,
            epoch_interval=timedelta(seconds=wargs.snapshot_s),
            recovery_config=RecoveryConfig(recovery, timedelta(0)),
        )
    return _worker_done(settings, instance, before, metrics, stop.received)


def _summary_at_exit(
    settings: Settings, instance: str, before: LiveStatus, metrics: LiveMetrics, stop: Any
) -> None:
    """bytewax.run's end of run: the summary, or one line if the store cannot give it."""
    try:
        _worker_done(settings, instance, before, metrics, stop.received)
    except Exception as exc:  # the process is exiting: a traceback here helps nobody
        logger.warning("event=worker_done_unknown reason=%s", str(exc).splitlines()[0][:200])


def _worker_done(
    settings: Settings,
    instance: str,
    before: LiveStatus,
    metrics: LiveMetrics,
    stopped_by: str | None,
) -> WorkerSummary:
    """The run's summary (what the store gained since `before`), logged as event=worker_done."""
    after = live_status(settings, instance)
    summary = WorkerSummary(
        bars=_bars_processed(metrics),
        orders=after.orders - before.orders,
        fills=after.fills - before.fills,
        stopped_by=stopped_by,
        status=after,
    )
    logger.info(
        "event=worker_done stopped_by=%s bars=%d orders=%d fills=%d equity=%s",
        summary.stopped_by or "end of source",
        summary.bars,
        summary.orders,
        summary.fills,
        after.equity,
    )
    return summary


def run_from_cli(settings: Settings, args: Any) -> int:
    """Run the live worker (see `run_worker`); returns 0."""
    run_worker(settings, args)
    return 0


def with_live_section(
    settings: Settings, live: Any, given: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[Settings, dict[str, Any]]:
    """The config file's [live] section (an infra.config.LiveSection) under what the operator
    gave: `given` worker arguments (None where not given) win, and so do CANDLEFLOW_BROKER and
    CANDLEFLOW_METRICS_PORT in `environ`. Used by `candleflow stream` and `get_flow` alike."""
    if "CANDLEFLOW_BROKER" not in environ:
        settings = settings.with_(broker=BrokerChoice(live.broker))
    merged = dict(given)
    for name, value in (
        ("symbols", tuple(live.series) or None),
        ("source", live.source),
        ("workers", live.workers),
        ("snapshot_s", live.snapshot_s),
        ("poll_s", live.poll_s),
        ("metrics_port", None if "CANDLEFLOW_METRICS_PORT" in environ else live.metrics_port),
    ):
        if merged.get(name) is None and value is not None:
            merged[name] = value
    return settings, merged


def get_flow() -> Dataflow:
    """The flow for `python -m bytewax.run "streaming.worker:get_flow()"`: the config file
    (CANDLEFLOW_CONFIG, else ./candleflow.toml) as `candleflow stream` reads it, under the
    CANDLEFLOW_STREAM_* variables."""
    from infra.config import load_config

    env = os.environ

    def given(name: str, parse: Callable[[str], Any] = str) -> Any:
        raw = (env.get(name) or "").strip()
        return parse(raw) if raw else None

    symbols = given("CANDLEFLOW_STREAM_SYMBOLS")
    settings, merged = with_live_section(
        Settings.from_env(),
        load_config().live,
        {
            "symbols": tuple(s.strip() for s in symbols.split(",") if s.strip())
            if symbols
            else None,
            "speed": given("CANDLEFLOW_STREAM_SPEED", float),
            "workers": given("CANDLEFLOW_STREAM_WORKERS", int),
            "max_bars": given("CANDLEFLOW_STREAM_MAX_BARS", int),
            "bundle": given("CANDLEFLOW_STREAM_BUNDLE", Path),
            "strategy": given("CANDLEFLOW_STREAM_STRATEGY", Path),
            "metrics_port": given("CANDLEFLOW_METRICS_PORT", int),
            "source": given("CANDLEFLOW_STREAM_SOURCE"),
            "poll_s": given("CANDLEFLOW_STREAM_POLL_S", float),
            "binance_url": given("CANDLEFLOW_BINANCE_URL"),
        },
        env,
    )
    # bytewax.run owns the recovery: its -r (or none) is where this run resumes from.
    recovery = bytewax_run_recovery_dir(sys.argv, env)
    args = WorkerArgs(**{
        **{k: v for k, v in merged.items() if v is not None},
        "recovery_dir": recovery, "no_recovery": recovery is None,
    })  # fmt: skip
    logging.basicConfig(
        level=env.get("CANDLEFLOW_LOG_LEVEL", "INFO"),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    from infra.alerts import install_alert_logging
    from infra.redact import install_redaction

    install_redaction()
    install_alert_logging()
    metrics = LiveMetrics.create()
    serve_metrics(metrics, args.metrics_port)
    built = build_worker_flow(settings, args, metrics=metrics)
    before = live_status(settings, built.instance)
    # bytewax.run runs the flow in this process next: Ctrl-C and SIGTERM stop it cleanly too,
    # and once it has returned, the summary line `candleflow stream` logs closes the run.
    stop = _StopOnSignal().__enter__()
    if _is_bytewax_run(sys.argv):  # not when a caller (a test) only builds the flow
        atexit.register(_summary_at_exit, settings, built.instance, before, metrics, stop)
    return built.flow
