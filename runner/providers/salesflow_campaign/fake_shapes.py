"""The fake Salesflow v1 API's answers: members as GetContact and ListContacts show them, the
campaign webhook's payload (seed 002's sample, field for field), and its error."""
from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runner.providers.salesflow_campaign.api import status_names

if TYPE_CHECKING:
    from runner.providers.salesflow_campaign.fake_campaign import Campaign, Campaigns, FakeMember

UTC = dt.UTC
_RUN_ON_STATUS = {1: "MEMBER_CONNECTED", 7: "MEMBER_INVITATION_WITHDRAWN"}


class FakeError(Exception):
    """An answer in Salesflow's error shape: `{"Status": status, "Message": message}`."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def number_id(text: str) -> int:
    """A stable numeric LinkedIn member id, like the webhook's `LinkedInMemberId`."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=5).digest(), "big")


def listed_contact(member: FakeMember) -> dict[str, Any]:
    """ListContacts by campaignId: exactly the sample's fields."""
    return {"MemberId": member.member_id, "FirstName": member.first_name, "LastName": member.last_name,
            "Location": member.location, "Occupation": member.occupation, "Industry": None, "Email": None,
            "Phone": None}


def contact(member: FakeMember, campaigns: Campaigns, *, status_as_number: bool = False) -> dict[str, Any]:
    """GetContact (1.6, extended) and ListContacts by public identifiers."""
    campaign = campaigns.campaigns.get(member.campaign_id)
    return {**listed_contact(member), "PublicIdentifier": member.key,
            "Status": member.status if status_as_number else status_names(member.status),
            "CampaignId": member.campaign_id, "CampaignName": campaign.name if campaign else None,
            "DateAdded": iso(member.date_added), "ConnectedAt": iso(member.connected_at),
            "HasReply": member.has_reply}


def webhook_payload(member: FakeMember, campaign: Campaign, run_on: int) -> dict[str, Any]:
    """The campaign webhook's body for MEMBER_CONNECTED (1), REPLY_DETECTED (2), INVITATION_WITHDRAWN (7)."""
    from runner.providers.salesflow_campaign.fake_campaign import RUN_ON_NAMES

    lines = []
    if member.replied_at is not None:
        lines.append(f"<p>{member.first_name or 'Lead'} [{member.replied_at:%m/%d/%Y %I:%M %p}]: "
                     "Thanks, happy to talk.</p>")
    return {
        "IntegrationType": "INTEGRATION_TYPE_WEBHOOK",
        "IntegrationRunOn": RUN_ON_NAMES[run_on],
        "MemberId": member.member_id,
        "LinkedInMemberId": number_id(member.key),
        "FirstName": member.first_name,
        "LastName": member.last_name,
        "Occupation": member.occupation,
        "Company": None,
        "Location": member.location,
        "PhoneNumber": None,
        "Email": None,
        "Address": "",
        "BirthdayYear": None,
        "BirthdayMonth": None,
        "BirthdayDay": None,
        "DateAdded": iso(member.date_added),
        "ConnectedAt": iso(member.connected_at),
        "MemberUrl": f"https://linkedin.com/in/{member.key}",
        "Industry": None,
        "Distance": "DISTANCE_1" if member.connected_at else "DISTANCE_2",
        "CurrentPosition": member.occupation,
        "Status": _RUN_ON_STATUS.get(run_on, status_names(member.status)),
        "HasReply": member.has_reply,
        "IsMuted": False,
        "IsSeen": False,
        "ConnectionsCount": 100,
        "FollowersCount": 100,
        "IsSalesNavigator": False,
        "LinkedInAccount": {"FirstName": "Fake", "LastName": "Sender", "Username": f"{member.account}@example.com"},
        **{f"Custom{i}": member.custom.get(f"Custom{i}") for i in range(1, 11)},
        "MemberActionsFormatted": "\r\n\r\n".join(lines),
        "MemberCampaigns": [{"CampaignName": campaign.name}],
    }
