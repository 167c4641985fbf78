"""Webhook events a receiver queued (runner.webhooks) are applied by the engine in its own thread,
once per event id, with source "webhook"."""
from __future__ import annotations

import datetime as dt

from runner.providers.base import ProviderEvent
from runner.store import Event

from .conftest import HarnessFactory, lead_row, sequence_yaml


WAITING = sequence_yaml("waiting", """\
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 3 weeks, on_timeout: gave_up}
  - {id: tag, action: tag, tags: [accepted]}
  - end: done
  - {id: gave_up, end: not_accepted}
""")


def test_the_engine_applies_queued_webhook_events_once(make_harness: HarnessFactory) -> None:
    queue: list[ProviderEvent] = []

    def drain() -> list[ProviderEvent]:
        out = list(queue)
        queue.clear()
        return out

    h = make_harness(WAITING, sandbox=dict(accept_rate=0.0), webhook_events=drain)
    h.enroll(lead_row("ann"))
    h.run(days=0.5)
    assert h.enrollment("ann").step_id == "accepted"
    event = ProviderEvent("hook-1", "accepted", h.now, "acc-alice", "ann")
    queue.extend([event, event])
    report = h.tick(h.now + dt.timedelta(minutes=1))
    assert report.events == 1
    (stored,) = Event.select().where(Event.event_id == "hook-1")
    assert (stored.source, stored.kind) == ("webhook", "accepted")
    h.run(days=0.1)
    enrollment = h.enrollment("ann")
    assert (enrollment.state, enrollment.outcome) == ("done", "done")
