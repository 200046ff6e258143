"""The per-bar step shared by the backtest and the live dataflow.

Per bar, in this order: the venue (`PaperBroker.on_bar` or a live broker's `poll_events`)
reports what happened to the orders, each event goes through `on_event`, then `on_bar` runs at
the bar's close: it marks to market, updates the ATR / volatility estimators and trailing stops,
asks the strategy's decision rule (`execution.decision`; the built-in `decide` by default) for
a target direction, sizes the new position, asks the RiskGovernor, and returns the commands for
the venue: `Cancel`s first (a new decision supersedes the entries still working), then `Order`s.
Each order is SUBMITTED in the engine's state until the venue's answer
(`execution.orders.events_from_ack`) is passed to `on_event`.

`on_event` is the one door into the ledger (see `execution.orders` for the lifecycle): fills move
cash, position and trade bookkeeping; accept / reject / cancel / expire move the order's state.
The engine counts an order in the position it expects only once it is accepted, and its
committed direction is always the sign of position plus the orders still in flight, so a
rejected or cancelled entry leaves it flat and a flat signal then sends nothing.

State lives in one plain, picklable `EngineState`. For speed the step functions update the state
they are given in place and return it; treat the state passed in as consumed (snapshot it with
`copy.deepcopy` or pickle when a copy is needed, e.g. for a streaming snapshot).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import date, datetime

from execution.config import StrategyConfig
from execution.costs import EwmaVol
from execution.decision import DecisionContext, apply_rule, resolve_rule
from execution.domain import Fill, Order, OrderType, Position, Side, make_client_id
from execution.instruments import InstrumentError, instrument_for
from execution.ledger import (
    DUST,
    OpenTrade,
    TradeRecord,
    add_entry_part,
    add_exit_part,
    apply_to_position,
    closing_quantity,
    committed_direction,
    crosses_zero,
    fully_filled,
    in_flight_units,
)
from execution.orders import (
    Cancel,
    OrderAccepted,
    OrderCancelled,
    OrderEvent,
    OrderExpired,
    OrderRejected,
    OrderState,
    OrderSubmitted,
)
from execution.risk import OrderIntent, PortfolioView, RiskGovernor
from execution.signal import Bar, Prediction
from execution.sizing import target_quantity
from execution.stops import AtrEstimator, initial_levels, opens_protection, stop_distance, trail
from quality.schema import TIMEFRAMES

__all__ = [
    "PROTECTIVE_INTENTS",
    "EngineError",
    "EngineState",
    "SymbolState",
    "WorkingOrder",
    "bar_close_ts",
    "equity",
    "new_state",
    "on_bar",
    "on_event",
    "unrealized_pnl",
]

logger = logging.getLogger(__name__)

# Orders that protect a position; contingent, so not part of the position the engine expects.
PROTECTIVE_INTENTS = frozenset({"stop", "take_profit"})
_LIVE = (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED)


class EngineError(ValueError):
    """An input the engine refuses: a prediction for another bar, a bar out of order."""


@dataclass(slots=True)
class WorkingOrder:
    """The engine's view of one order that is not terminal yet."""

    client_id: str
    sign: int  # +1 buy, -1 sell
    remaining: float  # units not filled yet
    intent: str
    stop_loss: float | None = None
    take_profit: float | None = None
    state: OrderState = OrderState.SUBMITTED
    cancel_requested: bool = False  # a Cancel was sent: it no longer counts as intent


@dataclass(slots=True)
class SymbolState:
    atr: AtrEstimator
    vol: EwmaVol
    direction: int = 0  # sign of position + orders in flight: what the strategy committed to
    orders: dict[str, WorkingOrder] = field(default_factory=dict)  # not terminal, by client id
    stop: float | None = None  # protective levels mirrored from the broker
    take_profit: float | None = None
    extreme: float = math.nan  # best price since entry, for trailing stops
    protect_ts: datetime | None = None  # ts of the fill that set the levels
    last_ts: datetime | None = None


@dataclass(slots=True)
class EngineState:
    cash: float
    positions: dict[str, Position] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)  # last close per symbol
    symbols: dict[str, SymbolState] = field(default_factory=dict)
    open_trades: dict[str, OpenTrade] = field(default_factory=dict)
    peak_equity: float = 0.0
    last_equity: float = 0.0
    day: date | None = None  # UTC day of the latest bar
    day_start_equity: float = 0.0
    trades_today: int = 0
    seq: int = 0  # bumped by every on_event / on_bar, strictly increasing
    halt: str = ""  # set by the operator (live kill switch): the governor approves no new risk


def new_state(config: StrategyConfig) -> EngineState:
    cash = float(config.initial_cash)
    return EngineState(cash=cash, peak_equity=cash, last_equity=cash, day_start_equity=cash)


def equity(state: EngineState) -> float:
    """Cash plus every position marked at its symbol's last close (or last fill price)."""
    total = state.cash
    for sym, pos in state.positions.items():
        total += pos.quantity * state.marks[sym]
    return total


def unrealized_pnl(state: EngineState) -> float:
    """P&L of the open trades at the marks, net of the commissions they already paid."""
    total = 0.0
    for sym, trade in state.open_trades.items():
        pos = state.positions.get(sym)
        qty, avg = (pos.quantity, pos.avg_price) if pos else (0.0, 0.0)
        total += trade.unrealized(qty, avg, state.marks[sym])
    return total


def _symbol_state(state: EngineState, symbol: str, config: StrategyConfig) -> SymbolState:
    ss = state.symbols.get(symbol)
    if ss is None:
        ss = SymbolState(AtrEstimator(config.stops.atr_period), EwmaVol(config.vol_window))
        state.symbols[symbol] = ss
    return ss


def _clear_protection(ss: SymbolState) -> None:
    ss.stop = ss.take_profit = None
    ss.extreme = math.nan
    ss.protect_ts = None


def _settle(state: EngineState, sym: str, ss: SymbolState) -> None:
    """direction = sign of position + the (non-protective) orders still meant to fill."""
    pos = state.positions.get(sym)
    qty = pos.quantity if pos is not None else 0.0
    for o in ss.orders.values():  # from the moment it is sent, not only once accepted
        qty += in_flight_units(
            o.sign, o.remaining, o.cancel_requested, o.intent in PROTECTIVE_INTENTS
        )
    ss.direction = committed_direction(qty)


def on_event(
    state: EngineState, event: OrderEvent, config: StrategyConfig
) -> tuple[EngineState, list[TradeRecord]]:
    """Apply one order event (see `execution.orders`); return the trades a fill closed.

    The one function through which a venue's reports reach the ledger. Events for orders the
    engine no longer tracks (already terminal, or never known) change no order state; a fill
    always moves cash and position, because the venue executed it.
    """
    state.seq += 1
    sym = event.symbol
    ss = _symbol_state(state, sym, config)
    closed: list[TradeRecord] = []
    if isinstance(event, Fill):
        closed = _book_fill(state, ss, event)
    elif isinstance(event, OrderSubmitted):
        o = event.order
        if o.client_id not in ss.orders:
            ss.orders[o.client_id] = WorkingOrder(
                o.client_id, o.side.sign, o.quantity, o.intent, o.stop_loss, o.take_profit
            )
    elif isinstance(event, OrderAccepted):
        w = ss.orders.get(event.client_id)
        if w is not None and w.state is OrderState.SUBMITTED:
            w.state = OrderState.ACCEPTED
    elif isinstance(event, OrderRejected | OrderCancelled | OrderExpired):
        w = ss.orders.pop(event.client_id, None)
        if w is not None and w.intent not in PROTECTIVE_INTENTS:
            logger.debug(
                "order %s %s %s: %s units will not fill",
                event.client_id,
                w.intent,
                type(event).__name__,
                event.unfilled,
            )
    else:  # pragma: no cover - the union is closed
        msg = f"not an order event: {event!r}"
        raise TypeError(msg)
    _settle(state, sym, ss)
    return state, closed


def _book_fill(state: EngineState, ss: SymbolState, fill: Fill) -> list[TradeRecord]:
    sym = fill.symbol
    sign = fill.side.sign
    q = fill.quantity
    price = fill.price
    state.cash -= sign * q * price + fill.commission
    if sym not in state.marks:
        state.marks[sym] = price

    pos = state.positions.get(sym)
    qty, avg = (pos.quantity, pos.avg_price) if pos is not None else (0.0, 0.0)
    closed: list[TradeRecord] = []
    trade = state.open_trades.get(sym)
    close_q = closing_quantity(qty, sign, q)
    if close_q > 0.0 and trade is not None:
        (
            trade.exit_qty,
            trade.exit_notional,
            trade.realized,
            trade.commission,
            trade.slippage,
        ) = add_exit_part(
            trade.exit_qty,
            trade.exit_notional,
            trade.realized,
            trade.commission,
            trade.slippage,
            close_q,
            q,
            price,
            avg,
            trade.direction,
            fill.commission,
            fill.slippage_cost,
        )
    open_q = q - close_q
    new_qty, new_avg = apply_to_position(qty, avg, sign * q, price)
    if close_q > 0.0 and (new_qty == 0.0 or new_qty * qty < 0.0) and trade is not None:
        closed.append(trade.close(fill.ts))
        del state.open_trades[sym]
        trade = None
    if open_q > 0.0:
        if trade is None:
            trade = OpenTrade(sym, sign, fill.ts)
            state.open_trades[sym] = trade
        trade.entry_qty, trade.entry_notional, trade.commission, trade.slippage = add_entry_part(
            trade.entry_qty,
            trade.entry_notional,
            trade.commission,
            trade.slippage,
            open_q,
            q,
            price,
            fill.commission,
            fill.slippage_cost,
        )
    if new_qty == 0.0:
        state.positions.pop(sym, None)
    else:
        state.positions[sym] = Position(sym, new_qty, new_avg)

    w = ss.orders.get(fill.client_id)
    if w is None:
        logger.info("fill %s of an order the engine does not track; booked", fill.client_id)
    else:
        if w.state is OrderState.SUBMITTED or w.state is OrderState.ACCEPTED:
            w.state = OrderState.PARTIALLY_FILLED
        w.remaining -= q
        if fully_filled(w.remaining) or w.intent in PROTECTIVE_INTENTS:
            del ss.orders[fill.client_id]
        if opens_protection(
            w.intent == "entry",
            ss.stop is not None or ss.take_profit is not None,
            w.sign,
            new_qty,
            w.stop_loss is not None,
            w.take_profit is not None,
        ):
            ss.stop, ss.take_profit = w.stop_loss, w.take_profit
            ss.extreme = price
            ss.protect_ts = fill.ts
    if crosses_zero(qty, new_qty):
        _clear_protection(ss)
    return closed


def _expected(state: EngineState, sym: str) -> float:
    """Position plus the accepted, non-protective orders that are still meant to fill."""
    pos = state.positions.get(sym)
    qty = pos.quantity if pos is not None else 0.0
    ss = state.symbols.get(sym)
    if ss is not None:
        for o in ss.orders.values():
            if o.state in _LIVE:
                qty += in_flight_units(
                    o.sign, o.remaining, o.cancel_requested, o.intent in PROTECTIVE_INTENTS
                )
    return qty


def on_bar(
    state: EngineState,
    bar: Bar,
    prediction: Prediction | None,
    config: StrategyConfig,
    governor: RiskGovernor,
) -> tuple[EngineState, list[Order | Cancel]]:
    """The step at `bar`'s close, after the bar's events were applied; returns the commands.

    `prediction` must be the one made from this bar's close (same symbol and ts), or None to
    hold. Commands are only sent when the decided direction differs from the committed one:
    first a `Cancel` for every entry of the symbol still working (no unit of a superseded entry
    may fill after the decision), then the exit of what is held, then the new entry.
    """
    state.seq += 1
    sym = bar.symbol
    ss = _symbol_state(state, sym, config)
    if ss.last_ts is not None and bar.ts <= ss.last_ts:
        msg = f"bar {sym} {bar.ts.isoformat()} is not after the previous one ({ss.last_ts})"
        raise EngineError(msg)
    ss.last_ts = bar.ts
    state.marks[sym] = bar.close
    ss.atr.update(bar.high, bar.low, bar.close)
    ss.vol.update(bar.close)
    pos = state.positions.get(sym)
    if (
        ss.stop is not None
        and pos is not None
        and not (config.fill == "next_close" and ss.protect_ts == bar.ts)
    ):
        ss.stop, ss.extreme = trail(
            config.stops, 1 if pos.quantity > 0 else -1, ss.stop, ss.extreme, bar.high, bar.low
        )

    day = bar.ts.date()
    if state.day != day:
        if state.day is not None:
            state.day_start_equity = state.last_equity
        state.day = day
        state.trades_today = 0
    eq = equity(state)
    state.last_equity = eq
    state.peak_equity = max(state.peak_equity, eq)

    if prediction is None:
        return state, []
    if prediction.symbol != sym or prediction.ts != bar.ts:
        msg = (
            f"prediction {prediction.symbol} {prediction.ts.isoformat()} does not belong to "
            f"bar {sym} {bar.ts.isoformat()}"
        )
        raise EngineError(msg)
    context = DecisionContext(bar, ss.direction)
    direction = apply_rule(resolve_rule(config.rule), prediction, config.decision, context)
    if direction == ss.direction:
        return state, []

    decided_at = bar_close_ts(bar)
    commands: list[Order | Cancel] = []
    for w in ss.orders.values():
        if w.intent == "entry" and not w.cancel_requested:
            w.cancel_requested = True
            commands.append(Cancel(w.client_id, sym, decided_at, "superseded"))
    expected = _expected(state, sym)
    held = committed_direction(expected)
    if held != 0:
        side = Side.SELL if held > 0 else Side.BUY
        commands.append(
            _order(config, ss, bar, decided_at, side, abs(expected), "exit", None, None)
        )
    if direction != 0:
        entry = _entry(state, ss, bar, prediction, direction, eq, config, governor)
        if entry is not None:
            commands.append(entry)
            state.trades_today += 1
    _settle(state, sym, ss)
    return state, commands


def _entry(
    state: EngineState,
    ss: SymbolState,
    bar: Bar,
    prediction: Prediction,
    direction: int,
    eq: float,
    config: StrategyConfig,
    governor: RiskGovernor,
) -> Order | None:
    sym = bar.symbol
    price = bar.close
    dist = stop_distance(config.stops, price, ss.atr.value)
    risk_dist = dist if dist is not None else config.stops.stop_pct * price
    p_win, p_loss = (
        (prediction.p_up, prediction.p_down)
        if direction > 0
        else (prediction.p_down, prediction.p_up)
    )
    qty = target_quantity(
        config.sizing,
        equity=eq,
        price=price,
        stop_distance=risk_dist,
        vol=ss.vol.value,
        p_win=p_win,
        p_loss=p_loss,
        periods_per_year=config.periods_per_year,
    )
    if not (qty > DUST):  # NaN included: sizing found nothing to trade
        return None
    positions = {s: _expected(state, s) for s in state.symbols}
    positions[sym] = 0.0  # the exit above flattens it first
    view = PortfolioView(
        equity=eq,
        peak_equity=state.peak_equity,
        day_start_equity=state.day_start_equity,
        positions=positions,
        prices=state.marks,
        trades_today=state.trades_today,
        halt=state.halt,
    )
    side = Side.BUY if direction > 0 else Side.SELL
    approved, _reason = governor.check(OrderIntent(sym, side, qty, price, risk_dist), view)
    if approved <= DUST:
        return None
    try:
        units = instrument_for(sym, config).order_quantity(approved)
    except InstrumentError as exc:
        logger.warning("entry %s %s refused: %s", sym, bar.ts.isoformat(), exc)
        return None
    if units <= DUST:
        return None
    stop, tp = initial_levels(config.stops, direction, price, dist)
    return _order(config, ss, bar, bar_close_ts(bar), side, units, "entry", stop, tp)


def bar_close_ts(bar: Bar) -> datetime:
    """When `bar` closed: ts + its timeframe's length (ts itself when the timeframe is unknown)."""
    length = TIMEFRAMES.get(bar.timeframe)
    return bar.ts + length if length is not None else bar.ts


def _order(
    config: StrategyConfig,
    ss: SymbolState,
    bar: Bar,
    decided_at: datetime,
    side: Side,
    qty: float,
    intent: str,
    stop: float | None,
    tp: float | None,
) -> Order:
    cid = make_client_id(config.strategy, bar.symbol, bar.ts, intent, timeframe=bar.timeframe)
    ss.orders[cid] = WorkingOrder(cid, side.sign, qty, intent, stop, tp)
    return Order(
        client_id=cid,
        symbol=bar.symbol,
        side=side,
        quantity=qty,
        ts=decided_at,
        intent=intent,
        order_type=OrderType.MARKET,
        stop_loss=stop,
        take_profit=tp,
        strategy=config.strategy,
    )
