"""The live plane: a Bytewax dataflow from live bars to orders, fills and equity.

The only package that imports bytewax. Steps are pure mappers over picklable state
(`streaming.steps`), the dataflow wires them (`streaming.dataflow`), sources parse venue data
into bars (`streaming.sources`), and `streaming.worker` runs it all with recovery.
"""

from streaming.dataflow import LIVE_TABLES, StoreSink, StreamConfig, build_flow
from streaming.killswitch import engage_kill_switch, kill_switch_status, release_kill_switch
from streaming.metrics import LiveMetrics
from streaming.models import ChampionProvider, LocalBundleProvider, ModelUnavailableError
from streaming.router import OrderRouter, RouteOutcome
from streaming.sources import (
    BinancePollingSource,
    MT5PollingSource,
    MT5TickSource,
    ReplaySource,
    load_replay_bars,
)
from streaming.steps import Tick, aggregate_ticks
from streaming.worker import WorkerArgs, run_from_cli

__all__ = [
    "LIVE_TABLES",
    "BinancePollingSource",
    "ChampionProvider",
    "LiveMetrics",
    "LocalBundleProvider",
    "MT5PollingSource",
    "MT5TickSource",
    "ModelUnavailableError",
    "OrderRouter",
    "ReplaySource",
    "RouteOutcome",
    "StoreSink",
    "StreamConfig",
    "Tick",
    "WorkerArgs",
    "aggregate_ticks",
    "build_flow",
    "engage_kill_switch",
    "kill_switch_status",
    "load_replay_bars",
    "release_kill_switch",
    "run_from_cli",
]
