"""Events appended to the inbox by a receiver on another thread (runner.webhooks) are applied by
the engine once per event id, with their source and the body as received."""
from __future__ import annotations

import datetime as dt
from runner.providers.base import ProviderEvent
from runner.store import Event
from runner.store import inbox as store_inbox
from runner.store.inbox import Received
from runner.store.models import InboxEvent

from .conftest import HarnessFactory, lead_row, sequence_yaml
from .test_concurrency import elsewhere


WAITING = sequence_yaml("waiting", """\
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 3 weeks, on_timeout: gave_up}
  - {id: tag, action: tag, tags: [accepted]}
  - end: done
  - {id: gave_up, end: not_accepted}
""")


def test_the_engine_applies_inbox_events_once(make_harness: HarnessFactory) -> None:
    h = make_harness(WAITING, sandbox=dict(accept_rate=0.0))
    h.enroll(lead_row("ann"))
    h.run(days=0.5)
    assert h.enrollment("ann").step_id == "accepted"
    event = ProviderEvent("hook-1", "accepted", h.now, "acc-alice", "ann")
    new = elsewhere(lambda: store_inbox.append([Received(event, '{"id": "hook-1"}'), Received(event)],
                                               source="webhook", provider="sandbox", received_at=h.now))
    assert len(new) == 1
    assert elsewhere(lambda: store_inbox.append([Received(event)], source="webhook", provider="sandbox",
                                                received_at=h.now)) == []
    report = h.tick(h.now + dt.timedelta(minutes=1))
    assert report.events == 1
    (stored,) = Event.select().where(Event.event_id == "hook-1")
    assert (stored.source, stored.kind) == ("webhook", "accepted")
    (row,) = InboxEvent.select()
    assert (row.state, row.payload, row.attempts, row.applied_at) == ("applied", '{"id": "hook-1"}', 0,
                                                                      h.now)
    h.run(days=0.1)
    enrollment = h.enrollment("ann")
    assert (enrollment.state, enrollment.outcome) == ("done", "done")
