"""What a Salesflow campaign does by itself, for the fake: invites at its own pace, then messages.

`Campaigns` holds the fake's accounts, campaigns and members over the sandbox's simulated LinkedIn
(`SandboxProvider`). A member imported into a running campaign gets its invitation at the next
free slot of the campaign's pace (one every `invite_every`, at most `invites_per_day` a UTC day);
the simulated lead accepts or not as the sandbox decides; `message_delay` after an acceptance the
campaign sends its first message, which the lead may answer; an invitation still pending after
`withdraw_after` is withdrawn. Each of these is a scheduled step on a heap; `catch_up(now)` performs
the steps whose time has come, in time order, with the simulated LinkedIn's clock set to each
step's own time, so acceptances and replies land where the sandbox schedules them whatever the
gaps between requests. What a campaign webhook should report is collected as deliveries.
"""
from __future__ import annotations

import datetime as dt
import heapq
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.providers.base import Account, ErrorKind, LeadRef, ProviderError
from runner.providers.salesflow_campaign.api import (
    CONNECTED,
    DELETED,
    ERROR,
    IMPORTED,
    INVITATION_SENT,
    PENDING,
    WITHDRAWN,
)
from runner.providers.sandbox import SandboxProvider

UTC = dt.UTC
#: webhook run-on numbers (AttachWebhook) and the IntegrationRunOn names deliveries carry
RUN_ON_NAMES = {1: "INTEGRATION_RUN_ON_CONNECTED", 2: "INTEGRATION_RUN_ON_REPLY_DETECTED",
                7: "INTEGRATION_RUN_ON_INVITATION_WITHDRAWN"}


@dataclass
class Pace:
    invite_every: dt.timedelta = dt.timedelta(minutes=20)
    invites_per_day: int | None = 25
    message_delay: dt.timedelta = dt.timedelta(hours=1)
    withdraw_after: dt.timedelta | None = dt.timedelta(days=21)


@dataclass
class Campaign:
    campaign_id: int
    account: str
    name: str
    status: str = "CAMPAIGN_RUNNING"
    pace: Pace = field(default_factory=Pace)
    last_slot: dt.datetime | None = None
    per_day: dict[dt.date, int] = field(default_factory=dict)
    held: list[int] = field(default_factory=list)  # members whose invitation waits for the campaign to run


@dataclass
class FakeMember:
    member_id: int
    account: str
    campaign_id: int
    key: str
    profile_url: str
    date_added: dt.datetime
    first_name: str | None = None
    last_name: str | None = None
    occupation: str | None = None
    location: str | None = None
    state: str = "imported"  # imported | invited | connected | withdrawn | error | deleted
    invited_at: dt.datetime | None = None
    connected_at: dt.datetime | None = None
    messaged_at: dt.datetime | None = None
    replied_at: dt.datetime | None = None
    withdrawn_at: dt.datetime | None = None
    error: str | None = None
    custom: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        bits = {"imported": IMPORTED, "invited": INVITATION_SENT, "connected": CONNECTED, "withdrawn": WITHDRAWN,
                "error": PENDING | ERROR, "deleted": DELETED}[self.state]
        return bits

    @property
    def has_reply(self) -> bool:
        return self.replied_at is not None


@dataclass
class Delivery:
    """A webhook the campaign owes: run-on number, member, and when it happened."""

    run_on: int
    member: FakeMember
    at: dt.datetime


class Campaigns:
    """Accounts, campaigns and members of the fake, and the campaigns' own schedule."""

    def __init__(self, world: SandboxProvider, set_world_time: Callable[[dt.datetime | None], None],
                 pace: Pace | None = None) -> None:
        self.world = world
        self._set_time = set_world_time
        self.default_pace = pace or Pace()
        self.accounts: dict[str, str] = {}  # account id -> status (ACCOUNT_ACTIVE, …)
        self.campaigns: dict[int, Campaign] = {}
        self.members: dict[int, FakeMember] = {}
        self.activity: list[dict[str, Any]] = []  # what the campaigns did: invitations, messages, withdrawals
        self._heap: list[tuple[dt.datetime, int, str, int]] = []
        self._order = itertools.count()
        self._member_ids = itertools.count(46875434)
        self._campaign_ids = itertools.count(29854)

    # --- accounts and campaigns ---------------------------------------------------------------------

    def account(self, account_id: str) -> str:
        return self.accounts.setdefault(account_id, "ACCOUNT_ACTIVE")

    def campaign(self, account_id: str, campaign_id: int | None = None, name: str | None = None) -> Campaign:
        """The campaign (made on first use, running, with the default pace)."""
        self.account(account_id)
        number = campaign_id if campaign_id is not None else next(self._campaign_ids)
        found = self.campaigns.get(number)
        if found is None:
            found = self.campaigns[number] = Campaign(number, account_id, name or f"Campaign {number}",
                                                      pace=Pace(**vars(self.default_pace)))
        return found

    def set_status(self, campaign: Campaign, status: str, now: dt.datetime) -> None:
        campaign.status = status
        if status == "CAMPAIGN_RUNNING":
            held, campaign.held = campaign.held, []
            for member_id in held:
                self._schedule_invite(campaign, self.members[member_id], now)

    # --- members ------------------------------------------------------------------------------------

    def import_member(self, campaign: Campaign, key: str, profile_url: str, now: dt.datetime,
                      names: Mapping[str, str | None]) -> FakeMember:
        member = FakeMember(next(self._member_ids), campaign.account, campaign.campaign_id, key, profile_url, now,
                            first_name=names.get("first_name") or None, last_name=names.get("last_name") or None,
                            occupation=names.get("occupation") or None, location=names.get("location") or None)
        self.members[member.member_id] = member
        self._schedule_invite(campaign, member, now)
        return member

    def find(self, account: str, key: str) -> FakeMember | None:
        """The account's newest member for the profile, deleted ones aside."""
        found = [m for m in self.members.values() if m.account == account and m.key == key and m.state != "deleted"]
        return max(found, key=lambda m: m.member_id) if found else None

    def delete(self, member: FakeMember, now: dt.datetime) -> None:
        member.state = "deleted"
        self.activity.append({"at": _iso(now), "campaign_id": member.campaign_id, "member_id": member.member_id,
                              "lead": member.key, "what": "deleted"})

    # --- the schedule -------------------------------------------------------------------------------

    def _push(self, at: dt.datetime, kind: str, member: FakeMember) -> None:
        heapq.heappush(self._heap, (at, next(self._order), kind, member.member_id))

    def _schedule_invite(self, campaign: Campaign, member: FakeMember, now: dt.datetime) -> None:
        if campaign.status != "CAMPAIGN_RUNNING":
            campaign.held.append(member.member_id)
            return
        pace = campaign.pace
        slot = now if campaign.last_slot is None else max(now, campaign.last_slot + pace.invite_every)
        while pace.invites_per_day is not None and campaign.per_day.get(slot.date(), 0) >= pace.invites_per_day:
            slot = dt.datetime.combine(slot.date() + dt.timedelta(days=1), dt.time(), UTC)
        campaign.last_slot = slot
        campaign.per_day[slot.date()] = campaign.per_day.get(slot.date(), 0) + 1
        self._push(slot, "invite", member)

    def catch_up(self, now: dt.datetime) -> list[Delivery]:
        """Perform every scheduled step due by `now`, each at its own time; the webhooks owed."""
        owed: list[Delivery] = []
        while self._heap and self._heap[0][0] <= now:
            at, _, kind, member_id = heapq.heappop(self._heap)
            member = self.members[member_id]
            if member.state == "deleted":
                continue
            self._set_time(at)
            try:
                owed += getattr(self, f"_do_{kind}")(member, at)
            finally:
                self._set_time(None)
        return owed

    def _do_invite(self, member: FakeMember, at: dt.datetime) -> list[Delivery]:
        campaign = self.campaigns[member.campaign_id]
        if member.state != "imported":
            return []
        if campaign.status != "CAMPAIGN_RUNNING":
            campaign.held.append(member.member_id)
            return []
        lead, account = LeadRef(member.key, member.profile_url), Account(member.account, member.account)
        try:
            self.world.connect(account, lead, note=None, key=f"campaign-invite-{member.member_id}")
        except ProviderError as err:
            if err.kind is ErrorKind.ALREADY_CONNECTED:
                return self._connected(member, at, self._lead_state(member).connected_since(at) or at)
            if err.kind is not ErrorKind.INVITATION_PENDING:
                member.state, member.error = "error", err.message
                self._log(member, at, "error", detail=err.message)
                return []
        invite = self._lead_state(member).pending_invite(at)
        member.state, member.invited_at = "invited", at
        self._log(member, at, "invitation sent")
        if invite is not None and invite.accept_at is not None:
            self._push(invite.accept_at, "accepted", member)
        withdraw_after = campaign.pace.withdraw_after
        if withdraw_after is not None:
            self._push(at + withdraw_after, "withdraw", member)
        return []

    def _do_accepted(self, member: FakeMember, at: dt.datetime) -> list[Delivery]:
        if member.state != "invited" or self._lead_state(member).connected_since(at) is None:
            return []  # withdrawn before the acceptance
        return self._connected(member, at, at)

    def _connected(self, member: FakeMember, at: dt.datetime, connected_at: dt.datetime) -> list[Delivery]:
        member.state, member.connected_at = "connected", connected_at
        self._log(member, at, "connected")
        self._push(at + self.campaigns[member.campaign_id].pace.message_delay, "message", member)
        return [Delivery(1, member, at)]

    def _do_message(self, member: FakeMember, at: dt.datetime) -> list[Delivery]:
        if member.state != "connected" or member.messaged_at is not None:
            return []
        lead, account = LeadRef(member.key, member.profile_url), Account(member.account, member.account)
        try:
            self.world.send_message(account, lead, text="Thanks for connecting! (the campaign's first message)",
                                    conversation_id=None, subject=None, inmail=False,
                                    key=f"campaign-message-{member.member_id}")
        except ProviderError as err:
            self._log(member, at, "message failed", detail=err.message)
            return []
        member.messaged_at = at
        self._log(member, at, "message sent")
        replies = self._lead_state(member).replies
        if replies and replies[-1] > at:
            self._push(replies[-1], "reply", member)
        return []

    def _do_reply(self, member: FakeMember, at: dt.datetime) -> list[Delivery]:
        if member.replied_at is not None:
            return []
        member.replied_at = at
        self._log(member, at, "reply detected")
        return [Delivery(2, member, at)]

    def _do_withdraw(self, member: FakeMember, at: dt.datetime) -> list[Delivery]:
        if member.state != "invited" or self._lead_state(member).pending_invite(at) is None:
            return []
        lead, account = LeadRef(member.key, member.profile_url), Account(member.account, member.account)
        try:
            self.world.withdraw(account, lead, invitation_id=None, key=f"campaign-withdraw-{member.member_id}")
        except ProviderError as err:
            self._log(member, at, "withdrawal failed", detail=err.message)
            return []
        member.state, member.withdrawn_at = "withdrawn", at
        self._log(member, at, "invitation withdrawn")
        return [Delivery(7, member, at)]

    # --- helpers ------------------------------------------------------------------------------------

    def _lead_state(self, member: FakeMember) -> Any:
        with self.world._lock:
            return self.world._world.lead(member.account, member.key, self.world._now())

    def _log(self, member: FakeMember, at: dt.datetime, what: str, detail: str | None = None) -> None:
        entry = {"at": _iso(at), "campaign_id": member.campaign_id, "member_id": member.member_id, "lead": member.key,
                 "what": what}
        if detail:
            entry["detail"] = detail
        self.activity.append(entry)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(UTC).isoformat()
