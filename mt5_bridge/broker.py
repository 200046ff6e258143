"""MT5Broker: the Broker port over a MetaTrader 5 terminal, and bar history for the data plane.

The terminal's Python module is injected (the official `MetaTrader5` package, an `mt5linux` RPyC
client, or `mt5_bridge.simulator.SimulatedTerminal`), so nothing here imports it. The package
keeps one process-wide terminal session: use one MT5Broker per process and call it from one
thread.

Idempotency: every order carries `comment = comment_tag + client_id` and the configured magic
number. Before sending, the bridge refuses a client id it accepted before, in this process or
(found by comment in the terminal's orders and deals) in an earlier one. After a timeout or a
lost answer it looks for the order on the venue before any resend, so an order is never sent
twice.

Quantities are lots, the unit MT5 trades in.
"""

from __future__ import annotations

import logging
import math
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
    DuplicateOrderError,
    LiveTradingNotEnabledError,
    OrderRejectedError,
)
from execution.domain import Fill, Order, OrderAck, OrderStatus, OrderType, Position, Side
from mt5_bridge import _codes as c
from mt5_bridge._codes import (
    IPC_ERROR_CODES,
    RetcodeClass,
    TerminalUnavailableError,
    classify_retcode,
    error_for_result,
    retcode_name,
)
from mt5_bridge._parse import (
    MAX_COMMENT_LENGTH,
    Quote,
    SendOutcome,
    SymbolSpec,
    VenueRecord,
    build_deal_request,
    comment_for,
    deal_ticket,
    deal_time_utc,
    deal_to_fill,
    order_record_to_order,
    parse_account_info,
    parse_check_result,
    parse_send_result,
    parse_symbol_info,
    parse_tick,
    positions_to_domain,
    rates_to_raw_frame,
    terminal_trade_allowed,
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
    magic: int = 7_310_001  # tags our orders/deals/positions; pick one per strategy book
    deviation_points: int = 20  # largest accepted slippage from the request price, in points
    comment_tag: str = "cf:"  # comment = tag + client id (<= 31 characters)
    max_retries: int = 3  # resends after retryable answers (fresh price, backoff, timeout)
    backoff_initial_s: float = 0.5  # first wait; doubles per retry
    backoff_max_s: float = 8.0  # cap on one wait
    connect_attempts: int = 3  # initialize+login attempts per connect()
    verify_wait_s: float = 1.0  # wait before looking for an order whose answer was lost
    server_utc_offset: timedelta = timedelta(0)  # broker server clock minus UTC
    history_lookback: timedelta = timedelta(days=30)  # how far back to look for our client ids

    def __post_init__(self) -> None:
        if self.login is None and (self.password is not None or self.server is not None):
            msg = "MT5 password/server were given without a login; set CANDLEFLOW_MT5_LOGIN too"
            raise MT5ConfigError(msg)
        if self.login is not None and self.login <= 0:
            msg = "MT5 login must be a positive account number"
            raise MT5ConfigError(msg)
        if not (0 < self.magic < 2**63):
            msg = f"magic must be a positive 64-bit integer, got {self.magic}"
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
        if self.history_lookback <= timedelta(0):
            msg = "history_lookback must be positive"
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
    ) -> None:
        self._config = config
        self._mt5 = mt5
        self._live_enabled = live_enabled
        self._clock = clock
        self._sleep = sleep
        self._connected = False
        self._hedging = False
        self._accepted: set[str] = set()
        self._client_ids_by_order: dict[int, str] = {}
        self._fills_watermark: datetime | None = None
        self._seen_deals: dict[int, datetime] = {}

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

    # --- session -------------------------------------------------------------------------------

    def connect(self) -> None:
        """Initialize the terminal and log in, retrying with backoff; then learn our past ids.

        Raises LiveTradingNotEnabledError unless constructed with live_enabled=True, and
        TerminalUnavailableError when the terminal cannot be reached or refuses the login.
        """
        if not self._live_enabled:
            msg = (
                "MT5Broker trades real money and live trading is not enabled: set "
                "CANDLEFLOW_LIVE=1 and CANDLEFLOW_BROKER=mt5 (and pass live_enabled from "
                "Settings) to trade through MetaTrader 5"
            )
            raise LiveTradingNotEnabledError(msg)
        self._open_session()
        if self._fills_watermark is None:
            self._fills_watermark = self._clock()
        self._accepted |= {r.client_id for r in self._our_venue_records()}

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

    # --- orders ---------------------------------------------------------------------------------

    def submit(self, order: Order) -> OrderAck:
        """Send a market order; see the module docstring for the idempotency guarantees."""
        self._require_connected()
        if order.order_type is not OrderType.MARKET:
            msg = (
                f"MT5Broker sends market orders only; {order.client_id} is a "
                f"{order.order_type} order (TRADE_ACTION_PENDING is not implemented)"
            )
            raise NotImplementedError(msg)
        comment = comment_for(order.client_id, self._config.comment_tag)
        if order.client_id in self._accepted:
            raise DuplicateOrderError(order.client_id)
        found = self._our_venue_records(order.client_id)
        if found:
            self._remember(order.client_id, found[0].order_ticket)
            logger.warning(
                "order %s is already on the venue (ticket %d); not sending it again",
                order.client_id,
                found[0].order_ticket,
            )
            raise DuplicateOrderError(order.client_id)
        spec = self._symbol_spec(order)
        volume = _shape_volume(order, spec)
        filling = choose_filling(spec.filling_mode)
        return self._send_with_retries(order, comment, spec, volume, filling)

    def _send_with_retries(
        self, order: Order, comment: str, spec: SymbolSpec, volume: float, filling: int
    ) -> OrderAck:
        cfg = self._config
        retries = 0

        def may_retry(reason: str, code: int, comment_text: str) -> bool:
            nonlocal retries
            if retries >= cfg.max_retries:
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
                    magic=cfg.magic,
                    comment=comment,
                    filling=filling,
                )
                check = parse_check_result(self._call("order_check", request))
            except _CallFailed as exc:
                # Nothing was sent: safe to reconnect and start over.
                if exc.code in IPC_ERROR_CODES and may_retry("terminal", exc.code, exc.comment):
                    self._sleep(self._backoff(retries))
                    self._reconnect()
                    continue
                raise error_for_result(
                    order.client_id, exc.code, exc.comment, what=exc.function
                ) from None
            check_class = classify_retcode(check.retcode)
            if check_class is not RetcodeClass.SUCCESS:
                if check_class is not RetcodeClass.NEVER_RETRY and may_retry(
                    "order_check", check.retcode, check.comment
                ):
                    if check_class is not RetcodeClass.RETRY_FRESH_PRICE:
                        self._sleep(self._backoff(retries))
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
                    return ack
                if may_retry("order_send returned nothing:", code, text):
                    if code in IPC_ERROR_CODES:
                        self._reconnect()
                    continue
                raise error_for_result(order.client_id, code, text)

            outcome = parse_send_result(raw)
            kind = classify_retcode(outcome.retcode)
            if kind is RetcodeClass.SUCCESS:
                return self._accept(order, outcome)
            if kind is RetcodeClass.RETRY_FRESH_PRICE:
                if may_retry("fresh price after", outcome.retcode, outcome.comment):
                    continue  # the loop re-reads the tick
            elif kind is RetcodeClass.RETRY_BACKOFF:
                if may_retry("backing off after", outcome.retcode, outcome.comment):
                    self._sleep(self._backoff(retries))
                    continue
            elif kind is RetcodeClass.VERIFY_BEFORE_RESEND:
                ack = self._verify_sent(order, outcome.retcode, outcome.comment)
                if ack is not None:
                    return ack
                if may_retry("not on the venue after", outcome.retcode, outcome.comment):
                    continue
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

    def _accept(self, order: Order, outcome: SendOutcome) -> OrderAck:
        self._remember(order.client_id, outcome.order_ticket)
        status = {
            c.TRADE_RETCODE_DONE: OrderStatus.FILLED,
            c.TRADE_RETCODE_DONE_PARTIAL: OrderStatus.PARTIALLY_FILLED,
        }.get(outcome.retcode, OrderStatus.ACCEPTED)
        logger.info(
            "order %s accepted by MT5: %s %s lots %s at %s (order %d, deal %d)",
            order.client_id,
            order.side,
            outcome.volume,
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

    def _remember(self, client_id: str, order_ticket: int) -> None:
        self._accepted.add(client_id)
        if order_ticket:
            self._client_ids_by_order[order_ticket] = client_id

    def _reconnect(self) -> None:
        self._connected = False
        self._mt5.shutdown()
        self._open_session()

    def _symbol_spec(self, order: Order) -> SymbolSpec:
        try:
            self._call("symbol_select", order.symbol, True)
            return parse_symbol_info(self._call("symbol_info", order.symbol))
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

    def _quote(self, symbol: str) -> Quote:
        return parse_tick(self._call("symbol_info_tick", symbol), self._config.server_utc_offset)

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
            for record in venue_records(rows, kind=kind, tag=cfg.comment_tag, magic=cfg.magic)
        ]
        if client_id is None:
            return records
        return [r for r in records if r.client_id == client_id]

    def poll_fills(self) -> Sequence[Fill]:
        """Our deals since the previous call (first call: since connect()), oldest first."""
        self._require_connected()
        assert self._fills_watermark is not None
        lo, hi = self._history_bounds(self._fills_watermark - _FILL_OVERLAP)
        deals = self._query("history_deals_get", lo, hi)
        offset = self._config.server_utc_offset
        fills: list[Fill] = []
        for deal in sorted(deals, key=lambda d: (deal_time_utc(d, offset), deal_ticket(d))):
            ticket = deal_ticket(deal)
            if ticket in self._seen_deals:
                continue
            when = deal_time_utc(deal, offset)
            self._seen_deals[ticket] = when
            self._fills_watermark = max(self._fills_watermark, when)
            fill = deal_to_fill(
                deal,
                tag=self._config.comment_tag,
                magic=self._config.magic,
                server_utc_offset=offset,
                client_ids_by_order=self._client_ids_by_order,
            )
            if fill is not None:
                fills.append(fill)
        horizon = self._fills_watermark - 2 * _FILL_OVERLAP
        self._seen_deals = {t: ts for t, ts in self._seen_deals.items() if ts >= horizon}
        return fills

    def positions(self) -> Mapping[str, Position]:
        """Our open positions (by magic), netted per symbol; raises rather than guess flat."""
        return positions_to_domain(self._query("positions_get"), magic=self._config.magic)

    def open_orders(self) -> Sequence[Order]:
        cfg = self._config
        out = []
        for rec in self._query("orders_get"):
            order = order_record_to_order(
                rec, tag=cfg.comment_tag, magic=cfg.magic, server_utc_offset=cfg.server_utc_offset
            )
            if order is not None:
                out.append(order)
        return out

    def submitted_client_ids(self) -> frozenset[str]:
        """Ids accepted by this instance plus those found on the venue within history_lookback."""
        return frozenset(self._accepted | {r.client_id for r in self._our_venue_records()})


# --- order shaping (pure) ---------------------------------------------------------------


def choose_filling(filling_mode: int) -> int:
    """FOK if the symbol allows it, else IOC, else RETURN (allowed when neither bit is set)."""
    if filling_mode & c.SYMBOL_FILLING_FOK:
        return c.ORDER_FILLING_FOK
    if filling_mode & c.SYMBOL_FILLING_IOC:
        return c.ORDER_FILLING_IOC
    return c.ORDER_FILLING_RETURN


def _shape_volume(order: Order, spec: SymbolSpec) -> float:
    """Round down to volume_step, refuse below volume_min, cap at volume_max."""
    steps = math.floor(order.quantity / spec.volume_step + 1e-9)
    volume = round(steps * spec.volume_step, 10)  # drop float noise such as 0.30000000000000004
    if volume < spec.volume_min - 1e-12:
        raise OrderRejectedError(
            order.client_id,
            c.TRADE_RETCODE_INVALID_VOLUME,
            f"quantity {order.quantity} rounds down to {volume} lots, below {spec.symbol} "
            f"volume_min {spec.volume_min} (step {spec.volume_step}); nothing was sent",
        )
    if volume > spec.volume_max:
        logger.warning(
            "order %s: %s lots capped at %s volume_max %s",
            order.client_id,
            volume,
            spec.symbol,
            spec.volume_max,
        )
        volume = spec.volume_max
    return volume


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
