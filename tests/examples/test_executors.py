"""The executor examples under examples/: multiprocess run on two series through `research`;
k8s and celery validated (the definitions load, Dagster accepts their executor config)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from infra.config import CandleflowConfig, ConfigFileError, ExecutorSection
from infra.settings import Settings
from orchestration.commands import series_specs_for_research
from orchestration.definitions import RESEARCH_JOB, build_defs
from orchestration.demo import run_research
from orchestration.executors import executor_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

SMALL_RESEARCH = """
[[universe.series]]
symbol = "SPX"
timeframe = "1d"
source = "bundled"
options = { dataset = "sp500" }

[[universe.series]]
symbol = "IXIC"
timeframe = "1d"
source = "bundled"
options = { dataset = "nasdaq" }

[research]
models = ["xgboost"]
baselines = ["flat"]
n_folds = 2
xgb_estimators = 30
cpcv_series = []
min_trades = 1
"""


@pytest.mark.parametrize("name", ["executor_k8s.toml", "executor_celery.toml"])
def test_distributed_example_when_loaded_then_defs_load_and_dagster_accepts_config(
    tmp_path, name
):
    cfg = CandleflowConfig.from_file(EXAMPLES / name)

    defs = build_defs(Settings(home=tmp_path), cfg)
    job = defs.resolve_job_def(RESEARCH_JOB)

    assert job.executor_def.name == f"candleflow_{cfg.executor.kind}"
    dg.validate_run_config(job, {})  # the configured executor's config is complete


def test_k8s_example_when_validated_by_dagster_cli_then_definitions_load(tmp_path):
    env = {
        **os.environ,
        "CANDLEFLOW_HOME": str(tmp_path),
        "DAGSTER_HOME": str(tmp_path),
        "CANDLEFLOW_CONFIG": str(EXAMPLES / "executor_k8s.toml"),
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate",
         "-m", "orchestration.definitions"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_executor_when_config_key_is_wrong_then_refused_naming_allowed_keys():
    with pytest.raises(ConfigFileError, match=r"job_namespac.*allowed: .*job_namespace"):
        executor_for(ExecutorSection(kind="k8s", config={"job_namespac": "x"}))


@pytest.mark.slow
def test_multiprocess_example_when_two_series_researched_then_parallel_runs_succeed(tmp_path):
    (tmp_path / "candleflow.toml").write_text(
        (EXAMPLES / "executor_multiprocess.toml").read_text() + SMALL_RESEARCH
    )
    settings = Settings(home=tmp_path / "home")
    config = CandleflowConfig.from_file(tmp_path / "candleflow.toml")
    said: list[str] = []
    saved = {k: os.environ.get(k) for k in ("CANDLEFLOW_HOME", "DAGSTER_HOME", "CANDLEFLOW_CONFIG")}
    try:
        code = run_research(
            settings, config, series_specs_for_research(settings, config, None), say=said.append
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    assert code == 0, "\n".join(said)
    assert "2 research runs on the multiprocess executor, 2 at a time" in said
    results = json.loads((settings.reports_dir / "portfolio_1d" / "results.json").read_text())
    assert results["series"] == ["IXIC@1d", "SPX@1d"]
    instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
    runs = instance.get_runs(dg.RunsFilter(job_name=RESEARCH_JOB))
    assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert {r.tags["dagster/partition"] for r in runs} == {"SPX@1d", "IXIC@1d"}
