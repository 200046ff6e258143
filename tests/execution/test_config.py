from __future__ import annotations

import pytest

from execution.config import (
    CostModel,
    ExecutionConfigError,
    RiskLimits,
    SizingConfig,
    StopConfig,
    StrategyConfig,
)


def test_from_dict_when_round_tripped_then_equal() -> None:
    config = StrategyConfig(
        strategy="s1",
        stops=StopConfig(kind="atr", take_profit_mult=2.0),
        sizing=SizingConfig(method="kelly"),
        costs=CostModel(max_volume_share=None),
    )

    assert StrategyConfig.from_dict(config.to_dict()) == config


def test_from_dict_when_unknown_key_then_error_names_it() -> None:
    with pytest.raises(ExecutionConfigError, match="bogus"):
        StrategyConfig.from_dict({"bogus": 1})


def test_from_dict_when_unknown_nested_key_then_error_names_it() -> None:
    with pytest.raises(ExecutionConfigError, match="stop_percent"):
        StrategyConfig.from_dict({"stops": {"stop_percent": 0.1}})


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (SizingConfig, {"method": "martingale"}),
        (StopConfig, {"kind": "magic"}),
        (CostModel, {"commission_bps": -1.0}),
        (CostModel, {"max_volume_share": 1.5}),
        (RiskLimits, {"drawdown_derisk_start": 0.3, "max_drawdown_halt": 0.2}),
        (StrategyConfig, {"fill": "same_close"}),
        (StrategyConfig, {"initial_cash": 0.0}),
    ],
)
def test_construct_when_value_invalid_then_raises(cls: type, kwargs: dict) -> None:
    with pytest.raises(ExecutionConfigError):
        cls(**kwargs)
