"""Generic records (orders, fills, positions, equity...): column kinds, validation, decoding.

Both stores keep, per table, the key columns and a manifest of column kinds so that values
come back with the type they were written with (timestamps tz-aware UTC in particular).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from infra.stores._base import TABLE_NAME, StoreError

KINDS = ("null", "str", "bool", "int", "float", "timestamp")


def check_table(table: str) -> str:
    if not isinstance(table, str) or not TABLE_NAME.match(table):
        msg = (
            f"record table name {table!r} is not valid; use lowercase letters, digits and "
            "underscores, starting with a letter, at most 41 characters"
        )
        raise StoreError(msg)
    return table


def _value_kind(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, int | np.integer):
        return "int"
    if isinstance(value, float | np.floating):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            msg = f"record timestamp {value!r} is naive; use tz-aware (UTC) timestamps"
            raise StoreError(msg)
        return "timestamp"
    msg = (
        f"record value {value!r} of type {type(value).__name__} is not storable; "
        "use str, float, int, bool, None or a tz-aware Timestamp"
    )
    raise StoreError(msg)


def column_kind(series: pd.Series) -> str:
    """The kind of one column; mixed kinds (other than int with float) are rejected."""
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamp"
    if pd.api.types.is_datetime64_dtype(dtype):
        msg = f"record column {series.name!r} holds naive timestamps; make them tz-aware (UTC)"
        raise StoreError(msg)
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float" if series.notna().any() else "null"
    kinds = {_value_kind(v) for v in series if not _is_missing(v)}
    if not kinds:
        return "null"
    if kinds == {"int", "float"}:
        return "float"
    if len(kinds) > 1:
        msg = f"record column {series.name!r} mixes value kinds {sorted(kinds)}; use one kind"
        raise StoreError(msg)
    return kinds.pop()


def merge_kinds(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """Union of two manifests (old column order first); int widens to float, null to anything."""
    out = dict(old)
    for col, kind in new.items():
        have = out.get(col)
        if have is None or have == "null":
            out[col] = kind
        elif kind in ("null", have):
            continue
        elif {have, kind} == {"int", "float"}:
            out[col] = "float"
        else:
            msg = (
                f"record column {col!r} was stored as {have} and is now written as {kind}; "
                "keep one kind per column (or write to a new table)"
            )
            raise StoreError(msg)
    return out


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def prepare_records(
    table: str, frame: pd.DataFrame, key: Sequence[str]
) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """Validate a batch; return (copy, key columns, kinds)."""
    check_table(table)
    key = list(key)
    if not key:
        msg = f"records for {table!r} need at least one key column"
        raise StoreError(msg)
    cols = [str(c) for c in frame.columns]
    if len(set(cols)) != len(cols):
        msg = f"records for {table!r} have repeated column names"
        raise StoreError(msg)
    missing = [k for k in key if k not in cols]
    if missing:
        msg = f"records for {table!r} lack key column(s) {', '.join(missing)}"
        raise StoreError(msg)
    out = frame.copy()
    out.columns = cols
    out = out.reset_index(drop=True)
    kinds = {c: column_kind(out[c]) for c in cols}
    null_keys = [k for k in key if out[k].map(_is_missing).any()]
    if null_keys:
        msg = f"records for {table!r} have null key values in {', '.join(null_keys)}"
        raise StoreError(msg)
    if out.duplicated(key).any():
        msg = f"records for {table!r} repeat a key ({', '.join(key)}) within one batch"
        raise StoreError(msg)
    return out, key, kinds


def encode_value(value: Any, kind: str) -> Any:
    """A JSON-ready value: timestamps as ISO text (ns kept), non-finite floats as text."""
    if _is_missing(value):
        return None
    if kind == "timestamp":
        return pd.Timestamp(value).tz_convert("UTC").isoformat()
    if kind == "float":
        f = float(value)
        return f if math.isfinite(f) else ("Infinity" if f > 0 else "-Infinity")
    if kind == "int":
        return int(value)
    if kind == "bool":
        return bool(value)
    return str(value)


def encode_rows(frame: pd.DataFrame, kinds: Mapping[str, str]) -> list[dict[str, Any]]:
    cols = list(frame.columns)
    columns = [[encode_value(v, kinds[c]) for v in frame[c].tolist()] for c in cols]
    return [dict(zip(cols, row, strict=True)) for row in zip(*columns, strict=True)]


def key_text(row: Mapping[str, Any], key: Sequence[str]) -> str:
    return json.dumps([row[k] for k in key], separators=(",", ":"))


def cast_column(values: Sequence[Any] | pd.Series, kind: str) -> pd.Series:
    """Cast decoded (JSON-level) or raw values to the column's dtype."""
    series = pd.Series(list(values), dtype=object)
    missing = series.map(_is_missing)
    if kind == "timestamp":
        return pd.to_datetime(series.where(~missing, None), utc=True, format="ISO8601").astype(
            "datetime64[ns, UTC]"
        )
    if kind == "float":
        return series.map(lambda v: np.nan if _is_missing(v) else float(v)).astype("float64")
    if kind == "int":
        if missing.any():
            return series.where(~missing, None).astype("Int64")
        return series.astype("int64")
    if kind == "bool":
        if missing.any():
            return series.where(~missing, None).astype("boolean")
        return series.astype(bool)
    return series.where(~missing, None).astype(object)


def decode_frame(
    rows: Sequence[Mapping[str, Any]], kinds: Mapping[str, str], key: Sequence[str]
) -> pd.DataFrame:
    cols = list(kinds)
    data = {c: cast_column([r.get(c) for r in rows], kinds[c]) for c in cols}
    frame = pd.DataFrame(data, columns=cols)
    if frame.empty:
        return frame
    return frame.sort_values(list(key), kind="stable").reset_index(drop=True)


# Every live table is keyed on the writing worker's strategy instance first (streaming.steps),
# so that two workers (a 1d and a 1h one) never overwrite each other. Tables written before
# that came from the single worker of the time and get LEGACY_INSTANCE; the TimescaleDB store
# does the same in infra/sql/006_live_instance.sql.
INSTANCE_COLUMN = "instance"
LEGACY_INSTANCE = "default"
INSTANCE_KEYED_TABLES = frozenset(
    {"live_orders", "live_fills", "live_equity", "live_positions", "live_predictions"}
)


def needs_instance(table: str, key: Sequence[str]) -> bool:
    """Whether `table`, stored with `key`, predates the instance column of the live tables."""
    return table in INSTANCE_KEYED_TABLES and INSTANCE_COLUMN not in key


def add_instance(
    frame: pd.DataFrame, key: Sequence[str], kinds: Mapping[str, str]
) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """A live table of the old layout in the new one: LEGACY_INSTANCE as the first key column."""
    out = frame.copy()
    out.insert(0, INSTANCE_COLUMN, pd.Series(LEGACY_INSTANCE, index=out.index, dtype=object))
    return out, [INSTANCE_COLUMN, *key], {INSTANCE_COLUMN: "str", **kinds}
