"""The write-ahead order journal: one file shared by workers, entries never overwritten."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from infra.journal import JournalEntry, JournalState, MemoryJournal, SqliteJournal, Watermark

TS = datetime(2024, 3, 4, 12, tzinfo=UTC)


def _entry(client_id: str, instance: str) -> JournalEntry:
    return JournalEntry(client_id, 7, instance, "EURUSD", "buy", 10_000.0, 7 << 32 | 1,
                        JournalState.INTENT, TS)  # fmt: skip


@pytest.fixture(params=["sqlite", "memory"])
def journals(request, tmp_path):
    if request.param == "memory":
        shared = MemoryJournal()
        return shared, shared
    return SqliteJournal(tmp_path / "j.sqlite3"), SqliteJournal(tmp_path / "j.sqlite3")


def test_begin_when_second_worker_journals_the_same_id_then_first_entry_kept(journals):
    daily, hourly = journals

    first = daily.begin(_entry("cf1", "sma@EURUSD@1d"))
    second = hourly.begin(_entry("cf1", "sma@EURUSD@1h"))

    assert first.instance == second.instance == "sma@EURUSD@1d"
    assert [e.client_id for e in hourly.entries(7)] == ["cf1"]


def test_mark_when_answer_arrives_then_state_and_ticket_persist_for_a_new_process(tmp_path):
    journal = SqliteJournal(tmp_path / "j.sqlite3")
    journal.begin(_entry("cf1", "a"))
    journal.begin(_entry("cf2", "a"))
    journal.mark("cf1", JournalState.SENT, venue_order_id="100001")
    journal.save_watermark(7, Watermark(TS, frozenset({5, 6})))
    journal.add_positions(7, [100001])
    journal.close()

    reopened = SqliteJournal(tmp_path / "j.sqlite3")

    assert reopened.get("cf1").state is JournalState.SENT
    assert reopened.get("cf1").venue_order_id == "100001"
    assert [e.client_id for e in reopened.unresolved(7)] == ["cf2"]
    assert reopened.watermark(7) == Watermark(TS, frozenset({5, 6}))
    assert reopened.positions(7) == frozenset({100001})


def test_mark_when_id_never_journaled_then_key_error(tmp_path):
    with pytest.raises(KeyError, match="cf9"):
        SqliteJournal(tmp_path / "j.sqlite3").mark("cf9", JournalState.SENT)
