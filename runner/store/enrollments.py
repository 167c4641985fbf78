"""The SQL of enrollment rows: a lead's place in its sequence, read and written by the engine.

The statements that run for every lead on every wake-up are plain SQL (peewee's query builder
costs more than SQLite itself there); the models stay the source of truth for columns and value
conversion (`Field.db_value`, `Field.python_value`).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import peewee

from runner.store.enrollment_writes import SAVED_COLUMNS, Never, keep_stored
from runner.store.fields import UTCDateTimeField, from_db_time, to_db_time
from runner.store.models import Enrollment, Lead, Sender, db

BATCH = 500  # ids per IN (...): below the 999 variables old SQLite builds allow


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), BATCH):
        yield ids[start:start + BATCH]


def _marks(chunk: list[Any]) -> str:
    return ", ".join("?" for _ in chunk)


_ENR_FIELDS = list(Enrollment._meta.sorted_fields)
_LEAD_FIELDS = list(Lead._meta.sorted_fields)
_LOAD_SQL = (f"SELECT {', '.join('e.' + f.column_name for f in _ENR_FIELDS)}, "
             f"{', '.join('l.' + f.column_name for f in _LEAD_FIELDS)} "
             "FROM enrollment e JOIN lead l ON l.id = e.lead_id WHERE e.id = ?")


class _Reader:
    """Turns a row of `model`'s columns (in `sorted_fields` order) into its field values, as each
    field's `python_value` would: times and JSON are converted; a plain integer or text column is
    taken as the driver gives it when it already has the field's type (`python_value` would return
    it unchanged), else through `python_value` too. None stays None."""

    def __init__(self, model: Any) -> None:
        fields = list(model._meta.sorted_fields)
        #: per column, in order: (name, the type taken as is, the conversion of any other value)
        self.columns: list[tuple[str, type, Any]] = []
        for f in fields:
            if type(f) in (peewee.AutoField, peewee.IntegerField) or (
                    isinstance(f, peewee.ForeignKeyField) and type(f.rel_field) is peewee.AutoField):
                self.columns.append((f.name, int, f.python_value))
            elif type(f) is peewee.TextField:
                self.columns.append((f.name, str, f.python_value))
            elif isinstance(f, UTCDateTimeField):
                self.columns.append((f.name, Never, from_db_time))
            else:
                self.columns.append((f.name, Never, f.python_value))

    def values(self, row: Sequence[Any]) -> dict[str, Any]:
        if len(row) != len(self.columns):
            raise ValueError(f"a row of {len(row)} columns for {len(self.columns)} fields")
        return {name: value if value is None or type(value) is kind else convert(value)
                for (name, kind, convert), value in zip(self.columns, row)}  # noqa: B905 - length checked above


_ENR_READER, _LEAD_READER = _Reader(Enrollment), _Reader(Lead)
#: where each column `save_enrollment` writes sits in a row of `_LOAD_SQL`
_STORED_AT = [[f.column_name for f in _ENR_FIELDS].index(column) for column in SAVED_COLUMNS]


def load_enrollment(enrollment_id: int) -> Enrollment:
    """An enrollment with its lead, read with one plain query (peewee's query builder is the
    slowest part of a tick otherwise). The enrollment keeps the text of the columns
    `save_enrollment` writes, as read (see `stored_values`)."""
    row = db.execute_sql(_LOAD_SQL, (enrollment_id,)).fetchone()
    n = len(_ENR_FIELDS)
    lead = _filled(Lead, _LEAD_READER.values(row[n:]))
    enr = _filled(Enrollment, _ENR_READER.values(row[:n]))
    enr.lead = lead
    keep_stored(enr, [row[i] for i in _STORED_AT])
    return enr


def read_models(model: Any, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """`model` instances of the rows `sql` selects (every column of the model, in `sorted_fields`
    order), as peewee's `select()` builds them, without its query builder."""
    fields = list(model._meta.sorted_fields)
    out = []
    for row in db.execute_sql(sql, params).fetchall():
        instance = _filled(model, {f.name: f.python_value(v) for f, v in zip(fields, row, strict=True)})
        instance._dirty.clear()  # as read from the database
        out.append(instance)
    return out


def columns_of(model: Any) -> str:
    """Every column of `model`, in the order `read_models` reads them."""
    return ", ".join(f.column_name for f in model._meta.sorted_fields)


def _filled(model: Any, values: dict[str, Any]) -> Any:
    """A model instance with every field given: what `model(**values)` builds, without peewee's
    default values and per-field descriptors (a tick loads one per lead)."""
    instance = model.__new__(model)  # what `Model.__init__` sets, without its keyword handling
    instance.__data__ = values
    instance._dirty = set(values)
    instance.__rel__ = {}
    return instance


def due_ids(now: dt.datetime, limit: int) -> list[int]:
    """The active enrollments due at `now`, earliest first (through the partial index on `due_at`)."""
    rows = db.execute_sql(
        "SELECT id FROM enrollment WHERE state = 'active' AND due_at <= ? ORDER BY due_at LIMIT ?",
        (to_db_time(now), limit)).fetchall()
    return [r[0] for r in rows]


def earliest_due() -> dt.datetime | None:
    """When the first active enrollment is due; None when none is."""
    row = db.execute_sql("SELECT MIN(due_at) FROM enrollment WHERE state = 'active'").fetchone()
    return from_db_time(row[0]) if row and row[0] else None


def attempt_of(enrollment_id: int) -> int:
    return Enrollment.select(Enrollment.attempt).where(Enrollment.id == enrollment_id).scalar()


def facts_of(enrollment_id: int) -> dict[str, Any]:
    return dict(Enrollment.select(Enrollment.facts).where(Enrollment.id == enrollment_id).scalar() or {})


def note_crash(enrollment_id: int, attempt: int, error: str, now: dt.datetime, *, retry_at: dt.datetime | None) -> None:
    """An unexpected error in our own code: the lead retries at `retry_at`, or fails (None) with
    the error kept. Nobody works on it meanwhile (no lease)."""
    values: dict[Any, Any] = {Enrollment.attempt: attempt, Enrollment.last_error: error, Enrollment.updated_at: now,
                              Enrollment.lease_owner: None, Enrollment.due_at: retry_at,
                              Enrollment.version: Enrollment.version + 1}
    if retry_at is None:
        values.update({Enrollment.state: "failed", Enrollment.outcome: "error", Enrollment.finished_at: now})
    Enrollment.update(values).where(Enrollment.id == enrollment_id).execute()


#: What a pause or resume applies to (`runner.holds`): the enrollments of one lead, sender or sequence.
_SCOPES = {"lead": Enrollment.lead, "sender": Enrollment.sender, "sequence": Enrollment.sequence}


def _in_scope(scope: str, value: int | str, state: str) -> peewee.Expression:
    return (_SCOPES[scope] == value) & (Enrollment.state == state)


def active_ids_of(scope: str, value: int | str, *, but: int | None = None) -> list[int]:
    """The active enrollments of a lead, sender or sequence (except `but`)."""
    return [i for (i,) in Enrollment.select(Enrollment.id).where(
        _in_scope(scope, value, "active"), Enrollment.id != (but or 0)).tuples()]


def pause_reasons_of(scope: str, value: int | str) -> list[str | None]:
    """The pause reason of each paused enrollment of a lead, sender or sequence."""
    return [r for (r,) in Enrollment.select(Enrollment.paused_reason).where(_in_scope(scope, value, "paused")).tuples()]


def paused_of(scope: str, value: int | str) -> list[tuple[int, str | None, str | None, str | None]]:
    """(id, pause reason, sender name, sender status) of each paused enrollment of a lead, sender or sequence."""
    return list(Enrollment.select(Enrollment.id, Enrollment.paused_reason, Sender.name, Sender.status)
                .join(Sender, peewee.JOIN.LEFT_OUTER, on=(Enrollment.sender == Sender.id))
                .where(_in_scope(scope, value, "paused")).tuples())


def pause_enrollments(ids: list[int], reason: str, now: dt.datetime) -> int:
    """Pause these enrollments where they are still active; returns how many."""
    return sum(Enrollment.update(state="paused", paused_reason=reason, updated_at=now)
               .where(Enrollment.id.in_(chunk), Enrollment.state == "active").execute() for chunk in _chunks(ids))


def resume_enrollments(ids: list[int], now: dt.datetime) -> int:
    """Resume these enrollments where they are still paused, due now; returns how many."""
    return sum(Enrollment.update(state="active", paused_reason=None, due_at=now, lease_owner=None, updated_at=now)
               .where(Enrollment.id.in_(chunk), Enrollment.state == "paused").execute() for chunk in _chunks(ids))


def counts_by_sender() -> dict[int, dict[str, int]]:
    """Per sender id, its enrollments per state."""
    counts: dict[int, dict[str, int]] = {}
    query = (Enrollment.select(Enrollment.sender, Enrollment.state, peewee.fn.COUNT(Enrollment.id))
             .where(Enrollment.sender.is_null(False)).group_by(Enrollment.sender, Enrollment.state).tuples())
    for sender_id, state, count in query:
        counts.setdefault(sender_id, {})[state] = count
    return counts


def pause_active_of_sender(sender_id: int, reason: str, now: dt.datetime) -> int:
    return Enrollment.update(state="paused", paused_reason=reason, updated_at=now).where(
        Enrollment.sender == sender_id, Enrollment.state == "active").execute()


def slot_holders(enrollment_ids: list[int]) -> list[tuple[int, str, int | None, dict[str, Any]]]:
    """(id, sequence, sender id, facts) of the enrollments among these whose facts hold a pacing slot."""
    out = []
    for chunk in _chunks(enrollment_ids):
        rows = db.execute_sql(f"SELECT id, sequence, sender_id, facts FROM enrollment WHERE id IN ({_marks(chunk)})",
                              chunk).fetchall()
        # The text is looked at before it is parsed: most leads hold no slot.
        out += [(i, sequence, sender_id, Enrollment.facts.python_value(raw)) for i, sequence, sender_id, raw in rows
                if '"slot"' in raw]
    return out


def set_facts(enrollment_id: int, facts: dict[str, Any]) -> None:
    db.execute_sql("UPDATE enrollment SET facts = ? WHERE id = ?", (Enrollment.facts.db_value(facts), enrollment_id))


def move_slot(enrollment_id: int, facts: dict[str, Any], due_at: dt.datetime, version: int) -> bool:
    """Wake a lead at its moved pacing slot (`facts` holds it); False when someone works on the lead
    now, it is no longer active, or it changed since `version` was read (an event applied meanwhile
    stands)."""
    return db.execute_sql(
        "UPDATE enrollment SET facts = ?, due_at = ?, version = version + 1 "
        "WHERE id = ? AND state = 'active' AND lease_owner IS NULL AND version = ?",
        (Enrollment.facts.db_value(facts), to_db_time(due_at), enrollment_id, version)).rowcount == 1


def failed_enrollments(*, sequence: str | None = None, sender_id: int | None = None,
                       lead_id: int | None = None) -> list[tuple[int, int, str, str, str | None, str | None, str | None]]:
    """(id, lead id, profile URL, sequence, step id, sender name, last error) of every failed enrollment,
    oldest failure first, narrowed by every filter given."""
    query = (Enrollment.select(Enrollment.id, Enrollment.lead, Lead.profile_url, Enrollment.sequence,
                               Enrollment.step_id, Sender.name, Enrollment.last_error)
             .join(Lead, on=(Enrollment.lead == Lead.id))
             .join(Sender, peewee.JOIN.LEFT_OUTER, on=(Enrollment.sender == Sender.id))
             .where(Enrollment.state == "failed")
             .order_by(Enrollment.finished_at, Enrollment.id))
    if sequence is not None:
        query = query.where(Enrollment.sequence == sequence)
    if sender_id is not None:
        query = query.where(Enrollment.sender == sender_id)
    if lead_id is not None:
        query = query.where(Enrollment.lead == lead_id)
    return list(query.tuples())


def runs_elsewhere(lead_id: int, enrollment_id: int) -> bool:
    """Whether the lead runs (active or paused) in an enrollment other than this one."""
    return Enrollment.select(Enrollment.id).where(
        Enrollment.lead == lead_id, Enrollment.state.in_(("active", "paused")), Enrollment.id != enrollment_id).exists()


def put_back(enrollment_id: int, attempt: int, facts: dict[str, Any], now: dt.datetime) -> bool:
    """A failed enrollment runs again at its step, due now, with these attempt and facts; False when
    it is no longer failed."""
    return Enrollment.update(
        state="active", outcome=None, finished_at=None, last_error=None, due_at=now, lease_owner=None,
        attempt=attempt, facts=facts, updated_at=now,
    ).where(Enrollment.id == enrollment_id, Enrollment.state == "failed").execute() == 1


def enrolled_with(keys: list[str], sender_names: list[str]) -> list[tuple[str, str, dict[str, Any], str]]:
    """(lead key, profile URL, provider ids, sender name) of every enrollment (any state) of these
    leads with one of these senders."""
    return list(Enrollment.select(Lead.key, Lead.profile_url, Lead.provider_ids, Sender.name)
                .join(Lead).switch(Enrollment).join(Sender)
                .where(Lead.key.in_(keys), Sender.name.in_(sender_names)).tuples())


def paced_at(now: dt.datetime) -> list[tuple[dt.datetime, str, str]]:
    """(due time, action, profile URL) of the active leads written at `now` that sleep until a pacing
    slot, earliest first (what a dry run's pass planned, read before its rollback)."""
    rows = db.execute_sql(
        "SELECT e.due_at, e.facts, l.profile_url FROM enrollment e JOIN lead l ON l.id = e.lead_id "
        "WHERE e.state = 'active' AND e.updated_at = ? ORDER BY e.due_at", (to_db_time(now),)).fetchall()
    out = []
    for due, raw, url in rows:
        slot = Enrollment.facts.python_value(raw).get("slot")
        if slot:
            out.append((from_db_time(due), slot["action"], url))
    return out
