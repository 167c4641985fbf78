"""The salesflow-campaign driver against its fake over HTTP: the import, the status bit field in both
forms, events by polling, Salesflow's error statuses with their bodies, and the token kept out of
every message."""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

import pytest

from runner.providers.base import ErrorKind, LeadRef, ProviderError
from runner.providers.salesflow_campaign.api import parse_status, status_names
from runner.providers.salesflow_campaign.driver import CampaignProvider
from runner.providers.salesflow_campaign.fake import Pace

from .campaign_harness import ACCOUNT, CAMPAIGN, CERTAIN, QUICK, TOKEN, CampaignHarness
from .contract import new_key


@pytest.fixture
def h() -> Iterator[CampaignHarness]:
    harness = CampaignHarness()
    yield harness
    harness.close()


def lead(name: str, **fields: str) -> LeadRef:
    return LeadRef(key=name, profile_url=f"https://www.linkedin.com/in/{name}", fields=fields)


def connect(h: CampaignHarness, who: LeadRef) -> None:
    h.provider.connect(h.account, who, note=None, key=new_key())


# --- the status bit field ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, bits", [
    (4, 4), ("4", 4), (1025, 1025), ("MEMBER_CONNECTED", 4), ("MEMBER_PENDING, MEMBER_ERROR", 1025),
    ("member_invitation_sent,MEMBER_DUPLICATE", 2050), ("MEMBER_NOT_SET", 0), ("MEMBER_IMPORTED, SOMETHING_NEW", 32),
    (None, None), ("", None), ("NOTHING_WE_KNOW", None), (True, None), (4.0, 4),
])
def test_status_is_read_as_a_number_or_as_names(value: object, bits: int | None) -> None:
    assert parse_status(value) == bits


def test_status_names_are_the_getcontact_form() -> None:
    assert status_names(1025) == "MEMBER_PENDING, MEMBER_ERROR"
    assert status_names(0) == "MEMBER_NOT_SET"


# --- connect = members/Import -----------------------------------------------------------------------

def test_connect_imports_the_lead_with_its_names_into_the_senders_campaign(h: CampaignHarness) -> None:
    who = lead("jane-doe", full_name="Jane van Doe", job_title="CTO", location="Berlin")
    result = h.provider.connect(h.account, who, note=None, key=new_key())
    (entry,) = h.fake.ledger
    assert (entry["action"], entry["lead"], entry["campaign_id"], entry["account_id"]) == \
        ("connect", "jane-doe", CAMPAIGN, ACCOUNT)
    member = h.fake.campaigns.members[entry["member_id"]]
    assert (member.first_name, member.last_name, member.occupation, member.location) == \
        ("Jane", "van Doe", "CTO", "Berlin")
    assert result.provider_id == str(member.member_id)
    assert result.provider_ids == {"salesflow_member_id": str(member.member_id)}
    assert result.invitation_id is None  # the campaign sends the invitation, later


def test_the_campaign_invites_at_its_own_pace(h: CampaignHarness) -> None:
    h.fake.campaigns.campaigns[CAMPAIGN].pace = Pace(invite_every=dt.timedelta(minutes=30), invites_per_day=2)
    for name in ("a-lead", "b-lead", "c-lead"):
        connect(h, lead(name))
    h.advance(dt.timedelta(hours=2))
    h.control("GET", "clock")
    invited = [(a["lead"], a["at"]) for a in h.fake.campaigns.activity if a["what"] == "invitation sent"]
    assert invited == [("a-lead", "2026-03-02T09:00:00+00:00"), ("b-lead", "2026-03-02T09:30:00+00:00")]
    h.advance(dt.timedelta(days=1))
    h.control("GET", "clock")
    assert [a["at"] for a in h.fake.campaigns.activity if a["what"] == "invitation sent"][2] == \
        "2026-03-03T00:00:00+00:00"  # the third waited for the next day


def test_a_note_is_refused_with_the_reason(h: CampaignHarness) -> None:
    with pytest.raises(ProviderError) as caught:
        h.provider.connect(h.account, lead("jane-doe"), note="Hi Jane", key=new_key())
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert caught.value.message == ("salesflow-campaign cannot send a note: the campaign sends its own invitation "
                                    "message (members/Import takes no note); remove `note:`")
    assert h.fake.ledger == []


@pytest.mark.parametrize("call", ["visit", "message", "withdraw"])
def test_actions_the_campaign_does_itself_are_refused(h: CampaignHarness, call: str) -> None:
    p, a, who = h.provider, h.account, lead("jane-doe")
    calls = {"visit": lambda: p.visit(a, who, key=new_key()),
             "message": lambda: p.send_message(a, who, text="Hi", conversation_id=None, subject=None, inmail=False,
                                               key=new_key()),
             "withdraw": lambda: p.withdraw(a, who, invitation_id=None, key=new_key())}
    with pytest.raises(ProviderError) as caught:
        calls[call]()
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert caught.value.message.startswith(f"salesflow-campaign cannot {call}: the Salesflow campaign ")


def test_find_action_after_a_restart_asks_salesflow(h: CampaignHarness) -> None:
    who, since = lead("jane-doe"), h.now()
    connect(h, who)
    fresh = CampaignProvider(h.client, clock=h.clock)  # a new process: no memo
    found = fresh.find_action(h.account, who, action="connect", key="lost-key", since=since)
    assert found is not None and found.provider_ids["salesflow_member_id"] == str(h.fake.ledger[0]["member_id"])
    later = since + dt.timedelta(minutes=5)
    assert fresh.find_action(h.account, who, action="connect", key="lost-key", since=later) is None
    assert fresh.find_action(h.account, lead("never-imported"), action="connect", key="k", since=since) is None


# --- events by polling ------------------------------------------------------------------------------

def test_polling_reports_connections_replies_and_withdrawals_once_each(h: CampaignHarness) -> None:
    start = h.now()
    h.fake.campaigns.campaigns[CAMPAIGN].pace.withdraw_after = dt.timedelta(days=1)
    accepting, refusing = lead("anna-meyer"), lead("ben-okafor")
    connect(h, accepting)
    h.fake.introduce(ACCOUNT, [refusing.profile_url])
    state = h.fake.world._world.leads[(ACCOUNT, "ben-okafor")]
    connect(h, refusing)
    h.advance(dt.timedelta(minutes=2))
    h.control("GET", "clock")
    state.invites[-1].accept_at = None  # ben never accepts: the campaign withdraws after a day
    h.advance(dt.timedelta(days=2))
    polled = h.provider.poll_events(h.account, since=start)
    kinds = sorted((e.kind, e.lead_key) for e in polled.events)
    assert kinds == [("accepted", "anna-meyer"), ("invite_withdrawn", "ben-okafor"), ("replied", "anna-meyer")]
    accepted = next(e for e in polled.events if e.kind == "accepted")
    assert accepted.occurred_at == start + dt.timedelta(hours=2)  # the member's ConnectedAt
    assert accepted.event_id == "salesflow-campaign:carol:anna-meyer:accepted"
    again = h.provider.poll_events(h.account, since=start)
    assert [e.event_id for e in again.events] == [e.event_id for e in polled.events]
    assert h.provider.poll_events(h.account, since=polled.synced_until).events == ()


def test_a_fresh_driver_learns_statuses_by_member_id_then_asks_in_batches(h: CampaignHarness) -> None:
    start = h.now()
    for n in range(25):
        connect(h, lead(f"lead-{n:02d}"))
    h.advance(dt.timedelta(hours=3))
    fresh = CampaignProvider(h.client, clock=h.clock)
    h.fake.requests.clear()
    first = fresh.poll_events(h.account, since=start)
    assert len([e for e in first.events if e.kind == "accepted"]) == 25
    # The campaign's list names no profile: each member once by MemberId (GetContact).
    assert h.fake.requests == {"members/list-contacts": 1, **{f"members/{46875434 + n}": 1 for n in range(25)}}
    h.fake.requests.clear()
    second = fresh.poll_events(h.account, since=start)
    assert [e.event_id for e in second.events] == [e.event_id for e in first.events]
    # Known profiles: the list, then statuses 20 public identifiers at a time (POST list-contacts).
    assert h.fake.requests == {"members/list-contacts": 3}


def test_relationship_reads_the_member_status(h: CampaignHarness) -> None:
    who = lead("jane-doe")
    assert h.provider.relationship(h.account, who).invite_pending is False
    connect(h, who)
    rel = h.provider.relationship(h.account, who)
    assert (rel.connected, rel.invite_pending) == (False, True)
    assert rel.provider_ids["salesflow_member_id"] == str(h.fake.ledger[0]["member_id"])
    h.advance(dt.timedelta(hours=3))
    rel = h.provider.relationship(h.account, who)
    assert (rel.connected, rel.invite_pending, rel.connected_at) == (True, False, h.now() - dt.timedelta(hours=1))
    assert not h.provider.conversation(h.account, who).exists
    h.advance(dt.timedelta(hours=5))  # the campaign's message at +3h, the reply three hours later
    conversation = h.provider.conversation(h.account, who)
    assert conversation.exists and conversation.last_message is not None and conversation.last_message.from_lead


def test_an_inaccessible_profile_is_a_member_in_error_not_pending() -> None:
    harness = CampaignHarness(sandbox={**CERTAIN, "inaccessible_rate": 1.0})
    try:
        who = lead("gone-person")
        connect(harness, who)
        harness.advance(dt.timedelta(minutes=5))
        rel = harness.provider.relationship(harness.account, who)
        assert (rel.connected, rel.invite_pending) == (False, False)
        assert harness.fake.campaigns.find(ACCOUNT, "gone-person").status == parse_status(
            "MEMBER_PENDING, MEMBER_ERROR")
    finally:
        harness.close()


# --- errors -----------------------------------------------------------------------------------------

def test_second_import_while_in_the_campaign_is_pending_without_asking_salesflow_twice(h: CampaignHarness) -> None:
    who = lead("jane-doe")
    connect(h, who)
    h.fake.requests.clear()
    with pytest.raises(ProviderError) as caught:
        connect(h, who)
    assert caught.value.kind is ErrorKind.INVITATION_PENDING
    assert "members/Import" not in h.fake.requests


@pytest.mark.parametrize("status, message, kind, shown", [
    (409, "Member already exists", ErrorKind.INVITATION_PENDING,
     'jane-doe is already a member of a campaign (Salesflow answered 409: {"Status":409,"Message":"Member already '
     'exists"})'),
    (422, "Member cannot be imported: profile is private", ErrorKind.INVALID_INPUT,
     'Salesflow would not import jane-doe (Salesflow answered 422: {"Status":422,"Message":"Member cannot be '
     'imported: profile is private"})'),
    (404, "Campaign not found", ErrorKind.API_KEY_REJECTED,
     'campaign 456 of account 321 not found: check campaign_id of sender carol, then `seqrun senders resume carol` '
     '(Salesflow answered 404: {"Status":404,"Message":"Campaign not found"})'),
    (403, "Invalid token/account", ErrorKind.API_KEY_REJECTED,
     'token or account rejected (Salesflow answered 403: {"Status":403,"Message":"Invalid token/account"}); check '
     "the account API token in the environment variable the sender names and the sender's account_id"),
    (500, "Internal server error", ErrorKind.TRANSIENT,
     'Salesflow answered 500: {"Status":500,"Message":"Internal server error"}'),
])
def test_import_errors_keep_the_body_and_never_the_token(h: CampaignHarness, status: int, message: str,
                                                         kind: ErrorKind, shown: str) -> None:
    who = lead("jane-doe")
    h.provider.relationship(h.account, who)  # fresh: the import itself is what fails
    h.control("POST", "errors", status=status, route="members/Import", count=1, message=message)
    with pytest.raises(ProviderError) as caught:
        connect(h, who)
    err = caught.value
    assert (err.kind, err.status, err.label, err.message) == (kind, status, str(status), shown)
    assert TOKEN not in str(err)


def test_a_429_holds_until_retry_after(h: CampaignHarness) -> None:
    h.control("POST", "errors", status=429, count=1)
    with pytest.raises(ProviderError) as caught:
        h.provider.relationship(h.account, lead("jane-doe"))
    assert caught.value.kind is ErrorKind.RATE_LIMITED
    assert caught.value.retry_at == h.now() + dt.timedelta(seconds=60)


def test_the_token_is_in_no_log_line(h: CampaignHarness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    connect(h, lead("jane-doe"))
    h.provider.poll_events(h.account, since=None)
    assert "token=" not in caplog.text.replace("token=[redacted]", "")
    assert TOKEN not in caplog.text
    assert any("/api/members/Import?[redacted]" in r.getMessage() for r in caplog.records)


def test_pace_defaults_are_a_campaigns() -> None:
    assert QUICK.invites_per_day is None and Pace().invites_per_day == 25


def test_a_logged_traceback_carries_no_token(caplog: pytest.LogCaptureFixture) -> None:
    """A failure logged with its traceback (the engine does, for a lead that failed unexpectedly) is
    formatted by the handler after the record was made: its text is redacted too."""
    from runner.providers.http import install_log_redaction, register_secret

    install_log_redaction()
    register_secret(TOKEN)
    caplog.set_level(logging.ERROR)
    try:
        raise RuntimeError(f"failed at https://mvc.salesflow.io/api/members?token={TOKEN}&accountId=321")
    except RuntimeError:
        logging.getLogger("runner.test").exception("lead %s failed", "jane-doe")
    formatted = logging.Formatter("%(message)s").format(caplog.records[-1])
    assert "RuntimeError: failed at https://mvc.salesflow.io/api/members?[redacted]" in formatted
    assert TOKEN not in formatted and TOKEN not in caplog.text
