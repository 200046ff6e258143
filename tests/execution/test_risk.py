from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execution.config import RiskLimits
from execution.domain import Side
from execution.risk import OrderIntent, PortfolioView, RiskGovernor, derisk_scale

LIMITS = RiskLimits(
    max_position_frac=0.5,
    max_gross_exposure=1.0,
    max_risk_per_trade=0.02,
    daily_loss_halt=0.05,
    max_drawdown_halt=0.25,
    drawdown_derisk_start=0.15,
    max_trades_per_day=5,
)
SYMBOLS = ("A", "B", "C")


def _view(**kw: object) -> PortfolioView:
    base = {
        "equity": 100_000.0,
        "peak_equity": 100_000.0,
        "day_start_equity": 100_000.0,
        "positions": {},
        "prices": {"A": 100.0, "B": 50.0, "C": 10.0},
        "trades_today": 0,
    }
    base.update(kw)
    return PortfolioView(**base)  # type: ignore[arg-type]


def test_check_when_within_limits_then_full_quantity() -> None:
    decision = RiskGovernor(LIMITS).check(OrderIntent("A", Side.BUY, 100.0, 100.0, 2.0), _view())

    assert decision == (100.0, "ok")


def test_check_when_position_limit_binds_then_reduced() -> None:
    qty, reason = RiskGovernor(LIMITS).check(OrderIntent("A", Side.BUY, 1000.0, 100.0), _view())

    assert qty == pytest.approx(500.0)
    assert reason == "max_position"


def test_check_when_daily_loss_halt_then_only_reduction_approved() -> None:
    view = _view(equity=94_000.0, positions={"A": 30.0})
    gov = RiskGovernor(LIMITS)

    assert gov.check(OrderIntent("A", Side.BUY, 10.0, 100.0), view).quantity == 0.0
    assert gov.check(OrderIntent("A", Side.SELL, 50.0, 100.0), view) == (30.0, "daily_loss_halt")
    assert gov.check(OrderIntent("A", Side.SELL, 20.0, 100.0), view) == (20.0, "reduce_only")


def test_check_when_operator_halt_then_only_reduction_approved() -> None:
    view = _view(positions={"A": 30.0}, halt="kill_switch")
    gov = RiskGovernor(LIMITS)

    assert gov.check(OrderIntent("B", Side.BUY, 10.0, 50.0), view) == (0.0, "kill_switch")
    assert gov.check(OrderIntent("A", Side.SELL, 50.0, 100.0), view) == (30.0, "kill_switch")
    assert gov.check(OrderIntent("A", Side.SELL, 20.0, 100.0), view) == (20.0, "reduce_only")


def test_derisk_scale_when_between_start_and_halt_then_linear() -> None:
    assert derisk_scale(LIMITS, 0.10) == 1.0
    assert derisk_scale(LIMITS, 0.20) == pytest.approx(0.5)
    assert derisk_scale(LIMITS, 0.25) == 0.0


def test_check_when_trades_per_day_exhausted_then_blocked() -> None:
    decision = RiskGovernor(LIMITS).check(
        OrderIntent("A", Side.BUY, 1.0, 100.0), _view(trades_today=5)
    )

    assert decision == (0.0, "max_trades_per_day")


qty_st = st.floats(min_value=-5_000.0, max_value=5_000.0, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(
    symbol=st.sampled_from(SYMBOLS),
    side=st.sampled_from(list(Side)),
    quantity=st.floats(min_value=1e-6, max_value=1e6),
    price=st.floats(min_value=0.5, max_value=500.0),
    stop=st.one_of(st.none(), st.floats(min_value=1e-3, max_value=50.0)),
    positions=st.fixed_dictionaries({s: qty_st for s in SYMBOLS}),
    equity=st.floats(min_value=-1e4, max_value=2e5),
    peak_gain=st.floats(min_value=0.0, max_value=1e5),
    day_start=st.floats(min_value=1.0, max_value=2e5),
    trades_today=st.integers(min_value=0, max_value=8),
)
def test_check_when_flooded_with_random_intents_then_no_limit_breached(
    symbol: str,
    side: Side,
    quantity: float,
    price: float,
    stop: float | None,
    positions: dict[str, float],
    equity: float,
    peak_gain: float,
    day_start: float,
    trades_today: int,
) -> None:
    prices = {"A": 100.0, "B": 50.0, "C": 10.0, symbol: price}
    view = PortfolioView(
        equity, max(equity, 1.0) + peak_gain, day_start, positions, prices, trades_today
    )
    qty, _reason = RiskGovernor(LIMITS).check(
        OrderIntent(symbol, side, quantity, price, stop), view
    )

    assert 0.0 <= qty <= quantity
    pos = positions[symbol]
    reducing = min(quantity, abs(pos)) if pos * side.sign < 0 else 0.0
    assert qty >= reducing  # a risk-reducing order is never blocked
    opening = qty - reducing
    if opening <= 1e-9 * max(1.0, quantity):
        return
    after = dict(positions)
    after[symbol] = pos + side.sign * qty
    tol = 1e-9 * max(1.0, abs(equity))
    peak = max(view.peak_equity, equity)
    drawdown = 1.0 - equity / peak
    assert equity > 0
    assert trades_today < LIMITS.max_trades_per_day
    assert equity > day_start * (1 - LIMITS.daily_loss_halt)
    assert drawdown < LIMITS.max_drawdown_halt
    assert opening <= (quantity - reducing) * derisk_scale(LIMITS, drawdown) + tol
    assert abs(after[symbol]) * price <= LIMITS.max_position_frac * equity + tol
    gross = sum(abs(q) * prices[s] for s, q in after.items())
    assert gross <= LIMITS.max_gross_exposure * equity + tol
    if stop is not None:
        assert opening * stop <= LIMITS.max_risk_per_trade * equity + tol
