"""User features: two columns added to the built-in feature set, plugged in by import path.

Reference them from candleflow.toml; no candleflow code changes:

```toml
[research]
features = ["examples.user_feature:range_position"]
feature_window = 250   # bars the live plane hands the function (>= its longest lookback)
```

A user feature is a function `bars -> DataFrame`: `bars` is indexed by bar open ts (UTC) with
columns open, high, low, close, volume; the result holds new columns on the same index. It must
be causal (row t reads bars up to t) and read at most `feature_window` bars back. The features
asset's blocking no-look-ahead check proves both on the real series at every materialization;
the live worker recomputes it on its newest `feature_window` bars and takes the last row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["WINDOW", "range_position"]

WINDOW = 20  # bars of the rolling range


def range_position(bars: pd.DataFrame) -> pd.DataFrame:
    """Where the close sits in its 20-bar high-low range (0 = at the low, 1 = at the high), and
    the overnight gap (log open over the previous close). Scale-free, like the built-ins."""
    high = bars["high"].rolling(WINDOW).max()
    low = bars["low"].rolling(WINDOW).min()
    width = high - low
    position = ((bars["close"] - low) / width).where(width > 0)
    gap = np.log(bars["open"] / bars["close"].shift(1))
    return pd.DataFrame({"range_pos_20": position, "open_gap": gap}, index=bars.index)
