"""The SQL of sender rows: pausing and resuming a sender, its warm-up start, its LinkedIn id."""
from __future__ import annotations

from .models import Sender


def pause_sender(sender_id: int, reason: str) -> None:
    """The sender gets no new leads and its leads stop (`steps.pause_sender`, `seqrun pause`)."""
    Sender.update(status="paused", paused_reason=reason).where(Sender.id == sender_id).execute()
