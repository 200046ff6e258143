"""The boundary: MT5 structures in, domain values out (and the one outbound request shape).

Only this module reads MT5 field names (`volume_step`, `price_open`, `time_msc`, `real_volume`,
...). Everything else in the bridge works with the small frozen values defined here and with
`execution.domain` types.

Time: every MT5 timestamp (`time`, `time_msc`, `time_setup`, bar `time`) counts seconds of the
broker server's wall clock, which is usually not UTC (many brokers run on UTC+2/UTC+3). The
`server_utc_offset` argument is that clock's offset from UTC; UTC = server time - offset. The
same offset shifts the UTC bounds we pass into history queries. It is a fixed offset: a server
that follows daylight saving needs the setting changed when its clock changes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import pandas as pd

from execution.domain import Fill, Order, OrderType, Position, Side
from mt5_bridge import _codes as c

__all__ = [
    "MAX_BOOK_MAGIC",
    "MAX_COMMENT_LENGTH",
    "RAW_BAR_COLUMNS",
    "AccountState",
    "CheckOutcome",
    "Quote",
    "SendOutcome",
    "SymbolSpec",
    "VenueDeal",
    "VenueOrder",
    "VenuePosition",
    "VenueRecord",
    "VenueRecordError",
    "VolumeRefusedError",
    "book_of",
    "build_deal_request",
    "build_sltp_request",
    "client_id_from_comment",
    "comment_for",
    "deal_ticket",
    "deal_time_utc",
    "deal_to_fill",
    "lots_for",
    "order_magic",
    "order_record_to_order",
    "parse_account_info",
    "parse_check_result",
    "parse_deal",
    "parse_positions",
    "parse_send_result",
    "parse_symbol_info",
    "parse_tick",
    "parse_working_orders",
    "positions_to_domain",
    "rates_to_raw_frame",
    "server_to_utc",
    "terminal_trade_allowed",
    "units_for",
    "utc_to_server",
    "venue_records",
]

# MqlTradeRequest.comment holds at most 31 characters; longer comments are cut by the terminal,
# which would silently destroy the client id we recover fills by.
MAX_COMMENT_LENGTH: Final = 31

# `magic` is a 64-bit integer: the high half names the strategy book (MT5Config.magic), the low
# half is a hash of the client id, so an order is found on the venue by its magic even where the
# broker rewrote its comment. Kept below 2**63 for clients that read magic as a signed long.
MAX_BOOK_MAGIC: Final = 2**31 - 1
_CLIENT_HASH_BITS: Final = 32

# The raw bar frame the data plane ingests: bar open time in UTC plus OHLCV, one row per bar.
RAW_BAR_COLUMNS: Final = ("ts", "open", "high", "low", "close", "volume")


class VenueRecordError(ValueError):
    """An MT5 structure lacked a field or held a value the bridge cannot interpret."""


def _field(record: Any, name: str) -> Any:
    try:
        return getattr(record, name)
    except AttributeError:
        kind = type(record).__name__
        msg = f"MT5 {kind} record has no field {name!r}"
        raise VenueRecordError(msg) from None


# --- time --------------------------------------------------------------------------------------


def server_to_utc(seconds: float, server_utc_offset: timedelta, *, msc: int = 0) -> datetime:
    """UTC datetime of an MT5 server timestamp (seconds, or milliseconds via `msc` when > 0)."""
    naive_utc = (
        datetime.fromtimestamp(msc / 1000.0, tz=UTC)
        if msc
        else datetime.fromtimestamp(float(seconds), tz=UTC)
    )
    return naive_utc - server_utc_offset


def utc_to_server(ts: datetime, server_utc_offset: timedelta) -> datetime:
    """The datetime to hand an MT5 history function for the UTC instant `ts`.

    The package reads a tz-aware datetime by its POSIX timestamp and compares it with server
    timestamps, so the instant is shifted by the server's offset and kept tz-aware (a naive one
    would be read in the local time zone of the machine running the terminal).
    """
    if ts.tzinfo is None:
        msg = f"expected a tz-aware UTC datetime, got naive {ts!r}"
        raise ValueError(msg)
    return ts.astimezone(UTC) + server_utc_offset


# --- symbols and quotes ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """What the bridge needs to shape an order for one symbol (from `symbol_info`)."""

    symbol: str
    contract_size: float  # units in one lot (trade_contract_size): 100,000 for EURUSD
    volume_min: float  # smallest order volume, lots
    volume_step: float  # volumes must be a whole multiple of this, lots
    volume_max: float  # largest single order volume, lots
    filling_mode: int  # bitmask of SYMBOL_FILLING_FOK (1) / SYMBOL_FILLING_IOC (2)
    stops_level: int  # minimum stop distance from the price, in points
    point: float  # price of one point
    digits: int  # price decimals
    trade_mode: int  # SYMBOL_TRADE_MODE_*
    currency_profit: str = ""  # the currency prices and P&L are in


def parse_symbol_info(info: Any) -> SymbolSpec:
    spec = SymbolSpec(
        symbol=str(_field(info, "name")),
        contract_size=float(_field(info, "trade_contract_size")),
        volume_min=float(_field(info, "volume_min")),
        volume_step=float(_field(info, "volume_step")),
        volume_max=float(_field(info, "volume_max")),
        filling_mode=int(_field(info, "filling_mode")),
        stops_level=int(_field(info, "trade_stops_level")),
        point=float(_field(info, "point")),
        digits=int(_field(info, "digits")),
        trade_mode=int(_field(info, "trade_mode")),
        currency_profit=str(getattr(info, "currency_profit", "") or ""),
    )
    if not (spec.volume_step > 0 and spec.volume_min > 0 and spec.volume_max >= spec.volume_min):
        msg = (
            f"symbol {spec.symbol}: unusable volume limits min={spec.volume_min} "
            f"step={spec.volume_step} max={spec.volume_max}"
        )
        raise VenueRecordError(msg)
    if not spec.contract_size > 0:
        msg = f"symbol {spec.symbol}: unusable trade_contract_size {spec.contract_size}"
        raise VenueRecordError(msg)
    return spec


class VolumeRefusedError(ValueError):
    """An order's quantity cannot be sent as an MT5 volume (below min, above max, off step)."""


def lots_for(units: float, spec: SymbolSpec) -> float:
    """The MT5 volume (lots) for `units` of `spec.symbol`: the one way units become lots.

    The quantity is rounded down to a whole `volume_step` (never more than asked). Anything
    below `volume_min` or above `volume_max` is refused with the reason; nothing is capped.
    """
    lots = units / spec.contract_size
    steps = math.floor(lots / spec.volume_step + 1e-9)
    volume = round(steps * spec.volume_step, 10)  # drop float noise such as 0.30000000000000004
    where = (
        f"{units:.10g} units = {lots:.10g} lots of {spec.symbol} (contract size "
        f"{spec.contract_size:g}, step {spec.volume_step:g})"
    )
    if volume < spec.volume_min - 1e-12:
        msg = f"{where} rounds down to {volume:g} lots, below volume_min {spec.volume_min:g}"
        raise VolumeRefusedError(msg)
    if volume > spec.volume_max + 1e-12:
        msg = (
            f"{where} is above volume_max {spec.volume_max:g}; refused, not capped: split the "
            "order or lower the size"
        )
        raise VolumeRefusedError(msg)
    return volume


def units_for(lots: float, spec: SymbolSpec) -> float:
    """Units of `spec.symbol` in an MT5 volume: the one way lots become units."""
    return round(float(lots) * spec.contract_size, 8)


@dataclass(frozen=True, slots=True)
class Quote:
    bid: float
    ask: float
    ts: datetime  # UTC


def parse_tick(tick: Any, server_utc_offset: timedelta) -> Quote:
    return Quote(
        bid=float(_field(tick, "bid")),
        ask=float(_field(tick, "ask")),
        ts=server_to_utc(
            _field(tick, "time"), server_utc_offset, msc=int(getattr(tick, "time_msc", 0) or 0)
        ),
    )


@dataclass(frozen=True, slots=True)
class AccountState:
    hedging: bool  # ACCOUNT_MARGIN_MODE_RETAIL_HEDGING: several positions per symbol
    real: bool  # ACCOUNT_TRADE_MODE_REAL, as opposed to demo or contest
    currency: str


def parse_account_info(info: Any) -> AccountState:
    return AccountState(
        hedging=int(_field(info, "margin_mode")) == c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING,
        real=int(_field(info, "trade_mode")) == c.ACCOUNT_TRADE_MODE_REAL,
        currency=str(_field(info, "currency")),
    )


def terminal_trade_allowed(info: Any) -> bool:
    """Whether the terminal's "Algo Trading" switch lets this process trade."""
    return bool(_field(info, "trade_allowed"))


# --- orders out, results in --------------------------------------------------------------------


def comment_for(client_id: str, tag: str) -> str:
    """The order comment that carries a client id to the venue and back."""
    comment = f"{tag}{client_id}"
    if len(comment) > MAX_COMMENT_LENGTH:
        msg = (
            f"comment {comment!r} is {len(comment)} characters; MT5 keeps {MAX_COMMENT_LENGTH}. "
            "Shorten the comment tag or the client id"
        )
        raise ValueError(msg)
    return comment


def client_id_from_comment(comment: str, tag: str) -> str | None:
    if comment.startswith(tag) and len(comment) > len(tag):
        return comment[len(tag) :]
    return None


def order_magic(book: int, client_id: str) -> int:
    """The `magic` an order carries: the book in the high half, a hash of the client id low."""
    if not 0 < book <= MAX_BOOK_MAGIC:
        msg = f"book magic must be in 1..{MAX_BOOK_MAGIC}, got {book}"
        raise ValueError(msg)
    digest = hashlib.sha256(client_id.encode()).digest()
    return (book << _CLIENT_HASH_BITS) | int.from_bytes(digest[:4], "big")


def book_of(magic: int) -> int:
    """The strategy book an MT5 magic number belongs to (0 for manual trades and other EAs'
    plain magic numbers, which are below 2**32)."""
    return int(magic) >> _CLIENT_HASH_BITS


def build_deal_request(
    *,
    symbol: str,
    side: Side,
    volume: float,
    price: float,
    sl: float | None,
    tp: float | None,
    deviation: int,
    magic: int,
    comment: str,
    filling: int,
) -> dict[str, Any]:
    """An MqlTradeRequest for an immediate (market) deal, as the Python package takes it."""
    return {
        "action": c.TRADE_ACTION_DEAL,
        "symbol": symbol,
        "volume": float(volume),
        "type": c.ORDER_TYPE_BUY if side is Side.BUY else c.ORDER_TYPE_SELL,
        "price": float(price),
        "sl": float(sl) if sl is not None else 0.0,
        "tp": float(tp) if tp is not None else 0.0,
        "deviation": int(deviation),
        "magic": int(magic),
        "comment": comment,
        "type_time": c.ORDER_TIME_GTC,
        "type_filling": int(filling),
    }


def build_sltp_request(
    *, symbol: str, position: int, sl: float | None, tp: float | None, magic: int
) -> dict[str, Any]:
    """An MqlTradeRequest moving the stop loss / take profit of open position `position`."""
    return {
        "action": c.TRADE_ACTION_SLTP,
        "symbol": symbol,
        "position": int(position),
        "sl": float(sl) if sl is not None else 0.0,
        "tp": float(tp) if tp is not None else 0.0,
        "magic": int(magic),
    }


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    retcode: int
    comment: str


def parse_check_result(result: Any) -> CheckOutcome:
    return CheckOutcome(int(_field(result, "retcode")), str(_field(result, "comment")))


@dataclass(frozen=True, slots=True)
class SendOutcome:
    retcode: int
    comment: str  # the server's comment, verbatim
    order_ticket: int  # 0 when no order was created
    deal_ticket: int  # 0 when no deal was executed
    volume: float  # executed volume, lots
    price: float  # execution price (0.0 when not executed)


def parse_send_result(result: Any) -> SendOutcome:
    return SendOutcome(
        retcode=int(_field(result, "retcode")),
        comment=str(_field(result, "comment")),
        order_ticket=int(_field(result, "order")),
        deal_ticket=int(_field(result, "deal")),
        volume=float(_field(result, "volume")),
        price=float(_field(result, "price")),
    )


# --- history, positions, orders ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VenueRecord:
    """An order or deal of ours found on the venue, reduced to what reconciliation needs."""

    kind: str  # "order" (active), "history_order" or "deal"
    ticket: int
    order_ticket: int  # the order a deal belongs to; the order's own ticket otherwise
    client_id: str
    symbol: str
    executed: bool  # a deal, or an order the server filled (wholly or in part)
    magic: int
    lots_left: float = 0.0  # an order's volume_current: still working, or never to fill


def venue_records(
    records: Iterable[Any],
    *,
    kind: str,
    tag: str,
    book: int,
    client_ids_by_magic: Mapping[int, str] | None = None,
) -> list[VenueRecord]:
    """Our orders/deals among MT5 TradeOrder/TradeDeal records.

    Ours: the magic's high half is our book. The client id comes from the comment, or, where the
    broker rewrote it, from `client_ids_by_magic` (order magic -> client id, from the journal).
    """
    out: list[VenueRecord] = []
    for rec in records:
        magic = int(_field(rec, "magic"))
        if book_of(magic) != book:
            continue
        client_id = client_id_from_comment(str(_field(rec, "comment")), tag)
        if client_id is None and client_ids_by_magic:
            client_id = client_ids_by_magic.get(magic)
        if client_id is None:
            continue
        ticket = int(_field(rec, "ticket"))
        left = 0.0
        if kind == "deal":
            order_ticket = int(_field(rec, "order"))
            executed = True
        else:
            order_ticket = ticket
            left = float(_field(rec, "volume_current"))
            executed = (
                float(_field(rec, "volume_initial")) > left + 1e-12
                or int(_field(rec, "state")) == c.ORDER_STATE_FILLED
            )
        symbol = str(_field(rec, "symbol"))
        out.append(
            VenueRecord(kind, ticket, order_ticket, client_id, symbol, executed, magic, left)
        )
    return out


@dataclass(frozen=True, slots=True)
class VenueDeal:
    """One MT5 buy/sell deal, parsed; volume still in lots (units need the symbol's spec)."""

    ticket: int
    order_ticket: int
    position_id: int  # the position the deal opened, changed or closed
    symbol: str
    side: Side
    lots: float
    price: float
    commission: float  # >= 0: MT5 books charges as negative commission and fee
    ts: datetime  # UTC
    magic: int
    reason: int  # DEAL_REASON_*: expert, SL, TP, stop out, manual...
    entry: int  # DEAL_ENTRY_*
    comment: str


def parse_deal(deal: Any, server_utc_offset: timedelta) -> VenueDeal | None:
    """A VenueDeal for a buy or sell deal; None for balance, credit, charges and the like."""
    deal_type = int(_field(deal, "type"))
    if deal_type not in (c.DEAL_TYPE_BUY, c.DEAL_TYPE_SELL):
        return None
    cost = -(float(_field(deal, "commission")) + float(getattr(deal, "fee", 0.0) or 0.0))
    return VenueDeal(
        ticket=int(_field(deal, "ticket")),
        order_ticket=int(_field(deal, "order")),
        position_id=int(_field(deal, "position_id")),
        symbol=str(_field(deal, "symbol")),
        side=Side.BUY if deal_type == c.DEAL_TYPE_BUY else Side.SELL,
        lots=float(_field(deal, "volume")),
        price=float(_field(deal, "price")),
        commission=max(cost, 0.0),
        ts=deal_time_utc(deal, server_utc_offset),
        magic=int(_field(deal, "magic")),
        reason=int(_field(deal, "reason")),
        entry=int(_field(deal, "entry")),
        comment=str(_field(deal, "comment")),
    )


_REASON_NAMES: Final = {
    c.DEAL_REASON_CLIENT: "manual",
    c.DEAL_REASON_MOBILE: "manual",
    c.DEAL_REASON_WEB: "manual",
    c.DEAL_REASON_EXPERT: "expert",
    c.DEAL_REASON_SL: "sl",
    c.DEAL_REASON_TP: "tp",
    c.DEAL_REASON_SO: "so",
    c.DEAL_REASON_ROLLOVER: "rollover",
    c.DEAL_REASON_VMARGIN: "vmargin",
    c.DEAL_REASON_SPLIT: "split",
}


def deal_to_fill(deal: VenueDeal, *, client_id: str | None, spec: SymbolSpec) -> Fill:
    """The Fill, in units, for one of our deals.

    `client_id` None: a deal no order of ours asked for (the server's stop loss, take profit or
    stop out, a manual close); it gets the id "mt5-<reason>-<deal ticket>", which no engine order
    carries, so the engine books it as the venue's own close.
    """
    cid = client_id or f"mt5-{_REASON_NAMES.get(deal.reason, 'other')}-{deal.ticket}"
    return Fill(
        client_id=cid,
        symbol=deal.symbol,
        side=deal.side,
        quantity=units_for(deal.lots, spec),
        price=deal.price,
        commission=deal.commission,
        ts=deal.ts,
        venue_fill_id=str(deal.ticket),
    )


def deal_time_utc(deal: Any, server_utc_offset: timedelta) -> datetime:
    return server_to_utc(
        _field(deal, "time"), server_utc_offset, msc=int(getattr(deal, "time_msc", 0) or 0)
    )


def deal_ticket(deal: Any) -> int:
    return int(_field(deal, "ticket"))


@dataclass(frozen=True, slots=True)
class VenuePosition:
    """One open MT5 position of ours; volume in lots."""

    ticket: int  # the position's identifier
    symbol: str
    lots: float  # signed: long > 0, short < 0
    price_open: float
    sl: float | None
    tp: float | None
    magic: int


def parse_positions(records: Iterable[Any], *, book: int) -> list[VenuePosition]:
    """Our open positions (the magic's high half is our book)."""
    out: list[VenuePosition] = []
    for rec in records:
        magic = int(_field(rec, "magic"))
        if book_of(magic) != book:
            continue
        sign = 1.0 if int(_field(rec, "type")) == c.POSITION_TYPE_BUY else -1.0
        out.append(
            VenuePosition(
                ticket=int(_field(rec, "ticket")),
                symbol=str(_field(rec, "symbol")),
                lots=sign * float(_field(rec, "volume")),
                price_open=float(_field(rec, "price_open")),
                sl=float(_field(rec, "sl")) or None,
                tp=float(_field(rec, "tp")) or None,
                magic=magic,
            )
        )
    return out


def positions_to_domain(
    positions: Iterable[VenuePosition], specs: Mapping[str, SymbolSpec]
) -> dict[str, Position]:
    """Net position per symbol, in units.

    A netting account has one position per symbol. On a hedging account the quantities are
    summed with sign; avg_price is the volume-weighted open price of the positions on the side
    of the net quantity (0.0 when flat).
    """
    by_symbol: dict[str, list[tuple[float, float]]] = {}
    for p in positions:
        by_symbol.setdefault(p.symbol, []).append((p.lots, p.price_open))
    out: dict[str, Position] = {}
    for symbol, legs in by_symbol.items():
        net = math.fsum(q for q, _ in legs)
        side_legs = [(q, p) for q, p in legs if q * net > 0]
        weight = math.fsum(abs(q) for q, _ in side_legs)
        avg = math.fsum(abs(q) * p for q, p in side_legs) / weight if weight else 0.0
        out[symbol] = Position(symbol=symbol, quantity=units_for(net, specs[symbol]), avg_price=avg)
    return out


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """One working (resting) MT5 order of ours; volume in lots."""

    ticket: int
    symbol: str
    magic: int
    comment: str
    lots_left: float  # volume_current: what may still fill
    record: Any  # the TradeOrder itself, for order_record_to_order


def parse_working_orders(records: Iterable[Any], *, book: int) -> list[VenueOrder]:
    """Our working orders among `orders_get` records (the magic's high half is our book)."""
    return [
        VenueOrder(
            ticket=int(_field(rec, "ticket")),
            symbol=str(_field(rec, "symbol")),
            magic=int(_field(rec, "magic")),
            comment=str(_field(rec, "comment")),
            lots_left=float(_field(rec, "volume_current")),
            record=rec,
        )
        for rec in records
        if book_of(int(_field(rec, "magic"))) == book
    ]


_BUY_TYPES: Final = frozenset(
    {c.ORDER_TYPE_BUY, c.ORDER_TYPE_BUY_LIMIT, c.ORDER_TYPE_BUY_STOP, c.ORDER_TYPE_BUY_STOP_LIMIT}
)
_LIMIT_TYPES: Final = frozenset({c.ORDER_TYPE_BUY_LIMIT, c.ORDER_TYPE_SELL_LIMIT})


def order_record_to_order(
    rec: Any,
    *,
    client_id: str | None,
    spec: SymbolSpec,
    server_utc_offset: timedelta,
) -> Order:
    """A domain Order (remaining quantity, in units) for one of our active MT5 orders.

    MT5 does not know the order's intent or strategy; they come back as "venue" / "default".
    `client_id` None (a comment we cannot read) gives "mt5-order-<ticket>".
    """
    order_type = int(_field(rec, "type"))
    is_limit = order_type in _LIMIT_TYPES
    return Order(
        client_id=client_id or f"mt5-order-{int(_field(rec, 'ticket'))}",
        symbol=str(_field(rec, "symbol")),
        side=Side.BUY if order_type in _BUY_TYPES else Side.SELL,
        quantity=units_for(float(_field(rec, "volume_current")), spec),
        ts=server_to_utc(
            _field(rec, "time_setup"),
            server_utc_offset,
            msc=int(getattr(rec, "time_setup_msc", 0) or 0),
        ),
        intent="venue",
        order_type=OrderType.LIMIT if is_limit else OrderType.MARKET,
        limit_price=float(_field(rec, "price_open")) if is_limit else None,
        stop_loss=float(_field(rec, "sl")) or None,
        take_profit=float(_field(rec, "tp")) or None,
    )


# --- bars --------------------------------------------------------------------------------------

_RATE_FIELDS: Final = ("time", "open", "high", "low", "close", "tick_volume", "real_volume")


def rates_to_raw_frame(rates: Any, server_utc_offset: timedelta) -> pd.DataFrame:
    """copy_rates_* output (numpy structured array) -> raw bar frame with RAW_BAR_COLUMNS.

    `ts` is the bar open time in UTC. `volume` is `real_volume` (exchange-traded units) where the
    bar has one and `tick_volume` otherwise; decided per bar so a bar's value never depends on
    which window it was fetched in (OTC forex/CFD feeds report real_volume 0 throughout).
    """
    arr = np.asarray(rates)
    names = arr.dtype.names or ()
    missing = [f for f in _RATE_FIELDS if f not in names]
    if missing:
        msg = f"MT5 rates lack fields: {', '.join(missing)}"
        raise VenueRecordError(msg)
    seconds = arr["time"].astype("int64")
    ts = pd.to_datetime(seconds, unit="s", utc=True) - pd.Timedelta(server_utc_offset)
    real = arr["real_volume"].astype("float64")
    ticks = arr["tick_volume"].astype("float64")
    frame = pd.DataFrame(
        {
            "ts": pd.DatetimeIndex(ts).as_unit("ns"),
            "open": arr["open"].astype("float64"),
            "high": arr["high"].astype("float64"),
            "low": arr["low"].astype("float64"),
            "close": arr["close"].astype("float64"),
            "volume": np.where(real > 0, real, ticks),
        },
        columns=list(RAW_BAR_COLUMNS),
    )
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)
