"""The SQL of sender rows: pausing and resuming a sender, its warm-up start, its LinkedIn id."""
from __future__ import annotations

import datetime as dt

from .models import Sender


def pause_sender(sender_id: int, reason: str) -> None:
    """The sender gets no new leads and its leads stop (`steps.pause_sender`, `seqrun pause`)."""
    Sender.update(status="paused", paused_reason=reason).where(Sender.id == sender_id).execute()


def start_warmup(sender_id: int, at: dt.datetime) -> None:
    """The sender's first performed action starts its warm-up (kept when one is recorded already)."""
    Sender.update(first_action_at=at).where(Sender.id == sender_id, Sender.first_action_at.is_null()).execute()
