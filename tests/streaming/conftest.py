"""Fixtures of the live-plane tests: real S&P 500 bars and small bundles trained on them."""

from __future__ import annotations

import pandas as pd
import pytest

from infra.sources import load_bundled
from ml.bundle import ModelBundle
from ml.features import FeatureConfig, compute_features, feature_columns
from ml.labels import direction_labels


def spx_bars(n: int, symbol: str = "SPX") -> pd.DataFrame:
    """The first `n` S&P 500 daily bars as canonical bars (symbol, timeframe, ts, OHLCV)."""
    raw = load_bundled("sp500").frame.iloc[:n]
    frame = raw.assign(symbol=symbol, timeframe="1d")
    frame["volume"] = frame["volume"].astype("float64")
    return frame[
        ["symbol", "timeframe", "ts", "open", "high", "low", "close", "volume"]
    ].reset_index(drop=True)


def sma_bundle() -> ModelBundle:
    from ml.models import SmaCrossoverModel

    cfg = FeatureConfig()
    cols = tuple(feature_columns(cfg))
    model = SmaCrossoverModel(fast=10, slow=50, confidence=0.6)
    bars = spx_bars(400)
    feats = compute_features(bars, cfg)
    ready = feats.loc[~feats["warmup"], list(cols)]
    model.fit(ready, pd.Series(1.0, index=ready.index))
    return ModelBundle(model=model, feature_config=cfg, columns=cols, name="sma_crossover")


def xgb_bundle(train_bars: pd.DataFrame, n_estimators: int = 30) -> ModelBundle:
    from ml.models import XGBoostModel

    cfg = FeatureConfig()
    cols = tuple(feature_columns(cfg))
    feats = compute_features(train_bars, cfg)
    labels = direction_labels(train_bars, horizon=1).values
    ok = (~feats["warmup"]) & labels.notna()
    model = XGBoostModel(n_estimators=n_estimators, max_depth=3, n_jobs=1, seed=0)
    model.fit(feats.loc[ok, list(cols)], labels[ok])
    return ModelBundle(model=model, feature_config=cfg, columns=cols, name="xgboost")


@pytest.fixture(scope="session")
def sma() -> ModelBundle:
    return sma_bundle()


@pytest.fixture(autouse=True)
def _one_xgboost_thread():
    """xgboost's per-call DMatrix uses every OpenMP thread by default (slow on busy CI cores);
    the worker sets OMP_NUM_THREADS=1, tests set the equivalent for the calling thread."""
    import xgboost as xgb

    with xgb.config_context(nthread=1):
        yield
