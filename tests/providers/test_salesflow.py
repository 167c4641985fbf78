"""What only the Salesflow driver promises, over real HTTP against its fake, with inbox syncs arriving
as webhooks at a real receiver: the wire, seed 000's first message, syncs and markers, errors, keys."""
from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runner.providers.base import Account, ErrorKind, LeadRef, ProviderError
from runner.providers.salesflow.api import connect_request
from runner.providers.salesflow.driver import PROFILE_ID, SalesflowProvider

from .contract import expect_error
from .salesflow_harness import CERTAIN, HOOK_SECRET, SECRET, START, SalesflowHarness

UTC = dt.UTC
NOTED = dict(CERTAIN, reply_rate=0.0)


@pytest.fixture
def h() -> Iterator[SalesflowHarness]:
    harness = SalesflowHarness()
    yield harness
    harness.close()


def lead(name: str, **ids: str) -> LeadRef:
    return LeadRef(key=name, profile_url=f"https://www.linkedin.com/in/{name}", provider_ids=ids)


def requests_of(h: SalesflowHarness) -> list[httpx.Request]:
    seen: list[httpx.Request] = []
    h.client.event_hooks["request"].append(seen.append)
    return seen


def ledger(h: SalesflowHarness) -> list[dict[str, Any]]:
    return h.control("GET", "ledger")["actions"]


# --- the wire ---------------------------------------------------------------------------------------

def test_every_call_carries_the_bearer_key_and_the_account(h: SalesflowHarness) -> None:
    seen = requests_of(h)
    result = h.provider.connect(h.account, lead("ann-lee"), note="Hi Ann", key="k-1")
    resolve, invite = seen
    assert (resolve.method, resolve.url.path, dict(resolve.url.params)) == (
        "GET", "/api/v1/profiles/by-url", {"url": "https://www.linkedin.com/in/ann-lee"})
    for request in seen:
        assert request.headers["Authorization"] == f"Bearer {SECRET}"
        assert request.headers["X-AccountId"] == "1001"
        assert request.headers["User-Agent"].startswith("seqrun/")
    assert (invite.method, invite.url.path, invite.headers["Idempotency-Key"]) == ("POST", "/api/v1/invitations", "k-1")
    profile = result.provider_ids[PROFILE_ID]
    assert json.loads(invite.content) == {"profileId": profile, "message": "Hi Ann"}
    assert profile.startswith("ACoAA")
    (entry,) = ledger(h)
    assert (entry["action"], entry["lead"], entry["seqrun_key"], entry["note"]) == ("connect", "ann-lee", "k-1", True)


def test_the_assumed_invitation_request_is_one_function() -> None:
    assert connect_request("ACoAAxyz", None) == ("POST", "api/v1/invitations", {"profileId": "ACoAAxyz"})
    assert connect_request("ACoAAxyz", "Hello") == ("POST", "api/v1/invitations",
                                                    {"profileId": "ACoAAxyz", "message": "Hello"})


def test_the_profile_id_kept_on_the_lead_is_not_resolved_again(h: SalesflowHarness) -> None:
    first = h.provider.connect(h.account, lead("bo-ng"), note=None, key="c-1")
    seen = requests_of(h)
    fresh = SalesflowProvider(h.client, clock=h.clock)  # a new process: only the lead's stored ids
    fresh.withdraw(h.account, lead("bo-ng", **first.provider_ids), invitation_id=first.invitation_id, key="w-1")
    assert [r.url.path for r in seen] == ["/api/v1/connections", "/api/v1/invitations/sent",
                                          f"/api/v1/invitations/{first.invitation_id}"]
    assert seen[-1].method == "DELETE"
    assert dict(seen[0].url.params) == {"sortType": "2", "start": "0", "count": "100"}


def test_a_profile_salesflow_cannot_find_is_not_accessible() -> None:
    h = SalesflowHarness(sandbox=dict(CERTAIN, inaccessible_rate=1.0))
    try:
        err = expect_error(ErrorKind.PROFILE_NOT_ACCESSIBLE,
                           lambda: h.provider.connect(h.account, lead("gone"), note=None, key="c"))
        assert err.label == "PROFILE_NOT_FOUND"
    finally:
        h.close()


# --- seed 000: the first message ----------------------------------------------------------------------

def test_without_a_note_the_first_message_creates_the_conversation(h: SalesflowHarness) -> None:
    who = lead("no-note")
    h.provider.connect(h.account, who, note=None, key="c")
    h.advance(dt.timedelta(hours=2, minutes=1))
    assert h.provider.conversation(h.account, who).conversation_id is None  # an invite without a note opens none
    seen = requests_of(h)
    sent = h.provider.send_message(h.account, who, text="Hi there", conversation_id=None, subject=None,
                                   inmail=False, key="m")
    (request,) = seen
    assert (request.method, request.url.path) == ("POST", "/api/v1/conversations")
    assert json.loads(request.content) == {"profileId": sent.provider_ids[PROFILE_ID], "message": "Hi there",
                                           "inMail": False}
    entry = ledger(h)[-1]
    assert (entry["via"], entry["first"], entry["conversation_id"]) == ("create", True, sent.conversation_id)


def test_with_a_note_an_inbox_sync_finds_the_conversation_and_the_message_goes_into_it() -> None:
    h = SalesflowHarness(sandbox=NOTED)
    try:
        who = lead("with-note")
        h.provider.connect(h.account, who, note="Hi, let's connect", key="c")
        h.advance(dt.timedelta(hours=2, minutes=1))
        seen = requests_of(h)
        conversation = h.provider.conversation(h.account, who)
        assert conversation.conversation_id is not None and conversation.conversation_id.startswith("2-")
        (sync,) = seen
        assert (sync.method, sync.url.path) == ("POST", "/api/v1/conversations/sync")
        seen.clear()
        sent = h.provider.send_message(h.account, who, text="Thanks for accepting!",
                                       conversation_id=conversation.conversation_id, subject=None, inmail=False,
                                       key="m")
        (request,) = seen
        assert request.url.path == f"/api/v1/conversations/{conversation.conversation_id}/messages"
        assert json.loads(request.content) == {"message": "Thanks for accepting!"}
        assert sent.conversation_id == conversation.conversation_id
        entry = ledger(h)[-1]
        assert (entry["via"], entry["opened_by"], entry["first"]) == ("thread", "note", True)
    finally:
        h.close()


def test_the_thread_a_sync_found_is_used_even_when_the_engine_passes_none() -> None:
    h = SalesflowHarness(sandbox=NOTED)
    try:
        who = lead("note-two")
        h.provider.connect(h.account, who, note="Hello", key="c")
        h.advance(dt.timedelta(hours=3))
        thread = h.provider.conversation(h.account, who).conversation_id
        sent = h.provider.send_message(h.account, who, text="Hi", conversation_id=None, subject=None, inmail=False,
                                       key="m")
        assert sent.conversation_id == thread
        assert ledger(h)[-1]["via"] == "thread"
    finally:
        h.close()


def test_a_message_asks_for_a_second_sync_five_to_ten_minutes_later(h: SalesflowHarness) -> None:
    who = lead("refresh")
    h.provider.connect(h.account, who, note=None, key="c")
    h.advance(dt.timedelta(hours=3))
    assert h.provider.poll_due(h.account) is None
    h.provider.send_message(h.account, who, text="Hi", conversation_id=None, subject=None, inmail=False, key="m")
    due = h.provider.poll_due(h.account)
    assert due is not None and h.now() + dt.timedelta(minutes=5) <= due <= h.now() + dt.timedelta(minutes=10)
    h.virtual.now = due
    h.provider.poll_events(h.account, since=START)
    assert h.provider.poll_due(h.account) is None  # that sync finished: nothing more is wanted


def test_an_inmail_creates_its_own_conversation_with_a_subject(h: SalesflowHarness) -> None:
    seen = requests_of(h)
    who = lead("inmail-lead")
    h.provider.send_message(h.account, who, text="Hello", conversation_id="2-whatever", subject="A question",
                            inmail=True, key="i")
    request = seen[-1]
    assert request.url.path == "/api/v1/conversations"
    assert json.loads(request.content)["inMail"] is True and json.loads(request.content)["subject"] == "A question"


# --- inbox syncs, markers, webhooks ---------------------------------------------------------------------

def test_the_inbox_sync_asks_from_the_cursor_and_moves_the_marker_only_when_finished(h: SalesflowHarness) -> None:
    seen = requests_of(h)
    first = h.provider.poll_events(h.account, since=None)  # the first sync reaches back 30 days
    assert first.synced_until == START
    body = json.loads(seen[-1].content)
    assert body == {"conversationsFromDate": "2026-01-31T09:00:00Z", "messagesFromDate": "2026-01-01T09:00:00Z",
                    "cursor": None}
    h.advance(dt.timedelta(hours=1))
    h.control("POST", "webhooks/hold", count=1)  # the next sync's last page does not come
    fast = SalesflowProvider(h.client, clock=h.clock, sync_wait=0.2)
    fast.book, fast._hydrated = h.provider.book, h.provider._hydrated  # same process state, shorter wait
    h.inbox.mount("salesflow", fast)
    since = START - dt.timedelta(minutes=2)  # the engine's cursor minus its overlap
    stalled = fast.poll_events(h.account, since=since)
    assert json.loads(seen[-1].content)["conversationsFromDate"] == "2026-03-02T08:58:00Z"
    assert stalled.synced_until is None  # not finished: the engine keeps its cursor
    assert h.provider.book.marker(h.account.account_id) == START
    assert h.control("POST", "webhooks/release") == {"released": 1}
    h.fake.deliveries.settle()
    assert h.provider.book.marker(h.account.account_id) == START + dt.timedelta(hours=1)


def test_a_message_waits_for_a_finished_sync_and_is_never_sent_blind() -> None:
    h = SalesflowHarness(sync_wait=0.2)
    try:
        who = lead("blind")
        h.provider.connect(h.account, who, note=None, key="c")
        h.advance(dt.timedelta(hours=3))
        h.control("POST", "webhooks/hold", count=2)
        err = expect_error(ErrorKind.NOT_READY, lambda: h.provider.conversation(h.account, who))
        assert (err.label, err.retry_at) == ("SYNC_PENDING", h.now() + dt.timedelta(minutes=2))
        assert err.message == ("the inbox sync of account 1001 did not finish within 0.2 s (Salesflow's New "
                               "Messages webhooks); the message waits for one, it is never sent without")
        h.advance(dt.timedelta(minutes=2))
        err = expect_error(ErrorKind.NOT_READY, lambda: h.provider.conversation(h.account, who))
        assert err.retry_at == h.now() + dt.timedelta(minutes=4)  # webhooks seem down: wait longer each time
        assert [e["action"] for e in ledger(h)] == ["connect"]
        h.control("POST", "webhooks/release")
        h.fake.deliveries.settle()
        assert h.provider.conversation(h.account, who).conversation_id is None  # now answered from that sync
    finally:
        h.close()


def test_without_a_webhook_receiver_nothing_waits_and_no_cursor_moves() -> None:
    h = SalesflowHarness(mount=False)
    try:
        err = expect_error(ErrorKind.NOT_READY, lambda: h.provider.conversation(h.account, lead("x-lead")))
        assert (err.label, err.retry_at) == ("NO_WEBHOOKS", h.now() + dt.timedelta(minutes=15))
        assert err.message.startswith("Salesflow delivers inbox syncs (and so replies) only as webhooks, and "
                                      "nothing in this process receives them: run this sender under `seqrun serve`")
        # no inbox sync can finish: the cursor only marks how far connections were read
        assert h.provider.poll_events(h.account, since=START).synced_until == START
        assert h.fake.requests["sync"] == 0
    finally:
        h.close()


def test_shuffled_and_repeated_pages_give_the_same_inbox() -> None:
    def inbox(**chaos: float) -> list[tuple[str, tuple[tuple[str, bool], ...]]]:
        h = SalesflowHarness(sandbox=dict(CERTAIN, reply_delay_hours=(1, 1)), **chaos)
        try:
            leads = [lead(f"chaos-{i:02d}") for i in range(30)]  # two CONVERSATIONS pages
            for i, who in enumerate(leads):
                h.provider.connect(h.account, who, note="Hi" if i % 2 else None, key=f"c-{i}")
            h.advance(dt.timedelta(hours=2, minutes=1))
            h.provider.conversation(h.account, leads[0])  # sync-before-send: one sync finds the notes' threads
            for i, who in enumerate(leads):
                h.provider.send_message(h.account, who, text="Hello", conversation_id=None, subject=None,
                                        inmail=False, key=f"m-{i}")
            h.advance(dt.timedelta(hours=2))
            polled = h.provider.poll_events(h.account, since=START)
            h.fake.deliveries.settle()
            assert len([e for e in polled.events if e.kind == "replied"]) == 30
            return sorted((t.lead_key or "", tuple((m.message_id, m.from_lead) for m in t.sorted_messages()))
                          for t in h.provider.book.threads.values())
        finally:
            h.close()

    plain = inbox(reorder_rate=0.0, duplicate_rate=0.0)
    assert inbox(reorder_rate=1.0, duplicate_rate=1.0) == plain
    assert len(plain) == 30 and all(len(messages) in (2, 3) for _, messages in plain)


def test_pages_that_overtake_the_202_wait_for_their_sync() -> None:
    from runner.providers.salesflow.syncs import Sync, SyncBook
    from runner.providers.salesflow.webhook import parse

    book = SyncBook()
    conversations = parse(json.dumps({"EventType": "NEW_MESSAGES", "Payload": {
        "SyncId": "s-1", "SyncType": "CONVERSATIONS", "PageNumber": 1, "IsLastPage": True,
        "Data": {"Conversations": [{"ConversationId": "2-a", "LastActivityAt": "2026-03-02T09:00:00Z",
                                    "Participants": [{"ProfileId": "ACoAAann", "PublicIdentifier": "ann-lee"}]}]}}}
    ).encode())
    messages = parse(json.dumps({"EventType": "NEW_MESSAGES", "Payload": {
        "SyncId": "s-1", "SyncType": "MESSAGES", "ConversationId": "2-a", "PageNumber": 1, "IsLastPage": True,
        "Data": {"Messages": [{"MessageId": "m-1", "ConversationId": "2-a", "SenderProfileId": "ACoAAann",
                               "SentAt": "2026-03-02T08:59:00Z"}]}}}).encode())
    assert book.take(messages) == [] and book.take(conversations) == []  # no sync known yet: kept
    events = book.register(Sync("s-1", "1001", "inbox", START))
    assert [(e.kind, e.lead_key, e.conversation_id) for e in events] == [("replied", "ann-lee", "2-a")]
    assert book.marker("1001") == START and book.take(messages) == []  # a repeat changes nothing


def test_a_long_running_book_forgets_old_syncs_and_ignores_their_late_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.providers.salesflow import syncs
    from runner.providers.salesflow.webhook import Page

    monkeypatch.setattr(syncs, "KEEP_SYNCS", 3)
    book = syncs.SyncBook()
    pages = []
    for n in range(6):
        book.register(syncs.Sync(f"s-{n}", "1001", "inbox", START + dt.timedelta(minutes=n)))
        pages.append(Page(f"s-{n}", "CONVERSATIONS", 1, True, None))
        book.take(pages[-1])
    assert sorted(book.syncs) == ["s-3", "s-4", "s-5"]
    assert book.marker("1001") == START + dt.timedelta(minutes=5)
    assert book.take(pages[0]) == [] and book.stats["duplicate_pages"] == 1  # late, from a forgotten sync
    assert book.wait("s-0", 0.0)  # forgotten means finished


def test_webhooks_are_verified_on_the_raw_delivery(h: SalesflowHarness) -> None:
    body = json.dumps({"EventType": "NEW_CONNECTION", "Payload": {"Data": {"Connections": [{
        "ConnectedAt": "2026-03-02T10:00:00Z", "Profile": {"ProfileId": "ACoAAzed", "PublicIdentifier": "zed-x"}}]}}})
    url = h.receiver.url + "/webhooks/salesflow"
    assert httpx.post(url, content=body).status_code == 401
    assert httpx.post(url, content=body, headers={"X-Webhook-Secret": HOOK_SECRET + "x"}).status_code == 401
    assert httpx.post(url, content=b"{not json", headers={"X-Webhook-Secret": HOOK_SECRET}).status_code == 400
    assert h.inbox.drain() == []
    assert httpx.post(url, content=body, headers={"x-webhook-secret": HOOK_SECRET}).status_code == 200
    assert httpx.post(url, content=body, headers={"X-Webhook-Secret": HOOK_SECRET}).status_code == 200  # again
    (event,) = h.inbox.drain()
    assert (event.kind, event.lead_key, event.account_id) == ("accepted", "zed-x", None)
    assert dict(h.inbox.stats) == {"refused": 2, "malformed": 1, "received": 2, "events": 1, "duplicate_events": 1}


def test_new_connection_comes_late_and_names_the_account_that_invited() -> None:
    h = SalesflowHarness(sandbox=NOTED)
    try:
        who = lead("late-accept")
        h.provider.connect(h.account, who, note=None, key="c")
        h.advance(dt.timedelta(hours=2))  # accepted now
        h.control("POST", "deliver")
        assert h.inbox.drain() == []  # not yet: Salesflow polls relations at random intervals
        h.advance(dt.timedelta(hours=6))
        assert h.control("POST", "deliver") == {"delivered": 1}
        (event,) = h.inbox.drain()
        assert (event.kind, event.lead_key, event.account_id) == ("accepted", "late-accept", "1001")
        assert event.occurred_at == START + dt.timedelta(hours=2)
        polled = h.provider.poll_events(h.account, since=START)  # the safety net finds the same one
        assert [e.event_id for e in polled.events if e.kind == "accepted"] == [event.event_id]
    finally:
        h.close()


def test_standing_alone_the_fake_sends_new_connection_as_its_clock_passes_it() -> None:
    """`seqrun fake salesflow`: no tick pumps it; its own worker does, before any sync was asked for."""
    h = SalesflowHarness(sandbox=NOTED, auto_pump=True, connection_delay_hours=0.0)
    try:
        h.provider.connect(h.account, lead("alone"), note=None, key="c")
        h.control("POST", "clock", advance_seconds=2 * 3600 + 60)
        assert h.fake.deliveries.wait_delivered(1, timeout=10.0)  # the worker looks every quarter second
        (event,) = h.inbox.drain()
        assert (event.kind, event.lead_key, event.account_id) == ("accepted", "alone", "1001")
    finally:
        h.close()


def test_acceptances_are_walked_down_to_the_cursor_over_pages() -> None:
    h = SalesflowHarness(sandbox=NOTED)
    try:
        leads = [lead(f"page-{i:03d}") for i in range(130)]
        for i, who in enumerate(leads):
            h.provider.connect(h.account, who, note=None, key=f"c-{i}")
            h.advance(dt.timedelta(minutes=1))
        h.advance(dt.timedelta(hours=3))
        fresh = SalesflowProvider(h.client, clock=h.clock, sync_wait=10.0)
        h.inbox.mount("salesflow", fresh)
        seen = requests_of(h)
        polled = fresh.poll_events(h.account, since=START + dt.timedelta(hours=2, minutes=99))
        assert sorted(e.lead_key for e in polled.events if e.kind == "accepted") == [w.key for w in leads[100:]]
        assert [dict(r.url.params)["start"] for r in seen if r.url.path == "/api/v1/connections"] == ["0"]
        polled = fresh.poll_events(h.account, since=START)
        assert len([e for e in polled.events if e.kind == "accepted"]) == 130
        assert [dict(r.url.params)["start"] for r in seen if r.url.path == "/api/v1/connections"] == ["0", "0", "100"]
    finally:
        h.close()


# --- errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "kind"), [
    ("NOT_CONNECTED", ErrorKind.NOT_CONNECTED), ("ALREADY_CONNECTED", ErrorKind.ALREADY_CONNECTED),
    ("INVITATION_PENDING", ErrorKind.INVITATION_PENDING), ("PROFILE_NOT_FOUND", ErrorKind.PROFILE_NOT_ACCESSIBLE),
    ("ACCOUNT_DISCONNECTED", ErrorKind.AUTH_EXPIRED), ("VALIDATION_ERROR", ErrorKind.INVALID_INPUT),
    ("INTERNAL_ERROR", ErrorKind.TRANSIENT), ("BAD_GATEWAY", ErrorKind.TRANSIENT),
    ("UNAUTHORIZED", ErrorKind.API_KEY_REJECTED), ("TOO_MANY_REQUESTS", ErrorKind.RATE_LIMITED),
    ("DAILY_LIMIT_REACHED", ErrorKind.LIMIT_REACHED),
])
def test_error_codes_map_to_their_kinds(h: SalesflowHarness, code: str, kind: ErrorKind) -> None:
    h.control("POST", "errors", code=code, endpoint="connect", count=1)
    err = expect_error(kind, lambda: h.provider.connect(h.account, lead("err-lead"), note=None, key="c-1"))
    assert err.label == code
    h.provider.connect(h.account, lead("err-lead"), note=None, key="c-2")  # only the next call failed


def test_limits_and_rate_limits_say_when_to_retry(h: SalesflowHarness) -> None:
    h.control("POST", "errors", code="DAILY_LIMIT_REACHED", endpoint="connect", count=1)
    err = expect_error(ErrorKind.LIMIT_REACHED, lambda: h.provider.connect(h.account, lead("aaa"), note=None, key="1"))
    assert (err.status, err.retry_at) == (429, dt.datetime(2026, 3, 3, tzinfo=UTC))
    h.control("POST", "errors", code="TOO_MANY_REQUESTS", endpoint="connect", count=1)
    err = expect_error(ErrorKind.RATE_LIMITED, lambda: h.provider.connect(h.account, lead("aaa"), note=None, key="2"))
    assert err.retry_at == START + dt.timedelta(seconds=60)


def test_an_expired_session_is_auth_expired_with_what_to_do(h: SalesflowHarness) -> None:
    h.control("POST", "auth", account_id="1001", state="expired")
    err = expect_error(ErrorKind.AUTH_EXPIRED, lambda: h.provider.connect(h.account, lead("a-b"), note=None, key="c"))
    assert err.message == ("Salesflow answered 403 ACCOUNT_DISCONNECTED: the LinkedIn session of account 1001 is "
                           "disconnected (account 1001: reconnect its LinkedIn session in Salesflow)")
    check = h.provider.check(h.account)
    assert (check.ready, check.account_status) == (False, "auth expired")
    assert check.problem == ("Salesflow reports the account as ACCOUNT_PAUSED: reconnect the LinkedIn account 1001 "
                             "in Salesflow, then `seqrun senders resume alice`")


def test_a_rejected_key_is_api_key_rejected(h: SalesflowHarness) -> None:
    wrong = Account(sender="alice", account_id="1001", credentials={"api_key": "sfk_wrong_000000000000"})
    err = expect_error(ErrorKind.API_KEY_REJECTED, lambda: h.provider.connect(wrong, lead("k-k"), note=None, key="c"))
    assert err.message == ("API key rejected (Salesflow answered 401 UNAUTHORIZED: invalid or missing API key); "
                           "check the key in the environment variable the sender names")


def test_a_409_without_a_known_code_is_decided_by_the_lists() -> None:
    class Conflict:
        """Salesflow without error codes: a bare 409 when an invitation is already out."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def handle(self, method: str, target: str, headers: Any, body: bytes) -> Any:
            if method == "POST" and target.startswith("/api/v1/invitations") and "second" in body.decode():
                return 409, {"Content-Type": "application/problem+json"}, b'{"title": "Conflict", "status": 409}'
            return self.inner.handle(method, target, headers, body)

    from runner.providers.fakeserver import FakeHTTPServer
    from runner.providers.http import make_client

    h = SalesflowHarness()
    try:
        who = lead("twice")
        first = h.provider.connect(h.account, who, note=None, key="c-1")
        with FakeHTTPServer(Conflict(h.fake)) as server, make_client(server.url) as client:
            driver = SalesflowProvider(client, clock=h.clock)
            err = expect_error(ErrorKind.INVITATION_PENDING, lambda: driver.connect(
                h.account, lead("twice", **first.provider_ids), note="second", key="c-2"))
            assert (err.status, err.label) == (409, "Conflict")
    finally:
        h.close()


# --- reconciliation -------------------------------------------------------------------------------------

def test_lost_responses_are_found_by_find_action_in_a_new_process(h: SalesflowHarness) -> None:
    since = h.now()
    invited, messaged, withdrawn = lead("inv-lost"), lead("msg-lost"), lead("wdr-lost")
    h.provider.connect(h.account, messaged, note=None, key="pre")
    h.provider.connect(h.account, withdrawn, note=None, key="pre-2")
    for endpoint, call in (
            ("connect", lambda: h.provider.connect(h.account, invited, note=None, key="c")),
            ("withdraw", lambda: h.provider.withdraw(h.account, withdrawn, invitation_id=None, key="w"))):
        h.control("POST", "errors", code="BAD_GATEWAY", endpoint=endpoint, count=1, after=True)
        expect_error(ErrorKind.TRANSIENT, call)
    restarted = SalesflowProvider(h.client, clock=h.clock)  # a new process: no memo of keys
    h.inbox.mount("salesflow", restarted)
    found = restarted.find_action(h.account, invited, action="connect", key="c", since=since)
    assert found is not None and found.invitation_id is not None and found.invitation_id.startswith("inv-")
    assert restarted.find_action(h.account, withdrawn, action="withdraw", key="w", since=since) is not None
    assert restarted.find_action(h.account, lead("nobody-x"), action="connect", key="x", since=since) is None
    h.advance(dt.timedelta(hours=2))
    h.control("POST", "errors", code="BAD_GATEWAY", endpoint="message", count=1, after=True)
    expect_error(ErrorKind.TRANSIENT, lambda: h.provider.send_message(
        h.account, messaged, text="Hi", conversation_id=None, subject=None, inmail=False, key="m"))
    assert restarted.find_action(h.account, invited, action="message", key="n", since=since) is None
    message = restarted.find_action(h.account, messaged, action="message", key="m", since=since)
    assert message is not None and message.conversation_id is not None
    assert [(e["action"], e["lead"]) for e in ledger(h)] == [
        ("connect", "msg-lost"), ("connect", "wdr-lost"), ("connect", "inv-lost"), ("withdraw", "wdr-lost"),
        ("message", "msg-lost")]


# --- senders check and limits ---------------------------------------------------------------------------

def test_senders_check_reads_the_account_and_its_limits(h: SalesflowHarness) -> None:
    check = h.provider.check(h.account)
    assert (check.ready, check.credentials, check.account_status) == (True, "ok", "ok")
    assert check.profile_id is not None and check.profile_id.startswith("ACoAA")
    assert check.limits == {"connect": {"limit": 15, "per": "day"}, "message": {"limit": 20, "per": "day"},
                            "inmail": {"limit": 20, "per": "day"}, "withdraw": {"limit": 40, "per": "day"}}


def test_limits_that_cannot_be_read_are_salesflows_documented_defaults(h: SalesflowHarness,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    h.control("POST", "errors", code="INTERNAL_ERROR", endpoint="limits", count=1)
    assert h.provider.account_limits(h.account) == {"connect": 15, "message": 20, "inmail": 20, "withdraw": 40}
    assert "Salesflow's limits could not be read" in caplog.text


# --- secrets ----------------------------------------------------------------------------------------------

def test_no_secret_in_any_log_line_or_error(h: SalesflowHarness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    who = lead("secret-check")
    h.provider.connect(h.account, who, note="Hi", key="c")
    for code in ("ACCOUNT_DISCONNECTED", "TOO_MANY_REQUESTS", "INTERNAL_ERROR", "UNAUTHORIZED"):
        h.control("POST", "errors", code=code, count=1)
        try:
            h.provider.poll_events(h.account, since=None)
        except ProviderError as err:
            errors += [str(err), err.message, repr(err)]
    httpx.post(h.receiver.url + "/webhooks/salesflow", content=b"{}", headers={"X-Webhook-Secret": "nope-nope"})
    assert len(errors) >= 8
    text = "\n".join(errors + [r.getMessage() for r in caplog.records] + [caplog.text])
    assert SECRET not in text and HOOK_SECRET not in text
