from __future__ import annotations

from datetime import UTC, datetime

import pytest

from execution.config import DecisionConfig
from execution.decision import decide
from execution.signal import Prediction

TS = datetime(2024, 1, 2, tzinfo=UTC)


def _p(down: float, flat: float, up: float) -> Prediction:
    return Prediction("X", TS, down, flat, up)


@pytest.mark.parametrize(
    ("probs", "config", "expected"),
    [
        ((0.1, 0.2, 0.7), DecisionConfig(), 1),
        ((0.7, 0.2, 0.1), DecisionConfig(), -1),
        ((0.7, 0.2, 0.1), DecisionConfig(allow_short=False), 0),
        ((0.2, 0.6, 0.2), DecisionConfig(), 0),
        ((0.3, 0.3, 0.4), DecisionConfig(min_confidence=0.5), 0),
        ((0.35, 0.2, 0.45), DecisionConfig(abstain_margin=0.2), 0),
        ((0.4, 0.2, 0.4), DecisionConfig(min_confidence=0.0), 0),
    ],
)
def test_decide_when_probabilities_given_then_direction(
    probs: tuple[float, float, float], config: DecisionConfig, expected: int
) -> None:
    assert decide(_p(*probs), config) == expected


def test_prediction_when_probabilities_do_not_sum_to_one_then_raises() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        _p(0.5, 0.5, 0.5)
