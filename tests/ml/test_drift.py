"""PSI, KS, drift reports, live hit rate and the retrain decision."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.drift import (
    DriftConfig,
    DriftReport,
    HitRate,
    effective_size,
    evaluate,
    feature_drift,
    ks,
    live_hit_rate,
    prediction_drift,
    psi,
)
from ml.errors import ConfigError
from ml.pipeline import ResearchConfig, research_labels
from tests.ml.conftest import synthetic_bars


def _iid(n: int, seed: int, loc: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc, scale, n)


def test_psi_when_samples_identical_then_zero():
    x = _iid(2000, 0)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-12)


def test_psi_when_same_distribution_then_small():
    assert psi(_iid(5000, 0), _iid(1000, 1)) < 0.05


def test_psi_when_mean_shifted_one_sd_then_above_threshold():
    assert psi(_iid(5000, 0), _iid(1000, 1, loc=1.0)) > 0.25


def test_psi_when_actual_beyond_reference_range_then_large_and_finite():
    value = psi(_iid(1000, 0), _iid(500, 1, loc=100.0))
    assert np.isfinite(value)
    assert value > 5.0


def test_ks_when_shifted_then_significant_and_when_same_then_not():
    stat_same, p_same = ks(_iid(1000, 0), _iid(1000, 1))
    stat_shift, p_shift = ks(_iid(1000, 0), _iid(1000, 1, loc=0.5))
    assert p_same > 0.01
    assert p_shift < 1e-6
    assert stat_shift > stat_same


def test_effective_size_when_autocorrelated_then_smaller_than_n():
    iid = _iid(1000, 0)
    walk = np.cumsum(iid)
    assert effective_size(iid) == pytest.approx(1000, rel=0.1)
    assert effective_size(walk) < 20


def test_feature_drift_when_one_column_shifted_then_only_it_drifted():
    ref = pd.DataFrame({"a": _iid(1000, 0), "b": _iid(1000, 1)})
    live = pd.DataFrame({"a": _iid(300, 2), "b": _iid(300, 3, loc=2.0)})
    report = feature_drift(ref, live, ["a", "b"])
    assert report.drifted == ("b",)
    assert report.drifted_share == pytest.approx(0.5)


def test_feature_drift_when_slow_series_wanders_then_adjusted_ks_not_significant():
    # A random walk's window looks shifted by PSI, but it carries few independent observations.
    walk = np.cumsum(_iid(1300, 4)) * 0.05
    ref, live = pd.DataFrame({"a": walk[:1000]}), pd.DataFrame({"a": walk[1000:]})
    report = feature_drift(ref, live, ["a"])
    assert report.columns[0].psi > 0.25
    assert not report.columns[0].drifted


def test_prediction_drift_when_p_up_and_p_down_swapped_then_both_drifted():
    rng = np.random.default_rng(5)
    up = rng.uniform(0.5, 0.7, 500)
    down = rng.uniform(0.1, 0.3, 500)
    ref = pd.DataFrame({"p_down": down, "p_flat": 1 - up - down, "p_up": up})
    live = ref.rename(columns={"p_up": "p_down", "p_down": "p_up"}).iloc[:200]
    assert set(prediction_drift(ref, live).drifted) == {"p_up", "p_down"}


def _preds_for(labels: pd.Series) -> pd.DataFrame:
    proba = np.full((len(labels), 3), 0.1)
    proba[np.arange(len(labels)), labels.fillna(0).astype(int).to_numpy() + 1] = 0.8
    return pd.DataFrame(proba, index=labels.index, columns=["p_down", "p_flat", "p_up"])


def test_live_hit_rate_when_predictions_equal_labels_then_one_and_shifted_then_lower():
    bars = synthetic_bars(400, seed=7)
    labels = research_labels(bars, ResearchConfig()).values.iloc[50:]
    perfect = live_hit_rate(_preds_for(labels), bars)
    wrong = live_hit_rate(_preds_for(-labels), bars)
    assert perfect.hit_rate == pytest.approx(1.0)
    assert perfect.n == int(labels.notna().sum())
    assert wrong.hit_rate < 0.5


def _report(share_drifted: float, n_live: int = 300, n_cols: int = 10) -> DriftReport:
    ref = pd.DataFrame({f"c{i}": _iid(1000, i) for i in range(n_cols)})
    k = round(share_drifted * n_cols)
    live = pd.DataFrame(
        {f"c{i}": _iid(n_live, 100 + i, loc=3.0 if i < k else 0.0) for i in range(n_cols)}
    )
    return feature_drift(ref, live, list(ref.columns))


@pytest.mark.parametrize(("share", "retrain"), [(0.2, False), (0.3, True)])
def test_evaluate_when_drifted_share_at_or_above_threshold_then_decides(share, retrain):
    decision = evaluate(_report(share), None, HitRate(0.5, 300), 0.5)
    assert decision.retrain is retrain
    if retrain:
        assert "feature drift" in decision.reasons[0]
        assert "c0" in decision.reasons[0]


@pytest.mark.parametrize(("hit", "retrain"), [(0.451, False), (0.449, True)])
def test_evaluate_when_hit_rate_around_floor_then_decides(hit, retrain):
    decision = evaluate(_report(0.0), None, HitRate(hit, 300), 0.5)
    assert decision.retrain is retrain
    assert decision.reasons[0].startswith("hit rate") is retrain


def test_evaluate_when_too_few_live_rows_then_no_retrain():
    decision = evaluate(_report(1.0, n_live=50), None, HitRate(0.0, 50), 0.5)
    assert not decision.retrain
    assert "min_live" in decision.reasons[0]


def test_evaluate_when_prediction_drift_then_retrains_only_if_enabled():
    ref = pd.DataFrame({"p_up": _iid(1000, 0), "p_down": _iid(1000, 1)})
    live = pd.DataFrame({"p_up": _iid(300, 2, loc=3.0), "p_down": _iid(300, 3)})
    preds = prediction_drift(ref, live)
    off = evaluate(_report(0.0), preds, HitRate(0.5, 300), 0.5)
    on = evaluate(
        _report(0.0), preds, HitRate(0.5, 300), 0.5, DriftConfig(prediction_drift_triggers=True)
    )
    assert not off.retrain
    assert any("reported only" in r for r in off.reasons)
    assert on.retrain
    assert "prediction drift" in on.reasons[0]


@pytest.mark.parametrize(
    "kwargs",
    [{"psi_threshold": 0}, {"ks_pvalue": 1.5}, {"min_live": 0}, {"max_drifted_share": 1.0},
     {"cooldown_s": -1}, {"psi_bins": 1}],
)
def test_drift_config_when_out_of_range_then_config_error(kwargs):
    with pytest.raises(ConfigError):
        DriftConfig(**kwargs)


def test_drift_config_when_unknown_key_then_config_error():
    with pytest.raises(ConfigError, match="unknown DriftConfig keys"):
        DriftConfig.from_mapping({"psi": 0.1})
