"""Seed 000 as the engine runs it on the Salesflow driver: its fake over HTTP, webhooks through a real
receiver into the event inbox, a virtual clock, a real store."""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runner.providers.fakeserver import FakeClock, FakeHTTPServer
from runner.providers.http import make_client
from runner.providers.salesflow.driver import SalesflowProvider
from runner.providers.salesflow.fake import SalesflowFake
from runner.store import Event, SyncCursor, db
from runner.webhooks import WebhookInbox, WebhookReceiver

from .conftest import ACCEPTING, EngineHarness, HarnessFactory, lead_row, sequence_yaml

UTC = dt.UTC
KEY, HOOK = "sfk_test_0123456789abcdef", "whsec-engine-test-0001"
STEP = dt.timedelta(minutes=15)

WITH_NOTE = sequence_yaml("noted", """\
  - {id: connect, action: connect, note: note.j2}
  - {id: accepted, wait_for: accepted, timeout: 3 weeks, on_timeout: gave_up}
  - {id: thanks, action: message, template: {with_note: thanks.j2, without_note: intro.j2}}
  - wait: 2 days
  - {id: follow_up, action: message, template: follow_up.j2}
  - end: no_reply
  - {id: gave_up, end: not_accepted}
""")
NO_NOTE = WITH_NOTE.replace("name: noted", "name: plain").replace(", note: note.j2", "")



class _ClosingReceiver:
    """The receiver on the fake server's request threads, each closing its own database connection
    when done (Postgres warns about a connection left open by a finished thread)."""

    def __init__(self, inner: WebhookReceiver) -> None:
        self.inner = inner

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> Any:
        try:
            return self.inner.handle(method, target, headers, body)
        finally:
            db.close()

class Salesflow:
    """The fake, a receiver and the driver, on the engine harness's clock."""

    def __init__(self, h: EngineHarness, *, sandbox: dict[str, Any], sync_wait: float = 10.0,
                 poll_every: dt.timedelta = dt.timedelta(minutes=15)) -> None:
        self.h = h
        self.fake = SalesflowFake(clock=FakeClock(h.clock), seed=1, sandbox=sandbox, auto_pump=False,
                                  enforce_limits=False)
        self.server = FakeHTTPServer(self.fake).start()
        self.client = make_client(self.server.url)
        self.driver = SalesflowProvider(self.client, clock=h.clock, sync_wait=sync_wait)
        self.inbox = WebhookInbox({"salesflow": [HOOK]}, clock=h.clock)
        self.inbox.mount("salesflow", self.driver)
        self.receiver = FakeHTTPServer(_ClosingReceiver(WebhookReceiver(self.inbox))).start()
        self.fake.webhook_url, self.fake.webhook_secret = self.receiver.url + "/webhooks/salesflow", HOOK
        h.knobs.update(poll_every=poll_every)
        engine = h.restart(provider=self.driver)
        for sender in engine.rt.senders.values():
            sender.account = dataclasses.replace(sender.account, credentials={"api_key": KEY})

    def close(self) -> None:
        self.fake.close()
        self.client.close()
        self.server.stop()
        self.receiver.stop()

    def run(self, until: dt.datetime, *, stop: Any = None) -> None:
        """Like `EngineHarness.run`, with the fake's late webhooks sent before every tick."""
        while self.h.now < until and not (stop is not None and stop()):
            self.fake.pump()
            self.h.engine.tick(self.h.now)
            nxt = self.h.engine.next_due() or until
            # at least every 15 minutes, as a daemon would: the fake's late webhooks come in between
            self.h.clock.now = min(max(nxt, self.h.now + dt.timedelta(seconds=1)), self.h.now + STEP)

    def ledger(self, action: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.fake.ledger if action is None or e["action"] == action]

    def control(self, method: str, name: str, **body: Any) -> Any:
        return httpx.request(method, f"{self.server.url}/_fake/{name}", json=body or None).json()


@pytest.fixture
def salesflow(make_harness: HarnessFactory) -> Iterator[Any]:
    made: list[Salesflow] = []

    def make(sequence: str, **options: Any) -> Salesflow:
        sandbox = options.pop("sandbox", {})
        h = make_harness(sequence, sandbox=sandbox)
        sf = Salesflow(h, sandbox={**ACCEPTING, **sandbox}, **options)
        made.append(sf)
        return sf

    yield make
    for sf in made:
        sf.close()


def test_with_a_note_the_thanks_goes_into_the_thread_the_note_opened_then_a_second_sync(salesflow: Any) -> None:
    sf = salesflow(WITH_NOTE)
    sf.h.enroll(lead_row("ann"))
    sf.run(sf.h.now + dt.timedelta(days=1))
    (connect,) = sf.ledger("connect")
    assert connect["note"] is True
    (thanks,) = sf.ledger("message")
    assert (thanks["via"], thanks["opened_by"], thanks["first"]) == ("thread", "note", True)
    (action,) = sf.h.actions("ann", action="message")
    assert action.conversation_id == thanks["conversation_id"]
    sent = dt.datetime.fromisoformat(thanks["at"].replace("Z", "+00:00"))
    syncs = [r for r in sf.fake.deliveries.syncs.values()]
    after = [dt.datetime.fromisoformat(r.started_at.replace("Z", "+00:00")) - sent for r in syncs]
    # seed 000: "sync again" 5-10 minutes after the message, ahead of the 15-minute poll
    assert any(dt.timedelta(minutes=5) <= d <= dt.timedelta(minutes=10) for d in after)


def test_without_a_note_the_first_message_creates_the_conversation(salesflow: Any) -> None:
    sf = salesflow(NO_NOTE)
    sf.h.enroll(lead_row("bob"))
    sf.run(sf.h.now + dt.timedelta(days=1))
    (intro,) = sf.ledger("message")
    assert (intro["via"], intro["first"]) == ("create", True)
    assert sf.h.enrollment("bob").facts["conversation_id"] == intro["conversation_id"]


def test_the_acceptance_arrives_by_webhook_when_polls_are_rare(salesflow: Any) -> None:
    sf = salesflow(NO_NOTE, poll_every=dt.timedelta(days=2))
    sf.h.enroll(lead_row("cem"))
    sf.run(sf.h.now + dt.timedelta(days=1))
    (accepted,) = Event.select().where(Event.kind == "accepted")
    assert accepted.source == "webhook"
    assert len(sf.ledger("message")) == 1


def test_a_message_waits_for_its_inbox_sync_and_the_cursor_waits_too(salesflow: Any) -> None:
    sf = salesflow(NO_NOTE, sync_wait=0.05)
    sf.h.enroll(lead_row("dee"))
    sf.run(sf.h.now + dt.timedelta(days=1), stop=lambda: bool(sf.ledger("connect")))  # accepted 2 h later
    assert len(sf.ledger("connect")) == 1
    cursor = SyncCursor.get().last_synced_at
    sf.control("POST", "webhooks/hold", count=1000)  # no sync finishes from now on
    sf.run(sf.h.now + dt.timedelta(hours=6))
    assert sf.ledger("message") == []  # never sent without a finished sync
    assert SyncCursor.get().last_synced_at == cursor  # and the cursor did not move
    enrollment = sf.h.enrollment("dee")
    assert (enrollment.state, enrollment.step_id) == ("active", "thanks")  # waiting, not failed
    assert sum(not r.complete for r in sf.fake.deliveries.syncs.values()) >= 3  # it kept asking
    sf.control("POST", "webhooks/hold", count=0)
    sf.control("POST", "webhooks/release")
    sf.fake.deliveries.settle()
    sf.run(sf.h.now + dt.timedelta(days=1), stop=lambda: bool(sf.ledger("message")))
    assert len(sf.ledger("message")) == 1
    assert SyncCursor.get().last_synced_at > cursor


def test_a_reply_found_by_a_sync_stops_the_lead(salesflow: Any) -> None:
    sf = salesflow(NO_NOTE, sandbox=dict(reply_rate=1.0, reply_delay_hours=(3, 3)))
    sf.h.enroll(lead_row("eve"))
    sf.run(sf.h.now + dt.timedelta(days=4))
    assert len(sf.ledger("message")) == 1  # the follow-up two days later never went out
    enrollment = sf.h.enrollment("eve")
    assert (enrollment.state, enrollment.outcome) == ("done", "replied")
    replies = list(Event.select().where(Event.kind == "replied"))
    assert len(replies) == 1 and replies[0].source in ("webhook", "poll")
