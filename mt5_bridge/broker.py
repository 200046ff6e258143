"""MT5Broker: the Broker port over a MetaTrader 5 terminal, and bar history for the data plane.

The terminal's Python module is injected (the official `MetaTrader5` package, an `mt5linux` RPyC
client, or `mt5_bridge.simulator.SimulatedTerminal`), so nothing here imports it. The package
keeps one process-wide terminal session: use one MT5Broker per process and call it from one
thread.

Quantities are units everywhere outside this package. `_parse.lots_for` / `_parse.units_for` are
the one place they become lots and back, from `symbol_info` (trade_contract_size, volume_step,
volume_min, volume_max): orders, fills, positions and working orders all pass through them. An
order outside volume_min..volume_max is refused with the reason, never capped.

Idempotency, without relying on the broker keeping the comment: every order carries a magic
number whose high half is the book (MT5Config.magic) and whose low half hashes the client id,
and `comment = comment_tag + client_id`. Before `order_send` the order is written to the
write-ahead journal (infra.journal). The bridge refuses a client id it sent before (in this
process, in the journal, or found at the venue by magic or comment), and after a timeout or a lost
answer it looks for the order at the venue before any resend. A worker killed around a send
settles the journal's unknown entries at its next connect.

Deals are booked when they belong to our book or to a position one of our orders opened, so the
server's stop loss, take profit and stop out and manual closes reach the ledger; the fill
watermark is persisted, so deals made while the worker was down do too.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import pandas as pd

from execution.broker import (
    Broker,
    BrokerError,
    BrokerUnavailableError,
    DuplicateOrderError,
    LiveTradingNotEnabledError,
    OrderRejectedError,
)
from execution.domain import Fill, Order, OrderAck, OrderStatus, OrderType, Position, Side
from execution.instruments import Instrument, guess_asset_class
from execution.orders import Cancel, OrderAccepted, OrderCancelled, OrderEvent, OrderRejected
from infra.journal import JournalEntry, JournalState, MemoryJournal, OrderJournal, Watermark
from mt5_bridge import _codes as c
from mt5_bridge._codes import (
    IPC_ERROR_CODES,
    RetcodeClass,
    RetriesExhaustedError,
    TerminalUnavailableError,
    classify_retcode,
    error_for_result,
    retcode_name,
)
from mt5_bridge._parse import (
    MAX_BOOK_MAGIC,
    MAX_COMMENT_LENGTH,
    Quote,
    SendOutcome,
    SymbolSpec,
    VenueDeal,
    VenueOrder,
    VenueRecord,
    VolumeRefusedError,
    book_of,
    build_deal_request,
    build_sltp_request,
    client_id_from_comment,
    comment_for,
    deal_to_fill,
    lots_for,
    order_magic,
    order_record_to_order,
    parse_account_info,
    parse_check_result,
    parse_deal,
    parse_positions,
    parse_send_result,
    parse_symbol_info,
    parse_tick,
    parse_working_orders,
    positions_to_domain,
    rates_to_raw_frame,
    terminal_trade_allowed,
    units_for,
    utc_to_server,
    venue_records,
)
from quality.schema import UnknownTimeframeError, timeframe_to_timedelta

if TYPE_CHECKING:
    from infra.settings import Settings

__all__ = [
    "MT5_TIMEFRAMES",
    "MT5Broker",
    "MT5Config",
    "MT5ConfigError",
    "VenueOutcome",
    "fetch_history",
    "open_terminal",
]

logger = logging.getLogger(__name__)

# candleflow timeframe code -> MT5 TIMEFRAME_* value.
MT5_TIMEFRAMES: Final[Mapping[str, int]] = {
    "1m": c.TIMEFRAME_M1,
    "5m": c.TIMEFRAME_M5,
    "15m": c.TIMEFRAME_M15,
    "30m": c.TIMEFRAME_M30,
    "1h": c.TIMEFRAME_H1,
    "4h": c.TIMEFRAME_H4,
    "1d": c.TIMEFRAME_D1,
    "1w": c.TIMEFRAME_W1,
}

_CLIENT_ID_LENGTH: Final = 18  # execution.domain.make_client_id
_FILL_OVERLAP: Final = timedelta(minutes=1)  # re-read this much history to absorb clock skew
_FUTURE_SLACK: Final = timedelta(days=1)  # upper history bound; the server clock may run ahead
_MAX_SERVER_OFFSET: Final = timedelta(hours=14)

ENV_LOGIN: Final = "CANDLEFLOW_MT5_LOGIN"
ENV_PASSWORD: Final = "CANDLEFLOW_MT5_PASSWORD"  # noqa: S105 - a variable name, not a secret
ENV_SERVER: Final = "CANDLEFLOW_MT5_SERVER"
ENV_PATH: Final = "CANDLEFLOW_MT5_PATH"


class MT5ConfigError(ValueError):
    """An MT5Config value is missing, unknown or unusable."""


@dataclass(frozen=True)
class MT5Config:
    """How to reach the terminal and how to trade through it.

    Credentials are excluded from repr and never logged. With login None the bridge uses the
    account the terminal is already logged in to.
    """

    login: int | None = field(default=None, repr=False)  # trading account number
    password: str | None = field(default=None, repr=False)  # secret
    server: str | None = field(default=None, repr=False)  # broker's trade server name
    path: str | None = None  # terminal64.exe; None: the installed/running terminal
    portable: bool = False  # start the terminal in portable mode
    terminal_timeout_ms: int = 60_000  # initialize()/login() timeout
    # The strategy book (1..2**31-1): the high half of every order's magic number; the low
    # half is a hash of the client id. Pick one per book sharing the account.
    magic: int = 7_310_001
    deviation_points: int = 20  # largest accepted slippage from the request price, in points
    comment_tag: str = "cf:"  # comment = tag + client id (<= 31 characters)
    max_retries: int = 3  # resends after retryable answers (fresh price, backoff, timeout)
    backoff_initial_s: float = 0.25  # first wait; doubles per retry
    backoff_max_s: float = 1.0  # cap on one wait
    # Wall time one submit() may take, waits included: the dataflow step is blocked meanwhile.
    # When it runs out the order is reported failed (known not executed) or unknown (reconcile).
    order_deadline_s: float = 2.0
    connect_attempts: int = 3  # initialize+login attempts per connect()
    verify_wait_s: float = 0.25  # wait before looking for an order whose answer was lost
    server_utc_offset: timedelta = timedelta(0)  # broker server clock minus UTC
    history_lookback: timedelta = timedelta(days=30)  # how far back to look for our client ids
    # Deals are re-read this far behind the fill watermark: a deal the terminal's history shows
    # late (stamped earlier than deals already booked) is still booked, once.
    fill_lookback: timedelta = timedelta(minutes=10)
    symbols: tuple[str, ...] = ()  # symbols whose specs (symbol_info) are read at connect
    instance: str = "default"  # the strategy instance and timeframe, written in the journal

    def __post_init__(self) -> None:
        if self.login is None and (self.password is not None or self.server is not None):
            msg = "MT5 password/server were given without a login; set CANDLEFLOW_MT5_LOGIN too"
            raise MT5ConfigError(msg)
        if self.login is not None and self.login <= 0:
            msg = "MT5 login must be a positive account number"
            raise MT5ConfigError(msg)
        if not (0 < self.magic <= MAX_BOOK_MAGIC):
            msg = (
                f"magic (the book number) must be in 1..{MAX_BOOK_MAGIC}, got {self.magic}: "
                "the bridge puts it in the high half of each order's 64-bit magic"
            )
            raise MT5ConfigError(msg)
        room = MAX_COMMENT_LENGTH - _CLIENT_ID_LENGTH
        if not self.comment_tag or len(self.comment_tag) > room or not self.comment_tag.isascii():
            msg = (
                f"comment_tag must be 1..{room} ASCII characters so tag + client id fits MT5's "
                f"{MAX_COMMENT_LENGTH}-character comment, got {self.comment_tag!r}"
            )
            raise MT5ConfigError(msg)
        for name in ("deviation_points", "max_retries"):
            if getattr(self, name) < 0:
                msg = f"{name} must be >= 0, got {getattr(self, name)}"
                raise MT5ConfigError(msg)
        if self.connect_attempts < 1 or self.terminal_timeout_ms < 1:
            msg = "connect_attempts and terminal_timeout_ms must be >= 1"
            raise MT5ConfigError(msg)
        if not (0 < self.backoff_initial_s <= self.backoff_max_s) or self.verify_wait_s < 0:
            msg = (
                "need 0 < backoff_initial_s <= backoff_max_s and verify_wait_s >= 0, got "
                f"{self.backoff_initial_s}, {self.backoff_max_s}, {self.verify_wait_s}"
            )
            raise MT5ConfigError(msg)
        if abs(self.server_utc_offset) > _MAX_SERVER_OFFSET:
            msg = f"server_utc_offset must be within ±14h, got {self.server_utc_offset}"
            raise MT5ConfigError(msg)
        if self.history_lookback <= timedelta(0) or self.fill_lookback < timedelta(0):
            msg = "history_lookback must be positive and fill_lookback not negative"
            raise MT5ConfigError(msg)
        if not self.order_deadline_s > 0:
            msg = f"order_deadline_s must be > 0, got {self.order_deadline_s}"
            raise MT5ConfigError(msg)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> MT5Config:
        """Build from a mapping, rejecting keys MT5Config does not have."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            msg = f"unknown MT5 settings: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            raise MT5ConfigError(msg)
        return cls(**dict(values))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> MT5Config:
        """Credentials from CANDLEFLOW_MT5_LOGIN/PASSWORD/SERVER (and _PATH); the rest from
        `overrides`. Call at the edge (CLI, worker start), never at import time."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        raw_login = (env.get(ENV_LOGIN) or "").strip()
        if raw_login:
            if not raw_login.isdigit():
                # The value is not echoed: it is a credential.
                msg = f"{ENV_LOGIN} must be the numeric MT5 account number"
                raise MT5ConfigError(msg)
            values["login"] = int(raw_login)
        if env.get(ENV_PASSWORD):
            values["password"] = env[ENV_PASSWORD]
        if env.get(ENV_SERVER):
            values["server"] = env[ENV_SERVER].strip()
        if env.get(ENV_PATH):
            values["path"] = env[ENV_PATH]
        return cls.from_mapping({**values, **overrides})


class _CallFailed(Exception):
    """An MT5 function answered None/False; carries last_error()."""

    def __init__(self, function: str, code: int, comment: str) -> None:
        super().__init__(f"{function}: {code} {comment}")
        self.function = function
        self.code = code
        self.comment = comment


def _read_last_error(mt5: Any) -> tuple[int, str]:
    err = mt5.last_error()
    try:
        code, comment = err
        return int(code), str(comment)
    except (TypeError, ValueError):
        return c.RES_E_FAIL, f"unreadable last_error(): {err!r}"


def _call_failed(mt5: Any, function: str) -> _CallFailed:
    return _CallFailed(function, *_read_last_error(mt5))


def _initialize_and_login(mt5: Any, cfg: MT5Config) -> None:
    """initialize() with the config's path and timeout, then login() when a login is set."""
    args = (cfg.path,) if cfg.path else ()
    if not mt5.initialize(*args, timeout=cfg.terminal_timeout_ms, portable=cfg.portable):
        raise _call_failed(mt5, function="initialize")
    if cfg.login is not None:
        login_kwargs: dict[str, Any] = {"timeout": cfg.terminal_timeout_ms}
        if cfg.password is not None:
            login_kwargs["password"] = cfg.password
        if cfg.server is not None:
            login_kwargs["server"] = cfg.server
        if not mt5.login(cfg.login, **login_kwargs):
            raise _call_failed(mt5, function="login")


def open_terminal(mt5: Any, config: MT5Config | None = None) -> None:
    """Open a terminal session for reading data (what a data source needs; no account checks).

    Raises TerminalUnavailableError carrying MT5's last_error().
    """
    try:
        _initialize_and_login(mt5, config or MT5Config())
    except _CallFailed as exc:
        hint = "; check CANDLEFLOW_MT5_LOGIN/PASSWORD/SERVER" if exc.function == "login" else ""
        msg = f"MT5 {exc.function}() failed{hint}"
        raise TerminalUnavailableError(msg, exc.code, exc.comment) from None


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class VenueOutcome:
    """What became of an order, learned outside `submit`'s answer; `poll_events` reports it as
    an `execution.orders` event (`as_event`).

    kind: "cancelled" (an IOC remainder the server dropped, or a cancel we asked for),
    "accepted" (an order of unknown fate found at the venue) or "absent" (an order of unknown
    fate that never reached the venue: nothing of it will fill).
    """

    kind: str
    client_id: str
    symbol: str
    ts: datetime  # UTC
    unfilled: float = 0.0  # units that will never fill
    venue_order_id: str = ""
    reason: str = ""

    def as_event(self) -> OrderEvent:
        if self.kind == "cancelled":
            return OrderCancelled(self.client_id, self.symbol, self.ts, self.unfilled, self.reason)
        if self.kind == "accepted":
            return OrderAccepted(self.client_id, self.symbol, self.ts, self.venue_order_id)
        if self.kind == "absent":
            return OrderRejected(self.client_id, self.symbol, self.ts, self.reason, self.unfilled)
        msg = f"unknown venue outcome kind {self.kind!r}"
        raise ValueError(msg)


class MT5Broker(Broker):
    """The Broker port over a MetaTrader 5 terminal (module object injected)."""

    name = "mt5"

    def __init__(
        self,
        config: MT5Config,
        mt5: Any,
        *,
        live_enabled: bool = False,
        clock: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], None] = time.sleep,
        journal: OrderJournal | None = None,
    ) -> None:
        self._config = config
        self._mt5 = mt5
        self._live_enabled = live_enabled
        self._clock = clock
        self._sleep = sleep
        self._journal = journal if journal is not None else MemoryJournal()
        self._connected = False
        self._hedging = False
        self._specs: dict[str, SymbolSpec] = {}
        self._accepted: set[str] = set()
        self._client_ids_by_order: dict[int, str] = {}
        self._client_ids_by_magic: dict[int, str] = {}
        self._our_positions: set[int] = set()
        self._watermark: Watermark | None = None
        self._booked: dict[int, datetime] = {}  # deal ticket -> deal time, near the watermark
        self._outcomes: list[VenueOutcome] = []

    @classmethod
    def from_settings(
        cls, settings: Settings, mt5: Any, config: MT5Config, **kwargs: Any
    ) -> MT5Broker:
        """Live only when CANDLEFLOW_LIVE=1 and CANDLEFLOW_BROKER=mt5 both hold."""
        live = bool(settings.live) and str(settings.broker) == "mt5"
        return cls(config, mt5, live_enabled=live, **kwargs)

    def __repr__(self) -> str:
        return (
            f"MT5Broker(magic={self._config.magic}, tag={self._config.comment_tag!r}, "
            f"live_enabled={self._live_enabled}, connected={self._connected})"
        )

    @property
    def config(self) -> MT5Config:
        return self._config

    @property
    def journal(self) -> OrderJournal:
        return self._journal

    # --- session -------------------------------------------------------------------------------

    def connect(self) -> None:
        """Initialize the terminal and log in, retrying with backoff; read the configured
        symbols' specs; then learn our past orders from the journal and the venue.

        Raises LiveTradingNotEnabledError unless constructed with live_enabled=True, and
        TerminalUnavailableError when the terminal cannot be reached or refuses the login.
        Journal entries whose fate was unknown (a worker killed around `order_send`) are looked
        for at the venue and settled (see `resolve_unknown`).
        """
        if not self._live_enabled:
            msg = (
                "MT5Broker trades real money and live trading is not enabled: set "
                "CANDLEFLOW_LIVE=1 and CANDLEFLOW_BROKER=mt5 (and pass live_enabled from "
                "Settings) to trade through MetaTrader 5"
            )
            raise LiveTradingNotEnabledError(msg)
        self._open_session()
        for symbol in self._config.symbols:
            self._spec(symbol)
        book = self._config.magic
        for entry in self._journal.entries(book):
            self._client_ids_by_magic[entry.magic] = entry.client_id
            if entry.state in (JournalState.SENT, JournalState.REJECTED):
                self._accepted.add(entry.client_id)
        self._our_positions |= self._journal.positions(book)
        self._our_positions |= {
            p.ticket for p in parse_positions(self._query("positions_get"), book=book)
        }
        if self._watermark is None:
            self._watermark = self._journal.watermark(book) or Watermark(self._clock(), frozenset())
            self._booked = dict.fromkeys(self._watermark.tickets, self._watermark.ts)
        self._accepted |= {r.client_id for r in self._our_venue_records()}
        self.resolve_unknown(report=True)

    def close(self) -> None:
        if self._connected:
            self._mt5.shutdown()
        self._connected = False

    def _open_session(self) -> None:
        cfg = self._config
        attempts = cfg.connect_attempts
        last: _CallFailed | None = None
        for attempt in range(1, attempts + 1):
            try:
                self._initialize_and_login()
            except _CallFailed as exc:
                last = exc
                self._connected = False
                self._mt5.shutdown()
                if exc.code == c.RES_E_AUTH_FAILED:
                    msg = (
                        "MT5 refused the login; check CANDLEFLOW_MT5_LOGIN, "
                        "CANDLEFLOW_MT5_PASSWORD and CANDLEFLOW_MT5_SERVER"
                    )
                    raise TerminalUnavailableError(msg, exc.code, exc.comment) from None
                logger.warning(
                    "MT5 %s failed (attempt %d/%d): %s (%d) %s",
                    exc.function,
                    attempt,
                    attempts,
                    retcode_name(exc.code),
                    exc.code,
                    exc.comment,
                )
                if attempt < attempts:
                    self._sleep(self._backoff(attempt))
                continue
            self._connected = True
            return
        assert last is not None
        msg = f"could not connect to the MT5 terminal after {attempts} attempts"
        raise TerminalUnavailableError(msg, last.code, last.comment)

    def _initialize_and_login(self) -> None:
        _initialize_and_login(self._mt5, self._config)
        account = parse_account_info(self._call("account_info"))
        self._hedging = account.hedging
        terminal = self._call("terminal_info")
        if not terminal_trade_allowed(terminal):
            logger.warning(
                "the MT5 terminal's Algo Trading is switched off; orders will be refused with "
                "TRADE_RETCODE_CLIENT_DISABLES_AT until it is switched on"
            )
        logger.info(
            "connected to MT5 (%s account, %s, %s)",
            "real" if account.real else "demo/contest",
            "hedging" if account.hedging else "netting",
            account.currency,
        )

    def _require_connected(self) -> None:
        if not self._connected:
            msg = "MT5Broker is not connected; call connect() first"
            raise TerminalUnavailableError(msg, c.RES_E_INTERNAL_FAIL_CONNECT, "not connected")

    def _backoff(self, attempt: int) -> float:
        cfg = self._config
        return float(min(cfg.backoff_initial_s * 2 ** (attempt - 1), cfg.backoff_max_s))

    def _last_error(self) -> tuple[int, str]:
        return _read_last_error(self._mt5)

    def _failure(self, function: str) -> _CallFailed:
        return _call_failed(self._mt5, function)

    def _call(self, function: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self._mt5, function)(*args, **kwargs)
        if result is None or result is False:
            raise self._failure(function)
        return result

    def _query(self, function: str, *args: Any, **kwargs: Any) -> Any:
        """A read-only call whose failure means our view of the account is unknown."""
        self._require_connected()
        try:
            return self._call(function, *args, **kwargs)
        except _CallFailed as exc:
            failure = exc
        if failure.code in IPC_ERROR_CODES:
            # Reads are idempotent: re-open the session (with its own backoff) and ask once more.
            logger.warning(
                "MT5 %s lost the terminal: %s (%d) %s; reconnecting",
                function,
                retcode_name(failure.code),
                failure.code,
                failure.comment,
            )
            self._reconnect()
            try:
                return self._call(function, *args, **kwargs)
            except _CallFailed as exc:
                failure = exc
        msg = f"MT5 {function} failed; the account state is unknown, not empty"
        raise TerminalUnavailableError(msg, failure.code, failure.comment)

    # --- instruments ------------------------------------------------------------------------

    def _spec(self, symbol: str) -> SymbolSpec:
        """The symbol's spec from symbol_info, read once per session (contract size, volumes)."""
        spec = self._specs.get(symbol)
        if spec is None:
            self._require_connected()
            self._call("symbol_select", symbol, True)
            spec = parse_symbol_info(self._call("symbol_info", symbol))
            self._specs[symbol] = spec
        return spec

    def symbol_spec(self, symbol: str) -> SymbolSpec:
        """Contract size, volume min/step/max and price precision of `symbol` at this venue."""
        try:
            return self._spec(symbol)
        except _CallFailed as exc:
            msg = f"MT5 symbol_info({symbol}) failed"
            raise TerminalUnavailableError(msg, exc.code, exc.comment) from None

    def instrument(self, symbol: str) -> Instrument:
        """`symbol` as the engine's instrument master describes it, from this venue's
        symbol_info: units per lot, quantity step and limits in units, price tick."""
        spec = self.symbol_spec(symbol)
        return Instrument.from_lots(
            symbol,
            guess_asset_class(symbol),
            contract_size=spec.contract_size,
            lot_step=spec.volume_step,
            min_lots=spec.volume_min,
            max_lots=spec.volume_max,
            price_tick=spec.point,
            quote_currency=spec.currency_profit,
        )

    def _order_spec(self, order: Order) -> SymbolSpec:
        try:
            return self._spec(order.symbol)
        except _CallFailed as exc:
            if exc.code in IPC_ERROR_CODES:
                self._connected = False
                msg = f"order {order.client_id}: MT5 {exc.function} failed"
                raise TerminalUnavailableError(msg, exc.code, exc.comment) from None
            raise OrderRejectedError(
                order.client_id,
                exc.code,
                f"{exc.function}({order.symbol}) failed: {exc.comment}",
            ) from None

    # --- orders ---------------------------------------------------------------------------------

    def submit(self, order: Order) -> OrderAck:
        """Send a market order of `order.quantity` units; see the module docstring.

        Raises DuplicateOrderError (already sent: by us, by an earlier process, found at the
        venue), OrderRejectedError (the venue or the volume limits refused it; nothing
        executed), RetriesExhaustedError (transient failures outlasted the retries or the
        deadline; nothing executed) or TerminalUnavailableError (the outcome is unknown: the
        journal marks it, and reconciliation settles it).
        """
        self._require_connected()
        if order.order_type is not OrderType.MARKET:
            msg = (
                f"MT5Broker sends market orders only; {order.client_id} is a "
                f"{order.order_type} order (TRADE_ACTION_PENDING is not implemented)"
            )
            raise NotImplementedError(msg)
        cfg = self._config
        cid = order.client_id
        comment = comment_for(cid, cfg.comment_tag)
        magic = order_magic(cfg.magic, cid)
        if cid in self._accepted:
            raise DuplicateOrderError(cid)
        entry = self._journal.get(cid)
        if entry is not None and not (entry.state.unresolved or entry.state in _RESENDABLE):
            self._accepted.add(cid)
            logger.warning(
                "order %s is in the journal as %s; not sending it again", cid, entry.state
            )
            raise DuplicateOrderError(cid)
        self._client_ids_by_magic[magic] = cid
        found = self._our_venue_records(cid)
        if found:
            self._remember(cid, found[0].order_ticket)
            if entry is not None:
                self._journal.mark(cid, JournalState.SENT, detail="found at the venue")
            logger.warning(
                "order %s is already on the venue (ticket %d); not sending it again",
                cid,
                found[0].order_ticket,
            )
            raise DuplicateOrderError(cid)
        spec = self._order_spec(order)
        try:
            volume = lots_for(order.quantity, spec)
        except VolumeRefusedError as exc:
            raise OrderRejectedError(
                cid, c.TRADE_RETCODE_INVALID_VOLUME, f"{exc}; nothing was sent"
            ) from None
        filling = choose_filling(spec.filling_mode)
        if entry is None:
            entry = self._journal.begin(
                JournalEntry(
                    client_id=cid,
                    book=cfg.magic,
                    instance=cfg.instance,
                    symbol=order.symbol,
                    side=str(order.side),
                    quantity=float(order.quantity),
                    magic=magic,
                    state=JournalState.INTENT,
                    updated=self._clock(),
                )
            )
            if entry.instance != cfg.instance or entry.state is not JournalState.INTENT:
                # Another worker journaled this id first (the same order, or an id collision).
                raise DuplicateOrderError(cid)
        else:
            self._journal.restart(cid)
            # Sent again: an earlier "absent" settlement of this id no longer holds.
            self._outcomes = [o for o in self._outcomes if o.client_id != cid]
        try:
            ack, outcome = self._send_with_retries(order, comment, magic, spec, volume, filling)
        except OrderRejectedError as exc:
            self._journal.mark(cid, JournalState.REJECTED, detail=f"{exc.code} {exc.comment}")
            self._accepted.add(cid)
            raise
        except RetriesExhaustedError as exc:
            self._journal.mark(cid, JournalState.FAILED, detail=str(exc))
            raise
        except BrokerUnavailableError as exc:
            self._journal.mark(cid, JournalState.UNKNOWN, detail=str(exc))
            raise
        self._journal.mark(cid, JournalState.SENT, venue_order_id=ack.venue_order_id or "")
        if outcome is not None and outcome.volume + 1e-12 < volume:
            unfilled = units_for(volume - outcome.volume, spec)
            if filling != c.ORDER_FILLING_RETURN:  # IOC/FOK: the server dropped the rest
                self._outcomes.append(
                    VenueOutcome(
                        "cancelled",
                        cid,
                        order.symbol,
                        self._clock(),
                        unfilled=unfilled,
                        venue_order_id=ack.venue_order_id or "",
                        reason=f"{retcode_name(outcome.retcode)}: {outcome.comment}",
                    )
                )
        return ack

    def _send_with_retries(
        self,
        order: Order,
        comment: str,
        magic: int,
        spec: SymbolSpec,
        volume: float,
        filling: int,
    ) -> tuple[OrderAck, SendOutcome | None]:
        """The one retry layer: fresh price after a requote, backoff while busy, look before any
        resend when the outcome is unknown; all within `order_deadline_s`."""
        cfg = self._config
        deadline = self._clock() + timedelta(seconds=cfg.order_deadline_s)
        retries = 0

        def may_retry(reason: str, code: int, comment_text: str, wait: float = 0.0) -> bool:
            nonlocal retries
            if retries >= cfg.max_retries or self._clock() + timedelta(seconds=wait) > deadline:
                return False
            retries += 1
            logger.warning(
                "order %s: %s %s (%d) %s; retry %d/%d",
                order.client_id,
                reason,
                retcode_name(code),
                code,
                comment_text,
                retries,
                cfg.max_retries,
            )
            if wait:
                self._sleep(wait)
            return True

        while True:
            try:
                quote = self._quote(order.symbol)
                price = quote.ask if order.side is Side.BUY else quote.bid
                sl, tp = _shape_stops(order, quote, spec)
                request = build_deal_request(
                    symbol=order.symbol,
                    side=order.side,
                    volume=volume,
                    price=price,
                    sl=sl,
                    tp=tp,
                    deviation=cfg.deviation_points,
                    magic=magic,
                    comment=comment,
                    filling=filling,
                )
                check = parse_check_result(self._call("order_check", request))
            except _CallFailed as exc:
                # Nothing was sent: safe to reconnect and start over.
                if exc.code in IPC_ERROR_CODES and may_retry(
                    "terminal", exc.code, exc.comment, self._backoff(retries + 1)
                ):
                    self._reconnect()
                    continue
                raise error_for_result(
                    order.client_id, exc.code, exc.comment, what=exc.function
                ) from None
            check_class = classify_retcode(check.retcode)
            if check_class is not RetcodeClass.SUCCESS:
                wait = (
                    0.0
                    if check_class is RetcodeClass.RETRY_FRESH_PRICE
                    else self._backoff(retries + 1)
                )
                if check_class is not RetcodeClass.NEVER_RETRY and may_retry(
                    "order_check", check.retcode, check.comment, wait
                ):
                    continue
                raise error_for_result(
                    order.client_id, check.retcode, check.comment, what="order_check"
                )

            raw = self._mt5.order_send(request)
            if raw is None:
                code, text = self._last_error()
                # The request may have reached the server before the link failed.
                ack = self._verify_sent(order, code, text)
                if ack is not None:
                    return ack, None
                if may_retry("order_send returned nothing:", code, text):
                    if code in IPC_ERROR_CODES:
                        self._reconnect()
                    continue
                raise _unknown(order.client_id, code, text)

            outcome = parse_send_result(raw)
            kind = classify_retcode(outcome.retcode)
            if kind is RetcodeClass.SUCCESS:
                return self._accept(order, outcome, spec), outcome
            if kind is RetcodeClass.RETRY_FRESH_PRICE:
                if may_retry("fresh price after", outcome.retcode, outcome.comment):
                    continue  # the loop re-reads the tick
            elif kind is RetcodeClass.RETRY_BACKOFF:
                if may_retry(
                    "backing off after",
                    outcome.retcode,
                    outcome.comment,
                    self._backoff(retries + 1),
                ):
                    continue
            elif kind is RetcodeClass.VERIFY_BEFORE_RESEND:
                ack = self._verify_sent(order, outcome.retcode, outcome.comment)
                if ack is not None:
                    return ack, None
                if may_retry("not on the venue after", outcome.retcode, outcome.comment):
                    continue
                raise _unknown(order.client_id, outcome.retcode, outcome.comment)
            raise error_for_result(order.client_id, outcome.retcode, outcome.comment)

    def _verify_sent(self, order: Order, code: int, text: str) -> OrderAck | None:
        """Look for the order on the venue after an answer that leaves its fate unknown."""
        logger.warning(
            "order %s: outcome unknown after %s (%d) %s; looking for it before any resend",
            order.client_id,
            retcode_name(code),
            code,
            text,
        )
        self._sleep(self._config.verify_wait_s)
        try:
            if code in IPC_ERROR_CODES:
                self._reconnect()
            found = self._our_venue_records(order.client_id)
        except BrokerError as exc:
            msg = (
                f"order {order.client_id}: outcome unknown and the venue cannot be queried; "
                "reconcile before resubmitting"
            )
            raise TerminalUnavailableError(msg, code, text) from exc
        if not found:
            return None
        record = next((r for r in found if r.executed), found[0])
        self._remember(order.client_id, record.order_ticket)
        self._outcomes.extend(self._remainder_dropped(order.client_id, order.symbol, found))
        logger.info(
            "order %s found on the venue (ticket %d) after %s; treated as sent",
            order.client_id,
            record.order_ticket,
            retcode_name(code),
        )
        return OrderAck(
            client_id=order.client_id,
            status=OrderStatus.FILLED if record.executed else OrderStatus.ACCEPTED,
            venue_order_id=str(record.order_ticket),
            message=f"found on the venue after {retcode_name(code)}: {text}",
        )

    def _accept(self, order: Order, outcome: SendOutcome, spec: SymbolSpec) -> OrderAck:
        self._remember(order.client_id, outcome.order_ticket)
        status = {
            c.TRADE_RETCODE_DONE: OrderStatus.FILLED,
            c.TRADE_RETCODE_DONE_PARTIAL: OrderStatus.PARTIALLY_FILLED,
        }.get(outcome.retcode, OrderStatus.ACCEPTED)
        logger.info(
            "order %s accepted by MT5: %s %s lots (%s units) %s at %s (order %d, deal %d)",
            order.client_id,
            order.side,
            outcome.volume,
            units_for(outcome.volume, spec),
            order.symbol,
            outcome.price,
            outcome.order_ticket,
            outcome.deal_ticket,
        )
        return OrderAck(
            client_id=order.client_id,
            status=status,
            venue_order_id=str(outcome.order_ticket) if outcome.order_ticket else None,
            message=outcome.comment,
        )

    def _remainder_dropped(
        self, client_id: str, symbol: str, found: Sequence[VenueRecord]
    ) -> list[VenueOutcome]:
        """An order found at the venue after its answer was lost: if it is finished (in the
        history, not working) with volume left, that rest will never fill."""
        if any(r.kind == "order" for r in found):
            return []  # still working: its fills and its end come later
        done = [r for r in found if r.kind == "history_order"]
        if not done or done[0].lots_left <= 1e-12:
            return []
        return [
            VenueOutcome(
                "cancelled",
                client_id,
                symbol,
                self._clock(),
                unfilled=units_for(done[0].lots_left, self.symbol_spec(symbol)),
                venue_order_id=str(done[0].order_ticket),
                reason="remainder not filled at the venue",
            )
        ]

    def _remember(self, client_id: str, order_ticket: int) -> None:
        self._accepted.add(client_id)
        if order_ticket:
            self._client_ids_by_order[order_ticket] = client_id

    def _reconnect(self) -> None:
        self._connected = False
        self._mt5.shutdown()
        self._open_session()

    def _quote(self, symbol: str) -> Quote:
        return parse_tick(self._call("symbol_info_tick", symbol), self._config.server_utc_offset)

    def cancel(self, request: Cancel) -> list[OrderEvent]:
        """Remove our working order `request.client_id` (TRADE_ACTION_REMOVE).

        Returns OrderCancelled with the unfilled units, or nothing when no such order works
        (it completed, or was never a resting order).
        """
        client_id = request.client_id
        for order in parse_working_orders(self._query("orders_get"), book=self._config.magic):
            if self._client_id_of_order(order) != client_id:
                continue
            spec = self.symbol_spec(order.symbol)
            raw = self._mt5.order_send({"action": c.TRADE_ACTION_REMOVE, "order": order.ticket})
            if raw is None:
                code, text = self._last_error()
                raise _unknown(client_id, code, text)
            outcome = parse_send_result(raw)
            if classify_retcode(outcome.retcode) is not RetcodeClass.SUCCESS:
                raise error_for_result(client_id, outcome.retcode, outcome.comment, what="cancel")
            logger.info("order %s cancelled at the venue (%s)", client_id, request.reason)
            return [
                OrderCancelled(
                    client_id,
                    order.symbol,
                    self._clock(),
                    units_for(order.lots_left, spec),
                    request.reason,
                )
            ]
        return []

    def modify_stops(self, symbol: str, stop_loss: float | None, take_profit: float | None) -> int:
        """Move the stop loss / take profit of our open positions in `symbol` at the venue
        (TRADE_ACTION_SLTP), so the server closes them there even while this worker is down.

        None removes a level. Returns how many positions changed; raises OrderRejectedError
        with MT5's code when the server refuses (e.g. INVALID_STOPS inside trade_stops_level).
        """
        spec = self.symbol_spec(symbol)
        sl = round(stop_loss, spec.digits) if stop_loss is not None else None
        tp = round(take_profit, spec.digits) if take_profit is not None else None
        changed = 0
        for pos in parse_positions(self._query("positions_get"), book=self._config.magic):
            if pos.symbol != symbol or (pos.sl, pos.tp) == (sl, tp):
                continue
            request = build_sltp_request(
                symbol=symbol, position=pos.ticket, sl=sl, tp=tp, magic=pos.magic
            )
            what = f"sltp-{pos.ticket}"
            raw = self._mt5.order_send(request)
            if raw is None:
                code, text = self._last_error()
                msg = f"{what}: order_send failed"
                raise TerminalUnavailableError(msg, code, text)
            outcome = parse_send_result(raw)
            if outcome.retcode == c.TRADE_RETCODE_NO_CHANGES:
                continue
            if classify_retcode(outcome.retcode) is not RetcodeClass.SUCCESS:
                raise error_for_result(what, outcome.retcode, outcome.comment, what="SLTP")
            changed += 1
            logger.info("position %d %s: stops moved to sl=%s tp=%s", pos.ticket, symbol, sl, tp)
        return changed

    # --- state -----------------------------------------------------------------------------------

    def _history_bounds(self, since: datetime) -> tuple[datetime, datetime]:
        offset = self._config.server_utc_offset
        return utc_to_server(since, offset), utc_to_server(self._clock() + _FUTURE_SLACK, offset)

    def _our_venue_records(self, client_id: str | None = None) -> list[VenueRecord]:
        cfg = self._config
        lo, hi = self._history_bounds(self._clock() - cfg.history_lookback)
        sources = (
            ("order", self._query("orders_get")),
            ("history_order", self._query("history_orders_get", lo, hi)),
            ("deal", self._query("history_deals_get", lo, hi)),
        )
        records = [
            record
            for kind, rows in sources
            for record in venue_records(
                rows,
                kind=kind,
                tag=cfg.comment_tag,
                book=cfg.magic,
                client_ids_by_magic=self._client_ids_by_magic,
            )
        ]
        if client_id is None:
            return records
        return [r for r in records if r.client_id == client_id]

    def _client_id_of_order(self, order: VenueOrder) -> str | None:
        return self._client_ids_by_magic.get(order.magic) or client_id_from_comment(
            order.comment, self._config.comment_tag
        )

    def _client_id_of_deal(self, deal: VenueDeal) -> str | None:
        """The client id of the order a deal executed; None for the venue's own deals."""
        if deal.reason != c.DEAL_REASON_EXPERT:
            # The server's stop loss / take profit / stop out or a manual close: the deal may
            # carry the position's magic, but no order of ours asked for it.
            return None
        return (
            self._client_ids_by_magic.get(deal.magic)
            or client_id_from_comment(deal.comment, self._config.comment_tag)
            or self._client_ids_by_order.get(deal.order_ticket)
        )

    def poll_fills(self) -> Sequence[Fill]:
        """Our deals not booked yet, in units, oldest first.

        Ours: made by an order of this book (magic), or touching a position one of our orders
        opened (the server's SL/TP/stop-out closes and manual closes carry no comment or magic
        of ours). The watermark is persisted in the journal: after a restart, deals made while
        the worker was down are reported too. Deals the history shows late are re-read within
        `fill_lookback`.
        """
        self._require_connected()
        assert self._watermark is not None
        cfg = self._config
        lo, hi = self._history_bounds(self._watermark.ts - cfg.fill_lookback - _FILL_OVERLAP)
        offset = cfg.server_utc_offset
        raw_deals = self._query("history_deals_get", lo, hi)
        deals = [d for d in (parse_deal(r, offset) for r in raw_deals) if d is not None]
        fills: list[Fill] = []
        opened: set[int] = set()
        newest = self._watermark.ts
        for deal in sorted(deals, key=lambda d: (d.ts, d.ticket)):
            if deal.ticket in self._booked:
                continue
            ours_by_magic = book_of(deal.magic) == cfg.magic
            if not ours_by_magic and deal.position_id not in self._our_positions:
                continue
            if ours_by_magic and deal.position_id not in self._our_positions:
                opened.add(deal.position_id)
                self._our_positions.add(deal.position_id)
            self._booked[deal.ticket] = deal.ts
            newest = max(newest, deal.ts)
            fill = deal_to_fill(
                deal, client_id=self._client_id_of_deal(deal), spec=self.symbol_spec(deal.symbol)
            )
            if deal.reason != c.DEAL_REASON_EXPERT:
                logger.warning(
                    "event=venue_close client_id=%s symbol=%s side=%s units=%s price=%s "
                    "position=%d reason=%s comment=%r",
                    fill.client_id,
                    fill.symbol,
                    fill.side,
                    fill.quantity,
                    fill.price,
                    deal.position_id,
                    deal.reason,
                    deal.comment,
                )
            fills.append(fill)
        horizon = newest - cfg.fill_lookback - 2 * _FILL_OVERLAP
        self._booked = {t: ts for t, ts in self._booked.items() if ts >= horizon}
        if opened:
            self._journal.add_positions(cfg.magic, opened)
        if fills or newest != self._watermark.ts:
            self._watermark = Watermark(newest, frozenset(self._booked))
            self._journal.save_watermark(cfg.magic, self._watermark)
        return fills

    def poll_events(self) -> list[OrderEvent]:
        """Everything the venue did since the previous call, as `execution.orders` events:
        our deals as fills (see `poll_fills`), then the outcomes learned outside submit's
        answer: IOC/FOK remainders the server dropped (OrderCancelled with the unfilled units)
        and orders of unknown fate settled at the venue (OrderAccepted when found, OrderRejected
        with nothing filled when they never arrived)."""
        fills: list[OrderEvent] = list(self.poll_fills())
        outcomes, self._outcomes = self._outcomes, []
        return [*fills, *(o.as_event() for o in outcomes)]

    def resolve_unknown(self, *, report: bool = False) -> list[VenueOutcome]:
        """Settle journal entries whose fate is unknown by looking for them at the venue.

        Found: the order is ours and sent (its deals come through poll_fills), with a
        "cancelled" outcome for a finished remainder. Not found: it never reached the venue, so
        nothing of it will fill; the journal marks it absent, and a replay may send it (once).
        The caller applies the outcomes (`VenueOutcome.as_event`); with `report` they are also
        queued for `poll_events` (what `connect` does, for the first poll after a restart).
        """
        book = self._config.magic
        pending = self._journal.unresolved(book)
        if not pending:
            return []
        records = self._our_venue_records()
        by_cid: dict[str, list[VenueRecord]] = {}
        for rec in records:
            by_cid.setdefault(rec.client_id, []).append(rec)
        settled: list[VenueOutcome] = []
        for entry in pending:
            found = by_cid.get(entry.client_id, [])
            if found:
                rec = found[0]
                self._remember(entry.client_id, rec.order_ticket)
                self._journal.mark(
                    entry.client_id,
                    JournalState.SENT,
                    venue_order_id=str(rec.order_ticket),
                    detail="found at the venue",
                )
                outcome = VenueOutcome(
                    "accepted",
                    entry.client_id,
                    entry.symbol,
                    self._clock(),
                    venue_order_id=str(rec.order_ticket),
                    reason=f"found at the venue after {entry.state}",
                )
            else:
                self._journal.mark(entry.client_id, JournalState.ABSENT, detail="not at the venue")
                outcome = VenueOutcome(
                    "absent",
                    entry.client_id,
                    entry.symbol,
                    self._clock(),
                    unfilled=entry.quantity,
                    reason=f"not at the venue after {entry.state}",
                )
            logger.warning(
                "event=order_settled client_id=%s outcome=%s reason=%s",
                entry.client_id,
                outcome.kind,
                outcome.reason,
            )
            settled.append(outcome)
            settled.extend(self._remainder_dropped(entry.client_id, entry.symbol, found))
        if report:
            self._outcomes.extend(settled)
        return settled

    def positions(self) -> Mapping[str, Position]:
        """Our open positions (by book), netted per symbol, in units; raises rather than guess
        flat."""
        mine = parse_positions(self._query("positions_get"), book=self._config.magic)
        self._our_positions |= {p.ticket for p in mine}
        specs = {p.symbol: self.symbol_spec(p.symbol) for p in mine}
        return positions_to_domain(mine, specs)

    def open_orders(self) -> Sequence[Order]:
        """Our working orders (a RETURN remainder), remaining quantity in units."""
        cfg = self._config
        out = []
        for order in parse_working_orders(self._query("orders_get"), book=cfg.magic):
            out.append(
                order_record_to_order(
                    order.record,
                    client_id=self._client_id_of_order(order),
                    spec=self.symbol_spec(order.symbol),
                    server_utc_offset=cfg.server_utc_offset,
                )
            )
        return out

    def submitted_client_ids(self) -> frozenset[str]:
        """Ids accepted by this instance plus those found on the venue within history_lookback."""
        return frozenset(self._accepted | {r.client_id for r in self._our_venue_records()})


# States a client id may be sent again from: it is known not to be at the venue.
_RESENDABLE: Final = frozenset({JournalState.FAILED, JournalState.ABSENT})


def _unknown(client_id: str, code: int, text: str) -> TerminalUnavailableError:
    return TerminalUnavailableError(
        f"order {client_id}: outcome unknown after retries and not found on the venue; "
        "reconcile before resubmitting",
        code,
        text,
    )


# --- order shaping (pure) ---------------------------------------------------------------


def choose_filling(filling_mode: int) -> int:
    """FOK if the symbol allows it, else IOC, else RETURN (allowed when neither bit is set)."""
    if filling_mode & c.SYMBOL_FILLING_FOK:
        return c.ORDER_FILLING_FOK
    if filling_mode & c.SYMBOL_FILLING_IOC:
        return c.ORDER_FILLING_IOC
    return c.ORDER_FILLING_RETURN


def _shape_stops(order: Order, quote: Quote, spec: SymbolSpec) -> tuple[float | None, float | None]:
    """Round stops to the symbol's digits and refuse any closer than trade_stops_level.

    A buy position closes at the bid and a sell at the ask, so MT5 measures stop distances from
    those prices. A stop too close is refused rather than moved: where the protective stop sits
    is a risk decision, not the bridge's.
    """
    sl = round(order.stop_loss, spec.digits) if order.stop_loss is not None else None
    tp = round(order.take_profit, spec.digits) if order.take_profit is not None else None
    gap = spec.stops_level * spec.point
    ref = quote.bid if order.side is Side.BUY else quote.ask
    sign = 1.0 if order.side is Side.BUY else -1.0
    problems = []
    if sl is not None and sign * (ref - sl) < gap - 1e-12:
        problems.append(f"stop loss {sl}")
    if tp is not None and sign * (tp - ref) < gap - 1e-12:
        problems.append(f"take profit {tp}")
    if problems:
        raise OrderRejectedError(
            order.client_id,
            c.TRADE_RETCODE_INVALID_STOPS,
            f"{' and '.join(problems)} within {spec.stops_level} points "
            f"(trade_stops_level) of {ref} or on the wrong side; nothing was sent",
        )
    return sl, tp


# --- history for the data plane ---------------------------------------------------------------


def fetch_history(
    mt5: Any,
    symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
    *,
    server_utc_offset: timedelta = timedelta(0),
    now: datetime | None = None,
) -> pd.DataFrame:
    """Final bars with open time in [start, end), as a raw frame (ts UTC, open..close, volume).

    Uses copy_rates_range on an initialized terminal module. A bar still forming at `now`
    (default: the current time) is left out, since a bar is final only when the next one opens.
    `server_utc_offset` is the broker server clock's offset from UTC (see mt5_bridge._parse).
    """
    try:
        mt5_timeframe = MT5_TIMEFRAMES[timeframe]
    except KeyError:
        msg = f"unknown timeframe {timeframe!r}; use one of {', '.join(MT5_TIMEFRAMES)}"
        raise UnknownTimeframeError(msg) from None
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            msg = f"{name} must be a tz-aware UTC datetime, got {value!r}"
            raise ValueError(msg)
    if not start < end:
        msg = f"start {start} must be before end {end}"
        raise ValueError(msg)
    rates = mt5.copy_rates_range(
        symbol,
        mt5_timeframe,
        utc_to_server(start, server_utc_offset),
        utc_to_server(end, server_utc_offset),
    )
    if rates is None:
        code, comment = mt5.last_error()
        msg = f"MT5 copy_rates_range({symbol}, {timeframe}) failed"
        raise TerminalUnavailableError(msg, int(code), str(comment))
    frame = rates_to_raw_frame(rates, server_utc_offset)
    final_before = pd.Timestamp(now or _utc_now()) - pd.Timedelta(timeframe_to_timedelta(timeframe))
    keep = (
        (frame["ts"] >= pd.Timestamp(start))
        & (frame["ts"] < pd.Timestamp(end))
        & (frame["ts"] <= final_before)
    )
    return frame.loc[keep].reset_index(drop=True)
