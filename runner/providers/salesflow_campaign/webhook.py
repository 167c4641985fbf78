"""Salesflow's campaign webhooks: MEMBER_CONNECTED, REPLY_DETECTED and INVITATION_WITHDRAWN (seed 002).

Salesflow signs nothing and sends no secret header: it POSTs the member as JSON to the URL the
webhook was created with. So the URL itself carries the proof: each sender gets a token derived
from its provider's webhook secret (`credentials_env.webhook_secret`, from the environment) with
HMAC-SHA256 over the sender's name: unguessable without the secret, different per sender, never
stored (it is computed again for every delivery). `seqrun senders webhooks` registers
`{base}/webhooks/salesflow-campaign/{sender}/{token}`; the shared receiver (`runner.webhooks`)
hands what follows the provider's name (`{sender}/{token}`) to the driver, whose
`verify_and_parse` checks it with `verify_path`, in constant time and against every secret (one
may be being rotated), before it reads the body, and refuses a wrong one (401).

The events have the same ids as the ones polling finds (`members.event_id`: sender, member, kind),
so a webhook, its re-deliveries and the next poll are stored once. The member is named by
`MemberUrl` (a profile key); without one, by `MemberId` or `LinkedInMemberId`, which a
`resolve(id_name, value)` callback (a store lookup, `runner.store.lookups`) turns into the lead's
key, else the event names the member (`member-N`) and no lead.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runner.providers.base import ErrorKind, ProviderError, ProviderEvent
from runner.providers.http import parse_time, register_secret
from runner.providers.salesflow_campaign.api import CONNECTED, WITHDRAWN, parse_status
from runner.providers.salesflow_campaign.members import MEMBER_ID, PROVIDER, event_id, lead_key, member_id

ROUTE = f"webhooks/{PROVIDER}"
LINKEDIN_MEMBER_ID = "linkedin_member_id"
#: IntegrationRunOn (documented: INTEGRATION_RUN_ON_CONNECTED; the others by the events' names) -> kind
_KINDS = (("WITHDRAW", "invite_withdrawn"), ("REPL", "replied"), ("CONNECT", "accepted"))
_SENDER = re.compile(r"[a-z][a-z0-9_-]*")

Resolve = Callable[[str, str], "str | None"]


def webhook_token(secret: str, sender: str) -> str:
    """The sender's token for its webhook URL: 32 URL-safe characters, a keyed hash of its name."""
    if not secret:
        raise ProviderError(ErrorKind.INVALID_INPUT, f"sender {sender} has no webhook_secret: name its environment "
                            "variable in credentials_env (credentials_env: {webhook_secret: …})", label="NO_SECRET")
    digest = hmac.new(secret.encode(), f"{PROVIDER}\x1f{sender}".encode(), hashlib.sha256).digest()
    token = base64.urlsafe_b64encode(digest[:24]).decode()
    register_secret(token)  # a URL holding it never reaches a log line
    return token


def webhook_url(base_url: str, sender: str, secret: str) -> str:
    """Where Salesflow should POST the sender's campaign events (`base_url`: the receiver's public URL)."""
    return f"{base_url.rstrip('/')}/{ROUTE}/{sender}/{webhook_token(secret, sender)}"


def token_matches(given: str, sender: str, secrets: Sequence[str]) -> bool:
    """Constant time, against every secret; no secret or no token never matches."""
    found = False
    for secret in secrets:
        if secret and given:
            found |= hmac.compare_digest(given.encode(), webhook_token(secret, sender).encode())
    return found


def verify_path(path: str, secrets: Sequence[str]) -> str:
    """The sender a delivery's URL (`{sender}/{token}`) proves, or a 401 before anything else is read."""
    sender, _, token = path.strip("/").partition("/")
    if not _SENDER.fullmatch(sender) or "/" in token or not token_matches(token, sender, secrets):
        raise ProviderError(ErrorKind.INVALID_INPUT, "webhook refused: the URL does not carry a sender's token",
                            status=401, label="BAD_TOKEN")
    return sender


def parse_webhook(body: bytes, *, sender: str, account_id: str | None, received_at: dt.datetime,
                  resolve: Resolve | None = None) -> list[ProviderEvent]:
    """The events of one verified delivery to `sender`'s URL (none for an event seqrun does not
    follow). A body that is not a JSON object naming a member raises INVALID_INPUT (status 400)."""
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
    data = {MEMBER_ID: member_id(payload), LINKEDIN_MEMBER_ID: _text(payload.get("LinkedInMemberId")),
            "integration_run_on": _text(payload.get("IntegrationRunOn"))}
    return [ProviderEvent(event_id(sender, who, kind), kind, _occurred(payload, kind, received_at), account_id, key,
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
