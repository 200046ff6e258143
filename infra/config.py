"""candleflow's one configuration file: `candleflow.toml` (or `.yaml`), typed and frozen.

Which file is read (first match wins), by `load_config`, called only at the edges (the CLI, the
Dagster code location, the streaming worker), never at import time:

1. an explicit path (`candleflow --config PATH ...`);
2. the environment variable `CANDLEFLOW_CONFIG` (how Dagster's run and step processes and the
   Bytewax runner find the same file: the CLI sets it for the processes it starts);
3. `candleflow.toml` in the working directory;
4. none: every default, which is exactly candleflow's behaviour without a file.

API (everything returned is frozen; nothing here reads the environment except `load_config`):

```python
from infra.config import CandleflowConfig, load_config

cfg = load_config()                      # or load_config(Path("candleflow.toml"))
cfg.universe.series                      # tuple[SeriesSpec, ...]: the series to research
cfg.universe.keys                        # ("SPX@1d", ...)
cfg.research.recipe                      # ml.pipeline.ResearchConfig (models, folds, embargo...)
cfg.research.min_trades                  # OOS trades a family needs to be deployable/promoted
cfg.research.deploy                      # "auto" (best deflated Sharpe) or a family name
cfg.research.require_approval            # keep a new model challenger until `candleflow promote`
cfg.research.features                    # import paths of user feature functions
cfg.research.recipe.feature_config       # ml.features.FeatureConfig: built-ins + user features
cfg.strategy.for_series(spec)            # execution.config.StrategyConfig for that series
cfg.strategy.rule                        # import path of a user strategy rule ("" = built-in)
cfg.live                                 # broker, series, source, snapshot_s, poll_s, workers
cfg.reports.dir                          # None: $CANDLEFLOW_HOME/reports
cfg.executor                             # Dagster executor of runs, run/step concurrency
cfg.to_dict(); cfg.to_json()             # the resolved config, every default filled in
cfg.config_hash                          # sha256 (16 hex) of to_json(): recorded with every run
CandleflowConfig.from_json(text)         # what Dagster resources carry between processes
example_toml()                           # the commented example `candleflow init` writes
```

Import paths (`module:attribute` of a model, feature or rule) also resolve to modules in the
config file's folder, appended to sys.path when the file is read.

Rules: unknown keys are refused with the allowed ones named; values are type-checked; secrets
are never written in the file: a key that looks like a secret (password, token, api_key, dsn,
secret) is refused, and a `*_env` key must hold an environment variable NAME.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.series import SeriesSpec, SeriesSpecError, parse_series_key
from infra.settings import SettingsError

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_NAME",
    "EXECUTORS",
    "CandleflowConfig",
    "ConfigFileError",
    "ExecutorSection",
    "LiveSection",
    "ReportsSection",
    "ResearchSection",
    "StrategySection",
    "UniverseSection",
    "example_toml",
    "load_config",
    "resolve_config_path",
]

CONFIG_ENV_VAR = "CANDLEFLOW_CONFIG"
DEFAULT_CONFIG_NAME = "candleflow.toml"
EXECUTORS = ("in_process", "multiprocess", "k8s", "celery")
CLI_RUNS = ("in_process", "executor")
DEPLOY_AUTO = "auto"
_LIVE_SOURCES = ("replay", "binance", "mt5")
_BROKERS = ("paper", "mt5")
_SECRET_WORDS = re.compile(r"(password|passwd|secret|token|api_?key|dsn|credential)", re.I)
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class ConfigFileError(SettingsError):
    """The configuration file (or a value in it) cannot be used; the message says where."""


# --- helpers ---------------------------------------------------------------------------------


def _fail(where: str, msg: str) -> None:
    text = f"{where}: {msg}"
    raise ConfigFileError(text)


def _check_keys(where: str, data: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        _fail(where, f"expected a table, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        _fail(where, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return dict(data)


def _check_type(where: str, name: str, value: Any, kind: Any) -> Any:
    """Check a scalar or list value against a simple annotation; lists become tuples."""
    ok: bool
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    elif kind == "strs":
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    elif kind == "optional_float":
        ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
        value = float(value) if ok and value is not None else value
    elif kind == "mapping":
        ok = isinstance(value, Mapping)
        value = dict(value) if ok else value
    else:  # pragma: no cover - a programming error in this module
        msg = f"unsupported kind {kind!r}"
        raise TypeError(msg)
    if not ok:
        label = {"strs": "list of strings", "optional_float": "number", "mapping": "table"}
        _fail(where, f"{name} must be a {label.get(kind, getattr(kind, '__name__', kind))}, "
              f"got {value!r}")
    return value


def _guard_secrets(where: str, data: Mapping[str, Any]) -> None:
    """Secrets are named by environment variable, never written in the file."""
    for key, value in data.items():
        if key.endswith("_env"):
            if not (isinstance(value, str) and _ENV_NAME.match(value)):
                _fail(where, f"{key} must name an environment variable (e.g. MY_API_KEY), "
                      f"got {value!r}")
        elif _SECRET_WORDS.search(key) and isinstance(value, str | int | float):
            _fail(where, f"{key!r} looks like a secret; never write secrets in the config: "
                  f"name the environment variable instead ({key}_env = \"MY_VARIABLE\")")
        if isinstance(value, Mapping):
            _guard_secrets(f"{where}.{key}", value)


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _plain(value: Any) -> Any:
    """JSON-friendly: tuples to lists, mappings to dicts, paths to strings."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# --- sections --------------------------------------------------------------------------------

_SERIES_KEYS = {"symbol", "timeframe", "source", "instrument_class", "options"}


@dataclass(frozen=True)
class UniverseSection:
    """The series candleflow researches (and `ingest` registers): empty = every registered one."""

    series: tuple[SeriesSpec, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.series)

    def get(self, key: str) -> SeriesSpec | None:
        return next((s for s in self.series if s.key == key), None)

    @classmethod
    def from_mapping(cls, data: Any, base_dir: Path | None = None) -> UniverseSection:
        d = _check_keys("[universe]", data, {"series"})
        items = d.get("series", [])
        if not isinstance(items, list | tuple):
            _fail("[universe]", "series must be a list of tables ([[universe.series]])")
        specs: list[SeriesSpec] = []
        for i, item in enumerate(items):
            where = f"[[universe.series]] #{i + 1}"
            entry = _check_keys(where, item, _SERIES_KEYS)
            for required in ("symbol", "timeframe", "source"):
                if required not in entry:
                    _fail(where, f"{required} is required")
            options = _check_type(where, "options", entry.get("options", {}), "mapping")
            _guard_secrets(f"{where}.options", options)
            if "path" in options and base_dir is not None:
                # A relative file path is relative to the config file, not the working directory.
                options["path"] = str((base_dir / str(options["path"])).resolve())
            try:
                spec = SeriesSpec(
                    symbol=_check_type(where, "symbol", entry["symbol"], str),
                    timeframe=_check_type(where, "timeframe", entry["timeframe"], str),
                    source=_check_type(where, "source", entry["source"], str),
                    instrument_class=_check_type(
                        where, "instrument_class", entry.get("instrument_class", "equity"), str
                    ),
                    options=options,
                )
            except (SeriesSpecError, ValueError) as exc:
                _fail(where, str(exc))
            if any(s.key == spec.key for s in specs):
                _fail(where, f"series {spec.key} is listed twice")
            specs.append(spec)
        return cls(series=tuple(specs))

    def to_dict(self) -> dict[str, Any]:
        return {"series": [s.to_dict() for s in self.series]}


def _research_config_type() -> Any:
    from ml.pipeline import ResearchConfig

    return ResearchConfig


_RESEARCH_EXTRAS: dict[str, Any] = {
    "min_trades": int,
    "deploy": str,
    "require_approval": bool,
    "promotion_margin": float,
    "features": "strs",
    "label_kind": str,
    "pooled": bool,
}


@dataclass(frozen=True)
class ResearchSection:
    """The research recipe (every `ResearchConfig` field, flat in `[research]`) and the rules that
    pick and promote the deployed model."""

    recipe: Any = field(default_factory=lambda: _research_config_type()())  # ResearchConfig
    min_trades: int = 10  # OOS trades a family needs to be deployed and promoted
    deploy: str = DEPLOY_AUTO  # "auto": best deflated Sharpe among families with >= min_trades
    require_approval: bool = False  # new models stay challenger until `candleflow promote`
    promotion_margin: float = 0.0  # challenger must beat the champion's OOS Sharpe by this
    features: tuple[str, ...] = ()  # "module:function" user feature functions, bars -> columns
    label_kind: str = "direction"  # label family; ResearchConfig's own field wins when it has one
    # also train one model per fold across every series of a timeframe (pooled_predictions)
    pooled: bool = False

    def __post_init__(self) -> None:
        if self.min_trades < 0:
            _fail("[research]", f"min_trades must be >= 0, got {self.min_trades}")
        if self.deploy != DEPLOY_AUTO and self.deploy not in self.recipe.models:
            _fail(
                "[research]",
                f"deploy = {self.deploy!r} is not one of the models tried "
                f"({', '.join(self.recipe.models)}); use \"auto\" or one of them",
            )
        from ml.errors import ConfigError
        from ml.models import family_factory

        for family in self.recipe.models:  # a user's import path fails here, not mid-research
            if ":" in family:
                try:
                    family_factory(family)
                except ConfigError as exc:
                    _fail("[research]", str(exc))
        if self.label_kind != getattr(self.recipe, "label_kind", "direction"):
            _fail("[research]", f"label_kind {self.label_kind!r} is not supported by this "
                  "version's ResearchConfig; use \"direction\"")

    @classmethod
    def from_mapping(cls, data: Any) -> ResearchSection:
        research_config = _research_config_type()
        recipe_keys = {f.name for f in dataclasses.fields(research_config)}
        d = _check_keys("[research]", data, recipe_keys | set(_RESEARCH_EXTRAS))
        extras = {
            k: _check_type("[research]", k, d.pop(k), kind)
            for k, kind in _RESEARCH_EXTRAS.items()
            if k in d and k not in recipe_keys
        }
        from ml.errors import ConfigError

        defaults = research_config()
        for key, value in d.items():  # types follow the defaults: int, float, bool, str, list
            default = getattr(defaults, key)
            kind = "strs" if isinstance(default, tuple) else type(default)
            if kind in (int, float, bool, str, "strs"):
                d[key] = _check_type("[research]", key, value, kind)
        try:
            recipe = research_config.from_mapping(d)
        except (ConfigError, TypeError, ValueError) as exc:
            _fail("[research]", str(exc))
        if "label_kind" in recipe_keys:
            extras["label_kind"] = recipe.label_kind
        extras["features"] = recipe.features  # the recipe carries them (and feature_window)
        return cls(recipe=recipe, **extras)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.recipe.to_dict())
        for name in _RESEARCH_EXTRAS:
            out.setdefault(name, _plain(getattr(self, name)))
        return out


# Today's trading rules (infra.strategy.strategy_for): the defaults when the file says nothing.
_STRATEGY_DEFAULTS: dict[str, Any] = {
    "strategy": "candleflow",
    "costs": {"commission_bps": 1.0, "spread_bps": 1.0, "slippage_bps": 1.0},
    "sizing": {"method": "fixed_fractional", "risk_per_trade": 0.01},
    "stops": {"kind": "atr", "atr_mult": 2.0},
}


@dataclass(frozen=True)
class StrategySection:
    """Costs, sizing, stops, risk limits and decision thresholds (execution.StrategyConfig), plus
    an optional user rule. `periods_per_year` defaults to each series' own bar frequency."""

    values: Mapping[str, Any] = field(default_factory=dict)  # StrategyConfig.from_dict input
    rule: str = ""  # "module:function" user rule: prediction -> target position ("" = built-in)

    def __post_init__(self) -> None:
        self.template()  # validate now (the rule is imported too), not at the first backtest

    def template(self) -> Any:
        from execution.config import ExecutionConfigError, StrategyConfig

        try:
            values = _deep_merge(_STRATEGY_DEFAULTS, self.values)
            return StrategyConfig.from_dict({**values, "rule": self.rule})
        except (ExecutionConfigError, TypeError) as exc:
            _fail("[strategy]", str(exc))

    def for_series(self, spec: SeriesSpec) -> Any:
        """The StrategyConfig of one series: annualised with its own bars unless the file says."""
        from execution.metrics import periods_per_year_for

        cfg = self.template()
        if "periods_per_year" in self.values:
            return cfg
        ppy = periods_per_year_for(spec.timeframe, spec.instrument_class)
        return dataclasses.replace(cfg, periods_per_year=ppy)

    @classmethod
    def from_mapping(cls, data: Any) -> StrategySection:
        from execution.config import StrategyConfig

        allowed = {f.name for f in dataclasses.fields(StrategyConfig)} | {"rule"}
        d = _check_keys("[strategy]", data, allowed)
        _guard_secrets("[strategy]", d)
        rule = _check_type("[strategy]", "rule", d.pop("rule", ""), str)
        return cls(values=_plain(d), rule=rule)

    def to_dict(self) -> dict[str, Any]:
        out = self.template().to_dict()
        if "periods_per_year" not in self.values:
            out["periods_per_year"] = "per series"
        out["rule"] = self.rule
        return out


@dataclass(frozen=True)
class LiveSection:
    """The streaming worker's defaults; command-line flags override them. The live opt-in
    (CANDLEFLOW_LIVE=1) and broker credentials stay in the environment."""

    broker: str = "paper"  # paper | mt5 (CANDLEFLOW_BROKER, when set, wins)
    series: tuple[str, ...] = ()  # SYMBOL@TF to trade; empty: every series with a champion
    source: str = "replay"  # replay | binance | mt5
    snapshot_s: float = 5.0  # Bytewax recovery snapshot interval
    poll_s: float | None = None  # live sources: seconds between polls (None: source default)
    workers: int = 1
    metrics_port: int = 9464  # Prometheus; 0 turns it off

    def __post_init__(self) -> None:
        if self.broker not in _BROKERS:
            _fail("[live]", f"broker must be one of {', '.join(_BROKERS)}, got {self.broker!r}")
        if self.source not in _LIVE_SOURCES:
            _fail("[live]", f"source must be one of {', '.join(_LIVE_SOURCES)}, "
                  f"got {self.source!r}")
        for key in self.series:
            try:
                parse_series_key(key)
            except (SeriesSpecError, ValueError) as exc:
                _fail("[live]", str(exc))
        if self.snapshot_s <= 0 or self.workers < 1 or not 0 <= self.metrics_port < 65536:
            _fail("[live]", "snapshot_s must be > 0, workers >= 1 and metrics_port in [0, 65535]")

    @classmethod
    def from_mapping(cls, data: Any) -> LiveSection:
        kinds = {"broker": str, "series": "strs", "source": str, "snapshot_s": float,
                 "poll_s": "optional_float", "workers": int, "metrics_port": int}
        d = _check_keys("[live]", data, set(kinds))
        return cls(**{k: _check_type("[live]", k, v, kinds[k]) for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        return {
            "broker": self.broker, "series": list(self.series), "source": self.source,
            "snapshot_s": self.snapshot_s, "poll_s": self.poll_s, "workers": self.workers,
            "metrics_port": self.metrics_port,
        }


@dataclass(frozen=True)
class ReportsSection:
    dir: str | None = None  # None: $CANDLEFLOW_HOME/reports

    @classmethod
    def from_mapping(cls, data: Any, base_dir: Path | None = None) -> ReportsSection:
        d = _check_keys("[reports]", data, {"dir"})
        if d.get("dir") is None:
            return cls()
        value = _check_type("[reports]", "dir", d["dir"], str)
        if base_dir is not None:
            value = str((base_dir / value).resolve())
        return cls(dir=value)

    def to_dict(self) -> dict[str, Any]:
        return {"dir": self.dir}


@dataclass(frozen=True)
class ExecutorSection:
    """How Dagster runs the research graph: the executor of every run (`kind`: Dagster's
    `multiprocess` default, `in_process`, or the `k8s` / `celery` executors, `config` being the
    executor's own config), and how `candleflow research` runs several series (`cli_runs`:
    `in_process`, one after another in the CLI process as before, or `executor`: each series a
    run on that executor, `max_concurrent_runs` at a time). Within a run each model family of a
    series is a step of its own, so the executor spreads the families too."""

    kind: str = "multiprocess"
    max_concurrent: int = 0  # steps at once within a run (0: Dagster's default, one per CPU)
    max_concurrent_runs: int = 2  # runs at once: Dagster's run queue and `candleflow research`
    cli_runs: str = "in_process"
    config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            _fail("[executor]", f"kind must be one of {', '.join(EXECUTORS)}, got {self.kind!r}")
        if self.cli_runs not in CLI_RUNS:
            _fail("[executor]", f"cli_runs must be one of {', '.join(CLI_RUNS)}, "
                  f"got {self.cli_runs!r}")
        if self.max_concurrent < 0 or self.max_concurrent_runs < 1:
            _fail("[executor]", "max_concurrent must be >= 0 and max_concurrent_runs >= 1")

    @classmethod
    def from_mapping(cls, data: Any) -> ExecutorSection:
        kinds = {"kind": str, "max_concurrent": int, "max_concurrent_runs": int,
                 "cli_runs": str, "config": "mapping"}
        if isinstance(data, Mapping) and "family_workers" in data:
            _fail("[executor]", "family_workers was removed: each model family is its own step "
                  "of walk_forward now, spread by the executor (max_concurrent steps at once)")
        d = _check_keys("[executor]", data, set(kinds))
        if "config" in d:
            _guard_secrets("[executor].config", d["config"])
        return cls(**{k: _check_type("[executor]", k, v, kinds[k]) for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "max_concurrent": self.max_concurrent,
                "max_concurrent_runs": self.max_concurrent_runs, "cli_runs": self.cli_runs,
                "config": _plain(self.config)}


_SECTIONS = ("universe", "research", "strategy", "live", "reports", "executor")


@dataclass(frozen=True)
class CandleflowConfig:
    universe: UniverseSection = field(default_factory=UniverseSection)
    research: ResearchSection = field(default_factory=ResearchSection)
    strategy: StrategySection = field(default_factory=StrategySection)
    live: LiveSection = field(default_factory=LiveSection)
    reports: ReportsSection = field(default_factory=ReportsSection)
    executor: ExecutorSection = field(default_factory=ExecutorSection)
    path: Path | None = field(default=None, compare=False)  # the file read; None: defaults

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, base_dir: Path | None = None, path: Path | None = None
    ) -> CandleflowConfig:
        where = str(path) if path else "config"
        try:
            d = _check_keys("top level", data, set(_SECTIONS))
            return cls(
                universe=UniverseSection.from_mapping(d.get("universe", {}), base_dir),
                research=ResearchSection.from_mapping(d.get("research", {})),
                strategy=StrategySection.from_mapping(d.get("strategy", {})),
                live=LiveSection.from_mapping(d.get("live", {})),
                reports=ReportsSection.from_mapping(d.get("reports", {}), base_dir),
                executor=ExecutorSection.from_mapping(d.get("executor", {})),
                path=path,
            )
        except ConfigFileError as exc:
            msg = f"{where} {exc}"
            raise ConfigFileError(msg) from None

    @classmethod
    def from_file(cls, path: Path) -> CandleflowConfig:
        path = Path(path)
        if not path.is_file():
            msg = f"config file not found: {path} (create one with `candleflow init`)"
            raise ConfigFileError(msg)
        text = path.read_text()
        if path.suffix == ".json":  # a resolved config (to_json), e.g. handed to step processes
            return cls.from_json(text)
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text) or {}
            else:
                data = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, ValueError) as exc:
            msg = f"{path} is not valid {'YAML' if path.suffix != '.toml' else 'TOML'}: {exc}"
            raise ConfigFileError(msg) from None
        _import_root(path.resolve().parent)
        return cls.from_mapping(data, base_dir=path.resolve().parent, path=path.resolve())

    def to_dict(self) -> dict[str, Any]:
        """The resolved config with every default filled in (what runs record)."""
        return {name: getattr(self, name).to_dict() for name in _SECTIONS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, text: str) -> CandleflowConfig:
        """Rebuild from `to_json` (or from "" meaning every default)."""
        if not text:
            return cls()
        data = json.loads(text)
        # to_dict fills in derived and default-only keys; drop those that are not inputs.
        strategy = dict(data.get("strategy", {}))
        if strategy.get("periods_per_year") == "per series":
            strategy.pop("periods_per_year")
        data["strategy"] = strategy
        return cls.from_mapping(data)

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def with_universe(self, series: tuple[SeriesSpec, ...]) -> CandleflowConfig:
        return dataclasses.replace(self, universe=UniverseSection(series=series))


def _import_root(directory: Path) -> None:
    """Let the file's `module:attribute` references (models, features, rule) name modules beside
    it, a project's own `features.py` or `mypkg/`, as if run from there. Appended to sys.path,
    so they never shadow an installed package or candleflow's own; Dagster's step processes and
    the streaming worker read the same file (CANDLEFLOW_CONFIG) and so import the same way."""
    root = str(directory)
    if root not in sys.path:
        sys.path.append(root)


def resolve_config_path(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Path | None:
    """The file `load_config` reads, or None when there is none (every default)."""
    if path is not None:
        return Path(path)
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV_VAR):
        return Path(env[CONFIG_ENV_VAR])
    candidate = (cwd or Path.cwd()) / DEFAULT_CONFIG_NAME
    return candidate if candidate.is_file() else None


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> CandleflowConfig:
    """The config from `path`, else $CANDLEFLOW_CONFIG, else ./candleflow.toml, else defaults."""
    found = resolve_config_path(path, environ=environ, cwd=cwd)
    return CandleflowConfig() if found is None else CandleflowConfig.from_file(found)


def example_toml() -> str:
    """A commented example whose values are the defaults (plus two example series)."""
    return _EXAMPLE


_EXAMPLE = '''\
# candleflow.toml: one file for research, backtests and the live worker.
# Every key is optional; a missing key keeps candleflow's default (the values shown here).
# Unknown keys are refused. Never write secrets here: name the environment variable instead
# (e.g. CANDLEFLOW_TIMESCALE_DSN, ALPHAVANTAGE_API_KEY, CANDLEFLOW_MT5_PASSWORD).
# Use it with `candleflow --config PATH ...` or CANDLEFLOW_CONFIG=PATH (default ./candleflow.toml).

# The series to research. `candleflow research` runs all of them (or --series SYMBOL@TF ...).
# With no series here, research runs every series registered by `candleflow ingest`.
[[universe.series]]
symbol = "SPX"
timeframe = "1d"
source = "bundled"            # bundled | file | alphavantage | binance | mt5
instrument_class = "equity"   # equity | fx | crypto: picks the trading calendar
options = { dataset = "sp500" }

# [[universe.series]]
# symbol = "SAP"
# timeframe = "1d"
# source = "file"
# instrument_class = "equity"
# options = { path = "data/sap.csv", tz = "Europe/Berlin" }  # path relative to this file

[research]
models = ["xgboost", "xgboost_garch", "lstm", "meta"]  # built-in names or "module:Class"
baselines = ["buy_and_hold", "sma_crossover", "flat"]
n_folds = 5             # walk-forward folds
oos_fraction = 0.5      # share of usable rows that are out of sample
horizon = 1             # label horizon in bars (the purge is at least this)
embargo = 5             # extra bars between training and test
label_kind = "direction"
dead_zone_k = 0.25
round_trip_cost = 0.0006
tune_trials = 0         # Optuna trials per fold (xgboost families); 0 = no search
lstm_epochs = 6
lstm_seq_len = 16
xgb_estimators = 150
seed = 0
min_trades = 10         # OOS trades a family needs to be deployed / promoted
deploy = "auto"         # "auto": best deflated Sharpe with >= min_trades; or a family name
require_approval = false  # true: a new model stays challenger until `candleflow promote`
promotion_margin = 0.0
features = []           # user feature functions "module:function", bars -> new columns,
                        # e.g. ["examples.user_feature:range_position"] (README "Extending")
feature_window = 250    # bars the live plane hands each user feature (its longest lookback)

[strategy]
strategy = "candleflow"   # name, part of every client order id
initial_cash = 100000.0
fill = "next_open"        # next_open | next_close
vol_window = 20
# periods_per_year = 252  # default: from each series' timeframe and instrument class
rule = ""                 # "" = built-in; or "module:function" (prediction, decision config,
                          # context) -> -1/0/+1, e.g. "examples.user_rule:long_only_hold"

[strategy.costs]
commission_bps = 1.0
commission_min = 0.0
spread_bps = 1.0
slippage_bps = 1.0
slippage_vol_mult = 0.0
max_volume_share = 0.1

[strategy.sizing]
method = "fixed_fractional"   # fixed_fractional | vol_target | kelly | fixed_quantity
risk_per_trade = 0.01
max_leverage = 1.0

[strategy.stops]
kind = "atr"                  # none | fixed | atr | trailing
atr_mult = 2.0
atr_period = 14
stop_pct = 0.02

[strategy.risk]
max_position_frac = 0.5
max_gross_exposure = 1.0
max_risk_per_trade = 0.02
daily_loss_halt = 0.05
max_drawdown_halt = 0.25
drawdown_derisk_start = 0.15
max_trades_per_day = 20

[strategy.decision]
min_confidence = 0.4
allow_short = true
abstain_margin = 0.0

[live]
broker = "paper"        # paper | mt5 (mt5 also needs CANDLEFLOW_LIVE=1 in the environment)
series = []             # SYMBOL@TF to trade; empty: every series with a champion model
source = "replay"       # replay | binance | mt5
snapshot_s = 5.0        # recovery snapshot interval
workers = 1
metrics_port = 9464     # 0 turns the Prometheus endpoint off

[reports]
# dir = "reports"       # default: $CANDLEFLOW_HOME/reports

[executor]
kind = "multiprocess"   # multiprocess | in_process | k8s | celery: the executor of every run
max_concurrent = 0      # steps at once within a run, e.g. model families (0: one per CPU)
max_concurrent_runs = 2 # runs at once (Dagster's run queue; `candleflow research`)
cli_runs = "in_process" # `research`: in_process (series one after another) | executor
# config = {}           # the executor's own config (see examples/executor_k8s.toml)
'''
