"""What only the Edges driver promises, over real HTTP against its fake: labels, pages, keys, secrets."""
from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runner.providers.base import Account, ErrorKind, LeadRef, ProviderError
from runner.providers.edges import fake_reads
from runner.providers.edges.driver import EdgesProvider
from runner.providers.edges.webhook import parse_webhook
from runner.providers.fakeserver import FakeHTTPServer
from runner.providers.http import RequestBudget, make_client, redact

from .contract import expect_error
from .edges_harness import SECRET, START, EdgesHarness

UTC = dt.UTC


@pytest.fixture
def h() -> Iterator[EdgesHarness]:
    harness = EdgesHarness()
    yield harness
    harness.close()


def lead(name: str) -> LeadRef:
    return LeadRef(key=name, profile_url=f"https://www.linkedin.com/in/{name}")


# --- the wire ---------------------------------------------------------------------------------------

def test_requests_have_edges_shape_and_carry_our_key_in_custom_data(h: EdgesHarness) -> None:
    seen: list[httpx.Request] = []
    h.client.event_hooks["request"].append(seen.append)
    h.provider.connect(h.account, lead("ann-lee"), note="Hi Ann", key="k-1")
    (request,) = seen
    assert (request.method, request.url.path) == ("POST", "/v1/actions/linkedin-connect-profile/run/live")
    assert request.headers["X-API-Key"] == SECRET
    assert request.headers["User-Agent"].startswith("seqrun/")
    assert json.loads(request.content) == {
        "identity_ids": ["identity-alice"], "parameters": {"message": "Hi Ann"},
        "input": {"linkedin_profile_url": "https://www.linkedin.com/in/ann-lee", "custom_data": {"seqrun_key": "k-1"}}}
    (entry,) = h.control("GET", "ledger")["actions"]
    assert (entry["action"], entry["lead"], entry["seqrun_key"]) == ("connect", "ann-lee", "k-1")


def test_the_fake_refuses_inputs_plural_like_edges(h: EdgesHarness) -> None:
    response = httpx.post(f"{h.server.url}/v1/actions/linkedin-visit-profile/run/live", headers={"X-API-Key": SECRET},
                          json={"identity_ids": ["identity-alice"], "inputs": [{}]})
    assert response.status_code == 400
    body = response.json()
    assert (body["error_label"], body["message"]) == ("BAD_INPUT", "body must NOT have additional properties (inputs)")


SN_ID = "ACwAAB3xQ9kLmN2pR7sT4uV8wX1yZ5aBcDeFgHi"
SN_LEAD = LeadRef(key=f"sn:{SN_ID}", profile_url=f"https://www.linkedin.com/sales/lead/{SN_ID}")


def test_the_fake_takes_the_documented_sales_navigator_profile_id(h: EdgesHarness) -> None:
    response = httpx.post(f"{h.server.url}/v1/actions/salesnavigator-connect-profile/run/live",
                          headers={"X-API-Key": SECRET},
                          json={"identity_ids": ["identity-alice"], "input": {"sales_navigator_profile_id": SN_ID}})
    assert response.status_code == 200, response.text
    assert (response.json()["pending"], response.json()["sales_navigator_profile_id"]) == (True, SN_ID)
    (entry,) = h.control("GET", "ledger")["actions"]
    assert (entry["slug"], entry["lead"]) == ("salesnavigator-connect-profile", f"sn:{SN_ID}")


def test_a_sales_navigator_sender_invites_a_lead_given_by_its_sales_navigator_url(h: EdgesHarness) -> None:
    account = Account(sender="alice", account_id="identity-alice", account_type="sales_navigator",
                      credentials={"api_key": SECRET})
    seen: list[httpx.Request] = []
    h.client.event_hooks["request"].append(seen.append)
    h.provider.connect(account, SN_LEAD, note=None, key="sn-1")
    assert seen[0].url.path == "/v1/actions/salesnavigator-connect-profile/run/live"
    assert json.loads(seen[0].content)["input"] == {"sales_navigator_profile_id": SN_ID,
                                                    "custom_data": {"seqrun_key": "sn-1"}}
    # Edges lists people by their LinkedIn URL; a sent invitation also names the Sales Navigator id.
    restarted = EdgesProvider(h.client, clock=h.clock, sleep=lambda s: None)
    assert restarted.relationship(account, SN_LEAD).invite_pending
    assert restarted.find_action(account, SN_LEAD, action="connect", key="sn-1", since=START) is not None
    restarted.withdraw(account, SN_LEAD, invitation_id=None, key="sn-w")
    assert [e["action"] for e in h.control("GET", "ledger")["actions"]] == ["connect", "withdraw"]


def test_a_lead_given_by_its_sales_navigator_url_is_found_connected_by_the_id_the_invite_returned(
        h: EdgesHarness) -> None:
    account = Account(sender="alice", account_id="identity-alice", account_type="sales_navigator",
                      credentials={"api_key": SECRET})
    done = h.provider.connect(account, SN_LEAD, note=None, key="sn-1")
    h.advance(dt.timedelta(hours=3))  # accepted after two
    known = LeadRef(SN_LEAD.key, SN_LEAD.profile_url, provider_ids=dict(done.provider_ids))
    restarted = EdgesProvider(h.client, clock=h.clock, sleep=lambda s: None)
    relationship = restarted.relationship(account, known)
    assert (relationship.connected, relationship.invite_pending) == (True, False)


@pytest.mark.parametrize(("name", "body", "message"), [
    ("clock", {"advance_seconds": "soon"}, "/_fake/clock: could not convert string to float: 'soon'"),
    ("clock", {"now": "tomorrow"}, "/_fake/clock: Invalid isoformat string: 'tomorrow'"),
    ("errors", {"label": "LK_ERROR", "count": "x"}, "/_fake/errors: invalid literal for int() with base 10: 'x'"),
])
def test_a_control_call_with_a_bad_value_is_a_400_that_says_why(h: EdgesHarness, name: str, body: dict[str, Any],
                                                                 message: str) -> None:
    response = httpx.post(f"{h.server.url}/_fake/{name}", json=body)
    assert response.status_code == 400
    assert (response.json()["error_label"], response.json()["message"]) == ("BAD_INPUT", message)


# --- error labels -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("label", "kind"), [
    ("NOT_CONNECTED", ErrorKind.NOT_CONNECTED), ("ALREADY_CONNECTED", ErrorKind.ALREADY_CONNECTED),
    ("INVITATION_PENDING", ErrorKind.INVITATION_PENDING), ("PROFILE_NOT_ACCESSIBLE", ErrorKind.PROFILE_NOT_ACCESSIBLE),
    ("AUTH_EXPIRED", ErrorKind.AUTH_EXPIRED), ("INVALID_INPUT", ErrorKind.INVALID_INPUT),
    ("LK_ERROR", ErrorKind.TRANSIENT), ("LK_524", ErrorKind.TRANSIENT), ("GENERIC_ERROR", ErrorKind.TRANSIENT),
    ("NO_ACCESS", ErrorKind.API_KEY_REJECTED),
])
def test_every_seed_label_maps_to_its_kind(h: EdgesHarness, label: str, kind: ErrorKind) -> None:
    h.control("POST", "errors", label=label, action="linkedin-visit-profile", count=1)
    err = expect_error(kind, lambda: h.provider.visit(h.account, lead("ann"), key="v-1"))
    assert err.label == label
    h.provider.visit(h.account, lead("ann"), key="v-2")  # only the next call failed


def test_limit_reached_retries_at_postponed_until(h: EdgesHarness) -> None:
    h.control("POST", "errors", label="LIMIT_REACHED", action="linkedin-connect-profile", count=1)
    err = expect_error(ErrorKind.LIMIT_REACHED, lambda: h.provider.connect(h.account, lead("ann"), note=None, key="c"))
    assert (err.status, err.retry_at) == (429, dt.datetime(2026, 3, 3, tzinfo=UTC))


def test_status_429_retries_after_retry_after(h: EdgesHarness) -> None:
    h.control("POST", "errors", label="STATUS_429", action="linkedin-visit-profile", count=1)
    err = expect_error(ErrorKind.RATE_LIMITED, lambda: h.provider.visit(h.account, lead("ann"), key="v"))
    assert err.retry_at == START + dt.timedelta(seconds=60)


def test_a_retry_after_at_the_root_of_the_error_body_is_honoured() -> None:
    # Edges' pages write `retry_after` without saying where; seqrun reads it in `params` or at the root.
    class Busy:
        def handle(self, method: str, target: str, headers: Any, body: bytes) -> Any:
            return 429, {"Content-Type": "application/json"}, json.dumps(
                {"error_label": "STATUS_429", "message": "slow down", "status_code": 429, "retry_after": 120}).encode()

    with FakeHTTPServer(Busy()) as server, make_client(server.url + "/v1") as client:
        driver = EdgesProvider(client, clock=lambda: START, sleep=lambda s: None)
        account = Account(sender="alice", account_id="i", credentials={"api_key": SECRET})
        err = expect_error(ErrorKind.RATE_LIMITED, lambda: driver.visit(account, lead("ann"), key="v"))
        assert err.retry_at == START + dt.timedelta(seconds=120)


def test_smart_limit_of_the_fake_answers_limit_reached_with_postponed_until() -> None:
    h = EdgesHarness(smart_limits={"linkedin-visit-profile": 2})
    try:
        h.provider.visit(h.account, lead("aaa"), key="1")
        h.advance(dt.timedelta(minutes=1))
        h.provider.visit(h.account, lead("bbb"), key="2")
        err = expect_error(ErrorKind.LIMIT_REACHED, lambda: h.provider.visit(h.account, lead("ccc"), key="3"))
        assert err.retry_at == START + dt.timedelta(hours=24)
    finally:
        h.close()


def test_a_rejected_key_is_api_key_rejected_not_auth_expired(h: EdgesHarness) -> None:
    wrong = Account(sender="alice", account_id="identity-alice", credentials={"api_key": "edg_wrong_0000000000"})
    err = expect_error(ErrorKind.API_KEY_REJECTED, lambda: h.provider.visit(wrong, lead("ann"), key="v"))
    assert err.message == ("API key rejected (Edges answered 401 UNAUTHORIZED: invalid or missing API key); "
                           "check the key in the environment variable the sender names")
    missing = Account(sender="alice", account_id="identity-alice")
    err = expect_error(ErrorKind.API_KEY_REJECTED, lambda: h.provider.visit(missing, lead("ann"), key="v"))
    assert err.message == ("sender alice has no api_key: name its environment variable in credentials_env "
                           "(credentials_env: {api_key: …})")


def test_an_expired_session_is_auth_expired_and_senders_check_says_what_to_do(h: EdgesHarness) -> None:
    h.control("POST", "auth", identity_id="identity-alice", state="expired")
    expect_error(ErrorKind.AUTH_EXPIRED, lambda: h.provider.poll_events(h.account, since=None))
    check = EdgesProvider(h.client, clock=h.clock).check(h.account)
    assert (check.ready, check.credentials, check.account_status) == (False, "ok", "auth expired")
    assert check.problem == ("the LinkedIn session of identity identity-alice expired: reconnect LinkedIn in Edges, "
                             "then `seqrun senders resume alice`")
    h.control("POST", "auth", identity_id="identity-alice", state="ok")
    check = EdgesProvider(h.client, clock=h.clock).check(h.account)
    own = fake_reads.me(h.fake, "identity-alice", {}, {}, START)["id"]
    assert (check.ready, check.profile_id) == (True, str(own))
    assert check.limits["connect"] == {"limit": 25, "remaining": 25, "window": "24h"}


# --- pagination ---------------------------------------------------------------------------------------

def test_lists_follow_x_pagination_next_with_the_documented_spacing() -> None:
    h = EdgesHarness(smart_limits=None)
    try:
        _walk_pages(h)
    finally:
        h.close()


def _walk_pages(h: EdgesHarness) -> None:
    leads = [lead(f"p-{i:02d}") for i in range(45)]
    for i, who in enumerate(leads):  # 45 connections: two pages of 40
        h.provider.connect(h.account, who, note=None, key=f"c-{i}")
    h.advance(dt.timedelta(hours=3))
    h.slept.clear()
    fresh = EdgesProvider(h.client, clock=h.clock, sleep=h.slept.append)
    assert fresh.relationship(h.account, leads[0]).connected
    assert h.fake.requests["linkedin-extract-connections"] == 2
    polled = fresh.poll_events(h.account, since=START)
    assert len([e for e in polled.events if e.kind == "accepted"]) == 45
    assert h.slept == [2.0, 2.0]


class Flaky(httpx.HTTPTransport):
    """Real HTTP, except that the requests numbered in `fail_at` (from 1) never get an answer."""

    def __init__(self, fail_at: set[int]) -> None:
        super().__init__()
        self.fail_at, self.count = fail_at, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        if self.count in self.fail_at:
            raise httpx.ReadTimeout("no answer", request=request)
        return super().handle_request(request)


def test_a_walk_of_connections_cut_short_is_walked_again_in_full() -> None:
    h = EdgesHarness(smart_limits=None)
    try:
        leads = [lead(f"w-{i:02d}") for i in range(45)]
        for i, who in enumerate(leads):  # accepted a minute apart: the oldest five are on page 2
            h.provider.connect(h.account, who, note=None, key=f"c-{i}")
            h.advance(dt.timedelta(minutes=1))
        h.advance(dt.timedelta(hours=3))
        with make_client(h.server.url + "/v1", transport=Flaky(fail_at={2})) as client:
            driver = EdgesProvider(client, clock=h.clock, sleep=lambda s: None)
            expect_error(ErrorKind.TRANSIENT, lambda: driver.relationship(h.account, leads[-1]))
            assert driver.relationship(h.account, leads[0]).connected
    finally:
        h.close()


def test_a_next_page_on_another_host_is_refused() -> None:
    class Elsewhere:
        def handle(self, method: str, target: str, headers: Any, body: bytes) -> Any:
            if "linkedin-me" in target:
                return 200, {"Content-Type": "application/json"}, b'{"id": 1}'
            return 200, {"Content-Type": "application/json",
                         "X-Pagination-Next": "https://evil.example/v1/x?cursor=abc"}, b"[]"

    with FakeHTTPServer(Elsewhere()) as server, make_client(server.url + "/v1") as client:
        driver = EdgesProvider(client, sleep=lambda s: None)
        account = Account(sender="alice", account_id="i", credentials={"api_key": SECRET})
        err = expect_error(ErrorKind.TRANSIENT, lambda: driver.poll_events(account, since=None))
        assert err.message == "refusing a next-page URL on another host (evil.example)"


# --- reconciliation -----------------------------------------------------------------------------------

def test_find_action_after_a_crash_answers_from_what_edges_shows(h: EdgesHarness) -> None:
    since = h.now()
    connected, messaged, visited = lead("con"), lead("msg"), lead("vis")
    h.provider.connect(h.account, connected, note=None, key="c")
    h.provider.connect(h.account, messaged, note=None, key="pre")
    h.advance(dt.timedelta(hours=2))
    sent = h.provider.send_message(h.account, messaged, text="Hello", conversation_id=None, subject=None,
                                   inmail=False, key="m")
    h.provider.visit(h.account, visited, key="v")
    restarted = EdgesProvider(h.client, clock=h.clock, sleep=lambda s: None)  # a new process: no memo
    found = restarted.find_action(h.account, messaged, action="message", key="m", since=since)
    assert found is not None and (found.provider_id, found.conversation_id) == (sent.provider_id, sent.conversation_id)
    assert restarted.find_action(h.account, connected, action="connect", key="c", since=since) is not None
    assert restarted.find_action(h.account, lead("nobody"), action="connect", key="x", since=since) is None
    assert restarted.find_action(h.account, visited, action="visit", key="v", since=since) is None


def test_a_lost_response_is_found_by_find_action_and_not_sent_again(h: EdgesHarness) -> None:
    who = lead("lost")
    since = h.now()
    h.control("POST", "errors", label="LK_524", action="linkedin-connect-profile", count=1, after=True)
    expect_error(ErrorKind.TRANSIENT, lambda: h.provider.connect(h.account, who, note=None, key="k"))
    found = h.provider.find_action(h.account, who, action="connect", key="k", since=since)
    assert found is not None and found.invitation_id is not None and found.invitation_id.startswith("urn:li:")
    assert [e["lead"] for e in h.control("GET", "ledger")["actions"]] == ["lost"]


def test_withdraw_finds_the_urn_in_sent_invitations(h: EdgesHarness) -> None:
    who = lead("wdr")
    h.provider.connect(h.account, who, note=None, key="c")
    fresh = EdgesProvider(h.client, clock=h.clock, sleep=lambda s: None)
    done = fresh.withdraw(h.account, who, invitation_id=None, key="w")
    assert done.invitation_id is not None and done.invitation_id.startswith("urn:li:fsd_invitation:")
    entry = h.control("GET", "ledger")["actions"][-1]
    assert (entry["action"], entry["invitation_urn"], entry["seqrun_key"]) == ("withdraw", done.invitation_id, "w")


# --- events -------------------------------------------------------------------------------------------

def test_a_lead_who_wrote_first_is_a_reply_from_the_lead_and_ours_are_not() -> None:
    h = EdgesHarness(sandbox=dict(messaged_first_rate=1.0, connected_rate=0.0, pending_rate=0.0,
                                  recent_conversation_rate=0.0, inaccessible_rate=0.0))
    try:
        who = lead("talker")
        conversation = h.provider.conversation(h.account, who)
        assert conversation.exists and conversation.last_message is not None and conversation.last_message.from_lead
        polled = h.provider.poll_events(h.account, since=None)
        assert [(e.kind, e.lead_key) for e in polled.events if e.kind == "replied"] == [("replied", "talker")]
    finally:
        h.close()


# --- secrets ------------------------------------------------------------------------------------------

def test_no_secret_in_any_log_line_or_error(h: EdgesHarness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    who = lead("secret-check")
    h.provider.connect(h.account, who, note="Hi", key="c")
    for label in ("AUTH_EXPIRED", "STATUS_429", "LK_ERROR", "UNAUTHORIZED"):
        h.control("POST", "errors", label=label, count=1)
        try:
            h.provider.poll_events(h.account, since=None)
        except ProviderError as err:
            errors += [str(err), err.message, repr(err)]
    wrong = Account(sender="alice", account_id="identity-alice", credentials={"api_key": SECRET + "x"})
    try:
        h.provider.visit(wrong, who, key="v")
    except ProviderError as err:
        errors += [str(err), err.message]
    down = EdgesProvider(make_client("http://127.0.0.1:9/v1?token=" + SECRET), sleep=lambda s: None)
    try:
        down.visit(h.account, who, key="v2")
    except ProviderError as err:
        errors += [str(err), err.message]
    assert len(errors) >= 10
    text = "\n".join(errors + [r.getMessage() for r in caplog.records] + [caplog.text])
    assert SECRET not in text
    assert "token=" not in text


@pytest.mark.parametrize("bad", [SECRET + "\r", SECRET + "\n", SECRET[:9] + "\u00e9" + SECRET[9:]])
def test_a_key_no_header_can_carry_is_refused_before_a_request_and_not_shown(
        h: EdgesHarness, bad: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    account = Account(sender="alice", account_id="identity-alice", credentials={"api_key": bad})
    err = expect_error(ErrorKind.API_KEY_REJECTED, lambda: h.provider.visit(account, lead("ann"), key="v"))
    assert err.message == ("sender alice: its api_key holds a line break, a control character or a non-ASCII "
                           "character, which an HTTP header cannot carry (the value is not shown)")
    assert sum(h.fake.requests.values()) == 0
    assert SECRET[9:] not in caplog.text


def test_redact_masks_query_strings_and_registered_secrets() -> None:
    assert redact(f"GET https://api.example/v1/x?token={SECRET}&a=1 failed with {SECRET}") == \
        "GET https://api.example/v1/x?[redacted] failed with [redacted]"


# --- request budget ---------------------------------------------------------------------------------

class Ticks:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_budget_waits_for_tokens_and_refuses_long_waits() -> None:
    ticks = Ticks()
    budget = RequestBudget(60, 60, burst=2, max_wait=5, clock=ticks, sleep=ticks.sleep,
                           wall=lambda: START + dt.timedelta(seconds=ticks.t))
    for _ in range(4):
        budget.acquire("key")
    assert ticks.t == 2.0  # two from the burst, then one a second
    budget.blocked("key", START + dt.timedelta(seconds=62))
    err = expect_error(ErrorKind.RATE_LIMITED, lambda: budget.acquire("key"))
    assert (err.label, err.retry_at) == ("REQUEST_BUDGET", START + dt.timedelta(seconds=62))


def test_a_429_is_never_retried_before_its_reset(h: EdgesHarness) -> None:
    ticks = Ticks()
    budget = RequestBudget(600, 60, clock=ticks, sleep=ticks.sleep, wall=h.clock)
    driver = EdgesProvider(h.client, clock=h.clock, budget=budget, sleep=lambda s: None)
    h.control("POST", "errors", label="RATE_LIMITED", count=1)
    first = expect_error(ErrorKind.RATE_LIMITED, lambda: driver.visit(h.account, lead("aaa"), key="1"))
    assert first.retry_at == START + dt.timedelta(seconds=60)
    before = sum(h.fake.requests.values())
    again = expect_error(ErrorKind.RATE_LIMITED, lambda: driver.visit(h.account, lead("aaa"), key="2"))
    assert again.label == "REQUEST_BUDGET" and again.retry_at == first.retry_at
    assert sum(h.fake.requests.values()) == before  # nothing went out
    ticks.t += 61
    h.advance(dt.timedelta(seconds=61))
    driver.visit(h.account, lead("aaa"), key="3")


# --- webhooks -----------------------------------------------------------------------------------------

def test_integration_webhooks_are_parsed_behind_the_shared_secret() -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    class Receiver:
        def handle(self, method: str, target: str, headers: Any, body: bytes) -> Any:
            received.append((dict(headers), body))
            return 204, {}, b""

    with FakeHTTPServer(Receiver()) as receiver:
        h = EdgesHarness(webhook_url=receiver.url + "/hooks/edges", webhook_secret="whsec-shared-0001")
        try:
            h.control("POST", "auth", identity_id="identity-alice", state="expired")
        finally:
            h.close()
    ((headers, body),) = received
    (event,) = parse_webhook(headers, body, secret="whsec-shared-0001", received_at=START)
    assert (event.kind, event.account_id, event.occurred_at) == ("auth_expired", "identity-alice", START)
    assert parse_webhook(headers, body, secret="whsec-shared-0001", received_at=START)[0].event_id == event.event_id
    err = expect_error(ErrorKind.INVALID_INPUT, lambda: parse_webhook({}, body, secret="whsec-shared-0001",
                                                                      received_at=START))
    assert err.message == "webhook refused: missing or wrong X-Webhook-Secret"
