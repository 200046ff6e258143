"""The decision: a prediction becomes a target direction, nothing else.

A decision rule is any callable `rule(prediction, config, context) -> int` returning the target
direction in {-1, 0, +1} (short, flat, long); sizing, stops and risk then turn it into orders.
`StrategyConfig.rule` names the rule by import path ("module:function"); "" is the built-in
`builtin_rule`, which is `decide`. The engine (`execution.engine.on_bar`) asks `apply_rule` at
every bar close, in the backtest loop and in the live dataflow alike. The compiled backtest path
(`execution._fast`) runs the built-in rule only: a user rule routes the backtest to the reference
loop (`execution.backtest.run_backtest`), which runs the live plane's engine step.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

from execution.config import DecisionConfig, ExecutionConfigError
from execution.signal import Bar, Prediction

__all__ = [
    "BUILTIN_RULE",
    "DecisionContext",
    "Rule",
    "apply_rule",
    "builtin_rule",
    "decide",
    "decide_direction",
    "is_builtin_rule",
    "resolve_rule",
]

BUILTIN_RULE = "execution.decision:builtin_rule"  # what StrategyConfig.rule = "" means


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """What a rule may read beside the prediction, at the close of `bar`."""

    bar: Bar  # the closed bar the prediction was made from (same symbol and ts)
    direction: int  # the direction currently committed for the symbol: -1, 0 or +1


Rule = Callable[[Prediction, DecisionConfig, DecisionContext], int]


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


def builtin_rule(prediction: Prediction, config: DecisionConfig, context: DecisionContext) -> int:
    """The default rule (`StrategyConfig.rule = ""`): `decide`; the context is not read."""
    return decide(prediction, config)


@functools.lru_cache(maxsize=32)
def resolve_rule(ref: str) -> Rule:
    """The rule named by `ref` ("module:function"; "" = the built-in); ExecutionConfigError
    names what is wrong (not an import path, not importable, no such attribute, not callable)."""
    if not ref or ref == BUILTIN_RULE:
        return builtin_rule
    from ml.errors import ConfigError
    from ml.models import resolve_ref  # the one import-path resolver (models, features, rules)

    try:
        obj = resolve_ref(ref)
    except ConfigError as exc:
        msg = f"rule {ref!r}: {exc}"
        raise ExecutionConfigError(msg) from exc
    if not callable(obj):
        msg = f"rule {ref!r} is not callable: a rule is (prediction, config, context) -> int"
        raise ExecutionConfigError(msg)
    return obj  # type: ignore[return-value]


def is_builtin_rule(ref: str) -> bool:
    """True when `ref` names the built-in rule (the compiled backtest path runs only that)."""
    return resolve_rule(ref) is builtin_rule


def apply_rule(
    rule: Rule, prediction: Prediction, config: DecisionConfig, context: DecisionContext
) -> int:
    """Ask `rule` for the target direction and check it: -1, 0 or +1 (a number equal to one of
    them is accepted); -1 becomes flat when `config.allow_short` is False, for every rule."""
    out = rule(prediction, config, context)
    ok = isinstance(out, numbers.Real) and not isinstance(out, bool) and math.isfinite(out)
    if not ok or out not in (-1, 0, 1):
        name = getattr(rule, "__qualname__", repr(rule))
        msg = f"rule {name} returned {out!r}; a rule returns the target direction -1, 0 or +1"
        raise ExecutionConfigError(msg)
    direction = int(out)
    if direction < 0 and not config.allow_short:
        return 0
    return direction
