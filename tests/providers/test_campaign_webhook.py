"""Salesflow campaign webhooks: the per-sender token in the URL, the seed's payload parsed into the same
events polling finds, re-deliveries named alike, a wrong token refused before anything is read, and
the fake delivering, through the shared receiver (`runner.webhooks`), to the webhooks
`admin.ensure_webhook` sets up (idempotently)."""
from __future__ import annotations

import datetime as dt
import json
import pathlib
import string
from typing import Any, Iterator, Mapping

import pytest

from runner.providers.base import ErrorKind, LeadRef, ProviderError, ProviderEvent
from runner.providers.fakeserver import FakeHTTPServer
from runner.providers.salesflow_campaign import admin
from runner.providers.salesflow_campaign.fake_shapes import webhook_payload
from runner.providers.salesflow_campaign.webhook import (
    ROUTE,
    parse_webhook,
    token_matches,
    verify_path,
    webhook_token,
    webhook_url,
)
from runner.store import Lead, db, open_store
from runner.store.lookups import lead_key_by_provider_id
from runner.webhooks import WebhookInbox, WebhookReceiver

from .stored_inbox import StoredInbox

from .campaign_harness import ACCOUNT, CAMPAIGN, CampaignHarness
from .contract import new_key

UTC = dt.timezone.utc
SECRET = "whsec_0f3c6b9e2d5a8c1f4e7b0a3d6c9f2e5b"
RECEIVED = dt.datetime(2021, 2, 18, 17, 0, tzinfo=UTC)
#: seed 002's data sample, field for field
SAMPLE: dict[str, Any] = {
    "IntegrationType": "INTEGRATION_TYPE_WEBHOOK", "IntegrationRunOn": "INTEGRATION_RUN_ON_CONNECTED",
    "MemberId": 0, "LinkedInMemberId": 1234567890, "FirstName": "John", "LastName": "Smith",
    "Occupation": "Founder and Chief Executive Officer at Smith & Co", "Company": "Smith & Co",
    "Location": "Miami/Fort Lauderdale Area", "PhoneNumber": "123 4567890", "Email": "[email protected]",
    "Address": "", "BirthdayYear": 1980, "BirthdayMonth": 12, "BirthdayDay": 1,
    "DateAdded": "2021-02-18T15:33:44.5905705+00:00", "ConnectedAt": "2021-02-18T16:33:44.5905705+00:00",
    "MemberUrl": "https://linkedin.com/in/john-smith-123321", "Industry": "Banking", "Distance": "DISTANCE_3",
    "CurrentPosition": "Chief Executive Officer", "Status": "MEMBER_CONNECTED", "HasReply": False,
    "IsMuted": False, "IsSeen": False, "ConnectionsCount": 100, "FollowersCount": 100, "IsSalesNavigator": False,
    "LinkedInAccount": {"FirstName": "Bob", "LastName": "White", "Username": "[email protected]"},
    **{f"Custom{i}": f"CustomValue{i}" for i in range(1, 11)},
    "MemberActionsFormatted": "<p>Connection message [2/18/2021 4:33 PM]: This is a test connection message</p>",
    "MemberCampaigns": [{"CampaignName": "Test campaign"}],
}


def parse(payload: Mapping[str, Any], **options: Any) -> list[ProviderEvent]:
    return parse_webhook(json.dumps(payload).encode(), sender="carol", account_id=ACCOUNT, received_at=RECEIVED,
                         **options)


# --- the token --------------------------------------------------------------------------------------

def test_the_token_is_unguessable_per_sender_and_secret() -> None:
    token = webhook_token(SECRET, "carol")
    assert len(token) == 32 and set(token) <= set(string.ascii_letters + string.digits + "-_")
    assert webhook_token(SECRET, "carol") == token  # computed again, never stored
    assert len({token, webhook_token("another-secret-value", "carol"), webhook_token(SECRET, "dave")}) == 3
    assert webhook_url("https://hooks.example.com/seqrun/", "carol", SECRET) == \
        f"https://hooks.example.com/seqrun/{ROUTE}/carol/{token}"


def test_only_the_right_token_matches_under_any_current_secret() -> None:
    token = webhook_token(SECRET, "carol")
    assert token_matches(token, "carol", [SECRET])
    assert token_matches(token, "carol", ["an-older-secret-value", SECRET])  # while a secret is rotated
    assert not token_matches(token, "dave", [SECRET])
    assert not token_matches(token[:-1] + ("A" if token[-1] != "A" else "B"), "carol", [SECRET])
    assert not token_matches("", "carol", [SECRET])
    assert not token_matches(token, "carol", [""])
    assert verify_path(f"carol/{token}", [SECRET]) == "carol"
    with pytest.raises(ProviderError) as caught:
        webhook_token("", "carol")
    assert caught.value.message == ("sender carol has no webhook_secret: name its environment variable in "
                                    "credentials_env (credentials_env: {webhook_secret: …})")


@pytest.mark.parametrize("path", ["carol/" + "x" * 32, "dave/TOKEN", "carol", "", "carol/TOKEN/more", "../carol/TOKEN",
                                  "TOKEN"])
def test_a_url_without_the_senders_token_is_refused(path: str) -> None:
    path = path.replace("TOKEN", webhook_token(SECRET, "carol"))
    with pytest.raises(ProviderError) as caught:
        verify_path(path, [SECRET])
    err = caught.value
    assert (err.kind, err.status, err.label) == (ErrorKind.INVALID_INPUT, 401, "BAD_TOKEN")
    assert err.message == "webhook refused: the URL does not carry a sender's token"


# --- parsing ----------------------------------------------------------------------------------------

def test_the_seed_sample_is_an_acceptance_of_the_member_by_its_url() -> None:
    (event,) = parse(SAMPLE)
    assert (event.kind, event.lead_key, event.account_id) == ("accepted", "john-smith-123321", ACCOUNT)
    assert event.event_id == "salesflow-campaign:carol:john-smith-123321:accepted"
    assert event.occurred_at == dt.datetime(2021, 2, 18, 16, 33, 44, 590570, tzinfo=UTC)
    assert event.data == {"linkedin_member_id": "1234567890", "integration_run_on": "INTEGRATION_RUN_ON_CONNECTED"}
    assert parse(SAMPLE) == [event]  # a re-delivery is the same event


@pytest.mark.parametrize("run_on, status, has_reply, kind", [
    ("INTEGRATION_RUN_ON_REPLY_DETECTED", "MEMBER_CONNECTED", True, "replied"),
    ("INTEGRATION_RUN_ON_INVITATION_WITHDRAWN", "MEMBER_INVITATION_WITHDRAWN", False, "invite_withdrawn"),
    (None, "MEMBER_INVITATION_WITHDRAWN", False, "invite_withdrawn"),
    (None, "MEMBER_CONNECTED", True, "replied"),
    (None, "MEMBER_DISCONNECTED", False, None),
    ("INTEGRATION_RUN_ON_SOMETHING_ELSE", "MEMBER_CONNECTED", False, None),
])
def test_each_event_by_its_run_on_or_status(run_on: str | None, status: str, has_reply: bool,
                                             kind: str | None) -> None:
    payload = {**SAMPLE, "IntegrationRunOn": run_on, "Status": status, "HasReply": has_reply}
    events = parse(payload)
    assert [e.kind for e in events] == ([kind] if kind else [])
    if kind in ("replied", "invite_withdrawn"):
        assert events[0].occurred_at == RECEIVED  # Salesflow tells no time for those: when it arrived


def test_a_member_without_url_is_found_by_its_member_id() -> None:
    payload = {**SAMPLE, "MemberUrl": None, "MemberId": 46875434}
    (event,) = parse(payload, resolve=lambda name, value: "jane-doe" if (name, value) ==
                     ("salesflow_member_id", "46875434") else None)
    assert (event.lead_key, event.event_id) == ("jane-doe", "salesflow-campaign:carol:jane-doe:accepted")
    (unresolved,) = parse(payload)
    assert (unresolved.lead_key, unresolved.event_id) == (None, "salesflow-campaign:carol:member-46875434:accepted")


def test_a_body_that_is_not_a_json_object_naming_a_member_is_refused() -> None:
    for body in (b"{not json", b"[1, 2]", json.dumps({**SAMPLE, "MemberUrl": None, "LinkedInMemberId": None}).encode()):
        with pytest.raises(ProviderError) as caught:
            parse_webhook(body, sender="carol", account_id=ACCOUNT, received_at=RECEIVED)
        assert (caught.value.status, caught.value.label) == (400, "BAD_BODY")


def test_the_store_finds_a_lead_by_its_member_id(tmp_path: pathlib.Path) -> None:
    open_store(str(tmp_path / "seqrun.db"))
    try:
        now = dt.datetime(2026, 3, 2, tzinfo=UTC)
        Lead.create(key="jane-doe", profile_url="https://www.linkedin.com/in/jane-doe", created_at=now, updated_at=now,
                    provider_ids={"salesflow_member_id": "46875434"})
        assert lead_key_by_provider_id("salesflow_member_id", "46875434") == "jane-doe"
        assert lead_key_by_provider_id("salesflow_member_id", "1") is None
        with pytest.raises(ValueError):
            lead_key_by_provider_id("x') OR 1=1 --", "1")
    finally:
        db.close()


# --- the fake delivers to the webhooks set up through the API, via the shared receiver -----------------

@pytest.fixture
def wired() -> Iterator[tuple[CampaignHarness, WebhookInbox, FakeHTTPServer]]:
    harness = CampaignHarness()
    inbox = StoredInbox({"salesflow-campaign": [SECRET]}, clock=harness.clock)
    inbox.mount("salesflow-campaign", harness.provider)
    with FakeHTTPServer(WebhookReceiver(inbox)) as server:
        yield harness, inbox, server
    harness.close()
    inbox.close()


def test_deliveries_carry_the_seed_payload_and_match_the_poll(
        wired: tuple[CampaignHarness, WebhookInbox, FakeHTTPServer]) -> None:
    h, inbox, server = wired
    url = webhook_url(server.url, "carol", SECRET)
    first = admin.ensure_webhook(h.provider.api, h.account, url)
    assert (first.created, first.attached, first.already) == \
        (True, ["MEMBER_CONNECTED", "REPLY_DETECTED", "INVITATION_WITHDRAWN"], [])
    again = admin.ensure_webhook(h.provider.api, h.account, url)
    assert (again.webhook_id, again.created, again.attached) == (first.webhook_id, False, [])
    assert again.already == ["MEMBER_CONNECTED", "REPLY_DETECTED", "INVITATION_WITHDRAWN"]

    start = h.now()
    h.provider.connect(h.account, LeadRef("anna-meyer", "https://www.linkedin.com/in/anna-meyer"), note=None,
                       key=new_key())
    h.advance(dt.timedelta(hours=8))
    h.control("GET", "clock")  # the fake catches up: acceptance at +2 h, message at +3 h, reply at +6 h
    assert [d["event"] for d in h.fake.deliveries] == ["INTEGRATION_RUN_ON_CONNECTED",
                                                       "INTEGRATION_RUN_ON_REPLY_DETECTED"]
    assert all(d["status"] == 200 for d in h.fake.deliveries)
    received = inbox.drain()
    assert [(e.kind, e.lead_key, e.account_id) for e in received] == [("accepted", "anna-meyer", ACCOUNT),
                                                                     ("replied", "anna-meyer", ACCOUNT)]
    polled = h.provider.poll_events(h.account, since=start)
    assert sorted(e.event_id for e in received) == sorted(e.event_id for e in polled.events)
    accepted = next(e for e in received if e.kind == "accepted")
    assert accepted.occurred_at == next(e for e in polled.events if e.kind == "accepted").occurred_at

    member = h.fake.campaigns.find(ACCOUNT, "anna-meyer")
    assert set(webhook_payload(member, h.fake.campaigns.campaigns[CAMPAIGN], 1)) == set(SAMPLE)
    assert h.fake.redeliver(0) == 200  # Salesflow retrying: the same event, dropped as a repeat
    assert inbox.drain() == [] and inbox.stats["duplicate_events"] == 1

    removed = admin.remove_webhook(h.provider.api, h.account, url)
    assert (removed.detached, removed.deleted) == (["MEMBER_CONNECTED", "REPLY_DETECTED", "INVITATION_WITHDRAWN"],
                                                   True)
    assert h.fake.webhooks == {}
    assert admin.remove_webhook(h.provider.api, h.account, url).webhook_id is None  # nothing left to remove


def test_a_delivery_to_a_url_without_the_right_token_is_refused(
        wired: tuple[CampaignHarness, WebhookInbox, FakeHTTPServer]) -> None:
    h, inbox, server = wired
    admin.ensure_webhook(h.provider.api, h.account, f"{server.url}/{ROUTE}/carol/{'A' * 32}")
    h.provider.connect(h.account, LeadRef("anna-meyer", "https://www.linkedin.com/in/anna-meyer"), note=None,
                       key=new_key())
    h.advance(dt.timedelta(hours=3))
    h.control("GET", "clock")
    assert [d["status"] for d in h.fake.deliveries] == [401]
    assert inbox.drain() == [] and inbox.stats["refused"] == 1
