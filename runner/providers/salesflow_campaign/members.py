"""Campaign members as the driver keeps them: read from any of Salesflow's member shapes.

GetContact, ListContacts and the campaign webhooks all describe a member with overlapping fields
(`MemberId`, `PublicIdentifier` or `MemberUrl`, `Status`, `ConnectedAt`, `HasReply`, `CampaignId`).
`Member.read` takes any of them; the driver merges what successive answers say. Events come from
a member's state with stable ids, the same whether a webhook or a poll brought them, so the engine
stores each once.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.language.urls import normalize_profile_url
from runner.providers.http import parse_time
from runner.providers.salesflow_campaign.api import (
    CONNECTED,
    DELETED,
    DISCONNECTED,
    ERROR,
    IMPORTED,
    INVITATION_SENT,
    PENDING,
    WITHDRAWN,
    parse_status,
)

PROVIDER = "salesflow-campaign"
MEMBER_ID = "salesflow_member_id"  # the key under which the lead's MemberId is stored (provider_ids)


def lead_key(item: Mapping[str, Any]) -> str | None:
    """seqrun's profile key from `PublicIdentifier` or `MemberUrl` (None when neither is usable)."""
    for value, as_url in ((item.get("MemberUrl"), True), (item.get("PublicIdentifier"), False),
                          (item.get("LinkedInUrl"), True)):
        if not isinstance(value, str) or not value.strip():
            continue
        url = value if as_url else f"https://www.linkedin.com/in/{value.strip()}"
        try:
            return normalize_profile_url(url)[0]
        except ValueError:
            continue
    return None


def member_id(item: Mapping[str, Any]) -> str | None:
    """`MemberId` as text; 0 (the webhook sample's value) counts as absent."""
    value = item.get("MemberId")
    if isinstance(value, bool) or value in (None, "", 0, "0"):
        return None
    return str(value)


def event_id(sender: str, who: str, kind: str) -> str:
    """The id of "this member of the sender's campaign connected / replied / was withdrawn": one per
    member and kind, so a webhook (which names neither account nor campaign, only the sender in its
    URL), its re-deliveries and every later poll name the same event."""
    return f"{PROVIDER}:{sender}:{who}:{kind}"


@dataclass
class Member:
    """What the driver knows about one campaign member; `*_seen` are the driver's first sightings."""

    key: str | None
    member_id: str | None = None
    campaign_id: str | None = None
    status: int | None = None
    connected_at: dt.datetime | None = None
    has_reply: bool | None = None
    date_added: dt.datetime | None = None
    checked_at: dt.datetime | None = None  # when a status was last read
    connected_seen: dt.datetime | None = None
    reply_seen: dt.datetime | None = None
    withdrawn_seen: dt.datetime | None = None
    first_name: str | None = None
    last_name: str | None = None
    occupation: str | None = None
    location: str | None = None

    @classmethod
    def read(cls, item: Mapping[str, Any]) -> Member:
        campaign = item.get("CampaignId")
        member = cls(lead_key(item), member_id(item), None if campaign in (None, "") else str(campaign),
                     parse_status(item.get("Status")), parse_time(item.get("ConnectedAt")),
                     item.get("HasReply") if isinstance(item.get("HasReply"), bool) else None,
                     parse_time(item.get("DateAdded")))
        for name, field in (("first_name", "FirstName"), ("last_name", "LastName"), ("occupation", "Occupation"),
                            ("location", "Location")):
            value = item.get(field)
            setattr(member, name, value.strip() if isinstance(value, str) and value.strip() else None)
        return member

    def merge(self, other: Member, now: dt.datetime) -> None:
        """Take what `other` (a newer answer) knows; note when a state was first seen."""
        for name in ("key", "member_id", "campaign_id", "connected_at", "date_added", "first_name", "last_name",
                     "occupation", "location"):
            value = getattr(other, name)
            if value is not None:
                setattr(self, name, value)
        if other.status is not None:
            self.status = other.status
            self.checked_at = now
        if other.has_reply is not None:
            self.has_reply = self.has_reply or other.has_reply
        self.note_seen(now)

    def note_seen(self, now: dt.datetime) -> None:
        if self.connected and self.connected_seen is None:
            self.connected_seen = now
        if self.has_reply and self.reply_seen is None:
            self.reply_seen = now
        if self.withdrawn and self.withdrawn_seen is None:
            self.withdrawn_seen = now

    # --- the status bit field -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.status is not None and bool(self.status & CONNECTED)

    @property
    def withdrawn(self) -> bool:
        return self.status is not None and bool(self.status & WITHDRAWN)

    @property
    def pending(self) -> bool:
        """In the campaign and the invitation still to come or out: pending, imported, invitation sent,
        without an error and without a later state."""
        if self.status is None:
            return False
        final = CONNECTED | DISCONNECTED | DELETED | WITHDRAWN | ERROR
        return bool(self.status & (PENDING | INVITATION_SENT | IMPORTED)) and not self.status & final

    @property
    def gone(self) -> bool:
        """Deleted from the campaign: nothing more will happen to it there."""
        return self.status is not None and bool(self.status & DELETED)

    @property
    def settled(self) -> bool:
        """Nothing the driver polls for can still change: replied, withdrawn or deleted."""
        return bool(self.has_reply) or self.withdrawn or self.gone

    @property
    def who(self) -> str | None:
        return self.key or (f"member-{self.member_id}" if self.member_id else None)

    def full_name(self) -> str | None:
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or None
