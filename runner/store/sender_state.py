"""The SQL of what the engine knows about each sender between passes: when it is next polled, and
until when its provider refuses one of its actions. Kept in the database, so that every runner
sharing it (and a runner started later) polls on the same schedule and obeys the same holds.
"""
from __future__ import annotations

import datetime as dt

from runner.store.fields import from_db_time, to_db_time
from runner.store.models import db
from runner.store.transactions import KeptRead

# --- poll schedule --------------------------------------------------------------------------------


_SCHEDULE: KeptRead[dict[int, dt.datetime]] = KeptRead("poll_schedule")  # read at every pass; a simulation knows its own writes


def poll_schedule() -> dict[int, dt.datetime]:
    """Sender id -> when its next poll is due (senders never polled have no entry)."""
    return dict(_SCHEDULE.read(lambda: {sender_id: from_db_time(at) for sender_id, at in
                                        db.execute_sql("SELECT sender_id, next_at FROM poll_schedule").fetchall()}))


def claim_poll(sender_id: int, now: dt.datetime, next_at: dt.datetime) -> bool:
    """Take a sender's poll that is due at `now` and move its schedule to `next_at`; False when it
    is not due (another runner took it first)."""
    with db.atomic():
        if db.execute_sql("UPDATE poll_schedule SET next_at = ? WHERE sender_id = ? AND next_at <= ?",
                          (to_db_time(next_at), sender_id, to_db_time(now))).rowcount == 1:
            return True
        return db.execute_sql(
            "INSERT INTO poll_schedule (sender_id, next_at) VALUES (?, ?) ON CONFLICT (sender_id) DO NOTHING",
            (sender_id, to_db_time(next_at))).rowcount == 1


def want_poll_by(sender_id: int, at: dt.datetime) -> None:
    """Poll the sender at `at` at the latest (sooner than its schedule when that is later)."""
    db.execute_sql("INSERT INTO poll_schedule (sender_id, next_at) VALUES (?, ?) ON CONFLICT (sender_id) DO UPDATE "
                   "SET next_at = excluded.next_at WHERE poll_schedule.next_at > excluded.next_at",
                   (sender_id, to_db_time(at)))


def next_poll(sender_ids: list[int]) -> dt.datetime | None:
    """The earliest scheduled poll of these senders."""
    if not sender_ids:
        return None
    marks = ", ".join("?" for _ in sender_ids)
    row = db.execute_sql(f"SELECT MIN(next_at) FROM poll_schedule WHERE sender_id IN ({marks})",
                         tuple(sender_ids)).fetchone()
    return from_db_time(row[0]) if row and row[0] else None


# --- provider holds -------------------------------------------------------------------------------


def hold_action(sender_id: int, action: str, until: dt.datetime, reason: str) -> None:
    """The provider refuses `action` for this sender until `until` (a later hold already recorded
    stays)."""
    db.execute_sql("INSERT INTO provider_hold (sender_id, action, until, reason) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (sender_id, action) DO UPDATE SET until = excluded.until, reason = excluded.reason "
                   "WHERE provider_hold.until < excluded.until",
                   (sender_id, action, to_db_time(until), reason))


def action_held_until(sender_id: int, action: str, now: dt.datetime) -> dt.datetime | None:
    """Until when the provider refuses this sender's `action`, when that is after `now`."""
    row = db.execute_sql("SELECT until FROM provider_hold WHERE sender_id = ? AND action = ? AND until > ?",
                         (sender_id, action, to_db_time(now))).fetchone()
    return from_db_time(row[0]) if row else None


_HOLDS: KeptRead[list[tuple[int, str, str, str]]] = KeptRead("provider_hold")  # read at every pass; a simulation knows its own writes
_ALL_HOLDS = "SELECT sender_id, action, until, reason FROM provider_hold ORDER BY sender_id, action"


def provider_holds(now: dt.datetime) -> list[tuple[int, str, dt.datetime, str]]:
    """Every hold still in force at `now`: (sender id, action, until, reason), by sender and action."""
    at = to_db_time(now)
    kept = _HOLDS.kept(lambda: db.execute_sql(_ALL_HOLDS).fetchall())
    if kept is not None:
        # Every hold as last read (the table is small), compared as SQLite compares the stored text.
        rows = [row for row in kept if row[2] > at]
    else:
        rows = db.execute_sql("SELECT sender_id, action, until, reason FROM provider_hold WHERE until > ? "
                              "ORDER BY sender_id, action", (at,)).fetchall()
    return [(sender_id, action, from_db_time(until), reason) for sender_id, action, until, reason in rows]
