"""Reading the event ledger by id (outgoing events): the id a reader may go up to. On Postgres ids are
handed out at insert and rows appear at commit, so a row with a lower id may appear after a higher
one was read; the high-water mark waits for the inserts in progress. SQLite has one writer."""
from __future__ import annotations

import pathlib
import threading
import time

import psycopg
import pytest
from tests.backends import POSTGRES, fresh_store_url

from runner.store import db, open_store
from runner.store.outgoing import ledger_high_water

INSERT = ("INSERT INTO event (event_id, kind, source, occurred_at, received_at, data) "
          "VALUES (%s, 'replied', 'poll', '2026-03-02 09:00:00', '2026-03-02 09:00:00', '{}') RETURNING id")


def test_sqlite_goes_up_to_the_last_id(tmp_path: pathlib.Path) -> None:
    open_store(str(tmp_path / "t.db"))
    assert ledger_high_water() == 0
    db.execute_sql("INSERT INTO event (event_id, kind, source, occurred_at, received_at, data) VALUES "
                   "('e1', 'replied', 'poll', '2026-03-02 09:00:00', '2026-03-02 09:00:00', '{}')")
    assert ledger_high_water() == 1


@pytest.mark.skipif(not POSTGRES, reason="SEQRUN_TEST_POSTGRES is not set (a postgresql:// URL to test against)")
def test_postgres_waits_for_an_insert_in_progress_with_a_lower_id(tmp_path: pathlib.Path) -> None:
    with fresh_store_url("postgres", tmp_path) as store_url:
        _waits_for_an_insert_in_progress(store_url)


def _waits_for_an_insert_in_progress(store_url: str) -> None:
    open_store(store_url)
    with psycopg.connect(store_url) as slow, psycopg.connect(store_url, autocommit=True) as fast:
        (low,) = slow.execute(INSERT, ("slow",)).fetchone()  # another runner's, not committed yet
        (high,) = fast.execute(INSERT, ("fast",)).fetchone()
        assert high > low
        seen: list[int] = []
        reader = threading.Thread(target=lambda: (seen.append(ledger_high_water()), db.close()))
        reader.start()
        deadline = time.monotonic() + 30
        while not fast.execute("SELECT COUNT(*) FROM pg_locks WHERE NOT granted AND mode = 'ShareLock'").fetchone()[0]:
            assert time.monotonic() < deadline, "the reader did not wait for the insert in progress"
            time.sleep(0.01)  # polling a condition on the server
        assert seen == []
        slow.commit()
        reader.join(30)
        assert seen == [high]
