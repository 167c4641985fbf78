"""Salesflow campaign webhooks: the per-sender token in the URL, the seed's payload parsed into the same
events polling finds, re-deliveries named alike, a wrong token refused before anything is read, and
the fake delivering to the webhooks `admin.ensure_webhook` sets up (idempotently)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pathlib
import string
from typing import Any, Iterator, Mapping

import pytest

from runner.providers.base import Account, ErrorKind, LeadRef, ProviderError, ProviderEvent
from runner.providers.fakeserver import FakeHTTPServer, Reply
from runner.providers.salesflow_campaign import admin
from runner.providers.salesflow_campaign.webhook import (
    ROUTE,
    parse_webhook,
    token_matches,
    webhook_token,
    webhook_url,
)
from runner.store import Lead, db, open_store
from runner.store.lookups import lead_key_by_provider_id

from .campaign_harness import ACCOUNT, CAMPAIGN, CampaignHarness
from .contract import new_key

UTC = dt.timezone.utc
SECRET = "whsec_0f3c6b9e2d5a8c1f4e7b0a3d6c9f2e5b"
RECEIVED = dt.datetime(2021, 2, 18, 17, 0, tzinfo=UTC)
ACCOUNT_ = Account(sender="carol", account_id=ACCOUNT, credentials={"webhook_secret": SECRET},
                   settings={"campaign_id": str(CAMPAIGN)})
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


def parse(payload: Mapping[str, Any], token: str | None = None, **options: Any) -> list[ProviderEvent]:
    return parse_webhook(json.dumps(payload).encode(), token=token or webhook_token(SECRET, ACCOUNT_),
                         account=ACCOUNT_, secret=SECRET, received_at=RECEIVED, **options)


# --- the token --------------------------------------------------------------------------------------

def test_the_token_is_unguessable_per_sender_account_campaign_and_secret() -> None:
    token = webhook_token(SECRET, ACCOUNT_)
    assert len(token) == 32 and set(token) <= set(string.ascii_letters + string.digits + "-_")
    assert webhook_token(SECRET, ACCOUNT_) == token  # computed again, never stored
    others = [webhook_token("another-secret-value", ACCOUNT_),
              webhook_token(SECRET, dataclasses.replace(ACCOUNT_, sender="dave")),
              webhook_token(SECRET, dataclasses.replace(ACCOUNT_, account_id="322")),
              webhook_token(SECRET, dataclasses.replace(ACCOUNT_, settings={"campaign_id": "457"}))]
    assert len(set(others) | {token}) == 5
    assert webhook_url("https://hooks.example.com/seqrun/", ACCOUNT_, SECRET) == \
        f"https://hooks.example.com/seqrun/{ROUTE}/carol/{token}"


def test_only_the_right_token_matches() -> None:
    token = webhook_token(SECRET, ACCOUNT_)
    assert token_matches(token, ACCOUNT_, SECRET)
    assert not token_matches(token[:-1] + ("A" if token[-1] != "A" else "B"), ACCOUNT_, SECRET)
    assert not token_matches("", ACCOUNT_, SECRET)
    assert not token_matches(token, ACCOUNT_, "")
    with pytest.raises(ProviderError) as caught:
        webhook_token("", ACCOUNT_)
    assert caught.value.message == ("sender carol has no webhook_secret: name its environment variable in "
                                    "credentials_env (credentials_env: {webhook_secret: …})")


# --- parsing ----------------------------------------------------------------------------------------

def test_the_seed_sample_is_an_acceptance_of_the_member_by_its_url() -> None:
    (event,) = parse(SAMPLE)
    assert (event.kind, event.lead_key, event.account_id) == ("accepted", "john-smith-123321", ACCOUNT)
    assert event.event_id == f"salesflow-campaign:{ACCOUNT}:{CAMPAIGN}:john-smith-123321:accepted"
    assert event.occurred_at == dt.datetime(2021, 2, 18, 16, 33, 44, 590570, tzinfo=UTC)
    assert event.data == {"linkedin_member_id": "1234567890", "campaign_id": str(CAMPAIGN),
                          "integration_run_on": "INTEGRATION_RUN_ON_CONNECTED"}
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
    assert (event.lead_key, event.event_id) == \
        ("jane-doe", f"salesflow-campaign:{ACCOUNT}:{CAMPAIGN}:jane-doe:accepted")
    (unresolved,) = parse(payload)
    assert (unresolved.lead_key, unresolved.event_id.split(":")[3]) == (None, "member-46875434")


def test_a_wrong_token_is_refused_before_the_body_is_read() -> None:
    wrong = "x" * 32
    for body in (json.dumps(SAMPLE).encode(), b"not json at all"):
        with pytest.raises(ProviderError) as caught:
            parse_webhook(body, token=wrong, account=ACCOUNT_, secret=SECRET, received_at=RECEIVED)
        err = caught.value
        assert (err.kind, err.status, err.label) == (ErrorKind.INVALID_INPUT, 404, "BAD_TOKEN")
        assert err.message == "webhook refused: the token in the URL is not this sender's"


def test_a_body_that_is_not_a_json_object_is_refused() -> None:
    token = webhook_token(SECRET, ACCOUNT_)
    for body in (b"{not json", b"[1, 2]"):
        with pytest.raises(ProviderError) as caught:
            parse_webhook(body, token=token, account=ACCOUNT_, secret=SECRET, received_at=RECEIVED)
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


# --- the fake delivers to the webhooks set up through the API -----------------------------------------

class Receiver:
    """A stand-in for the daemon's endpoint: routes by sender, parses, answers 404 on a wrong token."""

    def __init__(self) -> None:
        self.events: list[ProviderEvent] = []
        self.refused = 0

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        prefix = f"/{ROUTE}/"
        sender, _, token = target[len(prefix):].partition("/")
        try:
            assert target.startswith(prefix) and sender == ACCOUNT_.sender
            self.events += parse_webhook(body, token=token, account=ACCOUNT_, secret=SECRET, received_at=RECEIVED)
        except ProviderError as err:
            self.refused += 1
            return err.status or 400, {}, b""
        return 200, {}, b""


@pytest.fixture
def wired() -> Iterator[tuple[CampaignHarness, Receiver, FakeHTTPServer]]:
    harness, receiver = CampaignHarness(), Receiver()
    with FakeHTTPServer(receiver) as server:
        yield harness, receiver, server
    harness.close()


def test_deliveries_carry_the_seed_payload_and_match_the_poll(
        wired: tuple[CampaignHarness, Receiver, FakeHTTPServer]) -> None:
    h, receiver, server = wired
    account = dataclasses.replace(h.account, credentials={**h.account.credentials, "webhook_secret": SECRET})
    url = webhook_url(server.url, account, SECRET)
    first = admin.ensure_webhook(h.provider.api, account, url)
    assert (first.created, first.attached, first.already) == \
        (True, ["MEMBER_CONNECTED", "REPLY_DETECTED", "INVITATION_WITHDRAWN"], [])
    again = admin.ensure_webhook(h.provider.api, account, url)
    assert (again.webhook_id, again.created, again.attached) == (first.webhook_id, False, [])
    assert again.already == ["MEMBER_CONNECTED", "REPLY_DETECTED", "INVITATION_WITHDRAWN"]

    start = h.now()
    h.provider.connect(account, LeadRef("anna-meyer", "https://www.linkedin.com/in/anna-meyer"), note=None,
                       key=new_key())
    h.advance(dt.timedelta(hours=8))
    h.control("GET", "clock")  # the fake catches up: acceptance at +2 h, message at +3 h, reply at +6 h
    assert [d["event"] for d in h.fake.deliveries] == ["INTEGRATION_RUN_ON_CONNECTED",
                                                       "INTEGRATION_RUN_ON_REPLY_DETECTED"]
    assert all(d["status"] == 200 for d in h.fake.deliveries)
    assert [(e.kind, e.lead_key) for e in receiver.events] == [("accepted", "anna-meyer"), ("replied", "anna-meyer")]
    polled = h.provider.poll_events(account, since=start)
    assert sorted(e.event_id for e in receiver.events) == sorted(e.event_id for e in polled.events)
    accepted = next(e for e in receiver.events if e.kind == "accepted")
    assert accepted.occurred_at == next(e for e in polled.events if e.kind == "accepted").occurred_at

    member = h.fake.campaigns.find(ACCOUNT, "anna-meyer")
    from runner.providers.salesflow_campaign.fake_shapes import webhook_payload

    assert set(webhook_payload(member, h.fake.campaigns.campaigns[CAMPAIGN], 1)) == set(SAMPLE)
    assert h.fake.redeliver(0) == 200  # Salesflow retrying: the same event again
    assert receiver.events[-1] == receiver.events[0]

    removed = admin.remove_webhook(h.provider.api, account, url)
    assert (removed.detached, removed.deleted) == (["MEMBER_CONNECTED", "REPLY_DETECTED", "INVITATION_WITHDRAWN"],
                                                   True)
    assert h.fake.webhooks == {}
    assert admin.remove_webhook(h.provider.api, account, url).webhook_id is None  # nothing left to remove


def test_a_delivery_to_a_url_without_the_right_token_is_refused(
        wired: tuple[CampaignHarness, Receiver, FakeHTTPServer]) -> None:
    h, receiver, server = wired
    admin.ensure_webhook(h.provider.api, h.account, f"{server.url}/{ROUTE}/carol/{'A' * 32}")
    h.provider.connect(h.account, LeadRef("anna-meyer", "https://www.linkedin.com/in/anna-meyer"), note=None,
                       key=new_key())
    h.advance(dt.timedelta(hours=3))
    h.control("GET", "clock")
    assert [d["status"] for d in h.fake.deliveries] == [404]
    assert (receiver.events, receiver.refused) == ([], 1)
