"""Direction and triple-barrier labels: dead zone, horizon, unlabelled tail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.errors import LabelError
from ml.labels import (
    CLASS_TO_INDEX,
    direction_labels,
    encode_classes,
    triple_barrier_labels,
)
from tests.ml.conftest import synthetic_bars


def _bars_from_closes(closes: list[float]) -> pd.DataFrame:
    close = np.asarray(closes, dtype=float)
    return pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=len(close), freq="1D", tz="UTC"),
            "open": close,
            "high": close * 1.0001,
            "low": close * 0.9999,
            "close": close,
            "volume": 1.0,
        }
    )


@pytest.mark.parametrize("horizon", [1, 3, 7])
def test_direction_labels_when_horizon_h_then_last_h_rows_unlabelled(horizon):
    # Arrange
    bars = synthetic_bars(200, seed=3)
    # Act
    labels = direction_labels(bars, horizon, k=0.5, vol_window=10)
    # Assert
    assert labels.horizon == horizon
    assert len(labels.values) == len(bars)  # nothing dropped
    assert labels.values.iloc[-horizon:].isna().all()
    assert labels.values.iloc[10:-horizon].notna().all()
    assert labels.values.iloc[:10].isna().all()  # volatility still warming up
    fwd = np.log(bars["close"].shift(-horizon) / bars["close"]).to_numpy()
    np.testing.assert_allclose(labels.forward_return.to_numpy(), fwd, rtol=1e-9, atol=1e-14)


def test_direction_labels_when_move_inside_dead_zone_then_flat_outside_then_signed():
    # Arrange: cost-only dead zone of 1% (k = 0).
    bars = _bars_from_closes([100, 100.5, 99.6, 101.0, 99.0, 99.0])
    # Act
    labels = direction_labels(bars, 1, k=0.0, round_trip_cost=0.01)
    # Assert: +0.5% flat, -0.9% flat, +1.4% up, -2% down, 0% flat, last unlabelled.
    assert labels.values.tolist()[:5] == [0.0, 0.0, 1.0, -1.0, 0.0]
    assert np.isnan(labels.values.iloc[-1])


def test_direction_labels_when_vol_term_exceeds_cost_then_threshold_is_k_vol():
    # Arrange
    bars = synthetic_bars(300, seed=9, vol=0.02)
    # Act
    labels = direction_labels(bars, 4, k=0.7, vol_window=20, round_trip_cost=1e-6)
    # Assert
    r = np.log(bars["close"]).diff()
    vol = r.rolling(20).std(ddof=0)
    expected = np.maximum(0.7 * vol * 2.0, 1e-6)
    np.testing.assert_allclose(labels.threshold.to_numpy(), expected.to_numpy(), rtol=1e-12)
    valid = labels.valid
    fwd = labels.forward_return[valid]
    thr = labels.threshold[valid]
    assert (labels.values[valid][fwd > thr] == 1).all()
    assert (labels.values[valid][fwd < -thr] == -1).all()
    assert (labels.values[valid][fwd.abs() <= thr] == 0).all()


def test_labels_when_encoded_then_down_flat_up_map_to_0_1_2():
    # Arrange
    bars = _bars_from_closes([100, 102, 100, 100, 103])
    labels = direction_labels(bars, 1, k=0.0, round_trip_cost=0.005)
    # Act
    encoded = labels.encoded()
    # Assert
    assert CLASS_TO_INDEX == {-1: 0, 0: 1, 1: 2}
    assert encoded.tolist() == [2, 0, 1, 2]
    assert encoded.index.equals(labels.values.index[:-1])


def test_encode_classes_when_unknown_value_then_label_error():
    with pytest.raises(LabelError, match="must be -1, 0 or"):
        encode_classes(np.array([0.0, 2.0]))


def test_direction_labels_when_horizon_invalid_then_label_error():
    with pytest.raises(LabelError, match="horizon"):
        direction_labels(synthetic_bars(30, seed=1), 0)


def test_triple_barrier_when_upper_touched_first_then_up_and_both_in_one_bar_then_down():
    # Arrange: vol window 2 gives a known vol; build paths by hand.
    close = [100, 101, 100, 100, 103, 103, 103, 103, 103, 103]
    bars = _bars_from_closes(close)
    # Act
    labels = triple_barrier_labels(bars, pt=1.0, sl=1.0, max_holding=3, vol_window=2)
    # Assert
    assert labels.horizon == 3
    assert labels.values.iloc[-3:].isna().all()
    vals = labels.values
    # Row 3 (close 100): the next bar jumps to 103, far past the upper barrier.
    assert vals.iloc[3] == 1.0
    # Row 6: the last two returns are 0, so vol is 0 and both barriers sit at the close; the next
    # bar's high and low touch both, and the conservative rule (stop first) gives -1.
    assert vals.iloc[6] == -1.0


def test_triple_barrier_when_no_barrier_touched_then_zero():
    # Arrange: tiny moves against wide barriers.
    bars = synthetic_bars(120, seed=2, vol=0.001)
    # Act
    labels = triple_barrier_labels(bars, pt=50.0, sl=50.0, max_holding=5, vol_window=10)
    # Assert
    valid = labels.values.dropna()
    assert len(valid) == 120 - 10 - 5
    assert (valid == 0).all()
