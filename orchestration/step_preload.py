"""What the multiprocess executor's forkserver loads once, so that no step process pays for it.

Each research step is a process forked from the run's forkserver (orchestration.executors).
Whatever the forkserver has not loaded, every step loads again: profiled on a 10k-bar series,
each step spent ~0.5 s opening Dagster's instance (its SQLite storage modules), the
validation step 2.4 s importing Great Expectations, the MLflow steps ~0.5 s importing its
SQLAlchemy store, and every step that runs a compiled kernel ~0.45 s initialising numba's CPU
target and loading its cached kernels. Importing this module does all of that once: the
modules, then the features and labels of a few hundred bars of arch's bundled S&P 500 (which
loads every feature kernel from numba's cache). It starts no thread (forking is safe after it).
A failure to warm is logged and ignored: the steps then load what they need themselves.
"""

from __future__ import annotations

import logging
import warnings

import dagster._core.storage.event_log.sqlite.sqlite_event_log  # the instance storage
import dagster._core.storage.runs.sqlite.sqlite_run_storage
import dagster._core.storage.schedules.sqlite.sqlite_schedule_storage  # noqa: F401
import great_expectations  # noqa: F401 - the validation step

with warnings.catch_warnings():  # SQLAlchemy's deprecation of a loader MLflow's mappers name
    warnings.simplefilter("ignore", DeprecationWarning)
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - the MLflow steps

__all__ = ["warm_kernels"]

_log = logging.getLogger(__name__)


def warm_kernels(rows: int = 400) -> None:
    """Run the feature and label code once on `rows` bundled bars (numba loads its kernels)."""
    import pandas as pd
    from arch.data import sp500

    from ml.features import compute_features
    from ml.pipeline import ResearchConfig, research_labels

    raw = sp500.load().iloc[:rows]
    bars = pd.DataFrame({
        "ts": pd.DatetimeIndex(raw.index).tz_localize("UTC"),
        "open": raw["Open"].to_numpy(), "high": raw["High"].to_numpy(),
        "low": raw["Low"].to_numpy(), "close": raw["Close"].to_numpy(),
        "volume": raw["Volume"].to_numpy(dtype=float),
    })  # fmt: skip
    compute_features(bars)
    research_labels(bars, ResearchConfig())


try:
    warm_kernels()
except Exception as exc:  # warming is an optimisation, never a failure
    _log.warning("step preload: kernels not warmed (%s); each step loads them itself", exc)
