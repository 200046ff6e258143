from __future__ import annotations

import math

import pytest

from execution.config import CostModel
from execution.costs import EwmaVol, commission, market_fill_price, volume_cap


def test_market_fill_price_when_buy_and_sell_then_half_spread_plus_slippage_adverse() -> None:
    costs = CostModel(spread_bps=10.0, slippage_bps=2.0)

    assert market_fill_price(1, 100.0, costs, None) == pytest.approx(100.0 * (1 + 7e-4))
    assert market_fill_price(-1, 100.0, costs, None) == pytest.approx(100.0 * (1 - 7e-4))


def test_market_fill_price_when_vol_scaled_then_adds_mult_times_vol() -> None:
    costs = CostModel(spread_bps=0.0, slippage_bps=0.0, slippage_vol_mult=0.5)

    assert market_fill_price(1, 100.0, costs, 0.02) == pytest.approx(101.0)


def test_commission_when_small_notional_then_minimum_applies() -> None:
    costs = CostModel(commission_bps=10.0, commission_min=1.0)

    assert commission(500.0, costs) == 1.0
    assert commission(10_000.0, costs) == pytest.approx(10.0)


def test_volume_cap_when_zero_volume_or_no_share_then_uncapped() -> None:
    assert volume_cap(0.0, 0.1) == math.inf
    assert volume_cap(1000.0, None) == math.inf
    assert volume_cap(1000.0, 0.0) == math.inf
    assert volume_cap(1000.0, 0.1) == pytest.approx(100.0)


def test_ewma_vol_when_fewer_returns_than_window_then_none() -> None:
    vol = EwmaVol(window=3)
    for close in (100.0, 101.0, 100.0):
        vol.update(close)
    assert vol.value is None
    vol.update(101.0)
    assert vol.value is not None
    assert vol.value > 0
