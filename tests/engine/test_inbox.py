"""The event inbox: dead letters, and the version guard on every enrollment write."""
from __future__ import annotations

import datetime as dt

from runner.providers.base import ProviderEvent
from runner.store import Enrollment, Event
from runner.store import inbox as store_inbox
from runner.store.enrollment_writes import save_enrollment, write_facts_unclaimed
from runner.store.inbox import Received
from runner.store.models import InboxEvent

from .conftest import HarnessFactory, lead_row, sequence_yaml
from .test_webhook_events import WAITING


def test_an_event_for_an_unknown_lead_goes_dead_after_its_attempts_and_holds_nothing_up(
        make_harness: HarnessFactory) -> None:
    h = make_harness(WAITING, sandbox=dict(accept_rate=0.0), max_attempts=3)
    h.enroll(lead_row("ann"))
    h.run(days=0.5)
    stranger = ProviderEvent("hook-x", "replied", h.now, "acc-alice", "nobody")
    accepted = ProviderEvent("hook-1", "accepted", h.now, "acc-alice", "ann")
    store_inbox.append([Received(stranger), Received(accepted)], source="webhook", provider="sandbox",
                       received_at=h.now)
    for minutes in (1, 2, 3):
        h.tick(h.now + dt.timedelta(minutes=minutes))
    dead, applied = InboxEvent.select().order_by(InboxEvent.id)
    assert (dead.state, dead.attempts, dead.error) == ("dead", 3,
                                                      'UnknownLead: no lead with key "nobody" in the store')
    assert (applied.state, applied.attempts) == ("applied", 0)
    assert [e.event_id for e in Event.select()] == ["hook-1"]  # the ledger holds applied events only
    assert h.enrollment("ann").facts["accepted"] is True

    assert store_inbox.retry([dead.id]) == 1
    h.tick(h.now + dt.timedelta(minutes=4))
    assert InboxEvent.get_by_id(dead.id).attempts == 1  # tried afresh


def test_no_write_overwrites_a_newer_version(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", "  - {id: w, wait: 3 days}\n  - end: done\n"))
    h.enroll(lead_row("ann"))
    first, second = h.enrollment("ann"), h.enrollment("ann")
    first.facts = {"replied": True}
    assert save_enrollment(first, "active") and first.version == second.version + 1
    second.facts = {}
    assert not save_enrollment(second, "active")  # read before the first write: refused
    assert not write_facts_unclaimed(second, {}, None, h.now)
    assert Enrollment.get_by_id(first.id).facts == {"replied": True}
    leased = h.enrollment("ann")
    Enrollment.update(lease_owner="elsewhere:1:x").where(Enrollment.id == leased.id).execute()
    assert not write_facts_unclaimed(leased, {}, None, h.now)  # a runner holds it: its holder applies events
