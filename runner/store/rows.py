"""Plain-SQL writes for the rows the interpreter touches on every step.

peewee's query builder costs more than SQLite itself on these hot paths (an INSERT of an outbox
row, the UPDATE that closes it), so they are written once here as fixed statements. The models stay
the source of truth for columns and value conversion (`Field.db_value`).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from runner.language.urls import redact_secrets
from runner.store import written
from runner.store.backends import current
from runner.store.fields import to_db_time
from runner.store.models import Action, Lead, db

_ACTION_FIELDS = [f for f in Action._meta.sorted_fields if f.name != "id"]
_INSERT = (f"INSERT INTO action ({', '.join(f.column_name for f in _ACTION_FIELDS)}) "
           f"VALUES ({', '.join('?' for _ in _ACTION_FIELDS)}) RETURNING id")
_CLOSE_FIELDS = [Action.status, Action.charged, Action.performed_at, Action.provider_id, Action.conversation_id,
                 Action.error_kind, Action.error_message]
# A URL's password or token must never be stored, wherever it came from (a notify URL, an error text).
_REDACTED = ("content", "error_message")
_CLOSE = f"UPDATE action SET {', '.join(f.column_name + ' = ?' for f in _CLOSE_FIELDS)} WHERE id = ?"


def execute_many(sql: str, rows: Iterable[Sequence[Any]]) -> None:
    """One statement (with `?` placeholders) for each row, through the driver's executemany."""
    db.cursor().executemany(current().native_sql(sql), rows)
    written.note(sql)


def insert_action(**values: Any) -> Action:
    """Insert an outbox/ledger row; foreign keys are given as ids (enrollment=, lead=, sender=)."""
    for name in _REDACTED:
        if values.get(name):
            values[name] = redact_secrets(values[name])
    act = Action(**values)
    params = [f.db_value(act.__data__.get(f.name, f.default() if callable(f.default) else f.default))
              for f in _ACTION_FIELDS]
    act.id = db.execute_sql(_INSERT, params).fetchone()[0]
    return act


def close_action_row(act: Action) -> None:
    if act.error_message:
        act.error_message = redact_secrets(act.error_message)
    db.execute_sql(_CLOSE, [f.db_value(getattr(act, f.name)) for f in _CLOSE_FIELDS] + [act.id])


def set_lead_json(lead_id: int, column: str, value: Any) -> None:
    """Update the JSON `tags` or `provider_ids` of a lead."""
    assert column in ("tags", "provider_ids")
    field = getattr(Lead, column)
    db.execute_sql(f"UPDATE lead SET {column} = ? WHERE id = ?", (field.db_value(value), lead_id))


_INSERT_TRANSITION = "INSERT INTO transition (enrollment_id, lead_id, sequence, step_id, entered_at) VALUES (?, ?, ?, ?, ?)"


def insert_transition(enrollment_id: int, lead_id: int, sequence: str, step_id: str, entered_at: dt.datetime) -> None:
    """A lead entered a step (the audit log's step transitions)."""
    db.execute_sql(_INSERT_TRANSITION, (enrollment_id, lead_id, sequence, step_id, to_db_time(entered_at)))


def record_first_steps(after_id: int) -> None:
    """Bulk enrollments (import, simulate) put each lead on its first step directly: record those
    entries as transitions, one statement for every enrollment with an id above `after_id`."""
    db.execute_sql("INSERT INTO transition (enrollment_id, lead_id, sequence, step_id, entered_at) "
                   "SELECT id, lead_id, sequence, step_id, step_entered_at FROM enrollment "
                   "WHERE id > ? AND step_id IS NOT NULL", (after_id,))


def last_enrollment_id() -> int:
    return db.execute_sql("SELECT COALESCE(MAX(id), 0) FROM enrollment").fetchone()[0]
