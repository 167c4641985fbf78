"""The Salesflow driver (new API, seed 000): every `Provider` call as Salesflow requests and webhooks.

How each question is answered (docs/providers/salesflow.md has the long version):
- the lead's `profileId` comes from `GET api/v1/profiles/by-url` once, and is kept on the lead
  (`provider_ids.salesflow_profile_id`);
- relationship: `GET api/v1/connections?sortType=2` (newest first, walked down to what is known)
  and `GET api/v1/invitations/sent`, cached per account for `fresh_for` (60 s);
- conversation (sync-before-send): the lead's thread as an inbox sync that *finished* no earlier
  than `send_freshness` ago shows it; without one, an inbox sync is asked for and waited for
  (bounded by `sync_wait`), and if it does not finish the call answers `NOT_READY` (`SYNC_PENDING`):
  the sender's messages wait, and a message is never sent on a stale inbox;
- the first message: into the thread when one is known (the one an invite's note created, found by
  the inbox sync), else `POST api/v1/conversations` creates it; after every message a sync is wanted
  again 5-10 minutes later (`poll_due`);
- events: acceptances from the `NEW_CONNECTION` webhook (matched to the account by our own sent
  invitations) and, as a safety net, from the connections list down to the cursor; replies from the
  New Messages pages of inbox syncs (`syncs.SyncBook`); the cursor handed back is the start of the
  newest finished inbox sync, never of one still streaming;
- find_action: the driver's memo of keys (same process), else what Salesflow shows.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

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
from runner.providers.http import ActionMemo, RequestBudget, parse_time
from runner.providers.salesflow import webhook
from runner.providers.salesflow.api import SalesflowAPI, connect_request
from runner.providers.salesflow.network import Network
from runner.providers.salesflow.syncs import Sync, SyncBook

log = logging.getLogger(__name__)
UTC = dt.UTC

PROFILE_ID = "salesflow_profile_id"  # the lead's Salesflow profileId in `provider_ids`
FRESH_FOR = dt.timedelta(seconds=60)  # connections and invitations answer relationship questions
SEND_FRESHNESS = dt.timedelta(seconds=60)  # how old the inbox sync before a message may be
SYNC_WAIT = 20.0  # seconds to wait for a sync's pages before the call is retried later
SYNC_RETRY = dt.timedelta(minutes=2)  # when a message whose sync did not finish is tried again (doubling)
SYNC_RETRY_MAX = dt.timedelta(minutes=30)
SYNC_OVERLAP = dt.timedelta(minutes=2)  # seed 000: ask from the marker minus 1-2 minutes
HYDRATE = dt.timedelta(days=30)  # the first inbox sync of a process reaches this far back
MESSAGE_HISTORY = dt.timedelta(days=30)  # messages of listed threads, before conversationsFromDate
REFRESH_AFTER = (dt.timedelta(minutes=5), dt.timedelta(minutes=10))  # seed 000: sync again at T+5-10 min
#: Salesflow's documented defaults per account and day, used when its limits cannot be read.
DOCUMENTED_LIMITS = {"connect": 15, "message": 20, "inmail": 20, "withdraw": 40}
#: Our action -> the fields of `GET accounts/{id}/limits` that cap it (the lowest wins).
LIMIT_FIELDS = {"connect": ("invitations", "invitationsWithNote"), "message": ("followUps",),
                "inmail": ("openInMails",), "withdraw": ("withdrawals",)}  # profile views: no visits here


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)


class SalesflowProvider:
    """The `salesflow` driver. `client` is built by `runner.providers.http.make_client` (base URL
    `https://api.salesflow.io/public` unless the sender's `base_url` says otherwise)."""

    name = "salesflow"
    capabilities = CAPABILITIES["salesflow"]

    def __init__(self, client: httpx.Client, *, clock: Callable[[], dt.datetime] = utc_now,
                 budget: RequestBudget | None = None, sleep: Callable[[float], None] = time.sleep,
                 page_delay: float = 0.0, fresh_for: dt.timedelta = FRESH_FOR, sync_wait: float = SYNC_WAIT,
                 send_freshness: dt.timedelta = SEND_FRESHNESS, owns_client: bool = False) -> None:
        self.client = client
        self.api = SalesflowAPI(client, clock=clock, budget=budget, sleep=sleep, page_delay=page_delay)
        self.book = SyncBook()
        self.receiving = False  # set when a webhook receiver is mounted (`receive_webhooks`)
        self.fresh_for, self.sync_wait, self.send_freshness = fresh_for, sync_wait, send_freshness
        self._owns_client = owns_client
        self._clock = clock
        self.network = Network(self.api, clock, fresh_for)
        self._lock = threading.RLock()  # `_refresh_at` is read by the engine, written here
        self._profiles: dict[str, str] = {}  # lead key -> profile id
        self._floor: dict[str, dt.datetime] = {}  # the last `since` the engine gave, per account
        self._hydrate: set[str] = set()  # accounts whose next inbox sync reaches back HYDRATE
        self._hydrated: set[str] = set()
        self._refresh_at: dict[str, dt.datetime] = {}
        self._stalled: dict[str, int] = {}  # account -> inbox syncs in a row that did not finish
        self._memo = ActionMemo()

    @property
    def requests(self) -> int:
        return self.api.requests

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def receive_webhooks(self) -> None:
        """A webhook receiver delivers Salesflow's webhooks to this driver from now on."""
        self.receiving = True

    # --- Provider: reading ----------------------------------------------------------------------

    def relationship(self, account: Account, lead: LeadRef) -> Relationship:
        connection, invitation = self.network.lookup(account, lead.key)
        ids = self._ids(lead, (connection[1] if connection else None) or _text((invitation or {}).get("profileId")))
        if connection is not None:
            return Relationship(connected=True, invite_pending=False, connected_at=connection[0], provider_ids=ids)
        if invitation is not None:
            return Relationship(connected=False, invite_pending=True,
                                invitation_id=_text(invitation.get("invitationId")), provider_ids=ids)
        return Relationship(connected=False, invite_pending=False, provider_ids=ids)

    def conversation(self, account: Account, lead: LeadRef) -> Conversation:
        """The lead's thread as a finished inbox sync no older than `send_freshness` shows it."""
        now = self._now()
        self._require_webhooks(now)
        if self.book.fresh(account.account_id, now - self.send_freshness) is None:
            sync = self._sync(account, now)
            if not self._finished(account, sync):
                raise ProviderError(ErrorKind.NOT_READY, f"the inbox sync of account {account.account_id} did not "
                                    f"finish within {self.sync_wait:g} s (Salesflow's New Messages webhooks); the "
                                    "message waits for one, it is never sent without",
                                    retry_at=now + self._retry_after(account), label="SYNC_PENDING")
        thread = self.book.thread_for(account.account_id, lead.key, self._known_profile(lead))
        if thread is None:
            return Conversation(None)
        return Conversation(thread.conversation_id, thread.sorted_messages())

    # --- Provider: actions ----------------------------------------------------------------------

    def visit(self, account: Account, lead: LeadRef, *, key: str) -> ActionResult:
        raise ProviderError(ErrorKind.INVALID_INPUT, "Salesflow's API has no profile visit", label="UNSUPPORTED")

    def connect(self, account: Account, lead: LeadRef, *, note: str | None, key: str) -> ActionResult:
        if (done := self._memo.replay(account, lead, "connect", key)) is not None:
            return done
        profile = self._profile_id(account, lead)
        method, path, body = connect_request(profile, note)
        try:
            out = self.api.call(account, method, path, json=body, key=key)
        except ProviderError as err:
            raise self._connect_refusal(account, lead, err) from None
        now = self._now()
        out = out if isinstance(out, Mapping) else {}
        invitation_id = _text(out.get("invitationId"))
        self.network.invited(account, lead.key, profile, invitation_id)
        result = ActionResult(performed_at=now, provider_id=invitation_id, invitation_id=invitation_id,
                              provider_ids={PROFILE_ID: profile})
        return self._memo.remember(account, lead, "connect", key, result)

    def send_message(self, account: Account, lead: LeadRef, *, text: str, conversation_id: str | None,
                     subject: str | None, inmail: bool, key: str) -> ActionResult:
        action = "inmail" if inmail else "message"
        if (done := self._memo.replay(account, lead, action, key)) is not None:
            return done
        profile = self._profile_id(account, lead)
        thread = None if inmail else conversation_id
        if thread is None and not inmail:
            known = self.book.thread_for(account.account_id, lead.key, profile)
            thread = known.conversation_id if known is not None else None
        if thread is not None:
            out = self.api.call(account, "POST", f"api/v1/conversations/{thread}/messages", json={"message": text},
                                key=key)
        else:  # seed 000: no thread yet (an invite without a note) -> create the conversation
            body: dict[str, Any] = {"profileId": profile, "message": text, "inMail": inmail}
            if inmail:
                body["subject"] = subject or ""
            try:
                out = self.api.call(account, "POST", "api/v1/conversations", json=body, key=key)
            except ProviderError as err:
                if err.label == "CONVERSATION_EXISTS":
                    # A thread we have not seen: the next inbox sync reaches back far enough to find it.
                    self._hydrate.add(account.account_id)
                raise
        now = self._now()
        out = out if isinstance(out, Mapping) else {}
        cid = _text(out.get("conversationId")) or thread
        mid = _text(out.get("messageId"))
        at = min(parse_time(out.get("createdAt")) or now, now)
        if cid is not None and mid is not None:
            self.book.sent(account.account_id, lead.key, profile, cid, Message(mid, at, False))
        self._want_refresh(account, now, key)
        result = ActionResult(performed_at=at, provider_id=mid, conversation_id=cid, provider_ids={PROFILE_ID: profile})
        return self._memo.remember(account, lead, action, key, result)

    def withdraw(self, account: Account, lead: LeadRef, *, invitation_id: str | None, key: str) -> ActionResult:
        if (done := self._memo.replay(account, lead, "withdraw", key)) is not None:
            return done
        _, invitation = self.network.lookup(account, lead.key, force=True)
        pending = _text((invitation or {}).get("invitationId"))
        if pending is None or (invitation_id is not None and invitation_id != pending):
            raise ProviderError(ErrorKind.NOT_FOUND, f"no pending invitation to {lead.key} in Salesflow's sent "
                                                     "invitations", label="INVITATION_NOT_FOUND")
        self.api.call(account, "DELETE", f"api/v1/invitations/{pending}", key=key)
        self.network.withdrawn(account, lead.key)
        result = ActionResult(performed_at=self._now(), provider_id=pending, invitation_id=pending)
        return self._memo.remember(account, lead, "withdraw", key, result)

    # --- Provider: reconciliation and events ----------------------------------------------------

    def find_action(self, account: Account, lead: LeadRef, *, action: str, key: str,
                    since: dt.datetime) -> ActionResult | None:
        """See docs/providers/salesflow.md ("Reconciliation"): the memo, else what Salesflow shows."""
        memo = self._memo.get((account.account_id, key))
        if memo is not None:
            done_action, lead_key, result = memo
            ok = done_action == action and lead_key == lead.key and result.performed_at >= since
            return result if ok else None
        if action == "connect":
            self.network.refresh(account, force=True)
            rel = self.relationship(account, lead)
            if rel.invite_pending:
                # seqrun checks for a pending invitation before it records a connect, so one
                # pending now is the one the interrupted call sent.
                return ActionResult(performed_at=since, provider_id=rel.invitation_id,
                                    invitation_id=rel.invitation_id, provider_ids=rel.provider_ids)
            if rel.connected and rel.connected_at is not None and rel.connected_at >= since:
                return ActionResult(performed_at=since, provider_ids=rel.provider_ids)
            return None
        if action in ("message", "inmail"):
            conversation = self.conversation(account, lead)
            ours = [m for m in conversation.messages if not m.from_lead and m.sent_at >= since]
            if not ours:
                return None
            return ActionResult(performed_at=ours[0].sent_at, provider_id=ours[0].message_id,
                                conversation_id=conversation.conversation_id)
        if action == "withdraw":
            connection, invitation = self.network.lookup(account, lead.key, force=True)
            return None if connection or invitation else ActionResult(performed_at=since)
        if action == "visit":
            return None
        raise ProviderError(ErrorKind.INVALID_INPUT, f"unknown action {action!r}")

    def poll_events(self, account: Account, *, since: dt.datetime | None) -> PollResult:
        """Acceptances (connections newer than `since`) and replies; with a webhook receiver, an
        inbox sync from `since` first. `synced_until` is the start of the newest finished inbox
        sync, or None (keep the cursor) while none has finished; without a receiver, now."""
        now = self._now()
        if since is not None:
            self._floor[account.account_id] = since
        events: dict[str, ProviderEvent] = {}
        for event in self.network.acceptances(account, since, now):
            events[event.event_id] = event
        # Without a receiver no inbox sync can finish, and the first one of a process with a receiver
        # reaches back HYDRATE anyway: the cursor then only marks how far connections were read.
        synced: dt.datetime | None = None if self.receiving else now
        if self.receiving:
            fresh = self.book.fresh(account.account_id, now - self.send_freshness)
            if fresh is None:
                sync = self._sync(account, now, since=since)
                fresh = sync if self._finished(account, sync) else None
            if fresh is not None:
                synced = self.book.marker(account.account_id)
        for event in self.book.replies(account.account_id, since):
            events[event.event_id] = event
        ordered = sorted(events.values(), key=lambda e: (e.occurred_at, e.event_id))
        return PollResult(tuple(ordered), synced_until=synced)

    def poll_due(self, account: Account) -> dt.datetime | None:
        """When this account wants its next poll sooner than the engine's schedule: seed 000's
        second inbox sync 5-10 minutes after a message. None once a sync since then finished."""
        with self._lock:
            wanted = self._refresh_at.get(account.account_id)
            marker = self.book.marker(account.account_id)
            if wanted is not None and marker is not None and marker >= wanted:
                del self._refresh_at[account.account_id]
                return None
            return wanted

    def verify_and_parse(self, headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str],
                         received_at: dt.datetime) -> list[ProviderEvent]:
        """One webhook delivery (runner.webhooks' contract): the secret, then NEW_CONNECTION
        (acceptances) or a New Messages page (into the sync book; replies it reveals)."""
        webhook.verify(headers, secrets)
        content = webhook.parse(body)
        if content is None:
            return []
        if isinstance(content, webhook.NewConnections):
            return self.network.new_connections(content, self._key_of)
        return self.book.take(content)

    # --- senders check and limits ---------------------------------------------------------------

    def check(self, account: Account) -> SenderCheck:
        """Key and LinkedIn account through `GET accounts/{id}`; its limits from `…/limits`."""
        try:
            info = self.api.call(account, "GET", f"api/v1/accounts/{account.account_id}")
        except ProviderError as err:
            if err.kind is ErrorKind.API_KEY_REJECTED:
                return SenderCheck(False, "missing" if err.status is None else "rejected", "unknown",
                                   problem=err.message)
            if err.kind is ErrorKind.AUTH_EXPIRED:
                return SenderCheck(False, "ok", "auth expired", problem=self._reconnect(account))
            return SenderCheck(False, "unknown", "unknown", problem=f"{err.kind.value}: {err.message}")
        info = info if isinstance(info, Mapping) else {}
        status = str(info.get("status") or "ACCOUNT_ACTIVE")
        own = _text(info.get("profileId"))
        if status != "ACCOUNT_ACTIVE":
            return SenderCheck(False, "ok", "auth expired" if status != "ACCOUNT_BLOCKED" else "blocked",
                               profile_id=own, problem=f"Salesflow reports the account as {status}: "
                               + self._reconnect(account))
        limits = {action: {"limit": n, "per": "day"} for action, n in self.account_limits(account).items()}
        return SenderCheck(True, "ok", "ok", profile_id=own, limits=limits)

    def account_limits(self, account: Account) -> dict[str, int]:
        """The account's daily limits in Salesflow (seqrun's caps are kept at or below them); the
        documented defaults when they cannot be read."""
        try:
            body = self.api.call(account, "GET", f"api/v1/accounts/{account.account_id}/limits")
        except ProviderError as err:
            log.warning("sender %s: Salesflow's limits could not be read (%s); assuming its documented "
                        "defaults", account.sender, err.message)
            return dict(DOCUMENTED_LIMITS)
        body = body.get("limits", body) if isinstance(body, Mapping) else {}
        found: dict[str, int] = {}
        for action, names in LIMIT_FIELDS.items():
            values = [body[n] for n in names if isinstance(body.get(n), int) and not isinstance(body.get(n), bool)]
            found[action] = min(values) if values else DOCUMENTED_LIMITS[action]
        return found

    # --- helpers ----------------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return self._clock().astimezone(UTC)

    def _require_webhooks(self, now: dt.datetime) -> None:
        if not self.receiving:
            raise ProviderError(ErrorKind.NOT_READY, "Salesflow delivers inbox syncs (and so replies) only as "
                                "webhooks, and nothing in this process receives them: run this sender under "
                                "`seqrun serve`; messages wait, they are never sent without a sync",
                                retry_at=now + dt.timedelta(minutes=15), label="NO_WEBHOOKS")

    def _reconnect(self, account: Account) -> str:
        return (f"reconnect the LinkedIn account {account.account_id} in Salesflow, then "
                f"`seqrun senders resume {account.sender}`")

    def _sync(self, account: Account, now: dt.datetime, *, since: dt.datetime | None = None) -> Sync:
        """Ask for an inbox sync (202) and register it; its pages come as webhooks."""
        aid = account.account_id
        marker = self.book.marker(aid)
        start = max([t for t in (since, marker - SYNC_OVERLAP if marker else None) if t is not None],
                    default=self._floor.get(aid) or now - HYDRATE)
        if aid not in self._hydrated or aid in self._hydrate:
            # The first sync of a process (and after a thread turned up unseen) reaches back far
            # enough to know the threads opened before it started, e.g. by an accepted note.
            start = min(start, now - HYDRATE)
        body = {"conversationsFromDate": _iso(start), "messagesFromDate": _iso(start - MESSAGE_HISTORY),
                "cursor": None}
        out = self.api.call(account, "POST", "api/v1/conversations/sync", json=body)
        sync_id = _text(out.get("syncId")) if isinstance(out, Mapping) else None
        if sync_id is None:
            raise ProviderError(ErrorKind.TRANSIENT, "Salesflow accepted the sync but named no syncId",
                                label="NO_SYNC_ID")
        sync = Sync(sync_id, aid, "inbox", now, conversations_from=start)
        self.book.register(sync)
        if start <= now - HYDRATE:
            self._hydrated.add(aid)
            self._hydrate.discard(aid)
        return sync

    def _finished(self, account: Account, sync: Sync) -> bool:
        """Wait (bounded) for the sync's pages; count syncs that do not finish in a row."""
        if self.book.wait(sync.sync_id, self.sync_wait):
            self._stalled.pop(account.account_id, None)
            return True
        self._stalled[account.account_id] = self._stalled.get(account.account_id, 0) + 1
        log.warning("sender %s: inbox sync %s did not finish within %g s", account.sender, sync.sync_id,
                    self.sync_wait)
        return False

    def _retry_after(self, account: Account) -> dt.timedelta:
        """2 minutes after the first sync that did not finish, doubling up to 30 (webhooks are down)."""
        stalled = self._stalled.get(account.account_id, 1)
        growth: int = 2 ** (stalled - 1)
        return min(SYNC_RETRY * growth, SYNC_RETRY_MAX)

    def _want_refresh(self, account: Account, now: dt.datetime, key: str) -> None:
        low, high = REFRESH_AFTER
        unit = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") / 2**32
        at = now + low + (high - low) * unit
        with self._lock:
            current = self._refresh_at.get(account.account_id)
            if current is None or at < current:
                self._refresh_at[account.account_id] = at

    def _key_of(self, profile_id: str | None) -> str | None:
        if profile_id is None:
            return None
        return next((k for k, v in list(self._profiles.items()) if v == profile_id), None)

    def _known_profile(self, lead: LeadRef) -> str | None:
        return lead.provider_ids.get(PROFILE_ID) or self._profiles.get(lead.key)

    def _profile_id(self, account: Account, lead: LeadRef) -> str:
        """The lead's profileId: kept on the lead, else `GET api/v1/profiles/by-url` once."""
        known = self._known_profile(lead)
        if known:
            return known
        try:
            out = self.api.call(account, "GET", "api/v1/profiles/by-url", params={"url": lead.profile_url})
        except ProviderError as err:
            if err.kind is ErrorKind.NOT_FOUND:
                raise ProviderError(ErrorKind.PROFILE_NOT_ACCESSIBLE, f"Salesflow found no profile at "
                                    f"{lead.profile_url}", status=err.status, label=err.label) from None
            raise
        profile = out.get("profile") if isinstance(out, Mapping) else None
        value = _text(profile.get("profileId")) if isinstance(profile, Mapping) else None
        if value is None:
            raise ProviderError(ErrorKind.PROFILE_NOT_ACCESSIBLE, f"Salesflow returned no profileId for "
                                f"{lead.profile_url}", label="NO_PROFILE_ID")
        self._profiles[lead.key] = value
        return value

    def _ids(self, lead: LeadRef, profile: str | None) -> dict[str, str]:
        value = self._known_profile(lead) or profile
        return {PROFILE_ID: value} if value else {}

    def _connect_refusal(self, account: Account, lead: LeadRef, err: ProviderError) -> ProviderError:
        """A 409 without a code we know: what the lists say decides (connected, or still pending)."""
        if err.status != 409 or err.kind in (ErrorKind.ALREADY_CONNECTED, ErrorKind.INVITATION_PENDING):
            return err
        self.network.refresh(account, force=True)
        rel = self.relationship(account, lead)
        if rel.connected:
            return ProviderError(ErrorKind.ALREADY_CONNECTED, err.message, status=409, label=err.label)
        if rel.invite_pending:
            return ProviderError(ErrorKind.INVITATION_PENDING, err.message, status=409, label=err.label)
        return err



def _iso(value: dt.datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
