"""The Dagster executor the config file's `[executor]` section names, built from Dagster's own
executors: in-process, multiprocess (with a step concurrency limit), Kubernetes (dagster-k8s,
one pod per step) or Celery (dagster-celery, one task per step).

`executor_for(section)` returns an ExecutorDefinition for `dg.Definitions(executor=...)`. The
executor's config is checked against its schema here, when the definitions load, so a wrong key
fails `dagster definitions validate`, not a run.

The multiprocess executor starts its step processes from a forkserver that has imported
`PRELOAD_MODULES` once (unless the config names a `start_method`), warm kernels included
(orchestration.step_preload: a forked step of a 10k-bar run started in ~0.65 s before, ~0.15 s
after): Dagster's default, spawn,
makes every step a fresh interpreter that imports the code location again (about 5 s on two
busy cores; a research run has a dozen steps). The forkserver is a fresh interpreter too, so it
holds no Python threads: runs launched by `candleflow research` get the thread limits of
`orchestration.launch.thread_limits` before it starts, so no BLAS pool exists when it forks
(runs launched from the UI or the daemon inherit their process's environment instead).
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import dagster as dg

from infra.config import ConfigFileError, ExecutorSection

__all__ = ["PRELOAD_MODULES", "executor_for"]

# What every research step imports: the code location (dagster, pandas, the assets), the model
# library and the tracking client, then what the steps load after that (Dagster's instance
# storage, Great Expectations, MLflow's store, numba's kernels: orchestration.step_preload).
# torch is left out: only the lstm families use it, and it would add 180 MB to the forkserver
# of every run.
PRELOAD_MODULES = (
    "orchestration.definitions", "ml.pipeline", "xgboost", "mlflow", "orchestration.step_preload"
)


def executor_for(section: ExecutorSection) -> dg.ExecutorDefinition:
    config: dict[str, Any] = dict(section.config)
    if section.kind == "in_process":
        return _configured(dg.in_process_executor, config, section.kind)
    if section.kind == "multiprocess":
        if section.max_concurrent:
            config.setdefault("max_concurrent", section.max_concurrent)
        if "forkserver" in multiprocessing.get_all_start_methods():  # not on Windows
            config.setdefault("start_method", {"forkserver": {"preload_modules": [
                *PRELOAD_MODULES]}})
        return _configured(dg.multiprocess_executor, config, section.kind)
    if section.kind == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError:
            msg = "[executor] kind = k8s needs dagster-k8s: pip install 'candleflow[k8s]'"
            raise ConfigFileError(msg) from None
        if section.max_concurrent:
            config.setdefault("max_concurrent", section.max_concurrent)
        return _configured(k8s_job_executor, config, section.kind)
    if section.kind == "celery":
        try:
            from dagster_celery import celery_executor
        except ImportError:
            msg = "[executor] kind = celery needs dagster-celery: pip install 'candleflow[celery]'"
            raise ConfigFileError(msg) from None
        return _configured(celery_executor, config, section.kind)
    msg = f"[executor] kind {section.kind!r} has no executor"  # ExecutorSection refuses it first
    raise ConfigFileError(msg)


def _configured(
    executor: dg.ExecutorDefinition, config: dict[str, Any], kind: str
) -> dg.ExecutorDefinition:
    try:
        dg.validate_run_config(_probe_job(executor), {"execution": {"config": config}})
    except dg.DagsterInvalidConfigError as exc:
        reasons = "; ".join(e.message.split(" Expected:")[0] for e in exc.errors)
        allowed = ", ".join(sorted(executor.config_schema.config_type.fields))
        msg = f"[executor] {kind} config is not accepted by Dagster: {reasons} (allowed: {allowed})"
        raise ConfigFileError(msg) from None
    return executor.configured(config, name=f"candleflow_{kind}")


@dg.op
def _noop() -> None:
    """The one step of the job that checks an executor's config against its schema."""


def _probe_job(executor: dg.ExecutorDefinition) -> dg.JobDefinition:
    graph = dg.GraphDefinition(name="candleflow_executor_probe", node_defs=[_noop])
    return graph.to_job(executor_def=executor)
