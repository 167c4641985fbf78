"""Salesflow's webhooks as they come off the wire: the shared secret, then NEW_CONNECTION and New Messages.

Verification: every delivery carries the secret set on Salesflow's Webhooks page in
`X-Webhook-Secret` (a plain shared secret, no signature). It is compared in constant time with
each configured secret before the body is read; anything else is refused (401).

Bodies. NEW_CONNECTION is documented (`Payload.Data.Connections[].{ConnectedAt, Profile{…}}`, no
account id). The item fields of New Messages are not public; what this module reads is written
down in docs/providers/salesflow.md ("Assumptions") and lives only here:

    {"EventType": "NEW_MESSAGES",
     "Payload": {"SyncId": "…", "SyncType": "CONVERSATIONS" | "MESSAGES", "PageNumber": 1,
                 "IsLastPage": true, "ConversationId": "2-…" (MESSAGES pages),
                 "Data": {"Conversations": [{"ConversationId", "LastActivityAt",
                                             "Participants": [{"ProfileId", "PublicIdentifier", …}]}],
                          "Messages": [{"MessageId", "ConversationId", "SenderProfileId", "SentAt", "Text"}]}}}

`Participants` are the other people in the thread (never the account itself), so a message whose
`SenderProfileId` is a participant's came from the lead.
"""
from __future__ import annotations

import datetime as dt
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.language.urls import normalize_profile_url
from runner.providers.base import ErrorKind, ProviderError
from runner.providers.http import parse_time

SECRET_HEADER = "X-Webhook-Secret"
NEW_CONNECTION = "NEW_CONNECTION"
NEW_MESSAGES = ("NEW_MESSAGES", "NEW_MESSAGE")
CONVERSATIONS, MESSAGES = "CONVERSATIONS", "MESSAGES"


@dataclass(frozen=True, slots=True)
class Person:
    profile_id: str | None
    public_identifier: str | None

    @property
    def key(self) -> str | None:
        """seqrun's profile key for the person (the public identifier, normalised)."""
        if not self.public_identifier:
            return None
        try:
            return normalize_profile_url(f"https://www.linkedin.com/in/{self.public_identifier}")[0]
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Connection:
    person: Person
    connected_at: dt.datetime


@dataclass(frozen=True, slots=True)
class NewConnections:
    connections: tuple[Connection, ...]


@dataclass(frozen=True, slots=True)
class ConversationItem:
    conversation_id: str
    last_activity_at: dt.datetime | None
    participants: tuple[Person, ...]


@dataclass(frozen=True, slots=True)
class MessageItem:
    message_id: str
    conversation_id: str
    sender_profile_id: str | None
    sent_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Page:
    """One New Messages delivery: a page of an inbox or thread sync."""

    sync_id: str
    sync_type: str  # CONVERSATIONS | MESSAGES
    number: int  # 1-based
    last: bool
    conversation_id: str | None  # the thread of a MESSAGES page
    conversations: tuple[ConversationItem, ...] = ()
    messages: tuple[MessageItem, ...] = ()

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.sync_id, self.sync_type, self.conversation_id or "", self.number)


def verify(headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    """The delivery carries one of `secrets` in X-Webhook-Secret, or ProviderError(401)."""
    given = next((v for k, v in headers.items() if k.lower() == SECRET_HEADER.lower()), "").encode()
    # Every secret is compared (no early exit), each in constant time.
    matched = False
    for secret in secrets:
        if secret and hmac.compare_digest(given, secret.encode()):
            matched = True
    if not matched:
        raise ProviderError(ErrorKind.INVALID_INPUT, f"webhook refused: missing or wrong {SECRET_HEADER}",
                            status=401, label="BAD_SECRET")


def parse(body: bytes) -> NewConnections | Page | None:
    """The delivery's content; None for an event type seqrun does not use. Bad bodies raise 400."""
    try:
        payload: Any = json.loads(body)
    except ValueError:
        raise _bad("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise _bad("the body is not a JSON object")
    kind = str(payload.get("EventType") or "")
    data = payload.get("Payload")
    if kind not in (NEW_CONNECTION, *NEW_MESSAGES):
        return None
    if not isinstance(data, dict):
        raise _bad(f"{kind}: Payload is not an object")
    if kind == NEW_CONNECTION:
        return _connections(data)
    return _page(data)


def _connections(data: Mapping[str, Any]) -> NewConnections:
    inner = got if isinstance(got := data.get("Data"), dict) else {}
    items = inner.get("Connections")
    if not isinstance(items, list):
        raise _bad("NEW_CONNECTION: Payload.Data.Connections is not a list")
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("Profile"), dict):
            raise _bad("NEW_CONNECTION: a connection without a Profile")
        at = parse_time(item.get("ConnectedAt"))
        if at is None:
            raise _bad("NEW_CONNECTION: a connection without ConnectedAt")
        out.append(Connection(_person(item["Profile"]), at))
    return NewConnections(tuple(out))


def _page(data: Mapping[str, Any]) -> Page:
    sync_id, sync_type = _text(data.get("SyncId")), str(data.get("SyncType") or "")
    number = data.get("PageNumber")
    if sync_id is None or sync_type not in (CONVERSATIONS, MESSAGES):
        raise _bad("New Messages: Payload needs SyncId and SyncType CONVERSATIONS or MESSAGES")
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise _bad("New Messages: Payload.PageNumber must be a whole number from 1")
    inner = got if isinstance(got := data.get("Data"), dict) else {}
    conversation_id = _text(data.get("ConversationId"))
    if sync_type == MESSAGES and conversation_id is None:
        raise _bad("New Messages: a MESSAGES page needs ConversationId")
    conversations = tuple(_conversation(c) for c in _list(inner, "Conversations"))
    messages = tuple(_message(m, conversation_id) for m in _list(inner, "Messages"))
    return Page(sync_id, sync_type, number, bool(data.get("IsLastPage")), conversation_id, conversations, messages)


def _conversation(item: Any) -> ConversationItem:
    cid = _text(item.get("ConversationId")) if isinstance(item, dict) else None
    if cid is None:
        raise _bad("New Messages: a conversation without ConversationId")
    people = tuple(_person(p) for p in item.get("Participants") or () if isinstance(p, dict))
    return ConversationItem(cid, parse_time(item.get("LastActivityAt")), people)


def _message(item: Any, conversation_id: str | None) -> MessageItem:
    mid = _text(item.get("MessageId")) if isinstance(item, dict) else None
    at = parse_time(item.get("SentAt")) if isinstance(item, dict) else None
    cid = (_text(item.get("ConversationId")) if isinstance(item, dict) else None) or conversation_id
    if mid is None or at is None or cid is None:
        raise _bad("New Messages: a message needs MessageId, SentAt and its ConversationId")
    return MessageItem(mid, cid, _text(item.get("SenderProfileId")), at)


def _person(raw: Mapping[str, Any]) -> Person:
    return Person(_text(raw.get("ProfileId")), _text(raw.get("PublicIdentifier")))


def _list(inner: Mapping[str, Any], name: str) -> list[Any]:
    value = inner.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"New Messages: Payload.Data.{name} is not a list")
    return value


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _bad(message: str) -> ProviderError:
    return ProviderError(ErrorKind.INVALID_INPUT, f"webhook body refused: {message}", status=400, label="BAD_BODY")
