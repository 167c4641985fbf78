"""The SQL of sender calls: at most one action in flight per sender account, across every runner.

A runner inserts a `sender_call` row, in the transaction that records the action in the outbox
(so it is committed before the provider is called), and deletes it when the call's result is
recorded. The unique index on `sender_id` is the guard: a second insert for the same account finds
the row and inserts nothing (`ON CONFLICT DO NOTHING`, the same on SQLite and Postgres; on
Postgres an insert racing an uncommitted one waits for it to commit, then inserts nothing). A row
left by a runner that is gone is deleted by whoever takes its leads back (`runner.presence`); the
lead it belonged to still has its action in flight and is reconciled with the provider first.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from runner.store.fields import from_db_time, to_db_time
from runner.store.models import db


@dataclass(frozen=True)
class SenderCall:
    sender_id: int
    enrollment_id: int | None
    action_key: str
    runner: str
    started_at: dt.datetime


def start_call(sender_id: int, enrollment_id: int, action_key: str, runner: str, now: dt.datetime) -> bool:
    """Take the sender's one call for this action; False (nothing written) when another call of
    the sender is in flight. Run it inside the transaction that records the action."""
    return db.execute_sql(
        "INSERT INTO sender_call (sender_id, enrollment_id, action_key, runner, started_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (sender_id) DO NOTHING",
        (sender_id, enrollment_id, action_key, runner, to_db_time(now))).rowcount == 1


def end_call(sender_id: int, action_key: str) -> int:
    """The call of this action returned (its result is recorded in the same transaction)."""
    return int(db.execute_sql("DELETE FROM sender_call WHERE sender_id = ? AND action_key = ?",
                              (sender_id, action_key)).rowcount)


def end_calls_of_enrollment(enrollment_id: int, runner: str) -> int:
    """This runner's call for the lead ended without a recorded result (an unexpected error): the
    action stays in flight and the lead's next run reconciles it."""
    return int(db.execute_sql("DELETE FROM sender_call WHERE enrollment_id = ? AND runner = ?",
                              (enrollment_id, runner)).rowcount)


def caller_of(sender_id: int) -> str | None:
    """The runner with a call of the sender in flight now, if any (a hint: `start_call` decides)."""
    row = db.execute_sql("SELECT runner FROM sender_call WHERE sender_id = ?", (sender_id,)).fetchone()
    return None if row is None else str(row[0])


def call_holders() -> dict[str, int]:
    """Runners with a call in flight: identity -> how many (one per sender)."""
    rows = db.execute_sql("SELECT runner, COUNT(*) FROM sender_call GROUP BY runner ORDER BY runner").fetchall()
    return {str(runner): int(count) for runner, count in rows}


def end_calls_of(runners: list[str]) -> int:
    """Delete the calls these (gone) runners left in flight; their leads are reconciled before any retry."""
    if not runners:
        return 0
    marks = ", ".join("?" for _ in runners)
    return int(db.execute_sql(f"DELETE FROM sender_call WHERE runner IN ({marks})", tuple(runners)).rowcount)


def calls_in_flight() -> list[SenderCall]:
    """Every call in flight, by sender (for `status` and tests)."""
    rows = db.execute_sql("SELECT sender_id, enrollment_id, action_key, runner, started_at FROM sender_call "
                          "ORDER BY sender_id").fetchall()
    return [SenderCall(int(s), None if e is None else int(e), str(k), str(r), from_db_time(str(t)))
            for s, e, k, r, t in rows]
