"""Fixtures of the live-plane tests: real S&P 500 bars and small bundles trained on them."""

from __future__ import annotations

from typing import Any

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


def _rows(records: list, table: str) -> pd.DataFrame:
    return pd.DataFrame([dict(r.row) for _, r in records if r.table == table])


def assert_replay_equals_backtest(bars: pd.DataFrame, bundle: ModelBundle, config) -> Any:
    """Replay `bars` through the live dataflow with `bundle` and `config`, and prove its orders,
    fills, equity and predictions are the backtest's of the same bars; returns the backtest."""
    from bytewax.testing import TestingSink, run_main

    from execution.backtest import run_backtest
    from streaming.dataflow import StreamConfig, build_flow
    from streaming.models import LocalBundleProvider
    from streaming.sources import ReplaySource

    symbol = str(bars["symbol"].iloc[0])
    batch = bundle.predict_frame(bars).reset_index().assign(symbol=symbol)
    expected = run_backtest(bars, batch, config)
    assert len(expected.orders) >= 10, "the model must trade for the test to mean anything"

    out: list = []
    flow = build_flow(
        StreamConfig(strategy=config, symbols=(symbol,), progress_every=0),
        ReplaySource(bars),
        TestingSink(out),
        {symbol: LocalBundleProvider(bundle)},
    )
    run_main(flow)

    orders = _rows(out, "live_orders")
    assert orders["client_id"].tolist() == expected.orders["client_id"].tolist()
    assert orders["quantity"].to_numpy() == pytest.approx(
        expected.orders["quantity"].to_numpy(), rel=0, abs=1e-9
    )
    assert orders["side"].tolist() == expected.orders["side"].astype(str).tolist()
    fills = _rows(out, "live_fills")
    exp_fills = expected.fills
    assert fills["client_id"].tolist() == exp_fills["client_id"].tolist()
    for col in ("price", "quantity", "commission"):
        assert fills[col].to_numpy() == pytest.approx(exp_fills[col].to_numpy(), rel=0, abs=1e-9)
    assert fills["ts"].tolist() == list(exp_fills["ts"])
    equity = _rows(out, "live_equity").drop_duplicates("ts", keep="last").set_index("ts")["equity"]
    assert len(equity) == len(expected.equity) == len(bars)
    assert equity.to_numpy() == pytest.approx(expected.equity.to_numpy(), rel=0, abs=1e-6)
    preds = _rows(out, "live_predictions")
    assert preds["ts"].tolist() == list(batch["ts"])
    assert preds["p_up"].to_numpy() == pytest.approx(batch["p_up"].to_numpy(), rel=0, abs=1e-9)
    return expected
