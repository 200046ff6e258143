"""Classification metrics over [down, flat, up] probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from ml.errors import MLError
from ml.metrics import (
    brier_multiclass,
    classification_metrics,
    predicted_class_counts,
    single_class_warning,
)


def test_metrics_when_predictions_perfect_then_accuracy_one_and_brier_zero():
    y = np.array([-1, 0, 1, 1])
    proba = np.eye(3)[[0, 1, 2, 2]]
    m = classification_metrics(y, proba)
    assert m["accuracy"] == 1.0
    assert m["f1_macro"] == 1.0
    assert m["brier"] == 0.0
    assert m["log_loss"] == pytest.approx(0.0, abs=1e-12)


def test_metrics_when_uniform_probabilities_then_log_loss_ln3_and_brier_two_thirds():
    y = np.array([-1, 0, 1])
    proba = np.full((3, 3), 1 / 3)
    m = classification_metrics(y, proba)
    assert m["log_loss"] == pytest.approx(np.log(3))
    assert m["brier"] == pytest.approx(2 / 3)


def test_metrics_when_mixed_then_macro_precision_recall_by_hand():
    # Arrange: truth down, down, up, flat; predicted down, up, up, up.
    y = np.array([-1, -1, 1, 0])
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.2, 0.6], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    # Act
    m = classification_metrics(y, proba)
    # Assert: precision down 1, flat 0, up 1/3; recall down 1/2, flat 0, up 1.
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["precision_macro"] == pytest.approx((1 + 0 + 1 / 3) / 3)
    assert m["recall_macro"] == pytest.approx((0.5 + 0 + 1) / 3)
    expected_brier = np.mean(np.sum((proba - np.eye(3)[[0, 0, 2, 1]]) ** 2, axis=1))
    assert brier_multiclass(y, proba) == pytest.approx(expected_brier)


def test_metrics_when_rows_do_not_sum_to_one_then_ml_error():
    with pytest.raises(MLError, match="sum to 1"):
        classification_metrics(np.array([0]), np.array([[0.5, 0.5, 0.5]]))


def test_single_class_warning_when_model_collapses_onto_one_class_then_flagged():
    # Arrange: 2 'up' calls in 2375 rows, like lstm on EURUSD 1h; and a mixed model
    collapsed = np.tile([0.2, 0.6, 0.2], (2375, 1))
    collapsed[:2] = [0.1, 0.3, 0.6]
    mixed = np.eye(3)[np.arange(300) % 3]
    # Act
    flagged = single_class_warning(collapsed)
    # Assert
    assert flagged is not None and "'flat' on 2373 of 2375" in flagged
    assert single_class_warning(mixed) is None
    assert predicted_class_counts(collapsed) == {-1: 0, 0: 2373, 1: 2}
