"""Runs executed in process still carry the code location's origin, as UI-launched runs do."""

import dagster as dg

from orchestration.launch import CODE_LOCATION, REPOSITORY, execute_as_location_run

PARTS = dg.StaticPartitionsDefinition(["a", "b"])


@dg.asset(partitions_def=PARTS)
def thing(context: dg.AssetExecutionContext) -> str:
    return context.partition_key


def _job() -> dg.JobDefinition:
    job = dg.define_asset_job("tiny", selection=[thing], partitions_def=PARTS)
    return dg.Definitions(assets=[thing], jobs=[job]).resolve_job_def("tiny")


def test_execute_as_location_run_when_partitioned_then_run_has_origin_and_partition():
    # Arrange
    label = f"{REPOSITORY}@{CODE_LOCATION}"
    with dg.instance_for_test() as instance:
        # Act
        result = execute_as_location_run(_job(), instance, partition_key="b")
        # Assert
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run.remote_job_origin.repository_origin.get_label() == label
        assert run.tags["dagster/partition"] == "b"
        by_repo = instance.get_run_records(dg.RunsFilter(tags={".dagster/repository": label}))
        assert [r.dagster_run.run_id for r in by_repo] == [result.run_id]
        mats = instance.fetch_materializations(dg.AssetKey("thing"), limit=5).records
        assert [m.partition_key for m in mats] == ["b"]


def test_execute_as_location_run_when_step_fails_then_reported_not_raised():
    @dg.asset
    def broken() -> None:
        msg = "boom"
        raise RuntimeError(msg)

    job = dg.Definitions(assets=[broken], jobs=[dg.define_asset_job("bad", [broken])])
    with dg.instance_for_test() as instance:
        result = execute_as_location_run(job.resolve_job_def("bad"), instance)
        assert not result.success
        assert any(e.is_step_failure for e in result.all_events)
