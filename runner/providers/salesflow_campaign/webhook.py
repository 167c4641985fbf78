"""Salesflow's campaign webhooks: MEMBER_CONNECTED, REPLY_DETECTED and INVITATION_WITHDRAWN (seed 002).

Salesflow signs nothing and sends no secret header: it POSTs the member as JSON to the URL the
webhook was created with. So the URL itself carries the proof: each sender gets a token derived
from a secret in the environment (`credentials_env.webhook_secret`) with HMAC-SHA256, unguessable
without it, different per sender, account and campaign, and never stored (it is computed again on
every delivery). `seqrun senders webhooks` registers `{base}/webhooks/salesflow-campaign/{sender}/{token}`;
the daemon routes a delivery by sender and hands the token and the raw body to `parse_webhook`,
which compares the token in constant time before it reads anything and refuses a wrong one.

The events have the same ids as the ones polling finds (`members.event_id`: account, campaign,
member, kind), so a webhook, its re-deliveries and the next poll are stored once. The member is
named by `MemberUrl` (a profile key); without one, by `MemberId` or `LinkedInMemberId`, which a
`resolve(id_name, value)` callback (the daemon's store lookup) turns into the lead's key.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import Any, Callable, Mapping

from ..base import Account, ErrorKind, ProviderError, ProviderEvent
from ..http import parse_time
from .api import CONNECTED, WITHDRAWN, parse_status
from .members import MEMBER_ID, PROVIDER, event_id, lead_key, member_id

ROUTE = "webhooks/salesflow-campaign"
LINKEDIN_MEMBER_ID = "linkedin_member_id"
#: IntegrationRunOn (documented: INTEGRATION_RUN_ON_CONNECTED; the others by the events' names) and
#: Status names -> event kinds
_KINDS = (("WITHDRAW", "invite_withdrawn"), ("REPL", "replied"), ("CONNECT", "accepted"))

Resolve = Callable[[str, str], "str | None"]


def webhook_token(secret: str, account: Account) -> str:
    """The sender's token for its webhook URL: 32 URL-safe characters, a keyed hash of who it is."""
    if not secret:
        raise ProviderError(ErrorKind.INVALID_INPUT, f"sender {account.sender} has no webhook_secret: name its "
                            "environment variable in credentials_env (credentials_env: {webhook_secret: …})",
                            label="NO_SECRET")
    who = "\x1f".join((PROVIDER, account.sender, account.account_id, account.settings.get("campaign_id", "")))
    digest = hmac.new(secret.encode(), who.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def webhook_url(base_url: str, account: Account, secret: str) -> str:
    """Where Salesflow should POST the sender's campaign events (`base_url`: the daemon's public URL)."""
    return f"{base_url.rstrip('/')}/{ROUTE}/{account.sender}/{webhook_token(secret, account)}"


def token_matches(given: str, account: Account, secret: str) -> bool:
    """Constant time; an empty secret or token never matches."""
    if not secret or not given:
        return False
    return hmac.compare_digest(given.encode(), webhook_token(secret, account).encode())


def parse_webhook(body: bytes, *, token: str, account: Account, secret: str, received_at: dt.datetime,
                  resolve: Resolve | None = None) -> list[ProviderEvent]:
    """The events of one delivery to the sender's URL (none for an event seqrun does not follow).

    A wrong or missing token raises INVALID_INPUT (status 404: the URL does not exist for anyone
    without the token) before the body is read; a body that is not a JSON object raises INVALID_INPUT
    (status 400). Nothing is returned, so nothing is stored, in either case.
    """
    if not token_matches(token, account, secret):
        raise ProviderError(ErrorKind.INVALID_INPUT, "webhook refused: the token in the URL is not this sender's",
                            status=404, label="BAD_TOKEN")
    try:
        payload: Any = json.loads(body)
    except ValueError:
        raise ProviderError(ErrorKind.INVALID_INPUT, "webhook body is not JSON", status=400, label="BAD_BODY") from None
    if not isinstance(payload, dict):
        raise ProviderError(ErrorKind.INVALID_INPUT, "webhook body is not an object", status=400, label="BAD_BODY")
    kind = event_kind(payload)
    if kind is None:
        return []
    key = lead_key(payload) or _resolved(payload, resolve)
    who = key or (f"member-{member_id(payload)}" if member_id(payload) else None) \
        or (f"linkedin-{payload['LinkedInMemberId']}" if payload.get("LinkedInMemberId") else None)
    if who is None:
        raise ProviderError(ErrorKind.INVALID_INPUT, "webhook names no member (no MemberUrl, MemberId or "
                            "LinkedInMemberId)", status=400, label="BAD_BODY")
    campaign = account.settings.get("campaign_id")
    data = {MEMBER_ID: member_id(payload), LINKEDIN_MEMBER_ID: _text(payload.get("LinkedInMemberId")),
            "campaign_id": campaign, "integration_run_on": _text(payload.get("IntegrationRunOn"))}
    return [ProviderEvent(event_id(account.account_id, campaign, who, kind), kind,
                          _occurred(payload, kind, received_at), account.account_id, key,
                          data={k: v for k, v in data.items() if v is not None})]


def event_kind(payload: Mapping[str, Any]) -> str | None:
    """The event a delivery reports, from `IntegrationRunOn`, else its `Status` / `HasReply`."""
    run_on = str(payload.get("IntegrationRunOn") or "").upper()
    for word, kind in _KINDS:
        if word in run_on:
            return kind
    if run_on:
        return None  # an integration seqrun does not follow
    if payload.get("HasReply") is True:
        return "replied"
    bits = parse_status(payload.get("Status")) or 0
    if bits & WITHDRAWN:
        return "invite_withdrawn"
    return "accepted" if bits & CONNECTED else None


def _occurred(payload: Mapping[str, Any], kind: str, received_at: dt.datetime) -> dt.datetime:
    if kind == "accepted":
        connected, added = parse_time(payload.get("ConnectedAt")), parse_time(payload.get("DateAdded"))
        if connected is not None and (added is None or connected >= added):
            return connected
    return received_at  # Salesflow says when a reply or withdrawal was seen only by sending it now


def _resolved(payload: Mapping[str, Any], resolve: Resolve | None) -> str | None:
    if resolve is None:
        return None
    for name, value in ((MEMBER_ID, member_id(payload)), (LINKEDIN_MEMBER_ID, _text(payload.get("LinkedInMemberId")))):
        if value:
            found = resolve(name, value)
            if found:
                return found
    return None


def _text(value: object) -> str | None:
    return None if value in (None, "", 0) or isinstance(value, bool) else str(value)
