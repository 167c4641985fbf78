"""The limit charge: one performed action counted against a sender's daily caps.

The count is one conditional UPDATE (`used < cap` for the sequence's row, and the sum of the
sender's rows for the day under the sender's cap), so a cap holds whatever the number of runners:
the row's lock orders two charges of one sequence, and `lock_sender` (a no-op on SQLite, whose one
writer already orders everything; an advisory lock on Postgres) orders charges of one sender across
its sequences, whose sum no single row lock covers.
"""
from __future__ import annotations

import datetime as dt

from runner.store import usage
from runner.store.backends import current
from runner.store.fields import to_db_time
from runner.store.models import db

_CHARGE = (
    "UPDATE usage SET used = used + 1, last_at = CASE WHEN last_at IS NULL OR last_at < ? THEN ? ELSE last_at END "
    "WHERE sender_id = ? AND day = ? AND action = ? AND sequence = ? AND used < ? "
    "AND (SELECT COALESCE(SUM(u.used), 0) FROM usage u WHERE u.sender_id = ? AND u.day = ? AND u.action = ?) < ? "
    "RETURNING used")
_ENSURE = ("INSERT INTO usage (sender_id, sequence, action, day, used, reserved) VALUES (?, ?, ?, ?, 0, 0) "
           "ON CONFLICT (sender_id, day, action, sequence) DO NOTHING")


def lock_sender(sender_id: int) -> None:
    """Until the transaction ends, no other charge of this sender can run (see the module's text)."""
    current().lock_sender_usage(sender_id)


def charge_usage(sender_id: int, day: str, action: str, sequence: str, *, sequence_cap: int, sender_cap: int,
                 at: dt.datetime) -> bool:
    """Count one action on `day` if both caps leave room; False (nothing counted) otherwise."""
    stamp = to_db_time(at)
    args = (stamp, stamp, sender_id, day, action, sequence, sequence_cap, sender_id, day, action, sender_cap)
    row = db.execute_sql(_CHARGE, args).fetchone()
    if row is None:
        if db.execute_sql(_ENSURE, (sender_id, sequence, action, day)).rowcount == 0:
            return False  # the row was there: a cap is reached
        row = db.execute_sql(_CHARGE, args).fetchone()
    usage.kept_charge(sender_id, day, action, sequence, None if row is None else int(row[0]))
    return row is not None
