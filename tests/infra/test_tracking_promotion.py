"""Which family is deployed, and promotion that fails closed, against a real MLflow registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException

from infra.tracking import (
    ModelTracker,
    PromotionRule,
    RegistryError,
    TrackingConfig,
    choose_deployable,
)


@pytest.fixture
def tracker(tmp_path: Path) -> ModelTracker:
    return ModelTracker(
        TrackingConfig(
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=tmp_path / "art"
        )
    )


def _version(tracker: ModelTracker, tmp_path: Path, sharpe: float) -> str:
    model_dir = tmp_path / f"m{sharpe}"
    model_dir.mkdir()
    (model_dir / "w.json").write_text(json.dumps({"s": sharpe}))
    run_id = tracker.log_training(
        run_name="r", params={}, fold_metrics=[], summary_metrics={"oos_sharpe": sharpe},
        model_dir=model_dir, features=["f"], fingerprint="x",
    )
    return tracker.register("m", run_id)


def test_choose_when_auto_then_best_deflated_sharpe_among_families_with_enough_trades():
    scores = {"xgboost": (0.4, 30), "lstm": (0.9, 3), "mine": (0.6, 12)}

    family, reason = choose_deployable(scores, min_trades=10)

    assert family == "mine"
    assert "best deflated Sharpe with >= 10 OOS trades" in reason and "lstm 0.900/3" in reason


def test_choose_when_no_family_has_enough_trades_then_most_trades_and_says_so():
    family, reason = choose_deployable({"a": (0.9, 2), "b": (0.1, 5)}, min_trades=10)

    assert family == "b" and "no family has >= 10" in reason


def test_choose_when_config_names_a_family_then_that_one_and_unknown_refused():
    assert choose_deployable({"a": (0.9, 20), "b": (0.1, 20)}, min_trades=1, deploy="b")[0] == "b"
    with pytest.raises(ValueError, match="not a deployable family"):
        choose_deployable({"a": (0.9, 20)}, min_trades=1, deploy="xgboost_garch")


def test_promote_when_registry_errors_then_raises_and_never_crowns(tracker, tmp_path, monkeypatch):
    version = _version(tracker, tmp_path, 1.0)

    def broken(*_args, **_kwargs):
        raise MlflowException("database is locked", error_code="INTERNAL_ERROR")

    monkeypatch.setattr(tracker.client._inner, "get_model_version_by_alias", broken)
    with pytest.raises(RegistryError, match="database is locked"):
        tracker.promote("m", version, PromotionRule(), oos_trades=50)
    monkeypatch.undo()

    assert tracker.alias_version("m", "champion") is None


def test_promote_when_approval_required_then_challenger_waits_until_approved(tracker, tmp_path):
    version = _version(tracker, tmp_path, 1.0)

    decision = tracker.promote("m", version, PromotionRule(), oos_trades=50, require_approval=True)

    assert not decision.promoted and decision.reason.startswith("awaiting approval")
    assert tracker.alias_version("m", "champion") is None
    approved = tracker.approve("m")
    assert approved.promoted and str(tracker.alias_version("m", "champion").version) == version
