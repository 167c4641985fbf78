"""Another process holding the database's write lock longer than the busy timeout: `run` waits.

The busy timeout is set to 0 so that SQLite gives up at once, and the store's pause between
attempts is replaced by one that records the pause and, after a few, lets the other connection go:
the wait is real in behaviour and takes no time.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import pathlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from runner.providers import PROVIDERS
from runner.providers.sandbox import SandboxProvider
from runner.store import Action, Enrollment, claims, db, open_store
from test_run_cli import Clock, Run, clock, run  # noqa: F401 - the project of test_run_cli: three leads


class OtherProcess:
    """A second connection to the database that takes the write lock and keeps it until told."""

    def __init__(self, path: pathlib.Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, timeout=0)
        self.holding = False
        self.pauses: list[float] = []
        self.release_after = 3

    def lock(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")
        self.holding = True

    def pause(self, seconds: float) -> None:
        """The store's pause between attempts: the lock is let go after `release_after` of them."""
        self.pauses.append(seconds)
        if self.holding and len(self.pauses) >= self.release_after:
            self.connection.execute("COMMIT")
            self.holding = False


@pytest.fixture
def other(tmp_path: pathlib.Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[OtherProcess]:
    # `runner.store.db` the attribute is the database; the module is only reachable by its name.
    monkeypatch.setattr(importlib.import_module("runner.store.db"), "BUSY_TIMEOUT_S", 0)
    proc = OtherProcess(tmp_path / "seqrun.db")
    # `db` is a proxy now (SQLite or Postgres); the pause belongs to the SQLite database class.
    monkeypatch.setattr(importlib.import_module("runner.store.models").Database, "sleep", staticmethod(proc.pause))
    yield proc
    with contextlib.suppress(sqlite3.Error):
        proc.connection.execute("ROLLBACK")
    proc.connection.close()


def test_a_lock_taken_during_a_provider_call_is_waited_for_and_the_result_committed(
        tmp_path: pathlib.Path, clock: Clock, run: Run, other: OtherProcess, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    assert run("run", "--once")[0] == 0  # the invites get their slots, one point of the window each
    open_store(str(tmp_path / "seqrun.db"))
    first = min(Enrollment.select(), key=lambda e: e.due_at)
    clock.now, key = first.due_at, first.lead.key
    db.close()

    class Locking(SandboxProvider):
        def connect(self, *args: Any, **kwargs: Any) -> Any:
            result = super().connect(*args, **kwargs)
            if not other.pauses:
                other.lock()  # the invite went out; now someone else holds the database
            return result

    monkeypatch.setitem(PROVIDERS, "sandbox", lambda **options: Locking(clock=clock, **options))
    # The lead whose point came first invites (connect, then on to the wait for the acceptance).
    assert run("run", "--once") == (0, "1 lead(s) processed; 2 step(s); 0 event(s)\n", "")
    assert other.pauses == [0.05, 0.1, 0.25]
    assert "the database is locked by another process; waiting for it (attempt 1)" in caplog.text
    open_store(str(tmp_path / "seqrun.db"))
    assert [(a.lead.key, a.action, a.status) for a in Action.select()] == [(key, "connect", "done")]
    assert Enrollment.select().join_from(Enrollment, Enrollment.lead.rel_model).where(
        Enrollment.lead.rel_model.key == key).get().step_id == "accepted"


def test_a_lock_held_when_run_starts_is_waited_for(tmp_path: pathlib.Path, clock: Clock, run: Run,
                                                   other: OtherProcess) -> None:
    other.release_after = 12
    other.lock()
    assert run("run", "--once") == (0, "3 lead(s) processed; 3 step(s); 0 event(s)\n", "")
    assert other.pauses == [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]


def test_a_lock_does_not_stop_a_lead_import(tmp_path: pathlib.Path, clock: Clock, run: Run, other: OtherProcess) -> None:
    (tmp_path / "more.csv").write_text("linkedin_profile_url,full_name\nhttps://www.linkedin.com/in/dana-x,Dana X\n",
                                       encoding="utf-8")
    other.lock()
    code, out, err = run("leads", "import", "more.csv", "--sequence", "intro")
    assert (code, err) == (0, "")
    assert other.pauses == [0.05, 0.1, 0.25]
    open_store(str(tmp_path / "seqrun.db"))
    assert Enrollment.select().count() == 4


def test_a_claim_with_nothing_due_does_not_wait_for_the_write_lock(tmp_path: pathlib.Path, other: OtherProcess) -> None:
    """Most ticks of a quiet campaign find nothing due: they must not queue for (or take) the one
    write lock that another process's lead run is holding."""
    open_store(str(tmp_path / "seqrun.db"))
    now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    other.lock()
    assert claims.claim_due(now, 10, "runner-a", now + dt.timedelta(minutes=10)) == []
    assert other.pauses == []
