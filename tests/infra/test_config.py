"""The configuration file: typed, frozen, strict about keys, defaults equal to today's."""

from __future__ import annotations

import dataclasses
import json
import sys
import tomllib
from pathlib import Path

import pytest

from infra.config import (
    CONFIG_ENV_VAR,
    CandleflowConfig,
    ConfigFileError,
    example_toml,
    load_config,
    resolve_config_path,
)
from infra.series import SeriesSpec
from infra.strategy import strategy_for
from infra.tracking import ModelTracker, TrackingConfig
from ml.features import feature_columns
from ml.pipeline import ResearchConfig

SPX = SeriesSpec("SPX", "1d", "bundled", "equity", {"dataset": "sp500"})


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_load_when_no_file_then_every_default_is_todays_behaviour(tmp_path):
    cfg = load_config(environ={}, cwd=tmp_path)

    assert cfg.path is None
    assert cfg.research.recipe == ResearchConfig()
    assert cfg.research.min_trades == 10
    assert cfg.strategy.for_series(SPX) == strategy_for(SPX)
    eurusd = SeriesSpec("EURUSD", "1h", "bundled", "fx", {"dataset": "eurusd"})
    assert cfg.strategy.for_series(eurusd) == strategy_for(eurusd)
    assert cfg.universe.series == ()
    assert cfg.live.broker == "paper" and cfg.live.snapshot_s == 5.0
    assert cfg.executor.kind == "multiprocess" and cfg.executor.cli_runs == "in_process"


def test_example_when_parsed_then_valid_and_equal_to_the_defaults_but_its_series(tmp_path):
    cfg = CandleflowConfig.from_file(_write(tmp_path / "candleflow.toml", example_toml()))
    defaults = CandleflowConfig()

    assert cfg.universe.keys == ("SPX@1d",)
    assert dataclasses.replace(cfg, universe=defaults.universe).to_dict() == defaults.to_dict()


def test_resolve_when_flag_env_and_cwd_file_then_flag_wins_then_env_then_cwd(tmp_path):
    cwd_file = _write(tmp_path / "candleflow.toml", "")
    env_file = _write(tmp_path / "env.toml", "")
    flag_file = _write(tmp_path / "flag.toml", "")

    assert resolve_config_path(flag_file, environ={CONFIG_ENV_VAR: str(env_file)}) == flag_file
    assert resolve_config_path(environ={CONFIG_ENV_VAR: str(env_file)}, cwd=tmp_path) == env_file
    assert resolve_config_path(environ={}, cwd=tmp_path) == cwd_file


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[research]\nfold = 3\n", "unknown key(s) fold; allowed: baselines"),
        ("[strategy.costs]\ncommision_bps = 2\n", "allowed: commission_bps"),
        ("[live]\nbroker = 'ib'\n", "broker must be one of paper, mt5"),
        ("[research]\nn_folds = '3'\n", "n_folds must be a int"),
        ("[reserch]\n", "allowed: executor, live, reports, research, strategy, universe"),
        ("[research]\nmodels = ['forest']\n", "unknown model families ['forest']"),
        ("[strategy.risk]\nmax_drawdown_halt = 2.0\n", "max_drawdown_halt"),
        (
            "[[universe.series]]\nsymbol='IBM'\ntimeframe='1d'\nsource='alphavantage'\n"
            "options={api_key='abc'}\n",
            "looks like a secret",
        ),
        ("[[universe.series]]\nsymbol='IBM'\ntimeframe='1d'\n", "source is required"),
        ("[executor]\nkind = 'spark'\n", "kind must be one of in_process, multiprocess"),
    ],
)
def test_load_when_file_is_wrong_then_error_names_file_section_and_allowed(
    tmp_path, text, expected
):
    path = _write(tmp_path / "candleflow.toml", text)

    with pytest.raises(ConfigFileError) as err:
        CandleflowConfig.from_file(path)

    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_load_when_secret_named_by_env_var_then_accepted_and_value_not_in_file(tmp_path):
    path = _write(
        tmp_path / "c.toml",
        "[[universe.series]]\nsymbol='IBM'\ntimeframe='1d'\nsource='alphavantage'\n"
        "options={api_key_env='ALPHAVANTAGE_API_KEY'}\n",
    )

    cfg = CandleflowConfig.from_file(path)

    assert cfg.universe.series[0].options == {"api_key_env": "ALPHAVANTAGE_API_KEY"}


def test_load_when_file_sets_recipe_and_rules_then_typed_values_reach_each_part(tmp_path):
    path = _write(
        tmp_path / "c.toml",
        """
[[universe.series]]
symbol = "SAP"
timeframe = "1d"
source = "file"
options = { path = "data/sap.csv", tz = "Europe/Berlin" }

[research]
models = ["xgboost"]
n_folds = 3
embargo = 2
tune_trials = 4
min_trades = 5
require_approval = true

[strategy]
initial_cash = 5000
[strategy.costs]
commission_bps = 3.5
[strategy.stops]
kind = "fixed"

[live]
series = ["SAP@1d"]
snapshot_s = 2
""",
    )

    cfg = CandleflowConfig.from_file(path)
    spec = cfg.universe.series[0]
    strat = cfg.strategy.for_series(spec)

    assert spec.options["path"] == str((tmp_path / "data" / "sap.csv").resolve())
    assert cfg.research.recipe.models == ("xgboost",)
    assert (cfg.research.recipe.n_folds, cfg.research.recipe.embargo) == (3, 2)
    assert cfg.research.recipe.tune_trials == 4
    assert cfg.research.min_trades == 5 and cfg.research.require_approval
    assert strat.initial_cash == 5000.0 and strat.costs.commission_bps == 3.5
    assert strat.costs.spread_bps == 1.0  # untouched keys keep their defaults
    assert strat.stops.kind == "fixed" and strat.stops.atr_mult == 2.0
    assert cfg.live.series == ("SAP@1d",) and cfg.live.snapshot_s == 2.0


_BESIDE_FEATURE = """
import pandas as pd

def gap(bars):
    return pd.DataFrame({"beside_gap": bars["open"] / bars["close"].shift(1)}, index=bars.index)
"""

_BESIDE_RULE = """
def always_long(prediction, config, context):
    return 1
"""


def test_load_when_file_names_modules_beside_it_then_they_import_without_pythonpath(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    monkeypatch.chdir(tmp_path.parent)  # not the project folder: only the file's folder helps
    (tmp_path / "beside_feature_mod.py").write_text(_BESIDE_FEATURE)
    (tmp_path / "beside_rule_mod.py").write_text(_BESIDE_RULE)
    path = tmp_path / "candleflow.toml"
    path.write_text(
        '[research]\nfeatures = ["beside_feature_mod:gap"]\n'
        '[strategy]\nrule = "beside_rule_mod:always_long"\n'
    )
    try:
        cfg = load_config(path)

        assert "beside_gap" in feature_columns(cfg.research.recipe.feature_config)
        assert cfg.strategy.for_series(SeriesSpec("X", "1d", "file", "equity", {"path": "-"})).rule
        assert sys.path[-1] == str(tmp_path)  # appended: never shadows an installed package
    finally:
        sys.modules.pop("beside_feature_mod", None)
        sys.modules.pop("beside_rule_mod", None)


def test_config_when_round_tripped_through_json_then_same_hash_and_frozen(tmp_path):
    cfg = CandleflowConfig.from_file(_write(tmp_path / "c.toml", example_toml()))

    again = CandleflowConfig.from_json(cfg.to_json())

    assert again.config_hash == cfg.config_hash
    assert CandleflowConfig.from_json("").config_hash == CandleflowConfig().config_hash
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.research = cfg.research  # type: ignore[misc]


def test_config_when_yaml_file_then_same_as_toml(tmp_path):
    toml_cfg = CandleflowConfig.from_file(_write(tmp_path / "c.toml", "[research]\nn_folds = 3\n"))
    yaml_cfg = CandleflowConfig.from_file(_write(tmp_path / "c.yaml", "research:\n  n_folds: 3\n"))

    assert yaml_cfg.config_hash == toml_cfg.config_hash


def test_tracker_when_config_given_then_every_run_carries_it_and_its_hash(tmp_path):
    cfg = CandleflowConfig.from_mapping(tomllib.loads("[research]\nn_folds = 3\n"))
    tracker = ModelTracker(
        TrackingConfig(
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            artifact_root=tmp_path / "artifacts",
            run_config_json=cfg.to_json(),
        )
    )

    run = tracker.client.create_run(tracker.experiment_id, run_name="report")
    logged = tracker.client.get_run(run.info.run_id)
    local = tracker.client.download_artifacts(run.info.run_id, "config.json", str(tmp_path))

    assert logged.data.tags["candleflow.config_hash"] == cfg.config_hash
    assert json.loads(Path(local).read_text())["research"]["n_folds"] == 3


@pytest.mark.parametrize(
    "text", ["[research]\nfeatures = ['m:f']\n", "[strategy]\nrule = 'm:rule'\n"]
)
def test_load_when_extension_not_importable_then_refused_naming_it(tmp_path, text):
    with pytest.raises(ConfigFileError, match="cannot import 'm'"):
        CandleflowConfig.from_file(_write(tmp_path / "c.toml", text))
