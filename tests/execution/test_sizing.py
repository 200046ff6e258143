from __future__ import annotations

import pytest

from execution.config import SizingConfig
from execution.sizing import kelly_fraction, target_quantity

COMMON = {"equity": 100_000.0, "price": 50.0, "p_win": 0.6, "p_loss": 0.2, "periods_per_year": 252}


def test_fixed_fractional_when_stop_distance_given_then_risk_over_distance() -> None:
    qty = target_quantity(SizingConfig(risk_per_trade=0.01), stop_distance=2.0, vol=None, **COMMON)

    assert qty == pytest.approx(500.0)  # 1000 at risk / 2 per unit; notional 25k < 100k


def test_fixed_fractional_when_capped_by_leverage_then_notional_at_most_equity() -> None:
    qty = target_quantity(SizingConfig(risk_per_trade=0.05), stop_distance=0.01, vol=None, **COMMON)

    assert qty * 50.0 == pytest.approx(100_000.0)


def test_vol_target_when_vol_known_then_notional_scales_inverse_to_vol() -> None:
    cfg = SizingConfig(method="vol_target", target_vol=0.1, max_leverage=10.0)

    qty = target_quantity(cfg, stop_distance=None, vol=0.01, **COMMON)

    assert qty * 50.0 == pytest.approx(100_000.0 * 0.1 / (0.01 * 252**0.5))


def test_vol_target_when_vol_unknown_then_zero() -> None:
    cfg = SizingConfig(method="vol_target")
    assert target_quantity(cfg, stop_distance=None, vol=None, **COMMON) == 0.0


def test_kelly_when_edge_then_fraction_of_kelly_capped() -> None:
    assert kelly_fraction(0.6, 0.2) == pytest.approx(0.5)
    assert kelly_fraction(0.2, 0.6) == 0.0
    cfg = SizingConfig(method="kelly", kelly_fraction=0.5, kelly_cap=0.2)

    qty = target_quantity(cfg, stop_distance=None, vol=None, **COMMON)

    assert qty * 50.0 == pytest.approx(100_000.0 * 0.2)  # 0.25 of equity, capped at 0.2
