"""The live worker: wires settings into the dataflow and runs it with recovery.

Run it from the project CLI (`run_from_cli(settings, args)`), or with Bytewax's own runner:

```
python -m bytewax.recovery var/live/recovery 1          # once
CANDLEFLOW_STREAM_SYMBOLS=SPX@1d python -m bytewax.run "streaming.worker:get_flow()" \
    -r var/live/recovery -s 5 -b 0
```

`get_flow()` reads the same options from the environment (CANDLEFLOW_STREAM_SYMBOLS,
CANDLEFLOW_STREAM_SPEED, CANDLEFLOW_STREAM_MAX_BARS, CANDLEFLOW_STREAM_BUNDLE,
CANDLEFLOW_STREAM_STRATEGY, CANDLEFLOW_STREAM_WORKERS).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow

from execution.broker import Broker, LiveTradingNotEnabledError
from execution.config import StrategyConfig
from infra.settings import Broker as BrokerChoice
from infra.settings import Environment, Settings
from streaming.dataflow import StoreSink, StreamConfig, build_flow
from streaming.killswitch import engage_kill_switch, kill_switch_status, release_kill_switch
from streaming.metrics import LiveMetrics, serve_metrics
from streaming.models import ChampionProvider, LocalBundleProvider, ModelProvider
from streaming.sources import ReplaySource, load_replay_bars

__all__ = [
    "WorkerArgs",
    "build_worker_flow",
    "engage_kill_switch",
    "ensure_recovery_dir",
    "get_flow",
    "kill_switch_status",
    "live_broker_from_settings",
    "release_kill_switch",
    "run_from_cli",
]

logger = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 9464


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
        )


def _metrics_port_from_env() -> int:
    return int(os.environ.get("CANDLEFLOW_METRICS_PORT", str(DEFAULT_METRICS_PORT)))


def _parse_series(items: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        symbol, sep, tf = item.partition("@")
        if not sep or not symbol or not tf:
            msg = f"series {item!r} is not SYMBOL@TIMEFRAME (e.g. SPX@1d)"
            raise ValueError(msg)
        out.append((symbol, tf))
    return out


def _limit_native_threads() -> None:
    # xgboost builds a DMatrix per prediction with every OpenMP thread by default; on a busy
    # machine the thread hand-off costs ~20 ms per bar instead of ~1 ms. One bar at a time
    # gains nothing from threads. Must run before the OpenMP runtime starts.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _open_store(settings: Settings) -> Any:
    from infra.stores import open_store

    if settings.env is Environment.TIMESCALE:
        return open_store("timescale", dsn=settings.timescale_dsn)
    return open_store("parquet", data_dir=settings.data_dir)


def live_broker_from_settings(settings: Settings) -> Broker | None:
    """None for the paper broker; a connected MT5 broker only with the explicit live opt-in."""
    if settings.broker is BrokerChoice.PAPER:
        return None
    if not settings.live:
        msg = (
            f"CANDLEFLOW_BROKER={settings.broker} trades real money and needs the explicit "
            "opt-in: set CANDLEFLOW_LIVE=1 and CANDLEFLOW_BROKER=mt5 (or use the paper broker)"
        )
        raise LiveTradingNotEnabledError(msg)
    from mt5_bridge import MT5Broker, MT5Config, load_mt5_module

    broker = MT5Broker.from_settings(settings, load_mt5_module("MetaTrader5"), MT5Config.from_env())
    broker.connect()
    return broker


def _providers(
    settings: Settings, series: Sequence[tuple[str, str]], bundle: Path | None
) -> dict[str, ModelProvider]:
    if bundle is not None:
        from ml.bundle import load_bundle

        local = LocalBundleProvider(load_bundle(bundle), version=f"file:{bundle.name}")
        return dict.fromkeys((s for s, _ in series), local)
    from infra.tracking import ModelTracker, TrackingConfig, registered_model_name

    tracker = ModelTracker(TrackingConfig(settings.mlflow_uri, settings.mlflow_artifacts_dir))
    cache = settings.home / "live" / "models"
    return {
        symbol: ChampionProvider(tracker, registered_model_name(symbol, tf), cache, 60.0)
        for symbol, tf in series
    }


def _series(settings: Settings, args: WorkerArgs, store: Any) -> list[tuple[str, str]]:
    if args.symbols:
        return _parse_series(args.symbols)
    stored = list(store.list_series())
    if args.bundle is not None:
        return stored
    from infra.tracking import ModelTracker, TrackingConfig, registered_model_name

    tracker = ModelTracker(TrackingConfig(settings.mlflow_uri, settings.mlflow_artifacts_dir))
    with_champion = [
        (s, tf)
        for s, tf in stored
        if tracker.alias_version(registered_model_name(s, tf), "champion") is not None
    ]
    if not with_champion:
        msg = (
            "no stored series has a champion model; run the research pipeline first or name "
            "the series (SYM@TF) and a --bundle"
        )
        raise LookupError(msg)
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


def _strategy(
    settings: Settings, path: Path | None, series: Sequence[tuple[str, str]], bundle: Path | None
) -> StrategyConfig:
    """The trading rules: a given file, else the ones the champion was backtested with."""
    if path is not None:
        return StrategyConfig.from_dict(json.loads(Path(path).read_text()))
    candidates = [bundle / "strategy.json"] if bundle is not None else []
    if bundle is None:
        from infra.tracking import ModelTracker, TrackingConfig, registered_model_name

        tracker = ModelTracker(TrackingConfig(settings.mlflow_uri, settings.mlflow_artifacts_dir))
        symbol, tf = series[0]
        cache = settings.home / "live" / "strategy" / f"{symbol}@{tf}"
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


def build_worker_flow(
    settings: Settings,
    args: WorkerArgs,
    *,
    metrics: LiveMetrics | None = None,
    providers: Mapping[str, ModelProvider] | None = None,
) -> Dataflow:
    """The replay dataflow the worker runs, from settings and worker arguments."""
    _limit_native_threads()
    live = live_broker_from_settings(settings)  # refuses mt5 without the opt-in, first thing
    with _open_store(settings) as store:
        series = _series(settings, args, store)
    timeframes = {tf for _, tf in series}
    if len(timeframes) > 1:
        msg = f"one worker trades one timeframe; got {sorted(timeframes)}"
        raise ValueError(msg)
    config = StreamConfig(
        strategy=_strategy(settings, args.strategy, series, args.bundle),
        symbols=tuple(s for s, _ in series),
        home=settings.home,
        paper_state_path=settings.home / "live" / "paper_state.json" if live is None else None,
        reorder=args.workers > 1,
    )

    def load() -> Any:
        with _open_store(settings) as st:
            return load_replay_bars(st, series)

    source = ReplaySource(load, speed=args.speed, max_bars=args.max_bars)
    sink = StoreSink(lambda: _open_store(settings))
    provs = providers if providers is not None else _providers(settings, series, args.bundle)
    logger.info(
        "event=worker_flow series=%s broker=%s workers=%d",
        ",".join(f"{s}@{tf}" for s, tf in series),
        "paper" if live is None else live.name,
        args.workers,
    )
    return build_flow(config, source, sink, provs, live_broker=live, metrics=metrics)


def ensure_recovery_dir(path: Path, partitions: int = 1) -> Path:
    """Create the recovery partitions once; an existing set is kept (that is the resume)."""
    from bytewax.recovery import init_db_dir

    path.mkdir(parents=True, exist_ok=True)
    if not any(path.glob("part-*.sqlite3")):
        init_db_dir(path, partitions)
        logger.info("event=recovery_initialized dir=%s partitions=%d", path, partitions)
    return path


def run_from_cli(settings: Settings, args: Any) -> int:
    """Run the live worker until its source ends (a replay) or it is stopped; returns 0."""
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    wargs = args if isinstance(args, WorkerArgs) else WorkerArgs.from_namespace(args)
    metrics = LiveMetrics.create()
    serve_metrics(metrics, wargs.metrics_port)
    flow = build_worker_flow(settings, wargs, metrics=metrics)
    recovery = ensure_recovery_dir(wargs.recovery_dir or settings.home / "live" / "recovery")
    logger.info("event=worker_start recovery_dir=%s snapshot_s=%s", recovery, wargs.snapshot_s)
    cli_main(
        flow,
        workers_per_process=wargs.workers,
        epoch_interval=timedelta(seconds=wargs.snapshot_s),
        recovery_config=RecoveryConfig(recovery, timedelta(0)),
    )
    logger.info("event=worker_done")
    return 0


def get_flow() -> Dataflow:
    """The flow for `python -m bytewax.run "streaming.worker:get_flow()"`, from the environment."""
    env = os.environ
    symbols = env.get("CANDLEFLOW_STREAM_SYMBOLS")
    args = WorkerArgs(
        symbols=tuple(s.strip() for s in symbols.split(",") if s.strip()) if symbols else None,
        speed=float(env.get("CANDLEFLOW_STREAM_SPEED", "0")),
        workers=int(env.get("CANDLEFLOW_STREAM_WORKERS", "1")),
        max_bars=int(env["CANDLEFLOW_STREAM_MAX_BARS"])
        if env.get("CANDLEFLOW_STREAM_MAX_BARS")
        else None,
        bundle=Path(env["CANDLEFLOW_STREAM_BUNDLE"])
        if env.get("CANDLEFLOW_STREAM_BUNDLE")
        else None,
        strategy=Path(env["CANDLEFLOW_STREAM_STRATEGY"])
        if env.get("CANDLEFLOW_STREAM_STRATEGY")
        else None,
        metrics_port=_metrics_port_from_env(),
    )
    logging.basicConfig(
        level=env.get("CANDLEFLOW_LOG_LEVEL", "INFO"),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    metrics = LiveMetrics.create()
    serve_metrics(metrics, args.metrics_port)
    return build_worker_flow(Settings.from_env(), args, metrics=metrics)
