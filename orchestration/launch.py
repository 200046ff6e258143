"""Run a job in this process as a run of the code location the UI serves.

`JobDefinition.execute_in_process` records a run without a code-location origin: the Dagster UI
lists it, but its Overview timeline skips it and the job's own runs tab filters it out (both key
on the run's repository). The runs made here carry the origin of `dagster dev -m
orchestration.definitions` (repository `__repository__`, location `orchestration.definitions`),
so they show wherever a run launched from the UI shows, while still executing in process (no
run-launcher subprocess, no multiprocess executor).

`execute_research_runs` is the other way, for several series at once: each series a run of the
`research` job by Dagster's own `dagster job execute`, in its own process, on the job's executor
(multiprocess: each step its own process), `max_concurrent_runs` at a time. Those processes
rebuild the code location from the environment, which `export_for_step_processes` points at
this home and config, with the thread limits of `thread_limits` (the CPU budget shared by the
step processes that run at once).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from infra.config import CONFIG_ENV_VAR, CandleflowConfig, ExecutorSection
from infra.settings import Settings

__all__ = [
    "CODE_LOCATION",
    "REPOSITORY",
    "execute_as_location_run",
    "execute_research_runs",
    "export_for_step_processes",
    "research_job",
    "thread_limits",
]

CODE_LOCATION = "orchestration.definitions"  # the location name `dagster dev -m` gives it
REPOSITORY = "__repository__"  # the repository name of a Definitions object


def _origin(job_name: str) -> Any:
    from dagster._core.remote_origin import (
        ManagedGrpcPythonEnvCodeLocationOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    target = LoadableTargetOrigin(
        executable_path=sys.executable, module_name=CODE_LOCATION, working_directory=os.getcwd()
    )
    location = ManagedGrpcPythonEnvCodeLocationOrigin(
        loadable_target_origin=target, location_name=CODE_LOCATION
    )
    return RemoteRepositoryOrigin(location, REPOSITORY).get_job_origin(job_name)


def execute_as_location_run(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    *,
    partition_key: str | None = None,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> Any:
    """Execute `job` in process as a run attributed to the code location; returns Dagster's
    execution result (`success`, `run_id`, `all_events`), failures reported, not raised."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.execution.api import execute_run
    from dagster._core.execution.execute_in_process import merge_run_tags

    # What execute_in_process does (in-process executor, partition tags), plus the origin.
    ephemeral = job.as_ephemeral_job(resource_defs={}, input_values={})
    config = dict(run_config or {})
    run = instance.create_run_for_job(
        job_def=ephemeral,
        run_config=config,
        tags=merge_run_tags(
            job_def=job,
            partition_key=partition_key,
            tags=dict(tags) if tags else None,
            asset_selection=None,
            instance=instance,
            run_config=config,
        ),
        remote_job_origin=_origin(job.name),
    )
    return execute_run(InMemoryJob(ephemeral), run, instance, raise_on_error=False)


def research_job() -> dg.JobDefinition:
    """The research job of the code location (what `dagster job execute -j research` runs)."""
    from orchestration.definitions import RESEARCH_JOB, defs

    return defs.resolve_job_def(RESEARCH_JOB)


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def thread_limits(section: ExecutorSection, cpus: int | None = None) -> dict[str, str]:
    """Native threads per step process: the CPUs over the steps that run at once (runs at once
    times steps per run, a run's steps being one per CPU unless `max_concurrent` says), at least
    one, so concurrent steps do not oversubscribe the cores with OpenMP and BLAS pools."""
    cpus = cpus or os.cpu_count() or 1
    per_run = (section.max_concurrent or cpus) if section.kind == "multiprocess" else 1
    steps = section.max_concurrent_runs * per_run
    return dict.fromkeys(_THREAD_VARS, str(max(1, cpus // steps)))


def export_for_step_processes(settings: Settings, config: CandleflowConfig) -> None:
    """Point the environment the run and step processes inherit at this home and this config,
    and limit their threads (`thread_limits`; a limit already in the environment is kept)."""
    for var, value in thread_limits(config.executor).items():
        os.environ.setdefault(var, value)
    os.environ["CANDLEFLOW_HOME"] = str(settings.home)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    if config.path is not None:
        os.environ[CONFIG_ENV_VAR] = str(config.path)
    else:  # built in code (or defaults): hand the resolved config over as a file
        resolved = resolved_path(settings)
        resolved.parent.mkdir(parents=True, exist_ok=True)
        resolved.write_text(config.to_json())
        os.environ[CONFIG_ENV_VAR] = str(resolved)


_LAUNCH_TAG = "candleflow/launch_id"


class LaunchedRun:
    """What `on_done` gets: the run's success, id and events, read back from the instance."""

    def __init__(self, instance: dg.DagsterInstance, run: Any | None, log: Path) -> None:
        self.log = log
        self.run_id = run.run_id if run is not None else "?"
        self.success = run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        records = instance.all_logs(run.run_id) if run is not None else []
        self.all_events = [r.dagster_event for r in records if r.dagster_event is not None]


def execute_research_runs(
    keys: Sequence[str],
    instance: dg.DagsterInstance,
    *,
    max_concurrent_runs: int,
    tags: Mapping[str, str],
    run_config: Mapping[str, Any],
    on_done: Callable[[str, Any], None],
) -> None:
    """One research run per series key, each `dagster job execute` in its own process (the
    job's executor runs its steps), `max_concurrent_runs` at a time; `on_done(key, run)` as
    each ends. A run's console output goes to $DAGSTER_HOME/launch/<run key>.log."""
    import json
    import subprocess
    import time
    import uuid

    folder = Path(instance.root_directory) / "launch"
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "run_config.json"  # YAML reads JSON
    config_file.write_text(json.dumps(dict(run_config)))
    dagster = str(Path(sys.executable).parent / "dagster")
    pending = list(keys)
    running: dict[str, tuple[Any, str, Path]] = {}
    while pending or running:
        while pending and len(running) < max_concurrent_runs:
            key = pending.pop(0)
            launch_id = uuid.uuid4().hex
            log = folder / f"{key.replace('@', '_')}-{launch_id[:8]}.log"
            run_tags = {**tags, "dagster/partition": key, _LAUNCH_TAG: launch_id}
            with log.open("w") as out:
                proc = subprocess.Popen(  # noqa: S603 - dagster's own CLI, our arguments
                    [dagster, "job", "execute", "-m", CODE_LOCATION, "-j", "research",
                     "--tags", json.dumps(run_tags), "-c", str(config_file)],
                    stdout=out, stderr=subprocess.STDOUT,
                )
            running[key] = (proc, launch_id, log)
        for key, (proc, launch_id, log) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[key]
            found = instance.get_runs(dg.RunsFilter(tags={_LAUNCH_TAG: launch_id}), limit=1)
            on_done(key, LaunchedRun(instance, found[0] if found else None, log))
        time.sleep(0.5)


def resolved_path(settings: Settings) -> Path:
    """Where a config built in code is written for the run processes (JSON, every default)."""
    return settings.dagster_home / "candleflow.resolved.json"


def research_run_times(dagster_home: Path) -> dict[str, float]:
    """The research runs recorded in the instance at `dagster_home`: how many, how many
    succeeded, the first start and the last end (Unix seconds) and the sum of their durations,
    as Dagster recorded them."""
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    from orchestration.jobs import RESEARCH_JOB

    records = instance.get_run_records(dg.RunsFilter(job_name=RESEARCH_JOB))
    timed = [r for r in records if r.start_time is not None and r.end_time is not None]
    ok = [r for r in records if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS]
    return {
        "runs": len(records), "succeeded": len(ok),
        "first_start": min((r.start_time for r in timed), default=float("nan")),
        "last_end": max((r.end_time for r in timed), default=float("nan")),
        "runs_s_sum": sum(r.end_time - r.start_time for r in timed),
    }  # fmt: skip
