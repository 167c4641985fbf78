"""The SQL of sender rows: looking senders up, pausing and resuming one, its warm-up start, its LinkedIn id."""
from __future__ import annotations

import datetime as dt

from runner.store.models import Sender, db


def pause_sender(sender_id: int, reason: str) -> None:
    """The sender gets no new leads and its leads stop (`steps.pause_sender`, `seqrun pause`)."""
    Sender.update(status="paused", paused_reason=reason).where(Sender.id == sender_id).execute()


def resume_sender(sender_id: int) -> None:
    Sender.update(status="active", paused_reason=None).where(Sender.id == sender_id).execute()


def status_of(sender_id: int) -> str | None:
    """The sender's status ("active", "paused"); None for a sender not in the store."""
    row = db.execute_sql("SELECT status FROM sender WHERE id = ?", (sender_id,)).fetchone()  # (every poll)
    return str(row[0]) if row is not None else None


def sender_id_by_name(name: str) -> int | None:
    return Sender.select(Sender.id).where(Sender.name == name).scalar()


def sender_names() -> list[str]:
    """Every sender in the store, by name."""
    return [n for (n,) in Sender.select(Sender.name).order_by(Sender.name).tuples()]


def all_senders() -> list[Sender]:
    """Every sender in the store, by name."""
    return list(Sender.select().order_by(Sender.name))


def store_profile_id(name: str, profile_id: str) -> int:
    """Keep the sender's own LinkedIn id on its row; 1 when that changed it, else 0."""
    return Sender.update(profile_id=profile_id).where(
        Sender.name == name, (Sender.profile_id.is_null()) | (Sender.profile_id != profile_id)).execute()


def start_warmup(sender_id: int, at: dt.datetime) -> None:
    """The sender's first performed action starts its warm-up (kept when one is recorded already)."""
    Sender.update(first_action_at=at).where(Sender.id == sender_id, Sender.first_action_at.is_null()).execute()
