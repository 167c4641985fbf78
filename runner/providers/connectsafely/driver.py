"""The ConnectSafely driver (connectsafely.ai, seed 003): every `Provider` call as ConnectSafely requests.

Wire (`api.ConnectSafelyAPI`): base `https://api.connectsafely.ai/linkedin`, `Authorization: Bearer`,
the sender's `accountId` in the body (POST) or query (GET). Leads are named by their public profile
id (`profileId`), or by `profileUrn` when the key is a member token.

How each question is answered (docs/providers/connectsafely.md has the long version):
- relationship: `GET /relationship/{profileId}` (`connected`, `invitationSent`);
- conversation: `GET /conversations/exists/{profileId}` for the thread's URN, then its messages
  (`GET /conversations/{urn}/messages`); `isSentByOwner: false` is the lead;
- message: `POST /conversations/send` as seed 003 documents it, into `conversationUrn` when the thread
  is known (the thread an invite with a note created), else to the recipient (a new conversation);
- events: acceptances from `GET /connections?sortBy=recentlyAdded` (dates only: see `poll_events`),
  replies from `GET /conversations` (most recent activity first) and the messages of the threads
  active since; pushed replies come through the `message.received` webhook (`webhook.py`);
- quotas (`quota.QuotaBook`): invitations 90 a week, new conversations 150 a day, per account; an
  action over its quota is refused here, before any request, with LIMIT_REACHED until the reset;
- find_action: the driver's own memo of keys (same process), else what ConnectSafely shows.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from runner.language.urls import normalize_profile_url
from runner.providers import CAPABILITIES
from runner.providers.base import (
    Account,
    ActionResult,
    Conversation,
    ErrorKind,
    LeadRef,
    Message,
    PollResult,
    ProviderError,
    ProviderEvent,
    Relationship,
    SenderCheck,
)
from runner.providers.connectsafely.api import ConnectSafelyAPI, quote
from runner.providers.connectsafely.quota import QuotaBook
from runner.providers.connectsafely.shapes import connected_interval, parse_moment, profile_urn, relative_interval
from runner.providers.connectsafely.webhook import parse_webhook
from runner.providers.http import ActionMemo, RequestBudget

log = logging.getLogger(__name__)
UTC = dt.UTC

NOTE_LIMIT = 300  # characters in `customMessage`
#: Acceptances and inspected threads older than the cursor by this much are forgotten: the engine's
#: cursor only moves forward (less a 2-minute overlap), so they would never be reported again.
FORGET_AFTER = dt.timedelta(days=1)
_MEMBER_TOKEN = re.compile(r"ACoA[A-Za-z0-9_-]{20,}")


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)


@dataclass
class _Known:
    """What the driver has seen of one account's LinkedIn in this process."""

    top: str | None = None  # the newest connection the last walk saw: the next walk stops there
    first_seen: dict[str, dt.datetime] = field(default_factory=dict)  # lead key -> first seen connected
    accepted: dict[str, tuple[dt.datetime, str]] = field(default_factory=dict)  # key -> (occurred_at, event id)
    threads: dict[str, str] = field(default_factory=dict)  # lead key -> conversationUrn
    # conversationUrn -> (lastActivityAt read, the since it was read with, the replies found)
    inspected: dict[str, tuple[dt.datetime, dt.datetime, tuple[ProviderEvent, ...]]] = field(default_factory=dict)


class ConnectSafelyProvider:
    """The `connectsafely` driver. `client` is built by `runner.providers.http.make_client` (base URL
    `https://api.connectsafely.ai/linkedin` unless the sender's `base_url` says otherwise)."""

    name = "connectsafely"
    capabilities = CAPABILITIES["connectsafely"]

    def __init__(self, client: httpx.Client, *, clock: Callable[[], dt.datetime] = utc_now,
                 budget: RequestBudget | None = None, sleep: Callable[[float], None] = time.sleep,
                 page_delay: float = 0.0, owns_client: bool = False) -> None:
        # `page_delay` is accepted like every HTTP driver's; ConnectSafely asks for no spacing.
        self.client = client
        self.quotas = QuotaBook()
        self.api = ConnectSafelyAPI(client, clock=clock, quotas=self.quotas, budget=budget, sleep=sleep)
        self._owns_client = owns_client
        self._clock = clock
        self._known: dict[str, _Known] = {}
        self._memo = ActionMemo()

    @property
    def requests(self) -> int:
        """HTTP requests made, for reports."""
        return self.api.requests

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    # --- Provider: reading ----------------------------------------------------------------------

    def relationship(self, account: Account, lead: LeadRef) -> Relationship:
        out = self.api.call(account, "GET", f"relationship/{quote(_profile_id(lead))}", kind="read",
                            not_found=ErrorKind.PROFILE_NOT_ACCESSIBLE)
        out = out if isinstance(out, Mapping) else {}
        status = str(out.get("status") or "").upper()
        connected = bool(out.get("connected")) or status in ("CONNECTED", "FIRST_DEGREE")
        pending = not connected and (bool(out.get("invitationSent")) or status in ("PENDING", "INVITATION_SENT"))
        at = None
        if connected:
            at = self._account(account).first_seen.setdefault(lead.key, self._now())
        return Relationship(connected=connected, invite_pending=pending, connected_at=at, provider_ids=_ids(out))

    def conversation(self, account: Account, lead: LeadRef) -> Conversation:
        urn = self._thread(account, lead)
        if urn is None:
            return Conversation(None)
        items = self.api.messages(account, urn)
        messages = sorted((Message(str(m.get("messageUrn") or m.get("id")), _moment(m.get("sentAt"), self._now()),
                                   m.get("isSentByOwner") is False) for m in items),
                          key=lambda m: (m.sent_at, m.message_id))
        return Conversation(urn, tuple(messages))

    # --- Provider: actions ------------------------------------------------------------------------

    def visit(self, account: Account, lead: LeadRef, *, key: str) -> ActionResult:
        if (done := self._memo.replay(account, lead, "visit", key)) is not None:
            return done
        out = self.api.call(account, "POST", "profile/visit", kind="write", body=_target(lead),
                            not_found=ErrorKind.PROFILE_NOT_ACCESSIBLE)
        result = ActionResult(performed_at=self._now(), provider_ids=_ids(out))
        return self._memo.remember(account, lead, "visit", key, result)

    def connect(self, account: Account, lead: LeadRef, *, note: str | None, key: str) -> ActionResult:
        if (done := self._memo.replay(account, lead, "connect", key)) is not None:
            return done
        if note and len(note) > NOTE_LIMIT:
            raise ProviderError(ErrorKind.INVALID_INPUT,
                                f"a connection note may have at most {NOTE_LIMIT} characters, got {len(note)}")
        self._within_quota(account, "CONNECT")
        body = {**_target(lead), **({"customMessage": note} if note else {})}
        out = self.api.call(account, "POST", "connect", kind="write", body=body,
                            not_found=ErrorKind.PROFILE_NOT_ACCESSIBLE)
        result = ActionResult(performed_at=self._now(), provider_ids=_ids(out))
        return self._memo.remember(account, lead, "connect", key, result)

    def send_message(self, account: Account, lead: LeadRef, *, text: str, conversation_id: str | None,
                     subject: str | None, inmail: bool, key: str,
                     attachments: Sequence[Mapping[str, Any]] = ()) -> ActionResult:
        """`POST /conversations/send`. `attachments` are items from ConnectSafely's upload endpoint
        (`{"file": {"assetUrn", "byteSize", "mediaType", "name"}}`), passed through as they are."""
        action = "inmail" if inmail else "message"
        if (done := self._memo.replay(account, lead, action, key)) is not None:
            return done
        if conversation_id is None:  # a new conversation: counted against the daily quota
            self._within_quota(account, "NEW_CONVERSATION")
        body: dict[str, Any] = dict(_recipient(lead))
        if conversation_id is not None:
            body["conversationUrn"] = conversation_id
        body["message"] = text
        if inmail and subject:
            body["subject"] = subject
        if attachments:
            body["attachments"] = [dict(a) for a in attachments]
        out = self.api.call(account, "POST", "conversations/send", kind="write", body=body,
                            not_found=ErrorKind.PROFILE_NOT_ACCESSIBLE)
        out = out if isinstance(out, Mapping) else {}
        sent = got if isinstance(got := out.get("sentMessage"), Mapping) else {}
        now = self._now()
        at = min(_moment(sent.get("sentAt"), now), now)
        urn = conversation_id or _text(sent.get("conversationUrn")) or _text(out.get("conversationUrn"))
        known = self._account(account)
        if urn is None:
            urn = self._thread_after_send(account, lead)
        if urn is not None:
            known.threads[lead.key] = urn
        ids = _ids(out)
        if out.get("threadId"):  # Sales Navigator accounts: the SN thread of this lead
            ids["sales_navigator_thread_id"] = str(out["threadId"])
        result = ActionResult(performed_at=at, provider_id=_text(sent.get("messageUrn")), conversation_id=urn,
                              provider_ids=ids)
        return self._memo.remember(account, lead, action, key, result)

    def withdraw(self, account: Account, lead: LeadRef, *, invitation_id: str | None, key: str) -> ActionResult:
        if (done := self._memo.replay(account, lead, "withdraw", key)) is not None:
            return done
        body: dict[str, Any] = {"profileId": _profile_id(lead)}
        if invitation_id is not None:
            body["invitationId"] = invitation_id
        self.api.call(account, "POST", "invitations/withdraw", kind="write", body=body, not_found=ErrorKind.NOT_FOUND)
        result = ActionResult(performed_at=self._now(), invitation_id=invitation_id)
        return self._memo.remember(account, lead, "withdraw", key, result)

    # --- Provider: reconciliation and events ----------------------------------------------------

    def find_action(self, account: Account, lead: LeadRef, *, action: str, key: str,
                    since: dt.datetime) -> ActionResult | None:
        """See the module docstring; docs/providers/connectsafely.md has the table per action."""
        memo = self._memo.get((account.account_id, key))
        if memo is not None:
            done_action, lead_key, result = memo
            ok = done_action == action and lead_key == lead.key and result.performed_at >= since
            return result if ok else None
        if action == "connect":
            rel = self.relationship(account, lead)
            if rel.connected:  # not connected when the action was recorded: sent and accepted since
                return ActionResult(performed_at=since, provider_ids=rel.provider_ids)
            if not rel.invite_pending:
                return None
            sent = self._invitation_sent(account, lead)
            if sent is not None and sent[1] < since:
                return None  # an older invitation: ours never went out (connect answers INVITATION_PENDING)
            return ActionResult(performed_at=max(since, sent[0]) if sent else since, provider_ids=rel.provider_ids)
        if action in ("message", "inmail"):
            conversation = self.conversation(account, lead)
            ours = [m for m in conversation.messages if not m.from_lead and m.sent_at >= since]
            if not ours:
                return None
            return ActionResult(performed_at=ours[0].sent_at, provider_id=ours[0].message_id,
                                conversation_id=conversation.conversation_id)
        if action == "withdraw":
            rel = self.relationship(account, lead)
            return None if rel.invite_pending or rel.connected else ActionResult(performed_at=since)
        if action == "visit":
            return None  # ConnectSafely keeps no list of visits: the visit is made again
        raise ProviderError(ErrorKind.INVALID_INPUT, f"unknown action {action!r}")

    def poll_events(self, account: Account, *, since: dt.datetime | None) -> PollResult:
        """Acceptances and replies newer than `since`.

        `since=None` (a sender's first sync) is a baseline, as for Edges: it notes where the lists
        stand and reports nothing. Connections carry only a date ("Connected on Feb 15, 2024"), so an
        acceptance is dated when this process first saw it, within that day; an acceptance is
        reported (under the same event id) in every poll whose `since` is before that time.
        """
        now = self._now()
        known = self._account(account)
        if since is None:
            self._baseline(account, known)
            return PollResult((), synced_until=now)
        events = self._acceptances(account, known, since, now) + self._replies(account, known, since)
        _forget_before(known, since - FORGET_AFTER)
        ordered = sorted({e.event_id: e for e in events}.values(), key=lambda e: (e.occurred_at, e.event_id))
        return PollResult(tuple(ordered), synced_until=max([now] + [e.occurred_at for e in ordered]))

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, *, secret: str,
                      received_at: dt.datetime) -> list[ProviderEvent]:
        """`message.received` deliveries, signed with the webhook secret; see `webhook`."""
        return parse_webhook(headers, body, secret=secret, received_at=received_at)

    # --- senders check ----------------------------------------------------------------------------

    def check(self, account: Account) -> SenderCheck:
        """`GET /account/status`: the key, the LinkedIn session (`ERROR`: re-authenticate), the own id;
        the quotas from `GET /account/{id}/quota` where ConnectSafely answers."""
        try:
            out = self.api.call(account, "GET", "account/status", kind="account")
        except ProviderError as err:
            if err.kind is ErrorKind.API_KEY_REJECTED:
                return SenderCheck(False, "missing" if err.status is None else "rejected", "unknown",
                                   problem=err.message)
            if err.kind is ErrorKind.AUTH_EXPIRED:
                return SenderCheck(False, "ok", "auth expired", problem=err.message)
            return SenderCheck(False, "unknown", "unknown", problem=f"{err.kind.value}: {err.message}")
        out = out if isinstance(out, Mapping) else {}
        status = str(out.get("status") or "").upper()
        own = _text(out.get("publicId"))
        if status == "ERROR" or out.get("enabled") is False or out.get("hasTokens") is False:
            why = f"status {status}" if status else ("disabled" if out.get("enabled") is False else "no session tokens")
            return SenderCheck(False, "ok", "auth expired", profile_id=own,
                               problem=f"the LinkedIn session of account {account.account_id} needs re-authentication "
                                       f"(ConnectSafely says {why}): reconnect it in ConnectSafely's dashboard, then "
                                       f"`seqrun senders resume {account.sender}`")
        return SenderCheck(True, "ok", status.lower() or "ok", profile_id=own, limits=self._limits(account))

    def _limits(self, account: Account) -> dict[str, Any]:
        try:
            out = self.api.call(account, "GET", f"account/{quote(account.account_id)}/quota", kind="account")
        except ProviderError as err:
            log.info("sender %s: quotas not available: %s", account.sender, err.message)
            return {}
        names = {"CONNECT": "connect", "NEW_CONVERSATION": "new_conversation", "MESSAGE": "message"}
        return {names.get(action, action.lower()): state.to_json()
                for action, state in self.quotas.load(account.account_id, out, self._now()).items()}

    # --- helpers ----------------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return self._clock().astimezone(UTC)

    def _account(self, account: Account) -> _Known:
        return self._known.setdefault(account.account_id, _Known())

    def _within_quota(self, account: Account, action: str) -> None:
        """Read the account's quotas once per process, then refuse an action over its quota here."""
        if not self.quotas.loaded(account.account_id):
            try:
                out = self.api.call(account, "GET", f"account/{quote(account.account_id)}/quota", kind="account")
                self.quotas.load(account.account_id, out, self._now())
            except ProviderError as err:
                if err.kind in (ErrorKind.API_KEY_REJECTED, ErrorKind.AUTH_EXPIRED):
                    raise
                # Not fatal: every answer's X-RateLimit-* headers tell the same as they go.
                log.info("sender %s: quotas not read (%s); going by the rate-limit headers", account.sender,
                         err.message)
                self.quotas.mark_loaded(account.account_id)
        self.quotas.check(account.account_id, action, self._now())

    def _thread(self, account: Account, lead: LeadRef) -> str | None:
        known = self._account(account)
        urn = known.threads.get(lead.key)
        if urn is not None:
            return urn
        try:
            out = self.api.call(account, "GET", f"conversations/exists/{quote(_profile_id(lead))}", kind="inbox",
                                not_found=ErrorKind.NOT_FOUND)
        except ProviderError as err:
            if err.kind is ErrorKind.NOT_FOUND:  # some answer "no conversation" with a 404
                return None
            raise
        out = out if isinstance(out, Mapping) else {}
        found = _text(out.get("conversationUrn"))
        if found is not None and out.get("exists") is not False:
            known.threads[lead.key] = found  # a 1:1 thread never changes: worth keeping
            return found
        return None

    def _thread_after_send(self, account: Account, lead: LeadRef) -> str | None:
        """The URN of the conversation a send just started (its answer does not name it); a failed
        look-up must not fail a message that went out."""
        try:
            return self._thread(account, lead)
        except ProviderError as err:
            log.info("sender %s: conversation of %s not found after sending: %s", account.sender, lead.key,
                     err.message)
            return None

    def _invitation_sent(self, account: Account, lead: LeadRef) -> tuple[dt.datetime, dt.datetime] | None:
        """When the lead's pending invitation went out, as an interval (`sentAt` is "2 days ago")."""
        now = self._now()
        for item in self.api.invitations(account):
            profile = got if isinstance(got := item.get("profile"), Mapping) else {}
            who = _key_of(profile.get("publicIdentifier")) or _key_of(item.get("publicIdentifier"))
            urn = _text(item.get("memberUrn"))
            if who == lead.key or (urn is not None and urn == lead.provider_ids.get("profile_urn")):
                return relative_interval(item.get("sentAt"), now) or (now, now)
        return None

    def _baseline(self, account: Account, known: _Known) -> None:
        for item in self.api.connections(account):
            known.top = _key_of(item.get("vanityName")) or _key_of(item.get("profileUrl"))
            break

    def _acceptances(self, account: Account, known: _Known, since: dt.datetime,
                     now: dt.datetime) -> list[ProviderEvent]:
        """New connections, newest first, down to what an earlier walk saw or to `since`'s day."""
        newest: str | None = None
        for item in self.api.connections(account):
            key = _key_of(item.get("vanityName")) or _key_of(item.get("profileUrl"))
            if key is None:
                continue
            if newest is None:
                newest = key
            if key == known.top:
                break  # everything below was seen by an earlier walk
            earliest, latest = connected_interval(item.get("connectedDate"), now) or (now, now)
            if latest <= since:
                break  # the list is newest first: the rest is older still
            seen = known.first_seen.setdefault(key, now)
            if key not in known.accepted:
                event_id = f"connectsafely:{account.account_id}:accepted:{key}:{earliest.date().isoformat()}"
                known.accepted[key] = (max(earliest, min(seen, latest)), event_id)
        if newest is not None:
            known.top = newest
        return [ProviderEvent(event_id, "accepted", at, account.account_id, key)
                for key, (at, event_id) in known.accepted.items() if at > since]

    def _replies(self, account: Account, known: _Known, since: dt.datetime) -> list[ProviderEvent]:
        """Messages from leads in the threads active since `since` (most recent activity first)."""
        found: list[ProviderEvent] = []
        for item in self.api.conversations(account):
            last = parse_moment(item.get("lastActivityAt"))
            urn = _text(item.get("conversationUrn"))
            if last is None or urn is None:
                continue
            if last <= since:
                break
            key = _participant(item, account)
            if key is not None:
                known.threads.setdefault(key, urn)
            # Read even when the newest activity is our own message: the lead may have written
            # between the sync before that send and the send itself.
            cached = known.inspected.get(urn)
            if cached is not None and cached[0] == last and cached[1] <= since:
                found += [e for e in cached[2] if e.occurred_at > since]
                continue
            replies = tuple(
                ProviderEvent(f"connectsafely:message:{m.get('messageUrn')}", "replied", at, account.account_id, key,
                              urn, {"message_urn": m.get("messageUrn")})
                for m in self.api.messages(account, urn, since=since)
                if m.get("isSentByOwner") is False and m.get("messageUrn")
                and (at := _moment(m.get("sentAt"), last)) > since)
            known.inspected[urn] = (last, since, replies)
            found += replies
        return found



def _forget_before(known: _Known, cutoff: dt.datetime) -> None:
    """Keep a long-running process's memory bounded by what a poll can still report."""
    for key in [k for k, (at, _) in known.accepted.items() if at <= cutoff]:
        del known.accepted[key]
    for urn in [u for u, (last, _, _) in known.inspected.items() if last <= cutoff]:
        del known.inspected[urn]


# --- lead ids ---------------------------------------------------------------------------------------

def _profile_id(lead: LeadRef) -> str:
    """The `profileId` ConnectSafely takes: the public id (or the member / Sales Navigator id)."""
    return lead.key[3:] if lead.key.startswith("sn:") else lead.key


def _target(lead: LeadRef) -> dict[str, str]:
    """`profileUrn` for member tokens (and leads whose URN is known without a public id), else `profileId`."""
    if _MEMBER_TOKEN.fullmatch(lead.key):
        return {"profileUrn": profile_urn(lead.key)}
    if lead.key.startswith("sn:") and lead.provider_ids.get("profile_urn"):
        return {"profileUrn": lead.provider_ids["profile_urn"]}
    return {"profileId": _profile_id(lead)}


def _recipient(lead: LeadRef) -> dict[str, str]:
    target = _target(lead)
    if "profileUrn" in target:
        return {"recipientProfileUrn": target["profileUrn"]}
    return {"recipientProfileId": target["profileId"]}


def _ids(out: object) -> dict[str, str]:
    if not isinstance(out, Mapping):
        return {}
    urn = _text(out.get("profileUrn")) or _text(out.get("recipientProfileUrn"))
    return {"profile_urn": profile_urn(urn)} if urn else {}


def _key_of(value: object) -> str | None:
    """seqrun's lead key for a public id or a profile URL ConnectSafely names."""
    if not isinstance(value, str) or not value:
        return None
    url = value if "linkedin.com" in value else f"https://www.linkedin.com/in/{value}"
    try:
        return normalize_profile_url(url)[0]
    except ValueError:
        return None


def _participant(item: Mapping[str, Any], account: Account) -> str | None:
    for person in item.get("participants") or ():
        if not isinstance(person, Mapping):
            continue
        key = _key_of(person.get("profileId")) or _key_of(person.get("publicIdentifier"))
        if key is not None and key != (account.profile_id or "").lower():
            return key
    return None


def _moment(value: object, default: dt.datetime) -> dt.datetime:
    return parse_moment(value) or default


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
