"""What `seqrun serve` reads for its health checks and metrics: small aggregate queries.

Each function is one read, safe to call from the HTTP server's worker threads (peewee gives every
thread its own connection).
"""
from __future__ import annotations

import datetime as dt

from peewee import fn

from runner.store.migrations import MIGRATIONS, applied_versions
from runner.store.models import Action, Enrollment, InboxEvent, Sender, Usage, db


def ping() -> None:
    """Raise if the database cannot be read."""
    db.execute_sql("SELECT 1").fetchone()


def pending_migrations() -> list[int]:
    """Migration versions this seqrun knows and the database has not applied (empty: current)."""
    done = applied_versions(db)
    return [version for version, _, _ in MIGRATIONS if version not in done]


def action_counts() -> list[tuple[str, str, int]]:
    """(action kind, status, how many) over the whole audit log."""
    query = (Action.select(Action.action, Action.status, fn.COUNT(1))
             .group_by(Action.action, Action.status).tuples())
    return [(kind, status, int(n)) for kind, status, n in query]


def due_count(now: dt.datetime) -> int:
    """Active leads due at `now`: the engine's queue (the partial index on `due_at` answers it)."""
    return (Enrollment.select().where(Enrollment.state == "active", Enrollment.due_at <= now)
            .count())


def enrollment_counts() -> dict[str, int]:
    """Leads by enrollment state (active, paused, done, failed)."""
    query = Enrollment.select(Enrollment.state, fn.COUNT(1)).group_by(Enrollment.state).tuples()
    return {state: int(n) for state, n in query}


def usage_on(sender_id: int, day: dt.date) -> dict[str, int]:
    """What a sender used of its daily limits on its own `day`, by action."""
    query = (Usage.select(Usage.action, fn.SUM(Usage.used))
             .where(Usage.sender == sender_id, Usage.day == day.isoformat()).group_by(Usage.action).tuples())
    return {action: int(n or 0) for action, n in query}


def sender_statuses() -> dict[str, tuple[str, str | None]]:
    """Every stored sender's status and paused reason, by name."""
    return {name: (status, reason) for name, status, reason in
            Sender.select(Sender.name, Sender.status, Sender.paused_reason).tuples()}


def inbox_lag(now: dt.datetime) -> float:
    """Seconds the oldest pending inbox event has waited to be applied (0 when none waits).
    Rows a dead letter holds are not waiting (`seqrun events` shows them)."""
    oldest = (InboxEvent.select(InboxEvent.received_at).where(InboxEvent.state == "pending")
              .order_by(InboxEvent.received_at).first())
    return 0.0 if oldest is None else max(0.0, (now - oldest.received_at).total_seconds())
