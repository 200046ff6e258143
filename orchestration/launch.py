"""Run a job in this process as a run of the code location the UI serves.

`JobDefinition.execute_in_process` records a run without a code-location origin: the Dagster UI
lists it, but its Overview timeline skips it and the job's own runs tab filters it out (both key
on the run's repository). The runs made here carry the origin of `dagster dev -m
orchestration.definitions` (repository `__repository__`, location `orchestration.definitions`),
so they show wherever a run launched from the UI shows, while still executing in process (no
run-launcher subprocess, no multiprocess executor).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import dagster as dg

__all__ = ["CODE_LOCATION", "REPOSITORY", "execute_as_location_run"]

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
