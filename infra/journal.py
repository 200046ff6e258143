"""The write-ahead order journal: what this book asked a venue to do, persisted before it asks.

A live broker writes an order's entry *before* `order_send` and updates it with the answer, so a
worker killed at any point finds, after restart, every order whose fate it may not know, and
looks for it on the venue (by the order's magic number, which does not depend on the broker
keeping the comment) before anything is sent again. The journal also keeps, per book, the
venue's fill watermark (the newest deal booked, and the deal tickets booked near it) and the
venue position ids our orders opened, so that deals made while the worker was down (including
the server's stop outs and manual closes, which carry no comment of ours) reach the ledger after
a restart.

One SQLite file (WAL mode) under CANDLEFLOW_HOME/live/journal.sqlite3 serves every worker of the
machine: a client id is the primary key, so two workers (one per timeframe) sharing one venue
can never overwrite each other's entries; a second `begin` of an id returns the first entry.
`MemoryJournal` is the same contract without persistence, for tests and the paper broker.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

__all__ = [
    "JournalEntry",
    "JournalState",
    "MemoryJournal",
    "OrderJournal",
    "SqliteJournal",
    "Watermark",
    "journal_path",
    "open_journal",
]


class JournalState(StrEnum):
    INTENT = "intent"  # written before order_send: the order may or may not be at the venue
    SENT = "sent"  # the venue accepted it (or it was found there)
    REJECTED = "rejected"  # the venue refused it; nothing executed
    FAILED = "failed"  # a transient failure outlasted the retries; known not executed
    UNKNOWN = "unknown"  # the answer was lost and the venue could not tell: reconcile
    ABSENT = "absent"  # an INTENT/UNKNOWN order looked for and not found at the venue

    @property
    def unresolved(self) -> bool:
        """The order's fate at the venue is not known yet."""
        return self in (JournalState.INTENT, JournalState.UNKNOWN)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    client_id: str  # primary key across every book and worker
    book: int  # the venue-side book (MT5 magic high half) the order belongs to
    instance: str  # who sent it: strategy instance and timeframe, e.g. "sma@EURUSD@1h"
    symbol: str
    side: str  # "buy" / "sell"
    quantity: float  # units asked for
    magic: int  # the order's own magic number at the venue (0 where the venue has none)
    state: JournalState
    updated: datetime  # UTC, last change
    venue_order_id: str = ""
    detail: str = ""  # the venue's code and comment, or why the state changed


@dataclass(frozen=True, slots=True)
class Watermark:
    """Fills booked up to `ts` (UTC); `tickets` are the deals booked at or near it."""

    ts: datetime
    tickets: frozenset[int]


def _now() -> datetime:
    return datetime.now(UTC)


class OrderJournal(ABC):
    """The journal contract; see the module docstring."""

    @abstractmethod
    def begin(self, entry: JournalEntry) -> JournalEntry:
        """Persist `entry` if its client id is new; return the entry now on file (the given one,
        or the earlier one, unchanged, when the id was journaled before)."""

    @abstractmethod
    def restart(self, client_id: str) -> None:
        """An INTENT/ABSENT order is to be sent again: back to INTENT, persisted before sending."""

    @abstractmethod
    def mark(
        self, client_id: str, state: JournalState, *, venue_order_id: str = "", detail: str = ""
    ) -> None:
        """Record what became of an order (persisted when this returns)."""

    @abstractmethod
    def get(self, client_id: str) -> JournalEntry | None: ...

    @abstractmethod
    def entries(self, book: int) -> list[JournalEntry]:
        """Every entry of `book`, oldest first."""

    def unresolved(self, book: int) -> list[JournalEntry]:
        return [e for e in self.entries(book) if e.state.unresolved]

    @abstractmethod
    def watermark(self, book: int) -> Watermark | None: ...

    @abstractmethod
    def save_watermark(self, book: int, watermark: Watermark) -> None: ...

    @abstractmethod
    def add_positions(self, book: int, position_ids: Iterable[int]) -> None:
        """Remember venue positions our orders opened (server-side closes match on them)."""

    @abstractmethod
    def positions(self, book: int) -> frozenset[int]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the file."""


class MemoryJournal(OrderJournal):
    """The journal contract in memory: nothing survives the process."""

    def __init__(self) -> None:
        self._entries: dict[str, JournalEntry] = {}
        self._watermarks: dict[int, Watermark] = {}
        self._positions: dict[int, set[int]] = {}

    def begin(self, entry: JournalEntry) -> JournalEntry:
        return self._entries.setdefault(entry.client_id, entry)

    def restart(self, client_id: str) -> None:
        self.mark(client_id, JournalState.INTENT, detail="sent again")

    def mark(
        self, client_id: str, state: JournalState, *, venue_order_id: str = "", detail: str = ""
    ) -> None:
        old = self._entries[client_id]
        self._entries[client_id] = replace(
            old,
            state=state,
            updated=_now(),
            venue_order_id=venue_order_id or old.venue_order_id,
            detail=detail,
        )

    def get(self, client_id: str) -> JournalEntry | None:
        return self._entries.get(client_id)

    def entries(self, book: int) -> list[JournalEntry]:
        return [e for e in self._entries.values() if e.book == book]

    def watermark(self, book: int) -> Watermark | None:
        return self._watermarks.get(book)

    def save_watermark(self, book: int, watermark: Watermark) -> None:
        self._watermarks[book] = watermark

    def add_positions(self, book: int, position_ids: Iterable[int]) -> None:
        self._positions.setdefault(book, set()).update(int(p) for p in position_ids)

    def positions(self, book: int) -> frozenset[int]:
        return frozenset(self._positions.get(book, set()))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    client_id TEXT PRIMARY KEY,
    book INTEGER NOT NULL,
    instance TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    quantity REAL NOT NULL,
    magic INTEGER NOT NULL,
    state TEXT NOT NULL,
    updated TEXT NOT NULL,
    venue_order_id TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_book ON orders (book, seq);
CREATE TABLE IF NOT EXISTS watermarks (
    book INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    tickets TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    book INTEGER NOT NULL,
    position_id INTEGER NOT NULL,
    PRIMARY KEY (book, position_id)
);
"""

_COLUMNS = (
    "client_id, book, instance, symbol, side, quantity, magic, state, updated, venue_order_id, "
    "detail"
)


def _entry(row: tuple[object, ...]) -> JournalEntry:
    cid, book, instance, symbol, side, qty, magic, state, updated, venue_id, detail = row
    return JournalEntry(
        client_id=str(cid),
        book=int(book),  # type: ignore[call-overload]
        instance=str(instance),
        symbol=str(symbol),
        side=str(side),
        quantity=float(qty),  # type: ignore[arg-type]
        magic=int(magic),  # type: ignore[call-overload]
        state=JournalState(str(state)),
        updated=datetime.fromisoformat(str(updated)),
        venue_order_id=str(venue_id),
        detail=str(detail),
    )


class SqliteJournal(OrderJournal):
    """The journal in one SQLite file, safe for several worker processes of one machine.

    Every write is its own committed transaction (synchronous=FULL), so an entry written
    before `order_send` is on disk before the request leaves.
    """

    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self._path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"SqliteJournal({str(self._path)!r})"

    def _write(self, sql: str, params: tuple[object, ...]) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(sql, params)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return cur.rowcount

    def _read(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())

    def begin(self, entry: JournalEntry) -> JournalEntry:
        self._write(
            f"INSERT INTO orders ({_COLUMNS}, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,"  # noqa: S608
            "(SELECT COALESCE(MAX(seq), 0) + 1 FROM orders)) ON CONFLICT (client_id) DO NOTHING",
            (
                entry.client_id,
                entry.book,
                entry.instance,
                entry.symbol,
                entry.side,
                entry.quantity,
                entry.magic,
                str(entry.state),
                entry.updated.isoformat(),
                entry.venue_order_id,
                entry.detail,
            ),
        )
        on_file = self.get(entry.client_id)
        assert on_file is not None
        return on_file

    def restart(self, client_id: str) -> None:
        self.mark(client_id, JournalState.INTENT, detail="sent again")

    def mark(
        self, client_id: str, state: JournalState, *, venue_order_id: str = "", detail: str = ""
    ) -> None:
        changed = self._write(
            "UPDATE orders SET state = ?, updated = ?, detail = ?, "
            "venue_order_id = CASE WHEN ? = '' THEN venue_order_id ELSE ? END "
            "WHERE client_id = ?",
            (str(state), _now().isoformat(), detail, venue_order_id, venue_order_id, client_id),
        )
        if changed != 1:
            msg = f"journal has no order {client_id}"
            raise KeyError(msg)

    def get(self, client_id: str) -> JournalEntry | None:
        rows = self._read(
            f"SELECT {_COLUMNS} FROM orders WHERE client_id = ?",  # noqa: S608
            (client_id,),
        )
        return _entry(rows[0]) if rows else None

    def entries(self, book: int) -> list[JournalEntry]:
        rows = self._read(
            f"SELECT {_COLUMNS} FROM orders WHERE book = ? ORDER BY seq",  # noqa: S608
            (book,),
        )
        return [_entry(r) for r in rows]

    def watermark(self, book: int) -> Watermark | None:
        rows = self._read("SELECT ts, tickets FROM watermarks WHERE book = ?", (book,))
        if not rows:
            return None
        ts, tickets = rows[0]
        return Watermark(
            datetime.fromisoformat(str(ts)), frozenset(int(t) for t in json.loads(str(tickets)))
        )

    def save_watermark(self, book: int, watermark: Watermark) -> None:
        self._write(
            "INSERT INTO watermarks (book, ts, tickets) VALUES (?, ?, ?) "
            "ON CONFLICT (book) DO UPDATE SET ts = excluded.ts, tickets = excluded.tickets",
            (book, watermark.ts.isoformat(), json.dumps(sorted(watermark.tickets))),
        )

    def add_positions(self, book: int, position_ids: Iterable[int]) -> None:
        ids = sorted({int(p) for p in position_ids})
        if not ids:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO positions (book, position_id) VALUES (?, ?) "
                    "ON CONFLICT DO NOTHING",
                    [(book, p) for p in ids],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def positions(self, book: int) -> frozenset[int]:
        rows = self._read("SELECT position_id FROM positions WHERE book = ?", (book,))
        return frozenset(int(r[0]) for r in rows)  # type: ignore[call-overload]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def journal_path(home: Path) -> Path:
    """Where the live workers of CANDLEFLOW_HOME keep their journal."""
    return Path(home) / "live" / "journal.sqlite3"


def open_journal(home: Path) -> SqliteJournal:
    return SqliteJournal(journal_path(home))
