"""Typed, frozen configuration of a strategy's execution: costs, sizing, stops, risk, decision.

Every class validates itself in `__post_init__`, builds from a mapping with `from_dict` (unknown
keys are rejected, nested sections may be mappings) and round-trips through `to_dict`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

__all__ = [
    "ASSET_CLASSES",
    "FILL_MODELS",
    "PARTIAL_FILL_POLICIES",
    "SIZING_METHODS",
    "STOP_KINDS",
    "CostModel",
    "DecisionConfig",
    "ExecutionConfigError",
    "InstrumentConfig",
    "RiskLimits",
    "SizingConfig",
    "StopConfig",
    "StrategyConfig",
]

SIZING_METHODS = ("fixed_fractional", "vol_target", "kelly", "fixed_quantity")
STOP_KINDS = ("none", "fixed", "atr", "trailing")
FILL_MODELS = ("next_open", "next_close")
PARTIAL_FILL_POLICIES = ("cancel", "keep")
ASSET_CLASSES = ("fx", "equity", "index", "crypto", "commodity", "other")


class ExecutionConfigError(ValueError):
    """An execution config value or key that is not allowed."""


def _fail(msg: str) -> None:
    raise ExecutionConfigError(msg)


def _check_range(
    owner: str, name: str, value: float, lo: float, hi: float = math.inf, *, lo_open: bool = False
) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        bound = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        _fail(f"{owner}.{name} must be a finite number in {bound}, got {value!r}")


class _FromDict:
    __slots__ = ()
    _nested: ClassVar[dict[str, type]] = {}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        """Build from a mapping; unknown keys raise ExecutionConfigError naming them."""
        if not isinstance(d, Mapping):
            _fail(f"{cls.__name__} needs a mapping, got {type(d).__name__}")
        allowed = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - allowed)
        if unknown:
            _fail(
                f"unknown {cls.__name__} keys: {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        values = dict(d)
        for key, sub in cls._nested.items():
            if key in values and isinstance(values[key], Mapping):
                values[key] = sub.from_dict(values[key])  # type: ignore[attr-defined]
        if "instruments" in values and isinstance(values["instruments"], Mapping):
            values["instruments"] = {
                str(k): v if isinstance(v, InstrumentConfig) else InstrumentConfig.from_dict(v)
                for k, v in values["instruments"].items()
            }
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-friendly mapping that `from_dict` turns back into an equal config."""
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True, slots=True)
class CostModel(_FromDict):
    commission_bps: float = 1.0  # commission, basis points of fill notional
    commission_min: float = 0.0  # minimum commission per fill, account currency
    spread_bps: float = 1.0  # full quoted spread; half of it is paid on each side
    slippage_bps: float = 1.0  # fixed adverse slippage per market fill
    slippage_vol_mult: float = 0.0  # extra slippage = mult * per-bar vol known at decision time
    # Fill cap per bar as a share of the volume known when the bar opens: the mean volume of
    # the `volume_window` bars before it, never the bar being filled. 0/None = uncapped. An
    # instrument can override it (FX volume is a tick count, so FX is uncapped by default).
    max_volume_share: float | None = 0.1
    volume_window: int = 1

    def __post_init__(self) -> None:
        for name in ("commission_bps", "commission_min", "spread_bps", "slippage_bps"):
            _check_range("CostModel", name, getattr(self, name), 0.0)
        _check_range("CostModel", "slippage_vol_mult", self.slippage_vol_mult, 0.0)
        if self.max_volume_share is not None:
            _check_range("CostModel", "max_volume_share", self.max_volume_share, 0.0, 1.0)
        if not (
            isinstance(self.volume_window, int)
            and not isinstance(self.volume_window, bool)
            and self.volume_window >= 1
        ):
            _fail(f"CostModel.volume_window must be an int >= 1, got {self.volume_window!r}")


@dataclass(frozen=True, slots=True)
class SizingConfig(_FromDict):
    # fixed_fractional: risk `risk_per_trade` of equity over the stop distance;
    # vol_target: notional = equity * target_vol / annualised vol;
    # kelly: notional = equity * min(kelly_fraction * (p_win - p_loss) / (p_win + p_loss), cap);
    # fixed_quantity: always `fixed_quantity` units (for comparisons with other engines).
    method: str = "fixed_fractional"
    risk_per_trade: float = 0.01  # fraction of equity lost if the stop is hit
    target_vol: float = 0.15  # annualised volatility target of one position
    kelly_fraction: float = 0.5  # fraction of full Kelly
    kelly_cap: float = 0.2  # max notional as a fraction of equity under Kelly
    max_leverage: float = 1.0  # notional of one position <= max_leverage * equity
    fixed_quantity: float = 1.0  # units per entry for method "fixed_quantity"

    def __post_init__(self) -> None:
        if self.method not in SIZING_METHODS:
            _fail(f"SizingConfig.method must be one of {SIZING_METHODS}, got {self.method!r}")
        _check_range("SizingConfig", "risk_per_trade", self.risk_per_trade, 0.0, 1.0, lo_open=True)
        _check_range("SizingConfig", "target_vol", self.target_vol, 0.0, 10.0, lo_open=True)
        _check_range("SizingConfig", "kelly_fraction", self.kelly_fraction, 0.0, 1.0, lo_open=True)
        _check_range("SizingConfig", "kelly_cap", self.kelly_cap, 0.0, 10.0, lo_open=True)
        _check_range("SizingConfig", "max_leverage", self.max_leverage, 0.0, 100.0, lo_open=True)
        _check_range("SizingConfig", "fixed_quantity", self.fixed_quantity, 0.0, lo_open=True)


@dataclass(frozen=True, slots=True)
class StopConfig(_FromDict):
    # fixed: stop at stop_pct from the decision price; atr: atr_mult * ATR(atr_period) away;
    # trailing: stop_pct below the highest high (above the lowest low for shorts) since entry.
    kind: str = "none"
    stop_pct: float = 0.02
    atr_mult: float = 2.0
    take_profit_mult: float | None = None  # take profit at this multiple of the stop distance
    atr_period: int = 14

    def __post_init__(self) -> None:
        if self.kind not in STOP_KINDS:
            _fail(f"StopConfig.kind must be one of {STOP_KINDS}, got {self.kind!r}")
        _check_range("StopConfig", "stop_pct", self.stop_pct, 0.0, 1.0, lo_open=True)
        _check_range("StopConfig", "atr_mult", self.atr_mult, 0.0, 100.0, lo_open=True)
        if self.take_profit_mult is not None:
            _check_range("StopConfig", "take_profit_mult", self.take_profit_mult, 0.0, lo_open=True)
        if not (isinstance(self.atr_period, int) and self.atr_period >= 1):
            _fail(f"StopConfig.atr_period must be an int >= 1, got {self.atr_period!r}")


@dataclass(frozen=True, slots=True)
class RiskLimits(_FromDict):
    max_position_frac: float = 0.5  # |position notional| <= frac * equity
    max_gross_exposure: float = 1.0  # sum |position notional| <= this * equity
    max_risk_per_trade: float = 0.02  # quantity * stop distance <= this * equity
    daily_loss_halt: float = 0.05  # no new risk once the day's loss reaches this fraction
    max_drawdown_halt: float = 0.25  # no new risk at this drawdown from the equity peak
    drawdown_derisk_start: float = 0.15  # new size scales linearly 1 -> 0 from here to the halt
    max_trades_per_day: int = 20  # risk-increasing orders approved per UTC day

    def __post_init__(self) -> None:
        _check_range("RiskLimits", "max_position_frac", self.max_position_frac, 0.0, 100.0)
        _check_range("RiskLimits", "max_gross_exposure", self.max_gross_exposure, 0.0, 100.0)
        _check_range("RiskLimits", "max_risk_per_trade", self.max_risk_per_trade, 0.0, 1.0)
        _check_range("RiskLimits", "daily_loss_halt", self.daily_loss_halt, 0.0, 1.0, lo_open=True)
        _check_range(
            "RiskLimits", "max_drawdown_halt", self.max_drawdown_halt, 0.0, 1.0, lo_open=True
        )
        _check_range("RiskLimits", "drawdown_derisk_start", self.drawdown_derisk_start, 0.0, 1.0)
        if self.drawdown_derisk_start > self.max_drawdown_halt:
            _fail(
                "RiskLimits.drawdown_derisk_start must be <= max_drawdown_halt, got "
                f"{self.drawdown_derisk_start} > {self.max_drawdown_halt}"
            )
        if not (isinstance(self.max_trades_per_day, int) and self.max_trades_per_day >= 0):
            _fail(
                "RiskLimits.max_trades_per_day must be an int >= 0, got "
                f"{self.max_trades_per_day!r}"
            )


@dataclass(frozen=True, slots=True)
class DecisionConfig(_FromDict):
    min_confidence: float = 0.4  # abstain unless the winning class has at least this probability
    allow_short: bool = True  # when False a down call means flat
    abstain_margin: float = 0.0  # abstain unless |p_up - p_down| exceeds this

    def __post_init__(self) -> None:
        _check_range("DecisionConfig", "min_confidence", self.min_confidence, 0.0, 1.0)
        _check_range("DecisionConfig", "abstain_margin", self.abstain_margin, 0.0, 1.0)
        if not isinstance(self.allow_short, bool):
            _fail(f"DecisionConfig.allow_short must be a bool, got {self.allow_short!r}")


@dataclass(frozen=True, slots=True)
class InstrumentConfig(_FromDict):
    """Overrides of one symbol's instrument (execution.instruments); None = the asset class's
    default. Quantities are in units (shares, coins, currency units), never lots."""

    asset_class: str | None = None  # one of ASSET_CLASSES; None = guessed from the symbol
    contract_size: float | None = None  # units per lot (FX: 100,000)
    quantity_step: float | None = None  # orders are whole multiples of this; 0 = continuous
    min_quantity: float | None = None  # smallest order, units
    max_quantity: float | None = None  # largest order, units; larger ones are refused
    price_tick: float | None = None
    quote_currency: str | None = None
    max_volume_share: float | None = None  # None = the asset class's rule; 0 = uncapped

    def __post_init__(self) -> None:
        if self.asset_class is not None and self.asset_class not in ASSET_CLASSES:
            _fail(
                f"InstrumentConfig.asset_class must be one of {ASSET_CLASSES}, "
                f"got {self.asset_class!r}"
            )
        for name in ("contract_size", "price_tick"):
            value = getattr(self, name)
            if value is not None:
                _check_range("InstrumentConfig", name, value, 0.0, lo_open=True)
        for name in ("quantity_step", "min_quantity", "max_quantity"):
            value = getattr(self, name)
            if value is not None:
                _check_range("InstrumentConfig", name, value, 0.0)
        if self.max_volume_share is not None:
            _check_range("InstrumentConfig", "max_volume_share", self.max_volume_share, 0.0, 1.0)
        if (
            self.min_quantity is not None
            and self.max_quantity is not None
            and self.max_quantity < self.min_quantity
        ):
            _fail("InstrumentConfig.max_quantity must be >= min_quantity")


@dataclass(frozen=True, slots=True)
class StrategyConfig(_FromDict):
    strategy: str = "default"  # name, part of every client order id
    initial_cash: float = 100_000.0
    costs: CostModel = field(default_factory=CostModel)
    sizing: SizingConfig = field(default_factory=SizingConfig)
    stops: StopConfig = field(default_factory=StopConfig)
    risk: RiskLimits = field(default_factory=RiskLimits)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    fill: str = "next_open"  # "next_open" or "next_close": the price a decision fills at
    periods_per_year: float = 252  # bars per year, to annualise volatility
    vol_window: int = 20  # span (bars) of the EWMA volatility used by sizing and slippage
    # What happens to the unfilled rest of an entry at the end of the bar it first fills in:
    # "cancel" (default) cancels it; "keep" keeps it working `partial_fill_bars` bars in all,
    # then expires it. Exits always work until filled: a policy must not keep a strategy in.
    partial_fill: str = "cancel"
    partial_fill_bars: int = 1
    # False: a buy that opens or adds to a long fills only what the cash at the fill price
    # pays for, costs included (the rest is cancelled), so cash never goes negative.
    allow_margin: bool = False
    instruments: dict[str, InstrumentConfig] = field(default_factory=dict)  # by symbol
    # The decision rule, "module:function" (prediction, decision config, context) -> -1/0/+1;
    # "" is the built-in (execution.decision). Resolved here, so a wrong path fails at load.
    rule: str = ""

    _nested: ClassVar[dict[str, type]] = {
        "costs": CostModel,
        "sizing": SizingConfig,
        "stops": StopConfig,
        "risk": RiskLimits,
        "decision": DecisionConfig,
    }

    def __post_init__(self) -> None:
        if not (isinstance(self.strategy, str) and self.strategy and "|" not in self.strategy):
            _fail(
                "StrategyConfig.strategy must be a non-empty name without '|', got "
                f"{self.strategy!r}"
            )
        _check_range("StrategyConfig", "initial_cash", self.initial_cash, 0.0, lo_open=True)
        for name, kind in self._nested.items():
            if not isinstance(getattr(self, name), kind):
                _fail(f"StrategyConfig.{name} must be a {kind.__name__}")
        if self.fill not in FILL_MODELS:
            _fail(f"StrategyConfig.fill must be one of {FILL_MODELS}, got {self.fill!r}")
        _check_range("StrategyConfig", "periods_per_year", self.periods_per_year, 0.0, lo_open=True)
        if not (isinstance(self.vol_window, int) and self.vol_window >= 2):
            _fail(f"StrategyConfig.vol_window must be an int >= 2, got {self.vol_window!r}")
        if self.partial_fill not in PARTIAL_FILL_POLICIES:
            _fail(
                f"StrategyConfig.partial_fill must be one of {PARTIAL_FILL_POLICIES}, "
                f"got {self.partial_fill!r}"
            )
        if not (isinstance(self.partial_fill_bars, int) and self.partial_fill_bars >= 1):
            _fail(
                "StrategyConfig.partial_fill_bars must be an int >= 1, got "
                f"{self.partial_fill_bars!r}"
            )
        if not isinstance(self.allow_margin, bool):
            _fail(f"StrategyConfig.allow_margin must be a bool, got {self.allow_margin!r}")
        if not isinstance(self.instruments, dict) or not all(
            isinstance(k, str) and isinstance(v, InstrumentConfig)
            for k, v in self.instruments.items()
        ):
            _fail("StrategyConfig.instruments must map symbols to InstrumentConfig")
        if not isinstance(self.rule, str):
            _fail(f"StrategyConfig.rule must be an import path string, got {self.rule!r}")
        if self.rule:
            from execution.decision import resolve_rule

            resolve_rule(self.rule)
