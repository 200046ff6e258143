"""Backtest vs live dataflow: the same bars and model give the same orders, fills and equity."""

from __future__ import annotations

import pandas as pd
import pytest
from bytewax.testing import TestingSink, run_main

from execution.backtest import run_backtest
from execution.config import StopConfig, StrategyConfig
from streaming.dataflow import StreamConfig, build_flow
from streaming.models import LocalBundleProvider
from streaming.sources import ReplaySource
from tests.streaming.conftest import spx_bars, xgb_bundle

pytestmark = [pytest.mark.parity, pytest.mark.slow]


def _rows(records: list, table: str) -> pd.DataFrame:
    return pd.DataFrame([dict(r.row) for _, r in records if r.table == table])


@pytest.mark.parametrize("stops", ["none", "atr"])
def test_replay_when_same_bars_and_model_then_live_equals_backtest(stops: str) -> None:
    bars = spx_bars(1500)
    bundle = xgb_bundle(bars.iloc[:700])
    config = StrategyConfig(
        stops=StopConfig(kind=stops, atr_mult=2.0),
    )
    batch = bundle.predict_frame(bars).reset_index().assign(symbol="SPX")
    expected = run_backtest(bars, batch, config)
    assert len(expected.orders) >= 10, "the model must trade for the test to mean anything"

    out: list = []
    flow = build_flow(
        StreamConfig(strategy=config, symbols=("SPX",), progress_every=0),
        ReplaySource(bars),
        TestingSink(out),
        {"SPX": LocalBundleProvider(bundle)},
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
