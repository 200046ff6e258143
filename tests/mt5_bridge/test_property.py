"""Property: whatever the venue does, the ledger built from the bridge's reports equals the
venue's positions.

Random sequences of accepted, rejected and partial orders (IOC, FOK, RETURN), cancels, price
moves through protective stops and into stop outs, manual closes, deals shown late, and worker
restarts (also killed around a send, then the decision replayed) run on the simulated terminal.
Every order goes through the router and every venue report through `engine.on_event`, as in the
live step. After each step the ledger holds, per symbol, exactly the units the venue holds for
our book, and the orders it still expects to fill are exactly the venue's working orders.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from execution.broker import BrokerError
from execution.config import StrategyConfig
from execution.domain import Order, Side, make_client_id
from execution.engine import PROTECTIVE_INTENTS, new_state, on_event
from execution.orders import Cancel, OrderRejected, OrderSubmitted, events_from_ack
from infra.journal import MemoryJournal
from mt5_bridge import MT5Broker, MT5Config
from mt5_bridge import _codes as c
from mt5_bridge.simulator import ProcessKilled, SendFault, SimulatedTerminal
from streaming.router import OrderRouter

T0 = datetime(2024, 3, 4, 12, tzinfo=UTC)
SYMBOLS = {  # symbol: (bid, contract size, filling mode): IOC, FOK (and IOC), RETURN
    "EURUSD": (1.1000, 100_000.0, c.SYMBOL_FILLING_IOC),
    "GBPUSD": (1.2700, 100_000.0, c.SYMBOL_FILLING_FOK | c.SYMBOL_FILLING_IOC),
    "XAUUSD": (2000.0, 100.0, 0),
}
CONFIG = StrategyConfig()


class _World:
    def __init__(self) -> None:
        self.now = T0
        self.sim = SimulatedTerminal(clock=self.clock, balance=100_000.0, leverage=100)
        for name, (bid, size, filling) in SYMBOLS.items():
            point = 0.01 if size == 100.0 else 1e-5
            self.sim.add_symbol(name, bid=bid, ask=bid + 20 * point, point=point,
                                digits=2 if size == 100.0 else 5, contract_size=size,
                                filling_mode=filling)  # fmt: skip
        self.journal = MemoryJournal()
        self.broker = self._connect()
        self.ledger = new_state(CONFIG)
        self.router = OrderRouter()
        self.orders = 0
        self.delay = 0.0

    def clock(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def _connect(self) -> MT5Broker:
        broker = MT5Broker(
            MT5Config(symbols=tuple(SYMBOLS)),
            self.sim,
            live_enabled=True,
            clock=self.clock,
            sleep=self.sleep,
            journal=self.journal,
        )
        broker.connect()
        return broker

    def restart(self) -> None:
        self.broker.close()
        self.broker = self._connect()

    def order(self, symbol: str, side: Side, lots: float, stop_pct: float | None) -> Order:
        self.orders += 1
        bid, size, _ = SYMBOLS[symbol]
        mark = self.sim.symbol_config(symbol).bid
        stop = None
        if stop_pct is not None:
            stop = mark * (1 - stop_pct) if side is Side.BUY else mark * (1 + stop_pct)
        return Order(
            client_id=make_client_id("prop", symbol, T0 + timedelta(seconds=self.orders), "e"),
            symbol=symbol,
            side=side,
            quantity=round(lots * size, 6),
            ts=T0,
            intent="entry",
            stop_loss=stop,
        )

    def apply(self, event: object) -> None:
        self.ledger, _ = on_event(self.ledger, event, CONFIG)  # type: ignore[arg-type]

    def submit(self, order: Order, *, known: bool = False) -> None:
        """As the live step does: the engine tracks the order, the router sends it once, and
        its outcome goes back through on_event (unknown: left submitted for reconciliation)."""
        if not known:
            self.apply(OrderSubmitted(order))
        routed = self.router.route(self.broker, order)
        if routed.outcome.at_venue is False:
            self.apply(OrderRejected(order.client_id, order.symbol, T0, routed.reason, 1.0))
        elif routed.ack is not None:
            for report in events_from_ack(order, routed.ack, T0):
                self.apply(report)

    def book(self) -> None:
        """Let any late deal show, settle unknown orders, feed the ledger the venue's events."""
        self.now += timedelta(seconds=self.delay + 1)
        for outcome in self.broker.resolve_unknown():  # as the live step's reconciliation
            self.router.settle(outcome.client_id)
            self.apply(outcome.as_event())
        for report in self.broker.poll_events():
            event(type(report).__name__ + ("-venue" if report.client_id.startswith("mt5-") else ""))
            self.apply(report)

    def venue_working(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for o in self.broker.open_orders():
            out[o.symbol] = out.get(o.symbol, 0.0) + o.side.sign * o.quantity
        return {s: q for s, q in out.items() if abs(q) > 1e-6}

    def ledger_working(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for sym, ss in self.ledger.symbols.items():
            for w in ss.orders.values():
                if w.intent not in PROTECTIVE_INTENTS:
                    out[sym] = out.get(sym, 0.0) + w.sign * w.remaining
        return {s: q for s, q in out.items() if abs(q) > 1e-6}

    def venue_units(self) -> dict[str, float]:
        book = self.broker.config.magic
        out: dict[str, float] = {}
        for p in self.sim.positions_get():
            if p.magic >> 32 != book:
                continue
            sign = 1.0 if p.type == c.POSITION_TYPE_BUY else -1.0
            size = SYMBOLS[p.symbol][1]
            out[p.symbol] = out.get(p.symbol, 0.0) + sign * p.volume * size
        return {s: q for s, q in out.items() if abs(q) > 1e-6}

    def ledger_units(self) -> dict[str, float]:
        return {s: p.quantity for s, p in self.ledger.positions.items() if abs(p.quantity) > 1e-6}


symbols = st.sampled_from(sorted(SYMBOLS))
sides = st.sampled_from([Side.BUY, Side.SELL])
lots = st.integers(1, 150).map(lambda n: n / 100)
stops = st.one_of(st.none(), st.sampled_from([0.005, 0.01, 0.03]))
actions = st.one_of(
    st.tuples(st.just("order"), symbols, sides, lots, stops),
    st.tuples(st.just("reject"), symbols, sides, lots, st.sampled_from([10019, 10018, 10006])),
    st.tuples(
        st.just("partial"),
        symbols,
        sides,
        lots,
        st.integers(0, 100).map(lambda n: n / 100),
        st.booleans(),
    ),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("move"), symbols, st.floats(-0.06, 0.06)),
    st.tuples(st.just("manual"), st.booleans()),
    st.tuples(st.just("late"), st.sampled_from([0.0, 30.0, 240.0])),
    st.tuples(st.just("restart")),
    st.tuples(st.just("kill"), symbols, sides, lots, st.booleans()),
)


def _step(world: _World, action: tuple) -> None:
    kind = action[0]
    sim = world.sim
    if kind == "order":
        _, symbol, side, size, stop = action
        world.submit(world.order(symbol, side, size, stop))
    elif kind == "reject":
        _, symbol, side, size, code = action
        sim.queue_send_faults(SendFault(code))
        world.submit(world.order(symbol, side, size, None))
        sim._send_faults.clear()  # a refusal found before sending leaves its fault unused
    elif kind == "partial":
        _, symbol, side, size, available, restore = action
        sim.set_liquidity(symbol, available)
        world.submit(world.order(symbol, side, size, None))
        if restore:  # working RETURN remainders fill on the next tick
            sim.set_liquidity(symbol, None)
    elif kind == "cancel":
        for order in list(world.broker.open_orders()):
            for event in world.router.cancel(
                world.broker, Cancel(order.client_id, order.symbol, T0)
            ):
                world.apply(event)
    elif kind == "move":
        _, symbol, change = action
        s = sim.symbol_config(symbol)
        bid = round(s.bid * (1 + change), s.digits)
        sim.set_quote(symbol, bid, round(bid + 20 * s.point, s.digits))
    elif kind == "manual":
        mine = [p for p in sim.positions_get() if p.magic >> 32 == world.broker.config.magic]
        if mine:
            p = mine[0]
            step = sim.symbol_config(p.symbol).volume_step
            half = math.floor(p.volume / 2 / step) * step
            sim.close_manually(p.ticket, None if action[1] or half <= 0 else round(half, 8))
    elif kind == "late":
        world.delay = action[1]
        sim.set_deal_delay(world.delay)
    elif kind == "restart":
        world.restart()
    elif kind == "kill":
        _, symbol, side, size, executed = action
        order = world.order(symbol, side, size, None)
        world.apply(OrderSubmitted(order))
        sim.queue_send_faults(SendFault(kill=True, execute=executed))
        try:
            world.broker.submit(order)
        except ProcessKilled:
            world.restart()
            world.submit(order, known=True)  # the replay re-emits the same decision
        except BrokerError:
            sim._send_faults.clear()
            world.apply(OrderRejected(order.client_id, order.symbol, T0, "refused", 1.0))


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(actions, min_size=1, max_size=25))
def test_ledger_when_random_venue_events_then_always_equals_venue_positions(steps):
    world = _World()
    for action in steps:
        _step(world, action)
        world.book()
        ledger, venue = world.ledger_units(), world.venue_units()
        assert ledger.keys() == venue.keys(), (action, ledger, venue)
        for symbol, units in venue.items():
            assert math.isclose(ledger[symbol], units, abs_tol=1e-6), (action, ledger, venue)
        expected, working = world.ledger_working(), world.venue_working()
        if working:
            event("venue works an order")
        assert expected.keys() == working.keys(), (action, expected, working)
        for symbol, units in working.items():
            assert math.isclose(expected[symbol], units, abs_tol=1e-6), (action, expected, working)
