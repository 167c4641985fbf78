"""Guarded writes of an enrollment row: each checks the `version` it read and bumps it.

A write that finds another version (someone wrote the row since it was read) changes nothing and
says so; the caller reads again, or gives up. So no writer ever overwrites a newer change: an event
applied from another process survives the lead's own save (runner.engine.inbox, issue 8's lost update).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from runner.store.fields import to_db_time
from runner.store.models import Enrollment, db

_COLUMNS = ("step_id", "state", "outcome", "due_at", "attempt", "step_entered_at",
            "facts", "last_error", "paused_reason", "lease_owner", "updated_at", "finished_at")
_SAVE_SQL = (f"UPDATE enrollment SET {', '.join(c + ' = ?' for c in _COLUMNS)}, version = version + 1 "
             "WHERE id = ? AND state = ? AND version = ?")
_TO_DB = [(c, getattr(Enrollment, c).db_value) for c in _COLUMNS]  # (column, its Field.db_value)
_FACTS_SQL = ("UPDATE enrollment SET facts = ?, due_at = ?, updated_at = ?, version = version + 1 "
              "WHERE id = ? AND state = ? AND version = ? AND lease_owner IS NULL")


def save_enrollment(enr: Enrollment, expected_state: str) -> bool:
    """Write the lead's cursor and facts if the row is still in `expected_state` at `enr.version`;
    on success `enr.version` is the new version. False when another writer got there first."""
    data = enr.__data__
    values = [to_db(data.get(column)) for column, to_db in _TO_DB]
    if db.execute_sql(_SAVE_SQL, (*values, enr.id, expected_state, enr.version)).rowcount != 1:
        return False
    enr.version += 1
    return True


def write_facts_unclaimed(enr: Enrollment, facts: dict[str, Any], due_at: dt.datetime | None,
                          now: dt.datetime) -> bool:
    """An event's facts on a lead nobody holds (no lease), if the row is still as read."""
    params = (Enrollment.facts.db_value(facts), to_db_time(due_at) if due_at else None, to_db_time(now),
              enr.id, enr.state, enr.version)
    return db.execute_sql(_FACTS_SQL, params).rowcount == 1
