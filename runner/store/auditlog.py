"""The SQL the audits read (`runner.audit`, `runner.pacing_audit`): the actions that happened, the
first reply of each lead, and when each sender first acted (the start of its warm-up)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from runner.store.fields import from_db_time
from runner.store.models import Sender, db


def _marks(values: tuple[str, ...]) -> str:
    return ", ".join("?" for _ in values)


def done_actions_with_leads(actions: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Every action of these kinds that happened, with its lead: (idempotency key, sequence, step id,
    action, started at (else performed at) as stored, sender id, lead id, lead key, lead timezone,
    lead fields as stored JSON, charged)."""
    return db.execute_sql(
        "SELECT a.key, a.sequence, a.step_id, a.action, COALESCE(a.started_at, a.performed_at), a.sender_id, a.lead_id, "
        f"l.key, l.timezone, l.fields, a.charged FROM action a JOIN lead l ON l.id = a.lead_id "
        f"WHERE a.status = 'done' AND a.action IN ({_marks(actions)})", actions).fetchall()


def done_action_times(actions: tuple[str, ...]) -> list[tuple[str, str, dt.datetime, int]]:
    """(sequence, action, started at (else performed at), sender id) of every action of these kinds
    that happened and has a sender and a time."""
    return [(seq, action, from_db_time(at), sender_id) for seq, action, at, sender_id in db.execute_sql(
        f"SELECT sequence, action, COALESCE(started_at, performed_at), sender_id FROM action "
        f"WHERE status = 'done' AND action IN ({_marks(actions)}) AND sender_id IS NOT NULL", actions).fetchall() if at]


def first_replies() -> dict[int, dt.datetime]:
    """The first reply per lead that came after its enrollment started."""
    return {lead_id: from_db_time(occurred) for lead_id, occurred in db.execute_sql(
        "SELECT e.lead_id, MIN(e.occurred_at) FROM event e JOIN enrollment n ON n.lead_id = e.lead_id "
        "WHERE e.kind = 'replied' AND e.occurred_at >= n.created_at GROUP BY e.lead_id").fetchall()}


def first_action_times() -> dict[int, dt.datetime | None]:
    """When each sender first acted (its warm-up counts from there), by sender id."""
    return {row.id: row.first_action_at for row in Sender.select(Sender.id, Sender.first_action_at)}
