"""Guarded writes of an enrollment row: each checks the `version` it read and bumps it.

A write that finds another version (someone wrote the row since it was read) changes nothing and
says so; the caller reads again, or gives up. So no writer ever overwrites a newer change: an event
applied from another process survives the lead's own save (runner.engine.inbox, issue 8's lost update).
"""
from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import peewee

from runner.store.fields import JSONField, UTCDateTimeField, to_db_time
from runner.store.models import Enrollment, db
from runner.store.transactions import is_sole_writer

#: the columns `save_enrollment` writes: the lead's cursor and facts
SAVED_COLUMNS = ("step_id", "state", "outcome", "due_at", "attempt", "step_entered_at",
                 "facts", "last_error", "paused_reason", "lease_owner", "updated_at", "finished_at")
_GUARD = "version = version + 1 WHERE id = ? AND state = ? AND version = ?"
_SAVE_SQL = f"UPDATE enrollment SET {', '.join(c + ' = ?' for c in SAVED_COLUMNS)}, {_GUARD}"


class Never:
    """A type no value has: in a (type, conversion) pair, the value always goes through the
    conversion (the row reader of `enrollments` uses it too)."""


def _conversion(column: str) -> tuple[str, type, Any]:
    """(column, a type its `Field.db_value` passes through unchanged, that `db_value` for any other
    value): text and integers as they are, JSON always encoded."""
    field = getattr(Enrollment, column)
    if isinstance(field, UTCDateTimeField):
        return column, str, field.db_value
    if isinstance(field, JSONField):
        return column, Never, field.db_value
    if type(field) is peewee.IntegerField:
        return column, int, field.db_value
    if type(field) is peewee.TextField:
        return column, str, field.db_value
    return column, Never, field.db_value


_TO_DB = [_conversion(c) for c in SAVED_COLUMNS]
_FACTS_SQL = ("UPDATE enrollment SET facts = ?, due_at = ?, updated_at = ?, version = version + 1 "
              "WHERE id = ? AND state = ? AND version = ? AND lease_owner IS NULL")


def keep_stored(enr: Enrollment, values: list[Any]) -> None:
    """Remember the text of the `SAVED_COLUMNS` as the row holds them at `enr.version` (as read, or
    as `save_enrollment` wrote them)."""
    enr._stored = values


def save_enrollment(enr: Enrollment, expected_state: str) -> bool:
    """Write the lead's cursor and facts if the row is still in `expected_state` at `enr.version`;
    on success `enr.version` is the new version. False when another writer got there first.

    In a simulation (`sole_writer`: no other process writes the store, and this process writes a
    claimed lead's row only through its run) only the columns whose text differs from what the row
    holds are written: SQLite then leaves alone the indexes of the columns not written (`state` is
    in most of them). Elsewhere every column is written, as another runner may have changed one
    without moving the version (a claim after the lease ran out)."""
    data = enr.__data__
    values = [value if (value := data.get(column)) is None or type(value) is kind else to_db(value)
              for column, kind, to_db in _TO_DB]  # what each field's `db_value` gives
    stored = enr.__dict__.get("_stored") if is_sole_writer() else None
    if stored is None:
        sql, params = _SAVE_SQL, (*values, enr.id, expected_state, enr.version)
    else:
        changed = tuple(i for i, (new, old) in enumerate(zip(values, stored, strict=True)) if new != old)
        sql, params = _save_sql(changed), (*(values[i] for i in changed), enr.id, expected_state, enr.version)
    if db.execute_sql(sql, params).rowcount != 1:
        return False
    enr.version += 1
    enr._stored = values
    return True


@functools.lru_cache(maxsize=512)
def _save_sql(columns: tuple[int, ...]) -> str:
    """The guarded UPDATE of these `SAVED_COLUMNS` (by position) alone."""
    return f"UPDATE enrollment SET {''.join(SAVED_COLUMNS[i] + ' = ?, ' for i in columns)}{_GUARD}"


def write_facts_unclaimed(enr: Enrollment, facts: dict[str, Any], due_at: dt.datetime | None,
                          now: dt.datetime) -> bool:
    """An event's facts on a lead nobody holds (no lease), if the row is still as read."""
    params = (Enrollment.facts.db_value(facts), to_db_time(due_at) if due_at else None, to_db_time(now),
              enr.id, enr.state, enr.version)
    return db.execute_sql(_FACTS_SQL, params).rowcount == 1
