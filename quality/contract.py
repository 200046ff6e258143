"""The data contract: split a raw frame of bars into accepted canonical bars and quarantined rows.

`validate_bars` never drops a row silently: every input row ends up either in `accepted` or in
`quarantined` with exactly one ReasonCode, so `rows_in == accepted + quarantined` always holds.
A row is tagged with the first rule it fails, in the order of `quality.reasons.RULE_ORDER`:

Row-level rules, each looking at one row:
 1. UNPARSEABLE_TS   ts missing, not an ISO-8601 string or datetime, or outside the ns range.
                     Bare numbers are refused: an epoch's unit (s, ms, us) would be a guess.
 2. NAIVE_TS         ts parsed but carries no timezone (refused, never assumed to be UTC).
 3. NONEXISTENT_TS   a local time that a DST change skips, and
 4. AMBIGUOUS_TS     one that it repeats: only a source that knows the zone can tell, so both
                     arrive through `ts_faults`.
 5. FUTURE_TS        ts later than the injected `now`.
 6. MISALIGNED_TS    ts not on the timeframe grid (see quality.calendars).
 7. MISSING_VALUE    an OHLCV value is None, NaN or blank text.
 8. NON_NUMERIC      an OHLCV value is text that is not a finite number, a bool, or +-inf.
 9. NON_POSITIVE_PRICE  open, high, low or close <= 0.
10. PRICE_OUT_OF_RANGE  open, high, low or close > `max_price`: no instrument is quoted there,
                     and such magnitudes overflow returns and features downstream.
11. NEGATIVE_VOLUME  volume < 0.
12. HIGH_BELOW_LOW   high < low.
13. HIGH_BELOW_OPEN_CLOSE  high < max(open, close).
14. LOW_ABOVE_OPEN_CLOSE   low > min(open, close).

`ts_faults` (row position -> reason, detail) are rows the source already found faulty; they
are tagged first, with the reason given.

Set-level rules, on the rows that passed 1-14, sorted by ts (stable, so input order breaks
ties):
15. DUPLICATE_KEY    a later row with the same ts (symbol and timeframe are fixed per call): of
                     the rows that passed 1-14, the first in input order is kept and every other
                     one is quarantined, whether it is an exact copy or conflicts with the kept
                     one (the detail says which).
16. STALE_PRICE      consecutive bars with identical open, high, low and close and zero volume
                     (a frozen feed): the first N-1 bars of such a run are kept (a quiet market
                     repeats a bar that often), the N-th and every later one are quarantined. N
                     is `stale_min_run_intraday` below 1d and `stale_min_run_daily` from 1d up.
                     The rule looks only backwards, so a bar's verdict never depends on bars
                     after it and an ingest in increments agrees with one over the whole batch.
17. PRICE_SPIKE      on the remaining bars, r_t = log(close_t / close_{t-1}). The robust z-score is
                     (r_t - median(r)) / scale over the whole batch, where scale is 1.4826 *
                     MAD(r) (when MAD is 0, 1.2533 * the mean absolute deviation stands in) but
                     never less than `spike_min_scale`: on a nearly constant series a tiny MAD
                     would make an ordinary move look extreme. Bar t is a spike when
                     |z_t| > `spike_z_threshold` AND the next bar reverses it: r_{t+1} has the
                     opposite sign and
                     |r_{t+1}| >= `spike_revert_fraction` * |r_t|. A level shift (a big move the
                     next bar does not undo) is therefore kept. Limits, by design: the last bar
                     of a batch cannot be confirmed as a spike (no next bar); an excursion lasting
                     two or more bars counts as two level shifts; a wick-only spike (bad high or
                     low with a sane close) is not seen. The check is skipped when fewer than
                     `spike_min_returns` returns exist, since median and MAD need a sample.

Out-of-order rows are not faults: the accepted frame is sorted by ts and the report counts, as
`reordered`, accepted rows that arrived after a later-stamped accepted row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from quality.calendars import Gap, check_instrument_class, find_gaps, is_on_grid
from quality.errors import ContractConfigError, RawFrameError, UnsupportedCalendarError
from quality.reasons import RULE_ORDER, ReasonCode
from quality.schema import (
    QUARANTINE_COLUMNS,
    timeframe_to_timedelta,
    to_canonical_frame,
)

__all__ = [
    "RAW_COLUMNS",
    "ContractConfig",
    "ValidationReport",
    "ValidationResult",
    "coerce_bars",
    "validate_bars",
]

logger = logging.getLogger(__name__)

RAW_COLUMNS: Final = ("ts", "open", "high", "low", "close", "volume")
_VALUE_COLUMNS: Final = ("open", "high", "low", "close", "volume")
_PRICE_COLUMNS: Final = ("open", "high", "low", "close")
_CODE_INDEX: Final = {code: i for i, code in enumerate(RULE_ORDER)}
_PASS: Final = -1
# A timezone designator after a clock time: Z, +hh, +hhmm or +hh:mm. A date-only string such as
# 2024-01-02 must not match, hence the required hh:mm before it.
_TZ_SUFFIX: Final = re.compile(
    # [0-9] and a plain space (not \d, \s) keep the pattern inside RE2: pyarrow runs it.
    r"[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)? *(?:[zZ]|[+-][0-9]{2}(?::?[0-9]{2})?)$"
)
_NS_MIN: Final = pd.Timestamp.min.tz_localize("UTC")
_NS_MAX: Final = pd.Timestamp.max.tz_localize("UTC")
_MAD_TO_SIGMA: Final = 1.4826  # MAD of a normal sample times this estimates its sigma
_MEAN_AD_TO_SIGMA: Final = 1.2533  # sqrt(pi / 2): the same for the mean absolute deviation


@dataclass(frozen=True, slots=True)
class ContractConfig:
    """Thresholds of the set-level rules. Build from settings with `from_mapping`."""

    spike_z_threshold: float = 12.0  # robust z of a log return above which a bar may be a spike
    spike_revert_fraction: float = 0.5  # share of the jump the next bar must undo, in (0, 1]
    spike_min_returns: int = 30  # fewer log returns than this: no spike check (stats unreliable)
    stale_min_run_intraday: int = 5  # identical zero-volume bars that make a stale run, < 1d
    stale_min_run_daily: int = 3  # the same for 1d and 1w bars
    # Floor on the spike rule's scale of log returns: with the defaults a one-bar move must
    # exceed 12 * 0.001 = 1.2% (and revert) to be a spike, however flat the series around it.
    spike_min_scale: float = 0.001
    max_price: float = 1e9  # prices above this are quarantined as price_out_of_range

    def __post_init__(self) -> None:
        integers = ("spike_min_returns", "stale_min_run_intraday", "stale_min_run_daily")
        for f in fields(self):
            value = getattr(self, f.name)
            wanted = int if f.name in integers else int | float
            if isinstance(value, bool) or not isinstance(value, wanted):
                kind = "an int" if f.name in integers else "a number"
                msg = f"ContractConfig.{f.name} must be {kind}, got {value!r}"
                raise ContractConfigError(msg)
        checks = (
            ("spike_z_threshold", self.spike_z_threshold > 0, "must be > 0"),
            ("spike_revert_fraction", 0 < self.spike_revert_fraction <= 1, "must be in (0, 1]"),
            ("spike_min_returns", self.spike_min_returns >= 3, "must be >= 3"),
            ("stale_min_run_intraday", self.stale_min_run_intraday >= 2, "must be >= 2"),
            ("stale_min_run_daily", self.stale_min_run_daily >= 2, "must be >= 2"),
            ("spike_min_scale", self.spike_min_scale > 0, "must be > 0"),
            ("max_price", self.max_price > 0, "must be > 0"),
        )
        for name, ok, rule in checks:
            if not ok:
                msg = f"ContractConfig.{name} {rule}, got {getattr(self, name)!r}"
                raise ContractConfigError(msg)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> ContractConfig:
        """Build from a mapping (settings, run config); unknown keys raise ContractConfigError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            msg = (
                f"unknown ContractConfig keys: {', '.join(unknown)}; "
                f"known keys are {', '.join(sorted(known))}"
            )
            raise ContractConfigError(msg)
        return cls(**dict(mapping))

    def stale_min_run(self, timeframe: str) -> int:
        """The stale-run length that applies to `timeframe`."""
        intraday = timeframe_to_timedelta(timeframe) < timedelta(days=1)
        return self.stale_min_run_intraday if intraday else self.stale_min_run_daily


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Counts and gaps of one validate_bars call; JSON-ready through `as_metadata`."""

    rows_in: int  # rows in the raw frame
    accepted: int  # rows in ValidationResult.accepted
    quarantined: int  # rows in ValidationResult.quarantined; rows_in == accepted + quarantined
    reordered: int  # accepted rows that arrived after a later-stamped accepted row
    by_reason: dict[str, int]  # ReasonCode value -> quarantined rows; only reasons that occurred
    gaps: tuple[Gap, ...]  # runs of expected bars missing between the first and last accepted
    gap_count: int  # len(gaps)
    missing_bars: int  # sum of Gap.missing_bars
    gaps_checked: bool  # False where no calendar exists (intraday equity): gaps is then empty

    def as_metadata(self) -> dict[str, Any]:
        """Plain JSON-compatible values, e.g. for asset-check metadata or a log line."""
        return {
            "rows_in": self.rows_in,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "reordered": self.reordered,
            "by_reason": dict(self.by_reason),
            "gap_count": self.gap_count,
            "missing_bars": self.missing_bars,
            "gaps_checked": self.gaps_checked,
            "gaps": [[g.start.isoformat(), g.end.isoformat(), g.missing_bars] for g in self.gaps],
        }


@dataclass(frozen=True, eq=False, slots=True)
class ValidationResult:
    """The outcome of validate_bars. Frames are new objects; the input is never touched."""

    accepted: pd.DataFrame  # canonical bar frame (quality.schema), sorted by ts
    quarantined: pd.DataFrame  # QUARANTINE_COLUMNS, in input row order
    report: ValidationReport
    # Position (0-based, in the raw frame) of each quarantined row, aligned with `quarantined`.
    quarantined_positions: np.ndarray = field(repr=False)


# ----------------------------------------------------------------------------------------------
# Parsing: raw cells -> typed arrays plus masks of what failed, without touching the input.


@dataclass(frozen=True, slots=True)
class _ParsedTs:
    ts: pd.Series  # datetime64[ns, UTC], NaT wherever the value was not a tz-aware timestamp
    ns: np.ndarray  # the same as int64 nanoseconds since the epoch (NaT: the int64 minimum)
    unparseable: np.ndarray
    naive: np.ndarray


@dataclass(frozen=True, slots=True)
class _ParsedValue:
    values: np.ndarray  # float64, NaN where missing or not numeric
    missing: np.ndarray
    non_numeric: np.ndarray


def _type_mask(values: np.ndarray, types: type | tuple[type, ...]) -> np.ndarray:
    return np.fromiter((isinstance(v, types) for v in values), dtype=bool, count=len(values))


def _kind_masks(values: np.ndarray) -> tuple[np.ndarray, str]:
    """(which cells are str, pandas' inferred kind of the non-null cells).

    infer_dtype runs in C, so homogeneous columns skip the per-cell isinstance loop.
    """
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind == "string":
        return ~pd.isna(values), kind
    if kind in ("floating", "integer", "mixed-integer-float", "boolean", "empty", "decimal"):
        return np.zeros(len(values), dtype=bool), kind
    return _type_mask(values, str), kind


def _text(values: np.ndarray) -> pd.Series:
    # Arrow-backed strings make strip and regex matching vectorised.
    return pd.Series(values, dtype="string[pyarrow]").str.strip()


_NAT_NS: Final = np.iinfo(np.int64).min


def _stamps_to_ns(stamps: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(ns since epoch, in range) for tz-aware stamps; values beyond the ns range (year 9999
    parses in coarser units) are out of range rather than an overflow crash."""
    in_range = stamps.between(_NS_MIN, _NS_MAX).to_numpy(dtype=bool, na_value=False)
    ns = np.full(len(stamps), _NAT_NS, dtype=np.int64)
    ns[in_range] = pd.DatetimeIndex(stamps[in_range]).as_unit("ns").asi8
    return ns, in_range


def _parse_ts(column: pd.Series) -> _ParsedTs:
    n = len(column)
    dtype = column.dtype
    ns = np.full(n, _NAT_NS, dtype=np.int64)
    unparseable = np.ones(n, dtype=bool)
    naive = np.zeros(n, dtype=bool)
    if isinstance(dtype, pd.DatetimeTZDtype):
        ns, unparseable = _stamps_to_ns(column.reset_index(drop=True))
        unparseable = ~unparseable
    elif pd.api.types.is_datetime64_dtype(dtype):
        unparseable = column.isna().to_numpy()
        naive = ~unparseable
    else:
        values = column.to_numpy(dtype=object)
        is_str, kind = _kind_masks(values)
        if is_str.any():
            text = _text(values[is_str])
            stamps = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
            ok = stamps.notna().to_numpy()
            has_tz = text.str.contains(_TZ_SUFFIX.pattern).to_numpy(dtype=bool, na_value=False)
            pos = np.flatnonzero(is_str)
            naive[pos] = ok & ~has_tz
            aware = ok & has_tz
            got, in_range = _stamps_to_ns(stamps[aware])
            ns[pos[aware]] = got
            unparseable[pos] = ~ok
            unparseable[pos[aware][~in_range]] = True
        mixed = kind not in ("string", "floating", "integer", "mixed-integer-float", "empty")
        # pd.Timestamp is a datetime subclass.
        is_dt = _type_mask(values, datetime) if mixed else np.zeros(n, dtype=bool)
        if is_dt.any():
            pos = np.flatnonzero(is_dt)
            not_nat = np.fromiter((values[p] is not pd.NaT for p in pos), bool, count=len(pos))
            aware = not_nat & np.fromiter(
                (values[p].tzinfo is not None and values[p].utcoffset() is not None for p in pos),
                dtype=bool,
                count=len(pos),
            )
            naive[pos] = not_nat & ~aware
            unparseable[pos] = ~not_nat
            if aware.any():
                stamps = pd.Series(pd.to_datetime(list(values[pos[aware]]), utc=True))
                got, in_range = _stamps_to_ns(stamps)
                ns[pos[aware]] = got
                unparseable[pos[aware][~in_range]] = True
        # numpy datetimes carry no timezone.
        is_np_dt = _type_mask(values, np.datetime64) if mixed else np.zeros(n, dtype=bool)
        if is_np_dt.any():
            pos = np.flatnonzero(is_np_dt)
            nat = np.fromiter((np.isnat(values[p]) for p in pos), dtype=bool, count=len(pos))
            unparseable[pos] = nat
            naive[pos] = ~nat
    ns[unparseable | naive] = _NAT_NS
    return _ParsedTs(ts=_ns_to_series(ns), ns=ns, unparseable=unparseable, naive=naive)


def _ns_to_series(ns: np.ndarray) -> pd.Series:
    # Building from int64 avoids pandas boxing a Timestamp per row.
    return pd.Series(pd.DatetimeIndex(ns.view("M8[ns]")).tz_localize("UTC"))


def _parse_value(column: pd.Series) -> _ParsedValue:
    n = len(column)
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        missing = column.isna().to_numpy()
        return _ParsedValue(np.full(n, np.nan), missing, ~missing)
    if pd.api.types.is_numeric_dtype(dtype):
        values = column.to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(values)
        non_numeric = np.isinf(values)
        return _ParsedValue(np.where(non_numeric, np.nan, values), missing, non_numeric)
    raw = column.to_numpy(dtype=object)
    series = pd.Series(raw, dtype=object)
    blank = np.zeros(n, dtype=bool)
    is_str, kind = _kind_masks(raw)
    if is_str.any():
        blank[is_str] = _text(raw[is_str]).eq("").to_numpy(dtype=bool, na_value=False)
    missing = pd.isna(raw) | blank
    is_bool = (
        _type_mask(raw, (bool, np.bool_))
        if kind not in ("string", "floating", "integer", "decimal", "empty")
        else np.zeros(n, dtype=bool)
    )
    numbers = pd.to_numeric(series.where(~is_bool), errors="coerce").to_numpy(dtype="float64")
    bad = ~np.isfinite(numbers) | is_bool
    non_numeric = ~missing & bad
    values = np.where(missing | bad, np.nan, numbers)
    return _ParsedValue(values, missing, non_numeric)


def _check_arguments(
    raw: pd.DataFrame,
    symbol: str,
    timeframe: str,
    source: str,
    now: datetime,
) -> None:
    if not isinstance(raw, pd.DataFrame):
        msg = f"raw must be a pandas DataFrame, got {type(raw).__name__}"
        raise RawFrameError(msg)
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        msg = f"raw bar frame is missing columns: {', '.join(missing)}"
        raise RawFrameError(msg)
    if raw.columns.duplicated().any():
        dups = sorted({str(c) for c in raw.columns[raw.columns.duplicated()]})
        msg = f"raw bar frame has duplicated column names: {', '.join(dups)}"
        raise RawFrameError(msg)
    _check_text("symbol", symbol)
    _check_text("source", source)
    timeframe_to_timedelta(timeframe)
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        msg = f"now must be a tz-aware datetime (inject the clock), got {now!r}"
        raise RawFrameError(msg)


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        msg = f"{name} must be a non-empty string, got {value!r}"
        raise RawFrameError(msg)


def _parse(raw: pd.DataFrame) -> tuple[_ParsedTs, dict[str, _ParsedValue]]:
    return _parse_ts(raw["ts"]), {c: _parse_value(raw[c]) for c in _VALUE_COLUMNS}


def coerce_bars(
    raw: pd.DataFrame, *, symbol: str, timeframe: str, source: str, now: datetime
) -> pd.DataFrame:
    """The raw frame coerced to canonical columns and dtypes, row for row, faults kept visible.

    Unlike validate_bars nothing is removed: ts is NaT where it was unparseable or naive, values
    are NaN where missing or not numeric, and row i is raw row i (RangeIndex). This is the frame
    on which the Great Expectations suite and validate_bars can be compared rule by rule.
    """
    _check_arguments(raw, symbol, timeframe, source, now)
    parsed_ts, parsed = _parse(raw)
    return _bars_frame(
        parsed_ts.ns, parsed, np.arange(len(raw)), symbol, timeframe, source, _utc(now)
    )


def _utc(now: datetime) -> pd.Timestamp:
    return pd.Timestamp(now).tz_convert("UTC").as_unit("ns")


def _bars_frame(
    ts_ns: np.ndarray,
    parsed: Mapping[str, _ParsedValue],
    positions: np.ndarray,
    symbol: str,
    timeframe: str,
    source: str,
    now: pd.Timestamp,
) -> pd.DataFrame:
    n = len(positions)
    frame = pd.DataFrame(
        {
            "symbol": np.full(n, symbol, dtype=object),
            "timeframe": np.full(n, timeframe, dtype=object),
            "ts": _ns_to_series(ts_ns[positions]),
            **{c: parsed[c].values[positions] for c in _VALUE_COLUMNS},
            "source": np.full(n, source, dtype=object),
            "ingested_at": _ns_to_series(np.full(n, now.value, dtype=np.int64)),
        }
    )
    return to_canonical_frame(frame)


# ----------------------------------------------------------------------------------------------
# Rules.


class _Tagger:
    """Holds the one reason per row; a rule only tags rows that no earlier rule tagged."""

    def __init__(self, n: int) -> None:
        self.code = np.full(n, _PASS, dtype=np.int8)
        self.detail = np.empty(n, dtype=object)

    def open_rows(self) -> np.ndarray:
        return self.code == _PASS

    def tag(self, mask: npt.ArrayLike, code: ReasonCode, describe: Any) -> None:
        """Tag rows in `mask` still open; `describe(positions) -> list[str]` explains each."""
        pos = np.flatnonzero(np.asarray(mask, dtype=bool) & (self.code == _PASS))
        if pos.size == 0:
            return
        self.code[pos] = _CODE_INDEX[code]
        details = describe(pos)
        self.detail[pos] = np.asarray(details, dtype=object)

    def tag_positions(self, pos: np.ndarray, code: ReasonCode, details: list[str]) -> None:
        if pos.size == 0:
            return
        self.code[pos] = _CODE_INDEX[code]
        self.detail[pos] = np.asarray(details, dtype=object)


def _fmt(x: float) -> str:
    return repr(float(x))


def _fault_rule(
    tagger: _Tagger, faults: Mapping[int, tuple[ReasonCode, str]], n: int
) -> None:
    for pos, (code, detail) in sorted(faults.items()):
        if not 0 <= pos < n:
            msg = f"ts_faults names row {pos}, but the frame has {n} rows"
            raise RawFrameError(msg)
        tagger.tag_positions(np.array([pos]), ReasonCode(code), [detail])


def _row_rules(
    tagger: _Tagger,
    raw: pd.DataFrame,
    parsed_ts: _ParsedTs,
    parsed: Mapping[str, _ParsedValue],
    timeframe: str,
    now: pd.Timestamp,
    max_price: float,
) -> None:
    ts = parsed_ts.ts

    def ts_text(pos: np.ndarray) -> list[str]:
        return [f"ts {v!r}" for v in raw["ts"].iloc[pos].to_numpy(dtype=object)]

    tagger.tag(
        parsed_ts.unparseable,
        ReasonCode.UNPARSEABLE_TS,
        lambda pos: [
            "ts is missing"
            if v is None or (isinstance(v, float) and math.isnan(v))
            else f"ts {v!r} is not a tz-aware ISO-8601 timestamp in range"
            for v in raw["ts"].iloc[pos].to_numpy(dtype=object)
        ],
    )
    tagger.tag(
        parsed_ts.naive,
        ReasonCode.NAIVE_TS,
        lambda pos: [
            f"{t} has no timezone; naive times are refused (give the source's zone, e.g. "
            "candleflow ingest --tz)"
            for t in ts_text(pos)
        ],
    )
    future = ts.gt(now).to_numpy(dtype=bool, na_value=False)
    tagger.tag(
        future,
        ReasonCode.FUTURE_TS,
        lambda pos: [f"ts {ts.iloc[p].isoformat()} is after now {now.isoformat()}" for p in pos],
    )
    misaligned = ~np.isnat(parsed_ts.ns.view("M8[ns]")) & ~is_on_grid(ts, timeframe)
    tagger.tag(
        misaligned,
        ReasonCode.MISALIGNED_TS,
        lambda pos: [f"ts {ts.iloc[p].isoformat()} is not on the {timeframe} grid" for p in pos],
    )

    missing = np.column_stack([parsed[c].missing for c in _VALUE_COLUMNS])
    tagger.tag(
        missing.any(axis=1),
        ReasonCode.MISSING_VALUE,
        lambda pos: [
            "missing " + ", ".join(c for c, m in zip(_VALUE_COLUMNS, missing[p], strict=True) if m)
            for p in pos
        ],
    )
    non_numeric = np.column_stack([parsed[c].non_numeric for c in _VALUE_COLUMNS])
    tagger.tag(
        non_numeric.any(axis=1),
        ReasonCode.NON_NUMERIC,
        lambda pos: [
            "; ".join(
                f"{c} {v!r} is not a finite number"
                for c, v, m in zip(_VALUE_COLUMNS, row, non_numeric[p], strict=True)
                if m
            )
            for p, row in zip(
                pos, raw.loc[:, list(_VALUE_COLUMNS)].iloc[pos].to_numpy(dtype=object), strict=True
            )
        ],
    )

    o, h, lo, c, v = (parsed[col].values for col in _VALUE_COLUMNS)
    prices = np.column_stack([o, h, lo, c])
    with np.errstate(invalid="ignore"):
        non_positive = prices <= 0
        tagger.tag(
            non_positive.any(axis=1),
            ReasonCode.NON_POSITIVE_PRICE,
            lambda pos: [
                "; ".join(
                    f"{col} {_fmt(val)} <= 0"
                    for col, val, bad in zip(
                        _PRICE_COLUMNS, prices[p], non_positive[p], strict=True
                    )
                    if bad
                )
                for p in pos
            ],
        )
        too_large = prices > max_price
        tagger.tag(
            too_large.any(axis=1),
            ReasonCode.PRICE_OUT_OF_RANGE,
            lambda pos: [
                "; ".join(
                    f"{col} {_fmt(val)} > max_price {_fmt(max_price)}"
                    for col, val, bad in zip(_PRICE_COLUMNS, prices[p], too_large[p], strict=True)
                    if bad
                )
                for p in pos
            ],
        )
        tagger.tag(
            v < 0, ReasonCode.NEGATIVE_VOLUME, lambda pos: [f"volume {_fmt(v[p])} < 0" for p in pos]
        )
        tagger.tag(
            h < lo,
            ReasonCode.HIGH_BELOW_LOW,
            lambda pos: [f"high {_fmt(h[p])} < low {_fmt(lo[p])}" for p in pos],
        )
        tagger.tag(
            h < np.maximum(o, c),
            ReasonCode.HIGH_BELOW_OPEN_CLOSE,
            lambda pos: [
                f"high {_fmt(h[p])} < max(open {_fmt(o[p])}, close {_fmt(c[p])})" for p in pos
            ],
        )
        tagger.tag(
            lo > np.minimum(o, c),
            ReasonCode.LOW_ABOVE_OPEN_CLOSE,
            lambda pos: [
                f"low {_fmt(lo[p])} > min(open {_fmt(o[p])}, close {_fmt(c[p])})" for p in pos
            ],
        )


def _duplicate_rule(
    tagger: _Tagger, ts_ns: np.ndarray, parsed: Mapping[str, _ParsedValue]
) -> np.ndarray:
    """Tag later duplicates; return the surviving positions sorted by ts."""
    open_pos = np.flatnonzero(tagger.open_rows())
    ordered = open_pos[np.argsort(ts_ns[open_pos], kind="stable")]
    if ordered.size < 2:
        return ordered
    sorted_ts = ts_ns[ordered]
    is_dup = np.concatenate(([False], sorted_ts[1:] == sorted_ts[:-1]))
    if not is_dup.any():
        return ordered
    # The kept row of each group is the group's first, i.e. the earliest in input order.
    group_start = np.maximum.accumulate(np.where(~is_dup, np.arange(ordered.size), 0))
    dup_pos = ordered[is_dup]
    kept_pos = ordered[group_start[is_dup]]
    values = np.column_stack([parsed[c].values for c in _VALUE_COLUMNS])
    exact = (values[dup_pos] == values[kept_pos]).all(axis=1)
    stamps = pd.to_datetime(sorted_ts[is_dup], utc=True)
    details = [
        (
            f"exact duplicate of row {k} at ts {s.isoformat()}"
            if e
            else f"conflicting duplicate of row {k} at ts {s.isoformat()}; first occurrence kept"
        )
        for k, s, e in zip(kept_pos, stamps, exact, strict=True)
    ]
    tagger.tag_positions(dup_pos, ReasonCode.DUPLICATE_KEY, details)
    return ordered[~is_dup]


def _stale_rule(
    tagger: _Tagger, ordered: np.ndarray, parsed: Mapping[str, _ParsedValue], min_run: int
) -> np.ndarray:
    """Tag repeats inside long runs of identical zero-volume bars; return the survivors."""
    m = ordered.size
    if m < min_run:
        return ordered
    ohlc = np.column_stack([parsed[c].values[ordered] for c in _PRICE_COLUMNS])
    zero_volume = parsed["volume"].values[ordered] == 0
    same_as_prev = np.concatenate(
        ([False], (ohlc[1:] == ohlc[:-1]).all(axis=1) & zero_volume[1:] & zero_volume[:-1])
    )
    run_start = np.maximum.accumulate(np.where(~same_as_prev, np.arange(m), 0))
    index_in_run = np.arange(m) - run_start
    stale = index_in_run >= min_run - 1
    if not stale.any():
        return ordered
    # The detail names no position in the run: the run's earlier repeats may have been
    # quarantined by an earlier ingest, and the record must read the same either way.
    details = [
        f"repeats the previous bar with zero volume, at least {min_run} bars in a row: a frozen "
        f"feed (OHLC {_fmt(ohlc[j, 0])}, {_fmt(ohlc[j, 1])}, {_fmt(ohlc[j, 2])}, "
        f"{_fmt(ohlc[j, 3])})"
        for j in np.flatnonzero(stale)
    ]
    tagger.tag_positions(ordered[stale], ReasonCode.STALE_PRICE, details)
    return ordered[~stale]


def _spike_rule(
    tagger: _Tagger,
    ordered: np.ndarray,
    parsed: Mapping[str, _ParsedValue],
    config: ContractConfig,
) -> None:
    close = parsed["close"].values[ordered]
    returns = np.diff(np.log(close))
    if returns.size < config.spike_min_returns:
        return
    centre = float(np.median(returns))
    deviation = np.abs(returns - centre)
    scale = _MAD_TO_SIGMA * float(np.median(deviation))
    if scale == 0.0:
        scale = _MEAN_AD_TO_SIGMA * float(np.mean(deviation))
    scale = max(scale, config.spike_min_scale)
    z = (returns - centre) / scale
    jump, after = returns[:-1], returns[1:]  # into bar k+1, and out of it
    spike = (
        (np.abs(z[:-1]) > config.spike_z_threshold)
        & (np.sign(after) == -np.sign(jump))
        & (np.abs(after) >= config.spike_revert_fraction * np.abs(jump))
    )
    if not spike.any():
        return
    k = np.flatnonzero(spike)
    details = [
        f"close {_fmt(close[i + 1])} after {_fmt(close[i])}: log return {jump[i]:+.4g} "
        f"(robust z {z[i]:+.3g} > {config.spike_z_threshold:g}) reversed by {after[i]:+.4g} "
        "at the next bar"
        for i in k
    ]
    tagger.tag_positions(ordered[k + 1], ReasonCode.PRICE_SPIKE, details)


# ----------------------------------------------------------------------------------------------
# Output.


def _json_text(value: object) -> str:
    return json.dumps(None if value is None else str(value))


def _raw_json(raw: pd.DataFrame, positions: np.ndarray) -> list[str]:
    """Each row as a JSON object of its original values as text (None as null), column order."""
    parts = []
    for name in raw.columns:
        key = json.dumps(str(name)) + ": "
        cells = raw[name].iloc[positions].to_numpy(dtype=object)
        parts.append([key + _json_text(v) for v in cells])
    return ["{" + ", ".join(cells) + "}" for cells in zip(*parts, strict=True)] if parts else []


def _quarantine_frame(
    raw: pd.DataFrame,
    tagger: _Tagger,
    positions: np.ndarray,
    ts_ns: np.ndarray,
    symbol: str,
    timeframe: str,
    source: str,
    run_id: str,
    now: pd.Timestamp,
) -> pd.DataFrame:
    n = positions.size
    raw_text = _raw_json(raw, positions) if n else []
    prefix = source + "\n"  # the separator keeps (source, raw) pairs from colliding
    fingerprints = [hashlib.sha256((prefix + r).encode()).hexdigest() for r in raw_text]
    reasons = [RULE_ORDER[i].value for i in tagger.code[positions]]
    frame = pd.DataFrame(
        {
            "symbol": np.full(n, symbol, dtype=object),
            "timeframe": np.full(n, timeframe, dtype=object),
            "ts": _ns_to_series(ts_ns[positions]),
            "raw": np.asarray(raw_text, dtype=object),
            "row_fingerprint": np.asarray(fingerprints, dtype=object),
            "reason": np.asarray(reasons, dtype=object),
            "detail": np.asarray(tagger.detail[positions], dtype=object),
            "source": np.full(n, source, dtype=object),
            "run_id": np.full(n, run_id, dtype=object),
            "quarantined_at": _ns_to_series(np.full(n, now.value, dtype=np.int64)),
        },
        columns=list(QUARANTINE_COLUMNS),
    )
    return frame


def _count_reordered(ts_ns: np.ndarray, accepted_pos_input_order: np.ndarray) -> int:
    if accepted_pos_input_order.size < 2:
        return 0
    seen = ts_ns[accepted_pos_input_order]
    running_max = np.maximum.accumulate(seen)
    return int(np.count_nonzero(seen[1:] < running_max[:-1]))


def validate_bars(
    raw: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str,
    source: str,
    instrument_class: str,
    run_id: str,
    now: datetime,
    config: ContractConfig = ContractConfig(),  # frozen, so one shared default is safe
    ts_faults: Mapping[int, tuple[ReasonCode, str]] | None = None,
) -> ValidationResult:
    """Apply the data contract to one (symbol, timeframe) batch of raw bars.

    Returns accepted canonical bars (sorted by ts, ingested_at = now), quarantined rows (one
    reason each) and a report. `ts_faults` are rows the source found faulty (position ->
    (reason, detail)); they are quarantined as given. Raises RawFrameError for an unusable
    frame or arguments, UnknownTimeframeError / UnknownInstrumentClassError for unknown codes.
    """
    _check_arguments(raw, symbol, timeframe, source, now)
    _check_text("run_id", run_id)
    check_instrument_class(instrument_class)
    now_utc = _utc(now)
    n = len(raw)
    parsed_ts, parsed = _parse(raw)
    tagger = _Tagger(n)
    _fault_rule(tagger, ts_faults or {}, n)
    _row_rules(tagger, raw, parsed_ts, parsed, timeframe, now_utc, config.max_price)
    ts_ns = parsed_ts.ns
    ordered = _duplicate_rule(tagger, ts_ns, parsed)
    ordered = _stale_rule(tagger, ordered, parsed, config.stale_min_run(timeframe))
    _spike_rule(tagger, ordered, parsed, config)

    accepted_mask = tagger.open_rows()
    accepted_input_order = np.flatnonzero(accepted_mask)
    accepted_sorted = accepted_input_order[np.argsort(ts_ns[accepted_input_order], kind="stable")]
    accepted = _bars_frame(ts_ns, parsed, accepted_sorted, symbol, timeframe, source, now_utc)
    q_pos = np.flatnonzero(~accepted_mask)
    quarantined = _quarantine_frame(
        raw, tagger, q_pos, ts_ns, symbol, timeframe, source, run_id, now_utc
    )

    try:
        gaps = find_gaps(accepted["ts"], instrument_class, timeframe)
        gaps_checked = True
    except UnsupportedCalendarError as exc:
        logger.info("gap check skipped for %s %s: %s", symbol, timeframe, exc)
        gaps, gaps_checked = (), False

    counts = np.bincount(tagger.code[q_pos], minlength=len(RULE_ORDER))
    by_reason = {code.value: int(counts[i]) for i, code in enumerate(RULE_ORDER) if counts[i]}
    report = ValidationReport(
        rows_in=n,
        accepted=len(accepted),
        quarantined=len(quarantined),
        reordered=_count_reordered(ts_ns, accepted_input_order),
        by_reason=by_reason,
        gaps=gaps,
        gap_count=len(gaps),
        missing_bars=sum(g.missing_bars for g in gaps),
        gaps_checked=gaps_checked,
    )
    if report.rows_in != report.accepted + report.quarantined:  # pragma: no cover - invariant
        msg = f"accounting broken: {report.rows_in} != {report.accepted} + {report.quarantined}"
        raise AssertionError(msg)
    logger.info(
        "validated %s %s from %s: %d in, %d accepted, %d quarantined %s, %d gaps",
        symbol,
        timeframe,
        source,
        report.rows_in,
        report.accepted,
        report.quarantined,
        by_reason,
        report.gap_count,
    )
    return ValidationResult(
        accepted=accepted, quarantined=quarantined, report=report, quarantined_positions=q_pos
    )
