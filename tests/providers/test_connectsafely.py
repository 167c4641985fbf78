"""What only the ConnectSafely driver promises, over real HTTP against its fake: the wire as seed 003
documents it, every error shape and status, quotas and request budgets, pages, reconciliation."""
from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runner.providers.base import Account, ErrorKind, LeadRef, ProviderError
from runner.providers.connectsafely.driver import ConnectSafelyProvider
from runner.providers.connectsafely.fake import ConnectSafelyFake
from runner.providers.fakeserver import FakeHTTPServer
from runner.providers.http import RequestBudget, make_client
from runner.providers.quotas import Quota

from .connectsafely_harness import ACCOUNT, SECRET, START, ConnectSafelyHarness
from .contract import expect_error

UTC = dt.UTC
NEXT_MONDAY = dt.datetime(2026, 3, 9, tzinfo=UTC)


@pytest.fixture
def h() -> Iterator[ConnectSafelyHarness]:
    harness = ConnectSafelyHarness(budgets=None)
    yield harness
    harness.close()


def lead(name: str) -> LeadRef:
    return LeadRef(key=name, profile_url=f"https://www.linkedin.com/in/{name}")


def requests_seen(h: ConnectSafelyHarness) -> list[httpx.Request]:
    seen: list[httpx.Request] = []
    h.client.event_hooks["request"].append(seen.append)
    return seen


def accepted(h: ConnectSafelyHarness, who: LeadRef, note: str | None = None) -> None:
    h.provider.connect(h.account, who, note=note, key=f"c-{who.key}")
    h.advance(dt.timedelta(hours=2))


# --- the wire ---------------------------------------------------------------------------------------

def test_connect_is_a_bearer_post_with_the_account_in_the_body(h: ConnectSafelyHarness) -> None:
    seen = requests_seen(h)
    h.provider.connect(h.account, lead("ann-lee"), note="Hi Ann", key="k-1")
    (request,) = [r for r in seen if r.method == "POST"]
    assert request.url.path == "/linkedin/connect"
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert json.loads(request.content) == {"accountId": ACCOUNT, "profileId": "ann-lee", "customMessage": "Hi Ann"}
    (entry,) = h.control("GET", "ledger")["actions"]
    assert (entry["action"], entry["lead"], entry["with_note"]) == ("connect", "ann-lee", True)


def test_reads_carry_the_account_in_the_query(h: ConnectSafelyHarness) -> None:
    seen = requests_seen(h)
    rel = h.provider.relationship(h.account, lead("ann-lee"))
    (request,) = seen
    assert (request.method, request.url.path, dict(request.url.params)) == (
        "GET", "/linkedin/relationship/ann-lee", {"accountId": ACCOUNT})
    assert (rel.connected, rel.invite_pending) == (False, False)
    assert rel.provider_ids["profile_urn"].startswith("urn:li:fsd_profile:ACoAA")


def test_a_first_message_starts_a_conversation_by_recipient_as_seed_003_documents(h: ConnectSafelyHarness) -> None:
    who = lead("ben-okafor")
    accepted(h, who)
    seen = requests_seen(h)
    sent = h.provider.send_message(h.account, who, text="Hello Ben", conversation_id=None, subject=None,
                                   inmail=False, key="m-1")
    send = next(r for r in seen if r.url.path == "/linkedin/conversations/send")
    assert json.loads(send.content) == {"accountId": ACCOUNT, "recipientProfileId": "ben-okafor", "message": "Hello Ben"}
    assert sent.conversation_id is not None and sent.conversation_id.startswith("urn:li:messagingThread:2-")
    assert sent.provider_id is not None and sent.provider_id.startswith("urn:li:messagingMessage:")
    assert sent.provider_ids["profile_urn"].startswith("urn:li:fsd_profile:ACoAA")  # recipientProfileUrn kept
    (entry,) = [e for e in h.control("GET", "ledger")["actions"] if e["action"] == "message"]
    assert (entry["new_conversation"], entry["conversation_urn"]) == (True, None)


def test_after_a_noted_invite_the_message_goes_into_that_invites_conversation(h: ConnectSafelyHarness) -> None:
    who = lead("cleo-dubois")
    accepted(h, who, note="Hi Cleo, let's connect")
    conversation = h.provider.conversation(h.account, who)  # sync-before-send finds the thread the note opened
    assert conversation.exists and conversation.last_message is not None and not conversation.last_message.from_lead
    seen = requests_seen(h)
    sent = h.provider.send_message(h.account, who, text="Thanks for accepting", subject=None, inmail=False,
                                   conversation_id=conversation.conversation_id, key="m-1")
    (send,) = [r for r in seen if r.url.path == "/linkedin/conversations/send"]
    assert json.loads(send.content) == {"accountId": ACCOUNT, "recipientProfileId": "cleo-dubois",
                                        "conversationUrn": conversation.conversation_id,
                                        "message": "Thanks for accepting"}
    assert sent.conversation_id == conversation.conversation_id
    (entry,) = [e for e in h.control("GET", "ledger")["actions"] if e["action"] == "message"]
    assert entry["first_after_noted_invite"] and not entry["new_conversation"]
    assert entry["conversation_urn"] == entry["thread_urn"] == conversation.conversation_id


def test_an_inmail_carries_its_subject_and_attachments_pass_through(h: ConnectSafelyHarness) -> None:
    seen = requests_seen(h)
    files = [{"file": {"assetUrn": "urn:li:digitalmediaAsset:C4D", "byteSize": 1200, "mediaType": "application/pdf",
                       "name": "deck.pdf"}}]
    h.provider.send_message(h.account, lead("dan-ito"), text="Quick question", conversation_id=None,
                            subject="About your talk", inmail=True, key="i-1", attachments=files)
    send = next(r for r in seen if r.url.path == "/linkedin/conversations/send")
    assert json.loads(send.content) == {"accountId": ACCOUNT, "recipientProfileId": "dan-ito",
                                        "message": "Quick question", "subject": "About your talk",
                                        "attachments": files}
    (entry,) = h.control("GET", "ledger")["actions"]
    assert (entry["action"], entry["attachments"]) == ("inmail", 1)


def test_member_tokens_are_sent_as_urns_and_sales_navigator_thread_ids_are_kept() -> None:
    h = ConnectSafelyHarness(budgets=None, sales_navigator={ACCOUNT})
    try:
        token = "ACoAAB1c2d3e4f5g6h7i8j9k0lMnOp"
        member = LeadRef(key=token, profile_url=f"https://www.linkedin.com/in/{token}")
        seen = requests_seen(h)
        h.provider.send_message(h.account, member, text="Hi", conversation_id=None, subject="Hello", inmail=True,
                                key="i-1")
        send = next(r for r in seen if r.url.path == "/linkedin/conversations/send")
        assert json.loads(send.content)["recipientProfileUrn"] == f"urn:li:fsd_profile:{token}"
        who = lead("eve-sn")
        accepted(h, who)
        sent = h.provider.send_message(h.account, who, text="Hi Eve", conversation_id=None, subject=None,
                                       inmail=False, key="m-2")
        assert sent.provider_ids["sales_navigator_thread_id"].isdigit()
    finally:
        h.close()


def test_a_note_over_300_characters_is_refused_before_any_request(h: ConnectSafelyHarness) -> None:
    seen = requests_seen(h)
    err = expect_error(ErrorKind.INVALID_INPUT,
                       lambda: h.provider.connect(h.account, lead("ann"), note="x" * 301, key="k"))
    assert err.message == "a connection note may have at most 300 characters, got 301"
    assert seen == []


# --- errors: statuses, shapes, texts ------------------------------------------------------------------

@pytest.mark.parametrize("shape", ["error", "code", "plain"])
@pytest.mark.parametrize(("kind", "path", "expected", "status"), [
    ("ALREADY_CONNECTED", "/connect", ErrorKind.ALREADY_CONNECTED, 400),
    ("INVITATION_PENDING", "/connect", ErrorKind.INVITATION_PENDING, 400),
    ("NOT_CONNECTED", "/conversations/send", ErrorKind.NOT_CONNECTED, 400),
    ("AUTH_EXPIRED", "/connect", ErrorKind.AUTH_EXPIRED, 400),
    ("VALIDATION", "/connect", ErrorKind.INVALID_INPUT, 400),
    ("UNAUTHORIZED", "/connect", ErrorKind.API_KEY_REJECTED, 401),
    ("SUBSCRIPTION", "/connect", ErrorKind.API_KEY_REJECTED, 403),
    ("ACCOUNT_NOT_FOUND", "/connect", ErrorKind.API_KEY_REJECTED, 404),
    ("PROFILE_NOT_ACCESSIBLE", "/connect", ErrorKind.PROFILE_NOT_ACCESSIBLE, 404),
    ("NOT_FOUND", "/connect", ErrorKind.PROFILE_NOT_ACCESSIBLE, 404),
    ("NO_PENDING_INVITATION", "/invitations/withdraw", ErrorKind.NOT_FOUND, 404),
    ("NOT_FOUND", "/invitations/withdraw", ErrorKind.NOT_FOUND, 404),
    ("RATE_LIMITED", "/connect", ErrorKind.RATE_LIMITED, 429),
    ("QUOTA_CONNECT", "/connect", ErrorKind.LIMIT_REACHED, 429),
    ("SERVER_ERROR", "/connect", ErrorKind.TRANSIENT, 500),
])
def test_every_status_and_body_shape_maps_to_its_kind(h: ConnectSafelyHarness, kind: str, path: str,
                                                      expected: ErrorKind, status: int, shape: str) -> None:
    who = lead("fay")
    if path == "/conversations/send":
        accepted(h, who)
    h.control("POST", "errors", kind=kind, path=path, count=1, shape=shape)
    call = {"/connect": lambda: h.provider.connect(h.account, who, note=None, key="k"),
            "/conversations/send": lambda: h.provider.send_message(h.account, who, text="Hi", conversation_id=None,
                                                                   subject=None, inmail=False, key="k"),
            "/invitations/withdraw": lambda: h.provider.withdraw(h.account, who, invitation_id=None, key="k")}[path]
    err = expect_error(expected, call)
    assert err.status == status


def test_a_zod_validation_error_names_the_field(h: ConnectSafelyHarness) -> None:
    response = httpx.post(f"{h.server.url}/linkedin/connect", headers={"Authorization": f"Bearer {SECRET}"},
                          json={"accountId": ACCOUNT})
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": {"name": "ZodError", "issues": [
        {"code": "custom", "path": ["profileId"], "message": "Either profileId or profileUrn is required"}]}}
    h.control("POST", "errors", kind="VALIDATION", path="/profile/visit", count=1, shape="zod")
    err = expect_error(ErrorKind.INVALID_INPUT, lambda: h.provider.visit(h.account, lead("gus"), key="v"))
    assert (err.label, err.message) == ("ZodError", "ConnectSafely answered 400 ZodError: Invalid request body")


def test_the_fake_refuses_unknown_body_keys_like_a_strict_schema(h: ConnectSafelyHarness) -> None:
    response = httpx.post(f"{h.server.url}/linkedin/connect", headers={"Authorization": f"Bearer {SECRET}"},
                          json={"accountId": ACCOUNT, "profileId": "ann", "note": "hi"})
    assert response.status_code == 400
    assert response.json()["error"]["issues"][0]["message"] == "Unrecognized key(s) in object: 'note'"


def test_a_rejected_key_an_unknown_account_and_an_expired_session_say_what_to_do(h: ConnectSafelyHarness) -> None:
    wrong = Account(sender="alice", account_id=ACCOUNT, credentials={"api_key": "cs_wrong_000000000000"})
    err = expect_error(ErrorKind.API_KEY_REJECTED, lambda: h.provider.visit(wrong, lead("ann"), key="v"))
    assert err.message == ("API key rejected (ConnectSafely answered 401: Unauthorized: invalid or missing API key); "
                           "check the key in the environment variable the sender names")
    other = Account(sender="alice", account_id="000000000000000000000000", credentials={"api_key": SECRET})
    err = expect_error(ErrorKind.API_KEY_REJECTED, lambda: h.provider.visit(other, lead("ann"), key="v"))
    assert err.message == ("ConnectSafely answered 404: account 000000000000000000000000 not found for this API key; "
                           "check the sender's account_id in seqrun.yaml and the key in its environment variable")
    h.control("POST", "auth", account_id=ACCOUNT, state="expired")
    err = expect_error(ErrorKind.AUTH_EXPIRED, lambda: h.provider.visit(h.account, lead("ann"), key="v"))
    assert err.message == (f"ConnectSafely answered 400 AUTH_EXPIRED: LinkedIn session expired for account {ACCOUNT}: "
                           f"re-authenticate it in the dashboard (account {ACCOUNT}: reconnect the LinkedIn account in "
                           "ConnectSafely's dashboard, then `seqrun senders resume alice`)")


def test_sandbox_refusals_come_back_in_connectsafely_words(h: ConnectSafelyHarness) -> None:
    who = lead("hal")
    h.provider.connect(h.account, who, note=None, key="c-1")
    err = expect_error(ErrorKind.INVITATION_PENDING, lambda: h.provider.connect(h.account, who, note=None, key="c-2"))
    assert err.label == "INVITATION_PENDING"
    err = expect_error(ErrorKind.NOT_CONNECTED, lambda: h.provider.send_message(
        h.account, who, text="Hi", conversation_id=None, subject=None, inmail=False, key="m"))
    assert err.label == "NOT_CONNECTED"


# --- quotas -------------------------------------------------------------------------------------------

def test_the_weekly_invitation_quota_is_kept_without_asking_past_it() -> None:
    h = ConnectSafelyHarness(budgets=None, quotas={"CONNECT": Quota("connect", 3, "week")})
    try:
        for i in range(3):
            h.provider.connect(h.account, lead(f"q-{i}"), note=None, key=f"c-{i}")
        before = sum(h.fake.requests.values())
        err = expect_error(ErrorKind.LIMIT_REACHED,
                           lambda: h.provider.connect(h.account, lead("q-3"), note=None, key="c-3"))
        assert (err.retry_at, err.label) == (NEXT_MONDAY, "QUOTA_CONNECT")
        assert err.message == (f"ConnectSafely quota of invitations for account {ACCOUNT} is used up (3/3 used; "
                               "resets at 2026-03-09T00:00:00+00:00); nothing was sent")
        assert sum(h.fake.requests.values()) == before  # refused here, before any request
        assert h.fake.refused_over_quota == {}
        restarted = ConnectSafelyProvider(h.client, clock=h.clock)  # a new process reads the quota first
        expect_error(ErrorKind.LIMIT_REACHED, lambda: restarted.connect(h.account, lead("q-4"), note=None, key="c-4"))
        assert h.fake.refused_over_quota == {}
        h.advance(NEXT_MONDAY - h.now())
        h.provider.connect(h.account, lead("q-5"), note=None, key="c-5")  # a new week
    finally:
        h.close()


def test_the_daily_quota_counts_new_conversations_only() -> None:
    h = ConnectSafelyHarness(budgets=None, quotas={"NEW_CONVERSATION": Quota("message", 1, "day")})
    try:
        first, second = lead("r-1"), lead("r-2")
        accepted(h, first)
        accepted(h, second)
        sent = h.provider.send_message(h.account, first, text="Hi", conversation_id=None, subject=None,
                                       inmail=False, key="m-1")
        err = expect_error(ErrorKind.LIMIT_REACHED, lambda: h.provider.send_message(
            h.account, second, text="Hi", conversation_id=None, subject=None, inmail=False, key="m-2"))
        assert err.retry_at == dt.datetime(2026, 3, 3, tzinfo=UTC)
        h.provider.send_message(h.account, first, text="Again", conversation_id=sent.conversation_id, subject=None,
                                inmail=False, key="m-3")  # a reply in a conversation: unlimited
        assert h.fake.refused_over_quota == {}
    finally:
        h.close()


def test_a_hold_until_is_never_retried_before_it(h: ConnectSafelyHarness) -> None:
    h.control("POST", "errors", kind="QUOTA_CONNECT", path="/connect", count=1)
    err = expect_error(ErrorKind.LIMIT_REACHED, lambda: h.provider.connect(h.account, lead("ann"), note=None, key="c"))
    # holdUntil is 24 h away, the quota's reset is Monday: the later of the two
    assert err.retry_at == NEXT_MONDAY
    before = sum(h.fake.requests.values())
    expect_error(ErrorKind.LIMIT_REACHED, lambda: h.provider.connect(h.account, lead("bob"), note=None, key="c2"))
    assert sum(h.fake.requests.values()) == before


def test_the_fake_puts_an_account_that_asks_past_its_quota_on_hold() -> None:
    fake = ConnectSafelyFake(budgets=None, quotas={"CONNECT": Quota("connect", 1, "week")},
                             sandbox={"inaccessible_rate": 0.0, "connected_rate": 0.0, "pending_rate": 0.0})
    fake.clock.set(START)
    with FakeHTTPServer(fake) as server:
        def connect(who: str) -> httpx.Response:
            return httpx.post(f"{server.url}/linkedin/connect", headers={"Authorization": f"Bearer {SECRET}"},
                              json={"accountId": ACCOUNT, "profileId": who})
        assert connect("one").status_code == 200
        refused = connect("two")
        assert refused.status_code == 429
        assert refused.json() == {"success": False,
                                  "error": "Rate limit exceeded for CONNECT: 1/1 used. Resets at 2026-03-09T00:00:00Z",
                                  "holdUntil": "2026-03-03T09:00:00Z"}
        assert {k: v for k, v in refused.headers.items() if k.lower().startswith("x-ratelimit")} == {
            "x-ratelimit-action": "CONNECT", "x-ratelimit-limit": "1", "x-ratelimit-used": "1",
            "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2026-03-09T00:00:00Z"}
        fake.clock.set(dt.datetime(2026, 3, 9, 1, tzinfo=UTC))  # a new week, but still on hold? no: 24 h passed
        assert connect("three").status_code == 200
    assert fake.refused_over_quota == {"CONNECT": 1}


# --- request budgets ----------------------------------------------------------------------------------

class Ticks:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_writes_per_account_wait_for_their_budget_and_never_meet_a_429() -> None:
    h = ConnectSafelyHarness()  # the fake counts 15 writes a minute per account
    try:
        ticks = Ticks()
        budget = RequestBudget(60, 60, clock=ticks, sleep=ticks.sleep, wall=h.clock)

        def sleep(seconds: float) -> None:
            ticks.sleep(seconds)
            h.advance(dt.timedelta(seconds=seconds))

        budget._sleep = sleep
        driver = ConnectSafelyProvider(h.client, clock=h.clock, budget=budget)
        statuses: list[int] = []
        h.client.event_hooks["response"].append(lambda response: statuses.append(response.status_code))
        refused = 0
        for i in range(40):
            try:
                driver.visit(h.account, lead(f"w-{i:02d}"), key=f"v-{i}")
            except ProviderError as err:  # the answer said the minute's writes are used up: wait for it
                assert (err.kind, err.label) == (ErrorKind.RATE_LIMITED, "REQUEST_BUDGET")
                assert err.retry_at is not None
                refused += 1
                sleep((err.retry_at - h.now()).total_seconds())
        assert ticks.t >= 60 * 2  # 15 a minute: 40 writes take more than two minutes
        assert budget.waited > 0 and refused >= 1
        assert set(statuses) == {200}  # no 429 met
    finally:
        h.close()


def test_a_per_minute_429_holds_that_budget_until_its_reset(h: ConnectSafelyHarness) -> None:
    ticks = Ticks()
    budget = RequestBudget(600, 60, clock=ticks, sleep=ticks.sleep, wall=h.clock)
    driver = ConnectSafelyProvider(h.client, clock=h.clock, budget=budget)
    h.control("POST", "errors", kind="RATE_LIMITED", path="/profile/visit", count=1)
    first = expect_error(ErrorKind.RATE_LIMITED, lambda: driver.visit(h.account, lead("aaa"), key="1"))
    assert first.retry_at == START + dt.timedelta(seconds=60)
    before = sum(h.fake.requests.values())
    again = expect_error(ErrorKind.RATE_LIMITED, lambda: driver.visit(h.account, lead("aaa"), key="2"))
    assert again.label == "REQUEST_BUDGET" and again.retry_at == first.retry_at
    assert sum(h.fake.requests.values()) == before  # nothing went out
    driver.relationship(h.account, lead("aaa"))  # reads have a budget of their own
    ticks.t += 61
    h.advance(dt.timedelta(seconds=61))
    driver.visit(h.account, lead("aaa"), key="3")


def test_rate_limit_headers_come_on_every_answer() -> None:
    h = ConnectSafelyHarness()
    try:
        response = httpx.get(f"{h.server.url}/linkedin/relationship/ann", params={"accountId": ACCOUNT},
                             headers={"Authorization": f"Bearer {SECRET}"})
        assert {k: v for k, v in response.headers.items() if k.lower().startswith("x-ratelimit")} == {
            "x-ratelimit-action": "READ", "x-ratelimit-limit": "30", "x-ratelimit-used": "1",
            "x-ratelimit-remaining": "29", "x-ratelimit-reset": "2026-03-02T09:01:00Z"}
    finally:
        h.close()


# --- pages --------------------------------------------------------------------------------------------

class Pages:
    """A ConnectSafely stand-in whose connection pages are short, even empty, before `endOfList`,
    and whose first try of each page answers 502 CONNECTIONS_UNAVAILABLE."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.pages = {0: ["p-a", "p-b"], 12: [], 24: ["p-c"]}

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> Any:
        url = httpx.URL(target)
        if url.path.endswith("/conversations"):
            return 200, {"Content-Type": "application/json"}, b'{"conversations": [], "hasMore": false}'
        start = int(url.params["startIndex"])
        self.asked.append(f"{start}")
        if self.asked.count(f"{start}") == 1:
            return 502, {"Content-Type": "application/json"}, json.dumps(
                {"success": False, "error": "CONNECTIONS_UNAVAILABLE"}).encode()
        items = [{"vanityName": v, "connectedDate": "Connected on Mar 2, 2026"} for v in self.pages[start]]
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"connections": items, "endOfList": start == 24}).encode()


def test_connections_are_walked_until_end_of_list_and_502_is_retried() -> None:
    app = Pages()
    slept: list[float] = []
    with FakeHTTPServer(app) as server, make_client(server.url + "/linkedin") as client:
        driver = ConnectSafelyProvider(client, clock=lambda: START + dt.timedelta(hours=5), sleep=slept.append)
        account = Account(sender="alice", account_id=ACCOUNT, credentials={"api_key": SECRET})
        polled = driver.poll_events(account, since=START)
    assert app.asked == ["0", "0", "12", "12", "24", "24"]
    assert slept == [2.0, 2.0, 2.0]
    assert sorted(e.lead_key for e in polled.events if e.kind == "accepted") == ["p-a", "p-b", "p-c"]


# --- polling ------------------------------------------------------------------------------------------

def test_the_first_poll_is_a_baseline_and_acceptances_are_dated_within_their_day(h: ConnectSafelyHarness) -> None:
    old = lead("old-friend")
    accepted(h, old)
    assert h.provider.poll_events(h.account, since=None).events == ()  # baseline: nothing reported
    h.advance(dt.timedelta(days=1))
    new = lead("new-friend")
    accepted(h, new)
    polled = h.provider.poll_events(h.account, since=START + dt.timedelta(days=1))
    (event,) = polled.events
    assert (event.kind, event.lead_key, event.occurred_at) == ("accepted", "new-friend", h.now())
    assert event.event_id == f"connectsafely:{ACCOUNT}:accepted:new-friend:2026-03-03"
    again = ConnectSafelyProvider(h.client, clock=h.clock).poll_events(h.account, since=START + dt.timedelta(days=1))
    assert [e.event_id for e in again.events] == [event.event_id]  # a new process names it the same


def test_a_reply_found_by_polling_has_the_webhooks_event_id(h: ConnectSafelyHarness) -> None:
    who = lead("ivy")
    accepted(h, who)
    sent = h.provider.send_message(h.account, who, text="Hi Ivy", conversation_id=None, subject=None, inmail=False,
                                   key="m")
    h.advance(dt.timedelta(hours=3))
    polled = h.provider.poll_events(h.account, since=sent.performed_at)
    (reply,) = [e for e in polled.events if e.kind == "replied"]
    (message,) = [m for m in h.provider.conversation(h.account, who).messages if m.from_lead]
    assert reply.event_id == f"connectsafely:message:{message.message_id}"
    assert (reply.lead_key, reply.conversation_id) == ("ivy", sent.conversation_id)


# --- reconciliation -----------------------------------------------------------------------------------

def test_find_action_after_a_crash_answers_from_what_connectsafely_shows(h: ConnectSafelyHarness) -> None:
    since = h.now()
    invited, messaged, visited, withdrawn = lead("con"), lead("msg"), lead("vis"), lead("wdr")
    h.provider.connect(h.account, invited, note=None, key="c")
    h.provider.connect(h.account, messaged, note=None, key="pre")
    h.provider.connect(h.account, withdrawn, note=None, key="pre2")
    h.provider.withdraw(h.account, withdrawn, invitation_id=None, key="w")
    h.advance(dt.timedelta(hours=2))
    sent = h.provider.send_message(h.account, messaged, text="Hello", conversation_id=None, subject=None,
                                   inmail=False, key="m")
    h.provider.visit(h.account, visited, key="v")
    restarted = ConnectSafelyProvider(h.client, clock=h.clock)  # a new process: no memo
    found = restarted.find_action(h.account, messaged, action="message", key="m", since=since)
    assert found is not None and (found.provider_id, found.conversation_id) == (sent.provider_id, sent.conversation_id)
    assert restarted.find_action(h.account, invited, action="connect", key="c", since=since) is not None
    assert restarted.find_action(h.account, lead("nobody"), action="connect", key="x", since=since) is None
    assert restarted.find_action(h.account, withdrawn, action="withdraw", key="w", since=since) is not None
    assert restarted.find_action(h.account, visited, action="visit", key="v", since=since) is None


def test_an_older_pending_invitation_is_not_taken_for_ours(h: ConnectSafelyHarness) -> None:
    who = lead("old-invite")
    h.provider.connect(h.account, who, note=None, key="first")
    h.advance(dt.timedelta(minutes=90))  # "1 hour ago": sent at most two hours ago
    restarted = ConnectSafelyProvider(h.client, clock=h.clock)
    assert restarted.find_action(h.account, who, action="connect", key="k", since=h.now()) is None
    assert restarted.find_action(h.account, who, action="connect", key="k",
                                 since=h.now() - dt.timedelta(hours=2)) is not None


def test_a_lost_response_is_found_by_find_action_and_not_sent_again(h: ConnectSafelyHarness) -> None:
    who = lead("lost")
    since = h.now()
    h.control("POST", "errors", kind="SERVER_ERROR", path="/connect", count=1, after=True)
    expect_error(ErrorKind.TRANSIENT, lambda: h.provider.connect(h.account, who, note=None, key="k"))
    assert h.provider.find_action(h.account, who, action="connect", key="k", since=since) is not None
    assert [e["lead"] for e in h.control("GET", "ledger")["actions"]] == ["lost"]


# --- senders check ------------------------------------------------------------------------------------

def test_senders_check_reads_account_status_and_the_weekly_quota(h: ConnectSafelyHarness) -> None:
    h.provider.connect(h.account, lead("one"), note=None, key="c")
    check = ConnectSafelyProvider(h.client, clock=h.clock).check(h.account)
    assert (check.ready, check.credentials, check.account_status) == (True, "ok", "available")
    assert check.profile_id == ConnectSafelyFake.own_public_id(ACCOUNT)
    assert check.limits == {
        "connect": {"limit": 90, "used": 1, "remaining": 89, "window": "week", "reset_at": "2026-03-09T00:00:00+00:00"},
        "new_conversation": {"limit": 150, "used": 0, "remaining": 150, "window": "day",
                             "reset_at": "2026-03-03T00:00:00+00:00"}}
    h.control("POST", "auth", account_id=ACCOUNT, state="expired")
    check = ConnectSafelyProvider(h.client, clock=h.clock).check(h.account)
    assert (check.ready, check.credentials, check.account_status) == (False, "ok", "auth expired")
    assert check.problem == (f"the LinkedIn session of account {ACCOUNT} needs re-authentication (ConnectSafely says "
                             "status ERROR): reconnect it in ConnectSafely's dashboard, then "
                             "`seqrun senders resume alice`")
    wrong = Account(sender="alice", account_id=ACCOUNT, credentials={"api_key": "cs_wrong_000000000000"})
    check = h.provider.check(wrong)
    assert (check.ready, check.credentials) == (False, "rejected")


# --- secrets ------------------------------------------------------------------------------------------

def test_no_secret_in_any_log_line_or_error(h: ConnectSafelyHarness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    who = lead("secret-check")
    for kind in ("AUTH_EXPIRED", "RATE_LIMITED", "SERVER_ERROR", "UNAUTHORIZED", "QUOTA_CONNECT"):
        h.control("POST", "errors", kind=kind, count=1)
        try:
            h.provider.connect(h.account, who, note="Hi", key=f"c-{kind}")
        except ProviderError as err:
            errors += [str(err), err.message, repr(err)]
    down = ConnectSafelyProvider(make_client("http://127.0.0.1:9/linkedin?token=" + SECRET))
    try:
        down.visit(h.account, who, key="v2")
    except ProviderError as err:
        errors += [str(err), err.message]
    assert len(errors) >= 10
    text = "\n".join(errors + [r.getMessage() for r in caplog.records] + [caplog.text])
    assert SECRET not in text
    assert "token=" not in text


def test_a_reply_written_just_before_our_message_is_still_found_by_polling(h: ConnectSafelyHarness) -> None:
    who = lead("race")
    accepted(h, who)
    since = h.now()
    h.provider.conversation(h.account, who)  # the sync before the send: nothing from the lead yet
    h.advance(dt.timedelta(minutes=1))
    h.control("POST", "replies", account_id=ACCOUNT, profile_id="race", text="Actually, one question")
    h.advance(dt.timedelta(minutes=1))
    h.provider.send_message(h.account, who, text="Thanks for accepting", conversation_id=None, subject=None,
                            inmail=False, key="m")  # the thread's newest activity is now ours
    polled = h.provider.poll_events(h.account, since=since)
    assert [(e.kind, e.lead_key) for e in polled.events if e.kind == "replied"] == [("replied", "race")]
