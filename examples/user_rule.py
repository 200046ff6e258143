"""A user strategy rule: long-only, holding a long until down becomes the likelier move.

Reference it from candleflow.toml; no candleflow code changes:

```toml
[strategy]
rule = "examples.user_rule:long_only_hold"
```

A rule is a function `(prediction, config, context) -> int`: `prediction` holds the model's
p_down, p_flat, p_up for the bar just closed, `config` is the `[strategy.decision]` section
(execution.config.DecisionConfig), `context` an execution.decision.DecisionContext with the
closed `bar` and the `direction` currently held (-1, 0, +1). It returns the target direction
-1, 0 or +1; sizing, stops and the risk limits then apply as for the built-in rule
(`execution.decision:builtin_rule`, the default), in the backtest and in the live worker alike.
"""

from __future__ import annotations

from execution.config import DecisionConfig
from execution.decision import DecisionContext
from execution.signal import Prediction

__all__ = ["long_only_hold"]


def long_only_hold(
    prediction: Prediction, config: DecisionConfig, context: DecisionContext
) -> int:
    """Enter long when up is the most likely class with at least `min_confidence`; once long,
    stay long while up is at least as likely as down. Never short."""
    if context.direction > 0:
        return 1 if prediction.p_up >= prediction.p_down else 0
    top = max(prediction.p_down, prediction.p_flat)
    return 1 if prediction.p_up > top and prediction.p_up >= config.min_confidence else 0
