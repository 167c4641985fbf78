"""What an event means for a lead, and applying a lead's pending inbox events under its claim.

`event_facts` is the one place that turns an event (accepted, replied, invite_withdrawn) into facts
on an enrollment. `absorb` is how the run that holds a lead's claim takes that lead's pending events
from the inbox (runner.store.inbox) into the facts it is about to save, in its own transaction: so
an event that arrived while the lead's provider call was in flight is merged into the lead's save,
never overwritten by it. Leads nobody holds get their events from the inbox processor
(runner.engine.inbox) through a guarded write instead.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from runner.engine.runtime import Runtime
from runner.language.model import WaitForStep
from runner.providers.base import ProviderEvent
from runner.store import Enrollment
from runner.store import inbox as store_inbox
from runner.store.models import InboxEvent
from runner.store.transactions import writing

log = logging.getLogger(__name__)


def event_facts(rt: Runtime, enr: Enrollment, facts: dict[str, Any], event: ProviderEvent) -> bool:
    """Record what `event` says in `facts` (the enrollment's, changed in place); whether the lead
    should wake for it (it waits for this event, or the lead replied: its exits must run now)."""
    if event.kind == "accepted":
        facts["connected"] = facts["accepted"] = True
        facts["invite_pending"] = False
        facts.setdefault("accepted_at", _iso(event.occurred_at))
        if event.conversation_id:
            facts["conversation_id"] = event.conversation_id
        return _waiting_for(rt, enr, "accepted")
    if event.kind == "replied":
        if event.occurred_at < enr.created_at:
            return False  # a message from before the sequence started is no reply to it
        facts["replied"] = True
        facts.setdefault("replied_at", _iso(event.occurred_at))
        facts["last_message_at"] = _iso(event.occurred_at)
        if event.conversation_id:
            facts["conversation_id"] = event.conversation_id
        return True
    if event.kind == "invite_withdrawn":
        facts["invite_pending"] = False
    return False


def woken_due(enr: Enrollment, wake: bool, now: dt.datetime) -> dt.datetime | None:
    """The lead's due time once an event woke it (or not)."""
    if wake and enr.state == "active" and (enr.due_at is None or enr.due_at > now):
        return now
    due: dt.datetime | None = enr.due_at
    return due


def belongs_to(rt: Runtime, row: InboxEvent, sender_id: int | None) -> bool:
    """Whether an inbox row is about the lead's enrollment with this sender (an event of another
    sender's account only goes in the ledger)."""
    if row.sender_id is not None:
        return bool(row.sender_id == sender_id)
    if row.account_id is None:
        return True
    sender = rt.senders.get(sender_id) if sender_id is not None else None
    return sender is not None and sender.account.account_id == row.account_id


def absorb(rt: Runtime, enr: Enrollment, facts: dict[str, Any], now: dt.datetime) -> int:
    """Apply the lead's pending inbox events to `facts` and `enr.due_at` (the caller holds the lead's
    claim and saves both in its transaction); the number applied. An event that fails is counted
    against its attempts (and dies after `rt.max_attempts`) without failing the lead."""
    applied = 0
    for row in store_inbox.pending_for_lead(enr.lead.key):
        if not belongs_to(rt, row, enr.sender_id):
            continue  # the inbox processor puts it in the ledger
        try:
            with writing():  # a savepoint: a failing event leaves the lead's work alone
                if not store_inbox.mark_applied(row.id, now):
                    continue
                if store_inbox.record_in_ledger(row, sender_id=enr.sender_id, lead_id=enr.lead.id,
                                                enrollment_id=enr.id, applied_at=now):
                    wake = event_facts(rt, enr, facts, store_inbox.to_event(row))
                    enr.due_at = woken_due(enr, wake, now)
                    applied += 1
        except Exception as exc:  # noqa: BLE001 - one bad event must not fail the lead
            state = store_inbox.record_failure(row.id, exc, max_attempts=rt.max_attempts)
            log.warning("lead %s: event %s (%s) could not be applied (%s): %s", enr.lead.key, row.event_id,
                        row.kind, state, exc)
    return applied


def _waiting_for(rt: Runtime, enr: Enrollment, event: str) -> bool:
    seq = rt.sequence_for(enr.sequence, enr.sequence_hash)
    if seq is None or enr.step_id not in seq.index:
        return False
    step = seq.step(enr.step_id)
    return isinstance(step, WaitForStep) and step.event == event


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat()
