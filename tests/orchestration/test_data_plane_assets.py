"""The data-plane assets through real Dagster materializations on the embedded store."""

from __future__ import annotations

import dagster as dg

from assets import data_plane
from infra.series import SeriesRegistry, SeriesSpec
from infra.settings import Settings
from infra.stores import open_store
from orchestration.definitions import build_resources


def _materialize(settings: Settings, instance: dg.DagsterInstance, key: str):
    return dg.materialize(
        [data_plane.raw_bars, data_plane.validated_bars],
        partition_key=key,
        resources=build_resources(settings),
        instance=instance,
        raise_on_error=False,
    )


def test_validated_bars_when_materialized_twice_then_checks_pass_and_nothing_duplicates(tmp_path):
    settings = Settings(home=tmp_path)
    spec = SeriesSpec("SPX", "1d", "bundled", "equity", {"dataset": "sp500"})
    SeriesRegistry(tmp_path / "series.json").put(spec)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("series", [spec.key])

    first = _materialize(settings, instance, spec.key)
    second = _materialize(settings, instance, spec.key)

    assert first.success and second.success
    checks = {e.check_name: e.passed for e in first.get_asset_check_evaluations()}
    assert checks["bar_contract_suite"] and checks["row_accounting"]
    for evaluation in first.get_asset_check_evaluations():
        assert evaluation.description.startswith(f"{spec.key}: "), evaluation.check_name
        assert evaluation.metadata["series"].value == spec.key
    gaps = next(e for e in first.get_asset_check_evaluations() if e.check_name == "calendar_gaps")
    assert gaps.passed and gaps.description == "SPX@1d: 0 gaps, 0 missing bars"  # NYSE holidays
    meta = next(m.metadata for m in first.asset_materializations_for_node("validated_bars"))
    meta2 = next(m.metadata for m in second.asset_materializations_for_node("validated_bars"))
    assert meta["rows_in"].value == meta["accepted"].value + meta["quarantined"].value
    assert meta["written"].value == meta["accepted"].value == 5031
    assert meta2["written"].value == 0
    with open_store("parquet", data_dir=settings.data_dir) as store:
        assert store.count_bars("SPX", "1d") == 5031
