"""The decision function: a prediction becomes a target direction, nothing else."""

from __future__ import annotations

from execution.config import DecisionConfig
from execution.signal import Prediction

__all__ = ["decide", "decide_direction"]


def decide_direction(
    p_down: float,
    p_flat: float,
    p_up: float,
    min_confidence: float,
    abstain_margin: float,
    allow_short: bool,
) -> int:
    """The decision rule on scalars; `decide` is its front (the compiled path runs this too)."""
    if abs(p_up - p_down) <= abstain_margin and abstain_margin > 0.0:
        return 0
    if p_up > p_down and p_up > p_flat and p_up >= min_confidence:
        return 1
    if p_down > p_up and p_down > p_flat and p_down >= min_confidence:
        return -1 if allow_short else 0
    return 0


def decide(prediction: Prediction, config: DecisionConfig) -> int:
    """Target direction in {-1, 0, +1} for a prediction; pure.

    The class with the highest probability wins if it reaches `min_confidence` and up and down
    differ by more than `abstain_margin`; a tie for the top, a flat call, a down call with
    shorting disabled, or too little confidence all mean flat (0).
    """
    return decide_direction(
        prediction.p_down,
        prediction.p_flat,
        prediction.p_up,
        config.min_confidence,
        config.abstain_margin,
        config.allow_short,
    )
