"""The event inbox: events are appended by whoever receives them, and applied here.

Polls (`Engine._sync_sender`), webhook receivers on other threads or processes (runner.webhooks)
and provider callbacks append what they received to the inbox (runner.store.inbox) and commit;
`deliver` does that for one event. `process` then applies every pending event, once:

- to a lead a runner holds (claimed, `lease_owner` set): not here. The holder takes the lead's
  pending events into the facts it saves (runner.engine.absorb), at every step and before its final save,
  and a run about to make an external call while events wait for its lead stops short and plans
  again (`flow.Woken`): a reply stops the lead before any further action;
- to any other lead: with a guarded write (the enrollment's `version`, runner.store.enrollment_writes)
  that never overwrites a newer change; a lost race leaves the event pending for the next pass.

Every applied event goes in the ledger (`event`) too. An event that cannot be applied (an
exception, a lead that is not in the store) is tried again at the next passes and after
`Runtime.max_attempts` is `dead`, with its error: it never holds up the other events or a sender's
sync cursor (`seqrun events list`, `seqrun events retry`).
"""
from __future__ import annotations

import datetime as dt
import logging

from runner import logfields
from runner.engine import steps
from runner.engine.absorb import belongs_to, event_facts, woken_due
from runner.engine.runtime import Runtime, SenderRuntime
from runner.providers.base import ProviderEvent
from runner.store import health
from runner.store import inbox as store_inbox
from runner.store.enrollment_writes import write_facts_unclaimed
from runner.store.inbox import Received
from runner.store.models import InboxEvent
from runner.store.transactions import writing

log = logging.getLogger(__name__)
PAGE = 500  # pending rows read at a time


class UnknownLead(Exception):
    """An event about a lead that is not in the store (yet: an import may be under way)."""


class _Changed(Exception):
    """The enrollment changed between reading and writing it: try again at the next pass."""


def deliver(rt: Runtime, event: ProviderEvent, now: dt.datetime, *, source: str, provider: str | None = None,
            sender: SenderRuntime | None = None, payload: str | None = None) -> bool:
    """Append one event and apply what is pending; whether the event was new."""
    name = provider or (sender.provider.name if sender is not None else _provider_of(rt, event))
    new = store_inbox.append([Received(event, payload)], source=source, provider=name, received_at=now,
                             sender_id=sender.id if sender is not None else None)
    process(rt, now)
    return bool(new)


def process(rt: Runtime, now: dt.datetime) -> int:
    """Apply every pending event that can be applied now; the number put in the ledger."""
    applied, after = 0, 0
    while True:
        rows = store_inbox.pending(PAGE, after=after)
        for row in rows:
            after = row.id
            try:
                with writing():
                    applied += _apply(rt, row, now)
            except _Changed:
                continue  # not an error: the next pass reads the row again
            except Exception as exc:  # noqa: BLE001 - one bad event must not stop the others
                if health.damaged(exc):
                    raise
                state = store_inbox.record_failure(row.id, exc, max_attempts=rt.max_attempts)
                log.warning("event %s (%s) could not be applied (%s): %s", row.event_id, row.kind, state, exc,
                            extra=logfields.ids(lead=row.lead_key))
        if len(rows) < PAGE:
            return applied


def _apply(rt: Runtime, row: InboxEvent, now: dt.datetime) -> int:
    sender = rt.senders.get(row.sender_id) if row.sender_id is not None else _sender_of(rt, row.account_id)
    lead, enr = store_inbox.lead_and_running_enrollment(row.lead_key) if row.lead_key else (None, None)
    if row.lead_key and lead is None:
        raise UnknownLead(f'no lead with key "{row.lead_key}" in the store')
    if lead is not None:
        if enr is not None and not belongs_to(rt, row, enr.sender_id):
            enr = None
        if enr is not None and enr.state == "active" and enr.lease_owner is not None:
            return 0  # a runner holds the lead: it applies the event itself (runner.engine.absorb)
    if not store_inbox.mark_applied(row.id, now):
        return 0  # the holder of the lead applied it meanwhile
    sender_id = sender.id if sender is not None else (enr.sender_id if enr is not None else None)
    if not store_inbox.record_in_ledger(row, sender_id=sender_id, lead_id=lead.id if lead else None,
                                        enrollment_id=enr.id if enr else None, applied_at=now):
        return 0  # the same event came from another source first
    event = store_inbox.to_event(row)
    if event.kind == "auth_expired" and sender is not None:
        # A renewal of the session received for a later moment supersedes the expiry.
        if not store_inbox.later_restore(row.account_id, row.sender_id, event.occurred_at):
            steps.pause_sender(sender.id, "auth expired", now)
    elif enr is not None:
        enr.lead = lead
        facts = dict(enr.facts or {})
        wake = event_facts(rt, enr, facts, event)
        if not write_facts_unclaimed(enr, facts, woken_due(enr, wake, now), now):
            raise _Changed(f"enrollment {enr.id} changed")
    return 1


def _sender_of(rt: Runtime, account_id: str | None) -> SenderRuntime | None:
    if account_id is None:
        return None
    return next((s for s in rt.senders.values() if s.account.account_id == account_id), None)


def _provider_of(rt: Runtime, event: ProviderEvent) -> str:
    sender = _sender_of(rt, event.account_id)
    return sender.provider.name if sender is not None else "unknown"
