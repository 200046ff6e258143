"""User feature functions: columns a user adds to the built-in feature set, by import path.

A user feature is a function `f(bars) -> pd.DataFrame` named in the config file:

```toml
[research]
features = ["examples.user_feature:range_position"]
feature_window = 250   # bars the live plane hands each function (its longest lookback)
```

`bars` is indexed by bar open ts (a UTC DatetimeIndex named "ts") with the canonical float
columns open, high, low, close, volume, oldest first; the function returns new columns on the
same index (a named Series counts as one column). It must be causal (row t reads bars <= t) and
read at most `feature_window` bars back: the batch plane applies it to the whole history, the
live plane to the newest `feature_window` bars and keeps the last row, and both must agree. NaN
marks warm-up, as for the built-ins.

Checked when the config is loaded (`user_columns`, run on a fixed synthetic series): importable,
callable, returns a frame on the input's index, column names distinct and not those of a
built-in feature. The features asset's blocking no-look-ahead check recomputes the user columns
on truncated and perturbed history too (a function reading bar t+1 fails it), and checks that
`feature_window` bars give the full history's values (live parity).

FeatureConfig carries the references (`user_features`, `feature_window`), so a saved model
bundle rebuilds the same columns wherever it is loaded.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ml.errors import ConfigError, FeatureInputError

if TYPE_CHECKING:
    from ml.features import FeatureConfig

__all__ = [
    "UserFeature",
    "add_user_features",
    "live_user_row",
    "probe_frame",
    "resolve_feature",
    "user_columns",
]

UserFeature = Callable[[pd.DataFrame], pd.DataFrame]
_OHLCV = ("open", "high", "low", "close", "volume")
_PROBE_BARS = 400  # synthetic bars the load-time check calls each function on


def resolve_feature(ref: str) -> UserFeature:
    """Import the function `module:function`; ConfigError names what is missing."""
    from ml.models import resolve_ref

    try:
        obj = resolve_ref(ref)
    except ConfigError as exc:
        msg = f"user feature {exc}"
        raise ConfigError(msg) from None
    if inspect.isclass(obj) or not callable(obj):
        msg = f"user feature {ref!r} is not a function bars -> DataFrame"
        raise ConfigError(msg)
    return obj  # type: ignore[no-any-return]


def _probe_bars(n: int) -> pd.DataFrame:
    """A fixed random-walk series with canonical columns: what the load-time check runs on."""
    rng = np.random.default_rng(20240101)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.002, n))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.01, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.01, n))
    volume = rng.uniform(1e5, 1e6, n)
    index = pd.date_range("2020-01-01", periods=n, freq="D", tz="UTC", name="ts")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


def _call(ref: str, func: UserFeature, bars: pd.DataFrame) -> pd.DataFrame:
    """The function's output on `bars`, checked: a float frame on the same index."""
    out = func(bars.copy())  # a copy: a function that writes into its input changes nothing
    if isinstance(out, pd.Series):
        if out.name is None:
            msg = f"user feature {ref} returned an unnamed Series; name it or return a DataFrame"
            raise FeatureInputError(msg)
        out = out.to_frame()
    if not isinstance(out, pd.DataFrame):
        msg = f"user feature {ref} returned {type(out).__name__}, not a DataFrame"
        raise FeatureInputError(msg)
    if not out.index.equals(bars.index):
        msg = (
            f"user feature {ref} returned an index that differs from its input's "
            f"({len(out)} rows for {len(bars)}); return the new columns on the bars' index"
        )
        raise FeatureInputError(msg)
    try:
        return out.astype(np.float64)
    except (TypeError, ValueError) as exc:
        msg = f"user feature {ref} returned non-numeric columns: {exc}"
        raise FeatureInputError(msg) from None


@functools.lru_cache(maxsize=64)
def _resolved(
    refs: tuple[str, ...], builtin: tuple[str, ...]
) -> tuple[tuple[str, UserFeature, tuple[str, ...]], ...]:
    """(ref, function, its column names) per reference, checked once per process."""
    taken = set(builtin) | {"warmup"}
    probe = _probe_bars(_PROBE_BARS)
    seen: dict[str, str] = {}
    out = []
    for ref in refs:
        func = resolve_feature(ref)
        try:
            frame = _call(ref, func, probe)
        except FeatureInputError as exc:
            raise ConfigError(str(exc)) from None
        cols = tuple(str(c) for c in frame.columns)
        if not cols:
            msg = f"user feature {ref} returned no columns"
            raise ConfigError(msg)
        for col in cols:
            if col in taken:
                msg = f"user feature {ref}: column {col!r} is a built-in feature name; rename it"
                raise ConfigError(msg)
            if col in seen:
                msg = f"user feature {ref}: column {col!r} is also made by {seen[col]}"
                raise ConfigError(msg)
            seen[col] = ref
        out.append((ref, func, cols))
    return tuple(out)


def _functions(config: FeatureConfig) -> tuple[tuple[str, UserFeature, tuple[str, ...]], ...]:
    from ml.features import builtin_feature_columns

    return _resolved(tuple(config.user_features), builtin_feature_columns(config))


def user_columns(config: FeatureConfig) -> tuple[str, ...]:
    """The user columns of `config`, in order; ConfigError when a reference cannot be used."""
    return tuple(c for _, _, cols in _functions(config) for c in cols)


def _user_frame(bars: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    parts = []
    for ref, func, cols in _functions(config):
        frame = _call(ref, func, bars)
        if tuple(str(c) for c in frame.columns) != cols:
            msg = f"user feature {ref} returned columns {list(frame.columns)}, before {list(cols)}"
            raise FeatureInputError(msg)
        parts.append(frame)
    return pd.concat(parts, axis=1) if len(parts) > 1 else parts[0]


def add_user_features(
    index: pd.DatetimeIndex,
    arrays: Mapping[str, np.ndarray],
    features: pd.DataFrame,
    config: FeatureConfig,
) -> pd.DataFrame:
    """`features` (built-in columns then `warmup`) with the user columns before `warmup`; a row
    where a user column is NaN is in warm-up too. Called by `compute_features`."""
    bars = pd.DataFrame({c: arrays[c] for c in _OHLCV}, index=index)
    if bars.index.name != "ts":
        bars.index.name = "ts"
    user = _user_frame(bars, config)
    user.index = features.index
    warmup = features["warmup"].to_numpy() | user.isna().to_numpy().any(axis=1)
    out = pd.concat([features.drop(columns="warmup"), user], axis=1)
    out["warmup"] = warmup
    return out


def live_user_row(recent: pd.DataFrame, config: FeatureConfig) -> np.ndarray:
    """The user columns of the newest bar, from the newest `config.feature_window` bars of
    `recent` (indexed by ts, OHLCV columns): the live plane's side of `add_user_features`."""
    window = recent.iloc[-config.feature_window :]
    return _user_frame(window, config).to_numpy(dtype=np.float64)[-1]


def probe_frame(bars: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """The user columns alone on a canonical bar frame (for checks that recompute them)."""
    from ml._bars import validated_bar_arrays

    index, arrays = validated_bar_arrays(bars)
    frame = pd.DataFrame({c: arrays[c] for c in _OHLCV}, index=index)
    frame.index.name = "ts"
    return _user_frame(frame, config)
