"""The SQL of pacing points (the `pace` table): the moments a sender's actions are booked for or were
performed at, each with the spacing it keeps from the others (`runner.engine.limits` decides where)."""
from __future__ import annotations

import bisect
import datetime as dt
import json
from typing import Any

from runner.store.fields import from_db_time, to_db_time
from runner.store.kept import Kept
from runner.store.models import db


class _Line:
    """A simulation's copy of the sender's points of one action (`runner.store.kept`): their
    moments in time order, and beside each its (spacing, performed, sequence, id)."""

    __slots__ = ("ats", "rows")

    def __init__(self, rows: list[tuple[int, str, float, str, str]]) -> None:
        points = sorted((from_db_time(at), spacing, state == "used", sequence, pace_id)
                        for pace_id, at, spacing, state, sequence in rows)
        self.ats = [point[0] for point in points]
        self.rows = [point[1:] for point in points]

    def add(self, at: dt.datetime, row: tuple[float, bool, str, int]) -> None:
        i = bisect.bisect_right(self.ats, at)
        self.ats.insert(i, at)
        self.rows.insert(i, row)

    def pop(self, i: int) -> tuple[float, bool, str, int]:
        del self.ats[i]
        return self.rows.pop(i)


#: per (sender id, action): points are only ever deleted by `unbook_point` here (and by cascades
#: from deleted senders and enrollments, which a simulation never deletes).
_LINES: Kept[tuple[int, str], _Line] = Kept()


def _line(sender_id: int, action: str) -> _Line | None:
    kept = _LINES.rows()
    if kept is None:
        return None
    line = kept.get((sender_id, action))
    if line is None:
        line = kept[(sender_id, action)] = _Line(db.execute_sql(
            "SELECT id, at, spacing, state, sequence FROM pace WHERE sender_id = ? AND action = ?",
            (sender_id, action)).fetchall())
    return line


def _kept_line(sender_id: int, action: str) -> _Line | None:
    kept = _LINES.rows()
    return kept.get((sender_id, action)) if kept is not None else None


def points_between(sender_id: int, action: str, after: dt.datetime, before: dt.datetime, *,
                   used_only: bool = False) -> list[tuple[dt.datetime, float]]:
    """(moment, spacing) of the sender's points of `action` strictly between the two times (only the
    performed ones with `used_only`), in no particular order."""
    line = _line(sender_id, action)
    if line is not None:
        ats, rows = line.ats, line.rows
        return [(ats[i], rows[i][0]) for i in range(bisect.bisect_right(ats, after), bisect.bisect_left(ats, before))
                if rows[i][1] or not used_only]
    rows = db.execute_sql(
        "SELECT at, spacing FROM pace WHERE sender_id = ? AND action = ? AND at > ? AND at < ?"
        + (" AND state = 'used'" if used_only else ""),
        (sender_id, action, to_db_time(after), to_db_time(before))).fetchall()
    return [(from_db_time(at), spacing) for at, spacing in rows]


def book_point(sender_id: int, action: str, sequence: str, day: str, at: dt.datetime, spacing: float,
               enrollment_id: int | None) -> None:
    stamp = to_db_time(at)
    cursor = db.execute_sql("INSERT INTO pace (sender_id, action, sequence, day, at, spacing, state, enrollment_id) "
                            "VALUES (?, ?, ?, ?, ?, ?, 'booked', ?)",
                            (sender_id, action, sequence, day, stamp, spacing, enrollment_id))
    if (line := _kept_line(sender_id, action)) is not None:  # (only on SQLite: lastrowid is the point's id)
        line.add(from_db_time(stamp), (spacing, False, sequence, cursor.lastrowid))


def record_used(sender_id: int, action: str, sequence: str, day: str, at: dt.datetime, spacing: float) -> None:
    """The point of an action just charged (`limits.try_charge`): later slots keep their distance from it."""
    stamp = to_db_time(at)
    cursor = db.execute_sql("INSERT INTO pace (sender_id, action, sequence, day, at, spacing, state) "
                            "VALUES (?, ?, ?, ?, ?, ?, 'used')",
                            (sender_id, action, sequence, day, stamp, spacing))
    if (line := _kept_line(sender_id, action)) is not None:
        line.add(from_db_time(stamp), (spacing, True, sequence, cursor.lastrowid))


def unbook_point(sender_id: int, action: str, sequence: str, at: dt.datetime) -> None:
    """Delete one booked point at `at` (two leads may have booked the same moment: one goes)."""
    stamp = to_db_time(at)
    db.execute_sql("DELETE FROM pace WHERE id = (SELECT id FROM pace WHERE sender_id = ? AND action = ? AND "
                   "sequence = ? AND at = ? AND state = 'booked' LIMIT 1)",
                   (sender_id, action, sequence, stamp))
    kept = _LINES.rows()
    line = kept.get((sender_id, action)) if kept is not None else None
    if kept is None or line is None:
        return
    moment = from_db_time(stamp)
    lo, hi = bisect.bisect_left(line.ats, moment), bisect.bisect_right(line.ats, moment)
    held = [i for i in range(lo, hi) if not line.rows[i][1] and line.rows[i][2] == sequence]
    if len(held) > 1:
        del kept[(sender_id, action)]  # (which one went is the database's choice: read them again)
    elif held:
        line.pop(held[0])


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
    stamp = to_db_time(at)
    db.execute_sql("UPDATE pace SET day = ?, at = ? WHERE id = ?", (day, stamp, pace_id))
    for line in (_LINES.rows() or {}).values():  # (rare: the kept points are searched for the id)
        moved = next((i for i, row in enumerate(line.rows) if row[3] == pace_id), None)
        if moved is not None:
            line.add(from_db_time(stamp), line.pop(moved))
            return
