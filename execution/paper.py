"""PaperBroker: the simulated venue of the backtest and of paper trading.

Market orders queue until the next bar of their symbol and fill there with the shared cost model
(at the bar's open, or its close under the "next_close" fill model), capped per bar by a share
of the volume known before the bar (`CostModel.volume_window` bars, never the bar being filled;
the instrument decides the share, and FX is uncapped by default because its volume counts
ticks). An entry works for one bar under the default partial-fill policy ("cancel": the rest is
cancelled at the end of the bar it first could fill in), or `partial_fill_bars` bars under
"keep" (then it expires); exits work until filled. Without `allow_margin` a buy that opens or
adds to a long fills only what the cash at the fill price pays for, commission included, and the
rest is cancelled ("insufficient_cash").

When an entry with stop_loss / take_profit fills, the broker opens them as orders of their own
(a STOP and a LIMIT, client ids derived from the entry's, announced as OrderSubmitted +
OrderAccepted). They trigger intrabar: a gap through the stop fills at the open, otherwise at the
stop price (with spread and slippage); a take profit is a limit and fills at its price (or the
better open) with commission only. One cancels the other; a triggered level flattens the position
and cancels the symbol's queued orders; a position closed otherwise cancels both.

Everything that happens after `submit` is reported as order events (`execution.orders`), by
`on_bar` and `poll_events`; `cancel` answers synchronously. Instruments (execution.instruments)
refuse orders above their maximum, and entries below their minimum, at `submit`.

With a `state_path` every change is written atomically (temp file, fsync, rename) as JSON, and a
new broker on the same path continues from it: queued orders, positions, cash, resting levels,
client ids seen (a restarted broker refuses a client id it saw before) and events not yet polled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
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
)
from execution.engine import bar_close_ts
from execution.instruments import Instrument, instrument_for
from execution.ledger import DUST, apply_to_position, closing_quantity, crosses_zero
from execution.orders import (
    Cancel,
    OrderAccepted,
    OrderCancelled,
    OrderEvent,
    OrderExpired,
    OrderSubmitted,
)
from execution.signal import Bar
from execution.stops import check_trigger, opens_protection, trail

__all__ = [
    "END_OF_BAR_CANCELLED",
    "END_OF_BAR_EXPIRED",
    "END_OF_BAR_WORKING",
    "PaperBroker",
    "affordable_units",
    "cash_limited_quantity",
    "end_of_bar_step",
    "fill_complete",
    "protective_client_id",
]

logger = logging.getLogger(__name__)

_STATE_VERSION = 2


def protective_client_id(entry_client_id: str, kind: str) -> str:
    """Client id of the stop ("stop") or take profit ("take_profit") an entry opened."""
    return "cf" + hashlib.sha256(f"{entry_client_id}|{kind}".encode()).hexdigest()[:16]


def affordable_units(
    cash: float, price: float, commission_bps: float, commission_min: float, step: float
) -> float:
    """Most units (a multiple of `step` when > 0) a buy at `price` may take so that cash stays
    >= 0 after its notional and commission; 0 when not even that. Scalar, shared with the
    compiled backtest."""
    if cash <= 0.0 or price <= 0.0:
        return 0.0
    rate = commission_bps * 1e-4
    q = cash / (price * (1.0 + rate))
    if q * price * rate < commission_min:
        q = (cash - commission_min) / price
    if step > 0.0:
        q = math.floor(q / step) * step
    # Float rounding may leave the product a hair above the cash; step back until it fits.
    while q > 0.0 and q * price + max(q * price * rate, commission_min) > cash:
        q = q - step if step > 0.0 else q * (1.0 - 1e-12)
    return max(q, 0.0)


def cash_limited_quantity(
    sign: int,
    q: float,
    position: float,
    cash: float,
    price: float,
    allow_margin: bool,
    commission_bps: float,
    commission_min: float,
    step: float,
) -> tuple[float, bool]:
    """(units that fill, short of cash) of a fill of `q` units on side `sign` at `price`.

    Without margin a buy fills what closes a short in full and, of the units that open or add to
    a long, only what the cash left after the closing part pays for (`affordable_units`); short
    of cash means the rest is cancelled. Sells and margin accounts fill `q`. Scalar, shared with
    the compiled backtest."""
    if sign > 0 and not allow_margin:
        closing = closing_quantity(position, sign, q)
        if q > closing:
            afford = affordable_units(
                cash - closing * price, price, commission_bps, commission_min, step
            )
            if closing + afford < q:
                return closing + afford, True
    return q, False


def fill_complete(remaining: float, quantity: float) -> bool:
    """True when an order of `quantity` units with `remaining` units left is done at the venue:
    the rest is float dust relative to its size (a rest above 1e-9 units, which the engine still
    counts, is then cancelled as "dust"). Scalar, shared with the compiled backtest."""
    return remaining <= DUST * max(1.0, quantity)


# What the partial-fill policy makes of an order at the end of a bar (end_of_bar_step).
END_OF_BAR_WORKING, END_OF_BAR_CANCELLED, END_OF_BAR_EXPIRED = range(3)


def end_of_bar_step(
    is_entry: bool, bars_worked: int, keep: bool, keep_bars: int
) -> tuple[int, int]:
    """(bars worked, outcome) of an order still queued at the end of a bar it could fill in.

    Exits work until filled. An entry works one bar under the "cancel" policy (then the rest is
    cancelled), `keep_bars` bars in all under "keep" (then it expires). Scalar, shared with the
    compiled backtest."""
    if not is_entry:
        return bars_worked, END_OF_BAR_WORKING
    bars_worked += 1
    if bars_worked < (keep_bars if keep else 1):
        return bars_worked, END_OF_BAR_WORKING
    return bars_worked, END_OF_BAR_EXPIRED if keep else END_OF_BAR_CANCELLED


class PaperBroker(Broker):
    """Simulated venue implementing the Broker port with the shared cost model."""

    name = "paper"

    def __init__(self, config: StrategyConfig, state_path: Path | None = None) -> None:
        self.config = config
        self.state_path = Path(state_path) if state_path is not None else None
        # symbol -> [[order, remaining, bars worked], ...] in arrival order
        self._queue: dict[str, list[list[Any]]] = {}
        self._seen: set[str] = set()
        self._events: list[OrderEvent] = []  # not yet polled
        self._positions: dict[str, list[float]] = {}  # symbol -> [qty, avg]
        self._cash = float(config.initial_cash)
        # symbol -> [direction, stop, take_profit, extreme, set_at_ts, stop_cid, tp_cid]
        self._protect: dict[str, list[Any]] = {}
        self._vol: dict[str, EwmaVol] = {}
        self._volumes: dict[str, list[float]] = {}  # the last volume_window bar volumes
        self._last_ts: dict[str, datetime] = {}
        self._instruments: dict[str, Instrument] = {}
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
        inst = self.instrument(order.symbol)
        if order.quantity > inst.max_quantity:
            raise OrderRejectedError(
                order.client_id,
                "invalid_volume",
                f"{order.quantity:.10g} units above the maximum of {inst.max_quantity:.10g}",
            )
        if order.intent == "entry" and order.quantity < inst.min_quantity:
            raise OrderRejectedError(
                order.client_id,
                "invalid_volume",
                f"{order.quantity:.10g} units below the minimum of {inst.min_quantity:.10g}",
            )
        self._seen.add(order.client_id)
        self._queue.setdefault(order.symbol, []).append([order, order.quantity, 0])
        self._persist()
        return OrderAck(order.client_id, OrderStatus.ACCEPTED, venue_order_id=order.client_id)

    def cancel(self, request: Cancel) -> list[OrderEvent]:
        queue = self._queue.get(request.symbol, [])
        for k, (order, remaining, _bars) in enumerate(queue):
            if order.client_id == request.client_id:
                del queue[k]
                self._persist()
                return [
                    OrderCancelled(
                        order.client_id, order.symbol, request.ts, remaining, request.reason
                    )
                ]
        return []

    def poll_fills(self) -> list[Fill]:
        events, self._events = self._events, []
        if events:
            self._persist()
        return [e for e in events if isinstance(e, Fill)]

    def poll_events(self) -> list[OrderEvent]:
        events, self._events = self._events, []
        if events:
            self._persist()
        return events

    def positions(self) -> dict[str, Position]:
        return {s: Position(s, q, a) for s, (q, a) in self._positions.items()}

    def open_orders(self) -> list[Order]:
        return [entry[0] for q in self._queue.values() for entry in q]

    def submitted_client_ids(self) -> frozenset[str]:
        return frozenset(self._seen)

    # -- simulation --------------------------------------------------------------------------

    @property
    def cash(self) -> float:
        return self._cash

    def instrument(self, symbol: str) -> Instrument:
        inst = self._instruments.get(symbol)
        if inst is None:
            inst = self._instruments[symbol] = instrument_for(symbol, self.config)
        return inst

    def resting_levels(self) -> dict[str, tuple[float | None, float | None]]:
        """(stop, take_profit) resting per symbol with an open protected position."""
        return {s: (p[1], p[2]) for s, p in self._protect.items()}

    def on_bar(self, bar: Bar) -> list[OrderEvent]:
        """Fill what is queued for bar.symbol, trigger its resting levels, apply the partial-fill
        policy; returns the events, which also stay available to `poll_events` until polled.

        A bar not newer than the last one seen for its symbol (a replay) changes nothing.
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
        out: list[OrderEvent] = []
        if self.config.fill == "next_open":
            self._fill_queued(bar, bar.open, bar.ts, vol, out)
            self._trigger(bar, vol, out)
        else:
            self._trigger(bar, vol, out)
            self._fill_queued(bar, bar.close, bar_close_ts(bar), vol, out)
        self._end_of_bar(bar, out)
        self._trail(bar)
        vol_est.update(bar.close)
        known = self._volumes.setdefault(sym, [])
        known.append(bar.volume)
        del known[: -self.config.costs.volume_window]
        self._last_ts[sym] = bar.ts
        self._events.extend(out)
        self._persist()
        return out

    def _known_volume(self, sym: str) -> float:
        known = self._volumes.get(sym)
        if not known:
            return 0.0  # nothing known yet: uncapped (volume_cap treats 0 as "no volume")
        return sum(known) / len(known)

    def _fill_queued(
        self, bar: Bar, ref: float, ts: datetime, vol: float | None, out: list[OrderEvent]
    ) -> None:
        queue = self._queue.get(bar.symbol)
        if not queue:
            return
        costs = self.config.costs
        inst = self.instrument(bar.symbol)
        budget = volume_cap(self._known_volume(bar.symbol), inst.max_volume_share)
        k = 0
        while k < len(queue) and budget > DUST:
            entry = queue[k]
            order, remaining = entry[0], entry[1]
            q = min(remaining, budget)
            sign = order.side.sign
            price = market_fill_price(sign, ref, costs, vol)
            pos = self._positions.get(bar.symbol, (0.0, 0.0))[0]
            q, short_of_cash = cash_limited_quantity(
                sign,
                q,
                pos,
                self._cash,
                price,
                self.config.allow_margin,
                costs.commission_bps,
                costs.commission_min,
                inst.quantity_step,
            )
            if q > DUST:
                self._fill(order.client_id, bar.symbol, order.side, q, price, ref, ts, out, order)
                budget -= q
                remaining -= q
            if short_of_cash:
                del queue[k]
                out.append(
                    OrderCancelled(order.client_id, bar.symbol, ts, remaining, "insufficient_cash")
                )
                continue
            if fill_complete(remaining, order.quantity):
                del queue[k]
                if remaining > DUST:
                    # A rest too small to trade; say so, since the engine still counts it.
                    out.append(OrderCancelled(order.client_id, bar.symbol, ts, remaining, "dust"))
            else:
                entry[1] = remaining
                k += 1

    def _end_of_bar(self, bar: Bar, out: list[OrderEvent]) -> None:
        """The partial-fill policy: entries that had their bar(s) stop working."""
        queue = self._queue.get(bar.symbol)
        if not queue:
            return
        ts = bar_close_ts(bar)
        keep_policy = self.config.partial_fill == "keep"
        keep: list[list[Any]] = []
        for entry in queue:
            order, remaining = entry[0], entry[1]
            entry[2], outcome = end_of_bar_step(
                order.intent == "entry", entry[2], keep_policy, self.config.partial_fill_bars
            )
            if outcome == END_OF_BAR_WORKING:
                keep.append(entry)
            elif outcome == END_OF_BAR_CANCELLED:
                out.append(OrderCancelled(order.client_id, bar.symbol, ts, remaining, "end_of_bar"))
            else:
                out.append(OrderExpired(order.client_id, bar.symbol, ts, remaining))
        self._queue[bar.symbol] = keep

    def _trigger(self, bar: Bar, vol: float | None, out: list[OrderEvent]) -> None:
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
            cid, other = prot[5], prot[6]
        else:
            price = raw
            cid, other = prot[6], prot[5]
        # One cancels the other; the position is closed, so nothing queued may still open one.
        self._protect.pop(sym)
        self._fill(cid, sym, side, abs(pos[0]), price, raw, bar.ts, out, None)
        if other is not None:
            out.append(OrderCancelled(other, sym, bar.ts, abs(pos[0]), "oco"))
        queue = self._queue.get(sym)
        if queue:
            logger.info("paper broker cancels %d queued %s orders after %s", len(queue), sym, kind)
            for order, remaining, _bars in queue:
                out.append(OrderCancelled(order.client_id, sym, bar.ts, remaining, kind))
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
        out: list[OrderEvent],
        order: Order | None,
    ) -> None:
        self._fill_seq += 1
        fee = commission(q * price, self.config.costs)
        fill = Fill(
            client_id=cid,
            symbol=sym,
            side=side,
            quantity=q,
            price=price,
            commission=fee,
            ts=ts,
            venue_fill_id=f"paper-{self._fill_seq}",
            slippage_cost=q * abs(price - ref),
        )
        out.append(fill)
        self._cash -= side.sign * q * price + fee
        qty, avg = self._positions.get(sym, (0.0, 0.0))
        new_qty, new_avg = apply_to_position(qty, avg, side.sign * q, price)
        if new_qty == 0.0:
            self._positions.pop(sym, None)
        else:
            self._positions[sym] = [new_qty, new_avg]
        if crosses_zero(qty, new_qty):
            prot = self._protect.pop(sym, None)
            if prot is not None:
                for pcid in (prot[5], prot[6]):
                    if pcid is not None:
                        out.append(OrderCancelled(pcid, sym, ts, abs(qty), "position_closed"))
        if order is not None and opens_protection(
            order.intent == "entry",
            sym in self._protect,
            side.sign,
            new_qty,
            order.stop_loss is not None,
            order.take_profit is not None,
        ):
            self._open_protection(order, side, abs(new_qty), price, ts, out)

    def _open_protection(
        self, entry: Order, side: Side, qty: float, price: float, ts: datetime, out: list[Any]
    ) -> None:
        sym = entry.symbol
        exit_side = Side.SELL if side is Side.BUY else Side.BUY
        stop_cid = tp_cid = None
        for kind, level in (("stop", entry.stop_loss), ("take_profit", entry.take_profit)):
            if level is None:
                continue
            cid = protective_client_id(entry.client_id, kind)
            self._seen.add(cid)
            order = Order(
                client_id=cid,
                symbol=sym,
                side=exit_side,
                quantity=qty,
                ts=ts,
                intent=kind,
                order_type=OrderType.STOP if kind == "stop" else OrderType.LIMIT,
                limit_price=level if kind == "take_profit" else None,
                stop_price=level if kind == "stop" else None,
                strategy=entry.strategy,
            )
            out.append(OrderSubmitted(order))
            out.append(OrderAccepted(cid, sym, ts, cid))
            if kind == "stop":
                stop_cid = cid
            else:
                tp_cid = cid
        self._protect[sym] = [
            side.sign,
            entry.stop_loss,
            entry.take_profit,
            price,
            ts,
            stop_cid,
            tp_cid,
        ]

    # -- persistence -------------------------------------------------------------------------

    def _persist(self) -> None:
        if self.state_path is None:
            return
        state = {
            "version": _STATE_VERSION,
            "queue": {
                s: [[_order_to_json(o), r, b] for o, r, b in q] for s, q in self._queue.items() if q
            },
            "seen": sorted(self._seen),
            "events": [_event_to_json(e) for e in self._events],
            "positions": self._positions,
            "cash": self._cash,
            "protect": {
                s: [p[0], p[1], p[2], p[3], p[4].isoformat(), p[5], p[6]]
                for s, p in self._protect.items()
            },
            "vol": {s: asdict(v) for s, v in self._vol.items()},
            "volumes": self._volumes,
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
            s: [[_order_from_json(o), float(r), int(b)] for o, r, b in q]
            for s, q in state["queue"].items()
        }
        self._seen = set(state["seen"])
        self._events = [_event_from_json(e) for e in state["events"]]
        self._positions = {s: [float(q), float(a)] for s, (q, a) in state["positions"].items()}
        self._cash = float(state["cash"])
        self._protect = {
            s: [int(p[0]), p[1], p[2], float(p[3]), datetime.fromisoformat(p[4]), p[5], p[6]]
            for s, p in state["protect"].items()
        }
        self._vol = {s: EwmaVol(**v) for s, v in state["vol"].items()}
        self._volumes = {s: [float(x) for x in v] for s, v in state["volumes"].items()}
        self._last_ts = {s: datetime.fromisoformat(t) for s, t in state["last_ts"].items()}
        self._fill_seq = int(state["fill_seq"])
        logger.info(
            "paper broker resumed from %s: %d queued, %d seen ids, %d unpolled events",
            path,
            sum(len(q) for q in self._queue.values()),
            len(self._seen),
            len(self._events),
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


_EVENT_TYPES: dict[str, type] = {
    "fill": Fill,
    "submitted": OrderSubmitted,
    "accepted": OrderAccepted,
    "cancelled": OrderCancelled,
    "expired": OrderExpired,
}
_EVENT_NAMES = {v: k for k, v in _EVENT_TYPES.items()}


def _event_to_json(e: OrderEvent) -> dict[str, Any]:
    kind = _EVENT_NAMES[type(e)]
    if isinstance(e, OrderSubmitted):
        return {"kind": kind, "order": _order_to_json(e.order)}
    d: dict[str, Any] = {k: getattr(e, k) for k in type(e).__slots__}  # type: ignore[attr-defined]
    d["ts"] = e.ts.isoformat()  # type: ignore[union-attr]
    if isinstance(e, Fill):
        d["side"] = e.side.value
    d["kind"] = kind
    return d


def _event_from_json(d: Mapping[str, Any]) -> OrderEvent:
    values = dict(d)
    cls = _EVENT_TYPES[values.pop("kind")]
    if cls is OrderSubmitted:
        return OrderSubmitted(_order_from_json(values["order"]))
    values["ts"] = datetime.fromisoformat(values["ts"])
    if cls is Fill:
        values["side"] = Side(values["side"])
    return cls(**values)  # type: ignore[no-any-return]
