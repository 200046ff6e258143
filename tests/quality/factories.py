"""Builders for raw bar frames: a clean random walk, then faults injected cell by cell."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from quality import TIMEFRAMES, ContractConfig, ValidationResult, validate_bars

NOW = datetime(2024, 6, 1, tzinfo=UTC)
START = pd.Timestamp("2024-01-01", tz="UTC")
SOURCE = "unit-test"


def clean_bars(
    n: int = 40, *, timeframe: str = "1h", start: pd.Timestamp = START, seed: int = 0
) -> pd.DataFrame:
    """n valid raw bars on the grid: a small log-normal walk, open = previous close."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, n)))
    open_ = np.concatenate(([100.0], close[:-1]))[:n]
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=n, freq=TIMEFRAMES[timeframe]),
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": rng.integers(1, 1_000, n).astype("float64"),
        }
    )


def with_cells(raw: pd.DataFrame, row: int, **values: object) -> pd.DataFrame:
    """A copy of raw with the given cells of one row replaced (columns widened to object)."""
    out = raw.copy()
    for col, value in values.items():
        out[col] = out[col].astype(object)
        out.iloc[row, out.columns.get_loc(col)] = value
    return out


def run(
    raw: pd.DataFrame,
    *,
    timeframe: str = "1h",
    instrument_class: str = "crypto",
    config: ContractConfig | None = None,
) -> ValidationResult:
    """validate_bars with the fixed test clock and identities."""
    return validate_bars(
        raw,
        symbol="BTCUSD",
        timeframe=timeframe,
        source=SOURCE,
        instrument_class=instrument_class,
        run_id="run-1",
        now=NOW,
        config=config or ContractConfig(),
    )


def reasons_by_position(result: ValidationResult) -> dict[int, str]:
    """Raw row position -> reason code value, for the quarantined rows."""
    return dict(
        zip(
            result.quarantined_positions.tolist(),
            result.quarantined["reason"].tolist(),
            strict=True,
        )
    )
