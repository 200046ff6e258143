"""Why a raw row was quarantined: one code per rule of the data contract.

The enum order is the order the rules are applied in; a row gets the first code it fails, so
each quarantined row carries exactly one reason. Row-level rules (which look at one row) come
first; set-level rules (which compare a row with its neighbours) run only on the rows that
passed every row-level rule, in timestamp order.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["RULE_ORDER", "ReasonCode"]


class ReasonCode(StrEnum):
    """A data-contract rule; the value is what the quarantine table stores in `reason`."""

    # --- row-level: timestamp ---
    UNPARSEABLE_TS = "unparseable_ts"  # missing, garbage, non-ISO-8601 text or a bare number
    NAIVE_TS = "naive_ts"  # parsed but carries no timezone: refused, never guessed
    NONEXISTENT_TS = "nonexistent_ts"  # a local time a DST change skips (02:30 on spring-forward)
    AMBIGUOUS_TS = "ambiguous_ts"  # a local time a DST change repeats, with no way to tell which
    FUTURE_TS = "future_ts"  # bar open time after the injected `now`
    MISALIGNED_TS = "misaligned_ts"  # not on the timeframe grid (10:07 for 1h)
    # --- row-level: values ---
    MISSING_VALUE = "missing_value"  # an OHLCV value is None, NaN or blank text
    NON_NUMERIC = "non_numeric"  # an OHLCV value is text that is not a finite number, or a bool
    NON_POSITIVE_PRICE = "non_positive_price"  # a price <= 0
    PRICE_OUT_OF_RANGE = "price_out_of_range"  # a price above ContractConfig.max_price
    NEGATIVE_VOLUME = "negative_volume"  # volume < 0
    HIGH_BELOW_LOW = "high_below_low"  # high < low: the bar cannot exist
    HIGH_BELOW_OPEN_CLOSE = "high_below_open_close"  # high < max(open, close)
    LOW_ABOVE_OPEN_CLOSE = "low_above_open_close"  # low > min(open, close)
    # --- set-level, on the survivors sorted by ts ---
    DUPLICATE_KEY = "duplicate_key"  # same (symbol, timeframe, ts) as an earlier surviving row
    STALE_PRICE = "stale_price"  # repeat inside a run of identical OHLC bars with zero volume
    PRICE_SPIKE = "price_spike"  # one-bar excursion in close that the next bar reverses


# The documented precedence: a row is tagged with the first rule it fails in this order.
RULE_ORDER: tuple[ReasonCode, ...] = tuple(ReasonCode)
