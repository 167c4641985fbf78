"""The SQL behind what people read: the funnel of a sequence, usage per sender and day, the leads
that need a human, and the audit-log exports (`runner.report`; the simulator's report reuses the
funnel). Rows come back as stored (times as ISO-8601 text): the caller formats them."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from runner.store.models import db


@contextlib.contextmanager
def snapshot() -> Iterator[None]:
    """One read transaction around the block: what it reads comes from one state of the database
    (an export's row count and its rows agree even while a run writes)."""
    with db.atomic():
        yield


def states_of(sequence: str) -> dict[str, int]:
    """Enrollments of a sequence per state."""
    return dict(db.execute_sql("SELECT state, COUNT(*) FROM enrollment WHERE sequence = ? GROUP BY state",
                               (sequence,)).fetchall())


def actions_by_step(sequence: str) -> list[tuple[str, str, int]]:
    """(step id, status, actions) of a sequence's ledger."""
    return [tuple(r) for r in db.execute_sql(
        "SELECT step_id, status, COUNT(*) FROM action WHERE sequence = ? GROUP BY step_id, status",
        (sequence,)).fetchall()]


def outcomes_of(sequence: str) -> dict[str, int]:
    """Finished enrollments of a sequence per outcome, the most frequent first."""
    return dict(db.execute_sql(
        "SELECT outcome, COUNT(*) FROM enrollment WHERE sequence = ? AND outcome IS NOT NULL GROUP BY outcome "
        "ORDER BY 2 DESC", (sequence,)).fetchall())


def senders_by_name() -> list[tuple[int, str, str, str, str, str | None]]:
    """(id, name, account type, timezone, status, paused reason) of every stored sender, by name."""
    return [tuple(r) for r in db.execute_sql(
        "SELECT id, name, account_type, timezone, status, paused_reason FROM sender ORDER BY name").fetchall()]


def used_on(sender_id: int, day: str) -> dict[str, int | None]:
    """What a sender used of each daily limit on its local `day` (YYYY-MM-DD)."""
    return dict(db.execute_sql("SELECT action, SUM(used) FROM usage WHERE sender_id = ? AND day = ? GROUP BY action",
                               (sender_id, day)).fetchall())


_ATTENTION = "(e.outcome = 'replied' OR e.state IN ('failed', 'paused'))"


def needing_attention(sequence: str | None, limit: int) -> tuple[int, list[tuple[Any, ...]]]:
    """Leads that replied, failed or are paused (in `sequence` when given): how many, and the `limit`
    latest as (profile url, sequence, step id, state, outcome, last error, paused reason, updated at)."""
    cond = _ATTENTION
    args: tuple[str, ...] = ()
    if sequence:
        cond, args = cond + " AND e.sequence = ?", (sequence,)
    total = db.execute_sql(f"SELECT COUNT(*) FROM enrollment e WHERE {cond}", args).fetchone()[0]
    rows = db.execute_sql(
        f"SELECT l.profile_url, e.sequence, e.step_id, e.state, e.outcome, e.last_error, e.paused_reason, e.updated_at "
        f"FROM enrollment e JOIN lead l ON l.id = e.lead_id WHERE {cond} ORDER BY e.updated_at DESC LIMIT ?",
        (*args, limit)).fetchall()
    return total, rows


# --- the audit-log exports, oldest first ----------------------------------------------------------


def action_log() -> Iterator[tuple[Any, ...]]:
    """Every action with its lead's url and key and its sender's name."""
    return iter(db.execute_sql(
        "SELECT a.id, l.profile_url, l.key, s.name, a.sequence, a.step_id, a.action, a.variant, a.template, a.status, "
        "a.planned_at, a.performed_at, a.lead_timezone, a.sender_timezone, a.relationship, a.conversation, a.charged, "
        "a.provider_id, a.conversation_id, a.error_kind, a.error_message, a.key, a.content "
        "FROM action a JOIN lead l ON l.id = a.lead_id LEFT JOIN sender s ON s.id = a.sender_id ORDER BY a.id"))


def event_log() -> Iterator[tuple[Any, ...]]:
    """Every event with its lead, sender and sequence when it has them (a block may precede the lead)."""
    return iter(db.execute_sql(
        "SELECT e.event_id, e.kind, e.source, e.occurred_at, e.received_at, l.profile_url, l.key, s.name, n.sequence, "
        "e.data FROM event e LEFT JOIN lead l ON l.id = e.lead_id LEFT JOIN sender s ON s.id = e.sender_id "
        "LEFT JOIN enrollment n ON n.id = e.enrollment_id ORDER BY e.occurred_at, e.id"))


def transition_log() -> Iterator[tuple[Any, ...]]:
    """Every step a lead entered."""
    return iter(db.execute_sql(
        "SELECT t.id, t.enrollment_id, l.profile_url, l.key, t.sequence, t.step_id, t.entered_at "
        "FROM transition t JOIN lead l ON l.id = t.lead_id ORDER BY t.id"))


def enrollment_log() -> Iterator[tuple[Any, ...]]:
    """Every enrollment with its lead and its sender."""
    return iter(db.execute_sql(
        "SELECT e.id, l.profile_url, l.key, e.sequence, s.name, s.timezone, e.state, e.step_id, e.outcome, "
        "e.created_at, e.finished_at, e.last_error, e.paused_reason "
        "FROM enrollment e JOIN lead l ON l.id = e.lead_id LEFT JOIN sender s ON s.id = e.sender_id ORDER BY e.id"))
