"""Reads a simulation need not repeat (`transactions.KeptRead`, `runner.store.written`): what this
process, the store's only writer, wrote since its last read is seen at its next read; outside a
`sole_writer` block, and for writes the process cannot know of, the store is always read (issue 6)."""
from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3
import threading
from collections.abc import Iterator

import pytest

from runner.providers.base import ProviderEvent
from runner.store import Sender, blocks, db, inbox, open_store, pace_hints, sender_state, senders, simulation, written
from runner.store.transactions import KeptRead, sole_writer, writing

T0 = dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC)


@pytest.fixture
def path(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    file = tmp_path / "s.db"
    open_store(str(file), durable=False)
    yield file
    db.close()


def _sender(name: str = "alice") -> int:
    return int(Sender.create(name=name, provider="sandbox", account_id=f"acc-{name}", created_at=T0).id)


def _behind_its_back(path: pathlib.Path, sql: str, *params: object) -> None:
    """A write by another connection that this process is not told of (what a simulation never has)."""
    other = sqlite3.connect(path)
    try:
        other.execute(sql, params)
        other.commit()
    finally:
        other.close()


def _event(n: int) -> inbox.Received:
    return inbox.Received(ProviderEvent(f"ev-{n}", "accepted", T0, "acc-alice", "lead-1"))


def test_inside_sole_writer_an_answer_is_kept_until_this_process_writes_the_table(path: pathlib.Path) -> None:
    sender_id = _sender()
    with sole_writer():
        assert simulation.paused_senders() == []
        _behind_its_back(path, "UPDATE sender SET status = 'paused', paused_reason = 'x' WHERE id = ?", sender_id)
        assert simulation.paused_senders() == []  # kept: not read again
        senders.pause_sender(sender_id, "auth expired")  # this process writes the table: read again
        assert simulation.paused_senders() == [(sender_id, "alice", "auth expired")]


def test_outside_sole_writer_every_call_reads(path: pathlib.Path) -> None:
    sender_id = _sender()
    assert simulation.paused_senders() == []
    _behind_its_back(path, "UPDATE sender SET status = 'paused', paused_reason = 'x' WHERE id = ?", sender_id)
    assert simulation.paused_senders() == [(sender_id, "alice", "x")]
    assert not blocks.is_blocked("lead-1")
    _behind_its_back(path, "INSERT INTO block (key, profile_url, created_at) VALUES ('lead-1', 'u', '2026-01-05')")
    assert blocks.is_blocked("lead-1")
    assert not pace_hints.any_vacated()
    _behind_its_back(path, "INSERT INTO pace_vacated (sender_id, sequence, action, day) VALUES (?, 's', 'connect', "
                           "'2026-01-05')", _sender("bob"))
    assert pace_hints.any_vacated()


def test_a_hold_written_by_this_process_is_seen_at_the_next_read_and_ends_as_sqlite_says(path: pathlib.Path) -> None:
    sender_id = _sender()
    with sole_writer():
        assert sender_state.provider_holds(T0) == []
        with writing():
            sender_state.hold_action(sender_id, "connect", T0 + dt.timedelta(hours=2), "LIMIT_REACHED")
        assert sender_state.provider_holds(T0) == [(sender_id, "connect", T0 + dt.timedelta(hours=2), "LIMIT_REACHED")]
        assert sender_state.provider_holds(T0 + dt.timedelta(hours=1, minutes=59)) != []
        assert sender_state.provider_holds(T0 + dt.timedelta(hours=2)) == []  # `until > now`, as in the query
        assert sender_state.provider_holds(T0) != []  # an earlier moment again: the hold is back


def test_a_rollback_drops_what_was_kept(path: pathlib.Path) -> None:
    sender_id = _sender()
    with sole_writer():
        with pytest.raises(RuntimeError), writing():
            sender_state.hold_action(sender_id, "connect", T0 + dt.timedelta(hours=2), "LIMIT_REACHED")
            assert sender_state.provider_holds(T0) != []  # read inside the transaction, then undone
            raise RuntimeError("boom")
        assert sender_state.provider_holds(T0) == []


def test_a_pending_event_appended_by_this_process_is_seen_at_the_next_read(path: pathlib.Path) -> None:
    _sender()
    with sole_writer():
        assert inbox.pending(10) == [] and inbox.pending_for_lead("lead-1") == []
        inbox.append([_event(1)], source="poll", provider="sandbox", received_at=T0)
        assert [row.event_id for row in inbox.pending(10)] == ["ev-1"]
        assert [row.event_id for row in inbox.pending_for_lead("lead-1")] == ["ev-1"]
        assert inbox.mark_applied(inbox.pending(10)[0].id, T0)
        assert inbox.pending(10) == [] and inbox.pending_for_lead("lead-1") == []


def test_a_write_of_another_thread_is_seen_once_committed(path: pathlib.Path) -> None:
    _sender()
    stored, looked = threading.Event(), threading.Event()

    def receiver() -> None:  # a webhook receiver of `simulate --wire`: its own thread and connection
        with writing():
            inbox.append([_event(2)], source="webhook", provider="sandbox", received_at=T0)
            stored.set()
            looked.wait(10)
        db.close()

    with sole_writer():
        assert inbox.pending(10) == []
        thread = threading.Thread(target=receiver)
        thread.start()
        assert stored.wait(10)
        assert inbox.pending(10) == []  # not committed yet
        looked.set()
        thread.join(10)
        assert [row.event_id for row in inbox.pending(10)] == ["ev-2"]


def test_rows_deleted_with_another_tables_rows_count_as_written(path: pathlib.Path) -> None:
    sender_id = _sender()
    with sole_writer():
        sender_state.hold_action(sender_id, "connect", T0 + dt.timedelta(hours=2), "LIMIT_REACHED")
        assert sender_state.provider_holds(T0) != []
        db.execute_sql("DELETE FROM sender WHERE id = ?", (sender_id,))  # the hold goes with it (ON DELETE CASCADE)
        assert sender_state.provider_holds(T0) == []


def test_blocks_and_vacated_days_written_by_this_process_are_seen(path: pathlib.Path) -> None:
    from runner.store.leadbook import add_blocks

    sender_id = _sender()
    with sole_writer():
        assert not blocks.is_blocked("lead-1") and not pace_hints.any_vacated()
        with writing():
            add_blocks([("lead-1", "https://www.linkedin.com/in/lead-1")], "asked", T0)
            pace_hints.mark_vacated(sender_id, "intro", "connect", "2026-01-05")
        assert blocks.is_blocked("lead-1") and not blocks.is_blocked("lead-2")
        assert pace_hints.any_vacated()
        with writing():
            assert pace_hints.take_vacated() == (sender_id, "intro", "connect", "2026-01-05")
        assert not pace_hints.any_vacated()


def test_a_new_sole_writer_block_keeps_nothing_of_the_last(path: pathlib.Path) -> None:
    sender_id = _sender()
    with sole_writer():
        assert simulation.paused_senders() == []
    _behind_its_back(path, "UPDATE sender SET status = 'paused', paused_reason = 'x' WHERE id = ?", sender_id)
    with sole_writer():
        assert simulation.paused_senders() == [(sender_id, "alice", "x")]


def test_kept_read_runs_its_query_again_only_after_a_write_of_its_tables(path: pathlib.Path) -> None:
    db.execute_sql("CREATE TABLE t (x INTEGER)")
    db.execute_sql("CREATE TABLE u (x INTEGER)")
    kept: KeptRead[int] = KeptRead("t")
    queries = []

    def count() -> int:
        queries.append(1)
        return int(db.execute_sql("SELECT COUNT(*) FROM t").fetchone()[0])

    assert [kept.read(count), kept.read(count)] == [0, 0] and len(queries) == 2  # outside: every time
    with sole_writer():
        assert [kept.read(count), kept.read(count)] == [0, 0] and len(queries) == 3
        db.execute_sql("INSERT INTO u VALUES (1)")  # another table
        assert kept.read(count) == 0 and len(queries) == 3
        db.execute_sql("INSERT INTO t VALUES (1)")
        assert kept.read(count) == 1 and len(queries) == 4


@pytest.mark.parametrize(("sql", "tables"), [
    ("INSERT INTO provider_hold (sender_id) VALUES (?) ON CONFLICT (sender_id) DO UPDATE SET until = 1",
     {"provider_hold"}),
    ('INSERT OR IGNORE INTO "inbox" ("source") VALUES (?)', {"inbox"}),
    ('UPDATE "inbox" SET "state" = ? WHERE ("inbox"."id" = ?)', {"inbox"}),
    ("WITH due AS (SELECT id FROM enrollment WHERE due_at <= ?) UPDATE enrollment SET lease_owner = ?",
     {"enrollment", "pace"}),
    ("DELETE FROM sender WHERE id = ?", {"sender", "provider_hold", "pace"}),
    ("REPLACE INTO block (key) VALUES (?)", {"block"}),
    ("SAVEPOINT s1;", set()),
    ("WITH x AS (SELECT 1) SELECT * FROM x", set()),
])
def test_the_tables_a_statement_writes(sql: str, tables: set[str]) -> None:
    cascades = written.cascades_of([("pace", "enrollment", "NO ACTION", "CASCADE"),
                                    ("provider_hold", "sender", "NO ACTION", "CASCADE"),
                                    ("enrollment", "sender", "NO ACTION", "NO ACTION"),
                                    ("pace", "sender", "NO ACTION", "SET NULL")])
    assert written.tables_written(sql, cascades) == tables


def test_outside_sole_writer_the_shortcuts_add_no_query(path: pathlib.Path) -> None:
    """`run` and `serve` ask these at every wake-up: the simulation's shortcut must cost them nothing."""
    _sender()
    statements: list[str] = []
    db.connection().set_trace_callback(statements.append)
    try:
        blocks.is_blocked("lead-1")
        inbox.pending_for_lead("lead-1")
        sender_state.provider_holds(T0)
    finally:
        db.connection().set_trace_callback(None)
    assert [s.split(" WHERE")[0] for s in statements] == [
        "SELECT 1 FROM block", "SELECT 1 FROM inbox", "SELECT sender_id, action, until, reason FROM provider_hold"]
