"""The user-model example runs as the README and its docstring say: referenced by import path,
through the same factory, walk-forward, deployable bundle and loader as the built-ins."""

from __future__ import annotations

import numpy as np
import pytest

from examples.user_model import LogisticModel
from infra.config import CandleflowConfig, ConfigFileError
from ml.bundle import load_bundle
from ml.errors import ConfigError
from ml.features import FeatureConfig, compute_features
from ml.models import Model, family_factory
from ml.pipeline import (
    ResearchConfig,
    fit_deployable_on,
    make_factory,
    research_folds,
    research_labels,
    run_family,
)
from tests.ml.conftest import synthetic_bars

REF = "examples.user_model:LogisticModel"


def test_user_model_when_referenced_by_path_then_built_like_a_builtin_family():
    cfg = CandleflowConfig.from_mapping({"research": {"models": ["xgboost", REF]}})

    model = make_factory(REF, cfg.research.recipe)({"c": 0.1})

    assert isinstance(model, LogisticModel) and isinstance(model, Model)
    assert model.params == {"c": 0.1}
    assert family_factory("xgboost") is not None  # built-ins resolve the same way


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("examples.user_model:Nope", "has no attribute"),
        ("examples.nope:LogisticModel", "cannot import"),
        ("forest", "unknown model families"),
    ],
)
def test_user_model_when_reference_is_wrong_then_config_load_fails_naming_it(ref, expected):
    with pytest.raises((ConfigFileError, ConfigError), match=expected):
        CandleflowConfig.from_mapping({"research": {"models": [ref]}})


def test_user_model_when_walk_forward_and_deployed_then_bundle_reloads_same_predictions(tmp_path):
    bars = synthetic_bars(900, seed=3)
    config = ResearchConfig(models=(REF,), baselines=(), n_folds=2)
    features = compute_features(bars, FeatureConfig())
    labels = research_labels(bars, config)

    result = run_family(REF, features, labels, research_folds(features, config), config)
    bundle = fit_deployable_on(features, labels.values, config, family=REF)
    bundle.save(tmp_path / "bundle")
    again = load_bundle(tmp_path / "bundle")

    probs = result.predictions[["p_down", "p_flat", "p_up"]].to_numpy()
    assert len(probs) > 100 and np.allclose(probs.sum(axis=1), 1.0)
    assert again.name == REF
    assert np.allclose(again.predict_frame(bars).to_numpy(), bundle.predict_frame(bars).to_numpy())
