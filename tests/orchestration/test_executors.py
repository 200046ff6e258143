"""The multiprocess executor candleflow configures: forkserver steps with the heavy modules
preloaded, a config Dagster's schema accepts, and thread limits for concurrent steps."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import dagster as dg

from infra.config import ExecutorSection
from orchestration.executors import PRELOAD_MODULES, executor_for
from orchestration.launch import thread_limits


def _resolved_executor_config(executor: dg.ExecutorDefinition) -> dict:
    """The configured executor's config as Dagster resolves it against its own schema."""
    resolved = executor.config_schema.resolve_config({})
    assert resolved.success, resolved.errors
    return resolved.value["config"]


def test_executor_for_when_multiprocess_by_default_then_forkserver_preloading_importable_modules():
    executor = executor_for(ExecutorSection(max_concurrent=3))

    config = _resolved_executor_config(executor)

    assert config["max_concurrent"] == 3
    assert config["start_method"] == {"forkserver": {"preload_modules": list(PRELOAD_MODULES)}}
    assert all(importlib.util.find_spec(m) is not None for m in PRELOAD_MODULES)


def test_executor_for_when_start_method_configured_then_the_configured_one_is_kept():
    executor = executor_for(ExecutorSection(config={"start_method": {"spawn": {}}}))

    assert _resolved_executor_config(executor)["start_method"] == {"spawn": {}}


def test_thread_limits_when_runs_times_steps_fill_the_cpus_then_one_thread_per_step():
    two_runs = ExecutorSection(max_concurrent=1, max_concurrent_runs=2)
    one_run = ExecutorSection(max_concurrent=2, max_concurrent_runs=1)
    one_step = ExecutorSection(max_concurrent=1, max_concurrent_runs=1)

    assert thread_limits(two_runs, cpus=2)["OMP_NUM_THREADS"] == "1"
    assert thread_limits(one_run, cpus=2)["OMP_NUM_THREADS"] == "1"
    assert thread_limits(one_step, cpus=4) == dict.fromkeys(
        ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "4"
    )
    assert thread_limits(ExecutorSection(), cpus=16)["OMP_NUM_THREADS"] == "1"  # 2 runs x 16
    in_process = ExecutorSection(kind="in_process", max_concurrent_runs=2)
    assert thread_limits(in_process, cpus=16)["OMP_NUM_THREADS"] == "8"  # one step per run


@dg.op
def _where() -> dict:
    """Where the step ran, and what it found imported before importing anything itself."""
    return {"pid": os.getpid(), "ppid": os.getppid(), "xgboost": "xgboost" in sys.modules,
            "omp": os.environ.get("OMP_NUM_THREADS")}


@dg.job(executor_def=executor_for(ExecutorSection(max_concurrent=2)))
def where_job() -> None:
    _where()


def test_multiprocess_run_when_default_executor_then_steps_fork_from_a_warm_forkserver(
    tmp_path, monkeypatch
):
    # Arrange: the run's environment, as export_for_step_processes leaves it
    monkeypatch.setenv("CANDLEFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("CANDLEFLOW_CONFIG", raising=False)
    with dg.instance_for_test() as instance:
        # Act
        with dg.execute_job(dg.reconstructable(where_job), instance) as result:
            # Assert
            assert result.success
            seen = result.output_for_node("_where")
    assert seen["pid"] != os.getpid() and seen["ppid"] != os.getpid()  # forked by the server
    assert seen["xgboost"]  # preloaded: the step process did not import it itself
    assert seen["omp"] == "1"



def test_step_preload_when_imported_then_kernels_warm_and_no_thread_started():
    # The forkserver forks every step after this import: a Python thread started here would be
    # lost in the children (and could hold a lock they need), so none may exist afterwards.
    code = (
        "import threading, orchestration.step_preload as m\n"
        "from ml import _kernels\n"
        "fns = [f for f in vars(_kernels).values() if hasattr(f, 'overloads')]\n"
        "loaded = sum(len(f.overloads) for f in fns)\n"
        "print(threading.active_count(), loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip

    threads, loaded = (int(v) for v in done.stdout.split())
    assert threads == 1
    assert loaded > 0  # the feature kernels were loaded (from numba's cache) before any fork
    assert "not warmed" not in done.stderr
