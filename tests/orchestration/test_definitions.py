"""The Dagster code location loads and wires what the product promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infra.settings import Settings
from orchestration.definitions import build_defs

ROOT = Path(__file__).resolve().parents[2]


def test_definitions_when_validated_by_dagster_cli_then_load(tmp_path):
    env = {**os.environ, "CANDLEFLOW_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    env.pop("CANDLEFLOW_ENV", None)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate",
         "-m", "orchestration.definitions"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_build_defs_when_local_then_parquet_store_and_automation_wired(tmp_path):
    defs = build_defs(Settings(home=tmp_path))

    repo = defs.get_repository_def()
    assert repo.has_job("ingest")
    assert {s.name for s in repo.schedule_defs} >= {"daily_ingest_schedule"}
    assert {s.name for s in repo.sensor_defs} >= {"drop_folder_sensor"}
    assert defs.resources["bar_store"].kind == "parquet"


def test_build_defs_when_timescale_then_dsn_comes_from_env_var(tmp_path):
    from infra.settings import Environment

    defs = build_defs(Settings(home=tmp_path, env=Environment.TIMESCALE, timescale_dsn="x"))

    assert defs.resources["bar_store"].kind == "timescale"


def test_build_defs_when_config_given_then_resources_carry_it_and_overrides_win(tmp_path):
    from infra.config import CandleflowConfig
    from infra.series import SeriesSpec
    from orchestration.resources import ResearchResource

    cfg = CandleflowConfig.from_mapping(
        {"research": {"n_folds": 3, "min_trades": 4}, "strategy": {"costs": {"spread_bps": 2.0}}}
    )
    spec = SeriesSpec("SPX", "1d", "bundled", "equity", {"dataset": "sp500"})

    defs = build_defs(Settings(home=tmp_path), cfg)
    research = defs.resources["research"]
    override = ResearchResource(config_json=cfg.to_json(), n_folds=2, commission_bps=5.0)

    assert research.config().n_folds == 3 and research.min_trade_count() == 4
    assert research.strategy(spec).costs.spread_bps == 2.0
    assert defs.resources["mlflow"].config_json == cfg.to_json()
    assert override.config().n_folds == 2
    assert override.strategy(spec).costs.commission_bps == 5.0
    assert override.strategy(spec).costs.spread_bps == 2.0
