"""The SQL of the ledger (the `action` table: the outbox and the audit log) beyond the rows the
interpreter writes on every step (`rows.insert_action`, `rows.close_action_row`)."""
from __future__ import annotations

from .models import Action


def action_by_key(key: str) -> Action | None:
    """The action recorded under an idempotency key."""
    return Action.get_or_none(Action.key == key)
