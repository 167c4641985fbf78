"""The SQL of the event inbox: appending received events, taking them to apply, dead letters.

An event is appended (`append`) by whoever received it — a poll, a webhook receiver on another
thread, another process — and committed there; it is applied later, once, by `runner.engine.inbox`. A row
is `pending` until applied (`mark_applied`, a guarded write: only one applier wins), or `dead` after
`record_failure` counted too many attempts; `retry` makes dead rows pending again.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from peewee import fn

from runner.language.urls import redact_secrets
from runner.providers.base import ProviderEvent
from runner.store.backends import current
from runner.store.enrollments import columns_of, read_models
from runner.store.fields import from_db_time, to_db_time
from runner.store.models import Enrollment, Event, InboxEvent, Lead, db
from runner.store.transactions import KeptRead

STATES = ("pending", "applied", "dead")


@dataclass(frozen=True)
class Received:
    """One event as it arrived, ready to append: the parsed event and the raw body it came in."""

    event: ProviderEvent
    payload: str | None = None


def append(received: Iterable[Received], *, source: str, provider: str, received_at: dt.datetime,
           sender_id: int | None = None) -> list[int]:
    """Store each event once (by provider and event id) and commit; the ids of the rows that are new.

    An event whose time cannot be stored (a naive datetime) is stored `dead` with the reason, so
    that it is seen (`seqrun events list`) and never holds up anything else.
    """
    items = list(received)
    if not items:
        return []  # (most polls bring nothing: no transaction for them)
    new: list[int] = []
    with db.atomic():
        for item in items:
            ev = item.event
            row = dict(source=source, provider=provider, sender=sender_id, event_id=ev.event_id, kind=ev.kind,
                       lead_key=ev.lead_key, account_id=ev.account_id, conversation_id=ev.conversation_id,
                       data=dict(ev.data), payload=item.payload, received_at=received_at, occurred_at=ev.occurred_at)
            try:
                to_db_time(ev.occurred_at)
            except (TypeError, ValueError, AttributeError) as exc:
                row.update(occurred_at=None, state="dead", attempts=1, error=_describe(exc))
            found = db.execute_sql(*_insert_new(row)).fetchone()
            if found is not None:
                new.append(int(found[0]))
    return new


_INBOX_FIELDS = {f.name: f for f in InboxEvent._meta.sorted_fields}


def _insert_new(row: dict[str, Any]) -> tuple[str, list[Any]]:
    """The statement storing `row` unless its (provider, event id) is stored already, and its
    parameters: what peewee's `insert(**row).on_conflict_ignore()` runs (the given columns and those
    with a model default, each value through its field's `db_value`; on SQLite `INSERT OR IGNORE`,
    which also skips a row that breaks a NOT NULL constraint), returning the new row's id, without
    building the query for every event of a poll."""
    fields = [_INBOX_FIELDS[name] for name in row]
    fields += [f for f in InboxEvent._meta.defaults if f.name not in row]
    values = []
    for f in fields:
        if f.name in row:
            value = row[f.name]
        else:  # a default is called when it is a function (`data`'s dict), as peewee does
            value = InboxEvent._meta.defaults[f]
            value = value() if callable(value) else value
        values.append(f.db_value(value))
    return current().insert_or_ignore("inbox", tuple(f.column_name for f in fields)), values


def to_event(row: InboxEvent) -> ProviderEvent:
    """The event a stored row holds."""
    return ProviderEvent(event_id=row.event_id, kind=row.kind, occurred_at=row.occurred_at, account_id=row.account_id,
                         lead_key=row.lead_key, conversation_id=row.conversation_id, data=dict(row.data or {}))


_ANY_PENDING_AFTER = "SELECT 1 FROM inbox WHERE state = 'pending' AND id > ? LIMIT 1"


_ANY_PENDING: KeptRead[bool] = KeptRead("inbox")  # whether any row is pending: a simulation knows it from its own writes


def _none_pending() -> bool:
    """Known without a query that no row is pending (a simulation that wrote no inbox row since it
    last found none)."""
    return _ANY_PENDING.kept(lambda: db.execute_sql(_ANY_PENDING_AFTER, (0,)).fetchone() is not None) is False


def pending(limit: int, *, after: int = 0) -> list[InboxEvent]:
    """Pending rows in arrival order, from id `after` on (a pass walks the table in pages)."""
    if _none_pending() or db.execute_sql(_ANY_PENDING_AFTER, (after,)).fetchone() is None:
        return []  # the common case (every tick asks), answered from the partial index without building a query
    return read_models(InboxEvent, f"SELECT {columns_of(InboxEvent)} FROM inbox WHERE state = 'pending' AND id > ? "
                                   "ORDER BY id LIMIT ?", (after, limit))


# The literal 'pending' (not a parameter) lets SQLite use the partial index `inbox_pending`: these
# run for every lead a run takes, and must not grow with the number of events ever received.
_PENDING_FOR_LEAD = "SELECT * FROM inbox WHERE lead_key = ? AND state = 'pending' ORDER BY id"
_ANY_PENDING_FOR_LEAD = "SELECT 1 FROM inbox WHERE lead_key = ? AND state = 'pending' LIMIT 1"


def pending_for_lead(lead_key: str) -> list[InboxEvent]:
    """A lead's pending rows in arrival order (the holder of its claim applies them)."""
    if _none_pending() or db.execute_sql(_ANY_PENDING_FOR_LEAD, (lead_key,)).fetchone() is None:
        return []  # the common case, answered from the index alone
    return list(InboxEvent.raw(_PENDING_FOR_LEAD, lead_key))


def mark_applied(row_id: int, now: dt.datetime) -> bool:
    """Take a pending row as applied; False when someone else applied it (or it died) first."""
    return db.execute_sql("UPDATE inbox SET state = 'applied', applied_at = ?, error = NULL "
                          "WHERE id = ? AND state = 'pending'", (_APPLIED_AT(now), row_id)).rowcount == 1


_APPLIED_AT = InboxEvent.applied_at.db_value


def record_failure(row_id: int, exc: BaseException, *, max_attempts: int) -> str:
    """Count a failed attempt; the row's state afterwards (`dead` once `max_attempts` are used)."""
    with db.atomic():
        row = InboxEvent.get_or_none(InboxEvent.id == row_id)
        if row is None or row.state != "pending":
            return row.state if row is not None else "dead"
        attempts = row.attempts + 1
        state = "dead" if attempts >= max_attempts else "pending"
        InboxEvent.update(attempts=attempts, state=state, error=_describe(exc)).where(
            InboxEvent.id == row_id, InboxEvent.state == "pending").execute()
    return state


def later_restore(account_id: str | None, sender_id: int | None, since: dt.datetime) -> bool:
    """Whether a renewal of the session (`auth_restored`) at or after `since` was received for the
    account: an expiry it supersedes pauses nothing."""
    if account_id is None and sender_id is None:
        return False
    query = InboxEvent.select(InboxEvent.id).where(InboxEvent.kind == "auth_restored",
                                                   InboxEvent.occurred_at >= since)
    if sender_id is not None:
        query = query.where(InboxEvent.sender == sender_id)
    else:
        query = query.where(InboxEvent.account_id == account_id)
    return query.exists()


def counts() -> dict[str, int]:
    """Rows per state (every state present, zero when none)."""
    found = {state: 0 for state in STATES}
    for state, count in InboxEvent.select(InboxEvent.state, fn.COUNT(InboxEvent.id)).group_by(InboxEvent.state).tuples():
        found[state] = count
    return found


def oldest_pending_received_at() -> dt.datetime | None:
    """When the oldest event still waiting to be applied was received (the inbox's lag), or None."""
    oldest = InboxEvent.select(fn.MIN(InboxEvent.received_at)).where(InboxEvent.state == "pending").scalar()
    if oldest is None or isinstance(oldest, dt.datetime):  # peewee converts through the field, or not
        return oldest
    return from_db_time(oldest)


def listing(state: str | None = None, limit: int = 50) -> list[InboxEvent]:
    """The newest rows (of one state), newest first."""
    query = InboxEvent.select()
    if state is not None:
        query = query.where(InboxEvent.state == state)
    return list(query.order_by(InboxEvent.id.desc()).limit(limit))


def states_of(ids: Iterable[int]) -> dict[int, str]:
    """The state of each of these rows that exists."""
    return dict(InboxEvent.select(InboxEvent.id, InboxEvent.state).where(InboxEvent.id.in_(list(ids))).tuples())


def retry(ids: Sequence[int] | None) -> int:
    """Dead rows (these, or all with None) pending again with their attempts reset."""
    query = InboxEvent.update(state="pending", attempts=0).where(InboxEvent.state == "dead")
    if ids is not None:
        query = query.where(InboxEvent.id.in_(list(ids)))
    return query.execute()


def _describe(exc: BaseException) -> str:
    return redact_secrets(f"{type(exc).__name__}: {exc}")[:2000]


def record_in_ledger(row: InboxEvent, *, sender_id: int | None, lead_id: int | None,
                     enrollment_id: int | None, applied_at: dt.datetime) -> bool:
    """The applied event in the ledger (`event`, what status, export, the audit and outgoing events
    read), once by event id; False when the ledger already had it (the same event from another
    source). Its `received_at` is when it entered the ledger, so that readers that follow the ledger
    by that time (runner.outgoing_derive) see an event applied late, e.g. a dead letter retried;
    the inbox row keeps when it arrived."""
    if db.execute_sql("SELECT 1 FROM event WHERE event_id = ? LIMIT 1", (row.event_id,)).fetchone() is not None:
        return False
    db.execute_sql("INSERT INTO event (event_id, kind, source, sender_id, lead_id, enrollment_id, occurred_at, "
                   "received_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                   (row.event_id, row.kind, row.source, sender_id, lead_id, enrollment_id,
                    Event.occurred_at.db_value(row.occurred_at), to_db_time(applied_at),
                    Event.data.db_value(dict(row.data or {}))))
    return True


def synced_until(sender_id: int) -> dt.datetime | None:
    """How far the sender's provider sync had finished at its last poll (its cursor); None before
    the first finished sync."""
    row = db.execute_sql("SELECT last_synced_at FROM sync_cursor WHERE sender_id = ?", (sender_id,)).fetchone()
    return from_db_time(row[0]) if row is not None and row[0] is not None else None


def move_cursor(sender_id: int, synced_until: dt.datetime, now: dt.datetime) -> None:
    """A sender's sync cursor, once the events its poll brought are in the inbox."""
    db.execute_sql("INSERT INTO sync_cursor (sender_id, last_synced_at, updated_at) VALUES (?, ?, ?) "
                   "ON CONFLICT (sender_id) DO UPDATE SET last_synced_at = excluded.last_synced_at, "
                   "updated_at = excluded.updated_at", (sender_id, to_db_time(synced_until), to_db_time(now)))


def lead_and_running_enrollment(lead_key: str) -> tuple[Lead | None, Enrollment | None]:
    """The lead with this key and its running (active or paused) enrollment, if any."""
    leads = read_models(Lead, f"SELECT {columns_of(Lead)} FROM lead WHERE key = ?", (lead_key,))
    if not leads:
        return None, None
    running = read_models(Enrollment, f"SELECT {columns_of(Enrollment)} FROM enrollment WHERE lead_id = ? "
                                      "AND state IN ('active', 'paused') LIMIT 1", (leads[0].id,))
    return leads[0], running[0] if running else None
