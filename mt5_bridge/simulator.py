"""A simulated MetaTrader 5 terminal: a stand-in for the `MetaTrader5` module object.

It follows the documented Python API (function names and signatures, namedtuple results with
`._asdict()`, `None` plus `last_error()` on failure, the TRADE_RETCODE_* and RES_* codes) so the
bridge runs unchanged against it, and it lets a test inject the failures a real terminal
produces: requotes, rate limits, timeouts after execution, lost IPC, closed markets.

It is also a sandbox: `SimulatedTerminal()` plus `add_symbol(...)` gives a terminal that
`MT5Broker` can trade against with no broker account (see mt5_bridge/README.md).

What it simulates, and what it does not:
- Market (TRADE_ACTION_DEAL) orders, stop changes of an open position (TRADE_ACTION_SLTP) and
  removal of a working order (TRADE_ACTION_REMOVE). Pending orders (TRADE_ACTION_PENDING) are
  refused with TRADE_RETCODE_INVALID.
- Netting accounts (one position per symbol, reversal in one deal) and hedging accounts (a new
  position per deal unless the request names `position` to close).
- Fills at ask (buy) / bid (sell); volume min/step/max; filling mode against the symbol's
  bitmask; stop distance against trade_stops_level (MQL5's rule: buy stops against the bid,
  sell stops against the ask); a requote when the request price is more than `deviation`
  points from the market; margin = volume * contract size * price / leverage, with no currency
  conversion; NO_MONEY when the margin of the resulting positions exceeds equity.
- Liquidity (`SymbolConfig.liquidity`, lots one request can take): FOK beyond it is rejected
  whole (TRADE_RETCODE_REJECT); IOC fills what is there and cancels the rest
  (TRADE_RETCODE_DONE_PARTIAL); RETURN fills what is there and leaves the rest working in
  `orders_get` (ORDER_STATE_PARTIAL), filled as liquidity comes back on later quotes.
- Server-side execution on every quote change: a position's stop loss or take profit closes it
  at the market price (a gap fills at the gapped price) with DEAL_REASON_SL / DEAL_REASON_TP and
  the server's comment ("[sl 1.09900]"); when the margin level falls to the account's stop-out
  level (`margin_so_so`, percent) the losing position is closed with DEAL_REASON_SO ("[so
  29.87%]"). `close_manually` is a trader closing by hand (DEAL_REASON_CLIENT, magic 0).
- Brokers' habits: `rewrite_comments` (the server replaces order/deal comments), `deal_delay_s`
  (a deal shows in `history_deals_get` only that long after it happened), a disconnect in the
  middle of a send (`SendFault(execute=True, error=...)`) and a process killed around a send
  (`SendFault(kill=True)`, raising `ProcessKilled`).
- Structures carry the documented field names; SymbolInfo, AccountInfo and TerminalInfo carry a
  subset of the real fields (those listed in the namedtuples below).
- Times are stamped in server time: the injected UTC clock plus `server_utc_offset`.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np

from mt5_bridge import _codes as c

__all__ = [
    "RATES_DTYPE",
    "TICKS_DTYPE",
    "ProcessKilled",
    "SendFault",
    "SimulatedTerminal",
    "SymbolConfig",
]

RATES_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("tick_volume", "<u8"),
        ("spread", "<i4"),
        ("real_volume", "<u8"),
    ]
)
TICKS_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("bid", "<f8"),
        ("ask", "<f8"),
        ("last", "<f8"),
        ("volume", "<u8"),
        ("time_msc", "<i8"),
        ("flags", "<u4"),
        ("volume_real", "<f8"),
    ]
)


class TradeRequest(NamedTuple):
    action: int
    magic: int
    order: int
    symbol: str
    volume: float
    price: float
    stoplimit: float
    sl: float
    tp: float
    deviation: int
    type: int
    type_filling: int
    type_time: int
    expiration: int
    comment: str
    position: int
    position_by: int


class OrderSendResult(NamedTuple):
    retcode: int
    deal: int
    order: int
    volume: float
    price: float
    bid: float
    ask: float
    comment: str
    request_id: int
    retcode_external: int
    request: TradeRequest


class OrderCheckResult(NamedTuple):
    retcode: int
    balance: float
    equity: float
    profit: float
    margin: float
    margin_free: float
    margin_level: float
    comment: str
    request: TradeRequest


class Tick(NamedTuple):
    time: int
    bid: float
    ask: float
    last: float
    volume: int
    time_msc: int
    flags: int
    volume_real: float


class SymbolInfo(NamedTuple):
    name: str
    visible: bool
    select: bool
    digits: int
    point: float
    spread: int
    trade_mode: int
    trade_stops_level: int
    trade_freeze_level: int
    trade_contract_size: float
    volume_min: float
    volume_max: float
    volume_step: float
    filling_mode: int
    bid: float
    ask: float
    currency_base: str
    currency_profit: str
    currency_margin: str
    description: str
    path: str


class AccountInfo(NamedTuple):
    login: int
    trade_mode: int
    leverage: int
    limit_orders: int
    margin_so_mode: int
    trade_allowed: bool
    trade_expert: bool
    margin_mode: int
    currency_digits: int
    fifo_close: bool
    balance: float
    credit: float
    profit: float
    equity: float
    margin: float
    margin_free: float
    margin_level: float
    margin_so_call: float
    margin_so_so: float
    margin_initial: float
    margin_maintenance: float
    assets: float
    liabilities: float
    commission_blocked: float
    name: str
    server: str
    currency: str
    company: str


class TerminalInfo(NamedTuple):
    community_account: bool
    community_connection: bool
    connected: bool
    dlls_allowed: bool
    trade_allowed: bool
    tradeapi_disabled: bool
    email_enabled: bool
    ftp_enabled: bool
    notifications_enabled: bool
    mqid: bool
    build: int
    maxbars: int
    codepage: int
    ping_last: int
    community_balance: float
    retransmission: float
    company: str
    name: str
    language: str
    path: str
    data_path: str
    commondata_path: str


class TradePosition(NamedTuple):
    ticket: int
    time: int
    time_msc: int
    time_update: int
    time_update_msc: int
    type: int
    magic: int
    identifier: int
    reason: int
    volume: float
    price_open: float
    sl: float
    tp: float
    price_current: float
    swap: float
    profit: float
    symbol: str
    comment: str
    external_id: str


class TradeOrder(NamedTuple):
    ticket: int
    time_setup: int
    time_setup_msc: int
    time_done: int
    time_done_msc: int
    time_expiration: int
    type: int
    type_time: int
    type_filling: int
    state: int
    magic: int
    position_id: int
    position_by_id: int
    reason: int
    volume_initial: float
    volume_current: float
    price_open: float
    sl: float
    tp: float
    price_current: float
    price_stoplimit: float
    symbol: str
    comment: str
    external_id: str


class TradeDeal(NamedTuple):
    ticket: int
    order: int
    time: int
    time_msc: int
    type: int
    entry: int
    magic: int
    position_id: int
    reason: int
    volume: float
    price: float
    commission: float
    swap: float
    profit: float
    fee: float
    symbol: str
    comment: str
    external_id: str


# Descriptions as the terminal words them (MqlTradeResult.comment / last_error()).
_COMMENTS = {
    c.TRADE_RETCODE_REQUOTE: "Requote",
    c.TRADE_RETCODE_REJECT: "Request rejected",
    c.TRADE_RETCODE_PLACED: "Order placed",
    c.TRADE_RETCODE_DONE: "Request executed",
    c.TRADE_RETCODE_DONE_PARTIAL: "Request executed partially",
    c.TRADE_RETCODE_ERROR: "Request processing error",
    c.TRADE_RETCODE_TIMEOUT: "Request timed out",
    c.TRADE_RETCODE_INVALID: "Invalid request",
    c.TRADE_RETCODE_INVALID_VOLUME: "Invalid volume",
    c.TRADE_RETCODE_INVALID_PRICE: "Invalid price",
    c.TRADE_RETCODE_INVALID_STOPS: "Invalid stops",
    c.TRADE_RETCODE_TRADE_DISABLED: "Trade disabled",
    c.TRADE_RETCODE_MARKET_CLOSED: "Market closed",
    c.TRADE_RETCODE_NO_MONEY: "No money",
    c.TRADE_RETCODE_PRICE_CHANGED: "Prices changed",
    c.TRADE_RETCODE_PRICE_OFF: "Off quotes",
    c.TRADE_RETCODE_TOO_MANY_REQUESTS: "Too many requests",
    c.TRADE_RETCODE_CLIENT_DISABLES_AT: "AutoTrading disabled by client",
    c.TRADE_RETCODE_INVALID_FILL: "Unsupported filling mode",
    c.TRADE_RETCODE_CONNECTION: "No connection",
    c.TRADE_RETCODE_LONG_ONLY: "Long positions only allowed",
    c.TRADE_RETCODE_SHORT_ONLY: "Short positions only allowed",
}

NO_IPC = (c.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
OK = (c.RES_S_OK, "Success")


@dataclass
class SymbolConfig:
    """A tradable symbol and its current quote. Mutable: tests move prices and flip states."""

    name: str
    bid: float
    ask: float
    digits: int = 5
    point: float = 1e-5
    volume_min: float = 0.01
    volume_step: float = 0.01
    volume_max: float = 100.0
    filling_mode: int = c.SYMBOL_FILLING_FOK | c.SYMBOL_FILLING_IOC
    stops_level: int = 0  # points
    contract_size: float = 100_000.0
    trade_mode: int = c.SYMBOL_TRADE_MODE_FULL
    market_open: bool = True
    commission_per_lot: float = 0.0  # account currency per lot, charged on every deal
    liquidity: float | None = None  # lots one request can take now; None: unlimited


@dataclass(frozen=True)
class SendFault:
    """One scripted answer to a coming order_send call.

    retcode: the answer. execute: also execute the order first (a TIMEOUT whose order did go
    through). new_quote: (bid, ask) the market moves to when the fault fires (a requote's new
    price). error: make order_send return None with this last_error instead (retcode ignored).
    kill: the calling process dies inside order_send (raises ProcessKilled): before the request
    reaches the server, or after it executed when `execute` is set.
    """

    retcode: int = c.TRADE_RETCODE_DONE
    execute: bool = False
    new_quote: tuple[float, float] | None = None
    error: tuple[int, str] | None = None
    comment: str | None = None
    kill: bool = False


class ProcessKilled(BaseException):
    """The process calling the terminal was killed (SIGKILL) in the middle of a call.

    A BaseException, so that no `except Exception` in the code under test can swallow it: a
    test catches it where the process would have died, then starts a fresh one.
    """


@dataclass
class _Position:
    ticket: int
    symbol: str
    type: int
    volume: float
    price_open: float
    magic: int
    comment: str
    time: int
    time_msc: int
    sl: float = 0.0
    tp: float = 0.0


@dataclass
class _Account:
    login: int
    password: str = field(repr=False)
    server: str
    balance: float
    leverage: int
    margin_mode: int
    currency: str
    trade_mode: int
    stop_out_level: float = 30.0  # margin level (percent) at which the server closes positions


def _to_server_seconds(value: Any) -> int:
    """Seconds for a history bound; tz-aware datetimes by their timestamp, naive as UTC."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return math.floor(aware.timestamp())
    return int(value)


def _group_match(symbol: str, group: str | None) -> bool:
    """MT5 group filter: comma-separated masks with '*', a leading '!' excludes."""
    if not group:
        return True
    matched = False
    for raw in group.split(","):
        mask = raw.strip()
        if not mask:
            continue
        if mask.startswith("!"):
            if fnmatch.fnmatchcase(symbol, mask[1:]):
                return False
        elif fnmatch.fnmatchcase(symbol, mask):
            matched = True
    return matched


class SimulatedTerminal:
    """Module-like object with the MetaTrader5 package's functions and constants."""

    def __init__(
        self,
        *,
        login: int = 5_000_001,
        password: str = "sim-password",  # noqa: S107 - the simulated account's, not a secret
        server: str = "Sim-Demo",
        balance: float = 10_000.0,
        leverage: int = 100,
        currency: str = "USD",
        margin_mode: int = c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING,
        trade_mode: int = c.ACCOUNT_TRADE_MODE_DEMO,
        server_utc_offset: timedelta = timedelta(0),
        clock: Callable[[], datetime] | None = None,
        algo_trading_allowed: bool = True,
        stop_out_level: float = 30.0,
    ) -> None:
        self._account = _Account(
            login, password, server, balance, leverage, margin_mode, currency, trade_mode,
            stop_out_level,
        )  # fmt: skip
        self._offset = server_utc_offset
        self._clock = clock or (lambda: datetime.now(UTC))
        self._algo_trading_allowed = algo_trading_allowed
        self._initialized = False
        self._logged_in = False
        self._last_error: tuple[int, str] = OK
        self._symbols: dict[str, SymbolConfig] = {}
        self._selected: set[str] = set()
        self._positions: dict[int, _Position] = {}
        self._active_orders: list[TradeOrder] = []
        self._history_orders: list[TradeOrder] = []
        self._deals: list[TradeDeal] = []
        self._rates: dict[tuple[str, int], np.ndarray] = {}
        self._ticks: dict[str, list[tuple[Any, ...]]] = {}
        self._tickets = itertools.count(100_001)
        self._request_ids = itertools.count(1)
        self._send_faults: deque[SendFault] = deque()
        self._call_faults: dict[str, deque[tuple[int, str]]] = {}
        self._initialize_faults: deque[tuple[int, str]] = deque()
        self._ipc_down: tuple[int, str] | None = None
        self._comment_rewriter: Callable[[str], str] | None = None
        self._deal_delay = timedelta(0)
        self._deal_visible_at: dict[int, datetime] = {}
        self._position_of_order: dict[int, int] = {}
        # What the bridge did, for assertions.
        self.calls: Counter[str] = Counter()
        self.sent_requests: list[dict[str, Any]] = []
        self.checked_requests: list[dict[str, Any]] = []

    # --- test controls ---------------------------------------------------------------------

    def add_symbol(self, name: str, *, bid: float, ask: float, **spec: Any) -> SymbolConfig:
        symbol = SymbolConfig(name=name, bid=bid, ask=ask, **spec)
        self._symbols[name] = symbol
        self._record_tick(symbol)
        return symbol

    def set_quote(self, name: str, bid: float, ask: float) -> None:
        """Move the market; the server then runs what a new tick triggers (stops, stop out,
        working RETURN orders)."""
        symbol = self._symbols[name]
        symbol.bid, symbol.ask = bid, ask
        self._record_tick(symbol)
        self._on_tick(symbol)

    def set_liquidity(self, name: str, lots: float | None) -> None:
        """Lots one request can take from now on (None: unlimited); working orders may fill."""
        symbol = self._symbols[name]
        symbol.liquidity = lots
        self._on_tick(symbol)

    def rewrite_comments(self, rewrite: Callable[[str], str] | None) -> None:
        """The server replaces the comment of every order, deal and position it creates from now
        on (some brokers cut it, some write their own); None keeps comments."""
        self._comment_rewriter = rewrite

    def set_deal_delay(self, seconds: float) -> None:
        """Deals show in history_deals_get only `seconds` after they happened (positions update
        at once), as when the terminal's history synchronises late."""
        self._deal_delay = timedelta(seconds=seconds)

    def close_manually(self, position_ticket: int, volume: float | None = None) -> int:
        """A trader closes (part of) a position by hand in the terminal; returns the deal ticket."""
        p = self._positions[position_ticket]
        s = self._symbols[p.symbol]
        buy = p.type == c.POSITION_TYPE_SELL
        return self._book(
            symbol=p.symbol, buy=buy, volume=p.volume if volume is None else volume,
            price=s.ask if buy else s.bid, magic=0, comment="", reason=c.DEAL_REASON_CLIENT,
            position=p.ticket,
        )[0]  # fmt: skip

    def active_orders(self) -> tuple[TradeOrder, ...]:
        """Working orders, as orders_get would list them."""
        return tuple(self._active_orders)

    def history_orders(self) -> tuple[TradeOrder, ...]:
        """Every finished order (filled, cancelled, rejected by liquidity), oldest first."""
        return tuple(self._history_orders)

    def symbol_config(self, name: str) -> SymbolConfig:
        return self._symbols[name]

    def set_market_closed(self, name: str, closed: bool = True) -> None:
        self._symbols[name].market_open = not closed

    def set_rates(self, name: str, timeframe: int, rates: np.ndarray) -> None:
        """Bars for copy_rates_*: a RATES_DTYPE array stamped in server time."""
        self._rates[(name, int(timeframe))] = np.asarray(rates, dtype=RATES_DTYPE)

    def queue_send_faults(self, *faults: SendFault) -> None:
        self._send_faults.extend(faults)

    def fail_next_calls(
        self, function: str, count: int = 1, error: tuple[int, str] = NO_IPC
    ) -> None:
        """The next `count` calls of `function` return None (False for bool functions)."""
        self._call_faults.setdefault(function, deque()).extend([error] * count)

    def fail_next_initialize(self, count: int = 1, error: tuple[int, str] = NO_IPC) -> None:
        self._initialize_faults.extend([error] * count)

    def drop_connection(self, error: tuple[int, str] = NO_IPC) -> None:
        """The IPC link dies: every call fails until initialize() succeeds again."""
        self._ipc_down = error
        self._initialized = False

    def set_algo_trading(self, allowed: bool) -> None:
        self._algo_trading_allowed = allowed

    # --- connection --------------------------------------------------------------------------

    def initialize(
        self,
        path: str | None = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
        portable: bool = False,
    ) -> bool:
        self.calls["initialize"] += 1
        if self._initialize_faults:
            self._last_error = self._initialize_faults.popleft()
            return False
        self._ipc_down = None
        self._initialized = True
        self._last_error = OK
        if login is not None:
            return self._authorize(login, password, server)
        self._logged_in = True  # the terminal's own saved account
        return True

    def login(
        self,
        login: int,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
    ) -> bool:
        self.calls["login"] += 1
        if not self._alive("login"):
            return False
        return self._authorize(login, password, server)

    def shutdown(self) -> None:
        self.calls["shutdown"] += 1
        self._initialized = False

    def last_error(self) -> tuple[int, str]:
        return self._last_error

    def terminal_info(self) -> TerminalInfo | None:
        if not self._alive("terminal_info"):
            return None
        return TerminalInfo(
            False, False, True, False, self._algo_trading_allowed, False, False, False,
            False, False, 4000, 100_000, 0, 20, 0.0, 0.0, "Simulated", "SimulatedTerminal",
            "English", "sim", "sim", "sim",
        )  # fmt: skip

    def account_info(self) -> AccountInfo | None:
        if not self._alive("account_info") or not self._logged_in:
            return None
        a = self._account
        margin = self._margin_total()
        equity = a.balance + self._floating_profit()
        return AccountInfo(
            a.login, a.trade_mode, a.leverage, 0, 0, True, True, a.margin_mode, 2, False,
            a.balance, 0.0, equity - a.balance, equity, margin, equity - margin,
            (equity / margin * 100.0) if margin else 0.0, 50.0, a.stop_out_level, 0.0, 0.0, 0.0,
            0.0, 0.0,
            "Sim Trader", a.server, a.currency, "Simulated Broker",
        )  # fmt: skip

    # --- symbols -----------------------------------------------------------------------------

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        if not self._alive("symbol_select"):
            return False
        if symbol not in self._symbols:
            self._last_error = (c.RES_E_NOT_FOUND, "Terminal: Not found")
            return False
        if enable:
            self._selected.add(symbol)
        else:
            self._selected.discard(symbol)
        return True

    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        if not self._alive("symbol_info"):
            return None
        s = self._symbols.get(symbol)
        if s is None:
            self._last_error = (c.RES_E_NOT_FOUND, "Terminal: Not found")
            return None
        spread = round((s.ask - s.bid) / s.point)
        return SymbolInfo(
            s.name, s.name in self._selected, s.name in self._selected, s.digits, s.point,
            spread, s.trade_mode, s.stops_level, 0, s.contract_size, s.volume_min,
            s.volume_max, s.volume_step, s.filling_mode, s.bid, s.ask, s.name[:3], s.name[3:],
            s.name[:3], s.name, f"Sim\\{s.name}",
        )  # fmt: skip

    def symbol_info_tick(self, symbol: str) -> Tick | None:
        if not self._alive("symbol_info_tick"):
            return None
        s = self._symbols.get(symbol)
        if s is None:
            self._last_error = (c.RES_E_NOT_FOUND, "Terminal: Not found")
            return None
        secs, msc = self._server_now()
        return Tick(secs, s.bid, s.ask, 0.0, 0, msc, 6, 0.0)

    # --- trading -----------------------------------------------------------------------------

    def order_check(self, request: dict[str, Any]) -> OrderCheckResult | None:
        if not self._alive("order_check"):
            return None
        self.checked_requests.append(dict(request))
        req = self._request_tuple(request)
        problem = self._validate(req, check_price=False)
        retcode, comment = problem or (c.CHECK_RETCODE_OK, "Done")
        a = self._account
        equity = a.balance + self._floating_profit()
        margin = self._margin_total()
        return OrderCheckResult(
            retcode, a.balance, equity, equity - a.balance, margin, equity - margin,
            (equity / margin * 100.0) if margin else 0.0, comment, req,
        )  # fmt: skip

    def order_send(self, request: dict[str, Any]) -> OrderSendResult | None:
        if not self._alive("order_send"):
            return None
        fault = self._send_faults.popleft() if self._send_faults else None
        if fault is not None and fault.kill and not fault.execute:
            msg = "killed before order_send reached the terminal"
            raise ProcessKilled(msg)
        self.sent_requests.append(dict(request))
        req = self._request_tuple(request)
        request_id = next(self._request_ids)
        if fault is not None and fault.new_quote is not None:
            self.set_quote(req.symbol, *fault.new_quote)
        if fault is not None and not fault.execute:
            if fault.error is not None:
                self._last_error = fault.error
                return None
            return self._result(req, request_id, fault.retcode, fault.comment)
        if req.action == c.TRADE_ACTION_SLTP:
            result = self._modify_stops(req, request_id)
        elif req.action == c.TRADE_ACTION_REMOVE:
            result = self._remove_order(req, request_id)
        else:
            result = self._market_deal(req, request_id)
        if fault is not None:  # executed, yet the answer is lost, misleading, or never read
            if fault.kill:
                msg = "killed after the order executed, before the answer"
                raise ProcessKilled(msg)
            if fault.error is not None:
                self._last_error = fault.error
                return None
            return self._result(req, request_id, fault.retcode, fault.comment)
        return result

    def _market_deal(self, req: TradeRequest, request_id: int) -> OrderSendResult:
        problem = self._validate(req, check_price=True)
        if problem is not None:
            return self._result(req, request_id, problem[0], problem[1])
        s = self._symbols[req.symbol]
        available = req.volume if s.liquidity is None else min(req.volume, s.liquidity)
        available = math.floor(available / s.volume_step + 1e-9) * s.volume_step
        if req.type_filling == c.ORDER_FILLING_FOK and available < req.volume - 1e-9:
            return self._result(req, request_id, c.TRADE_RETCODE_REJECT, None)
        if available <= 0.0:
            if req.type_filling == c.ORDER_FILLING_IOC:
                return self._result(req, request_id, c.TRADE_RETCODE_REJECT, None)
        filled = round(available, 8)
        rest = round(req.volume - filled, 8)
        buy = req.type == c.ORDER_TYPE_BUY
        order_ticket = next(self._tickets)
        deal_ticket, price = 0, 0.0
        if filled > 0:
            deal_ticket, price = self._book(
                symbol=req.symbol, buy=buy, volume=filled, price=s.ask if buy else s.bid,
                magic=req.magic, comment=req.comment, reason=c.DEAL_REASON_EXPERT,
                position=req.position if self._hedging else 0, order_ticket=order_ticket,
                sl=req.sl, tp=req.tp,
            )  # fmt: skip
        secs, msc = self._server_now()
        if rest > 0 and req.type_filling == c.ORDER_FILLING_RETURN:
            state, done = c.ORDER_STATE_PARTIAL, 0
        elif rest > 0:
            state, done = c.ORDER_STATE_CANCELED, secs
        else:
            state, done = c.ORDER_STATE_FILLED, secs
        order = TradeOrder(
            ticket=order_ticket, time_setup=secs, time_setup_msc=msc, time_done=done,
            time_done_msc=done * 1000, time_expiration=0, type=req.type, type_time=req.type_time,
            type_filling=req.type_filling, state=state, magic=req.magic,
            position_id=self._position_of_order.get(order_ticket, 0), position_by_id=0,
            reason=c.DEAL_REASON_EXPERT, volume_initial=req.volume, volume_current=rest,
            price_open=price, sl=req.sl, tp=req.tp, price_current=price, price_stoplimit=0.0,
            symbol=req.symbol, comment=self._stored_comment(req.comment), external_id="",
        )  # fmt: skip
        if state == c.ORDER_STATE_PARTIAL:
            self._active_orders.append(order)
        else:
            self._history_orders.append(order)
        if rest <= 0:
            retcode = c.TRADE_RETCODE_DONE
        elif filled > 0:
            retcode = c.TRADE_RETCODE_DONE_PARTIAL
        else:  # RETURN with nothing available now: the order rests, unfilled
            retcode = c.TRADE_RETCODE_PLACED
        return self._result(
            req, request_id, retcode, None, deal_ticket, order_ticket, price, volume=filled
        )

    def _modify_stops(self, req: TradeRequest, request_id: int) -> OrderSendResult:
        p = self._positions.get(req.position)
        if p is None or (req.symbol and p.symbol != req.symbol):
            return self._result(req, request_id, c.TRADE_RETCODE_POSITION_CLOSED, None)
        if (req.sl, req.tp) == (p.sl, p.tp):
            return self._result(req, request_id, c.TRADE_RETCODE_NO_CHANGES, None)
        s = self._symbols[p.symbol]
        if not self._stops_valid(req, s, p.type == c.POSITION_TYPE_BUY):
            return self._result(req, request_id, c.TRADE_RETCODE_INVALID_STOPS, None)
        p.sl, p.tp = req.sl, req.tp
        return self._result(req, request_id, c.TRADE_RETCODE_DONE, None)

    def _remove_order(self, req: TradeRequest, request_id: int) -> OrderSendResult:
        order = next((o for o in self._active_orders if o.ticket == req.order), None)
        if order is None:
            return self._result(req, request_id, c.TRADE_RETCODE_INVALID_ORDER, None)
        self._active_orders.remove(order)
        secs, msc = self._server_now()
        self._history_orders.append(
            order._replace(state=c.ORDER_STATE_CANCELED, time_done=secs, time_done_msc=msc)
        )
        return self._result(req, request_id, c.TRADE_RETCODE_DONE, None, order=order.ticket)

    def positions_get(
        self, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradePosition, ...] | None:
        if not self._alive("positions_get"):
            return None
        out = []
        for p in self._positions.values():
            if symbol is not None and p.symbol != symbol:
                continue
            if ticket is not None and p.ticket != ticket:
                continue
            if not _group_match(p.symbol, group):
                continue
            out.append(self._position_tuple(p))
        return tuple(out)

    def orders_get(
        self, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradeOrder, ...] | None:
        if not self._alive("orders_get"):
            return None
        return tuple(
            o
            for o in self._active_orders
            if (symbol is None or o.symbol == symbol)
            and (ticket is None or o.ticket == ticket)
            and _group_match(o.symbol, group)
        )

    def history_orders_get(
        self,
        date_from: Any = None,
        date_to: Any = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeOrder, ...] | None:
        if not self._alive("history_orders_get"):
            return None
        if ticket is not None:
            return tuple(o for o in self._history_orders if o.ticket == ticket)
        if position is not None:
            return tuple(o for o in self._history_orders if o.position_id == position)
        bounds = self._bounds(date_from, date_to)
        if bounds is None:
            return None
        lo, hi = bounds
        return tuple(
            o
            for o in self._history_orders
            if lo <= o.time_setup <= hi and _group_match(o.symbol, group)
        )

    def history_deals_get(
        self,
        date_from: Any = None,
        date_to: Any = None,
        *,
        group: str | None = None,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeDeal, ...] | None:
        """Deals by time range (+group), by order ticket (`ticket`), or by position id."""
        if not self._alive("history_deals_get"):
            return None
        now = self._clock()
        visible = [d for d in self._deals if self._deal_visible_at.get(d.ticket, now) <= now]
        if ticket is not None:
            return tuple(d for d in visible if d.order == ticket)
        if position is not None:
            return tuple(d for d in visible if d.position_id == position)
        bounds = self._bounds(date_from, date_to)
        if bounds is None:
            return None
        lo, hi = bounds
        return tuple(d for d in visible if lo <= d.time <= hi and _group_match(d.symbol, group))

    # --- history -----------------------------------------------------------------------------

    def copy_rates_range(
        self, symbol: str, timeframe: int, date_from: Any, date_to: Any
    ) -> np.ndarray | None:
        if not self._alive("copy_rates_range"):
            return None
        if symbol not in self._symbols:
            self._last_error = (c.RES_E_INVALID_PARAMS, "Terminal: Invalid params")
            return None
        rates = self._rates.get((symbol, int(timeframe)), np.empty(0, dtype=RATES_DTYPE))
        lo, hi = _to_server_seconds(date_from), _to_server_seconds(date_to)
        return rates[(rates["time"] >= lo) & (rates["time"] <= hi)].copy()

    def copy_ticks_range(
        self, symbol: str, date_from: Any, date_to: Any, flags: int
    ) -> np.ndarray | None:
        if not self._alive("copy_ticks_range"):
            return None
        if symbol not in self._symbols:
            self._last_error = (c.RES_E_INVALID_PARAMS, "Terminal: Invalid params")
            return None
        ticks = np.array(self._ticks.get(symbol, []), dtype=TICKS_DTYPE)
        lo, hi = _to_server_seconds(date_from), _to_server_seconds(date_to)
        return ticks[(ticks["time"] >= lo) & (ticks["time"] <= hi)]

    # --- internals ---------------------------------------------------------------------------

    def _alive(self, function: str) -> bool:
        self.calls[function] += 1
        if self._ipc_down is not None or not self._initialized:
            self._last_error = self._ipc_down or NO_IPC
            return False
        faults = self._call_faults.get(function)
        if faults:
            self._last_error = faults.popleft()
            return False
        self._last_error = OK
        return True

    def _authorize(self, login: int, password: str | None, server: str | None) -> bool:
        a = self._account
        ok = login == a.login and (password in (None, a.password)) and server in (None, a.server)
        self._logged_in = ok
        if not ok:
            self._last_error = (c.RES_E_AUTH_FAILED, "Authorization failed")
        return ok

    def _server_now(self) -> tuple[int, int]:
        now = self._clock()
        msc = round((now + self._offset).timestamp() * 1000)
        return msc // 1000, msc

    def _record_tick(self, s: SymbolConfig) -> None:
        secs, msc = self._server_now()
        self._ticks.setdefault(s.name, []).append((secs, s.bid, s.ask, 0.0, 0, msc, 6, 0.0))

    def _bounds(self, date_from: Any, date_to: Any) -> tuple[int, int] | None:
        if date_from is None or date_to is None:
            self._last_error = (c.RES_E_INVALID_PARAMS, "Invalid arguments")
            return None
        return _to_server_seconds(date_from), _to_server_seconds(date_to)

    @staticmethod
    def _request_tuple(request: dict[str, Any]) -> TradeRequest:
        get = request.get
        return TradeRequest(
            int(get("action", 0)), int(get("magic", 0)), int(get("order", 0)),
            str(get("symbol", "")), float(get("volume", 0.0)), float(get("price", 0.0)),
            float(get("stoplimit", 0.0)), float(get("sl", 0.0)), float(get("tp", 0.0)),
            int(get("deviation", 0)), int(get("type", 0)),
            int(get("type_filling", c.ORDER_FILLING_FOK)), int(get("type_time", 0)),
            int(get("expiration", 0)), str(get("comment", ""))[:31], int(get("position", 0)),
            int(get("position_by", 0)),
        )  # fmt: skip

    def _result(
        self,
        req: TradeRequest,
        request_id: int,
        retcode: int,
        comment: str | None,
        deal: int = 0,
        order: int = 0,
        price: float = 0.0,
        volume: float | None = None,
    ) -> OrderSendResult:
        s = self._symbols.get(req.symbol)
        bid, ask = (s.bid, s.ask) if s else (0.0, 0.0)
        text = comment if comment is not None else _COMMENTS.get(retcode, "Request rejected")
        if volume is None:
            volume = req.volume if deal else 0.0
        return OrderSendResult(
            retcode, deal, order, volume, price, bid, ask, text, request_id, 0, req
        )

    def _validate(self, req: TradeRequest, *, check_price: bool) -> tuple[int, str] | None:
        def fail(code: int) -> tuple[int, str]:
            return code, _COMMENTS[code]

        if req.action != c.TRADE_ACTION_DEAL or req.type not in (
            c.ORDER_TYPE_BUY,
            c.ORDER_TYPE_SELL,
        ):
            return fail(c.TRADE_RETCODE_INVALID)
        s = self._symbols.get(req.symbol)
        if s is None:
            return fail(c.TRADE_RETCODE_INVALID)
        if not self._algo_trading_allowed:
            return fail(c.TRADE_RETCODE_CLIENT_DISABLES_AT)
        buy = req.type == c.ORDER_TYPE_BUY
        if s.trade_mode == c.SYMBOL_TRADE_MODE_DISABLED:
            return fail(c.TRADE_RETCODE_TRADE_DISABLED)
        if s.trade_mode == c.SYMBOL_TRADE_MODE_LONGONLY and not buy:
            return fail(c.TRADE_RETCODE_LONG_ONLY)
        if s.trade_mode == c.SYMBOL_TRADE_MODE_SHORTONLY and buy:
            return fail(c.TRADE_RETCODE_SHORT_ONLY)
        if not s.market_open:
            return fail(c.TRADE_RETCODE_MARKET_CLOSED)
        steps = req.volume / s.volume_step
        if (
            req.volume < s.volume_min - 1e-12
            or req.volume > s.volume_max + 1e-12
            or abs(steps - round(steps)) > 1e-7
        ):
            return fail(c.TRADE_RETCODE_INVALID_VOLUME)
        if not self._filling_allowed(req.type_filling, s.filling_mode):
            return fail(c.TRADE_RETCODE_INVALID_FILL)
        market = s.ask if buy else s.bid
        if check_price and req.price and abs(req.price - market) > req.deviation * s.point + 1e-12:
            return fail(c.TRADE_RETCODE_REQUOTE)
        if not self._stops_valid(req, s, buy):
            return fail(c.TRADE_RETCODE_INVALID_STOPS)
        if self._margin_after(req, s, buy) > self._account.balance + self._floating_profit():
            return fail(c.TRADE_RETCODE_NO_MONEY)
        return None

    @staticmethod
    def _filling_allowed(filling: int, mask: int) -> bool:
        if filling == c.ORDER_FILLING_FOK:
            return bool(mask & c.SYMBOL_FILLING_FOK)
        if filling == c.ORDER_FILLING_IOC:
            return bool(mask & c.SYMBOL_FILLING_IOC)
        if filling == c.ORDER_FILLING_RETURN:
            return not mask & (c.SYMBOL_FILLING_FOK | c.SYMBOL_FILLING_IOC)
        return False

    @staticmethod
    def _stops_valid(req: TradeRequest, s: SymbolConfig, buy: bool) -> bool:
        # MQL5 "Requirements and Limitations": a buy is closed at the bid, a sell at the ask,
        # and stops must sit at least trade_stops_level points away from that price.
        gap = s.stops_level * s.point - 1e-12
        if buy:
            sl_ok = req.sl == 0.0 or s.bid - req.sl >= gap
            tp_ok = req.tp == 0.0 or req.tp - s.bid >= gap
        else:
            sl_ok = req.sl == 0.0 or req.sl - s.ask >= gap
            tp_ok = req.tp == 0.0 or s.ask - req.tp >= gap
        return sl_ok and tp_ok and (req.sl == 0.0 or req.sl > 0) and (req.tp == 0.0 or req.tp > 0)

    def _margin_of(self, symbol: str, volume: float, price: float) -> float:
        s = self._symbols[symbol]
        return volume * s.contract_size * price / self._account.leverage

    def _margin_total(self) -> float:
        return math.fsum(
            self._margin_of(p.symbol, p.volume, p.price_open) for p in self._positions.values()
        )

    def _margin_after(self, req: TradeRequest, s: SymbolConfig, buy: bool) -> float:
        price = s.ask if buy else s.bid
        signed = req.volume if buy else -req.volume
        total = 0.0
        if self._hedging:
            total = self._margin_total()
            if req.position and req.position in self._positions:
                return total  # closing never needs more margin
            return total + self._margin_of(s.name, req.volume, price)
        for p in self._positions.values():
            if p.symbol != s.name:
                total += self._margin_of(p.symbol, p.volume, p.price_open)
        current = self._net_position(s.name)
        net = (current.volume if current and current.type == c.POSITION_TYPE_BUY else 0.0) - (
            current.volume if current and current.type == c.POSITION_TYPE_SELL else 0.0
        )
        return total + self._margin_of(s.name, abs(net + signed), price)

    @property
    def _hedging(self) -> bool:
        return self._account.margin_mode == c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING

    def _net_position(self, symbol: str) -> _Position | None:
        return next((p for p in self._positions.values() if p.symbol == symbol), None)

    def _floating_profit(self) -> float:
        total = 0.0
        for p in self._positions.values():
            s = self._symbols[p.symbol]
            if p.type == c.POSITION_TYPE_BUY:
                total += (s.bid - p.price_open) * p.volume * s.contract_size
            else:
                total += (p.price_open - s.ask) * p.volume * s.contract_size
        return total

    def _stored_comment(self, comment: str) -> str:
        return self._comment_rewriter(comment)[:31] if self._comment_rewriter else comment

    def _book(
        self,
        *,
        symbol: str,
        buy: bool,
        volume: float,
        price: float,
        magic: int,
        comment: str,
        reason: int,
        position: int = 0,
        order_ticket: int = 0,
        sl: float = 0.0,
        tp: float = 0.0,
    ) -> tuple[int, float]:
        """Execute one deal against the positions; returns (deal ticket, price).

        `position` names the position a hedging close (or a server-side close) applies to.
        `order_ticket` 0 makes a server order for the deal (stop outs, manual closes).
        """
        s = self._symbols[symbol]
        secs, msc = self._server_now()
        server_order = not order_ticket
        if server_order:
            order_ticket = next(self._tickets)
        deal_ticket = next(self._tickets)
        pos_type = c.POSITION_TYPE_BUY if buy else c.POSITION_TYPE_SELL
        profit = 0.0
        if position:
            existing = self._positions.get(position)
        elif self._hedging:
            existing = None
        else:
            existing = self._net_position(symbol)
        stored = self._stored_comment(comment)
        if existing is None:
            entry = c.DEAL_ENTRY_IN
            position_id = order_ticket
            self._positions[position_id] = _Position(
                position_id, symbol, pos_type, volume, price, magic, stored, secs, msc, sl, tp
            )
        elif existing.type == pos_type:
            entry = c.DEAL_ENTRY_IN
            position_id = existing.ticket
            total = existing.volume + volume
            existing.price_open = (existing.price_open * existing.volume + price * volume) / total
            existing.volume = round(total, 8)
            if sl or tp:
                existing.sl, existing.tp = sl, tp
        else:
            position_id = existing.ticket
            closed = min(volume, existing.volume)
            direction = 1.0 if existing.type == c.POSITION_TYPE_BUY else -1.0
            profit = (price - existing.price_open) * closed * s.contract_size * direction
            remaining = round(existing.volume - volume, 8)
            if remaining > 0:
                entry = c.DEAL_ENTRY_OUT
                existing.volume = remaining
            elif remaining == 0:
                entry = c.DEAL_ENTRY_OUT
                del self._positions[existing.ticket]
            else:  # a netting reversal keeps the position id; the new side gets the new stops
                entry = c.DEAL_ENTRY_INOUT
                existing.type, existing.volume, existing.price_open = pos_type, -remaining, price
                existing.sl, existing.tp = sl, tp
        self._position_of_order[order_ticket] = position_id
        commission = -s.commission_per_lot * volume
        self._account.balance += profit + commission
        deal_type = c.DEAL_TYPE_BUY if buy else c.DEAL_TYPE_SELL
        if server_order:
            server = TradeOrder(
                ticket=order_ticket, time_setup=secs, time_setup_msc=msc, time_done=secs,
                time_done_msc=msc, time_expiration=0, type=deal_type, type_time=0,
                type_filling=c.ORDER_FILLING_FOK, state=c.ORDER_STATE_FILLED, magic=magic,
                position_id=position_id, position_by_id=0, reason=reason, volume_initial=volume,
                volume_current=0.0, price_open=price, sl=0.0, tp=0.0, price_current=price,
                price_stoplimit=0.0, symbol=symbol, comment=comment, external_id="",
            )  # fmt: skip
            self._history_orders.append(server)
        deal = TradeDeal(
            ticket=deal_ticket, order=order_ticket, time=secs, time_msc=msc, type=deal_type,
            entry=entry, magic=magic, position_id=position_id, reason=reason, volume=volume,
            price=price, commission=commission, swap=0.0, profit=profit, fee=0.0,
            symbol=symbol, comment=comment if server_order else stored, external_id="",
        )  # fmt: skip
        self._deals.append(deal)
        self._deal_visible_at[deal_ticket] = self._clock() + self._deal_delay
        return deal_ticket, price

    def _on_tick(self, s: SymbolConfig) -> None:
        """What the server does on a new quote: stops, take profits, stop out, RETURN orders."""
        for p in [p for p in self._positions.values() if p.symbol == s.name]:
            long = p.type == c.POSITION_TYPE_BUY
            market = s.bid if long else s.ask
            hit_sl = p.sl > 0 and (market <= p.sl if long else market >= p.sl)
            hit_tp = p.tp > 0 and (market >= p.tp if long else market <= p.tp)
            if hit_sl or hit_tp:
                reason, level, tag = (
                    (c.DEAL_REASON_SL, p.sl, "sl") if hit_sl else (c.DEAL_REASON_TP, p.tp, "tp")
                )
                self._book(
                    symbol=p.symbol, buy=not long, volume=p.volume, price=market, magic=p.magic,
                    comment=f"[{tag} {level:.{s.digits}f}]", reason=reason, position=p.ticket,
                )  # fmt: skip
        self._check_stop_out()
        self._work_orders(s)

    def margin_level(self) -> float:
        """Equity / margin in percent (0.0 with no margin used), as account_info reports it."""
        margin = self._margin_total()
        return (self._account.balance + self._floating_profit()) / margin * 100 if margin else 0.0

    def _check_stop_out(self) -> None:
        while self._margin_total() > 0 and self.margin_level() <= self._account.stop_out_level:
            level = self.margin_level()
            worst = min(self._positions.values(), key=self._position_profit)
            s = self._symbols[worst.symbol]
            long = worst.type == c.POSITION_TYPE_BUY
            self._book(
                symbol=worst.symbol, buy=not long, volume=worst.volume,
                price=s.bid if long else s.ask, magic=worst.magic, comment=f"[so {level:.2f}%]",
                reason=c.DEAL_REASON_SO, position=worst.ticket,
            )  # fmt: skip

    def _position_profit(self, p: _Position) -> float:
        s = self._symbols[p.symbol]
        if p.type == c.POSITION_TYPE_BUY:
            return (s.bid - p.price_open) * p.volume * s.contract_size
        return (p.price_open - s.ask) * p.volume * s.contract_size

    def _work_orders(self, s: SymbolConfig) -> None:
        for order in [o for o in self._active_orders if o.symbol == s.name]:
            available = order.volume_current if s.liquidity is None else s.liquidity
            take = round(
                math.floor(min(available, order.volume_current) / s.volume_step + 1e-9)
                * s.volume_step,
                8,
            )
            if take <= 0:
                continue
            buy = order.type == c.ORDER_TYPE_BUY
            self._book(
                symbol=s.name, buy=buy, volume=take, price=s.ask if buy else s.bid,
                magic=order.magic, comment=order.comment, reason=c.DEAL_REASON_EXPERT,
                order_ticket=order.ticket, sl=order.sl, tp=order.tp,
            )  # fmt: skip
            rest = round(order.volume_current - take, 8)
            self._active_orders.remove(order)
            secs, msc = self._server_now()
            if rest > 0:
                self._active_orders.append(order._replace(volume_current=rest))
            else:
                done = order._replace(
                    volume_current=0.0, state=c.ORDER_STATE_FILLED, time_done=secs,
                    time_done_msc=msc, position_id=self._position_of_order[order.ticket],
                )  # fmt: skip
                self._history_orders.append(done)

    def _position_tuple(self, p: _Position) -> TradePosition:
        s = self._symbols[p.symbol]
        buy = p.type == c.POSITION_TYPE_BUY
        current = s.bid if buy else s.ask
        profit = (current - p.price_open) * p.volume * s.contract_size * (1 if buy else -1)
        return TradePosition(
            p.ticket, p.time, p.time_msc, p.time, p.time_msc, p.type, p.magic, p.ticket,
            c.DEAL_REASON_EXPERT, p.volume, p.price_open, p.sl, p.tp, current, 0.0, profit,
            p.symbol, p.comment, "",
        )  # fmt: skip

    def add_foreign_deal(self, deal: TradeDeal) -> None:
        """Put a deal made by someone else (another EA, a manual trade) into the history."""
        self._deals.append(deal)

    def deals(self) -> Iterable[TradeDeal]:
        return tuple(self._deals)


def _export_constants() -> None:
    prefixes = (
        "TRADE_", "ORDER_", "SYMBOL_", "POSITION_", "DEAL_", "ACCOUNT_", "TIMEFRAME_",
        "COPY_TICKS_", "RES_",
    )  # fmt: skip
    for name in dir(c):
        value = getattr(c, name)
        if name.startswith(prefixes) and isinstance(value, int):
            setattr(SimulatedTerminal, name, value)


_export_constants()
