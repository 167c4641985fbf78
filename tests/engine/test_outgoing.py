"""Outgoing events end to end: facts the engine commits reach a real receiver on 127.0.0.1, signed the
Standard Webhooks way, once each, with retries on the virtual clock; crashes neither lose nor double them."""
from __future__ import annotations

import base64
import datetime as dt
import logging
import pathlib
import sqlite3
from collections.abc import Iterator

import httpx
import pytest
from tests.outgoing_receiver import HANG, Receiver, verify

from runner import outgoing_derive
from runner.engine.steps import pause_sender
from runner.language.diagnostics import UserError
from runner.outgoing import Outgoing, Subscription, backoff
from runner.outgoing_derive import derive
from runner.store import Action, Event, Sender, db
from runner.store.outgoing import OutgoingEvent, claim

from .conftest import MONDAY, EngineHarness, HarnessFactory, lead_row, sequence_yaml

SECRET = "whsec_" + base64.b64encode(b"a receiver's 32-byte signing key!").decode()
ENV = {"SEQRUN_HOOK_SECRET": SECRET}

STEPS = """\
  - {id: connect, action: connect, note: note.j2}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: thanks, action: message, template: thanks.j2}
  - end: messaged
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


def messaged(make_harness: HarnessFactory) -> EngineHarness:
    """Anna: invited Monday, accepts two hours later, thanked, sequence ended (messaged)."""
    h = make_harness(sequence_yaml("intro", STEPS))
    h.enroll(lead_row("anna", company="Acme"))
    h.run(days=1)
    assert h.enrollment("anna").outcome == "messaged"
    return h


def outgoing(h: EngineHarness, client: httpx.Client, url: str, *, events: tuple[str, ...] | None = None,
             **options: object) -> Outgoing:
    sub = Subscription(name="crm", url=url, secret_env="SEQRUN_HOOK_SECRET",
                       **({"events": events} if events else {}))
    return Outgoing([sub], client, environ=ENV, clock=lambda: h.now, **options)  # type: ignore[arg-type]


def subscribe_before(h: EngineHarness, client: httpx.Client, url: str, **options: object) -> Outgoing:
    """Subscribed from the start: a first pass at MONDAY records the subscription (nothing yet)."""
    out = outgoing(h, client, url, **options)
    assert out.deliver_due(MONDAY).added == 0
    return out


def test_each_fact_reaches_the_receiver_once_signed_the_standard_webhooks_way(
        make_harness: HarnessFactory, receiver: Receiver, client: httpx.Client) -> None:
    h = make_harness(sequence_yaml("intro", STEPS))
    out = subscribe_before(h, client, receiver.url)
    h.enroll(lead_row("anna", company="Acme"))
    h.run(days=1)

    report = out.deliver_due(h.now)
    assert (report.added, report.delivered, report.retrying, report.failed) == (4, 4, 0, 0)
    got = receiver.deliveries
    assert [d.json["type"] for d in got] == ["lead.invite_sent", "lead.accepted", "lead.message_sent",
                                             "lead.sequence_finished"]
    for d in got:
        assert verify(SECRET, d.headers, d.body, now=int(h.now.timestamp()))
        assert d.headers["webhook-id"] == d.json["id"]
        assert d.headers["content-type"] == "application/json"
        assert d.path == "/hooks/seqrun"
    assert not verify("whsec_" + base64.b64encode(b"another key").decode(), got[0].headers, got[0].body,
                      now=int(h.now.timestamp()))

    invite = h.actions("anna", action="connect")[0]
    assert got[0].json == {
        "id": got[0].headers["webhook-id"], "type": "lead.invite_sent",
        "timestamp": invite.performed_at.isoformat().replace("+00:00", "Z"),
        "data": {"lead": {"key": "anna", "profile_url": "https://www.linkedin.com/in/anna",
                          "fields": {"full_name": "Anna Example", "company": "Acme"}},
                 "sequence": "intro", "step": "connect", "sender": "alice", "action": "connect",
                 "note": "Hi Anna, let's connect.", "template": "note.j2", "variant": None}}
    finished = h.enrollment("anna")
    assert got[3].json["data"] == {
        "lead": got[0].json["data"]["lead"], "sequence": "intro", "step": finished.step_id, "sender": "alice",
        "outcome": "messaged", "started_at": "2026-03-02T07:00:00Z",
        "finished_at": finished.finished_at.isoformat().replace("+00:00", "Z")}
    assert got[2].json["data"]["text"] == "Thanks for accepting, Anna!"
    assert got[1].json["data"]["source"] == "poll"

    # Nothing new: nothing added, nothing sent again, however often it runs.
    assert (out.deliver_due(h.now + dt.timedelta(hours=1)).added, len(receiver.deliveries)) == (0, 4)
    assert OutgoingEvent.select().where(OutgoingEvent.state == "delivered").count() == 4


def test_a_subscription_reports_only_what_happens_after_it_is_first_seen_and_only_its_types(
        make_harness: HarnessFactory, receiver: Receiver, client: httpx.Client) -> None:
    h = messaged(make_harness)
    out = outgoing(h, client, receiver.url, events=("lead.accepted", "lead.replied", "lead.failed"))
    assert out.deliver_due(h.now).added == 0
    h.enroll(lead_row("ben"))
    h.run(days=1)
    out.deliver_due(h.now)
    assert [(d.json["type"], d.json["data"]["lead"]["key"]) for d in receiver.deliveries] == [("lead.accepted", "ben")]


def test_a_crash_before_the_outbox_commit_loses_nothing_and_reading_again_doubles_nothing(
        make_harness: HarnessFactory, receiver: Receiver, client: httpx.Client,
        monkeypatch: pytest.MonkeyPatch) -> None:
    h = make_harness(sequence_yaml("intro", STEPS))
    subs = [("crm", frozenset(outgoing_derive.EVENT_TYPES))]
    derive(subs, MONDAY)
    h.enroll(lead_row("anna"))
    h.run(days=1)

    class Crash(BaseException):
        pass

    real = outgoing_derive.add_events

    def crash(rows: list) -> int:
        real(rows)
        raise Crash  # the process dies after the rows are written, before the commit

    monkeypatch.setattr(outgoing_derive, "add_events", crash)
    with pytest.raises(Crash):
        derive(subs, h.now)
    assert OutgoingEvent.select().count() == 0  # rolled back with the reading
    monkeypatch.setattr(outgoing_derive, "add_events", real)
    assert derive(subs, h.now) == 4
    assert derive(subs, h.now) == 0
    # A second process reading from scratch (its own idea of how far it read) adds nothing either.
    db.execute_sql("UPDATE outgoing_subscription SET actions_at = NULL, events_at = NULL, finished_at = NULL")
    assert derive(subs, h.now) == 0
    assert OutgoingEvent.select().count() == 4


def test_a_fact_committed_after_newer_ones_were_read_is_still_reported(
        make_harness: HarnessFactory, receiver: Receiver, client: httpx.Client) -> None:
    h = messaged(make_harness)
    subs = [("crm", frozenset({"lead.replied"}))]
    derive(subs, MONDAY - dt.timedelta(days=1))
    lead = h.lead("anna")
    late = h.now - dt.timedelta(minutes=1)
    Event.create(event_id="reply-1", kind="replied", source="webhook", lead=lead.id, occurred_at=h.now,
                 received_at=h.now)
    assert derive(subs, h.now) == 1
    # Another runner commits a reply it received a minute before the one already read.
    Event.create(event_id="reply-0", kind="replied", source="poll", lead=lead.id, occurred_at=late, received_at=late)
    assert derive(subs, h.now) == 1
    # Beyond the late window a fact is not looked for again (and the window bounds the rereading).
    old = h.now - outgoing_derive.LATE - dt.timedelta(seconds=1)
    Event.create(event_id="reply-x", kind="replied", source="poll", lead=lead.id, occurred_at=old, received_at=old)
    assert derive(subs, h.now) == 0


def test_failures_are_retried_with_growing_jittered_delays_until_a_2xx(
        make_harness: HarnessFactory, client: httpx.Client) -> None:
    h = make_harness(sequence_yaml("intro", STEPS))
    receiver = Receiver(500, 503, 200)
    try:
        out = subscribe_before(h, client, receiver.url, events=("lead.invite_sent",))
        h.enroll(lead_row("anna"))
        h.run(days=1)
        t0 = h.now
        assert out.deliver_due(t0).retrying == 1
        event = OutgoingEvent.get()
        first = backoff(1, event.event_id)
        assert dt.timedelta(seconds=15) <= first <= dt.timedelta(seconds=30)
        assert (event.attempts, event.next_attempt_at, event.last_error) == (1, t0 + first,
                                                                              "HTTP 500 Internal Server Error")
        h.clock.now = t0 + first - dt.timedelta(seconds=1)
        assert out.deliver_due(h.now).retrying == 0  # not due yet: nothing is sent
        assert len(receiver.deliveries) == 1
        h.clock.now = t1 = t0 + first
        assert out.deliver_due(t1).retrying == 1
        second = backoff(2, event.event_id)
        assert dt.timedelta(minutes=1) <= second <= dt.timedelta(minutes=2)
        h.clock.now = t2 = t1 + second
        assert out.deliver_due(t2).delivered == 1
        event = OutgoingEvent.get()
        assert (event.state, event.attempts, event.delivered_at, event.last_error) == ("delivered", 3, t2, None)
        ids = {d.headers["webhook-id"] for d in receiver.deliveries}
        stamps = [int(d.headers["webhook-timestamp"]) for d in receiver.deliveries]
        assert len(ids) == 1 and stamps == [int(t.timestamp()) for t in (t0, t1, t2)]
        assert all(verify(SECRET, d.headers, d.body, now=s) for d, s in zip(receiver.deliveries, stamps, strict=True))
    finally:
        receiver.close()


def test_a_receiver_that_does_not_answer_times_out_and_the_event_fails_after_the_last_attempt(
        make_harness: HarnessFactory, client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    h = make_harness(sequence_yaml("intro", STEPS))
    receiver = Receiver(HANG, 500, 500)
    try:
        out = subscribe_before(h, client, receiver.url, events=("lead.invite_sent",), timeout=0.2, max_attempts=3)
        h.enroll(lead_row("anna"))
        h.run(days=1)
        with caplog.at_level(logging.WARNING, logger="runner.outgoing"):
            assert out.deliver_due(h.now).retrying == 1
            assert OutgoingEvent.get().last_error == "no answer within 0.2 s"
            for _ in range(2):
                h.clock.now = OutgoingEvent.get().next_attempt_at
                out.deliver_due(h.now)
        event = OutgoingEvent.get()
        assert (event.state, event.attempts, event.next_attempt_at, event.last_error) == (
            "failed", 3, None, "HTTP 500 Internal Server Error (gave up after 3 attempts)")
        assert caplog.messages[-1] == (f"outgoing crm: event {event.event_id} (lead.invite_sent) failed: HTTP 500 "
                                       "Internal Server Error; gave up after 3 attempts (seqrun outgoing retry)")
        h.clock.now += dt.timedelta(days=2)
        assert out.deliver_due(h.now).failed == 0 and len(receiver.deliveries) == 3  # failed stays failed
    finally:
        receiver.close()


def test_urls_from_the_environment_and_secrets_never_reach_the_database_or_the_log(
        make_harness: HarnessFactory, client: httpx.Client, tmp_path: pathlib.Path,
        caplog: pytest.LogCaptureFixture) -> None:
    h = make_harness(sequence_yaml("intro", STEPS))
    live, closed = Receiver(500), Receiver()
    token_url = live.url.replace("/hooks/seqrun", "/hooks/T0KEN-in-the-path")
    down_url = closed.url.replace("/hooks/seqrun", "/hooks/OTHER-T0KEN")
    closed.close()  # nothing listens there any more
    subs = [Subscription(name="chat", url_env="CHAT_URL", secret_env="SEQRUN_HOOK_SECRET",
                         events=("lead.invite_sent",)),
            Subscription(name="down", url_env="DOWN_URL", secret_env="SEQRUN_HOOK_SECRET", events=("lead.invite_sent",))]
    try:
        out = Outgoing(subs, client, environ={**ENV, "CHAT_URL": token_url, "DOWN_URL": down_url}, clock=lambda: h.now)
        out.deliver_due(MONDAY)
        h.enroll(lead_row("anna"))
        h.run(days=1)
        with caplog.at_level(logging.DEBUG):
            assert out.deliver_due(h.now).retrying == 2
    finally:
        live.close()
    errors = {e.subscription.name: e.last_error for e in OutgoingEvent.select()}
    assert errors == {"chat": "HTTP 500 Internal Server Error", "down": "could not connect (ConnectError)"}
    assert "HTTP Request: POST <url_env URL>" in caplog.text  # httpx's own line, with the URL hidden
    db.close()
    dumped = "\n".join(sqlite3.connect(tmp_path / "t.db").iterdump())
    for secret in ("T0KEN-in-the-path", "OTHER-T0KEN", SECRET, SECRET.removeprefix("whsec_")):
        assert secret not in dumped and secret not in caplog.text


def test_sender_paused_and_resumed(make_harness: HarnessFactory, receiver: Receiver, client: httpx.Client) -> None:
    h = make_harness(sequence_yaml("intro", STEPS))
    out = subscribe_before(h, client, receiver.url, events=("sender.paused", "sender.resumed"))
    pause_sender(h.sender_id(), "auth expired", MONDAY)
    out.deliver_due(MONDAY + dt.timedelta(minutes=1))
    Sender.update(status="active", paused_reason=None).where(Sender.id == h.sender_id()).execute()
    out.deliver_due(MONDAY + dt.timedelta(minutes=2))
    pause_sender(h.sender_id(), "api key rejected", MONDAY)
    out.deliver_due(MONDAY + dt.timedelta(minutes=3))
    got = [(d.json["type"], d.json["timestamp"], d.json["data"]) for d in receiver.deliveries]
    assert got == [
        ("sender.paused", "2026-03-02T07:01:00Z", {"sender": "alice", "status": "paused", "reason": "auth expired"}),
        ("sender.resumed", "2026-03-02T07:02:00Z", {"sender": "alice", "status": "active", "reason": None}),
        ("sender.paused", "2026-03-02T07:03:00Z", {"sender": "alice", "status": "paused",
                                                   "reason": "api key rejected"})]
    assert len({d.headers["webhook-id"] for d in receiver.deliveries}) == 3


def test_missing_or_malformed_variables_stop_at_start_without_showing_values(client: httpx.Client) -> None:
    sub = Subscription(name="crm", url_env="CRM_URL", secret_env="SEQRUN_HOOK_SECRET")
    cases = [
        ({}, "outgoing crm: environment variable CRM_URL (url_env) is not set"),
        ({"CRM_URL": "https://x.example/h"}, "outgoing crm: environment variable SEQRUN_HOOK_SECRET (secret_env) "
                                             "is not set"),
        ({"CRM_URL": "crm.example/h?token=s3cret", "SEQRUN_HOOK_SECRET": "x"},
         "outgoing crm: environment variable CRM_URL (url_env) does not hold an http(s) URL (the value is not shown)"),
        ({"CRM_URL": "https://x.example/h", "SEQRUN_HOOK_SECRET": "whsec_not base64!"},
         "outgoing crm: environment variable SEQRUN_HOOK_SECRET (secret_env) starts with whsec_ but the rest is not "
         "base64, as a Standard Webhooks secret is (the value is not shown)"),
    ]
    for environ, message in cases:
        with pytest.raises(UserError) as err:
            Outgoing([sub], client, environ=environ)
        assert str(err.value) == message


def test_an_event_claimed_by_a_process_that_died_goes_out_once_its_claim_runs_out(
        make_harness: HarnessFactory, receiver: Receiver, client: httpx.Client) -> None:
    h = make_harness(sequence_yaml("intro", STEPS))
    out = subscribe_before(h, client, receiver.url, events=("lead.invite_sent",))
    h.enroll(lead_row("anna"))
    h.run(days=1)
    derive([("crm", frozenset({"lead.invite_sent"}))], h.now)
    event = OutgoingEvent.get()
    # Another process took it for an attempt (10 s timeout + 60 s) and was killed during the POST.
    assert claim(event, h.now, h.now + dt.timedelta(seconds=70))
    assert out.deliver_due(h.now + dt.timedelta(seconds=69)).delivered == 0
    assert receiver.deliveries == []
    assert out.deliver_due(h.now + dt.timedelta(seconds=70)).delivered == 1
    assert OutgoingEvent.get().attempts == 1


def test_a_failing_receiver_is_tried_once_per_call_and_its_other_events_wait_untried(
        make_harness: HarnessFactory, client: httpx.Client) -> None:
    h = make_harness(sequence_yaml("intro", STEPS))
    receiver = Receiver(HANG)
    try:
        out = subscribe_before(h, client, receiver.url, timeout=0.2)
        h.enroll(lead_row("anna"))
        h.run(days=1)
        report = out.deliver_due(h.now)
        assert (report.added, report.retrying, report.delivered, len(receiver.deliveries)) == (4, 1, 0, 1)
        assert sorted(e.attempts for e in OutgoingEvent.select()) == [0, 0, 0, 1]
        report = out.deliver_due(h.now)  # the others are due: the receiver answers now
        assert (report.delivered, report.retrying) == (3, 0)
    finally:
        receiver.close()


def test_an_action_reconciled_long_after_it_was_sent_is_still_reported(make_harness: HarnessFactory) -> None:
    """A send that timed out stays in flight through its backoff (up to an hour) and is then found done
    at the provider with the time it was sent: older than the late window behind the facts read since."""
    h = make_harness(sequence_yaml("intro", STEPS))
    subs = [("crm", frozenset({"lead.message_sent"}))]
    derive(subs, MONDAY - dt.timedelta(days=1))
    h.enroll(lead_row("anna", company="Acme"), lead_row("ben", company="Initech"))
    h.run(days=2)
    assert [e.outcome for e in (h.enrollment("anna"), h.enrollment("ben"))] == ["messaged", "messaged"]
    anna = Action.get(Action.enrollment == h.enrollment("anna").id, Action.action == "message")
    ben = Action.get(Action.enrollment == h.enrollment("ben").id, Action.action == "message")
    sent_at = anna.performed_at
    Action.update(status="in_flight", performed_at=None).where(Action.id == anna.id).execute()
    Action.update(performed_at=sent_at + dt.timedelta(minutes=30)).where(Action.id == ben.id).execute()
    assert derive(subs, h.now) == 1  # ben's; anna's is in flight
    # The provider answers again: anna's message went out when it was sent.
    Action.update(status="done", performed_at=sent_at).where(Action.id == anna.id).execute()
    assert derive(subs, h.now) == 1
    types = [(e.type, e.body) for e in OutgoingEvent.select().order_by(OutgoingEvent.id)]
    assert len(types) == 2 and all(t == "lead.message_sent" for t, _ in types)
    assert '"key":"' + h.lead("anna").key + '"' in types[1][1]


def test_a_backlog_is_read_a_batch_per_pass_and_nothing_is_skipped(make_harness: HarnessFactory,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    h = make_harness(sequence_yaml("intro", STEPS))
    subs = [("crm", frozenset({"lead.invite_sent", "lead.message_sent"}))]
    derive(subs, MONDAY - dt.timedelta(days=1))
    h.enroll(lead_row("anna"), lead_row("ben"), lead_row("cleo"))
    h.run(days=2)
    monkeypatch.setattr(outgoing_derive, "BATCH", 2)
    assert [derive(subs, h.now) for _ in range(4)] == [2, 2, 2, 0]
    keys = {(e.type, e.event_id) for e in OutgoingEvent.select()}
    assert len(keys) == 6


@pytest.mark.parametrize("secret", [SECRET, "a shared text secret"])
def test_the_reference_standard_webhooks_library_verifies_every_delivery(
        make_harness: HarnessFactory, receiver: Receiver, client: httpx.Client, secret: str) -> None:
    """The `standardwebhooks` package (the specification's own Python library) accepts each delivery.
    It checks the timestamp against the real clock, so these attempts are stamped with it."""
    standardwebhooks = pytest.importorskip("standardwebhooks")
    h = make_harness(sequence_yaml("intro", STEPS))
    sub = Subscription(name="crm", url=receiver.url, secret_env="SEQRUN_HOOK_SECRET")
    real = lambda: dt.datetime.now(dt.UTC)  # noqa: E731
    out = Outgoing([sub], client, environ={"SEQRUN_HOOK_SECRET": secret}, clock=real)
    assert out.deliver_due(MONDAY).added == 0
    h.enroll(lead_row("anna", company="Acme"))
    h.run(days=1)
    assert out.deliver_due(h.now).delivered == 4
    # The library takes a text secret as it is only when it is not `whsec_`: it base64-decodes the rest.
    key = secret if secret.startswith("whsec_") else base64.b64encode(secret.encode()).decode()
    hook = standardwebhooks.Webhook(key)
    for d in receiver.deliveries:
        assert hook.verify(d.body, d.headers) == d.json
    forged = {**receiver.deliveries[0].headers, "webhook-id": "evt_forged"}
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        hook.verify(receiver.deliveries[0].body, forged)
