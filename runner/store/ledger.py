"""The SQL of the ledger (the `action` table: the outbox and the audit log) beyond the rows the
interpreter writes on every step (`rows.insert_action`, `rows.close_action_row`)."""
from __future__ import annotations

from runner.store.models import Action


def action_by_key(key: str) -> Action | None:
    """The action recorded under an idempotency key."""
    return Action.get_or_none(Action.key == key)


def last_unknown_action(enrollment_id: int) -> tuple[int, str] | None:
    """(id, key) of the enrollment's latest failed action that kept its charge: one whose outcome is
    unknown (`actions.settle_unknown`); None when it has none."""
    row = (Action.select(Action.id, Action.key)
           .where(Action.enrollment == enrollment_id, Action.status == "failed", Action.charged == True)  # noqa: E712
           .order_by(Action.id.desc()).tuples().first())
    return (row[0], row[1]) if row else None


def reopen_action(action_id: int) -> None:
    """Mark an action in flight again: its step asks the provider about it before anything is sent."""
    Action.update(status="in_flight").where(Action.id == action_id).execute()
