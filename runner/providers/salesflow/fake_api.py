"""The fake Salesflow API's endpoints, computed from the simulated LinkedIn at the fake's clock.

Each handler takes (fake, account id from X-AccountId, path arguments, query, JSON body, headers,
now) and returns (status, JSON answer). Shapes are Salesflow's documented ones where the docs show
them (profiles/by-url, invitations/sent, connections, conversations, sync's 202) and the driver's
written-down assumptions elsewhere (the invitation request and answer, account and limits, the
New Messages pages, `syncId`).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from runner.providers.base import Account
from runner.providers.http import parse_time
from runner.providers.salesflow.fake_delivery import SyncRecord
from runner.providers.salesflow.fake_shapes import (
    CONVERSATIONS_PAGE,
    MESSAGES_PAGE,
    SalesflowError,
    invitation_id,
    iso,
    member_id,
    names,
    own_profile_id,
    profile_id,
)

if TYPE_CHECKING:
    from runner.providers.salesflow.fake import SalesflowFake

Handler = Callable[..., tuple[int, Any]]
#: endpoint names (for /_fake/errors and request counts)
ENDPOINTS = ("account", "limits", "profile", "connect", "invitations", "withdraw", "connections", "message", "sync")
NOTE_LIMIT, MESSAGE_LIMIT = 300, 8000


def route(method: str, parts: list[str]) -> tuple[str, Handler, list[str]] | None:
    """(endpoint name, handler, path arguments) for `method` and the path below /api/v1/."""
    n = len(parts)
    if method == "GET" and n == 2 and parts[0] == "accounts":
        return "account", account, parts[1:]
    if method == "GET" and n == 3 and parts[0] == "accounts" and parts[2] == "limits":
        return "limits", limits, parts[1:2]
    if method == "GET" and parts == ["profiles", "by-url"]:
        return "profile", profile, []
    if method == "POST" and parts == ["invitations"]:
        return "connect", connect, []
    if method == "GET" and parts == ["invitations", "sent"]:
        return "invitations", invitations, []
    if method == "DELETE" and n == 2 and parts[0] == "invitations" and parts[1] != "sent":
        return "withdraw", withdraw, parts[1:]
    if method == "GET" and parts == ["connections"]:
        return "connections", connections, []
    if method == "POST" and parts == ["conversations"]:
        return "message", create_conversation, []
    if method == "POST" and parts == ["conversations", "sync"]:
        return "sync", inbox_sync, []
    if method == "POST" and n == 3 and parts[0] == "conversations" and parts[2] == "messages":
        return "message", message_in_thread, parts[1:2]
    if method == "POST" and n == 3 and parts[0] == "conversations" and parts[2] == "sync":
        return "sync", thread_sync, parts[1:2]
    return None


# --- account ------------------------------------------------------------------------------------------

def account(fake: SalesflowFake, acc: str, args: list[str], query: Mapping[str, str], data: Mapping[str, Any],
            headers: Mapping[str, str], now: dt.datetime) -> tuple[int, Any]:
    _same_account(acc, args[0])
    with fake.world._lock:
        outage = fake.world._world.account(acc).outage_at(now)
    return 200, {"accountId": acc, "status": "ACCOUNT_PAUSED" if outage is not None else "ACCOUNT_ACTIVE",
                 "profileId": own_profile_id(acc), "publicIdentifier": f"sender-{acc}".lower(),
                 "firstName": "Fake", "lastName": "Sender"}


def limits(fake: SalesflowFake, acc: str, args: list[str], query: Mapping[str, str], data: Mapping[str, Any],
           headers: Mapping[str, str], now: dt.datetime) -> tuple[int, Any]:
    _same_account(acc, args[0])
    return 200, {"accountId": acc, **fake.limits}


def _same_account(header: str, path: str) -> None:
    if header != path:
        raise SalesflowError(403, "FORBIDDEN", f"X-AccountId {header} may not read account {path}")


# --- profiles and invitations ---------------------------------------------------------------------------

def profile(fake: SalesflowFake, acc: str, args: list[str], query: Mapping[str, str], data: Mapping[str, Any],
            headers: Mapping[str, str], now: dt.datetime) -> tuple[int, Any]:
    url = query.get("url")
    if not url:
        raise SalesflowError(400, "VALIDATION_ERROR", "the url query parameter is required")
    lead = fake.lead(url)
    state = fake.state(acc, lead.key)
    if state.profile == "inaccessible":
        raise SalesflowError(404, "PROFILE_NOT_FOUND", f"no accessible profile at {lead.profile_url}")
    connected = state.connected_since(now) is not None
    return 200, {"profile": {"profileId": profile_id(lead.key), "publicIdentifier": lead.key,
                             "linkedInMemberId": str(member_id(lead.key)), "distance": 1 if connected else 2,
                             "canSendClassicInmail": True}}


def connect(fake: SalesflowFake, acc: str, args: list[str], query: Mapping[str, str], data: Mapping[str, Any],
            headers: Mapping[str, str], now: dt.datetime) -> tuple[int, Any]:
    profile = data.get("profileId")
    note = data.get("message")
    if not isinstance(profile, str) or not profile:
        raise SalesflowError(400, "VALIDATION_ERROR", "profileId is required")
    if note is not None and (not isinstance(note, str) or len(note) > NOTE_LIMIT):
        raise SalesflowError(400, "VALIDATION_ERROR", f"message must be a string of at most {NOTE_LIMIT} characters")
    key = fake.key_of(acc, profile)
    fake.charge(acc, "invitationsWithNote" if note else "invitations", now)
    done = fake.sandbox(lambda: fake.world.connect(_ref(acc), _lead(key), note=note or None, key=fake.next_key()))
    inv = invitation_id(done.invitation_id)
    fake.record(acc, "connect", key, now, headers, profile_id=profile, invitation_id=inv, note=bool(note))
    return 200, {"invitationId": inv, "profileId": profile, "createdAt": iso(now)}


def invitations(fake: SalesflowFake, acc: str, args: list[str], query: Mapping[str, str], data: Mapping[str, Any],
                headers: Mapping[str, str], now: dt.datetime) -> tuple[int, Any]:
    rows = []
    for key, state in fake.leads_of(acc):
        invite = state.pending_invite(now)
        if invite is not None and invite.sent_at <= now:
            rows.append((invite.sent_at, {"invitationId": invitation_id(invite.invitation_id),
                                          "profileId": profile_id(key), "publicIdentifier": key,
                                          "linkedInMemberId": str(member_id(key)), "firstName": names(key)[0]}))
    rows.sort(key=lambda r: (r[0], r[1]["invitationId"]), reverse=True)
    return 200, {"profiles": _window([r for _, r in rows], query)}


def withdraw(fake: SalesflowFake, acc: str, args: list[str], query: Mapping[str, str], data: Mapping[str, Any],
             headers: Mapping[str, str], now: dt.datetime) -> tuple[int, Any]:
    wanted = args[0]
    found = next(((key, inv) for key, state in fake.leads_of(acc) for inv in state.invites
                  if invitation_id(inv.invitation_id) == wanted), None)
    if found is None or not found[1].pending_at(now):
        raise SalesflowError(404, "INVITATION_NOT_FOUND", f"invitation {wanted} not found or no longer pending")
    key, invite = found
    fake.charge(acc, "withdrawals", now)
    fake.sandbox(lambda: fake.world.withdraw(_ref(acc), _lead(key), invitation_id=invite.invitation_id,
                                            key=fake.next_key()))
    fake.record(acc, "withdraw", key, now, headers, invitation_id=wanted)
    return 200, {"invitationId": wanted}


def connections(fake: SalesflowFake, acc: str, args: list[str], query: Mapping[str, str], data: Mapping[str, Any],
                headers: Mapping[str, str], now: dt.datetime) -> tuple[int, Any]:
    rows = []
    for key, state in fake.leads_of(acc):
        since = state.connected_since(now)
        if since is not None and state.profile != "inaccessible":
            rows.append({"connectedAt": iso(since), "profileId": profile_id(key), "publicIdentifier": key,
                         "linkedInMemberId": str(member_id(key)), "trackingId": f"trk-{member_id(key)}"})
    if str(query.get("sortType", "2")) == "1":
        rows.sort(key=lambda r: (names(r["publicIdentifier"])[::-1], r["publicIdentifier"]))
    else:  # 2: recently added first
        rows.sort(key=lambda r: (r["connectedAt"], r["profileId"]), reverse=True)
    return 200, {"connections": _window(rows, query)}


def _window(rows: list[Any], query: Mapping[str, str]) -> list[Any]:
    try:
        start, count = int(query.get("start", 0)), int(query.get("count", 100))
    except ValueError:
        raise SalesflowError(400, "VALIDATION_ERROR", "start and count must be whole numbers") from None
    if start < 0 or not 1 <= count <= 100:
        raise SalesflowError(400, "VALIDATION_ERROR", "start must be 0 or more and count from 1 to 100")
    return rows[start:start + count]


# --- conversations ---------------------------------------------------------------------------------------

def create_conversation(fake: SalesflowFake, acc: str, args: list[str], query: Mapping[str, str],
                        data: Mapping[str, Any], headers: Mapping[str, str], now: dt.datetime) -> tuple[int, Any]:
    profile, text, inmail, subject = data.get("profileId"), data.get("message"), data.get("inMail", False), \
        data.get("subject")
    if not isinstance(profile, str) or not profile:
        raise SalesflowError(400, "VALIDATION_ERROR", "profileId is required")
    text = _checked_text(text)
    if not isinstance(inmail, bool):
        raise SalesflowError(400, "VALIDATION_ERROR", "inMail must be true or false")
    if subject is not None and not inmail:
        raise SalesflowError(400, "VALIDATION_ERROR", "subject is only sent with inMail: true")
    if inmail and not (isinstance(subject, str) and subject.strip()):
        raise SalesflowError(400, "VALIDATION_ERROR", "an InMail needs a subject")
    key = fake.key_of(acc, profile)
    state = fake.state(acc, key)
    if not inmail and state.thread_open(now):
        # Documented precondition: a new conversation needs no other (non-InMail) thread with the person.
        raise SalesflowError(409, "CONVERSATION_EXISTS", f"a conversation with {profile} already exists")
    fake.charge(acc, "openInMails" if inmail else "followUps", now)
    done = fake.sandbox(lambda: fake.world.send_message(_ref(acc), _lead(key), text=text, conversation_id=None,
                                                         subject=subject if inmail else None, inmail=inmail,
                                                         key=fake.next_key()))
    return _sent(fake, acc, key, done, text, now, headers, action="inmail" if inmail else "message", via="create",
                 opened_by=None)


def message_in_thread(fake: SalesflowFake, acc: str, args: list[str], query: Mapping[str, str],
                      data: Mapping[str, Any], headers: Mapping[str, str], now: dt.datetime) -> tuple[int, Any]:
    cid = args[0]
    text = _checked_text(data.get("message"))
    key, state = _thread(fake, acc, cid, now)
    opened_by = opened(state, now)
    fake.charge(acc, "followUps", now)
    done = fake.sandbox(lambda: fake.world.send_message(_ref(acc), _lead(key), text=text, conversation_id=cid,
                                                         subject=None, inmail=False, key=fake.next_key()))
    return _sent(fake, acc, key, done, text, now, headers, action="message", via="thread", opened_by=opened_by)


def _sent(fake: SalesflowFake, acc: str, key: str, done: Any, text: str, now: dt.datetime,
          headers: Mapping[str, str], *, action: str, via: str, opened_by: str | None) -> tuple[int, Any]:
    fake.texts[done.provider_id] = text
    first = (acc, key) not in fake.messaged
    fake.record(acc, action, key, now, headers, conversation_id=done.conversation_id, message_id=done.provider_id,
                via=via, opened_by=opened_by, first=first)
    return 200, {"conversationId": done.conversation_id, "messageId": done.provider_id, "createdAt": iso(now)}


def opened(state: Any, now: dt.datetime) -> str | None:
    """What opened the lead's thread: an accepted invite's note, earlier history, or our message."""
    noted = [i.accept_at for i in state.invites if i.with_note and i.accepted_by(now)]
    if noted and (state.thread_at is None or min(noted) <= state.thread_at):
        return "note"
    if state.thread_at is not None and state.profile in ("messaged_first", "recent_conversation") \
            and state.thread_at <= state.first_seen:
        return "history"
    return "message" if state.thread_at is not None else None


def _checked_text(text: object) -> str:
    if not isinstance(text, str) or not text.strip() or len(text) > MESSAGE_LIMIT:
        raise SalesflowError(400, "VALIDATION_ERROR", f"message must be a non-empty string of at most "
                                                      f"{MESSAGE_LIMIT} characters")
    return text


def _thread(fake: SalesflowFake, acc: str, cid: str, now: dt.datetime) -> tuple[str, Any]:
    with fake.world._lock:
        owner = fake.world._world.thread_owner(cid)
        state = fake.world._world.leads.get(owner) if owner is not None else None
    if owner is None or owner[0] != acc or state is None or not state.thread_open(now):
        raise SalesflowError(404, "CONVERSATION_NOT_FOUND", f"no conversation {cid} for this account")
    return owner[1], state


# --- syncs -----------------------------------------------------------------------------------------------

def inbox_sync(fake: SalesflowFake, acc: str, args: list[str], query: Mapping[str, str], data: Mapping[str, Any],
               headers: Mapping[str, str], now: dt.datetime) -> tuple[int, Any]:
    conv_from = parse_time(data.get("conversationsFromDate"))
    msg_from = parse_time(data.get("messagesFromDate")) if data.get("messagesFromDate") else conv_from
    if conv_from is None or msg_from is None:
        raise SalesflowError(400, "VALIDATION_ERROR", "conversationsFromDate (and messagesFromDate) must be "
                                                      "ISO 8601 date-times")
    threads = []
    for key, state in fake.leads_of(acc):
        if state.profile == "inaccessible" or not state.thread_open(now):
            continue
        notes = state.visible_messages(now)
        activity = [m.sent_at for m in notes] + [i.accept_at for i in state.invites
                                                 if i.with_note and i.accepted_by(now)]
        if state.thread_at is not None and state.thread_at <= now:
            activity.append(state.thread_at)
        last = max(activity)
        if last >= conv_from:
            threads.append((last, key, notes))
    threads.sort(key=lambda t: (t[0], t[1]), reverse=True)
    sync_id = fake.next_sync_id()
    pages: list[tuple[tuple[str, str, int], dict[str, Any]]] = []
    chunks = [threads[i:i + CONVERSATIONS_PAGE] for i in range(0, len(threads), CONVERSATIONS_PAGE)] or [[]]
    for number, chunk in enumerate(chunks, 1):
        items = [_conversation_item(fake, acc, key, last) for last, key, _ in chunk]
        pages.append((("CONVERSATIONS", "", number),
                      _page(sync_id, "CONVERSATIONS", number, number == len(chunks), None, {"Conversations": items})))
    for _last, key, notes in threads:
        pages += _message_pages(fake, acc, sync_id, key, [m for m in notes if m.sent_at >= msg_from])
    fake.deliveries.sync_pages(sync_id, SyncRecord(acc, iso(now), "inbox"), pages)
    return 202, {"syncId": sync_id}


def thread_sync(fake: SalesflowFake, acc: str, args: list[str], query: Mapping[str, str], data: Mapping[str, Any],
                headers: Mapping[str, str], now: dt.datetime) -> tuple[int, Any]:
    key, state = _thread(fake, acc, args[0], now)
    sync_id = fake.next_sync_id()
    pages = _message_pages(fake, acc, sync_id, key, state.visible_messages(now))
    fake.deliveries.sync_pages(sync_id, SyncRecord(acc, iso(now), "thread"), pages)
    return 202, {"syncId": sync_id}


def _conversation_item(fake: SalesflowFake, acc: str, key: str, last: dt.datetime) -> dict[str, Any]:
    first, surname = names(key)
    return {"ConversationId": fake.world._world.thread_id(acc, key), "LastActivityAt": iso(last),
            "Participants": [{"ProfileId": profile_id(key), "PublicIdentifier": key, "FirstName": first,
                              "LastName": surname}]}


def _message_pages(fake: SalesflowFake, acc: str, sync_id: str, key: str, notes: list[Any]
                   ) -> list[tuple[tuple[str, str, int], dict[str, Any]]]:
    cid = fake.world._world.thread_id(acc, key)
    newest_first = sorted(notes, key=lambda m: (m.sent_at, m.message_id), reverse=True)
    chunks = [newest_first[i:i + MESSAGES_PAGE] for i in range(0, len(newest_first), MESSAGES_PAGE)] or [[]]
    out = []
    for number, chunk in enumerate(chunks, 1):
        items = [{"MessageId": m.message_id, "ConversationId": cid,
                  "SenderProfileId": profile_id(key) if m.from_lead else own_profile_id(acc),
                  "SentAt": iso(m.sent_at), "Text": fake.text(m.message_id, m.from_lead)} for m in chunk]
        out.append((("MESSAGES", cid, number),
                    _page(sync_id, "MESSAGES", number, number == len(chunks), cid, {"Messages": items})))
    return out


def _page(sync_id: str, sync_type: str, number: int, last: bool, cid: str | None, data: dict[str, Any]
          ) -> dict[str, Any]:
    payload: dict[str, Any] = {"SyncId": sync_id, "SyncType": sync_type, "PageNumber": number, "IsLastPage": last,
                               "Data": data}
    if cid is not None:
        payload["ConversationId"] = cid
    return {"EventType": "NEW_MESSAGES", "Payload": payload}


def _ref(acc: str) -> Account:
    return Account(sender=acc, account_id=acc)


def _lead(key: str) -> Any:
    from runner.providers.base import LeadRef

    return LeadRef(key, f"https://www.linkedin.com/in/{key}")
