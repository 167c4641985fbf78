"""The SQL of pacing points (the `pace` table): the moments a sender's actions are booked for or were
performed at, each with the spacing it keeps from the others (`runner.engine.limits` decides where)."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from runner.store.fields import from_db_time, to_db_time
from runner.store.models import db


def points_between(sender_id: int, action: str, after: dt.datetime, before: dt.datetime, *,
                   used_only: bool = False) -> list[tuple[dt.datetime, float]]:
    """(moment, spacing) of the sender's points of `action` strictly between the two times (only the
    performed ones with `used_only`)."""
    rows = db.execute_sql(
        "SELECT at, spacing FROM pace WHERE sender_id = ? AND action = ? AND at > ? AND at < ?"
        + (" AND state = 'used'" if used_only else ""),
        (sender_id, action, to_db_time(after), to_db_time(before))).fetchall()
    return [(from_db_time(at), spacing) for at, spacing in rows]


def book_point(sender_id: int, action: str, sequence: str, day: str, at: dt.datetime, spacing: float,
               enrollment_id: int | None) -> None:
    db.execute_sql("INSERT INTO pace (sender_id, action, sequence, day, at, spacing, state, enrollment_id) "
                   "VALUES (?, ?, ?, ?, ?, ?, 'booked', ?)",
                   (sender_id, action, sequence, day, to_db_time(at), spacing, enrollment_id))


def record_used(sender_id: int, action: str, sequence: str, day: str, at: dt.datetime, spacing: float) -> None:
    """The point of an action just charged (`limits.try_charge`): later slots keep their distance from it."""
    db.execute_sql("INSERT INTO pace (sender_id, action, sequence, day, at, spacing, state) "
                   "VALUES (?, ?, ?, ?, ?, ?, 'used')",
                   (sender_id, action, sequence, day, to_db_time(at), spacing))


def unbook_point(sender_id: int, action: str, sequence: str, at: dt.datetime) -> None:
    """Delete one booked point at `at` (two leads may have booked the same moment: one goes)."""
    db.execute_sql("DELETE FROM pace WHERE id = (SELECT id FROM pace WHERE sender_id = ? AND action = ? AND "
                   "sequence = ? AND at = ? AND state = 'booked' LIMIT 1)",
                   (sender_id, action, sequence, to_db_time(at)))


def bookings_after(sender_id: int, action: str, sequence: str, day: str,
                   limit: int) -> list[tuple[int, str, int, dict[str, Any], str, str | None, dict[str, Any], int]]:
    """The earliest booked points of later days than `day` whose leads nobody works on: (point id,
    its day, enrollment id, the enrollment's facts, lead key, lead time zone, lead fields, the
    enrollment's version)."""
    rows = db.execute_sql(
        "SELECT p.id, p.day, e.id, e.facts, l.key, l.timezone, l.fields, e.version FROM pace p "
        "JOIN enrollment e ON e.id = p.enrollment_id JOIN lead l ON l.id = e.lead_id "
        "WHERE p.sender_id = ? AND p.action = ? AND p.sequence = ? AND p.state = 'booked' AND p.day > ? "
        "AND e.state = 'active' AND e.lease_owner IS NULL ORDER BY p.at LIMIT ?",
        (sender_id, action, sequence, day, limit)).fetchall()
    return [(pace_id, old_day, enrollment_id, json.loads(facts), key, tz, json.loads(fields), version)
            for pace_id, old_day, enrollment_id, facts, key, tz, fields, version in rows]


def move_point(pace_id: int, day: str, at: dt.datetime) -> None:
    db.execute_sql("UPDATE pace SET day = ?, at = ? WHERE id = ?", (day, to_db_time(at), pace_id))
