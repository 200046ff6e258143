"""The live gates: live trading must name its venue, and paper under LIVE=1 is said aloud."""

from __future__ import annotations

import logging

import pytest

from execution.broker import LiveTradingNotEnabledError
from infra.settings import Settings
from streaming.worker import WorkerArgs, WorkerArgsError, live_broker_from_settings


def _settings(tmp_path, **env: str) -> Settings:
    return Settings.from_env({"CANDLEFLOW_HOME": str(tmp_path), **env})


def test_gate_when_live_without_broker_then_refused_naming_the_variable(tmp_path) -> None:
    with pytest.raises(LiveTradingNotEnabledError, match="CANDLEFLOW_BROKER is not set"):
        live_broker_from_settings(_settings(tmp_path, CANDLEFLOW_LIVE="1"))


def test_gate_when_live_with_paper_broker_then_paper_and_a_warning(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="streaming.worker")

    broker = live_broker_from_settings(
        _settings(tmp_path, CANDLEFLOW_LIVE="1", CANDLEFLOW_BROKER="paper")
    )

    assert broker is None
    assert any("event=live_on_paper" in r.getMessage() for r in caplog.records)


def test_gate_when_paper_without_live_then_paper_and_silent(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="streaming.worker")

    assert live_broker_from_settings(_settings(tmp_path)) is None
    assert not caplog.records


def test_gate_when_mt5_live_but_package_missing_then_one_line_worker_error(tmp_path) -> None:
    import importlib.util

    if importlib.util.find_spec("MetaTrader5") is not None:
        pytest.skip("MetaTrader5 is installed here")
    settings = _settings(tmp_path, CANDLEFLOW_LIVE="1", CANDLEFLOW_BROKER="mt5")

    with pytest.raises(WorkerArgsError, match="MetaTrader5 package is not installed"):
        live_broker_from_settings(settings)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"symbols": ("SPX",)}, "is not SYMBOL@TIMEFRAME"),
        ({"bundle": "/nope/bundle"}, "--bundle /nope/bundle: no such file"),
        ({"strategy": "/nope/s.json"}, "--strategy /nope/s.json: no such file"),
    ],
)
def test_worker_args_when_unusable_then_refused_before_anything_starts(kwargs, says) -> None:
    from pathlib import Path

    args = {k: Path(v) if k in ("bundle", "strategy") else v for k, v in kwargs.items()}
    with pytest.raises(WorkerArgsError, match=says):
        WorkerArgs(**args)


def test_governor_when_daily_loss_halts_repeatedly_then_one_risk_halt_line_until_cleared(
    caplog,
) -> None:
    from execution.config import RiskLimits
    from execution.domain import Side
    from execution.risk import OrderIntent, PortfolioView
    from streaming.worker import AlertingGovernor

    caplog.set_level(logging.WARNING, logger="streaming.worker")
    gov = AlertingGovernor(RiskLimits(daily_loss_halt=0.05))
    intent = OrderIntent("SPX", Side.BUY, 1.0, 100.0)
    losing = PortfolioView(94_000.0, 100_000.0, 100_000.0, {}, {}, 0)
    healthy = PortfolioView(100_000.0, 100_000.0, 100_000.0, {}, {}, 0)

    decisions = [gov.check(intent, losing) for _ in range(5)]
    gov.check(intent, healthy)
    gov.check(intent, losing)

    assert {d.reason for d in decisions} == {"daily_loss_halt"}
    halts = [r for r in caplog.records if r.getMessage().startswith("event=risk_halt ")]
    assert len(halts) == 2 and "reason=daily_loss_halt" in halts[0].getMessage()
    assert any("event=risk_halt_cleared" in r.getMessage() for r in caplog.records)


def test_gate_when_mt5_live_then_the_journal_instance_is_the_workers(tmp_path, monkeypatch) -> None:
    import mt5_bridge
    from mt5_bridge import MT5Broker

    seen = {}

    class _Connected:
        def connect(self) -> None:
            seen["connected"] = True

    def from_settings(settings, module, config, **kwargs):
        seen["instance"] = config.instance
        return _Connected()

    monkeypatch.setattr(mt5_bridge, "load_mt5_module", lambda kind: object())
    monkeypatch.setattr(MT5Broker, "from_settings", staticmethod(from_settings))
    settings = _settings(tmp_path, CANDLEFLOW_LIVE="1", CANDLEFLOW_BROKER="mt5")

    live_broker_from_settings(settings, instance="sma@1h")

    assert seen == {"instance": "sma@1h", "connected": True}
