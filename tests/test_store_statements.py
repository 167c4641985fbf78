"""Store statements rewritten to be portable keep what they did: daily counts never go below 0 and
keep the latest time, a write transaction commits around an external call, and the small lookups
moved out of the engine and commands answer as the queries they replace did."""
from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3

import pytest

from runner.store import Sender, Usage, db, open_store
from runner.store.inbox import move_cursor, synced_until
from runner.store.outgoing import subscription_by_id, subscription_names, subscription_rows
from runner.store.senders import pause_sender, status_of
from runner.store.transactions import writing
from runner.store.usage import add_usage, day_usage, refund_use

NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def sender_id(tmp_path: pathlib.Path) -> int:
    open_store(str(tmp_path / "seqrun.db"))
    return Sender.create(name="alice", provider="sandbox", account_id="a", created_at=NOW).id


def test_counts_never_go_below_zero_and_keep_the_latest_time(sender_id: int) -> None:
    add_usage(sender_id, "2026-03-02", "visit", "s", used=1, reserved=1, last_at=NOW)
    add_usage(sender_id, "2026-03-02", "visit", "s", reserved=-3, last_at=NOW - dt.timedelta(hours=1))
    refund_use(sender_id, "2026-03-02", "visit", "s")
    refund_use(sender_id, "2026-03-02", "visit", "s")
    assert day_usage(sender_id, "2026-03-02", "visit", "s") == (0, 0, 0)
    assert Usage.get().last_at == NOW
    add_usage(sender_id, "2026-03-02", "visit", "other", used=2)
    assert day_usage(sender_id, "2026-03-02", "visit", "s") == (0, 0, 2)


def _committed_elsewhere(tmp_path: pathlib.Path) -> list[str]:
    with sqlite3.connect(tmp_path / "seqrun.db") as other:
        return [name for (name,) in other.execute("SELECT name FROM sender ORDER BY name")]


def _open() -> bool:
    """Whether SQLite itself has a transaction open on the store's connection."""
    return db.connection().in_transaction


def test_released_commits_before_the_block_and_begins_again(sender_id: int, tmp_path: pathlib.Path) -> None:
    with writing(immediate=True) as txn:
        Sender.create(name="bob", provider="sandbox", account_id="b", created_at=NOW)
        assert _committed_elsewhere(tmp_path) == ["alice"]
        with txn.released():
            assert not _open()
            assert _committed_elsewhere(tmp_path) == ["alice", "bob"]
        assert _open()
        Sender.create(name="carol", provider="sandbox", account_id="c", created_at=NOW)
        txn.rollback()
    assert _committed_elsewhere(tmp_path) == ["alice", "bob"]


def test_nested_released_leaves_the_outer_transaction_open(sender_id: int, tmp_path: pathlib.Path) -> None:
    with writing() as outer:
        with writing(immediate=True) as inner:
            assert inner.nested
            Sender.create(name="bob", provider="sandbox", account_id="b", created_at=NOW)
            with inner.released():
                assert _open()
        assert _committed_elsewhere(tmp_path) == ["alice"]
        outer.rollback()
    assert _committed_elsewhere(tmp_path) == ["alice"]


def test_sender_status_and_sync_cursor(sender_id: int) -> None:
    assert status_of(sender_id) == "active" and status_of(sender_id + 1) is None
    pause_sender(sender_id, "auth expired")
    assert status_of(sender_id) == "paused"
    assert synced_until(sender_id) is None
    move_cursor(sender_id, NOW - dt.timedelta(minutes=5), NOW)
    move_cursor(sender_id, NOW, NOW)
    assert synced_until(sender_id) == NOW


def test_subscription_names_in_order(sender_id: int) -> None:
    assert subscription_names() == []
    rows = subscription_rows(["crm", "alerts"], NOW)
    assert subscription_names() == ["alerts", "crm"]
    assert subscription_by_id(rows["crm"].id).name == "crm"
