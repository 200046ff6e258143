"""PaperBroker: the simulated venue of the backtest and of paper trading.

Market orders queue until the next bar of their symbol and fill there with the shared cost model
(at the bar's open, or its close under the "next_close" fill model), capped by a share of the
bar's volume; a remainder stays queued for the following bars. An entry order's stop_loss /
take_profit rest at the broker once it fills and trigger intrabar: a gap through the stop fills
at the open, otherwise at the stop price (with spread and slippage); a take profit is a limit
and fills at its price (or the better open) with commission only. A triggered level flattens the
position and cancels the symbol's queued orders.

With a `state_path` every change is written atomically (temp file, fsync, rename) as JSON, and a
new broker on the same path continues from it: queued orders, positions, resting levels, client
ids seen (a restarted broker refuses a client id it saw before) and fills not yet polled.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from execution.broker import Broker, DuplicateOrderError, OrderRejectedError
from execution.config import StrategyConfig
from execution.costs import EwmaVol, commission, market_fill_price, volume_cap
from execution.domain import (
    Fill,
    Order,
    OrderAck,
    OrderStatus,
    OrderType,
    Position,
    Side,
    make_client_id,
)
from execution.engine import bar_close_ts
from execution.ledger import apply_to_position
from execution.signal import Bar
from execution.stops import check_trigger, trail

__all__ = ["PaperBroker"]

logger = logging.getLogger(__name__)

_STATE_VERSION = 1
_DUST = 1e-9


class PaperBroker(Broker):
    """Simulated venue implementing the Broker port with the shared cost model."""

    name = "paper"

    def __init__(self, config: StrategyConfig, state_path: Path | None = None) -> None:
        self.config = config
        self.state_path = Path(state_path) if state_path is not None else None
        self._queue: dict[str, list[list[Any]]] = {}  # symbol -> [[order, remaining], ...]
        self._seen: set[str] = set()
        self._unpolled: list[Fill] = []
        self._positions: dict[str, list[float]] = {}  # symbol -> [qty, avg]
        # symbol -> [direction, stop, take_profit, extreme, set_at_ts]
        self._protect: dict[str, list[Any]] = {}
        self._vol: dict[str, EwmaVol] = {}
        self._last_ts: dict[str, datetime] = {}
        self._fill_seq = 0
        if self.state_path is not None and self.state_path.exists():
            self._load(self.state_path)

    # -- Broker port -------------------------------------------------------------------------

    def connect(self) -> None:
        """Nothing to open: the paper venue is in-process."""

    def submit(self, order: Order) -> OrderAck:
        if order.client_id in self._seen:
            raise DuplicateOrderError(order.client_id)
        if order.order_type is not OrderType.MARKET:
            raise OrderRejectedError(
                order.client_id, "unsupported", "paper broker fills market orders only"
            )
        self._seen.add(order.client_id)
        self._queue.setdefault(order.symbol, []).append([order, order.quantity])
        self._persist()
        return OrderAck(order.client_id, OrderStatus.ACCEPTED, venue_order_id=order.client_id)

    def poll_fills(self) -> list[Fill]:
        fills, self._unpolled = self._unpolled, []
        if fills:
            self._persist()
        return fills

    def positions(self) -> dict[str, Position]:
        return {s: Position(s, q, a) for s, (q, a) in self._positions.items()}

    def open_orders(self) -> list[Order]:
        return [entry[0] for q in self._queue.values() for entry in q]

    def submitted_client_ids(self) -> frozenset[str]:
        return frozenset(self._seen)

    # -- simulation --------------------------------------------------------------------------

    def resting_levels(self) -> dict[str, tuple[float | None, float | None]]:
        """(stop, take_profit) resting per symbol with an open protected position."""
        return {s: (p[1], p[2]) for s, p in self._protect.items()}

    def on_bar(self, bar: Bar) -> list[Fill]:
        """Fill what is queued for bar.symbol and trigger its resting levels; returns the fills.

        The fills also stay available to `poll_fills` until polled. A bar not newer than the
        last one seen for its symbol (a replay) changes nothing and returns [].
        """
        sym = bar.symbol
        last = self._last_ts.get(sym)
        if last is not None and bar.ts <= last:
            logger.debug("paper broker ignores replayed bar %s %s", sym, bar.ts)
            return []
        vol_est = self._vol.get(sym)
        if vol_est is None:
            vol_est = self._vol[sym] = EwmaVol(self.config.vol_window)
        vol = vol_est.value  # closes up to the previous bar: what the decision saw
        fills: list[Fill] = []
        if self.config.fill == "next_open":
            self._fill_queued(bar, bar.open, bar.ts, vol, fills)
            self._trigger(bar, vol, fills)
        else:
            self._trigger(bar, vol, fills)
            self._fill_queued(bar, bar.close, bar_close_ts(bar), vol, fills)
        self._trail(bar)
        vol_est.update(bar.close)
        self._last_ts[sym] = bar.ts
        self._unpolled.extend(fills)
        self._persist()
        return fills

    def _fill_queued(
        self, bar: Bar, ref: float, ts: datetime, vol: float | None, out: list[Fill]
    ) -> None:
        queue = self._queue.get(bar.symbol)
        if not queue:
            return
        costs = self.config.costs
        budget = volume_cap(bar.volume, costs)
        while queue and budget > _DUST:
            entry = queue[0]
            order, remaining = entry
            q = min(remaining, budget)
            sign = order.side.sign
            price = market_fill_price(sign, ref, costs, vol)
            self._fill(order.client_id, bar.symbol, order.side, q, price, ref, ts, out, order)
            budget -= q
            remaining -= q
            if remaining <= _DUST * max(1.0, order.quantity):
                queue.pop(0)
            else:
                entry[1] = remaining

    def _trigger(self, bar: Bar, vol: float | None, out: list[Fill]) -> None:
        sym = bar.symbol
        prot = self._protect.get(sym)
        pos = self._positions.get(sym)
        if prot is None or pos is None:
            return
        direction, stop, tp = prot[0], prot[1], prot[2]
        hit = check_trigger(direction, stop, tp, bar.open, bar.high, bar.low)
        if hit is None:
            return
        kind, raw = hit
        side = Side.SELL if direction > 0 else Side.BUY
        if kind == "stop":
            price = market_fill_price(side.sign, raw, self.config.costs, vol)
        else:
            price = raw
        cid = make_client_id(self.config.strategy, sym, bar.ts, kind)
        self._seen.add(cid)
        self._fill(cid, sym, side, abs(pos[0]), price, raw, bar.ts, out, None)
        if self._queue.get(sym):
            logger.info(
                "paper broker cancels %d queued %s orders after %s",
                len(self._queue[sym]),
                sym,
                kind,
            )
            self._queue[sym] = []

    def _trail(self, bar: Bar) -> None:
        prot = self._protect.get(bar.symbol)
        if prot is None or prot[1] is None:
            return
        if self.config.fill == "next_close" and prot[4] == bar.ts:
            return
        prot[1], prot[3] = trail(self.config.stops, prot[0], prot[1], prot[3], bar.high, bar.low)

    def _fill(
        self,
        cid: str,
        sym: str,
        side: Side,
        q: float,
        price: float,
        ref: float,
        ts: datetime,
        out: list[Fill],
        order: Order | None,
    ) -> None:
        self._fill_seq += 1
        fill = Fill(
            client_id=cid,
            symbol=sym,
            side=side,
            quantity=q,
            price=price,
            commission=commission(q * price, self.config.costs),
            ts=ts,
            venue_fill_id=f"paper-{self._fill_seq}",
            slippage_cost=q * abs(price - ref),
        )
        out.append(fill)
        qty, avg = self._positions.get(sym, (0.0, 0.0))
        new_qty, new_avg = apply_to_position(qty, avg, side.sign * q, price)
        if new_qty == 0.0:
            self._positions.pop(sym, None)
        else:
            self._positions[sym] = [new_qty, new_avg]
        if new_qty == 0.0 or (qty != 0.0 and new_qty * qty < 0.0):
            self._protect.pop(sym, None)
        if (
            order is not None
            and order.intent == "entry"
            and sym not in self._protect
            and new_qty * side.sign > 0.0
            and (order.stop_loss is not None or order.take_profit is not None)
        ):
            self._protect[sym] = [side.sign, order.stop_loss, order.take_profit, price, ts]

    # -- persistence -------------------------------------------------------------------------

    def _persist(self) -> None:
        if self.state_path is None:
            return
        state = {
            "version": _STATE_VERSION,
            "queue": {
                s: [[_order_to_json(o), r] for o, r in q] for s, q in self._queue.items() if q
            },
            "seen": sorted(self._seen),
            "unpolled": [_fill_to_json(f) for f in self._unpolled],
            "positions": self._positions,
            "protect": {
                s: [p[0], p[1], p[2], p[3], p[4].isoformat()] for s, p in self._protect.items()
            },
            "vol": {s: asdict(v) for s, v in self._vol.items()},
            "last_ts": {s: t.isoformat() for s, t in self._last_ts.items()},
            "fill_seq": self._fill_seq,
        }
        path = self.state_path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(state, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _load(self, path: Path) -> None:
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("version") != _STATE_VERSION:
            msg = (
                f"paper broker state {path} has version {state.get('version')!r}, "
                f"expected {_STATE_VERSION}"
            )
            raise ValueError(msg)
        self._queue = {
            s: [[_order_from_json(o), float(r)] for o, r in q] for s, q in state["queue"].items()
        }
        self._seen = set(state["seen"])
        self._unpolled = [_fill_from_json(f) for f in state["unpolled"]]
        self._positions = {s: [float(q), float(a)] for s, (q, a) in state["positions"].items()}
        self._protect = {
            s: [int(p[0]), p[1], p[2], float(p[3]), datetime.fromisoformat(p[4])]
            for s, p in state["protect"].items()
        }
        self._vol = {s: EwmaVol(**v) for s, v in state["vol"].items()}
        self._last_ts = {s: datetime.fromisoformat(t) for s, t in state["last_ts"].items()}
        self._fill_seq = int(state["fill_seq"])
        logger.info(
            "paper broker resumed from %s: %d queued, %d seen ids, %d unpolled fills",
            path,
            sum(len(q) for q in self._queue.values()),
            len(self._seen),
            len(self._unpolled),
        )


def _order_to_json(o: Order) -> dict[str, Any]:
    d = {f: getattr(o, f) for f in Order.__slots__}
    d["side"] = o.side.value
    d["order_type"] = o.order_type.value
    d["ts"] = o.ts.isoformat()
    return d


def _order_from_json(d: Mapping[str, Any]) -> Order:
    values = dict(d)
    values["side"] = Side(values["side"])
    values["order_type"] = OrderType(values["order_type"])
    values["ts"] = datetime.fromisoformat(values["ts"])
    return Order(**values)


def _fill_to_json(f: Fill) -> dict[str, Any]:
    d = {k: getattr(f, k) for k in Fill.__slots__}
    d["side"] = f.side.value
    d["ts"] = f.ts.isoformat()
    return d


def _fill_from_json(d: Mapping[str, Any]) -> Fill:
    values = dict(d)
    values["side"] = Side(values["side"])
    values["ts"] = datetime.fromisoformat(values["ts"])
    return Fill(**values)
