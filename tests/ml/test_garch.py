"""GARCH(1,1): fitted on training rows only, filtered forward causally."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from arch import arch_model

from ml.errors import ModelError, NotFittedError
from ml.garch import GarchVolForecaster, garch_volatility


@pytest.fixture(scope="module")
def returns(spx) -> pd.Series:
    close = spx.set_index("ts")["close"]
    return np.log(close).diff().rename("r")


def test_garch_volatility_when_later_returns_change_then_vol_up_to_t_unchanged(returns):
    # Arrange
    train_end = 1500
    t = 2500
    shocked = returns.copy()
    shocked.iloc[t + 1 :] *= 4.0
    # Act
    base = garch_volatility(returns.iloc[:3000], train_end)
    changed = garch_volatility(shocked.iloc[:3000], train_end)
    truncated = garch_volatility(returns.iloc[: t + 1], train_end)
    # Assert
    pd.testing.assert_series_equal(changed.iloc[: t + 1], base.iloc[: t + 1], check_exact=True)
    pd.testing.assert_series_equal(truncated, base.iloc[: t + 1], check_exact=True)
    assert not np.allclose(changed.iloc[t + 2 :], base.iloc[t + 2 :])


def test_garch_volatility_when_data_after_train_end_changes_then_parameters_unchanged(returns):
    # Arrange
    shocked = returns.copy()
    shocked.iloc[1001:] *= 3.0
    # Act
    a = GarchVolForecaster().fit(returns.iloc[:1001])
    b = GarchVolForecaster().fit(shocked.iloc[:1001])
    # Assert
    assert a.params_ == b.params_


def test_garch_filter_when_in_sample_then_equals_arch_one_step_ahead_vol(returns):
    # Arrange
    train = returns.iloc[1:1201]
    model = GarchVolForecaster().fit(train)
    scale = 1.0 / train.std(ddof=0)
    res = arch_model(
        train.to_numpy() * scale, mean="Constant", vol="GARCH", p=1, q=1, rescale=False
    ).fit(disp="off")
    # Act
    mine = model.filter(train).to_numpy()
    # Assert: row t holds the forecast for t + 1, which arch reports at row t + 1.
    np.testing.assert_allclose(mine[:-1], res.conditional_volatility[1:] / scale, rtol=1e-9)


def test_garch_volatility_when_train_end_is_timestamp_then_same_as_position(returns):
    # Arrange
    data = returns.iloc[:1600]
    # Act
    by_pos = garch_volatility(data, 1199)
    by_ts = garch_volatility(data, data.index[1199])
    # Assert
    pd.testing.assert_series_equal(by_pos, by_ts)
    assert np.isnan(by_pos.iloc[0])  # the first return is undefined
    assert (by_pos.iloc[1:] > 0).all()


def test_garch_forecaster_when_saved_and_loaded_then_identical_filter(returns, tmp_path):
    model = GarchVolForecaster().fit(returns.iloc[:1000])
    model.save(tmp_path / "garch.json")
    loaded = GarchVolForecaster.load(tmp_path / "garch.json")
    pd.testing.assert_series_equal(loaded.filter(returns), model.filter(returns), check_exact=True)


def test_garch_forecaster_when_too_few_returns_then_model_error(returns):
    with pytest.raises(ModelError, match="needs >= 100"):
        GarchVolForecaster().fit(returns.iloc[:50])


def test_garch_forecaster_when_filter_before_fit_then_not_fitted(returns):
    with pytest.raises(NotFittedError):
        GarchVolForecaster().filter(returns)
