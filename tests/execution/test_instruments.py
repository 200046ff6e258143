from __future__ import annotations

import math

import pytest

from execution.config import ExecutionConfigError, InstrumentConfig, StrategyConfig
from execution.instruments import Instrument, InstrumentError, guess_asset_class, instrument_for


def test_instrument_for_when_fx_pair_then_lot_defaults_and_uncapped_volume() -> None:
    inst = instrument_for("EURUSD", StrategyConfig())

    assert inst.asset_class == "fx"
    assert (inst.contract_size, inst.quantity_step, inst.min_quantity) == (100_000, 1_000, 1_000)
    assert inst.max_volume_share is None  # tick volume says nothing about liquidity
    assert inst.quote_currency == "USD"


def test_instrument_for_when_not_fx_then_cost_model_volume_cap_and_no_limits() -> None:
    inst = instrument_for("SPX", StrategyConfig())

    assert inst.asset_class == "other"
    assert inst.max_volume_share == 0.1
    assert (inst.quantity_step, inst.min_quantity, inst.max_quantity) == (0.0, 0.0, math.inf)


def test_instrument_for_when_overrides_configured_then_they_win() -> None:
    config = StrategyConfig.from_dict(
        {"instruments": {"EURUSD": {"max_volume_share": 0.5, "max_quantity": 2e6}}}
    )

    inst = instrument_for("EURUSD", config)

    assert inst.max_volume_share == 0.5
    assert inst.max_quantity == 2e6
    assert StrategyConfig.from_dict(config.to_dict()) == config


def test_order_quantity_when_between_steps_then_rounded_down() -> None:
    inst = instrument_for("EURUSD", StrategyConfig())

    assert inst.order_quantity(45_999.9) == 45_000.0
    assert inst.order_quantity(0.3 * 10_000) == 3_000.0  # float noise does not lose a step


@pytest.mark.parametrize(
    ("units", "match"), [(999.0, "below the minimum"), (2e7, "above the maximum")]
)
def test_order_quantity_when_out_of_range_then_refused_with_reason(
    units: float, match: str
) -> None:
    inst = instrument_for("EURUSD", StrategyConfig())

    with pytest.raises(InstrumentError, match=match):
        inst.order_quantity(units)


def test_from_lots_when_mt5_style_spec_then_units_both_ways() -> None:
    inst = Instrument.from_lots(
        "EURUSD",
        "fx",
        contract_size=100_000,
        lot_step=0.01,
        min_lots=0.01,
        max_lots=50.0,
        price_tick=1e-5,
        quote_currency="USD",
    )

    assert inst.to_units(0.45) == pytest.approx(45_000.0)
    assert inst.to_lots(45_000.0) == pytest.approx(0.45)
    assert inst.max_quantity == pytest.approx(5_000_000.0)


def test_guess_asset_class_when_six_letters_but_not_currencies_then_other() -> None:
    assert guess_asset_class("GBPJPY") == "fx"
    assert guess_asset_class("GOOGLE") == "other"


def test_config_when_unknown_instrument_key_or_bad_value_then_refused() -> None:
    with pytest.raises(ExecutionConfigError, match="unknown InstrumentConfig keys: lots"):
        StrategyConfig.from_dict({"instruments": {"EURUSD": {"lots": 1}}})
    with pytest.raises(ExecutionConfigError, match="asset_class"):
        InstrumentConfig(asset_class="bonds")
    with pytest.raises(ExecutionConfigError, match="partial_fill"):
        StrategyConfig(partial_fill="sometimes")
