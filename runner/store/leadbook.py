"""The SQL of the lead book: leads imported into a sequence (with their enrollments and first step),
what the store knows of a profile before an import, the block list, and listing leads
(`runner.leads`; the simulator enrolls its generated leads here too).

The bulk statements are plain SQL run with `executemany` in the caller's transaction, a batch at a
time: peewee's query building costs more than SQLite's work at 100k rows.
"""
from __future__ import annotations

import collections
import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import peewee

from runner.store.fields import to_db_time
from runner.store.models import Block, Enrollment, Event, Lead, Sender, db
from runner.store.rows import execute_many, last_enrollment_id, record_first_steps

BATCH = 500  # keys per IN (...) query: below the 999 variables old SQLite builds allow
RUNNING = ("active", "paused")

#: on_batch(rows): called after each batch of rows written, so that a progress bar moves.
OnBatch = Callable[[int], None]


def chunks(items: list[Any], size: int = BATCH) -> Iterator[list[Any]]:
    """`items` a slice of `size` at a time (the IN (...) lists of a query, the batches of a write)."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _select_in(sql: str, values: list[Any]) -> Iterator[tuple[Any, ...]]:
    """Rows of `sql`, whose one `IN ({})` is filled with `values` a chunk at a time."""
    for chunk in chunks(values):
        yield from db.execute_sql(sql.format(", ".join(["?"] * len(chunk))), chunk).fetchall()


def _execute_many(sql: str, rows: list[tuple[Any, ...]], on_batch: OnBatch | None) -> None:
    if not rows:
        return
    statement = sql.format(", ".join(["?"] * len(rows[0])))
    for batch in chunks(rows, 10 * BATCH):
        execute_many(statement, batch)
        if on_batch is not None:
            on_batch(len(batch))


# --- what the store knows before an import --------------------------------------------------------


def leads_by_key(keys: list[str]) -> Iterator[tuple[int, str, str]]:
    """(lead id, key, fields as stored JSON) of the stored leads among `keys`."""
    return _select_in("SELECT id, key, fields FROM lead WHERE key IN ({})", keys)


def blocks_by_key(keys: list[str]) -> Iterator[tuple[str, str, str | None]]:
    """(key, blocked at as stored, reason) of the blocked profiles among `keys`."""
    return _select_in("SELECT key, created_at, reason FROM block WHERE key IN ({})", keys)


def enrollments_of_leads(lead_ids: list[int]) -> Iterator[tuple[Any, ...]]:
    """(lead id, sequence, state, outcome, created at, finished at, sender id) of every enrollment of
    these leads, oldest first per lead."""
    return _select_in("SELECT lead_id, sequence, state, outcome, created_at, finished_at, sender_id "
                      "FROM enrollment WHERE lead_id IN ({}) ORDER BY id", lead_ids)


def active_load(sender_ids: Iterable[int]) -> collections.Counter[int]:
    """Active enrollments per sender (0 for a sender without any)."""
    ids = list(sender_ids)
    query = (Enrollment.select(Enrollment.sender, peewee.fn.COUNT(Enrollment.id))
             .where(Enrollment.sender.in_(ids), Enrollment.state == "active")
             .group_by(Enrollment.sender).tuples())
    load: collections.Counter[int] = collections.Counter({s: 0 for s in ids})
    load.update(dict(query))
    return load


# --- writing leads and enrollments ----------------------------------------------------------------

_UPSERT_LEAD = ("INSERT INTO lead (key, profile_url, fields, timezone, created_at, updated_at) VALUES ({}) "
                "ON CONFLICT (key) DO UPDATE SET profile_url = excluded.profile_url, fields = excluded.fields, "
                "timezone = excluded.timezone, updated_at = excluded.updated_at")
_INSERT_NEW_LEAD = ("INSERT INTO lead (key, profile_url, fields, timezone, tags, provider_ids, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, '[]', '{}', ?, ?) ON CONFLICT (key) DO NOTHING")
_INSERT_ENROLLMENT = ("INSERT INTO enrollment (lead_id, sequence, sequence_hash, sender_id, step_id, state, due_at, "
                      "step_entered_at, facts, attempt, created_at, updated_at) "
                      "VALUES (?, ?, ?, ?, ?, 'active', ?, ?, '{}', 0, ?, ?)")


def upsert_leads(rows: list[tuple[str, str, str, str | None, str, str]], on_batch: OnBatch | None = None) -> None:
    """Insert or update leads given as (key, profile url, fields JSON, timezone, created at, updated at);
    a stored lead keeps its id and creation time."""
    _execute_many(_UPSERT_LEAD, rows, on_batch)


def insert_new_leads(rows: list[tuple[str, str, str, str | None, str, str]]) -> None:
    """Insert leads given as `upsert_leads` takes them; a key already stored is left as it is."""
    execute_many(_INSERT_NEW_LEAD, rows)


def lead_ids_by_key(keys: list[str]) -> dict[str, int]:
    return dict(_select_in("SELECT key, id FROM lead WHERE key IN ({})", keys))


def all_lead_ids() -> list[int]:
    """Every stored lead's id, oldest first."""
    return [r[0] for r in db.execute_sql("SELECT id FROM lead ORDER BY id").fetchall()]


def enroll(leads_and_senders: Iterable[tuple[int, int]], *, sequence: str, sequence_hash: str, step_id: str,
           now: dt.datetime, on_batch: OnBatch | None = None) -> int:
    """Enroll each (lead id, sender id) on the sequence's first step, active and due `now`, and record
    that step's entry as a transition; returns how many were enrolled."""
    stamp = to_db_time(now)
    rows = [(lead_id, sequence, sequence_hash, sender_id, step_id, stamp, stamp, stamp, stamp)
            for lead_id, sender_id in leads_and_senders]
    before = last_enrollment_id()
    for batch in chunks(rows, 10 * BATCH):
        execute_many(_INSERT_ENROLLMENT, batch)
        if on_batch is not None:
            on_batch(len(batch))
    record_first_steps(before)
    return len(rows)


# --- the block list -------------------------------------------------------------------------------


def blocked_keys(keys: list[str]) -> set[str]:
    """The keys among `keys` that are on the block list."""
    found: set[str] = set()
    for chunk in chunks(keys):
        found.update(k for (k,) in Block.select(Block.key).where(Block.key.in_(chunk)).tuples())
    return found


def add_blocks(profiles: list[tuple[str, str]], reason: str | None, now: dt.datetime) -> None:
    """Block profiles given as (key, profile url) that are not blocked yet, and log each as a
    `blocked` event (with the profile: it may be blocked before it is imported as a lead)."""
    for batch in chunks(profiles):
        Block.insert_many([{"key": k, "profile_url": u, "reason": reason, "created_at": now}
                           for k, u in batch]).execute()
        record_block_events("blocked", batch, reason, now)


def set_block_reason(keys: list[str], reason: str) -> None:
    for chunk in chunks(sorted(keys)):
        Block.update(reason=reason).where(Block.key.in_(chunk)).execute()


def remove_block(key: str) -> bool:
    """Take a profile off the block list; False when it was not on it."""
    return Block.delete().where(Block.key == key).execute() > 0


def running_count(keys: list[str]) -> int:
    """Running (active or paused) enrollments of the leads with these keys."""
    count = 0
    for chunk in chunks(keys):
        count += Enrollment.select().join(Lead).where(Lead.key.in_(chunk), Enrollment.state.in_(RUNNING)).count()
    return count


def record_block_events(kind: str, profiles: list[tuple[str, str]], reason: str | None, now: dt.datetime) -> None:
    """Blocking and unblocking go into the event log (the audit log's `export events`), with the
    profile in `data` because a profile may be blocked before it is imported as a lead."""
    lead_ids = dict(Lead.select(Lead.key, Lead.id).where(Lead.key.in_([k for k, _ in profiles])).tuples())
    Event.insert_many([
        {"event_id": f"{kind}:{key}:{uuid.uuid4().hex}", "kind": kind, "source": "cli", "lead": lead_ids.get(key),
         "occurred_at": now, "received_at": now,
         "data": {"profile_url": url, **({"reason": reason} if reason else {})}}
        for key, url in profiles]).execute()


# --- listing --------------------------------------------------------------------------------------


def enrolled_sequences(only: str | None = None) -> list[str]:
    """Sequences that have enrollments in the store (just `only`, when given and it has), by name."""
    query = Enrollment.select(Enrollment.sequence).distinct().order_by(Enrollment.sequence)
    if only is not None:
        query = query.where(Enrollment.sequence == only)
    return [name for (name,) in query.tuples()]


def sequences_with_running_leads() -> list[str]:
    """Sequences with leads in them that are not finished (active or paused), by name."""
    query = Enrollment.select(Enrollment.sequence).where(Enrollment.state.in_(RUNNING)).distinct()
    return sorted(name for (name,) in query.tuples())


def leads_with_latest_enrollment(sequence: str | None, state: str | None) -> Iterator[tuple[Any, ...]]:
    """Each lead with its latest enrollment (in `sequence` when given; only those of `state` when
    given), by lead id: (profile url, fields, sequence, state, step id, sender name, due at, outcome,
    paused reason, blocked)."""
    latest = Enrollment.select(peewee.fn.MAX(Enrollment.id)).where(Enrollment.lead == Lead.id)
    if sequence is not None:
        latest = latest.where(Enrollment.sequence == sequence)
    blocked = Block.select(Block.id).where(Block.key == Lead.key)
    query = (Lead.select(Lead.profile_url, Lead.fields, Enrollment.sequence, Enrollment.state, Enrollment.step_id,
                         Sender.name, Enrollment.due_at, Enrollment.outcome, Enrollment.paused_reason,
                         peewee.fn.EXISTS(blocked))
             .join(Enrollment, peewee.JOIN.LEFT_OUTER, on=(Enrollment.id == latest))
             .join(Sender, peewee.JOIN.LEFT_OUTER, on=(Enrollment.sender == Sender.id))
             .order_by(Lead.id))
    if sequence is not None or state is not None:
        query = query.where(Enrollment.id.is_null(False))
    if state is not None:
        query = query.where(Enrollment.state == state)
    for url, fields, seq_name, st, step, sender, due, outcome, reason, is_blocked in query.tuples().iterator():
        due_at = Enrollment.due_at.python_value(due) if isinstance(due, str) else due
        yield url, fields, seq_name, st, step, sender, due_at, outcome, reason, bool(is_blocked)
