"""The Dagster sensors that alert: failed runs (with their failed blocking checks), drift."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest

import infra.alerts
from infra.alerts import Notifier
from orchestration.automation import alert_on_drift_retrain, alert_on_run_failure


class Recorder(Notifier):
    def __init__(self) -> None:
        super().__init__([])
        self.calls: list[tuple[str, str]] = []

    def notify(self, event: str, text: str, **kw: Any) -> bool:
        self.calls.append((event, text))
        return True


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(infra.alerts, "_NOTIFIER", rec)
    return rec


@dg.asset
def prices() -> int:
    return 1


@dg.asset_check(asset=prices, blocking=True)
def no_negative_prices() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description="3 negative prices")


@dg.asset(deps=[prices])
def features() -> int:
    return 2


def test_run_failure_sensor_when_blocking_check_fails_then_alert_names_run_and_check(
    recorder,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [prices, features, no_negative_prices], instance=instance, raise_on_error=False
    )
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=run,
    ).for_run_failure()

    alert_on_run_failure(context)

    [(event, text)] = recorder.calls
    assert event == "run_failed"
    assert result.run_id[:8] in text and "failed checks: prices:no_negative_prices" in text


def test_drift_sensor_alert_when_retrain_run_from_drift_starts_then_alert_with_reasons(
    recorder,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    tags = {"candleflow.trigger": "drift", "candleflow.drift.model_version": "3",
            "candleflow.drift.reasons": "PSI 0.31 > 0.2 on rsi_14", "dagster/partition": "SPX@1d"}
    result = dg.materialize([prices], instance=instance, tags=tags)
    run = instance.get_run_by_id(result.run_id)
    start = next(e for e in result.all_events if e.event_type_value == "PIPELINE_START")
    context = dg.build_run_status_sensor_context(
        sensor_name="alert_on_drift_retrain",
        dagster_event=start,
        dagster_instance=instance,
        dagster_run=run,
    )

    alert_on_drift_retrain(context)

    [(event, text)] = recorder.calls
    assert event == "drift_retrain"
    assert "SPX@1d" in text and "v3" in text and "PSI 0.31" in text
