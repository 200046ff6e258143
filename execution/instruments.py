"""The instrument master: what one symbol's orders may look like.

The engine sizes in units (shares, coins, currency units). An `Instrument` says how units relate
to the venue's lots (`contract_size`), the step an order quantity must be a multiple of, the
smallest and largest order, the price tick, the quote currency and the volume cap that applies.
Defaults come per asset class (`ASSET_DEFAULTS`), overrides from `StrategyConfig.instruments`;
a live bridge may build instruments from the venue's own description (MT5 `symbol_info`) with
`Instrument.from_lots`.

An order quantity is rounded down to the step (a remainder below one step cannot be traded);
a quantity below the minimum or above the maximum is refused with `InstrumentError` naming the
limit, never capped: a capped order is a different trade from the one the strategy sized.

Volume caps: FX bars carry tick counts, not traded units, so a share of them says nothing about
liquidity; FX is uncapped unless an instrument sets `max_volume_share`. Every other class uses
`CostModel.max_volume_share` unless overridden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from execution.config import InstrumentConfig, StrategyConfig

__all__ = [
    "ASSET_DEFAULTS",
    "Instrument",
    "InstrumentError",
    "guess_asset_class",
    "instrument_for",
    "round_units",
]

# ISO 4217 codes common enough to recognise an FX pair such as EURUSD by its name.
_CURRENCIES = frozenset(
    "USD EUR JPY GBP CHF AUD NZD CAD SEK NOK DKK PLN HUF CZK TRY ZAR MXN SGD HKD CNH CNY".split()
)


class InstrumentError(ValueError):
    """An order quantity the instrument does not allow (below the minimum, above the maximum)."""


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    asset_class: str  # one of execution.config.ASSET_CLASSES
    contract_size: float  # units per lot (FX 100,000; shares 1)
    quantity_step: float  # units; order quantities are whole multiples of it; 0 = continuous
    min_quantity: float  # units; smaller orders are refused
    max_quantity: float  # units; larger orders are refused (inf = no limit)
    price_tick: float  # smallest price increment
    quote_currency: str  # currency of prices and P&L ("" when unknown)
    max_volume_share: float | None  # fill cap as a share of known bar volume; None = uncapped

    def order_quantity(self, units: float) -> float:
        """`units` rounded down to the step; InstrumentError when outside [min, max]."""
        rounded, code = round_units(units, self.quantity_step, self.min_quantity, self.max_quantity)
        if code < 0:
            msg = (
                f"{self.symbol}: {units:.10g} units is below the minimum order of "
                f"{self.min_quantity:.10g} units (step {self.quantity_step:.10g})"
            )
            raise InstrumentError(msg)
        if code > 0:
            msg = (
                f"{self.symbol}: {units:.10g} units is above the maximum order of "
                f"{self.max_quantity:.10g} units; refused rather than capped"
            )
            raise InstrumentError(msg)
        return rounded

    def to_lots(self, units: float) -> float:
        return units / self.contract_size

    def to_units(self, lots: float) -> float:
        return lots * self.contract_size

    @classmethod
    def from_lots(
        cls,
        symbol: str,
        asset_class: str,
        *,
        contract_size: float,
        lot_step: float,
        min_lots: float,
        max_lots: float,
        price_tick: float,
        quote_currency: str,
        max_volume_share: float | None = None,
    ) -> Instrument:
        """An instrument described in lots (as MT5's symbol_info does), held in units."""
        return cls(
            symbol,
            asset_class,
            contract_size,
            lot_step * contract_size,
            min_lots * contract_size,
            max_lots * contract_size,
            price_tick,
            quote_currency,
            max_volume_share,
        )


# Per asset class: contract_size, quantity_step, min_quantity, max_quantity, price_tick.
# FX: 0.01 lot steps and minimum, 100 lots maximum, as most MT5 retail accounts. Others trade
# fractional units (most brokers and all backtests here), without limits unless configured.
ASSET_DEFAULTS: dict[str, tuple[float, float, float, float, float]] = {
    "fx": (100_000.0, 1_000.0, 1_000.0, 10_000_000.0, 1e-5),
    "equity": (1.0, 0.0, 0.0, math.inf, 0.01),
    "index": (1.0, 0.0, 0.0, math.inf, 0.01),
    "crypto": (1.0, 0.0, 0.0, math.inf, 0.01),
    "commodity": (1.0, 0.0, 0.0, math.inf, 0.01),
    "other": (1.0, 0.0, 0.0, math.inf, 0.0),
}


def guess_asset_class(symbol: str) -> str:
    """ "fx" for a six-letter pair of known currency codes (EURUSD), else "other"."""
    s = symbol.upper()
    if len(s) == 6 and s[:3] in _CURRENCIES and s[3:] in _CURRENCIES:
        return "fx"
    return "other"


def instrument_for(symbol: str, config: StrategyConfig) -> Instrument:
    """The instrument of `symbol`: the asset class's defaults with the configured overrides."""
    over = config.instruments.get(symbol, _NO_OVERRIDES)
    asset = over.asset_class or guess_asset_class(symbol)
    contract, step, lo, hi, tick = ASSET_DEFAULTS[asset]
    if over.max_volume_share is not None:
        share: float | None = over.max_volume_share or None
    elif asset == "fx":
        share = None
    else:
        share = config.costs.max_volume_share or None
    quote = over.quote_currency
    if quote is None:
        quote = symbol.upper()[3:] if asset == "fx" else ""
    return Instrument(
        symbol=symbol,
        asset_class=asset,
        contract_size=_pick(over.contract_size, contract),
        quantity_step=_pick(over.quantity_step, step),
        min_quantity=_pick(over.min_quantity, lo),
        max_quantity=_pick(over.max_quantity, hi),
        price_tick=_pick(over.price_tick, tick),
        quote_currency=quote,
        max_volume_share=share,
    )


_NO_OVERRIDES = InstrumentConfig()


def _pick(value: float | None, default: float) -> float:
    return float(value) if value is not None else default


def round_units(qty: float, step: float, min_qty: float, max_qty: float) -> tuple[float, int]:
    """(qty rounded down to `step`, code): code -1 below the minimum, +1 above the maximum.

    Scalar arithmetic only, so the compiled backtest runs this very function.
    """
    if step > 0.0:
        # A hair of tolerance: 0.3 / 0.1 is 2.9999999999999996 in binary floats.
        qty = math.floor(qty / step + 1e-9) * step
    if qty > max_qty:
        return qty, 1
    if qty < min_qty or qty <= 0.0:
        return qty, -1
    return qty, 0
