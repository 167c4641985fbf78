"""The calls of Salesflow's v1 API, one function each, and what the CLI does with a campaign.

Members: `members/Import`, GetContact (`members/{id}`, `members?publicIdentifier=`), ListContacts
(`members/list-contacts?campaignId=`, `POST members/list-contacts`), DeleteContact. The sender's
check: `accounts/list`, `campaigns/list-campaigns`, `statistics/GetCampaignStatistics`. Webhooks:
`webhooks/list`, `webhooks/create`, `webhooks/attach`, `webhooks/detach`, `webhooks/delete`, made
idempotent here: set-up lists first and only creates or attaches what is missing.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.language.urls import normalize_profile_url
from runner.providers.base import Account, ErrorKind, LeadRef, ProviderError, SenderCheck
from runner.providers.http import redact
from runner.providers.salesflow_campaign.api import RUN_ON, CampaignAPI

#: The events seqrun attaches its webhook for (AttachWebhook `runOn`).
RUN_ONS = (1, 2, 7)
WEBHOOK_NAME = "seqrun"


def campaign_id(account: Account) -> str:
    value = account.settings.get("campaign_id")
    if not value:
        raise ProviderError(ErrorKind.INVALID_INPUT, f"sender {account.sender} has no campaign_id in seqrun.yaml",
                            label="NO_CAMPAIGN")
    return str(value)


def _campaign_missing(account: Account) -> tuple[ErrorKind, str]:
    # A campaign that does not exist is the sender's configuration, not the lead's fault: the sender
    # pauses (like a rejected key) instead of every lead failing in turn.
    return (ErrorKind.API_KEY_REJECTED, f"campaign {campaign_id(account)} of account {account.account_id} not found: "
            f"check campaign_id of sender {account.sender}, then `seqrun senders resume {account.sender}`")


# --- members ----------------------------------------------------------------------------------------

def import_member(api: CampaignAPI, account: Account, lead: LeadRef) -> Any:
    """`members/Import`: the lead joins the campaign; the answer is the created member (since 1.5)."""
    first, last = _names(lead.fields)
    params = {"campaignId": campaign_id(account), "linkedInUrl": lead.profile_url, "firstName": first,
              "lastName": last, "occupation": _first(lead.fields, "occupation", "job_title", "headline", "title"),
              "location": _first(lead.fields, "location", "city", "country")}
    overrides = {
        404: _campaign_missing(account),
        409: (ErrorKind.INVITATION_PENDING, f"{lead.key} is already a member of a campaign"),
        422: (ErrorKind.INVALID_INPUT, f"Salesflow would not import {lead.key}"),
    }
    return api.call(account, "GET", "members/Import", params=params, overrides=overrides)


def contact_by_member_id(api: CampaignAPI, account: Account, member_id: str) -> Mapping[str, Any] | None:
    """GetContact by MemberId; None when Salesflow does not know the member (404)."""
    try:
        answer = api.call(account, "GET", f"members/{member_id}")
    except ProviderError as err:
        if err.kind is ErrorKind.NOT_FOUND:
            return None
        raise
    return answer if isinstance(answer, Mapping) else None


def contact_by_identifier(api: CampaignAPI, account: Account, public_identifier: str) -> Mapping[str, Any] | None:
    """GetContact by public identifier; None when the lead is not a member (404)."""
    try:
        answer = api.call(account, "GET", "members", params={"publicIdentifier": public_identifier})
    except ProviderError as err:
        if err.kind is ErrorKind.NOT_FOUND:
            return None
        raise
    return answer if isinstance(answer, Mapping) and answer else None


def contacts_by_identifiers(api: CampaignAPI, account: Account, identifiers: list[str]) -> list[Mapping[str, Any]]:
    """`POST members/list-contacts {"PublicIdentifiers": [...]}`: the members among them."""
    if not identifiers:
        return []
    answer = api.call(account, "POST", "members/list-contacts", json_body_={"PublicIdentifiers": identifiers})
    return [item for item in answer or () if isinstance(item, Mapping)] if isinstance(answer, list) else []


def list_campaign_members(api: CampaignAPI, account: Account) -> list[Mapping[str, Any]]:
    """ListContacts by campaignId: every member of the sender's campaign."""
    answer = api.call(account, "GET", "members/list-contacts", params={"campaignId": campaign_id(account)},
                      overrides={404: _campaign_missing(account)})
    if not isinstance(answer, list):
        raise ProviderError(ErrorKind.TRANSIENT, "members/list-contacts returned no list", label="NO_LIST")
    return [item for item in answer if isinstance(item, Mapping)]


def delete_member(api: CampaignAPI, account: Account, lead: LeadRef, stored_member_id: str | None) -> str | None:
    """DeleteContact of the lead when it is a member of the sender's campaign; its MemberId, or None
    when it is not one (nothing else is touched)."""
    item = contact_by_member_id(api, account, stored_member_id) if stored_member_id else None
    if item is None and not lead.key.startswith(("sn:", "ACoA")):
        item = contact_by_identifier(api, account, lead.key)
    if item is None or not item.get("MemberId"):
        return None
    member = str(item["MemberId"])
    if item.get("CampaignId") not in (None, "") and str(item["CampaignId"]) != campaign_id(account):
        return None  # a member of another campaign: not ours to remove
    try:
        api.call(account, "DELETE", f"members/{member}", params={"publicIdentifier": item.get("PublicIdentifier")})
    except ProviderError as err:
        if err.kind is ErrorKind.NOT_FOUND:
            return None
        raise
    return member


@dataclass(frozen=True, slots=True)
class CampaignMember:
    """A member of a campaign as `seqrun leads import --from-campaign` takes it."""

    member_id: str | None
    profile_url: str | None  # canonical; None when Salesflow told no public identifier
    fields: Mapping[str, str] = field(default_factory=dict)


def campaign_members(api: CampaignAPI, account: Account) -> list[CampaignMember]:
    """Every member of the sender's campaign with a profile URL (GetContact where the list has none)."""
    out = []
    for item in list_campaign_members(api, account):
        if not (item.get("PublicIdentifier") or item.get("MemberUrl")) and item.get("MemberId"):
            item = {**item, **(contact_by_member_id(api, account, str(item["MemberId"])) or {})}
        url = _profile_url(item)
        fields = {name: str(item[key]).strip() for name, key in
                  (("first_name", "FirstName"), ("last_name", "LastName"), ("occupation", "Occupation"),
                   ("location", "Location"), ("company_name", "Company"), ("email", "Email"))
                  if isinstance(item.get(key), str) and str(item[key]).strip()}
        full = " ".join(fields[k] for k in ("first_name", "last_name") if k in fields)
        if full:
            fields["full_name"] = full
        out.append(CampaignMember(None if not item.get("MemberId") else str(item["MemberId"]), url, fields))
    return out


def _profile_url(item: Mapping[str, Any]) -> str | None:
    for value, as_url in ((item.get("MemberUrl"), True), (item.get("PublicIdentifier"), False)):
        if isinstance(value, str) and value.strip():
            url = value if as_url else f"https://www.linkedin.com/in/{value.strip()}"
            try:
                return normalize_profile_url(url)[1]
            except ValueError:
                continue
    return None


# --- senders check ----------------------------------------------------------------------------------

def check(api: CampaignAPI, account: Account) -> SenderCheck:
    """The account (`accounts/list`), its campaign (`ListCampaigns`) and the campaign's statistics."""
    try:
        accounts = api.call(account, "GET", "accounts/list", scoped=False)
    except ProviderError as err:
        if err.kind is ErrorKind.API_KEY_REJECTED:
            return SenderCheck(False, "missing" if err.status is None else "rejected", "unknown", problem=err.message)
        return SenderCheck(False, "unknown", "unknown", problem=f"{err.kind.value}: {err.message}")
    mine = next((a for a in accounts or () if isinstance(a, Mapping) and str(a.get("AccountId")) == account.account_id),
                None) if isinstance(accounts, list) else None
    if mine is None:
        shown = ", ".join(str(a.get("AccountId")) for a in accounts or () if isinstance(a, Mapping)) or "none"
        return SenderCheck(False, "ok", "unknown", problem=f"the token does not reach account {account.account_id} "
                           f"(its accounts: {shown}); check the sender's account_id")
    status = str(mine.get("Status") or "unknown")
    details: dict[str, Any] = {"account": {"id": account.account_id, "email": mine.get("AccountEmail"),
                                           "status": status}}
    if status != "ACCOUNT_ACTIVE":
        return SenderCheck(False, "ok", status, problem=f"Salesflow account {account.account_id} is {status}: "
                           "it must be ACCOUNT_ACTIVE for its campaign to invite anyone", details=details)
    try:
        campaigns = api.call(account, "GET", "campaigns/list-campaigns")
        wanted = campaign_id(account)
        campaign = next((c for c in campaigns or () if isinstance(c, Mapping) and str(c.get("CampaignId")) == wanted),
                        None) if isinstance(campaigns, list) else None
        if campaign is None:
            return SenderCheck(False, "ok", status, problem=f"account {account.account_id} has no campaign {wanted}; "
                               "check the sender's campaign_id", details=details)
        details["campaign"] = {"id": wanted, "name": campaign.get("CampaignName"), "status": campaign.get("Status")}
        statistics = api.call(account, "GET", "", url=f"{api.app_url(account)}/statistics/GetCampaignStatistics",
                              params={"campaignId": wanted})
    except ProviderError as err:
        return SenderCheck(False, "ok", status, problem=f"{err.kind.value}: {err.message}", details=details)
    if isinstance(statistics, Mapping):
        details["statistics"] = {k: statistics[k] for k in ("Total", "Imported", "Pending", "Invitations",
                                                            "Connections", "Messages", "Replies", "Withdrawn")
                                 if k in statistics}
    if details["campaign"].get("status") == "CAMPAIGN_STOPPED":
        return SenderCheck(False, "ok", status, problem=f"campaign {wanted} is stopped and will never start by itself: "
                           "start it in Salesflow", details=details)
    return SenderCheck(True, "ok", status, details=details)


# --- webhooks ---------------------------------------------------------------------------------------

@dataclass
class WebhookChange:
    """What `seqrun senders webhooks` did: the webhook's id and what was created, attached, removed."""

    webhook_id: str | None = None
    created: bool = False
    attached: list[str] = field(default_factory=list)  # event names attached now
    already: list[str] = field(default_factory=list)  # event names that were attached before
    detached: list[str] = field(default_factory=list)
    deleted: bool = False


def ensure_webhook(api: CampaignAPI, account: Account, url: str) -> WebhookChange:
    """The webhook with `url` exists and is attached to the campaign for runOn 1, 2 and 7; only what
    is missing is created or attached (running it twice changes nothing)."""
    change = WebhookChange()
    campaign = campaign_id(account)
    hook = _find_webhook(api, account, url)
    if hook is None:
        hook = api.call(account, "POST", "webhooks/create", json_body_={"Name": WEBHOOK_NAME, "Url": url})
        if not isinstance(hook, Mapping) or not hook.get("WebhookId"):
            raise ProviderError(ErrorKind.TRANSIENT, "webhooks/create returned no WebhookId", label="NO_ID")
        change.created = True
    change.webhook_id = str(hook["WebhookId"])
    attached = {int(a.get("RunOn", 0)) for a in hook.get("AttachedWebhookCampaigns") or ()
                if isinstance(a, Mapping) and str(a.get("CampaignId")) == campaign}
    for run_on in RUN_ONS:
        if run_on in attached:
            change.already.append(RUN_ON[run_on])
            continue
        api.call(account, "POST", "webhooks/attach",
                 params={"webhookId": change.webhook_id, "campaignId": campaign, "runOn": run_on},
                 overrides={404: _campaign_missing(account)})
        change.attached.append(RUN_ON[run_on])
    return change


def remove_webhook(api: CampaignAPI, account: Account, url: str) -> WebhookChange:
    """Detach the webhook with `url` from the campaign, and delete it once nothing is attached."""
    change = WebhookChange()
    hook = _find_webhook(api, account, url)
    if hook is None:
        return change
    change.webhook_id = str(hook["WebhookId"])
    campaign = campaign_id(account)
    others = 0
    for item in hook.get("AttachedWebhookCampaigns") or ():
        if not isinstance(item, Mapping):
            continue
        if str(item.get("CampaignId")) != campaign:
            others += 1  # attached to another campaign: left alone
            continue
        api.call(account, "POST", "webhooks/detach", params={"webhookCampaignId": item.get("WebhookCampaignId")})
        change.detached.append(RUN_ON.get(int(item.get("RunOn", 0)), str(item.get("RunOn"))))
    if not others:
        api.call(account, "DELETE", "webhooks/delete", params={"webhookId": change.webhook_id})
        change.deleted = True
    return change


def _find_webhook(api: CampaignAPI, account: Account, url: str) -> Mapping[str, Any] | None:
    hooks = api.call(account, "GET", "webhooks/list")
    if not isinstance(hooks, list):
        raise ProviderError(ErrorKind.TRANSIENT, redact("webhooks/list returned no list"), label="NO_LIST")
    return next((h for h in hooks if isinstance(h, Mapping) and h.get("Url") == url and h.get("WebhookId")), None)


# --- helpers ----------------------------------------------------------------------------------------

def _first(fields: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = fields.get(name)
        if value and str(value).strip():
            return str(value).strip()
    return None


def _names(fields: Mapping[str, str]) -> tuple[str | None, str | None]:
    first, last = _first(fields, "first_name", "firstname"), _first(fields, "last_name", "lastname")
    if first or last:
        return first, last
    full = _first(fields, "full_name", "name")
    if not full:
        return None, None
    parts = full.split()
    return parts[0], " ".join(parts[1:]) or None
