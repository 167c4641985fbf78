"""The SQL of daily usage: per sender, sender-local day, action and sequence, the actions charged
(`used`) and the pacing points booked (`reserved`). `runner.engine.limits` decides; this counts."""
from __future__ import annotations

import datetime as dt

from runner.store.fields import to_db_time
from runner.store.kept import Kept
from runner.store.models import db

#: In a simulation (`runner.store.kept`): per (sender id, day, action), {sequence: (used, reserved)}
#: of the day's rows, as the writes below leave them.
_DAYS: Kept[tuple[int, str, str], dict[str, tuple[int, int]]] = Kept()


def day_usage(sender_id: int, day: str, action: str, sequence: str) -> tuple[int, int, int]:
    """(sequence used, sequence reserved, sender total used) for one day."""
    kept = _DAYS.rows()
    counts = kept.get((sender_id, day, action)) if kept is not None else None
    if counts is None:
        rows = db.execute_sql(
            "SELECT sequence, used, reserved FROM usage WHERE sender_id = ? AND day = ? AND action = ?",
            (sender_id, day, action)).fetchall()
        counts = {seq_name: (u, r) for seq_name, u, r in rows}
        if kept is not None:
            kept[(sender_id, day, action)] = counts
    used, reserved = counts.get(sequence, (0, 0))
    return used, reserved, sum(u for u, _ in counts.values())


# Portable upsert: the row's own columns are named with the table (Postgres finds a bare name
# ambiguous beside `excluded`), and a count never goes below 0 (CASE, not SQLite's two-argument MAX).
_ADD = (
    "INSERT INTO usage (sender_id, sequence, action, day, used, reserved, last_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (sender_id, day, action, sequence) DO UPDATE SET used = usage.used + excluded.used, "
    "reserved = CASE WHEN usage.reserved + excluded.reserved < 0 THEN 0 ELSE usage.reserved + excluded.reserved END, "
    "last_at = CASE WHEN excluded.last_at IS NOT NULL AND (usage.last_at IS NULL OR excluded.last_at > usage.last_at) "
    "THEN excluded.last_at ELSE usage.last_at END")


def add_usage(sender_id: int, day: str, action: str, sequence: str, *, used: int = 0, reserved: int = 0,
              last_at: dt.datetime | None = None) -> None:
    """Add to a day's counts (a negative `reserved` gives bookings back); `last_at` keeps the latest."""
    stamp = to_db_time(last_at) if last_at else None
    db.execute_sql(_ADD, (sender_id, sequence, action, day, used, reserved, stamp))
    counts = _kept_day(sender_id, day, action)
    if counts is not None:
        row = counts.get(sequence)
        counts[sequence] = (used, reserved) if row is None else (row[0] + used, max(row[1] + reserved, 0))


def refund_use(sender_id: int, day: str, action: str, sequence: str) -> None:
    """Give back one charged action of a day."""
    db.execute_sql("UPDATE usage SET used = used - 1 WHERE sender_id = ? AND day = ? AND action = ? AND sequence = ? "
                   "AND used > 0", (sender_id, day, action, sequence))
    counts = _kept_day(sender_id, day, action)
    row = counts.get(sequence) if counts is not None else None
    if counts is not None and row is not None and row[0] > 0:
        counts[sequence] = (row[0] - 1, row[1])


def kept_charge(sender_id: int, day: str, action: str, sequence: str, used: int | None) -> None:
    """What `charges.charge_usage` wrote: the sequence's row exists (it may have just been made),
    and its count is `used` when the charge went through."""
    counts = _kept_day(sender_id, day, action)
    if counts is not None:
        was, reserved = counts.get(sequence, (0, 0))
        counts[sequence] = (was if used is None else used, reserved)


def _kept_day(sender_id: int, day: str, action: str) -> dict[str, tuple[int, int]] | None:
    kept = _DAYS.rows()
    return kept.get((sender_id, day, action)) if kept is not None else None
