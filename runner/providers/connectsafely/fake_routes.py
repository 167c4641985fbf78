"""The fake ConnectSafely API's routes: each endpoint the driver uses, over the simulated LinkedIn.

Every handler takes the fake, the account id, the request (`Request`: path parameters, query,
body) and the fake's `now`, and returns the JSON answer or raises `CSError` (the fake turns it into
ConnectSafely's error body). Shapes follow docs/providers/connectsafely.md: relative `sentAt` on
sent invitations, `connectedDate` as "Connected on Feb 15, 2024", epoch milliseconds on messages.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.providers.connectsafely.shapes import (
    MESSAGE_URN,
    THREAD_URN,
    connected_text,
    millis,
    parse_moment,
    relative_text,
)

if TYPE_CHECKING:
    from runner.providers.connectsafely.fake import ConnectSafelyFake

NOTE_LIMIT = 300
MESSAGE_LIMIT = 8000
CONNECTIONS_PAGE_MAX = 12
INVITATIONS_PAGE = 10


class CSError(Exception):
    """An answer in one of ConnectSafely's error shapes (`shape`: error, code, plain or zod)."""

    def __init__(self, status: int, message: str, *, shape: str = "error", code: str | None = None,
                 issues: list[dict[str, Any]] | None = None, extra: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.shape, self.code = status, message, shape, code
        self.issues, self.extra, self.headers = issues or [], dict(extra or {}), dict(headers or {})

    def body(self) -> dict[str, Any]:
        if self.shape == "zod":
            return {"success": False, "error": {"name": "ZodError", "issues": self.issues or [
                {"code": "custom", "path": [], "message": self.message}]}}
        if self.shape == "code":
            return {"success": False, "code": self.code or "error", "message": self.message, **self.extra}
        if self.shape == "plain":
            return {"error": self.message, **self.extra}
        return {"success": False, "error": self.message, **self.extra}


def invalid(path: str, message: str, code: str = "custom") -> CSError:
    """A 400 in Zod's shape, as ConnectSafely answers a body that fails validation."""
    return CSError(400, f"{path}: {message}", shape="zod",
                   issues=[{"code": code, "path": [path] if path else [], "message": message}])


@dataclass
class Request:
    params: list[str]  # path parameters
    query: Mapping[str, str]
    body: dict[str, Any] = field(default_factory=dict)


# --- accounts ---------------------------------------------------------------------------------------

def account_status(fake: ConnectSafelyFake, account: str, req: Request, now: dt.datetime) -> Any:
    expired = fake.session_expired(account, now)
    return {"id": account, "publicId": fake.own_public_id(account), "name": "Fake Sender",
            "status": "ERROR" if expired else "AVAILABLE", "enabled": True, "hasTokens": not expired}


def account_quota(fake: ConnectSafelyFake, account: str, req: Request, now: dt.datetime) -> Any:
    if req.params[0] != account:
        raise CSError(404, "Account not found")
    return {"success": True, "accountId": account,
            "quotas": [fake.quota_usage(account, action, now) for action in fake.quota_limits]}


# --- profiles, invitations, connections ------------------------------------------------------------

def visit(fake: ConnectSafelyFake, account: str, req: Request, now: dt.datetime) -> Any:
    lead = fake.lead_of(req.body)
    fake.on_world(lambda: fake.world.visit(fake.account(account), lead, key=fake.next_key()))
    fake.record(account, "visit", lead, now)
    return {"success": True, "profileId": lead.key, "profileUrn": fake.profile_urn(lead.key),
            "numericMemberId": fake.member_number(lead.key), "message": "Profile visited successfully",
            "accountId": account}


def relationship(fake: ConnectSafelyFake, account: str, req: Request, now: dt.datetime) -> Any:
    lead = fake.lead_by_id(req.params[-1])
    state = fake.seen(account, lead, now)
    connected = state.connected_since(now) is not None
    pending = not connected and state.pending_invite(now) is not None
    return {"success": True, "connected": connected, "invitationSent": pending, "invitationReceived": False,
            "status": "CONNECTED" if connected else "PENDING" if pending else "NOT_CONNECTED",
            "profileUrn": fake.profile_urn(lead.key), "accountId": account}


def connect(fake: ConnectSafelyFake, account: str, req: Request, now: dt.datetime) -> Any:
    lead = fake.lead_of(req.body)
    note = req.body.get("customMessage")
    if note is not None and (not isinstance(note, str) or len(note) > NOTE_LIMIT):
        raise invalid("customMessage", f"String must contain at most {NOTE_LIMIT} character(s)", "too_big")
    fake.charge_quota(account, "CONNECT", now)
    done = fake.on_world(lambda: fake.world.connect(fake.account(account), lead, note=note or None,
                                                    key=fake.next_key()))
    fake.record(account, "connect", lead, now, with_note=bool(note), invitation_id=done.invitation_id)
    return {"success": True, "message": "Connection request sent successfully", "profileUrn": fake.profile_urn(lead.key)}


def invitations_sent(fake: ConnectSafelyFake, account: str, req: Request, now: dt.datetime) -> Any:
    rows = []
    for key, state in fake.leads(account):
        invite = state.pending_invite(now)
        if invite is not None and invite.sent_at <= now:
            number = fake.member_number(invite.invitation_id)
            rows.append((invite.sent_at, number, {
                "invitationId": str(number), "invitationUrn": f"urn:li:invitation:{number}",
                "memberUrn": fake.profile_urn(key), "invitationType": "SENT",
                "sentAt": relative_text(invite.sent_at, now),
                "profile": {"publicIdentifier": key, "firstName": key.split("-")[0].title(), "lastName": ""}}))
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    start = _int(req.query.get("startIndex"), 0)
    page = [r[2] for r in rows[start:start + INVITATIONS_PAGE]]
    return {"success": True, "invitations": page, "count": len(page), "startIndex": start}


def withdraw(fake: ConnectSafelyFake, account: str, req: Request, now: dt.datetime) -> Any:
    profile = req.body.get("profileId")
    if not isinstance(profile, str) or not profile:
        raise invalid("profileId", "Required", "invalid_type")
    lead = fake.lead_by_id(profile)
    state = fake.seen(account, lead, now)
    pending = state.pending_invite(now)
    if pending is None:
        raise CSError(404, f"No pending invitation found for {lead.key}")
    fake.on_world(lambda: fake.world.withdraw(fake.account(account), lead, invitation_id=pending.invitation_id,
                                              key=fake.next_key()))
    fake.record(account, "withdraw", lead, now, invitation_id=pending.invitation_id)
    return {"success": True, "message": f"Successfully withdrew invitation to {lead.key}", "accountId": account}


def connections(fake: ConnectSafelyFake, account: str, req: Request, now: dt.datetime) -> Any:
    rows = []
    for key, state in fake.leads(account):
        since = state.connected_since(now)
        if since is not None and state.profile != "inaccessible":
            rows.append((since, key))
    rows.sort(reverse=True)  # recentlyAdded: newest first
    start = _int(req.query.get("startIndex"), 0)
    limit = min(max(_int(req.query.get("limit"), 10), 1), CONNECTIONS_PAGE_MAX)
    page = [{"vanityName": key, "firstName": key.split("-")[0].title(), "lastName": "",
             "profileUrl": f"https://www.linkedin.com/in/{key}", "profileUrn": fake.profile_urn(key),
             "connectedDate": connected_text(since)} for since, key in rows[start:start + limit]]
    return {"success": True, "connections": page, "endOfList": start + limit >= len(rows)}


# --- conversations ---------------------------------------------------------------------------------

def conversation_exists(fake: ConnectSafelyFake, account: str, req: Request, now: dt.datetime) -> Any:
    lead = fake.lead_by_id(req.params[-1])
    state = fake.seen(account, lead, now)
    if state.profile == "inaccessible":
        raise CSError(404, f"Profile {lead.key} not found or not accessible")
    urn = fake.thread_urn(account, lead.key) if state.thread_open(now) else None
    return {"success": True, "exists": urn is not None, "conversationUrn": urn, "profileUrn": fake.profile_urn(lead.key)}


def conversations(fake: ConnectSafelyFake, account: str, req: Request, now: dt.datetime) -> Any:
    rows = []
    for key, state in fake.leads(account):
        if not state.thread_open(now) or state.profile == "inaccessible":
            continue
        notes = state.visible_messages(now)
        if not notes:
            continue
        last = notes[-1]
        rows.append((last.sent_at, key, {
            "conversationUrn": fake.thread_urn(account, key), "conversationId": fake.world._world.thread_id(account, key),
            "lastActivityAt": millis(last.sent_at), "unreadCount": 1 if last.from_lead else 0,
            "participants": [{"profileId": key, "name": key.replace("-", " ").title()}],
            "latestMessage": {"text": fake.text(last.message_id, last.from_lead), "sentAt": millis(last.sent_at),
                              "senderName": key.replace("-", " ").title() if last.from_lead else "Fake Sender"}}))
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    count = min(max(_int(req.query.get("count"), 20), 1), 100)
    start = _cursor(req.query.get("nextCursor"))
    page = [r[2] for r in rows[start:start + count]]
    more = start + count < len(rows)
    return {"success": True, "conversations": page, "nextCursor": _encode(start + count) if more else None,
            "hasMore": more}


def messages(fake: ConnectSafelyFake, account: str, req: Request, now: dt.datetime) -> Any:
    urn = req.params[0]
    thread = urn[len(THREAD_URN):] if urn.startswith(THREAD_URN) else urn
    with fake.world._lock:
        owner = fake.world._world.thread_owner(thread)
        state = fake.world._world.leads.get(owner) if owner is not None else None
    if owner is None or owner[0] != account or state is None or not state.thread_open(now):
        raise CSError(404, f"Conversation {urn} not found")
    since = parse_moment(req.query.get("since"))
    notes = [n for n in state.visible_messages(now) if since is None or n.sent_at > since]
    notes.sort(key=lambda n: (n.sent_at, n.message_id), reverse=True)  # newest first
    count = min(max(_int(req.query.get("count"), 50), 1), 100)
    start = _cursor(req.query.get("cursor"))
    own = fake.own_public_id(account)
    page = [{"messageUrn": MESSAGE_URN + n.message_id, "text": fake.text(n.message_id, n.from_lead),
             "sentAt": millis(n.sent_at), "senderProfileId": owner[1] if n.from_lead else own,
             "isSentByOwner": not n.from_lead} for n in notes[start:start + count]]
    more = start + count < len(notes)
    return {"success": True, "messages": page, "participants": [{"profileId": owner[1]}], "hasMore": more,
            "cursor": _encode(start + count) if more else None}


def send(fake: ConnectSafelyFake, account: str, req: Request, now: dt.datetime) -> Any:
    body = req.body
    text = body.get("message")
    if not isinstance(text, str) or not text.strip():
        raise invalid("message", "Required", "invalid_type")
    if len(text) > MESSAGE_LIMIT:
        raise invalid("message", f"String must contain at most {MESSAGE_LIMIT} character(s)", "too_big")
    if not body.get("recipientProfileId") and not body.get("recipientProfileUrn"):
        raise invalid("recipientProfileId", "Either recipientProfileId or recipientProfileUrn must be provided")
    lead = fake.lead_of({"profileId": body.get("recipientProfileId"), "profileUrn": body.get("recipientProfileUrn")})
    subject = body.get("subject") or None
    attachments = body.get("attachments", [])
    if not isinstance(attachments, list):
        raise invalid("attachments", "Expected array", "invalid_type")
    state = fake.seen(account, lead, now)
    own_thread = fake.thread_urn(account, lead.key)
    given = body.get("conversationUrn")
    if given is not None and (given != own_thread or not state.thread_open(now)):
        raise CSError(400, f"Conversation {given} not found for this recipient")
    new = not state.thread_open(now)
    noted = any(i.with_note and i.accepted_by(now) for i in state.invites)
    first = not any(not m.from_lead and m.sent_at <= now for m in state.messages)
    if new:
        fake.charge_quota(account, "NEW_CONVERSATION", now)
    done = fake.on_world(lambda: fake.world.send_message(
        fake.account(account), lead, text=text, conversation_id=None, subject=subject, inmail=subject is not None,
        key=fake.next_key()))
    fake.texts[done.provider_id] = text
    fake.record(account, "inmail" if subject else "message", lead, now, message_id=done.provider_id,
                thread_urn=own_thread, conversation_urn=given, new_conversation=new,
                first_after_noted_invite=noted and first, attachments=len(attachments))
    out: dict[str, Any] = {
        "success": True, "message": text, "recipientProfileUrn": fake.profile_urn(lead.key),
        "sentMessage": {"messageUrn": MESSAGE_URN + done.provider_id, "text": text, "sentAt": millis(now),
                        "senderProfileId": fake.own_public_id(account), "isSentByOwner": True}}
    if account in fake.sales_navigator:
        out["threadId"] = str(fake.member_number(own_thread))
    return out


# --- the route table ----------------------------------------------------------------------------------

Handler = Callable[["ConnectSafelyFake", str, Request, dt.datetime], Any]

#: (method, path pattern with {} for a parameter) -> (kind of call, handler); kinds: read, write,
#: account, inbox (see api.ACCOUNT_RATES)
ROUTES: dict[tuple[str, str], tuple[str, Handler]] = {
    ("GET", "account/status"): ("account", account_status),
    ("GET", "account/{}/quota"): ("account", account_quota),
    ("POST", "profile/visit"): ("write", visit),
    ("GET", "relationship/{}"): ("read", relationship),
    ("GET", "relationship/{}/{}"): ("read", relationship),
    ("POST", "connect"): ("write", connect),
    ("GET", "invitations/sent"): ("read", invitations_sent),
    ("POST", "invitations/withdraw"): ("write", withdraw),
    ("GET", "connections"): ("read", connections),
    ("POST", "conversations/send"): ("write", send),
    ("GET", "conversations/exists/{}"): ("inbox", conversation_exists),
    ("GET", "conversations"): ("inbox", conversations),
    ("GET", "conversations/{}/messages"): ("inbox", messages),
}

#: the body keys each POST route accepts (anything else is refused, as a strict schema would)
BODY_KEYS: dict[str, frozenset[str]] = {
    "profile/visit": frozenset({"accountId", "profileId", "profileUrn"}),
    "connect": frozenset({"accountId", "profileId", "profileUrn", "customMessage"}),
    "invitations/withdraw": frozenset({"accountId", "profileId", "memberId", "profileUrn", "invitationId",
                                       "firstName", "lastName"}),
    "conversations/send": frozenset({"accountId", "recipientProfileId", "recipientProfileUrn", "conversationUrn",
                                     "message", "subject", "attachments", "messagingChannel"}),
}


def match(method: str, segments: list[str]) -> tuple[str, str, Handler, list[str]] | None:
    """(pattern, kind, handler, path parameters) for a request, or None."""
    for (verb, pattern), (kind, handler) in ROUTES.items():
        parts = pattern.split("/")
        if verb != method or len(parts) != len(segments):
            continue
        params = [seg for part, seg in zip(parts, segments, strict=True) if part == "{}"]
        if all(part == "{}" or part == seg for part, seg in zip(parts, segments, strict=True)):
            return pattern, kind, handler, params
    return None


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def _encode(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _cursor(value: str | None) -> int:
    if not value:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(value.encode()))["o"])
    except (ValueError, KeyError, TypeError):
        raise CSError(400, "invalid or expired cursor") from None

